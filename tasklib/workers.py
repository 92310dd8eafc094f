"""The worker pool: running the host's task functions, their handles, progress coalescing.

A task function runs on one of the tracker's worker threads. It finds its
:class:`TaskHandle` with :func:`current_task` (a context variable, so threads and
coroutines that copy the context see it too), reports progress through it, and
polls it for a cancel request. Cancellation is cooperative: nothing is killed.
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import functools
import inspect
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from .checks import check_message, check_progress
from .errors import InvalidTransition, StoreError, TaskCancelled, TaskError, TaskNotFound, TaskSkipped, TrackerClosed
from .jsonvalue import encode_result, storable_text
from .status import Event, TaskStatus
from .task import Task
from .telemetry import TaskRun, Telemetry, log, task_run

__all__ = ["TaskHandle", "TaskLedger", "WorkerPool", "current_task"]

#: Backoff of a write the store refused (locked, full, restarting): first and longest pause, seconds.
RETRY_FIRST, RETRY_LONGEST = 0.05, 2.0
#: How long, once the tracker closes, a task's final write keeps being tried before
#: close() gives up on it (the task is then marked DEAD, or swept by another tracker).
CLOSE_GRACE = 5.0
#: How many finished tasks' last snapshots a pool keeps for :meth:`WorkerPool.finished`
#: (a few MB at most).
REMEMBERED_FINISHED = 10_000
#: Seconds between an idle worker thread's looks at whether the interpreter is
#: exiting (its main thread ended) with the tracker never closed: the pool then
#: refuses new tasks, and its threads end once the submitted ones have run.
IDLE_LOOK = 1.0

_T = TypeVar("_T")

#: A submitted task for a worker thread: its id, function and arguments.
_Job = tuple[str, Callable[..., Any], tuple[Any, ...], dict[str, Any]]

#: The status each final write that may be detached gives its task.
_ENDS = {Event.COMPLETE: TaskStatus.COMPLETE, Event.FAIL: TaskStatus.FAILED}

_current: contextvars.ContextVar[TaskHandle | None] = contextvars.ContextVar("tasklib_current_task", default=None)


class TaskLedger(Protocol):
    """What the pool and its handles need of a tracker: its tasks' reads and writes.

    Both work also while the tracker closes, which its public methods refuse.
    """

    def transition(
        self,
        task_id: str,
        event: Event,
        *,
        progress: int | None = None,
        message: str | None = None,
        result: str | None = None,
    ) -> Task:
        """Apply ``event`` to the task (``result`` as JSON text) and return the task as it then is.

        Raises InvalidTransition (TaskNotCancellable for a cancel) when its status
        does not allow the event, TaskNotFound, StoreError.
        """
        ...

    def transition_detached(
        self,
        task_id: str,
        event: Event,
        then: Callable[[Task | None], None],
        *,
        progress: int | None = None,
        message: str | None = None,
        result: str | None = None,
    ) -> bool:
        """:meth:`transition`, committed by a write another thread has under way (see :meth:`tasklib.ledger.Ledger.transition_detached`).

        False: nothing was done. True: ``then`` gets the task, or None when nothing was written.
        """
        ...

    def read(self, task_id: str) -> Task:
        """The task as it is now; TaskNotFound, StoreError."""
        ...

    def claim(self, task_id: str) -> Task | None:
        """Take a task a queue delivered for this runner (see :meth:`tasklib.ledger.Ledger.claim`); None: not to run."""
        ...


def current_task() -> TaskHandle:
    """The handle of the task this code runs in.

    Works in the task function, in coroutines it awaits, and in threads started
    with a copy of its context (``asyncio.to_thread``, ``contextvars.copy_context().run``).
    Raises RuntimeError anywhere else.
    """
    handle = _current.get()
    if handle is None:
        raise RuntimeError(
            "tasklib.current_task() was called outside a running task; "
            "it works only in a function run by TaskTracker.submit(fn)"
        )
    return handle


class TaskHandle:
    """What a running task function uses to talk to its tracker.

    Progress reports that change nothing visible are dropped, and writes are
    coalesced to at most one per ``progress_interval``; the last report is always
    written, at the latest one interval later or when the task ends. A cancel
    request is seen within one interval.
    """

    __slots__ = (
        "__weakref__",
        "_cancelled",
        "_detached",
        "_dirty",
        "_final",
        "_interval",
        "_lock",
        "_message",
        "_next_poll",
        "_next_write",
        "_pool",
        "_progress",
        "_released",
        "id",
    )

    def __init__(self, pool: WorkerPool, task_id: str, interval: float) -> None:
        self.id = task_id
        self._pool = pool
        self._interval = interval
        self._lock = threading.Lock()
        self._progress = 0
        self._message: str | None = None
        self._dirty = False  # a report not yet written
        self._next_write = 0.0  # monotonic time before which reports are held back
        self._next_poll = time.monotonic() + interval
        self._cancelled = False
        self._detached = False  # its final write was left for another thread to commit
        self._released = False
        self._final: tuple[int | None, str | None] = (None, None)

    def __repr__(self) -> str:
        return f"<TaskHandle {self.id}>"

    def update_progress(self, progress: int, message: str | None = None) -> None:
        """Report progress (an int from 0 to 100) and optionally a message.

        Cheap enough to call in a hot loop. Raises TypeError/ValueError for bad values.
        """
        # Fast path: the same report again changes nothing, so costs nothing.
        if progress.__class__ is int and progress == self._progress and (message is None or message == self._message):
            return
        self._report(progress, message)

    def _report(self, progress: int, message: str | None) -> None:
        check_progress(progress)
        check_message(message)
        with self._lock:
            self._progress = progress
            if message is not None:
                self._message = message
            self._dirty = True
            if time.monotonic() >= self._next_write:
                self._write()
                return
        self._pool.flush_later(self)

    def flush_if_due(self) -> None:
        """Write the last report if it is not written yet and its interval is over."""
        with self._lock:
            if self._dirty and time.monotonic() >= self._next_write:
                self._write()

    def _last_report(self) -> tuple[int | None, str | None]:
        """The report not yet written, for the task's final write; no write follows it."""
        with self._lock:
            self._next_write = float("inf")
            if self._dirty:
                self._dirty = False
                self._final = (self._progress, self._message)
            return self._final

    def _write(self) -> None:
        # Called with the lock held, so reports reach the store in order.
        self._dirty = False
        self._next_write = time.monotonic() + self._interval
        try:
            task = self._pool.ledger.transition(self.id, Event.PROGRESS, progress=self._progress, message=self._message)
        except (InvalidTransition, TaskNotFound):
            # Finished or removed behind the task's back (marked DEAD, purged):
            # tell its code to stop, as a cancel request would.
            self._cancelled = True
            return
        except StoreError as exc:
            # Progress can wait: kept for the next write, and the final write carries it anyway.
            self._dirty = True
            log(
                logging.WARNING,
                "progress not written yet, will retry: %s",
                exc,
                task_id=self.id,
                runner=self._pool.runner,
            )
            self._pool.flush_later(self)
            return
        self._see(task)

    def _see(self, task: Task) -> None:
        self._next_poll = time.monotonic() + self._interval
        if task.status is not TaskStatus.RUNNING:
            self._cancelled = True

    @property
    def cancel_requested(self) -> bool:
        """True once cancellation of this task was requested; checks the store at most once an interval."""
        if self._cancelled:
            return True
        if time.monotonic() >= self._next_poll:
            try:
                self._see(self._pool.ledger.read(self.id))
            except TaskNotFound:
                self._cancelled = True
            except StoreError:
                self._next_poll = time.monotonic() + self._interval  # unknown for now: ask again later
        return self._cancelled

    def raise_if_cancelled(self) -> None:
        """Raise TaskCancelled once cancellation was requested; let it propagate to end the task CANCELLED."""
        if self._cancelled or self.cancel_requested:
            raise TaskCancelled(f"task {self.id} was cancelled")

    def _request_cancel(self) -> None:
        self._cancelled = True

    def release(self, message: str) -> None:
        """For a task queue's integration: the queue will run this task again (a retry), so let it go now.

        Writes the task RELEASE (still RUNNING, held by no process, ``message``
        saying why) with its last progress report; the handle writes nothing after
        it. Call it before the queue sends the next attempt's message, so that the
        attempt finds the task free to take. Raises TaskCancelled if a cancel was
        requested (then nothing is written, and the queue should not retry),
        InvalidTransition once the task has finished, TypeError/ValueError for a
        bad message.
        """
        check_message(message)
        self.raise_if_cancelled()
        if self._released:
            return
        progress, _ = self._last_report()
        self._released = True
        self._pool.persist_release(self.id, progress, storable_text(message))


