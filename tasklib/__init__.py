"""tasklib: track long-running tasks for a host application, served as Jira's task resource."""

from .aio import AsyncTaskTracker
from .errors import (
    DispatchError,
    InvalidTransition,
    PermissionDenied,
    StoreError,
    TaskCancelled,
    TaskError,
    TaskNotCancellable,
    TaskNotFound,
    TaskSkipped,
    TrackerClosed,
)
from .status import TaskStatus
from .task import Task
from .tracker import TaskTracker
from .workers import TaskHandle, current_task

__all__ = [
    "AsyncTaskTracker",
    "DispatchError",
    "InvalidTransition",
    "PermissionDenied",
    "StoreError",
    "Task",
    "TaskCancelled",
    "TaskError",
    "TaskHandle",
    "TaskNotCancellable",
    "TaskNotFound",
    "TaskSkipped",
    "TaskStatus",
    "TaskTracker",
    "TrackerClosed",
    "current_task",
]
