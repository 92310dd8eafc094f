"""The :class:`Task` snapshot and its Jira JSON form."""

from __future__ import annotations

import dataclasses
from typing import Any

from .jsonvalue import dumps_acyclic
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
        # A Task's result was read back from JSON, or checked before it was stored.
        return dumps_acyclic(self.to_dict())


# The slots' own setters: a frozen dataclass's __init__ sets each field through
# object.__setattr__, which costs more than the read that produced the values.
_NEW = object.__new__
_SET = tuple(getattr(Task, name).__set__ for name in Task.__slots__)
assert tuple(field.name for field in dataclasses.fields(Task)) == Task.__slots__


def build_task(
    id: str,
    url: str,
    status: TaskStatus,
    submitted_by: int,
    progress: int,
    elapsed_runtime: int,
    submitted: int,
    last_update: int,
    description: str | None,
    message: str | None,
    result: Any,
    started: int | None,
    finished: int | None,
) -> Task:
    """``Task(...)`` with every field given in order, built faster: tasklib's read path."""
    task: Task = _NEW(Task)
    (
        set_id,
        set_url,
        set_status,
        set_submitted_by,
        set_progress,
        set_elapsed,
        set_submitted,
        set_last_update,
        set_description,
        set_message,
        set_result,
        set_started,
        set_finished,
    ) = _SET
    set_id(task, id)
    set_url(task, url)
    set_status(task, status)
    set_submitted_by(task, submitted_by)
    set_progress(task, progress)
    set_elapsed(task, elapsed_runtime)
    set_submitted(task, submitted)
    set_last_update(task, last_update)
    set_description(task, description)
    set_message(task, message)
    set_result(task, result)
    set_started(task, started)
    set_finished(task, finished)
    return task
