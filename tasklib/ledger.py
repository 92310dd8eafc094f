"""One tracker's reads and writes of its tasks, as :class:`~tasklib.task.Task` snapshots.

Every read is reconciled with liveness first, so a reader never sees a dead
task alive; every write is one event, applied by the store as a compare-and-set.
The worker pool works through a :class:`Ledger` (see
:class:`tasklib.workers.TaskLedger`), also while its tracker closes.
"""

from __future__ import annotations

from .checks import parse_id
from .clock import now_ms
from .errors import InvalidTransition, StoreError, TaskNotCancellable, TaskNotFound
from .liveness import Liveness
from .status import STATUS_BY_VALUE, TRANSITIONS, Event, TaskStatus, writes
from .storage import Record, Store
from .task import Task

__all__ = ["Ledger"]

#: How often a compare-and-set write that lost a race is tried again. Statuses only
#: move forward, so a handful of misses means the store keeps refusing, not a race.
CAS_ATTEMPTS = 8


class Ledger:
    """The tasks of one store, read and written on behalf of one runner.

    ``url_prefix`` is prefixed to a task's id to make its ``url``.
    """

    def __init__(self, store: Store, liveness: Liveness, *, url_prefix: str) -> None:
        self.store = store
        self.liveness = liveness
        self.url_prefix = url_prefix

    def task(self, record: Record, now: int) -> Task:
        """The snapshot of ``record`` read at ``now``."""
        return Task.from_record(record, url_prefix=self.url_prefix, now=now)

    def insert(self, *, description: str | None, submitted_by: int, now: int, owned: bool) -> Task:
        """Record a new ENQUEUED task; ``owned``: it belongs to this runner from the start. StoreError."""
        runner = self.liveness.runner.token if owned else None
        record = self.store.insert(description=description, submitted_by=submitted_by, now=now, runner=runner)
        return self.task(record, now)

    def fetch(self, key: int, task_id: str, now: int) -> Record:
        """The reconciled row of task ``key`` (``task_id`` as the caller wrote it); TaskNotFound, StoreError."""
        found = self.store.fetch(key)
        if found is None:
            raise TaskNotFound(task_id)
        record, beat = found
        return self.liveness.reconcile(record, beat, now)

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
        return [self.task(self.liveness.reconcile(record, beat, now), now) for record, beat in found]

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
                return self.task(record, now)
            record = self.fetch(key, task_id, now)
            status = STATUS_BY_VALUE[record.status]
            if event not in TRANSITIONS[status]:
                error = TaskNotCancellable if event is Event.CANCEL else InvalidTransition
                raise error(task_id, status, event)
            if not writes(event, status):
                return self.task(record, now)  # allowed and changes nothing: a repeated cancel
        raise StoreError(f"task {task_id} kept changing; {event.value} could not be written")
