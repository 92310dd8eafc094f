"""Keeping the store true by itself: the purge job, heartbeats, DEAD tasks."""

from __future__ import annotations

import datetime
import logging
import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from apscheduler.schedulers.background import BackgroundScheduler
from freezegun import freeze_time

import tasklib
from tasklib import TaskNotFound, TaskStatus, TaskTracker
from tasklib.clock import now_ms
from tasklib.maintenance import Maintenance, purge_round

from .helpers import WAIT, eventually

S = TaskStatus
MS = datetime.timedelta(milliseconds=1)
SECOND = datetime.timedelta(seconds=1)
ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture
def idle_scheduler() -> Iterator[BackgroundScheduler]:
    """A host scheduler that is never started: jobs are added, none runs, no thread."""
    scheduler = BackgroundScheduler()
    yield scheduler
    assert not scheduler.running


def blocked_task(tracker: TaskTracker, release: threading.Event) -> tasklib.Task:
    started = threading.Event()

    def work() -> None:
        started.set()
        release.wait(WAIT)

    task = tracker.submit(work)
    assert started.wait(WAIT)
    return tracker.get(task.id)


def test_dead_by_heartbeat_age(make_tracker: Callable[..., TaskTracker], idle_scheduler: BackgroundScheduler) -> None:
    """A task whose runner's heartbeat is older than dead_after becomes DEAD in a sweep, and not before."""
    release = threading.Event()
    runner = make_tracker(scheduler=idle_scheduler)  # its heartbeat job never runs
    task = blocked_task(runner, release)
    beat = now_ms()
    sweeper = make_tracker(name="sweeper")
    try:
        assert sweeper.sweep(now=beat + 59_000) == 0
        assert sweeper.get(task.id).status is S.RUNNING  # read at the real time: still fresh
        assert sweeper.sweep(now=beat + 61_000) == 1
        dead = sweeper.get(task.id)
        assert dead.status is S.DEAD
        assert dead.message == f"runner {os.uname().nodename}:{os.getpid()} stopped responding"
        assert dead.finished == beat + 61_000
        assert sweeper.sweep(now=beat + 120_000) == 0, "a buried runner is forgotten"
    finally:
        release.set()


def age_heartbeats(tracker: TaskTracker, seconds: int) -> None:
    """Make every runner's last heartbeat ``seconds`` older, as if it had gone silent that long ago."""
    tracker._store.db.execute_sql(f"UPDATE tasklib_runner SET heartbeat = heartbeat - {seconds * 1000}")


def test_reconcile_on_read(make_tracker: Callable[..., TaskTracker], idle_scheduler: BackgroundScheduler) -> None:
    """get() itself reports a task DEAD once its runner is silent past dead_after, with no sweep at all."""
    release = threading.Event()
    runner = make_tracker(scheduler=idle_scheduler)
    task = blocked_task(runner, release)
    reader = make_tracker(name="reader")
    try:
        age_heartbeats(reader, 30)
        assert reader.get(task.id).status is S.RUNNING
        age_heartbeats(reader, 32)
        listed = reader.list()
        seen = reader.get(task.id)
        assert [t.status for t in listed] == [S.DEAD], "list() reconciles on read too"
        assert seen.status is S.DEAD and "stopped responding" in seen.message
        assert runner.get(task.id).status is S.DEAD
    finally:
        release.set()


def test_a_reader_whose_clock_runs_ahead_kills_nothing(
    make_tracker: Callable[..., TaskTracker], idle_scheduler: BackgroundScheduler
) -> None:
    """Liveness is judged on the store's clock: a reader 61 s (or an hour) ahead sees a fresh runner alive."""
    release = threading.Event()
    runner = make_tracker(scheduler=idle_scheduler)
    task = blocked_task(runner, release)
    reader = make_tracker(name="reader")
    try:
        for ahead in (61, 3600):
            with freeze_time(datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=ahead)):
                assert reader.get(task.id).status is S.RUNNING
                assert [t.status for t in reader.list()] == [S.RUNNING]
                assert reader.sweep() == 0
    finally:
        release.set()
    assert runner.wait(task.id, timeout=WAIT).status is S.COMPLETE


