"""The :class:`Task` snapshot and its Jira JSON form."""

from __future__ import annotations

import dataclasses
from typing import Any

from .jsonvalue import dumps
from .status import TaskStatus

__all__ = ["Task"]


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
