"""The dispatch seam, with a queue of the test's own: what any queue's integration relies on.

The queue here is a list and a thread, so these tests need no broker; Celery's
integration runs over real workers in tests/test_celery.py.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

import tasklib
from tasklib import DispatchError, TaskSkipped, TaskStatus, TaskTracker
from tasklib.dispatch import run_delivered

S = TaskStatus


def work(n: int) -> dict[str, int]:
    tasklib.current_task().update_progress(50, message="half")
    return {"n": n}


class ListQueue:
    """A task queue: sent messages are kept in a list, revoked ids in a set."""

    def __init__(self, refuse: Exception | None = None) -> None:
        self.sent: list[tuple[str, Any, tuple[Any, ...], dict[str, Any]]] = []
        self.revoked: set[str] = set()
        self.refuse = refuse

    def claims(self, fn: object) -> bool:
        return fn is work

    def send(self, task_id: str, fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if self.refuse is not None:
            raise self.refuse
        self.sent.append((task_id, fn, args, kwargs))

    def revoke(self, task_id: str) -> None:
        self.revoked.add(task_id)


def test_submit_records_enqueued_then_sends_with_the_id(make_tracker: Callable[..., TaskTracker]) -> None:
    tracker = make_tracker()
    queue = ListQueue()
    tracker.add_dispatcher(queue)
    task = tracker.submit(work, 3, description="Work", submitted_by=7)
    assert task.status is S.ENQUEUED and task.description == "Work" and task.submitted_by == 7
    assert queue.sent == [(task.id, work, (3,), {})]
    assert tracker.get(task.id).status is S.ENQUEUED  # nothing runs it here


def test_a_refused_send_fails_the_task_and_raises_a_dispatch_error(make_tracker: Callable[..., TaskTracker]) -> None:
    tracker = make_tracker()
    tracker.add_dispatcher(ListQueue(refuse=ConnectionRefusedError(111, "Connection refused")))
    with pytest.raises(DispatchError, match="ConnectionRefusedError") as info:
        tracker.submit(work, 1)
    task = tracker.get(info.value.task_id)
    assert task.status is S.FAILED
    assert task.message == "could not be sent: ConnectionRefusedError: [Errno 111] Connection refused"
    assert tracker.list(status=S.ENQUEUED) == []


def test_cancel_of_an_enqueued_task_revokes_it_and_its_delivery_is_skipped(
    make_tracker: Callable[..., TaskTracker],
) -> None:
    sender, worker = make_tracker(), make_tracker()
    queue = ListQueue()
    sender.add_dispatcher(queue)
    task = sender.submit(work, 1)
    assert sender.cancel(task.id).status is S.CANCELLED
    assert queue.revoked == {task.id}
    ran: list[int] = []
    with pytest.raises(TaskSkipped, match="finished"):
        run_delivered(worker, task.id, ran.append, (1,), {})
    assert ran == [] and sender.get(task.id).status is S.CANCELLED


def test_a_delivered_task_runs_with_a_handle_and_ends_complete(make_tracker: Callable[..., TaskTracker]) -> None:
    sender, worker = make_tracker(), make_tracker()
    queue = ListQueue()
    sender.add_dispatcher(queue)
    task = sender.submit(work, 5)
    task_id, fn, args, kwargs = queue.sent[0]
    assert run_delivered(worker, task_id, fn, args, kwargs) == {"n": 5}
    done = sender.get(task.id)
    assert done.status is S.COMPLETE and done.result == {"n": 5} and done.message == "half"
    with pytest.raises(TaskSkipped):  # delivered again: acknowledged and dropped
        run_delivered(worker, task_id, fn, args, kwargs)


def test_a_delivered_task_that_raises_ends_failed_and_the_error_reaches_the_queue(
    make_tracker: Callable[..., TaskTracker],
) -> None:
    tracker = make_tracker()
    task = tracker.submit(description="by hand")

    def boom() -> None:
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        run_delivered(tracker, task.id, boom, (), {})
    assert tracker.get(task.id).message == "OSError: disk full"


def test_a_retry_releases_the_task_and_the_next_attempt_on_another_runner_takes_it(
    make_tracker: Callable[..., TaskTracker],
) -> None:
    """RUNNING between attempts, held by no process: the worker of attempt 1 may stop meanwhile."""
    first, second, third = make_tracker(), make_tracker(), make_tracker()
    task = first.submit(description="retried")

    class Again(Exception):
        pass

    def attempt_one() -> None:
        raise Again("try later")

    with pytest.raises(Again):
        run_delivered(first, task.id, attempt_one, (), {}, retrying=lambda exc: "attempt 2 of 3 is queued")
    released = third.get(task.id)
    assert released.status is S.RUNNING and released.message == "attempt 2 of 3 is queued"
    first.close()
    assert third.get(task.id).status is S.RUNNING
    assert run_delivered(second, task.id, lambda: "done", (), {}, attempt=2, attempts=3) == "done"
    done = third.get(task.id)
    assert done.status is S.COMPLETE and done.result == "done" and done.message == "attempt 2 of 3"


def test_a_task_cancelled_while_its_retry_waits_ends_cancelled_without_running(
    make_tracker: Callable[..., TaskTracker],
) -> None:
    tracker, worker = make_tracker(), make_tracker()
    task = tracker.submit(description="retried")

    def attempt_one() -> None:
        raise RuntimeError("later")

    with pytest.raises(RuntimeError):
        run_delivered(worker, task.id, attempt_one, (), {}, retrying=lambda exc: "retrying")
    assert tracker.cancel(task.id).status is S.CANCEL_REQUESTED
    ran: list[int] = []
    with pytest.raises(TaskSkipped, match="cancelled"):
        run_delivered(worker, task.id, ran.append, (2,), {}, attempt=2)
    assert ran == [] and tracker.get(task.id).status is S.CANCELLED


def test_a_message_delivered_twice_runs_once_while_the_first_runs(make_tracker: Callable[..., TaskTracker]) -> None:
    tracker = make_tracker()
    task = tracker.submit(description="twice")
    started, release = threading.Event(), threading.Event()
    outcomes: list[object] = []

    def slow() -> str:
        started.set()
        release.wait(10)
        return "once"

    thread = threading.Thread(target=lambda: outcomes.append(run_delivered(tracker, task.id, slow, (), {})))
    thread.start()
    assert started.wait(10)
    with pytest.raises(TaskSkipped, match="already"):
        run_delivered(tracker, task.id, slow, (), {})
    release.set()
    thread.join(10)
    assert outcomes == ["once"] and tracker.get(task.id).status is S.COMPLETE


def test_add_dispatcher_refuses_what_is_no_dispatcher(make_tracker: Callable[..., TaskTracker]) -> None:
    with pytest.raises(TypeError, match="claims"):
        make_tracker().add_dispatcher(object())  # type: ignore[arg-type]


def test_after_fork_in_the_same_process_changes_nothing(make_tracker: Callable[..., TaskTracker]) -> None:
    tracker = make_tracker()
    task = tracker.submit(description="kept")
    assert tracker.after_fork() is tracker
    assert tracker.get(task.id) == task