def test_own_tasks_are_never_dead_to_their_runner(
    make_tracker: Callable[..., TaskTracker], idle_scheduler: BackgroundScheduler
) -> None:
    """The tracker running a task does not declare it dead, however old its own heartbeat row."""
    release = threading.Event()
    runner = make_tracker(scheduler=idle_scheduler)
    task = blocked_task(runner, release)
    try:
        later = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)
        with freeze_time(later):
            assert runner.get(task.id).status is S.RUNNING
        assert runner.sweep(now=later) == 0
    finally:
        release.set()
    assert runner.wait(task.id, timeout=WAIT).status is S.COMPLETE


def test_stale_host_driven_tasks(make_tracker: Callable[..., TaskTracker]) -> None:
    """With stale_after, a host-driven task nobody started, not updated for that long, becomes DEAD; without it, never.

    A started one belongs to the process that started it, alive here: staleness does not apply to it.
    """
    tracker = make_tracker(stale_after=datetime.timedelta(minutes=10))
    patient = make_tracker(name="patient")
    with freeze_time("2026-06-01 12:00:00"):
        task = tracker.start(tracker.submit().id)
        quiet = tracker.submit()
    t0 = quiet.last_update
    assert tracker.sweep(now=t0 + 10 * 60_000) == 0
    assert patient.sweep(now=t0 + 10**9) == 0
    assert tracker.sweep(now=t0 + 10 * 60_000 + 1) == 1
    dead = tracker.get(quiet.id)
    assert dead.status is S.DEAD and "no update for 0:10:00" in dead.message
    assert tracker.get(task.id).status is S.RUNNING


def test_stale_on_read(make_tracker: Callable[..., TaskTracker]) -> None:
    """get() applies stale_after to the task it reads."""
    tracker = make_tracker(stale_after=datetime.timedelta(minutes=10))
    with freeze_time("2026-06-01 12:00:00") as clock:
        task = tracker.submit()
        clock.tick(9 * 60)
        assert tracker.get(task.id).status is S.ENQUEUED
        clock.tick(2 * 60)
        assert tracker.get(task.id).status is S.DEAD


def test_scheduler_purges_without_a_manual_call(make_tracker: Callable[..., TaskTracker]) -> None:
    """With its own scheduler and small intervals, a tracker purges a finished task by itself."""
    tracker = make_tracker(retention=100 * MS, purge_interval=200 * MS, heartbeat_interval=100 * MS, dead_after=SECOND)
    tracker.open()
    task = tracker.complete(tracker.submit().id)
    kept = tracker.submit()

    def purged() -> bool:
        try:
            tracker.get(task.id)
        except TaskNotFound:
            return True
        return False

    eventually(purged)
    assert tracker.get(kept.id).status is S.ENQUEUED


def test_host_scheduler_gets_the_jobs_and_is_left_alone(make_tracker: Callable[..., TaskTracker]) -> None:
    """A host's scheduler gets fixed-id jobs (coalesce, max_instances=1) and is neither started nor stopped."""
    scheduler = BackgroundScheduler()
    tracker = make_tracker(
        scheduler=scheduler,
        name="billing",
        retention=100 * MS,
        purge_interval=200 * MS,
        heartbeat_interval=100 * MS,
        dead_after=SECOND,
    )
    tracker.open()
    assert not scheduler.running, "the tracker must not start the host's scheduler"
    jobs = {job.id: job for job in scheduler.get_jobs()}
    assert set(jobs) == {"billing:purge", "billing:heartbeat"}
    assert all(job.coalesce and job.max_instances == 1 for job in jobs.values())
    scheduler.start()
    try:
        task = tracker.complete(tracker.submit().id)
        eventually(lambda: _gone(tracker, task.id))
        tracker.close()
        assert scheduler.running, "the tracker must not stop the host's scheduler"
        assert scheduler.get_jobs() == []
    finally:
        scheduler.shutdown()


