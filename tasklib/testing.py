"""Helpers for testing code that uses tasklib: run a task function where the test can see it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .task import Task
from .tracker import TaskTracker

__all__ = ["run_inline"]


def run_inline(
    tracker: TaskTracker,
    fn: Callable[..., Any],
    /,
    *args: Any,
    description: str | None = None,
    submitted_by: int = 0,
    **kwargs: Any,
) -> Task:
    """Run ``fn(*args, **kwargs)`` as a task of ``tracker`` in the calling thread, and return it finished.

    The task is recorded and ends exactly as with ``tracker.submit(fn, ...)``: a
    real handle from :func:`tasklib.current_task`, real progress writes, the same
    outcomes. Only the thread differs, so a test sees the function's effects (and
    its thread-local state) at once, with nothing to wait for. Raises as
    ``submit`` does; what ``fn`` raises ends the task FAILED instead.
    """
    if not callable(fn):
        raise TypeError(f"run_inline() takes a callable to run, not {type(fn).__name__}")
    task = tracker.submit(description=description, submitted_by=submitted_by)
    tracker.workers.run_here(task.id, fn, args, kwargs)
    return tracker.get(task.id)
