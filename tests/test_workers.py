"""Running functions: submit(fn), progress from inside, cooperative cancel, outcomes, close."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

import tasklib
from tasklib import TaskCancelled, TaskStatus, TaskTracker, TrackerClosed
from tasklib.status import Event

from .helpers import WAIT, eventually, rows

S = TaskStatus


@pytest.fixture
def pooled(make_tracker: Callable[..., TaskTracker]) -> TaskTracker:
    return make_tracker(max_workers=4, progress_interval=0.05)


def test_progress_from_inside_appears_in_get(pooled: TaskTracker) -> None:
    """A report made inside the task shows in get(), even when the task then goes quiet."""
    release = threading.Event()

    def work() -> str:
        handle = tasklib.current_task()
        handle.update_progress(10, message="starting")
        handle.update_progress(42, message="42 of 100")  # inside the interval: held back, then flushed
        release.wait(WAIT)
        return "ok"

    task = pooled.submit(work, description="report")
    eventually(lambda: pooled.get(task.id).progress == 42)
    seen = pooled.get(task.id)
    assert (seen.status, seen.message) == (S.RUNNING, "42 of 100")
    release.set()
    done = pooled.wait(task.id, timeout=WAIT)
    assert (done.status, done.progress, done.result, done.description) == (S.COMPLETE, 100, "ok", "report")


def test_handle_knows_its_task(pooled: TaskTracker) -> None:
    """current_task().id is the id submit() returned."""
    task = pooled.submit(lambda: tasklib.current_task().id)
    assert pooled.wait(task.id, timeout=WAIT).result == task.id


def test_arguments_and_reserved_keywords(pooled: TaskTracker) -> None:
    """Positional and keyword arguments reach fn; description and submitted_by do not."""

    def work(*args: Any, **kwargs: Any) -> dict[str, Any]:
        return {"args": list(args), "kwargs": kwargs}

    task = pooled.submit(work, 1, "two", description="d", submitted_by=7, three=3)
    assert pooled.wait(task.id, timeout=WAIT).result == {"args": [1, "two"], "kwargs": {"three": 3}}
    assert (task.description, task.submitted_by) == ("d", 7)


def cancellable_loop(seen: dict[str, float]) -> Callable[[], None]:
    def work() -> None:
        handle = tasklib.current_task()
        i = 0
        while True:
            if handle.cancel_requested:
                seen["at"] = time.monotonic()
            handle.raise_if_cancelled()
            handle.update_progress(min(99, i // 10))
            i += 1
            time.sleep(0.001)

    return work


def test_cancel_of_a_running_task_ends_cancelled_within_an_interval(make_tracker: Callable[..., TaskTracker]) -> None:
    """A cancel made through another tracker on the store is seen within one progress interval."""
    interval = 0.2
    pooled = make_tracker(progress_interval=interval)
    other = make_tracker()  # knows nothing of pooled's threads: only the store carries the request
    seen: dict[str, float] = {}
    task = pooled.submit(cancellable_loop(seen))
    eventually(lambda: pooled.get(task.id).progress > 0)
    asked = time.monotonic()
    assert other.cancel(task.id).status is S.CANCEL_REQUESTED
    done = pooled.wait(task.id, timeout=WAIT)
    assert done.status is S.CANCELLED
    # One interval, plus slack for a loaded 2-core machine.
    assert seen["at"] - asked <= interval + 0.3


def test_cancel_through_the_same_tracker_is_seen_at_once(pooled: TaskTracker) -> None:
    """The running tracker's own cancel() flags the task without waiting for a poll."""
    seen: dict[str, float] = {}
    task = pooled.submit(cancellable_loop(seen))
    eventually(lambda: pooled.get(task.id).status is S.RUNNING)
    pooled.cancel(task.id)
    assert pooled.wait(task.id, timeout=WAIT).status is S.CANCELLED