def test_two_trackers_on_one_scheduler_never_take_each_others_jobs(tmp_path: pathlib.Path) -> None:
    """Default job ids come from the store: two stores share a scheduler; a second tracker on one store is refused."""
    scheduler = BackgroundScheduler()
    scheduler.start(paused=True)
    first = TaskTracker(str(tmp_path / "a.db"), scheduler=scheduler)
    other = TaskTracker(str(tmp_path / "b.db"), scheduler=scheduler)
    twin = TaskTracker(str(tmp_path / "a.db"), scheduler=scheduler)
    try:
        first.open()
        other.open()
        ids = sorted(job.id for job in scheduler.get_jobs())
        assert len(ids) == 4 and ids[0].split(":")[1] != ids[2].split(":")[1], ids
        with pytest.raises(ValueError, match="another open tracker"):
            twin.open()
        assert sorted(job.id for job in scheduler.get_jobs()) == ids, "the refused tracker changed nothing"
        first.close()
        twin.open()  # the jobs are free again
        assert sorted(job.id for job in scheduler.get_jobs()) == ids
    finally:
        for tracker in (first, other, twin):
            tracker.close()
        scheduler.shutdown()


def _gone(tracker: TaskTracker, task_id: str) -> bool:
    try:
        tracker.get(task_id)
    except TaskNotFound:
        return True
    return False


def test_a_failing_round_is_logged_and_retried(caplog: pytest.LogCaptureFixture) -> None:
    """A job that raises is logged, runs again next round, and the scheduler lives on."""
    calls: list[float] = []

    def broken() -> None:
        calls.append(time.monotonic())
        raise OSError("database or disk is full")

    maintenance = Maintenance(
        name="t", purge=broken, heartbeat=lambda: None, purge_interval=100 * MS, heartbeat_interval=100 * MS
    )
    with caplog.at_level(logging.ERROR, logger="tasklib"):
        maintenance.start()
        try:
            eventually(lambda: len(calls) >= 3)
            assert maintenance.scheduler.running
        finally:
            maintenance.stop()
    assert any("purge failed" in r.getMessage() for r in caplog.records)


def test_purge_lease_lets_one_process_purge_at_a_time(make_tracker: Callable[..., TaskTracker]) -> None:
    """While another runner holds the purge lease, a purge round skips; once it is released, it runs."""
    a = make_tracker(retention=MS)
    b = make_tracker(retention=MS, name="b")
    for _ in range(5):
        a.complete(a.submit().id)
    later = now_ms() + 10  # the round judges at a later instant: no sleeping for the clock
    assert a._store.take_lease("purge", "someone-else", now=now_ms(), ttl_ms=60_000)
    assert purge_round(b._store, "b", retention_ms=1, now=later) == 0
    a._store.drop_lease("purge", "someone-else")
    assert purge_round(b._store, "b", retention_ms=1, now=later) == 5


def test_expired_lease_is_taken_over(make_tracker: Callable[..., TaskTracker]) -> None:
    """A lease whose holder died (it expired) does not block purging forever."""
    tracker = make_tracker(retention=MS)
    tracker.complete(tracker.submit().id)
    assert tracker._store.take_lease("purge", "dead-process", now=now_ms() - 3_600_000, ttl_ms=60_000)
    assert purge_round(tracker._store, "me", retention_ms=1, now=now_ms() + 10) == 1


def test_purge_gives_space_back(db_path: pathlib.Path) -> None:
    """After a purge round the file shrinks: incremental vacuum and a WAL checkpoint, no full VACUUM."""
    tracker = TaskTracker(str(db_path), retention=MS)
    for _ in range(2000):
        tracker.complete(tracker.submit(description="x" * 500).id, result="y" * 500)
    tracker._store.db.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    full = db_path.stat().st_size
    assert purge_round(tracker._store, "me", retention_ms=1, now=now_ms() + 10) == 2000
    wal = pathlib.Path(str(db_path) + "-wal")
    assert db_path.stat().st_size < full / 4
    assert not wal.exists() or wal.stat().st_size < 64 * 1024  # checkpointed; the lease release follows
    tracker.close()


