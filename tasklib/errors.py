"""The exceptions tasklib raises. Every one subclasses :class:`TaskError`."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .status import Event, TaskStatus

__all__ = [
    "InvalidTransition",
    "PermissionDenied",
    "StoreError",
    "TaskCancelled",
    "TaskError",
    "TaskNotCancellable",
    "TaskNotFound",
    "TrackerClosed",
]


class TaskError(Exception):
    """Base class of every error tasklib raises."""


class TaskNotFound(TaskError, LookupError):
    """No task has this id: it never existed, was purged, or the id is malformed."""

    def __init__(self, task_id: object) -> None:
        shown = task_id if not isinstance(task_id, str) or len(task_id) <= 40 else task_id[:40] + "..."
        super().__init__(f"no task with id {shown!r}")
        self.task_id = task_id


class InvalidTransition(TaskError):
    """The task's status does not allow this change; the task was left unchanged."""

    def __init__(self, task_id: str, status: TaskStatus, event: Event) -> None:
        super().__init__(f"task {task_id} is {status.value}: cannot {event.value}")
        self.task_id = task_id
        self.status = status
        self.event = event


class TaskNotCancellable(InvalidTransition):
    """The task has already finished, so cancellation is not possible (Jira answers 400)."""


class PermissionDenied(TaskError):
    """The user is neither the task's submitter nor an administrator."""

    def __init__(self, task_id: str, user: int) -> None:
        super().__init__(f"user {user} may not access task {task_id}")
        self.task_id = task_id
        self.user = user


class TaskCancelled(TaskError):
    """Raised inside a running task by ``raise_if_cancelled()`` once a cancel was requested.

    Let it propagate out of the task function: the task then ends CANCELLED.
    Code that catches ``TaskError`` or ``Exception`` around its work must re-raise it.
    """


class TrackerClosed(TaskError):
    """The tracker was closed and takes no new work."""


class StoreError(TaskError):
    """The store cannot be opened, or a write could not be made; nothing was changed."""
