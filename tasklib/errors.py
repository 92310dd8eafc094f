"""The exceptions tasklib raises. Every one subclasses :class:`TaskError`."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .status import Event, TaskStatus

__all__ = [
    "DispatchError",
    "InvalidTransition",
    "PermissionDenied",
    "StoreError",
    "TaskCancelled",
    "TaskError",
    "TaskNotCancellable",
    "TaskNotFound",
    "TaskSkipped",
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


class DispatchError(TaskError):
    """A task queue refused a task :meth:`~tasklib.TaskTracker.submit` handed it.

    The task was recorded, then ended FAILED with the queue's error as its
    message: no ENQUEUED task is left waiting for a message that was never sent.
    ``task_id`` names it; ``__cause__`` is the queue's own exception.
    """

    def __init__(self, task_id: str, reason: str) -> None:
        super().__init__(f"task {task_id} could not be sent to its queue: {reason}")
        self.task_id = task_id
        self.reason = reason


class TaskSkipped(TaskError):
    """A queue delivered a task that must not run here: it has finished, or another process holds it.

    Raised by :func:`tasklib.dispatch.run_delivered`; the queue's integration
    acknowledges the message and drops it (a message delivered again after its
    task was cancelled, finished, or became DEAD).
    """

    def __init__(self, task_id: str, reason: str) -> None:
        super().__init__(f"task {task_id} is not run: {reason}")
        self.task_id = task_id
        self.reason = reason