# -- other processes ---------------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import sys, time, datetime
    import tasklib
    path = sys.argv[1]
    tracker = tasklib.TaskTracker(path, heartbeat_interval=datetime.timedelta(milliseconds=100),
                                  dead_after=datetime.timedelta(seconds=1))
    def work():
        handle = tasklib.current_task()
        i = 0
        while True:
            handle.update_progress(i % 100)
            i += 1
            time.sleep(0.01)
    task = tracker.submit(work, description="child")
    while tracker.get(task.id).status is not tasklib.TaskStatus.RUNNING:
        time.sleep(0.005)
    print(task.id, flush=True)
    time.sleep(600)
    """
)


def spawn_child(store_url: str) -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen([sys.executable, "-c", CHILD, store_url], stdout=subprocess.PIPE, text=True, env=env)
    assert child.stdout is not None
    task_id = child.stdout.readline().strip()
    assert task_id.isdigit(), "the child did not start its task"
    return child, task_id


def kill(child: subprocess.Popen[str]) -> None:
    child.send_signal(signal.SIGKILL)
    child.wait(WAIT)  # reaped: no zombie keeps its pid alive
    assert child.stdout is not None
    child.stdout.close()


def test_killed_runner_process_makes_its_task_dead(make_tracker: Callable[..., TaskTracker], store_url: str) -> None:
    """A child running a task is SIGKILLed; another process's tracker marks it DEAD within dead_after + a sweep."""
    watcher = make_tracker(heartbeat_interval=100 * MS, dead_after=SECOND, name="watcher")
    watcher.open()  # before the kill: only the heartbeat age can tell
    child, task_id = spawn_child(store_url)
    try:
        eventually(lambda: watcher.get(task_id).status is S.RUNNING)
    finally:
        kill(child)
    killed_at = time.monotonic()
    eventually(lambda: watcher._store.fetch(int(task_id))[0].status == "DEAD", timeout=WAIT)  # the sweep, not a read
    assert time.monotonic() - killed_at <= 1.0 + 0.1 + 2.0  # dead_after + one sweep + slack for a loaded machine
    dead = watcher.get(task_id)
    assert dead.status is S.DEAD and f":{child.pid} stopped responding" in dead.message


def test_new_tracker_marks_vanished_processes_on_this_host_at_once(
    make_tracker: Callable[..., TaskTracker], store_url: str
) -> None:
    """A tracker opening on the store marks DEAD at once the tasks of same-host runners whose process is gone."""
    child, task_id = spawn_child(store_url)
    kill(child)
    fresh = make_tracker(dead_after=datetime.timedelta(hours=1), name="fresh")
    assert fresh._store.fetch(int(task_id))[0].status == "RUNNING"
    fresh.open()
    assert fresh._store.fetch(int(task_id))[0].status == "DEAD"
    assert "no longer running" in fresh.get(task_id).message


PURGER = textwrap.dedent(
    """
    import sys, time
    import tasklib
    path, start = sys.argv[1], float(sys.argv[2])
    tracker = tasklib.TaskTracker(path)
    time.sleep(max(0.0, start - time.time()))
    print(tracker.purge(now=4_000_000_000_000), flush=True)
    tracker.close()
    """
)


def test_two_processes_purging_at_once(make_tracker: Callable[..., TaskTracker], store_url: str) -> None:
    """Two processes purge the same store at the same moment: no error, each expired task deleted once."""
    tracker = make_tracker()
    n = 3000
    for _ in range(n):
        tracker.complete(tracker.submit().id)
    keep = tracker.submit()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = str(time.time() + 1.0)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", PURGER, store_url, start],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in outputs]
    counts = [int(out) for out, _ in outputs]
    assert sum(counts) == n
    assert [r[0] for r in tracker._store.db.execute_sql("SELECT id FROM tasklib_task").fetchall()] == [int(keep.id)]


def test_liveness_rules_judge_at_the_instant_given(make_tracker: Callable[..., TaskTracker]) -> None:
    """The DEAD rules take ``now``: a host-driven task goes stale at a later instant, with no sleeping."""
    from tasklib.liveness import Liveness, Runner

    tracker = make_tracker()
    task = tracker.submit()
    stale_after = datetime.timedelta(minutes=5)
    liveness = Liveness(tracker._store, Runner(), dead_after=datetime.timedelta(seconds=60), stale_after=stale_after)
    assert liveness.sweep(task.last_update + 299_000) == 0
    assert tracker.get(task.id).status is TaskStatus.ENQUEUED
    assert liveness.sweep(task.last_update + 301_000) == 1
    dead = tracker.get(task.id)
    assert (dead.status, dead.message) == (TaskStatus.DEAD, liveness.stale_message())
