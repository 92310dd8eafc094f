"""The asyncio face of tasklib: :class:`AsyncTaskTracker`.

Every method awaits the same method of a :class:`~tasklib.TaskTracker` run on a
few threads of the async tracker's own, so the rules, arguments, results and
errors are the sync tracker's, and a store that waits for a lock, a network or a
disk never blocks the event loop. Waiting (:meth:`AsyncTaskTracker.wait`,
:meth:`AsyncTaskTracker.watch`) takes no thread: the tracker's change
notifications wake the waiting coroutine through the loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import functools
import inspect
import queue
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from .checks import parse_id
from .clock import Instant, seconds
from .errors import TrackerClosed
from .notify import HookHandle, version_of
from .status import TaskStatus
from .storage import DEFAULT_DURABILITY, DEFAULT_POOL_SIZE, DEFAULT_POOL_TIMEOUT
from .task import Task
from .telemetry import Telemetry
from .tracker import DEFAULT_RETENTION, RECHECK, TaskTracker

if TYPE_CHECKING:
    from apscheduler.schedulers.base import BaseScheduler
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider

    from .storage import StoreTarget

__all__ = ["CALL_THREADS", "SETTLE_BATCH", "AsyncTaskTracker", "CallThreads"]

#: The threads an async tracker runs its store calls on. Few: a call holds one
#: only while the store answers, and waiting for a task holds none.
CALL_THREADS = 4
#: Seconds between two looks of a worker thread, running an ``async def`` task
#: function on the host's loop, at whether that loop has closed under it.
LOOP_CHECK = 0.5

#: The most results one turn of the loop settles: a burst of results (a lock let
#: go after 1,000 calls waited for it) is spread over several turns.
SETTLE_BATCH = 64

R = TypeVar("R")


_Outcome = tuple["asyncio.Future[Any]", Any, "BaseException | None"]


class _Mailbox:
    """The results the call threads hand back, by loop; the first of a batch wakes its loop."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ready: dict[asyncio.AbstractEventLoop, list[_Outcome]] = {}

    def waiting(self, loop: asyncio.AbstractEventLoop) -> int:
        with self._lock:
            return len(self._ready.get(loop, ()))

    def post(self, loop: asyncio.AbstractEventLoop, outcome: _Outcome) -> None:
        with self._lock:
            batch = self._ready.get(loop)
            if batch is None:
                self._ready[loop] = [outcome]
            else:
                batch.append(outcome)
        if batch is None:  # the first of a batch: the loop must come and take it
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody awaits it now
                loop.call_soon_threadsafe(self._settle, loop)

    def _settle(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            ready = self._ready.get(loop, [])
            batch = ready[:SETTLE_BATCH]
            if len(ready) > SETTLE_BATCH:
                # The rest on the loop's next turn: its timers and I/O come between.
                del ready[:SETTLE_BATCH]
                loop.call_soon(self._settle, loop)
            else:
                self._ready.pop(loop, None)
        for future, result, error in batch:
            if future.cancelled():
                continue  # its awaiter was cancelled; the call itself ran to its end
            if error is None:
                future.set_result(result)
            else:
                future.set_exception(error)


def _serve(calls: queue.SimpleQueue[tuple[Any, ...] | None], mailbox: _Mailbox) -> None:
    """A call thread: run the calls handed over until told to stop."""
    while True:
        item = calls.get()
        if item is None:
            return
        loop, future, fn = item
        outcome: _Outcome
        try:
            outcome = (future, fn(), None)
        except BaseException as exc:
            outcome = (future, None, exc)
        mailbox.post(loop, outcome)
        del item, outcome, future, fn  # not kept alive while waiting for the next call


def _stop_threads(calls: queue.SimpleQueue[tuple[Any, ...] | None], threads: list[threading.Thread]) -> None:
    for _ in threads:
        calls.put(None)


class CallThreads:
    """The threads that run an async tracker's store calls, handed over from the loop and back.

    Cheaper than ``loop.run_in_executor`` where it counts, on a short read: a call
    goes in through one C queue, and results go back to each loop in batches (the
    first result of a batch wakes the loop; those that come before it runs are
    taken by the same turn), not one wake-up of the loop per call. The threads
    start with the first call and end at :meth:`shutdown`, or once this object is
    garbage (a tracker never closed). A call whose future was cancelled still runs
    to its end; its result is dropped.
    """

    def __init__(self, size: int, name: str) -> None:
        self._size = size
        self._name = name
        self._queue: queue.SimpleQueue[tuple[Any, ...] | None] = queue.SimpleQueue()
        self._mailbox = _Mailbox()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        # The threads hold the queue and the mailbox, never this object.
        self._stop = weakref.finalize(self, _stop_threads, self._queue, self._threads)

    def submit(self, loop: asyncio.AbstractEventLoop, fn: Callable[[], R]) -> asyncio.Future[R]:
        """Run ``fn()`` on a call thread; a future of ``loop`` gets its result. RuntimeError once shut down."""
        if not self._stop.alive:
            raise RuntimeError("the call threads are shut down")
        future: asyncio.Future[R] = loop.create_future()
        if len(self._threads) < self._size:
            self._start_threads()
        self._queue.put((loop, future, fn))
        return future

    def _start_threads(self) -> None:
        with self._lock:
            if not self._stop.alive:
                raise RuntimeError("the call threads are shut down")
            while len(self._threads) < self._size:
                name = f"{self._name}_{len(self._threads)}"
                thread = threading.Thread(target=_serve, args=(self._queue, self._mailbox), name=name, daemon=True)
                thread.start()
                self._threads.append(thread)

    def waiting(self, loop: asyncio.AbstractEventLoop) -> int:
        """How many results of calls already run wait for ``loop`` to take them."""
        return self._mailbox.waiting(loop)

    def shutdown(self) -> None:
        """Let the threads end once the calls already handed over have run; later calls raise RuntimeError."""
        with self._lock:
            self._stop()  # once only


class AsyncTaskTracker:
    """A :class:`~tasklib.TaskTracker` for asyncio hosts: the same methods, awaited.

    Takes the same arguments as :class:`~tasklib.TaskTracker` and keeps its rules:
    each method awaits the sync tracker's method of the same name, run on one of
    :data:`CALL_THREADS` threads of this tracker's own, and returns or raises what
    it does. Construction does no I/O: the store is opened by the first awaited
    call (or :meth:`open`, or ``async with``), which is also when a bad option
    raises its TypeError/ValueError, or StoreError. A call whose awaiting
    coroutine is cancelled still runs to its end in its thread.

    ``async with AsyncTaskTracker(...) as tracker`` opens and closes it.
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
        self._database = database
        # Handed as they are to the TaskTracker, which checks them.
        self._options: dict[str, Any] = {
            "base_url": base_url,
            "retention": retention,
            "is_admin": is_admin,
            "max_workers": max_workers,
            "progress_interval": progress_interval,
            "scheduler": scheduler,
            "purge_interval": purge_interval,
            "heartbeat_interval": heartbeat_interval,
            "dead_after": dead_after,
            "stale_after": stale_after,
            "name": name,
            "pool_size": pool_size,
            "pool_timeout": pool_timeout,
            "durability": durability,
            "tracer_provider": tracer_provider,
            "meter_provider": meter_provider,
        }
        self._tracker: TaskTracker | None = None
        self._lock = threading.Lock()
        self._calls = CallThreads(CALL_THREADS, "tasklib-async")
        self._closed = False

    # -- the one way into the sync tracker -----------------------------------

    def _sync(self) -> TaskTracker:
        # On a call thread: the store is opened here, never on the loop.
        with self._lock:
            if self._tracker is None:
                self._tracker = TaskTracker(self._database, **self._options)
            return self._tracker

    async def _call(self, method: Callable[..., R], /, *args: Any, **kwargs: Any) -> R:
        """``method(sync_tracker, *args, **kwargs)`` on a call thread, in a copy of the caller's context."""

        def run() -> R:
            return method(self._sync(), *args, **kwargs)

        loop = asyncio.get_running_loop()
        context = contextvars.copy_context()
        try:
            future = self._calls.submit(loop, functools.partial(context.run, run))
        except RuntimeError:  # the call threads are gone
            raise TrackerClosed("the tracker is closed") from None
        return await future

    @property
    def base_url(self) -> str | None:
        """The ``base_url`` this tracker was given (a task's ``self`` is it plus the id)."""
        base_url: str | None = self._options["base_url"]
        return base_url

    @property
    def tracker(self) -> TaskTracker:
        """The sync :class:`~tasklib.TaskTracker` behind this one (for the web adapters and tests).

        Raises RuntimeError before the first awaited call has opened it.
        """
        tracker = self._tracker
        if tracker is None:
            raise RuntimeError("the AsyncTaskTracker opens its store at its first awaited call; await open() first")
        return tracker

    @property
    def telemetry(self) -> Telemetry | None:
        """The sync tracker's OpenTelemetry spans and metrics; None before it is opened or without the API."""
        tracker = self._tracker
        return None if tracker is None else tracker.telemetry

    # -- lifecycle --------------------------------------------------------------

    async def open(self) -> AsyncTaskTracker:
        """Open the store and start the tracker, as :meth:`tasklib.TaskTracker.open`. Returns the tracker."""
        await self._call(TaskTracker.open)
        return self

    async def close(self, wait: bool = True) -> None:
        """Close the tracker as :meth:`tasklib.TaskTracker.close` does, then end the call threads.

        Calling it again does nothing.
        """
        if self._closed:
            return
        with self._lock:
            tracker = self._tracker
        try:
            if tracker is not None:
                await self._call(TaskTracker.close, wait)
        finally:
            self._closed = True
            self._calls.shutdown()

    async def __aenter__(self) -> AsyncTaskTracker:
        return await self.open()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- writing ------------------------------------------------------------------

    async def submit(
        self,
        fn: Callable[..., object] | None = None,
        /,
        *args: Any,
        description: str | None = None,
        submitted_by: int = 0,
        **kwargs: Any,
    ) -> Task:
        """Record a new task and return it; with ``fn``, also run it, as :meth:`tasklib.TaskTracker.submit`.

        An ``async def`` function runs on the event loop that awaited this call
        (the host's own), while one of the tracker's worker threads keeps its
        place, so ``max_workers`` bounds how many run at once;
        :func:`tasklib.current_task` works in it and in what it awaits. It must
        not block the loop itself. A plain function runs on a worker thread. If the
        loop closes before the function ends, the task ends FAILED.
        Raises what :meth:`tasklib.TaskTracker.submit` raises.
        """
        if fn is not None and _is_async(fn):
            fn = functools.partial(_run_on_loop, asyncio.get_running_loop(), fn)
        return await self._call(
            TaskTracker.submit, fn, *args, description=description, submitted_by=submitted_by, **kwargs
        )

    async def start(self, task_id: str) -> Task:
        """See :meth:`tasklib.TaskTracker.start`."""
        return await self._call(TaskTracker.start, task_id)

    async def update_progress(self, task_id: str, progress: int, message: str | None = None) -> Task:
        """See :meth:`tasklib.TaskTracker.update_progress`."""
        return await self._call(TaskTracker.update_progress, task_id, progress, message)

    async def complete(self, task_id: str, result: Any = None, *, message: str | None = None) -> Task:
        """See :meth:`tasklib.TaskTracker.complete`."""
        return await self._call(TaskTracker.complete, task_id, result, message=message)

    async def fail(self, task_id: str, message: str | None = None, *, result: Any = None) -> Task:
        """See :meth:`tasklib.TaskTracker.fail`."""
        return await self._call(TaskTracker.fail, task_id, message, result=result)

    async def acknowledge_cancel(self, task_id: str, message: str | None = None) -> Task:
        """See :meth:`tasklib.TaskTracker.acknowledge_cancel`."""
        return await self._call(TaskTracker.acknowledge_cancel, task_id, message)

    async def mark_dead(self, task_id: str, message: str) -> Task:
        """See :meth:`tasklib.TaskTracker.mark_dead`."""
        return await self._call(TaskTracker.mark_dead, task_id, message)

    async def cancel(self, task_id: str, *, as_user: int | None = None) -> Task:
        """See :meth:`tasklib.TaskTracker.cancel`."""
        return await self._call(TaskTracker.cancel, task_id, as_user=as_user)

    async def purge(self, now: Instant | None = None, *, dry_run: bool = False) -> int:
        """See :meth:`tasklib.TaskTracker.purge`."""
        return await self._call(TaskTracker.purge, now, dry_run=dry_run)

    async def sweep(self, now: Instant | None = None) -> int:
        """See :meth:`tasklib.TaskTracker.sweep`."""
        return await self._call(TaskTracker.sweep, now)

    # -- reading ----------------------------------------------------------------

    async def get(self, task_id: str, *, as_user: int | None = None) -> Task:
        """See :meth:`tasklib.TaskTracker.get`."""
        return await self._call(TaskTracker.get, task_id, as_user=as_user)

    async def list(
        self,
        status: TaskStatus | str | None = None,
        submitted_by: int | None = None,
        limit: int = 50,
        after: str | None = None,
    ) -> list[Task]:
        """See :meth:`tasklib.TaskTracker.list`."""
        return await self._call(TaskTracker.list, status, submitted_by, limit, after)

    async def is_admin(self, user: int) -> bool:
        """See :meth:`tasklib.TaskTracker.is_admin` (the host's rule may look the user up)."""
        return await self._call(TaskTracker.is_admin, user)

    async def on_change(self, callback: Callable[[Task], object], *, remove: bool = False) -> HookHandle:
        """See :meth:`tasklib.TaskTracker.on_change`.

        The callback runs in the thread that wrote: one of this tracker's call
        threads, or a worker thread; to touch the loop's objects from it, use
        ``loop.call_soon_threadsafe``.
        """
        return await self._call(TaskTracker.on_change, callback, remove=remove)

    async def wait(self, task_id: str, timeout: float | None = None) -> Task:
        """Wait until the task has finished and return it, as :meth:`tasklib.TaskTracker.wait`.

        Holds no thread while it waits: the change itself wakes it. Raises
        TimeoutError, TaskNotFound, TypeError/ValueError, TrackerClosed.
        """
        last: Task | None = None
        async for snapshot in self.watch(task_id, timeout):
            last = snapshot
        assert last is not None  # the snapshots end with a terminal one, or raise
        return last

    def watch(self, task_id: str, timeout: float | None = None) -> AsyncIterator[Task]:
        """The task's snapshots as it changes, as :meth:`tasklib.TaskTracker.watch`: ``async for`` over it.

        Bad arguments raise here (TaskNotFound for an id that cannot be a task's,
        TypeError/ValueError for a bad timeout); iterating raises TimeoutError,
        TaskNotFound, TrackerClosed. Holds no thread while it waits.
        """
        limit = seconds(timeout, "timeout")
        key = parse_id(task_id)
        return self._snapshots(task_id, key, limit)

    async def _snapshots(self, task_id: str, key: int, timeout: float | None) -> AsyncIterator[Task]:
        deadline = None if timeout is None else time.monotonic() + timeout
        tracker = await self._call(_opened)
        loop = asyncio.get_running_loop()
        changed = asyncio.Event()

        def wake() -> None:
            loop.call_soon_threadsafe(changed.set)

        with tracker.changes.watching(key, wake) as watch:
            last = None
            while True:
                changed.clear()  # before the read: a change during it sets the event again
                task = await self._call(TaskTracker.get, task_id)
                watch.seen = version_of(task)
                if watch.seen != last:
                    last = watch.seen
                    yield task
                if task.status.is_terminal:
                    return
                remaining = RECHECK if deadline is None else deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"task {task_id} did not finish within {timeout} s")
                # Past the pause, read again: the deadline, or a task whose runner went silent.
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(changed.wait(), min(remaining, RECHECK))


def _opened(tracker: TaskTracker) -> TaskTracker:
    return tracker


def _is_async(fn: Callable[..., object]) -> bool:
    """Whether calling ``fn`` gives a coroutine: an ``async def`` function, method, partial or callable object."""
    call = getattr(fn, "__call__", None)  # noqa: B004 - the object's own __call__, for callable instances
    return inspect.iscoroutinefunction(fn) or (call is not None and inspect.iscoroutinefunction(call))


def _run_on_loop(loop: asyncio.AbstractEventLoop, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """On a worker thread: run ``fn(*args, **kwargs)`` on ``loop`` and give back its result or raise its error.

    The coroutine is handed over in this thread's context, which holds the
    task's :func:`tasklib.current_task`: the loop runs it in a copy of that context.
    """

    async def run() -> Any:
        return await fn(*args, **kwargs)

    try:
        future = asyncio.run_coroutine_threadsafe(run(), loop)
    except RuntimeError:
        raise RuntimeError("the event loop that submitted this task has closed") from None
    while not concurrent.futures.wait([future], LOOP_CHECK).done:
        if loop.is_closed() or not loop.is_running():
            future.cancel()
            raise RuntimeError("the event loop that submitted this task stopped before it ended")
    return future.result()
