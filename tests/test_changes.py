"""Change notifications: watch(), wait() woken by the change itself, on_change hooks."""

from __future__ import annotations

import logging
import select
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import pytest

from tasklib import Task, TaskNotFound, TaskStatus, TaskTracker, TrackerClosed
from tasklib.storage import CHANGE_CHANNEL
from tasklib.tracker import CLOSED_MESSAGE, RECHECK

from .helpers import WAIT

#: A timeout shorter than the re-read that backs up notifications: a wait that
#: returns within it was woken by the notification, whatever the machine's load.
WOKEN = RECHECK * 0.8


def listeners() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "tasklib-changes"]


def in_thread(fn: Callable[[], object]) -> tuple[threading.Thread, list[object]]:
    out: list[object] = []

    def run() -> None:
        try:
            out.append(fn())
        except BaseException as exc:
            out.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, out


def test_watch_yields_each_change_and_ends_with_the_terminal_one(make_tracker: Callable[..., TaskTracker]) -> None:
    tracker = make_tracker()
    task = tracker.submit(description="watched", submitted_by=1)
    snapshots = tracker.watch(task.id, timeout=WAIT)
    first = next(snapshots)
    assert first.status is TaskStatus.ENQUEUED
    tracker.update_progress(task.id, 10)
    assert next(snapshots).progress == 10
    tracker.update_progress(task.id, 20, message="more")
    second = next(snapshots)
    assert (second.status, second.progress, second.message) == (TaskStatus.RUNNING, 20, "more")
    tracker.complete(task.id, {"n": 1})
    last = next(snapshots)
    assert last.status is TaskStatus.COMPLETE and last.result == {"n": 1}
    with pytest.raises(StopIteration):
        next(snapshots)
    assert tracker.changes.waiters == 0


def test_watch_of_a_finished_task_gives_it_once(tracker: TaskTracker) -> None:
    task = tracker.submit(description="done", submitted_by=1)
    tracker.cancel(task.id)
    assert [t.status for t in tracker.watch(task.id)] == [TaskStatus.CANCELLED]


def test_watch_rejects_bad_arguments_before_iterating(tracker: TaskTracker) -> None:
    with pytest.raises(TaskNotFound):
        tracker.watch("abc")
    with pytest.raises(TypeError):
        tracker.watch("1", timeout="soon")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        tracker.watch("1", timeout=-1)
    with pytest.raises(TaskNotFound):
        next(tracker.watch("424242"))


def test_watch_times_out_and_unregisters(tracker: TaskTracker) -> None:
    task = tracker.submit(description="slow", submitted_by=1)
    snapshots = tracker.watch(task.id, timeout=0.05)
    assert next(snapshots).status is TaskStatus.ENQUEUED
    with pytest.raises(TimeoutError):
        next(snapshots)
    assert tracker.changes.waiters == 0


def test_an_abandoned_watch_unregisters(tracker: TaskTracker) -> None:
    task = tracker.submit(description="left", submitted_by=1)
    snapshots = tracker.watch(task.id)
    next(snapshots)
    assert tracker.changes.waiters == 1
    snapshots.close()
    assert tracker.changes.waiters == 0


def test_wait_wakes_on_a_change_in_this_process(tracker: TaskTracker) -> None:
    task = tracker.submit(description="t", submitted_by=1)
    thread, out = in_thread(lambda: tracker.wait(task.id, timeout=WOKEN))
    while tracker.changes.waiters == 0:
        time.sleep(0.001)
    tracker.fail(task.id, "no")
    thread.join()
    assert isinstance(out[0], Task) and out[0].status is TaskStatus.FAILED


def test_wait_wakes_on_a_change_by_another_tracker(make_tracker: Callable[..., TaskTracker]) -> None:
    writer, reader = make_tracker(), make_tracker()
    task = writer.submit(description="t", submitted_by=1)
    thread, out = in_thread(lambda: reader.wait(task.id, timeout=WOKEN))
    while reader.changes.waiters == 0:
        time.sleep(0.001)
    time.sleep(0.2)  # the reader is asleep in its wait by now
    writer.start(task.id)
    writer.complete(task.id, 7)
    thread.join()
    assert isinstance(out[0], Task) and out[0].result == 7


