"""The :class:`Task` snapshot and its Jira JSON form."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from .jsonvalue import decode, dumps
from .status import STATUS_BY_VALUE, TaskStatus

if TYPE_CHECKING:
    from .storage import Record

__all__ = ["API_PREFIX", "DEFAULT_BASE_PATH", "Task"]

#: Where Jira serves its REST API v3; a task's path is ``{API_PREFIX}/task/{id}``.
API_PREFIX = "/rest/api/3"
#: The ``self`` prefix of a task when its tracker has no ``base_url``: Jira's own path, relative.
DEFAULT_BASE_PATH = f"{API_PREFIX}/task/"


@dataclasses.dataclass(frozen=True, slots=True)
class Task:
    """An immutable snapshot of one task, as it was when read from the store.

    The attributes are the snake_case names of the keys of Jira's
    TaskProgressBeanObject; ``url`` is its ``self``. Times are epoch milliseconds.
    ``description``, ``message``, ``result``, ``started`` and ``finished`` are None
    when absent, and then left out of the JSON (a ``result`` of JSON null is absent).
    """

    id: str
    url: str
    status: TaskStatus
    submitted_by: int
    progress: int
    elapsed_runtime: int
    submitted: int
    last_update: int
    description: str | None = None
    message: str | None = None
    result: Any = None
    started: int | None = None
    finished: int | None = None

    @classmethod
    def from_record(cls, record: Record, *, url_prefix: str, now: int) -> Task:
        """The snapshot of a stored row read at ``now``; its url is ``url_prefix`` and its id.

        The elapsed runtime of an unfinished task runs to ``now``; a clock that
        stepped back never makes it negative.
        """
        started, finished = record.started, record.finished
        if started is None:
            elapsed = 0
        elif finished is not None:
            elapsed = max(0, finished - started)
        else:
            elapsed = max(0, now - started)
        task_id = str(record.id)
        return cls(
            id=task_id,
            url=url_prefix + task_id,
            status=STATUS_BY_VALUE[record.status],
            submitted_by=record.submitted_by,
            progress=record.progress,
            elapsed_runtime=elapsed,
            submitted=record.submitted,
            last_update=record.last_update,
            description=record.description,
            message=record.message,
            result=None if record.result is None else decode(record.result),
            started=started,
            finished=finished,
        )

    @property
    def cancel_requested(self) -> bool:
        """True once a cancel was requested and the task's code has not yet stopped."""
        return self.status is TaskStatus.CANCEL_REQUESTED

    def to_dict(self) -> dict[str, Any]:
        """The task as a JSON-ready dict, exactly Jira's TaskProgressBeanObject.

        Keys are in the order of Jira's documented example; optional keys are
        omitted when absent, never null.
        """
        d: dict[str, Any] = {"self": self.url, "id": self.id}
        if self.description is not None:
            d["description"] = self.description
        d["status"] = self.status.value
        if self.message is not None:
            d["message"] = self.message
        if self.result is not None:
            d["result"] = self.result
        d["submittedBy"] = self.submitted_by
        d["progress"] = self.progress
        d["elapsedRuntime"] = self.elapsed_runtime
        d["submitted"] = self.submitted
        if self.started is not None:
            d["started"] = self.started
        if self.finished is not None:
            d["finished"] = self.finished
        d["lastUpdate"] = self.last_update
        return d

    def to_json(self) -> str:
        """:meth:`to_dict` as compact JSON text (UTF-8 safe, non-ASCII kept as is)."""
        return dumps(self.to_dict())
