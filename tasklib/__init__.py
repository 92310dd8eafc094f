"""tasklib: track long-running tasks for a host application, served as Jira's task resource."""

import logging

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

# A library's loggers are the host's to configure: without a handler of the
# host's, tasklib's records go nowhere rather than to logging's last resort.
logging.getLogger("tasklib").addHandler(logging.NullHandler())

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
