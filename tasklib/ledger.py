"""One tracker's reads and writes of its tasks, as :class:`~tasklib.task.Task` snapshots.

Every read is reconciled with liveness first, so a reader never sees a dead
task alive; every write is one event, applied by the store as a compare-and-set.
The worker pool works through a :class:`Ledger` (see
:class:`tasklib.workers.TaskLedger`), also while its tracker closes.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable
from typing import Any

from .checks import parse_id
from .clock import now_ms
from .errors import InvalidTransition, StoreError, TaskNotCancellable, TaskNotFound
from .liveness import Liveness
from .status import STATUS_BY_VALUE, TRANSITIONS, UNFINISHED, Event, TaskStatus, writes
from .storage import ROW_WIDTH, Heartbeat, Record, Store
from .task import Task

__all__ = ["Ledger"]

#: How often a compare-and-set write that lost a race is tried again. Statuses only
#: move forward, so a handful of misses means the store keeps refusing, not a race.
CAS_ATTEMPTS = 8

#: How many recent starts a ledger remembers, to tell a progress report that started
#: a task from one in the same millisecond after the start.
REMEMBERED_STARTS = 1024

#: The events that write a task and keep its status.
_KEEPING = frozenset({Event.PROGRESS, Event.RELEASE})
_RUNNING = TaskStatus.RUNNING.value


class Ledger:
    """The tasks of one store, read and written on behalf of one runner.

    ``url_prefix`` is prefixed to a task's id to make its ``url``. ``announce`` is
    called with the snapshot after each status change this ledger writes (a new
    task, a transition, a task found dead on reading) and after each task its
    liveness rounds make DEAD in bulk (a sweep, a vanished neighbour, this
    runner's burial at close), in the writing thread. ``hooked()`` tells whether
    ``announce`` calls a host's hooks now, which must run in the thread whose
    write it announces (None: always assume so).
    """

    def __init__(
        self,
        store: Store,
        liveness: Liveness,
        *,
        url_prefix: str,
        announce: Callable[[Task], None] | None = None,
        hooked: Callable[[], bool] | None = None,
    ) -> None:
        self.store = store
        self.liveness = liveness
        self.url_prefix = url_prefix
        self.announce = announce
        self._hooked = hooked
        self._lock = threading.Lock()
        self._started: collections.OrderedDict[int, int] = collections.OrderedDict()
        liveness.buried = self.announce_buried

    def announce_buried(self, records: list[Record], now: int) -> None:
        """Announce each task a liveness round made DEAD (``records``, as written at ``now``)."""
        if self.announce is None:
            return
        for record in records:
            self.announce(self.task(record, now))

    def _moved(self, event: Event, record: Record, now: int) -> bool:
        """Whether the write of ``event`` that gave ``record`` at ``now`` changed the task's status."""
        if record.status != _RUNNING:
            return event not in _KEEPING  # progress and release keep CANCEL_REQUESTED
        if event is Event.START:
            self._remember_start(record.id, now)
            return True
        # Progress starts an ENQUEUED task, setting ``started`` to its ``now``; a start
        # in the same millisecond is told apart by the starts this ledger remembers.
        if event is not Event.PROGRESS or record.started != now:
            return False
        return self._remember_start(record.id, now)

    def _remember_start(self, key: int, now: int) -> bool:
        """Remember that task ``key`` started at ``now``; False if that start was remembered already."""
        with self._lock:
            started = self._started
            if started.get(key) == now:
                return False
            started[key] = now
            started.move_to_end(key)
            if len(started) > REMEMBERED_STARTS:
                started.popitem(last=False)
            return True

    def _announce(self, task: Task) -> Task:
        if self.announce is not None:
            self.announce(task)
        return task

    def task(self, record: Record | tuple[Any, ...], now: int) -> Task:
        """The snapshot of ``record`` (or of a row from :meth:`fetch_row`) read at ``now``."""
        return Task.from_record(record, url_prefix=self.url_prefix, now=now)

    def insert(
        self, *, description: str | None, submitted_by: int, now: int, owned: bool, running: bool = False
    ) -> Task:
        """Record a new ENQUEUED task; ``owned``: it belongs to this runner from the start. StoreError.

        ``running`` (with ``owned``): the task is recorded RUNNING, started ``now``,
        for a worker that takes it at once.
        """
        runner = self.liveness.runner.token if owned else None
        running = running and owned
        record = self.store.insert(
            description=description, submitted_by=submitted_by, now=now, runner=runner, running=running
        )
        if running:
            self._remember_start(record.id, now)  # a progress report in the same millisecond starts nothing
        return self._announce(self.task(record, now))

    def fetch(self, key: int, task_id: str, now: int) -> Record:
        """The reconciled row of task ``key`` (``task_id`` as the caller wrote it); TaskNotFound, StoreError."""
        found = self.store.fetch(key)
        if found is None:
            raise TaskNotFound(task_id)
        record, beat = found
        return self._reconciled(record, beat, now)

    def _reconciled(self, record: Record, beat: Heartbeat, now: int) -> Record:
        reconciled = self.liveness.reconcile(record, beat, now)
        if reconciled.status != record.status:
            self._announce(self.task(reconciled, now))  # this reader wrote it DEAD
        return reconciled

    def fetch_row(self, key: int, task_id: str, now: int) -> Record | tuple[Any, ...]:
        """:meth:`fetch`, as the driver's row while the task cannot be dead: the read path.

        The row begins with a Record's columns. Only an unfinished task (``row[1]``,
        its status) can be found dead, and never one this live runner owns
        (``row[11]``, its runner): those rows go to the task with no intermediate
        object. TaskNotFound, StoreError.
        """
        row = self.store.fetch_row(key)
        if row is None:
            raise TaskNotFound(task_id)
        liveness = self.liveness
        if row[1] in UNFINISHED and not (row[11] == liveness.runner.token and liveness.alive):
            return self._reconciled(Record._make(row[:ROW_WIDTH]), Heartbeat._make(row[ROW_WIDTH:]), now)
        return row

    def read(self, task_id: str) -> Task:
        """The task as it is now; TaskNotFound, StoreError."""
        now = now_ms()
        return self.task(self.fetch(parse_id(task_id), task_id, now), now)

    def page(self, *, status: TaskStatus | None, submitted_by: int | None, before: int, limit: int) -> list[Task]:
        """Up to ``limit`` reconciled tasks with ids below ``before``, newest first; StoreError."""
        now = now_ms()
        found = self.store.page(
            status=None if status is None else status.value, submitted_by=submitted_by, before=before, limit=limit
        )
        return [self.task(self._reconciled(record, beat, now), now) for record, beat in found]

    def claim(self, task_id: str) -> Task | None:
        """Take a task a queue delivered, for this runner: the task RUNNING (or CANCEL_REQUESTED), or None.

        An ENQUEUED task is started. A RUNNING or CANCEL_REQUESTED one is taken only
        if no process holds it (it was released for a retry); one that another runner
        holds (a message delivered twice, or again after its worker died) and a
        finished one are not: None, and the message must not run.
        Raises TaskNotFound, StoreError.
        """
        try:
            return self.transition(task_id, Event.START)
        except InvalidTransition as refused:
            if refused.status.is_terminal:
                return None
        # A progress write with no data takes an unowned task (its runner is written
        # only where none is), and tells who holds it.
        now = now_ms()
        token = self.liveness.runner.token
        record = self.store.apply(parse_id(task_id), Event.PROGRESS, now, runner=token)
        if record is None or record.runner != token:
            return None  # finished meanwhile, or held by another runner
        return self.task(record, now)

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
        """:meth:`transition`, committed by the write another thread of this process has under way; False if none has.

        When True, returns at once; that thread commits the write next and calls
        ``then`` with the task as it then is, or with None when nothing was written
        (call :meth:`transition`, which retries or raises as it does). False (also
        while a host's hook is registered, which must run in this thread): nothing
        was done. ``then`` runs on the committing thread and must be quick.
        """
        if self._hooked is None or not self.store.committing() or self._hooked():
            return False
        key = parse_id(task_id)
        now = now_ms()

        def settled(record: Record | None) -> None:
            task = None
            try:
                if record is not None:
                    task = Task.from_record(record, url_prefix=self.url_prefix, now=now)
                    if self._moved(event, record, now) and self.announce is not None:
                        self.announce(task)
            finally:
                then(task)  # whatever happened here: the caller must hear of its write

        return self.store.apply_detached(
            key,
            event,
            now,
            settled,
            progress=progress,
            message=message,
            result=result,
            runner=self.liveness.runner.token,
        )

    def transition(
        self,
        task_id: str,
        event: Event,
        *,
        progress: int | None = None,
        message: str | None = None,
        result: str | None = None,
    ) -> Task:
        """Apply ``event`` (``result`` as JSON text) and return the task as it then is.

        A compare-and-set that missed (the task moved, or its insert was not yet
        visible) is tried again while the status read back allows the event, so a
        race never passes for success; InvalidTransition (TaskNotCancellable for a
        cancel) only when it does not. Raises TaskNotFound, StoreError.
        """
        key = parse_id(task_id)
        for _ in range(CAS_ATTEMPTS):
            now = now_ms()
            record = self.store.apply(
                key,
                event,
                now,
                progress=progress,
                message=message,
                result=result,
                runner=self.liveness.runner.token,
            )
            if record is not None:
                task = Task.from_record(record, url_prefix=self.url_prefix, now=now)
                if self._moved(event, record, now) and self.announce is not None:
                    self.announce(task)
                return task
            record = self.fetch(key, task_id, now)
            status = STATUS_BY_VALUE[record.status]
            if event not in TRANSITIONS[status]:
                error = TaskNotCancellable if event is Event.CANCEL else InvalidTransition
                raise error(task_id, status, event)
            if not writes(event, status):
                return self.task(record, now)  # allowed and changes nothing: a repeated cancel
        raise StoreError(f"task {task_id} kept changing; {event.value} could not be written")