def test_cancel_of_a_queued_task_means_it_never_runs(make_tracker: Callable[..., TaskTracker]) -> None:
    """A task cancelled while queued ends CANCELLED and its function is never called."""
    pooled = make_tracker(max_workers=1)
    release = threading.Event()
    calls: list[str] = []
    blocker = pooled.submit(lambda: release.wait(WAIT))
    queued = pooled.submit(lambda: calls.append("ran"))
    assert pooled.cancel(queued.id).status is S.CANCELLED
    release.set()
    assert pooled.wait(blocker.id, timeout=WAIT).status is S.COMPLETE
    assert pooled.wait(queued.id, timeout=WAIT).status is S.CANCELLED
    pooled.close()
    assert calls == []


def test_a_task_a_free_worker_takes_is_recorded_running_at_once(make_tracker: Callable[..., TaskTracker]) -> None:
    """With a worker free, submit(fn) records the task RUNNING, started; with none free, ENQUEUED.

    The task taken at once costs two writes (its insert and its end), not three.
    """
    pooled = make_tracker(max_workers=2)
    release = threading.Event()
    first, second = (pooled.submit(lambda: release.wait(WAIT)) for _ in range(2))
    for task in (first, second):
        assert task.status is S.RUNNING and task.started == task.submitted
        assert pooled.get(task.id).status is S.RUNNING
    third = pooled.submit(lambda: "queued")
    assert third.status is S.ENQUEUED and third.started is None
    release.set()
    assert [pooled.wait(t.id, timeout=WAIT).status for t in (first, second, third)] == [S.COMPLETE] * 3
    assert pooled.wait(third.id).result == "queued"


class Odd(BaseException):
    """A BaseException that is neither KeyboardInterrupt nor SystemExit."""


def raise_(exc: BaseException) -> Callable[[], None]:
    def work() -> None:
        raise exc

    return work


@pytest.mark.parametrize(
    "fn, status, message",
    [
        (lambda: {"deleted": 3}, S.COMPLETE, None),
        (lambda: None, S.COMPLETE, None),
        (raise_(ValueError("bad project key")), S.FAILED, "ValueError: bad project key"),
        (raise_(RuntimeError()), S.FAILED, "RuntimeError"),
        (raise_(Odd("odd")), S.FAILED, "Odd: odd"),
        (raise_(KeyboardInterrupt()), S.FAILED, "KeyboardInterrupt"),
        (raise_(SystemExit(3)), S.FAILED, "SystemExit: 3"),
        (raise_(TaskCancelled("gave up")), S.FAILED, "TaskCancelled: gave up"),
        (lambda: {1, 2}, S.FAILED, "returned a set"),
        (lambda: float("nan"), S.FAILED, "returned a float"),
    ],
    ids=[
        "dict",
        "none",
        "exception",
        "no-text",
        "base-exception",
        "keyboard-interrupt",
        "system-exit",
        "cancelled-unasked",
        "set",
        "nan",
    ],
)
def test_outcomes(pooled: TaskTracker, fn: Callable[[], Any], status: TaskStatus, message: str | None) -> None:
    """Each way a function can end gives its status and message, and the worker lives on."""
    task = pooled.wait(pooled.submit(fn).id, timeout=WAIT)
    assert task.status is status
    if message is None:
        assert task.message is None
    else:
        assert message in task.message
    if status is S.COMPLETE:
        assert task.progress == 100
    after = pooled.wait(pooled.submit(lambda: "still alive").id, timeout=WAIT)
    assert after.result == "still alive"


def test_failure_traceback_goes_to_logging_not_json(pooled: TaskTracker, caplog: pytest.LogCaptureFixture) -> None:
    """The traceback of a failed task is logged; the task's JSON holds only "Type: text"."""

    def work() -> None:
        raise ValueError("disk full")

    with caplog.at_level(logging.WARNING, logger="tasklib"):
        task = pooled.wait(pooled.submit(work).id, timeout=WAIT)
    assert task.message == "ValueError: disk full"
    assert "Traceback" not in task.to_json()
    [record] = [r for r in caplog.records if r.exc_info and r.exc_info[0] is ValueError]
    assert record.levelno == logging.WARNING