def test_wait_wakes_on_a_change_by_another_process(store_url: str, make_tracker: Callable[..., TaskTracker]) -> None:
    tracker = make_tracker()
    task = tracker.submit(description="t", submitted_by=1)
    code = (
        "import sys, time\n"
        "from tasklib import TaskTracker\n"
        "with TaskTracker(sys.argv[1]) as t:\n"
        "    time.sleep(0.3)\n"
        "    t.start(sys.argv[2])\n"
        "    t.complete(sys.argv[2], 'elsewhere')\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code, store_url, task.id])
    try:
        snapshots = list(tracker.watch(task.id, timeout=WAIT))
        assert child.wait(WAIT) == 0
    finally:
        child.kill()
        child.wait()
    assert snapshots[0].status is TaskStatus.ENQUEUED
    assert snapshots[-1].status is TaskStatus.COMPLETE and snapshots[-1].result == "elsewhere"


def test_the_listening_thread_runs_only_while_someone_waits(make_tracker: Callable[..., TaskTracker]) -> None:
    before = len(listeners())
    writer, reader = make_tracker(), make_tracker()
    reader.open()
    assert len(listeners()) == before  # neither construction nor open() starts it
    task = writer.submit(description="t", submitted_by=1)
    thread, _ = in_thread(lambda: reader.wait(task.id, timeout=WAIT))
    while reader.changes.waiters == 0:
        time.sleep(0.001)
    assert len(listeners()) == before + 1
    writer.cancel(task.id)
    thread.join()
    reader.close()
    assert len(listeners()) == before


def test_the_listener_connects_again_after_losing_its_connection(
    make_tracker: Callable[..., TaskTracker], is_sqlite: bool
) -> None:
    if is_sqlite:
        pytest.skip("PostgreSQL's listening connection")
    writer, reader = make_tracker(), make_tracker()
    task = writer.submit(description="t", submitted_by=1)
    snapshots = reader.watch(task.id, timeout=WOKEN)
    assert next(snapshots).status is TaskStatus.ENQUEUED
    listening = (
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
        " AND query LIKE 'LISTEN%%' AND pid <> pg_backend_pid()"
    )
    db = writer._store.db  # the test's window into the server
    deadline = time.monotonic() + WAIT
    while not db.execute_sql(listening).fetchall():
        assert time.monotonic() < deadline, "the listener never connected"
        time.sleep(0.01)
    db.execute_sql("SELECT pg_terminate_backend(pid) FROM (" + listening + ") AS l")
    writer.start(task.id)
    assert next(snapshots).status is TaskStatus.RUNNING
    while not db.execute_sql(listening).fetchall():  # connected again
        assert time.monotonic() < deadline, "the listener did not connect again"
        time.sleep(0.01)
    writer.complete(task.id)
    assert [s.status for s in snapshots] == [TaskStatus.COMPLETE]


def test_a_new_task_notifies_no_listener_and_its_changes_do(
    make_tracker: Callable[..., TaskTracker], store_url: str, is_sqlite: bool
) -> None:
    """PostgreSQL: no waiter can watch a task not yet inserted, so its insert sends no NOTIFY; a change of it does.

    A notifying commit takes turns with the others on PostgreSQL's notification
    lock through its WAL flush: the insert of a sending loop must not queue there.
    """
    if is_sqlite:
        pytest.skip("PostgreSQL's notifications")
    psycopg2 = pytest.importorskip("psycopg2")
    tracker = make_tracker()
    listener = psycopg2.connect(store_url)
    listener.autocommit = True

    def hear() -> list[str]:
        """The payloads of the notifications up to the test's own last one, sent after the writes."""
        with listener.cursor() as cursor:
            cursor.execute(f"NOTIFY {CHANGE_CHANNEL}, 'end'")  # delivered after every earlier commit's
        heard: list[str] = []
        deadline = time.monotonic() + WAIT
        while "end" not in heard:
            assert time.monotonic() < deadline, f"the test's own notification never came: {heard}"
            select.select([listener], [], [], 0.05)
            listener.poll()
            heard.extend(n.payload for n in listener.notifies)
            listener.notifies.clear()
        return heard[: heard.index("end")]

    try:
        listener.cursor().execute(f"LISTEN {CHANGE_CHANNEL}")
        task = tracker.submit(description="t", submitted_by=1)
        assert hear() == []
        tracker.cancel(task.id)  # ENQUEUED -> CANCELLED: a change of an existing task
        assert hear() == [""]
    finally:
        listener.close()
    assert tracker.get(task.id).status is TaskStatus.CANCELLED


def test_a_purged_task_ends_its_watch(tracker: TaskTracker) -> None:
    task = tracker.submit(description="t", submitted_by=1)
    snapshots = tracker.watch(task.id)
    next(snapshots)
    tracker.cancel(task.id)
    later = datetime.now(timezone.utc) + tracker.retention + timedelta(days=1)
    assert tracker.purge(later) == 1
    # The cancel and the purge may be seen as one change: a gone task.
    with pytest.raises(TaskNotFound):
        for _ in snapshots:
            pass


def test_close_wakes_waiters_with_tracker_closed(tracker: TaskTracker) -> None:
    task = tracker.submit(description="t", submitted_by=1)
    thread, out = in_thread(lambda: tracker.wait(task.id, timeout=WOKEN))
    while tracker.changes.waiters == 0:
        time.sleep(0.001)
    tracker.close()
    thread.join()
    assert isinstance(out[0], TrackerClosed)


# -- on_change hooks -----------------------------------------------------------


def test_hooks_see_each_status_change_this_process_makes(tracker: TaskTracker) -> None:
    seen: list[tuple[str, TaskStatus, int]] = []
    tracker.on_change(lambda t: seen.append((t.id, t.status, t.progress)))
    task = tracker.submit(description="t", submitted_by=1)
    tracker.update_progress(task.id, 5)  # starts it
    tracker.update_progress(task.id, 6)  # keeps RUNNING: no call
    tracker.cancel(task.id)
    tracker.cancel(task.id)  # changes nothing: no call
    tracker.acknowledge_cancel(task.id)
    assert seen == [
        (task.id, TaskStatus.ENQUEUED, 0),
        (task.id, TaskStatus.RUNNING, 5),
        (task.id, TaskStatus.CANCEL_REQUESTED, 6),
        (task.id, TaskStatus.CANCELLED, 6),
    ]


def test_hooks_see_a_submitted_function_start_and_end_on_its_worker(tracker: TaskTracker) -> None:
    seen: list[tuple[TaskStatus, str]] = []
    tracker.on_change(lambda t: seen.append((t.status, threading.current_thread().name)))
    task = tracker.submit(lambda: 3, description="fn", submitted_by=1)
    assert tracker.wait(task.id, timeout=WAIT).result == 3
    # A free worker takes the task at once, so it is recorded RUNNING by the
    # submitting thread, never ENQUEUED; it ends on the worker.
    assert [s for s, _ in seen] == [TaskStatus.RUNNING, TaskStatus.COMPLETE]
    assert seen[0][1] == threading.current_thread().name
    assert all(name.startswith("tasklib-worker") for _, name in seen[1:])


def test_a_failing_hook_is_logged_and_the_write_stands(tracker: TaskTracker, caplog: pytest.LogCaptureFixture) -> None:
    calls: list[TaskStatus] = []

    def broken(task: Task) -> None:
        raise RuntimeError("hook broke")

    tracker.on_change(broken)
    tracker.on_change(lambda t: calls.append(t.status))
    with caplog.at_level(logging.ERROR, logger="tasklib"):
        task = tracker.submit(description="t", submitted_by=1)
        done = tracker.fail(task.id, "no")
    assert done.status is TaskStatus.FAILED
    assert tracker.get(task.id).status is TaskStatus.FAILED
    assert calls == [TaskStatus.ENQUEUED, TaskStatus.FAILED]
    failures = [r for r in caplog.records if "on_change hook failed" in r.getMessage()]
    assert len(failures) == 2 and all(r.exc_info for r in failures)


def test_hooks_can_be_removed_by_handle_or_by_name(tracker: TaskTracker) -> None:
    one: list[TaskStatus] = []
    two: list[TaskStatus] = []

    def second(task: Task) -> None:
        two.append(task.status)

    handle = tracker.on_change(lambda t: one.append(t.status))
    tracker.on_change(second)
    tracker.submit(description="a", submitted_by=1)
    handle.remove()
    handle.remove()  # twice is harmless
    tracker.on_change(second, remove=True)
    tracker.submit(description="b", submitted_by=1)
    assert one == two == [TaskStatus.ENQUEUED]


def test_on_change_rejects_what_cannot_be_called(tracker: TaskTracker) -> None:
    with pytest.raises(TypeError):
        tracker.on_change("print")  # type: ignore[arg-type]


def test_an_in_memory_store_wakes_its_waiters_too() -> None:
    with TaskTracker(":memory:") as tracker:
        task = tracker.submit(description="t", submitted_by=1)
        thread, out = in_thread(lambda: tracker.wait(task.id, timeout=WOKEN))
        while tracker.changes.waiters == 0:
            time.sleep(0.001)
        tracker.complete(task.id, "here")
        thread.join()
    assert isinstance(out[0], Task) and out[0].result == "here"


# -- hooks and the tasks made DEAD in bulk ---------------------------------------


def dead_seen(tracker: TaskTracker) -> list[Task]:
    """The DEAD snapshots ``tracker``'s hooks are called with, from now on."""
    seen: list[Task] = []
    tracker.on_change(lambda t: seen.append(t) if t.status is TaskStatus.DEAD else None)
    return seen


def test_hooks_see_the_tasks_a_sweep_makes_dead(make_tracker: Callable[..., TaskTracker]) -> None:
    runner = make_tracker()
    tasks = [runner.start(runner.submit(description=f"t{i}", submitted_by=1).id) for i in range(3)]
    sweeper = make_tracker(name="sweeper")
    seen = dead_seen(sweeper)
    later = datetime.now(timezone.utc) + runner.dead_after + timedelta(seconds=1)
    assert sweeper.sweep(now=later) == 3
    assert sorted(t.id for t in seen) == sorted(t.id for t in tasks)
    for snapshot in seen:
        # The snapshot after the change: as a read of it now gives it.
        assert snapshot.to_dict() == sweeper.get(snapshot.id).to_dict()
        assert snapshot.message is not None and "stopped responding" in snapshot.message


def test_hooks_see_the_stale_tasks_a_sweep_makes_dead(make_tracker: Callable[..., TaskTracker]) -> None:
    tracker = make_tracker(stale_after=timedelta(minutes=5))
    task = tracker.submit(description="nobody drives me", submitted_by=1)
    seen = dead_seen(tracker)
    assert tracker.sweep(now=datetime.now(timezone.utc) + timedelta(minutes=6)) == 1
    assert [t.id for t in seen] == [task.id]
    assert seen[0].message == tracker.get(task.id).message
    assert "no update for" in (seen[0].message or "")


def test_hooks_see_the_tasks_close_makes_dead(make_tracker: Callable[..., TaskTracker]) -> None:
    tracker = make_tracker()
    task = tracker.start(tracker.submit(description="left running", submitted_by=1).id)
    seen = dead_seen(tracker)
    tracker.close()
    assert [t.id for t in seen] == [task.id]
    assert seen[0].message == CLOSED_MESSAGE and seen[0].finished is not None


def test_hooks_see_a_vanished_neighbours_tasks_made_dead_at_open(
    store_url: str, make_tracker: Callable[..., TaskTracker]
) -> None:
    # A real process starts a task and ends without closing its tracker.
    code = (
        "import os, sys\n"
        "from tasklib import TaskTracker\n"
        "t = TaskTracker(sys.argv[1]).open()\n"
        "print(t.start(t.submit(description='orphan', submitted_by=1).id).id, flush=True)\n"
        "os._exit(0)\n"
    )
    child = subprocess.run([sys.executable, "-c", code, store_url], capture_output=True, text=True, timeout=WAIT)
    assert child.returncode == 0, child.stderr
    orphan = child.stdout.strip()
    tracker = make_tracker()
    seen = dead_seen(tracker)
    followed: list[Task] = []

    def follow_up(task: Task) -> None:
        # A hook may call the tracker, even one that opens it: open() announces past its lock.
        if task.status is TaskStatus.DEAD:
            followed.append(tracker.start(tracker.submit(description=f"redo {task.id}").id))

    tracker.on_change(follow_up)
    opening = threading.Thread(target=tracker.open)
    opening.start()
    opening.join(WAIT)
    assert not opening.is_alive(), "open() deadlocked on a hook that calls the tracker"
    assert [t.id for t in seen] == [orphan]
    assert "is no longer running" in (seen[0].message or "")
    assert [t.status for t in followed] == [TaskStatus.RUNNING]
