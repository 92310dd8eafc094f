"""The public :class:`TaskTracker`: submit, report, read, cancel and purge tasks."""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import TYPE_CHECKING, Any, NamedTuple, ParamSpec, overload

from .checks import MAX_ID, check_message, check_progress, check_text, check_user, grants, is_int, is_number, parse_id
from .clock import Instant, duration_ms, now_ms, seconds, to_ms
from .dispatch import Dispatcher, dispatch, revoke
from .errors import InvalidTransition, PermissionDenied, StoreError, TaskNotFound, TrackerClosed
from .jsonvalue import encode_result
from .ledger import Ledger
from .liveness import Liveness, Runner
from .maintenance import Maintenance, purge_round
from .notify import ChangeFeed, HookHandle, version_of
from .status import Event, TaskStatus
from .storage import DEFAULT_DURABILITY, DEFAULT_POOL_SIZE, DEFAULT_POOL_TIMEOUT, Record, Store, check_durability
from .task import DEFAULT_BASE_PATH, Task
from .telemetry import Telemetry, log
from .workers import WorkerPool

if TYPE_CHECKING:
    from apscheduler.schedulers.base import BaseScheduler
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider

    from .storage import StoreTarget

__all__ = ["DEFAULT_RETENTION", "TaskTracker"]

#: How long finished tasks are kept before a purge deletes them, as Jira keeps them.
DEFAULT_RETENTION = timedelta(days=14)
_STARTING = frozenset({Event.START, Event.PROGRESS})
#: The longest interval a scheduled job may have: the scheduler adds it to dates.
_LONGEST_INTERVAL = timedelta(days=3650)
#: What a task of a closed tracker that it had started, and not finished, becomes.
CLOSED_MESSAGE = "its tracker was closed before it finished"

#: Seconds between re-reads of a watched task nothing announced a change of. Every
#: write is announced; a re-read finds a task whose runner went silent and that no
#: open tracker's sweep has written DEAD yet.
RECHECK = 30.0

P = ParamSpec("P")


class _Settings(NamedTuple):
    """What a tracker is built from, kept to build it again in a forked child."""

    database: StoreTarget
    pool_size: int
    pool_timeout: float
    durability: str
    dead_after: timedelta
    stale_after: timedelta | None
    purge_interval: timedelta
    heartbeat_interval: timedelta
    scheduler: BaseScheduler | None


