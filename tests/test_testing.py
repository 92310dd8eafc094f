"""tasklib.testing: running a task function inline for a host's own tests."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

import tasklib
from tasklib import TaskStatus, TaskTracker
from tasklib.testing import run_inline


def test_run_inline_runs_in_the_calling_thread_and_completes(make_tracker: Callable[..., TaskTracker]) -> None:
    """run_inline() runs the function here, with a real handle, and returns the finished task."""
    tracker = make_tracker()
    local = threading.local()
    local.name = "test thread"

    def work(n: int, *, unit: str) -> dict[str, Any]:
        handle = tasklib.current_task()
        for i in range(n):
            handle.update_progress(i * 100 // n, message=f"{i} {unit}")
        return {"thread": local.name, "n": n}

    task = run_inline(tracker, work, 4, unit="issues", description="inline", submitted_by=7)
    assert (task.status, task.result, task.progress) == (TaskStatus.COMPLETE, {"thread": "test thread", "n": 4}, 100)
    assert (task.description, task.submitted_by, task.message) == ("inline", 7, "3 issues")
    assert tracker.get(task.id) == task


def test_run_inline_records_failures_as_submit_does(make_tracker: Callable[..., TaskTracker]) -> None:
    """An exception in the function ends the task FAILED, as with submit(), and is not raised here."""
    tracker = make_tracker()

    def broken() -> None:
        raise LookupError("no such project")

    task = run_inline(tracker, broken)
    assert (task.status, task.message) == (TaskStatus.FAILED, "LookupError: no such project")


def test_run_inline_refuses_a_non_callable(make_tracker: Callable[..., TaskTracker]) -> None:
    """run_inline() refuses something it cannot call, before recording anything."""
    tracker = make_tracker()
    with pytest.raises(TypeError):
        run_inline(tracker, "not a function")  # type: ignore[arg-type]
    assert tracker.list() == []