def test_cancelled_task_ends_cancelled_with_its_last_progress(pooled: TaskTracker) -> None:
    """TaskCancelled after a request ends CANCELLED, keeping the last progress reported."""
    started = threading.Event()

    def work() -> None:
        handle = tasklib.current_task()
        handle.update_progress(30, message="30%")
        started.set()
        while True:
            handle.raise_if_cancelled()
            time.sleep(0.002)

    task = pooled.submit(work)
    assert started.wait(WAIT)
    pooled.cancel(task.id)
    done = pooled.wait(task.id, timeout=WAIT)
    assert (done.status, done.progress, done.message) == (S.CANCELLED, 30, "30%")
    assert done.finished is not None


def test_200_tasks_on_4_workers(pooled: TaskTracker) -> None:
    """200 tasks of mixed outcomes on 4 workers each reach the right terminal state."""

    def work(i: int) -> int:
        handle = tasklib.current_task()
        for p in range(0, 101, 25):
            handle.update_progress(p, message=f"{i}: {p}")
        if i % 5 == 0:
            raise ValueError(f"task {i}")
        return i * i

    tasks = [pooled.submit(work, i) for i in range(200)]
    finals = [pooled.wait(t.id, timeout=WAIT) for t in tasks]
    for i, task in enumerate(finals):
        if i % 5 == 0:
            assert (task.status, task.message) == (S.FAILED, f"ValueError: task {i}")
        else:
            assert (task.status, task.result, task.progress) == (S.COMPLETE, i * i, 100)


def test_close_without_wait_leaves_nothing_enqueued_or_running(make_tracker: Callable[..., TaskTracker]) -> None:
    """close(wait=False) cancels queued tasks unrun and stops running ones; none stays ENQUEUED/RUNNING."""
    pooled = make_tracker(max_workers=2, progress_interval=0.05)
    ran: list[int] = []
    started = threading.Barrier(3)

    def work(i: int) -> None:
        ran.append(i)
        if i < 2:
            started.wait(WAIT)
        handle = tasklib.current_task()
        while True:
            handle.raise_if_cancelled()
            time.sleep(0.002)

    tasks = [pooled.submit(work, i) for i in range(20)]
    started.wait(WAIT)
    pooled.close(wait=False)
    reader = make_tracker()
    finals = {t.id: reader.get(t.id).status for t in tasks}
    assert set(finals.values()) == {S.CANCELLED}
    assert sorted(ran) == [0, 1], "queued tasks must never run"


def test_close_with_wait_runs_everything_submitted(make_tracker: Callable[..., TaskTracker]) -> None:
    """close() (wait=True) lets running and queued functions finish."""
    pooled = make_tracker(max_workers=2)
    tasks = [pooled.submit(lambda i=i: time.sleep(0.01) or i) for i in range(10)]
    pooled.close()
    reader = make_tracker()
    assert [reader.get(t.id).result for t in tasks] == list(range(10))
    assert {reader.get(t.id).status for t in tasks} == {S.COMPLETE}


def test_closed_tracker_refuses_new_work(pooled: TaskTracker) -> None:
    """submit(fn) after close() raises TrackerClosed and records nothing."""
    pooled.close()
    with pytest.raises(TrackerClosed):
        pooled.submit(lambda: None)
    assert rows(pooled) == []