class TaskTracker:
    """Tracks long-running tasks in a SQLite file or a database server.

    A task belongs to the process that runs or starts it: when that process stops
    heartbeating (it crashed) or its tracker closes, its unfinished tasks become
    DEAD. Liveness is judged on the store's clock, never by comparing two hosts'.

    Construction opens the store and creates tasklib's tables if needed; it starts
    no thread. :meth:`open` (or ``with``) starts the maintenance jobs; functions
    given to :meth:`submit` run on the tracker's worker threads.

    :param database: where tasks live: a SQLite file path, a database URL
        (``sqlite:///tasks.db``, ``postgresql://...``), ``":memory:"`` for a
        private in-memory store, or a peewee ``Database``
        the host already uses (tasklib then adds only its ``tasklib_*`` tables and
        leaves the rest alone).
    :param base_url: prefixed to a task's id to make its ``self`` URL; without it
        ``self`` is the relative path ``/rest/api/3/task/{id}``.
    :param retention: how long finished tasks are kept before :meth:`purge`
        deletes them (14 days, as Jira).
    :param is_admin: ``is_admin(user_id) -> bool``; ``True`` for the users who may
        read and cancel any task, not only their own. Only ``True`` itself grants:
        a truthy ``"no"`` or ``1`` is taken as no.
    :param max_workers: the number of threads that run functions given to
        :meth:`submit`.
    :param progress_interval: seconds; progress a running function reports is
        written at most once per interval, and a cancel request is seen within one.
    :param scheduler: an APScheduler 3.x scheduler the host runs, for the
        maintenance jobs (tasklib never starts or stops it); None for a scheduler
        of the tracker's own.
    :param purge_interval: how often the purge job deletes expired tasks.
    :param heartbeat_interval: how often this process renews its runner row and
        sweeps for dead runners.
    :param dead_after: a runner silent this long is gone, and its unfinished
        tasks become DEAD; at least twice ``heartbeat_interval``.
    :param stale_after: when set, a host-driven task that nobody started and
        that was not updated for this long also becomes DEAD; None (the default)
        never does.
    :param name: the prefix of the maintenance jobs' ids (``{name}:purge``,
        ``{name}:heartbeat``); by default one derived from the store, so trackers
        on different stores never collide on one scheduler. A second open tracker
        that would take another's jobs is refused with ValueError.
    :param pool_size: PostgreSQL only: the most connections open at once (32).
    :param pool_timeout: PostgreSQL only: seconds a call waits for a free
        connection when all are in use, then StoreError (10).
    :param durability: SQLite files tasklib opens itself: ``"normal"`` (the
        default: WAL with ``synchronous=NORMAL``; a commit survives a crash of
        any process, only the last ones before a power loss or OS crash may be
        rolled back) or ``"full"`` (``synchronous=FULL``: every commit survives
        a power loss too, at one fsync per write). A PostgreSQL server's commit
        settings, and a peewee database the host passes in, are left alone
        under both; any other value is a ValueError.
    :param tracer_provider: with the ``otel`` extra, the OpenTelemetry tracer
        provider of the spans around task runs and HTTP requests; None for the
        API's global one (see :mod:`tasklib.telemetry`).
    :param meter_provider: likewise, the meter provider of the task counter and
        the run-time histogram; None for the API's global one. Giving either
        without ``opentelemetry-api`` installed is a ValueError.
    :raises StoreError: the store cannot be opened.
    :raises TypeError: an option of the wrong type.
    :raises ValueError: an option out of range.
    """

    def __init__(
        self,
        database: StoreTarget,
        *,
        base_url: str | None = None,
        retention: timedelta = DEFAULT_RETENTION,
        is_admin: Callable[[int], bool] | None = None,
        max_workers: int = 4,
        progress_interval: float = 0.1,
        scheduler: BaseScheduler | None = None,
        purge_interval: timedelta = timedelta(hours=1),
        heartbeat_interval: timedelta = timedelta(seconds=5),
        dead_after: timedelta = timedelta(seconds=60),
        stale_after: timedelta | None = None,
        name: str | None = None,
        pool_size: int = DEFAULT_POOL_SIZE,
        pool_timeout: float = DEFAULT_POOL_TIMEOUT,
        durability: str = DEFAULT_DURABILITY,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        if base_url is not None and not isinstance(base_url, str):
            raise TypeError(f"base_url must be a str or None, not {type(base_url).__name__}")
        if is_admin is not None and not callable(is_admin):
            raise TypeError("is_admin must be a callable(user_id) -> bool, or None")
        if not is_int(max_workers) or max_workers < 1:
            raise ValueError(f"max_workers must be a positive int, got {max_workers!r}")
        if not is_number(progress_interval):
            raise TypeError(f"progress_interval must be a number of seconds, not {type(progress_interval).__name__}")
        if not 0 < progress_interval < float("inf"):
            raise ValueError(f"progress_interval must be a positive number of seconds, got {progress_interval!r}")
        duration_ms(retention, "retention")
        duration_ms(purge_interval, "purge_interval", maximum=_LONGEST_INTERVAL)
        duration_ms(heartbeat_interval, "heartbeat_interval", maximum=_LONGEST_INTERVAL)
        duration_ms(dead_after, "dead_after")
        if dead_after < 2 * heartbeat_interval:
            raise ValueError(
                "dead_after must be at least twice heartbeat_interval, or live runners would be declared dead"
            )
        if stale_after is not None:
            duration_ms(stale_after, "stale_after")
        if name is not None and (not isinstance(name, str) or not name):
            raise TypeError("name must be a non-empty str or None")
        if not is_int(pool_size) or not 1 <= pool_size <= 10_000:
            raise ValueError(f"pool_size must be an int from 1 to 10000, got {pool_size!r}")
        pool_wait = seconds(pool_timeout, "pool_timeout", allow_none=False)
        check_durability(durability)
        if scheduler is not None and not hasattr(scheduler, "add_job"):
            raise TypeError("scheduler must be an APScheduler 3.x scheduler, or None")
        telemetry = Telemetry.create(tracer_provider, meter_provider)
        self.retention = retention
        self.base_url = base_url
        self._is_admin = is_admin
        self.max_workers = max_workers
        self.progress_interval = float(progress_interval)
        self.durability = durability
        self._settings = _Settings(
            database=database,
            pool_size=pool_size,
            pool_timeout=max(pool_wait or 0.0, 1e-6),  # peewee reads 0 as forever
            durability=durability,
            dead_after=dead_after,
            stale_after=stale_after,
            purge_interval=purge_interval,
            heartbeat_interval=heartbeat_interval,
            scheduler=scheduler,
        )
        self._dispatchers: tuple[Dispatcher, ...] = ()
        self._inherited: list[object] = []
        self._telemetry = telemetry
        self._build(name)

    def _build(self, name: str | None) -> None:
        """Open the store and make the parts that hold connections, threads or this process's identity."""
        settings = self._settings
        self._pid = os.getpid()
        self._store = Store(
            settings.database,
            pool_size=settings.pool_size,
            pool_timeout=settings.pool_timeout,
            durability=settings.durability,
        )
        self.name = name if name is not None else f"tasklib:{self._store.key}"
        self._liveness = Liveness(
            self._store, Runner(), dead_after=settings.dead_after, stale_after=settings.stale_after
        )
        self._feed = ChangeFeed(self._store)
        if self._telemetry is not None:
            self._feed.observe(self._telemetry.changed)  # counts the tasks that reach a final status
        self._store.written = self._feed.changed
        self._ledger = Ledger(
            self._store,
            self._liveness,
            url_prefix=self.base_url if self.base_url is not None else DEFAULT_BASE_PATH,
            announce=self._feed.announce,
            hooked=self._feed.hooked,
        )
        self._maintenance = Maintenance(
            name=self.name,
            purge=self._purge_round,
            heartbeat=self._heartbeat_round,
            purge_interval=settings.purge_interval,
            heartbeat_interval=settings.heartbeat_interval,
            scheduler=settings.scheduler,
        )
        self._lock = threading.Lock()
        self._pool: WorkerPool | None = None
        self._opened = False
        self._closing = False

    def after_fork(self) -> TaskTracker:
        """Make this tracker usable in a process forked from the one that built it; returns it.

        A forked child inherits the parent's connections, whose sockets and file
        locks it shares with the parent, and none of its threads. This forgets
        them without closing them (closing would end the parent's sessions),
        opens the store again, and gives the child its own runner identity; the
        tracker is then unopened, as a new one. Change hooks carry over. Does
        nothing in the process that built the tracker, or if it was already
        called in this one. Celery's prefork pool calls it through
        :func:`tasklib.contrib.celery.install`.

        A host's own peewee database is reused as it is: under a forking pool, give
        the tracker a path or URL instead. A host's scheduler must run in the child.
        Raises TrackerClosed once closed, StoreError.
        """
        if os.getpid() == self._pid:
            return self
        if self._closing:
            raise TrackerClosed("the tracker is closed")
        hooks = self._feed.hooks
        # Kept referenced, never closed: their finalizers would close the parent's connections.
        self._inherited.append((self._store, self._feed, self._pool, self._maintenance))
        self._build(self.name)
        for hook in hooks:
            self._feed.add_hook(hook)
        return self

    def add_dispatcher(self, dispatcher: Dispatcher) -> None:
        """Hand the functions ``dispatcher`` claims to its task queue, from now on (see :mod:`tasklib.dispatch`).

        :meth:`submit` then records such a function's task ENQUEUED and sends it to
        the queue rather than running it here, and :meth:`cancel` of an ENQUEUED
        task asks the queue to drop its message. Adding the same dispatcher twice
        does nothing. :func:`tasklib.contrib.celery.install` calls this.
        Raises TypeError for an object that is no dispatcher.
        """
        if not all(callable(getattr(dispatcher, name, None)) for name in ("claims", "send", "revoke")):
            raise TypeError("a dispatcher has claims(fn), send(task_id, fn, args, kwargs) and revoke(task_id)")
        with self._lock:
            if dispatcher not in self._dispatchers:
                self._dispatchers = (*self._dispatchers, dispatcher)

    @property
    def dead_after(self) -> timedelta:
        """How long a runner may be silent before its unfinished tasks become DEAD."""
        return self._liveness.dead_after

    @property
    def stale_after(self) -> timedelta | None:
        """How long a host-driven task nobody started may go without an update before it becomes DEAD."""
        return self._liveness.stale_after

    # -- lifecycle --------------------------------------------------------

    def open(self) -> TaskTracker:
        """Start the tracker: its worker pool and its maintenance jobs. Returns the tracker.

        Registers this process as a runner and at once marks DEAD the tasks of
        runners on this host whose process no longer exists. :meth:`submit` with a
        function opens the tracker by itself. Calling it again does nothing.
        Raises TrackerClosed once the tracker was closed, StoreError.
        """
        with self._lock:
            if self._closing:
                raise TrackerClosed("the tracker is closed")
            if self._opened:
                return self
            self._maintenance.check_free()
            self._liveness.register()
            now = now_ms()
            buried = self._liveness.bury_vanished_neighbours(now)
            self._pool = WorkerPool(
                self._ledger,
                self.max_workers,
                self.progress_interval,
                runner=self._liveness.runner.label,
                telemetry=self._telemetry,
            )
            self._maintenance.start()
            self._opened = self._liveness.alive = True
        self._ledger.announce_buried(buried, now)  # past the lock: a hook may call this tracker
        return self

    def close(self, wait: bool = True) -> None:
        """Stop the tracker and release the store. Calling it again does nothing.

        ``wait=True`` lets every submitted function run to its end. ``wait=False``
        cancels the tasks that have not started (they never run) and asks the
        running ones to cancel, then waits for them to stop. Either way no task of
        this tracker is left ENQUEUED or RUNNING: a task the host's own code
        started through this tracker and did not finish becomes DEAD. The
        maintenance jobs are removed (a host's scheduler keeps running), and every
        connection tasklib opened is closed.

        If the store cannot be written at that moment, the tasks still unfinished
        are marked DEAD by the next tracker on this store that notices this
        process's heartbeat has stopped.
        """
        with self._lock:
            if self._closing:
                return
            self._closing = True
            opened = self._opened
        try:
            if opened:
                self._maintenance.stop()
                assert self._pool is not None
                self._pool.shutdown(wait=wait)
                try:
                    self._liveness.bury_self(CLOSED_MESSAGE, now_ms())
                except StoreError as exc:
                    # The heartbeat has stopped: another tracker's sweep ends what is left.
                    label = self._liveness.runner.label
                    log(logging.WARNING, "could not end the tasks left at close: %s", exc, runner=label)
        finally:
            self._liveness.alive = False
            self._feed.close()
            self._store.close()

    @property
    def telemetry(self) -> Telemetry | None:
        """The tracker's OpenTelemetry spans and metrics; None without ``opentelemetry-api`` installed."""
        return self._telemetry

    @property
    def workers(self) -> WorkerPool:
        """The tracker's worker pool, opening the tracker if it is not open yet.

        :mod:`tasklib.testing` runs task functions on it in the calling thread.
        Raises TrackerClosed once closed, StoreError.
        """
        self.open()
        assert self._pool is not None
        return self._pool

    def __enter__(self) -> TaskTracker:
        return self.open()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closing:
            raise TrackerClosed("the tracker is closed")

    # -- writing ----------------------------------------------------------

    @overload
    def submit(self, fn: None = None, /, *, description: str | None = None, submitted_by: int = 0) -> Task: ...

    @overload
    def submit(
        self, fn: Callable[..., object], /, *args: Any, description: str | None, submitted_by: int = 0, **kwargs: Any
    ) -> Task: ...

    @overload
    def submit(
        self, fn: Callable[..., object], /, *args: Any, description: str | None = None, submitted_by: int, **kwargs: Any
    ) -> Task: ...

    @overload
    def submit(self, fn: Callable[P, object], /, *args: P.args, **kwargs: P.kwargs) -> Task: ...

    # The implementation takes what every overload does; P.kwargs could name a
    # reserved keyword, which no checker can rule out, hence the ignore.
    def submit(  # type: ignore[misc]
        self,
        fn: Callable[..., object] | None = None,
        /,
        *args: Any,
        description: str | None = None,
        submitted_by: int = 0,
        **kwargs: Any,
    ) -> Task:
        """Record a new task, ENQUEUED, and return it; with ``fn``, also run it in the background.

        ``fn(*args, **kwargs)`` runs on one of the tracker's worker threads (an
        ``async def`` function runs on an event loop there). Its return value, any
        JSON value, ends the task COMPLETE with it as ``result``; an exception ends
        it FAILED with message "ExceptionType: text"; ``TaskCancelled`` after a
        cancel request ends it CANCELLED. Inside, :func:`tasklib.current_task` gives
        the task's handle. ``description`` and ``submitted_by`` (the submitting
        user's id) are reserved keyword names: they are never passed to ``fn``.
        Returns at once.

        A type checker matches ``args`` and ``kwargs`` against ``fn``'s parameters
        (when neither reserved keyword is given: Python's typing cannot yet mix
        such keywords with a function's own).

        Raises TypeError for arguments of the wrong type, TrackerClosed once
        closed, StoreError if the store cannot be written.
        """
        check_text("description", description)
        submitted_by = check_user("submitted_by", submitted_by, optional=False)
        if fn is None:
            if args or kwargs:
                raise TypeError("submit() without a function takes no other arguments")
            self._check_open()
        elif not callable(fn):
            raise TypeError(f"submit() takes a callable to run, not {type(fn).__name__}")
        elif self._dispatchers:
            dispatcher = next((d for d in self._dispatchers if d.claims(fn)), None)
            if dispatcher is not None:
                self._check_open()
                return dispatch(self._ledger, dispatcher, fn, args, kwargs, description, submitted_by)
        if fn is None:
            return self._ledger.insert(description=description, submitted_by=submitted_by, now=now_ms(), owned=False)
        pool = self._pool
        if pool is None or self._closing:
            pool = self.workers  # opens the tracker, or raises TrackerClosed
        # A worker free now takes the task at once: it is recorded RUNNING, and its
        # start costs no write of its own.
        at_once = pool.reserve()
        try:
            task = self._ledger.insert(
                description=description, submitted_by=submitted_by, now=now_ms(), owned=True, running=at_once
            )
        except BaseException:
            if at_once:
                pool.unreserve()
            raise
        pool.submit(task.id, fn, args, kwargs, started=at_once)
        return task

    def wait(self, task_id: str, timeout: float | None = None) -> Task:
        """Block until the task has finished and return it.

        Works for any task in the store, also one run by another process. Wakes
        on the change itself: at once for a change this process makes, within
        about 0.2 s for one made by another process (see :meth:`watch`).
        ``timeout`` is in seconds; None or an infinite one waits as long as it takes.
        Raises TimeoutError if it has not finished within ``timeout`` seconds,
        TaskNotFound for an unknown id, TypeError/ValueError for a bad timeout,
        TrackerClosed once closed.
        """
        timeout = seconds(timeout, "timeout")
        deadline = None if timeout is None else time.monotonic() + timeout
        pool = self._pool
        outcome = None
        if pool is not None:
            outcome = pool.outcome(task_id)
            if outcome is None:
                # Ended here lately (submit many, then wait for each): the snapshot
                # of its end is the task as it is, as a finished task never changes.
                finished = pool.finished(task_id)
                if finished is not None:
                    self._check_open()
                    return finished
        if outcome is not None:
            if not outcome.wait(timeout):
                raise TimeoutError(f"task {task_id} did not finish within {timeout} s")
            if outcome.task is not None:
                return outcome.task
        # Not run here (or its end was not recorded here): follow its changes.
        last = collections.deque(self._snapshots(task_id, timeout, deadline), maxlen=1)
        return last[0]  # the snapshots end with a terminal one, or raise

    def watch(self, task_id: str, timeout: float | None = None) -> Iterator[Task]:
        """The task's snapshots as it changes: the current one, then one per change, ending after the terminal one.

        Like :meth:`wait`, it wakes on the change itself: at once for a change made
        through this tracker, within about 0.2 s for one made by another process
        (SQLite's ``PRAGMA data_version``, PostgreSQL's LISTEN/NOTIFY). Changes that
        come faster than the loop reads them are seen as one snapshot. Nothing is
        read while it waits; the first wait starts the tracker's one listening thread.
        ``timeout`` bounds the whole watch, in seconds. Iterating raises
        TimeoutError when the task has not finished within it, TaskNotFound (also
        for a task purged meanwhile), TypeError/ValueError for a bad argument,
        TrackerClosed once closed.
        """
        timeout = seconds(timeout, "timeout")
        parse_id(task_id)
        deadline = None if timeout is None else time.monotonic() + timeout
        return self._snapshots(task_id, timeout, deadline)

    def _snapshots(self, task_id: str, timeout: float | None, deadline: float | None) -> Iterator[Task]:
        changed = threading.Event()
        with self._feed.watching(parse_id(task_id), changed.set) as watch:
            last = None
            while True:
                changed.clear()  # before the read: a change after it sets the event again
                task = self.get(task_id)
                watch.seen = version_of(task)
                if watch.seen != last:
                    last = watch.seen
                    yield task
                if task.status.is_terminal:
                    return
                remaining = RECHECK if deadline is None else deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"task {task_id} did not finish within {timeout} s")
                # The re-read now and then finds a task whose runner went silent
                # (DEAD on reading), which no write announces.
                changed.wait(min(remaining, RECHECK))

    def on_change(self, callback: Callable[[Task], object], *, remove: bool = False) -> HookHandle:
        """Call ``callback(task)`` with the new snapshot after each status change this tracker makes.

        Status changes are: a task submitted, started (also by its first progress
        report), cancelled or asked to cancel, finished, found DEAD when read, and
        each task made DEAD in bulk (by :meth:`sweep` and the heartbeat job, at
        :meth:`open` for a vanished process of this host, at :meth:`close`).
        Progress reports that keep the status are not announced, nor are other
        processes' changes (use :meth:`watch` for those).

        The callback runs in the thread that made the write, right after it
        committed: the caller's thread for the tracker's methods, a worker thread
        for a submitted function's start and end, the scheduler's thread for the
        heartbeat job's sweep. Keep it short (hand long work to
        a queue); an exception it raises is logged and the write stands. Returns a
        handle whose ``remove()`` unregisters it; ``remove=True`` unregisters
        ``callback`` instead (one registration of it, nothing if none).
        Raises TypeError if ``callback`` is not callable.
        """
        if not callable(callback):
            raise TypeError(f"on_change() takes a callable(task), not {type(callback).__name__}")
        if remove:
            self._feed.remove_hook(callback)
            return HookHandle(self._feed, callback)
        return self._feed.add_hook(callback)

    @property
    def changes(self) -> ChangeFeed:
        """The tracker's change notifications (see :mod:`tasklib.notify`)."""
        return self._feed

    def start(self, task_id: str) -> Task:
        """Mark an ENQUEUED task RUNNING and set its ``started`` time.

        The task then belongs to this process: if it ends without finishing the
        task (a crash, or :meth:`close`), the task becomes DEAD. Opens the tracker
        if it is not open yet, so that its heartbeat runs.
        Raises TaskNotFound, or InvalidTransition if the task is not ENQUEUED.
        """
        return self._apply(task_id, Event.START)

    def update_progress(self, task_id: str, progress: int, message: str | None = None) -> Task:
        """Record progress (an int from 0 to 100) and optionally a message.

        The first report of an ENQUEUED task starts it, as :meth:`start` does. A report on a task whose
        cancel was requested keeps it CANCEL_REQUESTED (check ``task.cancel_requested``).
        A ``message`` of None keeps the message stored. Raises TypeError/ValueError
        for bad values, TaskNotFound, or InvalidTransition once the task is finished.
        """
        check_progress(progress)
        check_message(message)
        return self._apply(task_id, Event.PROGRESS, progress=progress, message=message)

    def complete(self, task_id: str, result: Any = None, *, message: str | None = None) -> Task:
        """Mark the task COMPLETE with progress 100 and its ``result`` (any JSON value).

        Raises TypeError/ValueError for a result JSON cannot represent (before
        anything is written), TaskNotFound, or InvalidTransition once finished.
        """
        check_message(message)
        return self._apply(task_id, Event.COMPLETE, result=encode_result(result), message=message)

    def fail(self, task_id: str, message: str | None = None, *, result: Any = None) -> Task:
        """Mark the task FAILED, with a ``message`` saying why and an optional ``result``.

        Raises as :meth:`complete` does.
        """
        check_message(message)
        return self._apply(task_id, Event.FAIL, result=encode_result(result), message=message)

    def acknowledge_cancel(self, task_id: str, message: str | None = None) -> Task:
        """The task's own code stops after a cancel request: CANCEL_REQUESTED becomes CANCELLED.

        Host code that drives a task itself calls this once it sees
        ``task.cancel_requested`` (every :meth:`update_progress` returns the task).
        Raises TaskNotFound, or InvalidTransition if no cancel was requested.
        """
        check_message(message)
        return self._apply(task_id, Event.ACKNOWLEDGE_CANCEL, message=message)

    def mark_dead(self, task_id: str, message: str) -> Task:
        """Mark an unfinished task DEAD: whatever ran it is gone and it will never finish.

        ``message`` says why. Raises TaskNotFound, or InvalidTransition once finished.
        """
        if not isinstance(message, str):
            raise TypeError(f"message must be a str, not {type(message).__name__}")
        check_message(message)
        return self._apply(task_id, Event.DIE, message=message)

    def cancel(self, task_id: str, *, as_user: int | None = None) -> Task:
        """Request cancellation; returns the task as it then is.

        An ENQUEUED task is CANCELLED at once; a RUNNING one becomes CANCEL_REQUESTED
        until its code stops; a repeated request changes nothing. ``as_user`` checks
        that the user submitted the task or is an administrator. Raises TaskNotFound,
        PermissionDenied, or TaskNotCancellable for a finished task.
        """
        as_user = check_user("as_user", as_user, optional=True)
        key = parse_id(task_id)
        self._check_open()
        if as_user is not None:
            self._authorize(self._ledger.fetch(key, task_id, now_ms()), as_user)
        task = self._ledger.transition(task_id, Event.CANCEL)
        pool = self._pool
        if pool is not None and task.status is TaskStatus.CANCEL_REQUESTED:
            pool.request_cancel(task.id)
        elif task.status is TaskStatus.CANCELLED:
            for dispatcher in self._dispatchers:
                revoke(dispatcher, task.id)
        return task

    def purge(self, now: Instant | None = None, *, dry_run: bool = False) -> int:
        """Delete the finished tasks whose ``finished`` is older than ``now - retention``.

        Never deletes a task that is not finished. ``now`` defaults to the current
        time. Returns how many tasks were deleted, or with ``dry_run`` how many
        would be, deleting nothing.
        """
        cutoff = to_ms(now) - duration_ms(self.retention, "retention")
        self._check_open()
        if dry_run:
            return self._store.count_expired(cutoff)
        return self._store.purge(cutoff)

    def sweep(self, now: Instant | None = None) -> int:
        """Mark DEAD the unfinished tasks whose runner stopped responding, and returns how many.

        A runner stopped responding when its heartbeat is older than ``dead_after``
        by the store's clock; with ``stale_after`` set, a host-driven task that no
        process has started is dead when its last update is older than that.
        ``now`` defaults to the current time; a ``now`` later than this process's
        clock judges heartbeats as that much older. The heartbeat job calls this;
        :meth:`get` applies the same rule to the task it reads.
        Raises TypeError/ValueError for a bad ``now``, StoreError.
        """
        at = to_ms(now)
        shift = 0 if now is None else at - now_ms()
        self._check_open()
        return self._liveness.sweep(at, shift_ms=shift)

    # -- reading ----------------------------------------------------------

    def get(self, task_id: str, *, as_user: int | None = None) -> Task:
        """The task as it is now.

        ``as_user`` checks that the user submitted the task or is an administrator.
        Raises TaskNotFound (for any id that is not a task's, whoever asks) or
        PermissionDenied.
        """
        as_user = check_user("as_user", as_user, optional=True)
        key = parse_id(task_id)
        self._check_open()
        now = now_ms()
        row = self._ledger.fetch_row(key, task_id, now)
        if as_user is not None:
            self._authorize(row, as_user)
        return self._ledger.task(row, now)

    def list(
        self,
        status: TaskStatus | str | None = None,
        submitted_by: int | None = None,
        limit: int = 50,
        after: str | None = None,
    ) -> list[Task]:
        """Tasks newest first, optionally of one ``status`` and one submitter.

        Pages by id: pass the id of the last task of a page as ``after`` to get the
        next one. ``limit`` is 1 to 1000. Raises TypeError/ValueError for bad arguments.
        """
        if status is not None:
            try:
                status = TaskStatus(status)
            except ValueError:
                raise ValueError(
                    f"status must be one of {', '.join(s.value for s in TaskStatus)}, got {status!r}"
                ) from None
        submitted_by = check_user("submitted_by", submitted_by, optional=True)
        if not is_int(limit):
            raise TypeError(f"limit must be an int, not {type(limit).__name__}")
        if not 1 <= limit <= 1000:
            raise ValueError(f"limit must be from 1 to 1000, got {limit}")
        if after is None:
            before = MAX_ID
        else:
            try:
                before = parse_id(after)
            except TaskNotFound:
                raise ValueError(f"after must be a task id, got {after!r}") from None
        self._check_open()
        return self._ledger.page(status=status, submitted_by=submitted_by, before=before, limit=limit)

    def is_admin(self, user: int) -> bool:
        """Whether ``user`` may read and cancel every task (the tracker's ``is_admin``; False without one).

        For views that list tasks: an administrator sees all, another user only
        their own. Only ``True`` from the host's ``is_admin`` grants: a truthy
        ``"no"`` is its bug, not a yes. Raises TypeError for a user id that is not
        an int (ValueError beyond 64 bits).
        """
        plain = check_user("user", user, optional=False)
        return self._is_admin is not None and grants(self._is_admin(plain))

    # -- internals --------------------------------------------------------

    def _purge_round(self) -> int:
        """The purge job (see :func:`tasklib.maintenance.purge_round`)."""
        retention_ms = duration_ms(self.retention, "retention")
        return purge_round(self._store, self._liveness.runner.token, retention_ms=retention_ms, now=now_ms())

    def _heartbeat_round(self) -> int:
        """The heartbeat job (see :meth:`tasklib.liveness.Liveness.heartbeat_round`)."""
        return self._liveness.heartbeat_round(now_ms())

    def _authorize(self, record: Record | tuple[Any, ...], user: int) -> None:
        # A Record, or a row that begins with a Record's columns (see Ledger.fetch_row).
        if record[5] == user:  # submitted_by
            return
        if self.is_admin(user):  # the one rule, also for views that list tasks
            return
        raise PermissionDenied(str(record[0]), user)

    def _apply(self, task_id: str, event: Event, **data: Any) -> Task:
        if self._closing:
            raise TrackerClosed("the tracker is closed")
        if event in _STARTING and not self._opened:
            self.open()  # the task will belong to this process, whose heartbeat must run
        try:
            return self._ledger.transition(task_id, event, **data)
        except InvalidTransition:
            if self._closing:
                # close() ended this process's tasks while the call was under way: the
                # call lost to the close, as one made a moment later would.
                raise TrackerClosed("the tracker is closed") from None
            raise
