"""Change notifications: waking the callers that wait for a task the moment it changes.

A :class:`ChangeFeed` belongs to one tracker. Every committed write of tasks by
that tracker's store wakes the waiters of the task written at once. Writes by
other processes are heard through the store's :class:`~tasklib.storage.ChangeProbe`
(``PRAGMA data_version`` on SQLite, LISTEN/NOTIFY on PostgreSQL), looked at by one
thread per feed, and only while somebody waits: when the probe says the store
changed, one read of the versions of the watched tasks decides whose waiters wake.
So an idle waiter costs a registration, never a read per write.

The feed also holds the hooks of :meth:`tasklib.TaskTracker.on_change`.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator

from .errors import StoreError
from .storage import PROBE_INTERVAL, ChangeProbe, Store, Version
from .task import Task
from .telemetry import log

__all__ = ["ChangeFeed", "HookHandle", "Watch", "version_of"]

#: Seconds the listening thread stays once nobody waits, so a caller that waits
#: again at once finds it still running.
LINGER = 1.0


def version_of(task: Task) -> Version:
    """What tells this snapshot of a task from the next: (status, last update, progress)."""
    return (task.status.value, task.last_update, task.progress)


class Watch:
    """One waiter's interest in one task: ``wake`` is called when the task may have changed.

    ``seen`` is the version the waiter last read; a change heard from another
    process wakes it only when the task's version differs.
    """

    __slots__ = ("_wake", "key", "seen")

    def __init__(self, key: int, wake: Callable[[], None]) -> None:
        self.key = key
        self.seen: Version | None = None
        self._wake = wake

    def wake(self) -> None:
        try:
            self._wake()
        except Exception:
            # A waiter whose event loop has closed: nobody is left to wake.
            log(logging.DEBUG, "could not wake a waiter of task %s", self.key, task_id=str(self.key), exc_info=True)


class HookHandle:
    """What :meth:`tasklib.TaskTracker.on_change` returns: :meth:`remove` unregisters the hook."""

    def __init__(self, feed: ChangeFeed, callback: Callable[[Task], object]) -> None:
        self._feed = feed
        self.callback = callback

    def remove(self) -> None:
        """Unregister the hook; it is not called for changes made after this returns. Idempotent."""
        self._feed.remove_hook(self.callback)

    def __enter__(self) -> HookHandle:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.remove()


class ChangeFeed:
    """The change notifications of one tracker's store (see the module's description).

    The listening thread starts with the first waiter, never before, and ends
    :data:`LINGER` seconds after the last one left, or at :meth:`close`.
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._watches: dict[int, set[Watch]] = {}
        # Replaced, never changed in place: a write reads them without the lock.
        self._hooks: tuple[Callable[[Task], object], ...] = ()
        self._observers: tuple[Callable[[Task], object], ...] = ()
        self._announced: tuple[Callable[[Task], object], ...] = ()  # the observers, then the hooks
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._probe: ChangeProbe | None = None
        self._closed = False

    # -- waiters ------------------------------------------------------------

    @contextlib.contextmanager
    def watching(self, key: int, wake: Callable[[], None]) -> Iterator[Watch]:
        """Register a waiter for task ``key`` while the block runs; ``wake()`` is called on its changes.

        ``wake`` is called from the thread that wrote, or from the listening
        thread: it must be quick and thread-safe (set an Event, or hand over to an
        event loop with ``call_soon_threadsafe``).
        """
        watch = Watch(key, wake)
        with self._lock:
            self._watches.setdefault(key, set()).add(watch)
            self._start_listening()
        try:
            yield watch
        finally:
            with self._lock:
                watches = self._watches.get(key)
                if watches is not None:
                    watches.discard(watch)
                    if not watches:
                        del self._watches[key]

    def changed(self, key: int | None) -> None:
        """A write of this process committed: wake the waiters of task ``key`` (all of them for None)."""
        if not self._watches:
            # Nobody waits: most writes. Read without the lock, which is safe: a
            # waiter registers before it reads the task, so a write this misses
            # committed before that read, which sees it.
            return
        with self._lock:
            if key is None:
                woken = [w for watches in self._watches.values() for w in watches]
            else:
                woken = list(self._watches.get(key, ()))
        for watch in woken:
            watch.wake()

    @property
    def waiters(self) -> int:
        """How many waiters are registered now."""
        with self._lock:
            return sum(len(watches) for watches in self._watches.values())

    # -- hooks --------------------------------------------------------------

    def add_hook(self, callback: Callable[[Task], object]) -> HookHandle:
        """Register ``callback``; a callback registered twice is called twice."""
        with self._lock:
            self._hooks = (*self._hooks, callback)
            self._announced = self._observers + self._hooks
        return HookHandle(self, callback)

    def remove_hook(self, callback: Callable[[Task], object]) -> bool:
        """Unregister one registration of ``callback``; False if it was not registered."""
        with self._lock:
            hooks = list(self._hooks)
            try:
                hooks.remove(callback)
            except ValueError:
                return False
            self._hooks = tuple(hooks)
            self._announced = self._observers + self._hooks
            return True

    def observe(self, callback: Callable[[Task], object]) -> None:
        """Call ``callback`` with each announced change, before the hooks: tasklib's own, not a host's hook.

        It must be quick and safe on any thread (it may run on the thread that
        committed another thread's write), and is not listed in :attr:`hooks`.
        """
        with self._lock:
            self._observers = (*self._observers, callback)
            self._announced = self._observers + self._hooks

    def hooked(self) -> bool:
        """Whether a host's hook is registered (observers aside): its changes must be announced in their own thread."""
        return bool(self._hooks)

    @property
    def hooks(self) -> list[Callable[[Task], object]]:
        """The registered callbacks, in order.

        Read without the lock: in a forked child the lock may be held by a thread
        of the parent that no longer exists (the tuple is replaced, never changed).
        """
        return list(self._hooks)

    def announce(self, task: Task) -> None:
        """Call every hook with ``task``, a snapshot after a status change this process wrote.

        A hook that raises is logged and the others still run; the write stays.
        """
        # Without the lock: the tuple is replaced, never changed in place. A hook
        # added meanwhile misses this change only.
        for hook in self._announced:
            try:
                hook(task)
            except Exception:
                log(logging.ERROR, "an on_change hook failed for task %s", task.id, task_id=task.id, exc_info=True)

    # -- the listening thread -------------------------------------------------

    def _start_listening(self) -> None:
        # Under self._lock.
        if self._thread is not None or self._closed:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._listen, name="tasklib-changes", daemon=True)
        self._thread.start()

    def _listen(self) -> None:
        idle = 0.0
        while not self._stop.is_set():
            with self._lock:
                if self._watches:
                    idle = 0.0
                elif idle >= LINGER:
                    # Nobody waits: let the probe's connection go too, or PostgreSQL
                    # would keep queueing notifications for a listener that never reads.
                    self._thread = None
                    probe, self._probe = self._probe, None
                    if probe is not None:
                        probe.close()
                    return
                if self._probe is None:
                    self._probe = self._store.change_probe()
                probe = self._probe
            if probe is None:  # an in-memory store: only this process writes it
                self._stop.wait(PROBE_INTERVAL)
            elif probe.wait(PROBE_INTERVAL):
                began = time.monotonic()
                self._recheck()
                # At most one recheck per interval, however often others write: the
                # notifications meanwhile are taken together by the next look.
                self._stop.wait(max(0.0, began + PROBE_INTERVAL - time.monotonic()))
            idle += PROBE_INTERVAL

    def _recheck(self) -> None:
        """The store may have changed: wake the waiters whose task is not as they last saw it."""
        with self._lock:
            watches = [w for ws in self._watches.values() for w in ws]
        if not watches:
            return
        try:
            versions = self._store.versions({w.key for w in watches})
        except StoreError as exc:
            log(logging.DEBUG, "could not read the versions of watched tasks: %s", exc)
            return  # the waiters' own reads find out soon enough
        for watch in watches:
            if watch.seen is None or versions.get(watch.key) != watch.seen:
                watch.wake()

    def close(self) -> None:
        """Stop the listening thread, close the probe, and wake every waiter (their next read fails)."""
        with self._lock:
            self._closed = True
            thread = self._thread
        self._stop.set()
        if thread is not None:
            thread.join()
        with self._lock:
            self._thread = None
            probe, self._probe = self._probe, None
        if probe is not None:
            probe.close()
        self.changed(None)