def test_coroutine_function_runs_with_the_same_handle(pooled: TaskTracker) -> None:
    """An async def task runs on an event loop, reports progress, and its result completes it."""

    async def work(n: int) -> dict[str, Any]:
        handle = tasklib.current_task()
        for i in range(n):
            await asyncio.sleep(0.001)
            handle.update_progress(i * 100 // n, message=f"{i} of {n}")
        # A thread started by the coroutine with its context sees the same task.
        other = await asyncio.to_thread(lambda: tasklib.current_task().id)
        return {"n": n, "same": other == handle.id}

    task = pooled.wait(pooled.submit(work, 20).id, timeout=WAIT)
    assert (task.status, task.result) == (S.COMPLETE, {"n": 20, "same": True})


def test_coroutine_cancellation_and_failure(pooled: TaskTracker) -> None:
    """An async task stops CANCELLED on request, and FAILED on an exception."""

    async def loop() -> None:
        while True:
            tasklib.current_task().raise_if_cancelled()
            await asyncio.sleep(0.002)

    async def broken() -> None:
        await asyncio.sleep(0)
        raise KeyError("x")

    task = pooled.submit(loop)
    eventually(lambda: pooled.get(task.id).status is S.RUNNING)
    pooled.cancel(task.id)
    assert pooled.wait(task.id, timeout=WAIT).status is S.CANCELLED
    assert pooled.wait(pooled.submit(broken).id, timeout=WAIT).message == "KeyError: 'x'"


def test_handle_in_a_thread_with_copied_context(pooled: TaskTracker) -> None:
    """current_task() works in a thread the task starts with a copy of its context."""

    def work() -> bool:
        ctx = contextvars.copy_context()
        out: list[str] = []
        t = threading.Thread(target=lambda: out.append(ctx.run(lambda: tasklib.current_task().id)))
        t.start()
        t.join()
        return out == [tasklib.current_task().id]

    assert pooled.wait(pooled.submit(work).id, timeout=WAIT).result is True


def test_current_task_outside_a_task_is_a_runtime_error() -> None:
    """current_task() outside a running task raises RuntimeError saying so."""
    with pytest.raises(RuntimeError, match="outside a running task"):
        tasklib.current_task()


def test_bad_progress_inside_a_task_raises_there(pooled: TaskTracker) -> None:
    """The handle refuses bad progress with TypeError/ValueError, in the task's own code."""

    def work() -> list[str]:
        handle = tasklib.current_task()
        errors = []
        for bad in (101, -1, 5.0, "5", True, None):
            try:
                handle.update_progress(bad)  # type: ignore[arg-type]
            except (TypeError, ValueError) as exc:
                errors.append(type(exc).__name__)
        try:
            handle.update_progress(5, message=5)  # type: ignore[arg-type]
        except TypeError:
            errors.append("message")
        return errors

    result = pooled.wait(pooled.submit(work).id, timeout=WAIT).result
    assert result == ["ValueError", "ValueError", "TypeError", "TypeError", "TypeError", "TypeError", "message"]


def test_hot_loop_writes_at_most_once_per_interval(make_tracker: Callable[..., TaskTracker]) -> None:
    """A million progress calls write a handful of times, and the final state is exact."""
    pooled = make_tracker(progress_interval=0.1)
    progress_sql = pooled._store._events[Event.PROGRESS].sql
    writes: list[str] = []
    pooled._store.db.query_hooks.append(lambda event: writes.append(event.sql) if event.sql == progress_sql else None)

    def work(n: int) -> float:
        handle = tasklib.current_task()
        began = time.monotonic()
        for i in range(n):
            handle.update_progress(i * 100 // n, message=None if i % 1000 else f"{i // 1000} thousand")
        return time.monotonic() - began

    task = pooled.wait(pooled.submit(work, 1_000_000).id, timeout=120)
    assert task.status is S.COMPLETE and task.progress == 100 and task.message == "999 thousand"
    # The first change is written at once, then at most one write per interval;
    # the last report rides on the completion. (A fast machine runs the loop
    # within one interval: one progress write then, and none else.)
    assert 1 <= len(writes) <= 1 + task.result // 0.1


def test_no_thread_starts_before_submit_or_open(db_path: Any) -> None:
    """Constructing a tracker starts no thread; submit(fn) starts the pool; close() ends it."""
    before = set(threading.enumerate())
    tracker = TaskTracker(str(db_path))
    tracker.submit(description="host-driven")
    assert set(threading.enumerate()) == before
    tracker.wait(tracker.submit(lambda: 1).id, timeout=WAIT)
    assert any(t.name.startswith("tasklib") for t in set(threading.enumerate()) - before)
    tracker.close()
    eventually(lambda: not any(t.name.startswith("tasklib") for t in threading.enumerate()))


def test_wait_times_out_and_watches_other_trackers(make_tracker: Callable[..., TaskTracker]) -> None:
    """wait() raises TimeoutError while unfinished, and sees a task finished by another tracker."""
    a, b = make_tracker(), make_tracker()
    task = a.submit()
    with pytest.raises(TimeoutError):
        b.wait(task.id, timeout=0.05)
    threading.Timer(0.05, lambda: a.complete(task.id, result=1)).start()
    assert b.wait(task.id, timeout=WAIT).result == 1


def test_wait_after_the_end_returns_the_final_snapshot_unread(
    pooled: TaskTracker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A wait() that comes after its task ended here takes the snapshot of its end, read from nowhere.

    The pool keeps the last REMEMBERED_FINISHED of them; an older one is read
    from the store again, equal all the same.
    """
    from tasklib import workers

    monkeypatch.setattr(workers, "REMEMBERED_FINISHED", 3)
    tasks, ends = [], []
    for i in range(5):  # one after the other: they end in this order
        tasks.append(pooled.submit(lambda i=i: i))
        ends.append(pooled.wait(tasks[-1].id, timeout=WAIT))
    assert [end.result for end in ends] == list(range(5))
    for task, end in zip(tasks[2:], ends[2:], strict=True):
        assert pooled.wait(task.id, timeout=WAIT) is end  # kept: the very snapshot of its end
        assert pooled.get(task.id) == end
    for task, end in zip(tasks[:2], ends[:2], strict=True):
        again = pooled.wait(task.id, timeout=WAIT)
        assert again is not end and again == end  # forgotten: read again
    pooled.close()
    with pytest.raises(TrackerClosed):
        pooled.wait(tasks[-1].id)


def test_threads_start_as_tasks_need_them(make_tracker: Callable[..., TaskTracker]) -> None:
    """One task at a time runs on one thread, however many are allowed; tasks at once get up to max_workers."""
    before = set(threading.enumerate())  # other trackers' threads are not this pool's

    def workers() -> int:
        return sum(t.name.startswith("tasklib-worker") for t in set(threading.enumerate()) - before)

    pooled = make_tracker(max_workers=4)
    for i in range(5):
        assert pooled.wait(pooled.submit(lambda i=i: i).id, timeout=WAIT).result == i
    assert workers() == 1
    release = threading.Event()
    tasks = [pooled.submit(lambda: release.wait(WAIT) and None) for _ in range(6)]  # 4 run at once, 2 wait
    eventually(lambda: [pooled.get(t.id).status for t in tasks].count(S.RUNNING) == 4)
    assert workers() == 4
    release.set()
    assert [pooled.wait(t.id, timeout=WAIT).status for t in tasks] == [S.COMPLETE] * 6


def test_interpreter_exit_with_the_tracker_never_closed_runs_what_was_submitted(tmp_path: Any) -> None:
    """A host that exits without close(): the submitted tasks still run to their end, then the process ends."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(
        """
        import sys, time
        import tasklib
        tracker = tasklib.TaskTracker(sys.argv[1], max_workers=2)
        for i in range(6):
            tracker.submit(lambda i=i: time.sleep(0.05) or i)
        print("submitted", flush=True)
        """
    )
    db = tmp_path / "exit.db"
    began = time.monotonic()
    done = subprocess.run([sys.executable, "-c", script, str(db)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout == "submitted\n", done.stderr
    assert time.monotonic() - began < 30
    reader = TaskTracker(str(db))
    try:
        assert sorted(t.result for t in reader.list()) == list(range(6))
        assert {t.status for t in reader.list()} == {S.COMPLETE}
    finally:
        reader.close()


def test_submit_after_the_main_thread_ended_is_refused_not_lost(tmp_path: Any) -> None:
    """The main thread ended, the tracker never closed: a later submit from another thread raises TrackerClosed.

    As a ThreadPoolExecutor refuses work once the interpreter shuts down: the task
    is ended CANCELLED, never left queued with no thread to run it.
    """
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(
        """
        import sys, threading, time
        import tasklib
        tracker = tasklib.TaskTracker(sys.argv[1], max_workers=2)
        tracker.wait(tracker.submit(lambda: 1).id, timeout=30)

        def later():
            # Once the worker threads saw the main thread end, and ended.
            while any(t.name.startswith("tasklib-worker") for t in threading.enumerate()):
                time.sleep(0.05)
            try:
                tracker.submit(lambda: 2)
                print("accepted", flush=True)
            except tasklib.TrackerClosed:
                print("refused", flush=True)

        threading.Thread(target=later).start()
        """
    )
    db = tmp_path / "late.db"
    done = subprocess.run([sys.executable, "-c", script, str(db)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout == "refused\n", done.stderr
    reader = TaskTracker(str(db))
    try:
        assert sorted((t.id, t.status) for t in reader.list()) == [("1", S.COMPLETE), ("2", S.CANCELLED)]
    finally:
        reader.close()


# -- a final write left to the thread committing another write -----------------------


def lock_the_file(path: Any) -> sqlite3.Connection:
    """Another connection holding the SQLite file's write lock until it commits or rolls back."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=WAIT)
    conn.execute("BEGIN IMMEDIATE")
    return conn


def a_leading_write(tracker: TaskTracker) -> tuple[threading.Thread, dict[str, Any]]:
    """A submit from another thread whose insert leads the tracker's writes, waiting behind the file's lock."""
    out: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: out.setdefault("task", tracker.submit(description="leader")))
    thread.start()
    eventually(tracker._store.committing)
    return thread, out


def a_worker_is_free(tracker: TaskTracker) -> bool:
    pool = tracker.workers
    if pool.reserve():
        pool.unreserve()
        return True
    return False


def test_a_final_write_meeting_another_write_is_left_to_its_thread_and_the_worker_goes_on(db_path: Any) -> None:
    """A task's COMPLETE queued behind another thread's write is committed by that thread.

    Its worker does not wait for it: it is free for the next task at once. The
    task's waiters wake only once the write is committed, with the task as written.
    """
    tracker = TaskTracker(str(db_path), max_workers=1)
    try:
        began, finish = threading.Event(), threading.Event()
        task = tracker.submit(lambda: began.set() or (finish.wait(WAIT) and "done"))
        assert began.wait(WAIT) and not a_worker_is_free(tracker)
        lock = lock_the_file(db_path)
        try:
            leader, out = a_leading_write(tracker)
            finish.set()
            eventually(lambda: a_worker_is_free(tracker))
            # Not committed yet: the store still says RUNNING, and a waiter still waits.
            assert tracker.get(task.id).status is S.RUNNING
            with pytest.raises(TimeoutError):
                tracker.wait(task.id, timeout=0.2)
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        leader.join(WAIT)
        done = tracker.wait(task.id, timeout=WAIT)
        assert (done.status, done.result, done.progress) == (S.COMPLETE, "done", 100)
        assert tracker.get(task.id) == done
        assert out["task"].status is S.ENQUEUED
    finally:
        tracker.close()


def test_a_left_final_write_that_fails_is_written_again_by_a_worker_even_as_the_tracker_closes(
    db_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """The committing thread's attempt at a task's COMPLETE fails: a worker writes it again, retrying.

    close() begun meanwhile waits for that write before its workers end, so the
    outcome is never lost.
    """
    tracker = TaskTracker(str(db_path), max_workers=1)
    closer = threading.Thread(target=tracker.close)
    try:
        began, finish = threading.Event(), threading.Event()
        task = tracker.submit(lambda: began.set() or (finish.wait(WAIT) and "done"))
        assert began.wait(WAIT)
        lock = lock_the_file(db_path)
        try:
            # Committed with the lock's transaction: every COMPLETE is refused until dropped.
            lock.execute(
                "CREATE TRIGGER refuse_complete BEFORE UPDATE OF status ON tasklib_task "
                "WHEN NEW.status = 'COMPLETE' BEGIN SELECT RAISE(ABORT, 'refused for the test'); END"
            )
            leader, _ = a_leading_write(tracker)
            finish.set()
            eventually(lambda: a_worker_is_free(tracker))
            with caplog.at_level(logging.WARNING, logger="tasklib"):
                closer.start()
                lock.execute("COMMIT")
                leader.join(WAIT)
                eventually(lambda: any("could not write the outcome" in r.getMessage() for r in caplog.records))
        finally:
            if lock.in_transaction:
                lock.execute("ROLLBACK")
            lock.execute("DROP TRIGGER IF EXISTS refuse_complete")
            lock.close()
        closer.join(WAIT)
        assert not closer.is_alive()
    finally:
        if not closer.is_alive():
            tracker.close()
    reader = TaskTracker(str(db_path))
    try:
        done = reader.get(task.id)
        assert (done.status, done.result, done.progress) == (S.COMPLETE, "done", 100)
    finally:
        reader.close()


def test_with_a_hook_registered_a_final_write_is_made_and_announced_in_its_workers_thread(db_path: Any) -> None:
    """A host's on_change hook runs in the thread that made the write: its worker's, never a thread it met."""
    tracker = TaskTracker(str(db_path), max_workers=1)
    try:
        seen: list[tuple[TaskStatus, str]] = []
        tracker.on_change(lambda task: seen.append((task.status, threading.current_thread().name)))
        began, finish = threading.Event(), threading.Event()
        task = tracker.submit(lambda: began.set() or (finish.wait(WAIT) and "done"))
        assert began.wait(WAIT)
        lock = lock_the_file(db_path)
        try:
            leader, _ = a_leading_write(tracker)
            finish.set()
            time.sleep(0.2)  # time enough for the worker to leave the write to the leader, if it would
            assert not a_worker_is_free(tracker)
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        leader.join(WAIT)
        assert tracker.wait(task.id, timeout=WAIT).status is S.COMPLETE
        ended = [name for status, name in seen if status is S.COMPLETE]
        assert len(ended) == 1 and ended[0].startswith("tasklib-worker"), seen
    finally:
        tracker.close()


def test_close_is_not_stranded_by_an_end_that_could_not_be_left_to_another_thread(db_path: Any) -> None:
    """close() begins while a worker tries to leave its task's end to another thread, which then cannot take it.

    The worker writes the end itself, and close() returns with the task COMPLETE.
    """
    tracker = TaskTracker(str(db_path), max_workers=1)
    pool = tracker.workers
    ledger = pool.ledger
    trying, go = threading.Event(), threading.Event()
    real = ledger.transition_detached

    def slow_refusal(*args: Any, **kwargs: Any) -> bool:
        trying.set()
        go.wait(WAIT)
        return False  # as when no write is under way any more

    ledger.transition_detached = slow_refusal  # type: ignore[method-assign]
    task = tracker.submit(lambda: "done")
    assert trying.wait(WAIT)
    closer = threading.Thread(target=tracker.close, daemon=True)  # daemon: a stranded close() must not hang pytest
    closer.start()
    eventually(lambda: pool._shut)  # close() has begun: it waits for the end under way
    time.sleep(0.2)
    go.set()
    closer.join(WAIT)
    ledger.transition_detached = real  # type: ignore[method-assign]
    assert not closer.is_alive(), "close() never returned"
    reader = TaskTracker(str(db_path))
    try:
        done = reader.get(task.id)
        assert (done.status, done.result) == (S.COMPLETE, "done")
    finally:
        reader.close()