class _Outcome:
    """Set once, when a task of this pool has finished; :meth:`wait` blocks until then.

    A lock held from the start and let go at the end, rather than a
    threading.Event, whose condition variable costs more to make and to set than
    a no-op task costs to run; the pool makes one per task.
    """

    __slots__ = ("_pending", "task")

    def __init__(self) -> None:
        self._pending = threading.Lock()
        self._pending.acquire()
        self.task: Task | None = None

    def set(self) -> None:
        """The task has finished (called once, by the pool)."""
        self._pending.release()

    def wait(self, timeout: float | None) -> bool:
        """Block until set, up to ``timeout`` seconds (None: no limit); whether it was set."""
        if not self._pending.acquire(timeout=-1 if timeout is None else timeout):
            return False
        self._pending.release()  # the next waiter passes too
        return True


class WorkerPool:
    """The tracker's worker threads, started by the first submit(fn), and its progress flusher.

    ``runner`` (``host:pid``) goes into the pool's log records; ``telemetry``
    traces and times each run of a task function.
    """

    def __init__(
        self,
        ledger: TaskLedger,
        max_workers: int,
        interval: float,
        *,
        runner: str | None = None,
        telemetry: Telemetry | None = None,
    ) -> None:
        self.ledger = ledger
        self.runner = runner
        self.telemetry = telemetry
        self._interval = interval
        self._max_workers = max_workers
        # The worker threads and the jobs they take in turn, through one C queue (a
        # ThreadPoolExecutor's future, work item and semaphores per task cost more
        # than running a short task). Started as submitted tasks need them.
        self._jobs: queue.SimpleQueue[_Job | Callable[[], None] | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._shut = False
        self._lock = threading.Lock()
        self._reserved = 0  # workers promised to tasks being inserted RUNNING
        self._started: set[str] = set()  # queued tasks recorded RUNNING already
        self._cancel_early: set[str] = set()  # cancel requested before its worker had its handle
        self._queued: dict[str, bool] = {}  # submitted tasks no worker has taken yet, in order
        # Tasks whose final write another thread commits (see _end), their workers free already.
        self._detached: set[str] = set()
        self._settling = threading.Condition(self._lock)
        self._running: dict[str, TaskHandle] = {}
        self._outcomes: dict[str, _Outcome] = {}
        self._delivered: set[str] = set()  # tasks a queue delivered, running in this process
        # The last snapshots of tasks this pool finished, newest last, for a wait()
        # that comes after the end (submit many, then wait for each).
        self._finished: collections.OrderedDict[str, Task] = collections.OrderedDict()
        self._dirty: set[TaskHandle] = set()
        self._closing_at = float("inf")
        self._cancel_all = False  # close(wait=False): every task that starts from now on is told to stop
        self._stop = threading.Event()
        self._flusher = threading.Thread(target=self._flush_loop, name="tasklib-progress", daemon=True)
        self._flusher.start()

    # -- submitting and waiting ---------------------------------------------

    def reserve(self) -> bool:
        """Whether a worker is free to take a task at once; if so it is promised to it.

        The caller then records the task RUNNING and gives it to :meth:`submit`
        with ``started=True``, or calls :meth:`unreserve` if it cannot.
        """
        with self._lock:
            if self._cancel_all or len(self._outcomes) - len(self._detached) + self._reserved >= self._max_workers:
                return False
            self._reserved += 1
            return True

    def unreserve(self) -> None:
        """Give back the worker :meth:`reserve` promised to a task that was not recorded."""
        with self._lock:
            self._reserved -= 1

    def submit(
        self,
        task_id: str,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        started: bool = False,
    ) -> None:
        """Run ``fn`` for the recorded task; ``started``: it was recorded RUNNING (after :meth:`reserve`).

        Raises TrackerClosed, the task ended unrun, once the pool is shut down.
        """
        with self._lock:
            if started:
                self._reserved -= 1
            if not self._shut:
                if started:
                    self._started.add(task_id)
                self._outcomes[task_id] = _Outcome()
                self._queued[task_id] = True
                self._jobs.put((task_id, fn, args, kwargs))
                # A thread per task under way, up to max_workers: an idle thread takes the next job.
                threads = len(self._threads)
                if threads < self._max_workers and threads < len(self._outcomes):
                    thread = threading.Thread(target=self._work, name=f"tasklib-worker_{threads}")
                    thread.start()
                    self._threads.append(thread)
                return
        # The pool shut down between the task's insert and now.
        self._end_unrun(task_id, started)
        raise TrackerClosed("the tracker is closed")

    def _work(self) -> None:
        """A worker thread: run the submitted tasks, one at a time, until shut down."""
        jobs = self._jobs
        while True:
            try:
                job = jobs.get(timeout=IDLE_LOOK)
            except queue.Empty:
                if threading.main_thread().is_alive():
                    continue
                # The interpreter is exiting with the tracker never closed: like a
                # ThreadPoolExecutor's, the pool takes no new task from now on (a
                # thread other than the main one may still submit), runs what was
                # submitted, and ends (once no final write left to another thread
                # may come back to be written again).
                with self._lock:
                    self._shut = True
                    settled = not self._detached
                if settled and jobs.empty():
                    return
                continue
            if job is None:
                return
            if isinstance(job, tuple):
                self._execute(*job, queued=True)
            else:
                job()  # a final write to make again (see _settled)
            del job  # not kept alive while waiting for the next

    def outcome(self, task_id: str) -> _Outcome | None:
        """The pending outcome of a task this pool runs, or None if it is not (or no longer) ours."""
        return self._outcomes.get(task_id)

    def finished(self, task_id: str) -> Task | None:
        """The final snapshot of a task this pool ran to its end lately, or None.

        A finished task never changes again (only a purge may delete it), so the
        snapshot written at its end is still the task as it is.
        """
        return self._finished.get(task_id)

    def request_cancel(self, task_id: str) -> None:
        """Let a task running here see a cancel request at once, not one poll later."""
        with self._lock:
            handle = self._running.get(task_id)
            if handle is None and task_id in self._started:
                # Recorded RUNNING, its worker not yet holding its handle: told as it starts.
                self._cancel_early.add(task_id)
        if handle is not None:
            handle._request_cancel()

    def flush_later(self, handle: TaskHandle) -> None:
        with self._lock:
            self._dirty.add(handle)

    # -- shutting down --------------------------------------------------------

    def shutdown(self, wait: bool) -> None:
        """Stop the pool. ``wait``: let every submitted task run to its end.

        Otherwise tasks that have not started are cancelled without running, and
        running ones are asked to cancel; either way this returns once every
        worker has stopped.
        """
        self._closing_at = time.monotonic()
        with self._lock:
            self._shut = True  # from now on, no final write is detached
            threads = list(self._threads)
            queued: list[str] = []
            running: list[TaskHandle] = []
            if not wait:
                self._cancel_all = True
                # Taken from the queue here: a worker that meets one of them skips it.
                queued, self._queued = list(self._queued), {}
                running = list(self._running.values())
        if not wait:
            for task_id in queued:
                self._abandon(task_id)
            for handle in running:
                # The request is written first: a task that saw the flag before the
                # store did would find nothing to acknowledge, and end FAILED.
                self._cancel_quietly(handle.id)
                handle._request_cancel()
        with self._settling:
            # Settled by the threads committing them, or put back in the queue for
            # the workers to write: in either case before the workers are told to end.
            self._settling.wait_for(lambda: not self._detached)
        for _ in threads:
            self._jobs.put(None)  # after every job: each thread ends once they have run
        for thread in threads:
            thread.join()
        self._stop.set()
        self._flusher.join()

    def _persist(self, task_id: str, what: str, write: Callable[[], _T]) -> _T | None:
        """``write()``, tried again with backoff while the store refuses it.

        Gives up (None) only once the tracker has been closing for CLOSE_GRACE
        seconds; close() then ends the task itself. A task's outcome is never
        dropped because the store was briefly locked, full or restarting.
        """
        pause = RETRY_FIRST
        while True:
            try:
                return write()
            except StoreError as exc:
                if time.monotonic() - self._closing_at > CLOSE_GRACE:
                    log(
                        logging.ERROR,
                        "gave up writing the %s of task %s at close: %s",
                        what,
                        task_id,
                        exc,
                        task_id=task_id,
                        runner=self.runner,
                    )
                    return None
                log(
                    logging.WARNING,
                    "could not write the %s of task %s, retrying in %.2f s: %s",
                    what,
                    task_id,
                    pause,
                    exc,
                    task_id=task_id,
                    runner=self.runner,
                )
                time.sleep(pause)
                pause = min(pause * 2, RETRY_LONGEST)

    def persist_release(self, task_id: str, progress: int | None, message: str) -> None:
        """Write RELEASE for a running task (see :meth:`TaskHandle.release`), retried while the store refuses it."""
        self._persist(
            task_id,
            "release",
            lambda: self.ledger.transition(task_id, Event.RELEASE, progress=progress, message=message),
        )

    def _abandon(self, task_id: str) -> None:
        with self._lock:
            started = task_id in self._started
            self._started.discard(task_id)
        self._end_unrun(task_id, started)
        self._finish(task_id)

    def _end_unrun(self, task_id: str, started: bool) -> None:
        # A task that will never run ends CANCELLED; one recorded RUNNING must first
        # have its cancel requested, then acknowledged on behalf of the code that never ran.
        self._cancel_quietly(task_id)
        if started:
            with contextlib.suppress(TaskError):
                self.ledger.transition(task_id, Event.ACKNOWLEDGE_CANCEL)

    def _cancel_quietly(self, task_id: str) -> None:
        # Already finished or gone: nothing left to cancel.
        with contextlib.suppress(TaskError):
            self.ledger.transition(task_id, Event.CANCEL)

    # -- running --------------------------------------------------------------

    def _flush_loop(self) -> None:
        # Writes the last report of a task that went quiet within its interval.
        while not self._stop.wait(self._interval):
            with self._lock:
                dirty, self._dirty = self._dirty, set()
            for handle in dirty:
                try:
                    handle.flush_if_due()
                except Exception:
                    log(
                        logging.ERROR,
                        "could not write the progress of task %s",
                        handle.id,
                        task_id=handle.id,
                        runner=self.runner,
                        exc_info=True,
                    )
                if handle._dirty:  # the pool and its handles share this module
                    self.flush_later(handle)

    def run_here(self, task_id: str, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Run a recorded ENQUEUED task's function in the calling thread, to its end."""
        self._execute(task_id, fn, args, kwargs)

    def run_delivered(
        self,
        task_id: str,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        note: str | None = None,
        retrying: Callable[[BaseException], str | None] | None = None,
    ) -> Any:
        """Run in the calling thread a task a queue's worker received; see :func:`tasklib.dispatch.run_delivered`.

        Returns what ``fn`` returned, and raises what it raised, once the outcome
        is recorded. Raises TaskSkipped, without running ``fn``, for a task that
        must not run here.
        """
        with self._lock:
            if task_id in self._delivered:
                raise TaskSkipped(task_id, "it is running in this process already")
            self._delivered.add(task_id)
        try:
            return self._run_delivered(task_id, fn, args, kwargs, note, retrying)
        finally:
            with self._lock:
                self._delivered.discard(task_id)

    def _run_delivered(
        self,
        task_id: str,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        note: str | None,
        retrying: Callable[[BaseException], str | None] | None,
    ) -> Any:
        try:
            task = self._persist(task_id, "start", lambda: self.ledger.claim(task_id))
        except TaskNotFound:
            raise TaskSkipped(task_id, "no such task (purged?)") from None
        if task is None:
            raise TaskSkipped(task_id, "it has finished, or another process holds it")
        if task.status is TaskStatus.CANCEL_REQUESTED:
            # Cancelled while a retry was pending: this attempt never starts.
            with contextlib.suppress(InvalidTransition):
                self._persist(task_id, "cancel", lambda: self.ledger.transition(task_id, Event.ACKNOWLEDGE_CANCEL))
            raise TaskSkipped(task_id, "it was cancelled")
        if note is not None:
            with contextlib.suppress(InvalidTransition):
                self._persist(task_id, "attempt", lambda: self.ledger.transition(task_id, Event.PROGRESS, message=note))
        handle = TaskHandle(self, task_id, self._interval)
        with self._lock:
            self._running[task_id] = handle
        try:
            with task_run(self.telemetry, task_id, self.runner) as run:
                ended, result, error = self._run(handle, fn, args, kwargs, run, retrying)
                run.ended(ended)
        finally:
            with self._lock:
                self._running.pop(task_id, None)
                self._dirty.discard(handle)
        if error is not None:
            raise error
        return result

    def _execute(
        self,
        task_id: str,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        queued: bool = False,
    ) -> None:
        """Run a recorded task's function to its end; ``queued``: a worker took it from the queue."""
        handle: TaskHandle | None = None
        with self._lock:
            if queued and not self._queued.pop(task_id, False):
                return  # shutdown(wait=False) took it first, and ends it unrun
            recorded_running = task_id in self._started
        try:
            if not recorded_running:
                try:
                    started = self._persist(task_id, "start", lambda: self.ledger.transition(task_id, Event.START))
                except (InvalidTransition, TaskNotFound):
                    return  # cancelled (or removed) before it started: it never runs
                if started is None:
                    return  # the store refused the start until close: close() ends the task unrun
            handle = TaskHandle(self, task_id, self._interval)
            with self._lock:
                self._running[task_id] = handle
                self._started.discard(task_id)
                cancelled_early = task_id in self._cancel_early
                self._cancel_early.discard(task_id)
                # Started after close(wait=False) looked for running tasks: stop it as those were.
                stop_now = self._cancel_all
            if cancelled_early:
                handle._request_cancel()
            if stop_now:
                self._cancel_quietly(task_id)
                handle._request_cancel()
            with task_run(self.telemetry, task_id, self.runner) as run:
                run.ended(self._run(handle, fn, args, kwargs, run, detach=queued)[0])
        except BaseException:
            # Nothing a task does may kill a worker: even a failed store write ends here.
            log(
                logging.ERROR,
                "worker failed while running task %s",
                task_id,
                task_id=task_id,
                runner=self.runner,
                exc_info=True,
            )
        finally:
            if handle is None or not handle._detached:
                self._finish(task_id)

    def _finish(self, task_id: str) -> None:
        with self._lock:
            if task_id in self._detached:
                self._undetach(task_id)
            # Not running any more (if it ran): its handle goes with the outcome, under one lock.
            handle = self._running.pop(task_id, None)
            if handle is not None:
                self._dirty.discard(handle)
            outcome = self._outcomes.get(task_id)
            if outcome is not None and outcome.task is not None and outcome.task.status.is_terminal:
                # Kept before its outcome goes: wait() looks at both without the lock,
                # and must find the task in one of them.
                self._finished[task_id] = outcome.task
                if len(self._finished) > REMEMBERED_FINISHED:
                    self._finished.popitem(last=False)
            self._outcomes.pop(task_id, None)
        if outcome is not None:
            outcome.set()

    def _run(
        self,
        handle: TaskHandle,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        run: TaskRun,
        retrying: Callable[[BaseException], str | None] | None = None,
        *,
        detach: bool = False,
    ) -> tuple[TaskStatus | None, Any, BaseException | None]:
        """Run the task's function and record how it ended.

        Returns the status its end was recorded with (None if it could not be, or
        it was released), what the function returned, and what it raised (None if
        nothing). ``retrying(exc)`` gives the message of a task its queue will run
        again after ``exc``: it is then released, RUNNING, rather than ended.
        ``detach``: a COMPLETE or FAIL may be left for another thread to commit
        (see :meth:`_end`); the status returned is then the one being written.
        """
        task_id = handle.id
        token = _current.set(handle)
        try:
            result = fn(*args, **kwargs)
            if result is not None and inspect.isawaitable(result):
                import asyncio  # here: only coroutine tasks need it, and it is slow to import

                result = asyncio.run(_await(result))
        except TaskCancelled as exc:
            return self._end_cancelled(handle, exc), None, exc
        except BaseException as exc:
            note = None
            if retrying is not None:
                try:
                    note = retrying(exc)
                except Exception:  # the queue's hook failed: the attempt's own error decides
                    log(
                        logging.ERROR,
                        "could not tell whether task %s will be retried",
                        task_id,
                        task_id=task_id,
                        exc_info=True,
                    )
            if note is not None:
                if handle._released:
                    return None, None, exc  # let go before the queue sent the next attempt
                if handle.cancel_requested:
                    # Asked to stop: the pending retry will find the task finished.
                    return self._end_cancelled(handle, TaskCancelled(f"task {task_id} was cancelled")), None, exc
                self._end(handle, Event.RELEASE, message=storable_text(note))
                return None, None, exc
            # The task's own failure, recorded as its outcome: for the operator a
            # warning with the traceback, not an error of tasklib or the host.
            ordinary = isinstance(exc, Exception)
            level = logging.WARNING if ordinary else logging.ERROR
            log(level, "task %s failed", task_id, task_id=task_id, runner=self.runner, exc_info=exc)
            run.failed(exc)
            return self._end(handle, Event.FAIL, detach=detach, message=describe(exc)), None, exc
        finally:
            _current.reset(token)
        try:
            encoded = encode_result(result)
        except (TypeError, ValueError) as exc:
            message = f"the task returned a {type(result).__name__}, which cannot be stored as JSON: {exc}"
            log(logging.WARNING, "task %s failed: %s", task_id, message, task_id=task_id, runner=self.runner)
            return self._end(handle, Event.FAIL, detach=detach, message=storable_text(message)), result, None
        return self._end(handle, Event.COMPLETE, detach=detach, result=encoded), result, None

    def _end_cancelled(self, handle: TaskHandle, exc: TaskCancelled) -> TaskStatus | None:
        try:
            return self._end(handle, Event.ACKNOWLEDGE_CANCEL, quiet=False)
        except InvalidTransition as refused:
            if refused.status is TaskStatus.RUNNING:
                # TaskCancelled raised with no cancel request: the task gave up on its own.
                return self._end(handle, Event.FAIL, message=describe(exc))
            return None

    def _end(
        self, handle: TaskHandle, event: Event, *, quiet: bool = True, detach: bool = False, **data: Any
    ) -> TaskStatus | None:
        """Record how the task ended, with its last progress report in the same write; the status it was recorded with.

        ``detach``: while another thread of this process is committing a write, a
        COMPLETE or FAIL is queued behind it and this returns at once, the status
        being written; the worker is free for its next task, and the task's
        outcome is settled when that thread has committed it (see
        :meth:`_settled`). The pool's own workers detach; the caller of
        :meth:`run_here` and a queue's worker wait, as their callers expect the
        outcome recorded when they return.
        """
        progress, message = handle._last_report()
        data.setdefault("message", message)
        data.setdefault("progress", progress)
        if detach and self._detach(handle, event, data):
            return _ENDS[event]
        task = self._record_end(handle.id, event, quiet, data)
        return None if task is None else task.status

    def _detach(self, handle: TaskHandle, event: Event, data: dict[str, Any]) -> bool:
        """Leave the task's end to the thread committing a write now, if one is (see :meth:`_end`); whether it was."""
        task_id = handle.id
        with self._lock:
            if self._shut:  # shutdown() waits only for the ends detached before it began
                return False
            self._detached.add(task_id)
        settled = functools.partial(self._settled, task_id, event, data)
        try:
            handle._detached = self.ledger.transition_detached(task_id, event, settled, **data)
        finally:
            if not handle._detached:
                with self._lock:
                    self._undetach(task_id)
        return handle._detached

    def _undetach(self, task_id: str) -> None:
        # Under the lock. shutdown() may be waiting for the last one to go.
        self._detached.discard(task_id)
        if not self._detached:
            self._settling.notify_all()

    def _record_end(self, task_id: str, event: Event, quiet: bool, data: dict[str, Any]) -> Task | None:
        """Write the task's end, tried again while the store refuses it; the task as written, or None if it could not be."""
        try:
            task = self._persist(task_id, "outcome", lambda: self.ledger.transition(task_id, event, **data))
        except (InvalidTransition, TaskNotFound) as exc:
            if not quiet and isinstance(exc, InvalidTransition):
                raise
            log(
                logging.WARNING,
                "task %s ended, but could not be recorded: %s",
                task_id,
                exc,
                task_id=task_id,
                runner=self.runner,
            )
            return None
        if task is None:
            return None
        outcome = self._outcomes.get(task_id)
        if outcome is not None:
            outcome.task = task
        return task

    def _settled(self, task_id: str, event: Event, data: dict[str, Any], task: Task | None) -> None:
        """A detached final write was committed (``task``), or not (None); on the thread that committed it.

        Not written: a worker makes it again, the way it makes any final write,
        retrying while the store refuses it (shutdown() waits for that too).
        """
        if task is None:
            self._jobs.put(functools.partial(self._end_again, task_id, event, data))
            return
        outcome = self._outcomes.get(task_id)
        if outcome is not None:
            outcome.task = task
        self._finish(task_id)

    def _end_again(self, task_id: str, event: Event, data: dict[str, Any]) -> None:
        try:
            self._record_end(task_id, event, True, data)
        except BaseException:
            log(
                logging.ERROR,
                "worker failed while recording the end of task %s",
                task_id,
                task_id=task_id,
                runner=self.runner,
                exc_info=True,
            )
        finally:
            self._finish(task_id)


def describe(exc: BaseException) -> str:
    """``"ExceptionType: text"`` for a task's message, in a form every store can hold.

    An exception whose ``str()`` itself raises is named by its type alone; lone
    surrogates and NUL characters are written as escapes.
    """
    try:
        text = str(exc)
    except Exception:
        text = "(its message could not be read)"
    name = type(exc).__name__
    return storable_text(f"{name}: {text}" if text else name)


async def _await(awaitable: Any) -> Any:
    return await awaitable
