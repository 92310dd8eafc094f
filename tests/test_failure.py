"""Truth under failure: every task ends, every error is tasklib's, a reader never waits for a writer."""

from __future__ import annotations

import datetime
import math
import os
import pathlib
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import peewee
import pytest
from freezegun import freeze_time
from playhouse import db_url

import tasklib
import tasklib.storage
from tasklib import InvalidTransition, StoreError, Task, TaskStatus, TaskTracker
from tasklib.jsonvalue import MAX_DEPTH
from tasklib.tracker import CLOSED_MESSAGE

from .helpers import WAIT, eventually, rows

S = TaskStatus
UNFINISHED = {S.ENQUEUED, S.RUNNING, S.CANCEL_REQUESTED}


def all_finished(tracker: TaskTracker) -> None:
    left = [(t.id, t.status) for t in tracker.list(limit=1000) if t.status in UNFINISHED]
    assert left == [], "tasks left unfinished"


# -- outcomes a store cannot hold -------------------------------------------------------


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no text for you")


def _raise(exc: BaseException) -> Any:
    raise exc


def _bad_progress() -> None:
    tasklib.current_task().update_progress(10, message="half \ud800 done")


OUTCOMES: list[tuple[str, Callable[[], Any], str]] = [
    ("surrogate result", lambda: {"name": "a\ud800b"}, "lone surrogate"),
    ("surrogate key", lambda: {"\udfff": 1}, "lone surrogate"),
    ("surrogate error", lambda: _raise(ValueError("bad \ud800 text")), "ValueError: bad \\ud800 text"),
    ("nul error", lambda: _raise(ValueError("nul \x00 here")), "ValueError: nul \\x00 here"),
    ("unprintable error", lambda: _raise(Unprintable()), "Unprintable: (its message could not be read)"),
    ("surrogate progress", _bad_progress, "lone surrogate"),
    ("too deep", lambda: _nested(MAX_DEPTH + 1), f"deeper than {MAX_DEPTH} levels"),
]


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize("fn,expected", [(fn, want) for _, fn, want in OUTCOMES], ids=[n for n, _, _ in OUTCOMES])
def test_an_outcome_the_store_cannot_hold_ends_failed_naming_it(
    make_tracker: Callable[..., TaskTracker], fn: Callable[[], Any], expected: str
) -> None:
    """The task ends FAILED, with a message the store can hold that names the problem; wait() returns."""
    tracker = make_tracker()
    task = tracker.wait(tracker.submit(fn).id, timeout=WAIT)
    assert task.status is S.FAILED
    assert task.message is not None and expected in task.message
    task.message.encode("utf-8")  # storable, and readable by every reader
    assert "\x00" not in task.message
    assert tracker.get(task.id).to_json()


@pytest.mark.parametrize(
    "call",
    [
        lambda t, i: t.update_progress(i, 10, message="\ud800"),
        lambda t, i: t.complete(i, result=["\udbff"]),
        lambda t, i: t.complete(i, message="x\udc00"),
        lambda t, i: t.fail(i, "nul\x00"),
        lambda t, i: t.complete(i, result=_nested(MAX_DEPTH + 1)),
    ],
    ids=["progress message", "result", "complete message", "fail NUL", "too deep"],
)
def test_host_values_the_store_cannot_hold_are_refused_unwritten(
    tracker: TaskTracker, call: Callable[..., Any]
) -> None:
    task = tracker.update_progress(tracker.submit().id, 5, message="before")
    before = rows(tracker)
    with pytest.raises(ValueError):
        call(tracker, task.id)
    assert rows(tracker) == before


def test_nesting_up_to_the_limit_is_stored_and_read_back_anywhere(tracker: TaskTracker) -> None:
    value = _nested(MAX_DEPTH)
    task = tracker.complete(tracker.submit().id, result=value)
    assert tracker.get(task.id).result == value
    assert tracker.list()[0].result == value


def test_a_stored_value_too_deep_to_read_never_breaks_reading(tracker: TaskTracker) -> None:
    """A value an older tasklib stored deeper than a reader's stack allows reads back as absent."""
    task = tracker.complete(tracker.submit().id, result=1)
    deep = "[" * 5000 + "]" * 5000
    db = tracker._store.db
    db.execute_sql(f"UPDATE tasklib_task SET result = {db.param} WHERE id = {db.param}", (deep, int(task.id)))
    read = tracker.get(task.id)
    assert read.status is S.COMPLETE and read.result is None
    assert [t.id for t in tracker.list()] == [task.id]
    assert '"result"' not in read.to_json()


# -- arguments at the edges of numbers --------------------------------------------------


def test_numbers_at_the_edges(tracker: TaskTracker, db_path: pathlib.Path) -> None:
    task = tracker.complete(tracker.submit().id)
    with pytest.raises(ValueError, match="timeout"):
        tracker.wait(task.id, timeout=math.nan)
    with pytest.raises(ValueError, match="timeout"):
        tracker.wait(task.id, timeout=-1)
    assert tracker.wait(task.id, timeout=math.inf).status is S.COMPLETE
    assert tracker.wait(task.id, timeout=10**400).status is S.COMPLETE
    for call in (tracker.purge, tracker.sweep):
        with pytest.raises(ValueError, match="now"):
            call(now=2**80)
        with pytest.raises(ValueError, match="now"):
            call(now=-1)
    for name in ("purge_interval", "heartbeat_interval"):
        with pytest.raises(ValueError, match=name):
            TaskTracker(str(db_path), **{name: datetime.timedelta.max})
    with pytest.raises(ValueError, match="pool_timeout"):
        TaskTracker(str(db_path), pool_timeout=math.nan)
    assert rows(tracker)[0][1] == "COMPLETE"


def test_elapsed_runtime_is_never_negative_after_the_clock_steps_back(tracker: TaskTracker) -> None:
    with freeze_time("2026-06-01 12:00:10"):
        task = tracker.start(tracker.submit().id)
    with freeze_time("2026-06-01 12:00:00"):  # ten seconds earlier
        assert tracker.get(task.id).elapsed_runtime == 0
        done = tracker.complete(task.id)
    assert done.elapsed_runtime == 0
    assert tracker.get(task.id).elapsed_runtime == 0


# -- races ------------------------------------------------------------------------------


def test_acknowledge_racing_a_cancel_request_is_written_not_passed(make_tracker: Callable[..., TaskTracker]) -> None:
    """acknowledge_cancel whose compare-and-set missed because a cancel request landed just after retries and writes."""
    host = make_tracker()
    other = make_tracker()
    task = host.start(host.submit().id)
    store = host._store
    real_apply = store.apply
    raced: list[bool] = []

    def apply_then_cancel(*args: Any, **kwargs: Any) -> Any:
        record = real_apply(*args, **kwargs)
        if record is None and not raced:
            raced.append(True)
            other.cancel(task.id)  # lands between the missed write and its re-read
        return record

    store.apply = apply_then_cancel  # type: ignore[method-assign]
    done = host.acknowledge_cancel(task.id)
    assert raced and done.status is S.CANCELLED
    assert other.get(task.id).status is S.CANCELLED


def test_racing_acknowledge_and_cancel_never_pass_for_success(make_tracker: Callable[..., TaskTracker]) -> None:
    """Across threads: acknowledge_cancel either writes CANCELLED or raises; it never returns another status."""
    tracker = make_tracker()
    for _ in range(40):
        task = tracker.start(tracker.submit().id)
        seen: list[Any] = []
        go = threading.Barrier(2)

        def acknowledge(task: Task = task, seen: list[Any] = seen, go: threading.Barrier = go) -> None:
            go.wait(WAIT)
            for _ in range(200):
                try:
                    seen.append(tracker.acknowledge_cancel(task.id).status)
                    return
                except InvalidTransition:
                    continue

        thread = threading.Thread(target=acknowledge)
        thread.start()
        go.wait(WAIT)
        tracker.cancel(task.id)
        thread.join(WAIT)
        assert seen in ([], [S.CANCELLED])
        assert tracker.get(task.id).status in (S.CANCEL_REQUESTED, S.CANCELLED)


# -- every task ends --------------------------------------------------------------------


def test_close_ends_the_host_driven_tasks_it_started(make_tracker: Callable[..., TaskTracker]) -> None:
    """A RUNNING host-driven task of a closing tracker becomes DEAD; an unstarted one waits for whoever starts it."""
    host = make_tracker()
    running = host.update_progress(host.submit().id, 30, message="working")
    queued = host.submit()
    host.close()
    reader = make_tracker()
    dead = reader.get(running.id)
    assert (dead.status, dead.message, dead.progress) == (S.DEAD, CLOSED_MESSAGE, 30)
    assert reader.get(queued.id).status is S.ENQUEUED
    assert reader.start(queued.id).status is S.RUNNING
    reader.close()
    assert make_tracker().get(queued.id).status is S.DEAD


HOST_DRIVER = """
    import sys, time
    import tasklib
    tracker = tasklib.TaskTracker(sys.argv[1], heartbeat_interval=__import__("datetime").timedelta(milliseconds=200),
                                  dead_after=__import__("datetime").timedelta(seconds=1))
    task = tracker.start(tracker.submit(description="host work").id)
    print(task.id, flush=True)
    while True:
        time.sleep(0.05)
"""


def test_a_killed_host_process_leaves_its_started_task_dead(
    make_tracker: Callable[..., TaskTracker], store_url: str
) -> None:
    """kill -9 of the process driving a task: another tracker's sweep makes it DEAD within dead_after."""
    watcher = make_tracker(
        heartbeat_interval=datetime.timedelta(milliseconds=200), dead_after=datetime.timedelta(seconds=1)
    )
    watcher.open()
    child = subprocess.Popen(
        [sys.executable, "-c", _dedent(HOST_DRIVER), store_url],
        env=_env(),
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert child.stdout is not None
    task_id = child.stdout.readline().strip()
    assert task_id, child.stderr.read() if child.stderr else ""
    assert watcher.get(task_id).status is S.RUNNING
    child.send_signal(signal.SIGKILL)
    child.communicate(timeout=WAIT)
    eventually(lambda: watcher._store.fetch(int(task_id))[0].status == "DEAD", timeout=WAIT)  # type: ignore[index]
    assert "stopped responding" in (watcher.get(task_id).message or "")


# -- a store that is briefly unavailable ------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: pathlib.Path) -> Iterator[pathlib.Path]:
    """A 3 MB tmpfs, to fill up for real; skipped where this process may not mount one."""
    mount = tmp_path / "small"
    mount.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], capture_output=True, text=True
    )
    if made.returncode:
        pytest.skip(f"cannot mount a tmpfs to fill up here ({made.stderr.strip() or 'mount failed'})")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(directory: pathlib.Path) -> pathlib.Path:
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        for size in (65536, 4096, 512, 1):  # to the last byte
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                pass
    finally:
        os.close(fd)
    return filler


def test_a_full_disk_delays_outcomes_and_loses_none(small_disk: pathlib.Path, caplog: pytest.LogCaptureFixture) -> None:
    """Tasks finishing while the disk is full stay RUNNING, readable, and end COMPLETE once space comes back."""
    tracker = TaskTracker(str(small_disk / "tasks.db"), max_workers=8)
    release = threading.Event()
    try:
        _fill_then_free(tracker, small_disk, release)
    finally:
        release.set()
        tracker.close()
    retried = [r for r in caplog.records if "could not write the outcome" in r.getMessage()]
    assert retried and "full" in retried[0].getMessage(), "the workers never met the full disk"
    with sqlite3.connect(small_disk / "tasks.db") as raw:
        assert raw.execute("PRAGMA integrity_check").fetchall() == [("ok",)]


def _fill_then_free(tracker: TaskTracker, small_disk: pathlib.Path, release: threading.Event) -> None:
    def work(i: int) -> list[str]:
        release.wait(WAIT)
        return [f"{i}:" + "r" * 1000] * 100  # 100 KB each: needs new pages

    tasks = [tracker.submit(work, i) for i in range(8)]
    eventually(lambda: all(tracker.get(t.id).status is S.RUNNING for t in tasks))
    filler = fill(small_disk)
    try:
        host = tracker.submit()  # may fail, and must then say so as tasklib's error
    except StoreError:
        host = None
    release.set()
    time.sleep(1.0)  # the workers meet the full disk and keep retrying
    for task in tasks:
        assert tracker.get(task.id).status is S.RUNNING  # reads still work
    with pytest.raises(StoreError):
        for task in tasks:  # host writes fail as StoreError, never sqlite3's errors
            tracker.complete(task.id, result=["x" * 1000] * 200)
    filler.unlink()
    finals = [tracker.wait(t.id, timeout=WAIT) for t in tasks]
    assert {t.status for t in finals} == {S.COMPLETE}, [(t.id, t.status, t.message) for t in finals]
    assert all(t.result[0].startswith(f"{i}:") for i, t in enumerate(finals))
    if host is not None:
        assert tracker.get(host.id).status is S.ENQUEUED


LOCK_HOLDER = """
    import sqlite3, sys, time
    conn = sqlite3.connect(sys.argv[1], isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("UPDATE tasklib_meta SET value = value WHERE key = 'schema_version'")
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
    conn.execute("COMMIT")
"""


def test_reads_never_wait_for_another_processs_writer(db_path: pathlib.Path) -> None:
    """While another process holds the write lock, get, list, a new tracker and the web layer answer at once."""
    from tasklib.web import TRUST_ALL, wsgi_app

    tracker = TaskTracker(str(db_path))
    task = tracker.update_progress(tracker.submit(description="read me").id, 40)
    tracker.close()
    holder = subprocess.Popen(
        [sys.executable, "-c", _dedent(LOCK_HOLDER), str(db_path), "5"],
        env=_env(),
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    began = time.monotonic()
    took: dict[str, float] = {}

    def timed(name: str, call: Callable[[], Any]) -> None:
        start = time.monotonic()
        call()
        took[name] = time.monotonic() - start

    fresh = TaskTracker(str(db_path))  # opening a store takes no write lock
    app = wsgi_app(fresh, authenticate=TRUST_ALL)

    def http_get() -> None:
        status: list[str] = []
        body = b"".join(
            app(
                {
                    "REQUEST_METHOD": "GET",
                    "PATH_INFO": f"/rest/api/3/task/{task.id}",
                    "SERVER_NAME": "localhost",
                    "SERVER_PORT": "80",
                    "wsgi.url_scheme": "http",
                    "QUERY_STRING": "",
                },
                lambda s, h, *a: status.append(s),
            )
        )  # type: ignore[arg-type]
        assert status[0].startswith("200") and b"read me" in body

    threads = [
        threading.Thread(target=timed, args=("get", lambda: fresh.get(task.id))),
        threading.Thread(target=timed, args=("list", lambda: fresh.list())),
        threading.Thread(target=timed, args=("http", http_get)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert set(took) == {"get", "list", "http"}
    assert time.monotonic() - began < 4.0, f"reads waited for the writer: {took}"
    holder.communicate(timeout=WAIT)
    fresh.close()


# -- errors are tasklib's ---------------------------------------------------------------


def test_a_postgresql_url_without_the_driver_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg2", None)  # as if not installed
    with pytest.raises(StoreError) as caught:
        TaskTracker("postgresql://postgres@127.0.0.1:5432/test")
    text = str(caught.value)
    assert "\n" not in text and "pip install" in text and "[postgres]" in text


@pytest.mark.parametrize("url", ["mysql://root@127.0.0.1/test", "mongodb://x", "cockroachdb://y/z"])
def test_an_unsupported_scheme_is_one_line(url: str) -> None:
    with pytest.raises(StoreError, match="supports") as caught:
        TaskTracker(url)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("target", [":memory:", "sqlite:///:memory:"])
def test_memory_store_is_private_and_shared_by_the_trackers_threads(target: str) -> None:
    with TaskTracker(target, max_workers=4, progress_interval=0.01) as tracker:

        def work(i: int) -> int:
            tasklib.current_task().update_progress(50)
            return i * 2

        tasks = [tracker.submit(work, i) for i in range(30)]
        finals = [tracker.wait(t.id, timeout=WAIT) for t in tasks]
        assert [t.result for t in finals] == [i * 2 for i in range(30)]
        seen: list[int] = []
        reader = threading.Thread(target=lambda: seen.append(len(tracker.list(limit=100))))
        reader.start()
        reader.join(WAIT)
        assert seen == [30]
        assert tracker.purge(now=datetime.datetime(2100, 1, 1)) == 30
    with TaskTracker(target) as other:
        assert other.list() == [], "each in-memory store is private"


def test_a_peewee_memory_database_is_refused_at_once() -> None:
    with pytest.raises(StoreError, match="memory"):
        TaskTracker(peewee.SqliteDatabase(":memory:"))


def _open_files(path: pathlib.Path) -> list[str]:
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(path)):
            found.append(target)
    return found


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc to list open files")
def test_close_leaves_no_file_handle_open(db_path: pathlib.Path) -> None:
    tracker = TaskTracker(str(db_path), max_workers=4)
    tasks = [tracker.submit(lambda i=i: time.sleep(0.01) or i) for i in range(20)]
    for task in tasks:
        tracker.wait(task.id, timeout=WAIT)
    readers = [threading.Thread(target=lambda: tracker.list()) for _ in range(4)]
    for thread in readers:
        thread.start()
    for thread in readers:
        thread.join(WAIT)
    assert _open_files(db_path)  # the test sees the handles it means
    tracker.close()
    assert _open_files(db_path) == []


def test_closing_under_busy_threads_waits_for_their_statements(make_tracker: Callable[..., TaskTracker]) -> None:
    """Threads reading and writing while the tracker closes get TrackerClosed or StoreError, never a crash.

    Closing a connection another thread is mid-statement on crashes SQLite's
    driver; close() waits for running statements instead.
    """
    tracker = make_tracker()
    ids = [tracker.start(tracker.submit(description=f"t{i}").id).id for i in range(8)]
    go = threading.Barrier(9)
    ended: list[BaseException] = []

    def hammer(task_id: str) -> None:
        go.wait(WAIT)
        try:
            for n in range(1_000_000):
                tracker.update_progress(task_id, n % 100)
                tracker.list()
        except (tasklib.TrackerClosed, StoreError) as exc:
            ended.append(exc)

    threads = [threading.Thread(target=hammer, args=(task_id,)) for task_id in ids]
    for thread in threads:
        thread.start()
    go.wait(WAIT)
    time.sleep(0.3)
    tracker.close()
    for thread in threads:
        thread.join(WAIT)
    assert not any(thread.is_alive() for thread in threads)
    assert len(ended) == len(threads)


def test_closing_waits_for_a_maintenance_round_on_the_hosts_scheduler(
    make_tracker: Callable[..., TaskTracker],
) -> None:
    """A purge round running in the host's scheduler ends before the store is closed; none starts after."""
    from apscheduler.schedulers.background import BackgroundScheduler

    scheduler = BackgroundScheduler(daemon=True)
    scheduler.start()
    try:
        for _ in range(5):
            tracker = make_tracker(scheduler=scheduler, purge_interval=datetime.timedelta(milliseconds=1))
            tracker.open()
            for _ in range(20):
                tracker.complete(tracker.submit().id, result=None)
            time.sleep(0.05)
            tracker.close()
            assert scheduler.get_jobs() == []
    finally:
        scheduler.shutdown(wait=True)


# -- PostgreSQL: a small pool, a restarted server ---------------------------------------

# Only the PostgreSQL run of the store fixture; skipped with the suite's one reason where it is not configured.
postgres_only = pytest.mark.parametrize("store_url", ["postgres"], indirect=True)


@postgres_only
def test_48_threads_on_a_small_pool_wait_their_turn(make_tracker: Callable[..., TaskTracker], store_url: str) -> None:
    tracker = make_tracker(pool_size=4, pool_timeout=30)
    task = tracker.submit()
    errors: list[BaseException] = []
    done: list[int] = []

    def hammer(i: int) -> None:
        try:
            for p in range(10):
                tracker.update_progress(task.id, p)
                tracker.get(task.id)
            done.append(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(48)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == [] and len(done) == 48


@postgres_only
def test_a_full_pool_is_a_store_error_after_the_timeout(
    make_tracker: Callable[..., TaskTracker], store_url: str
) -> None:
    tracker = make_tracker(pool_size=1, pool_timeout=0.3)
    task = tracker.submit()
    db = tracker._store.db
    db.connect()  # this thread holds the only connection
    try:
        failed: list[BaseException] = []
        thread = threading.Thread(target=lambda: _catch(failed, lambda: tracker.get(task.id)))
        thread.start()
        thread.join(WAIT)
        assert len(failed) == 1 and isinstance(failed[0], StoreError), failed
    finally:
        db.close()
    assert tracker.get(task.id).status is S.ENQUEUED


def _server_side(store_url: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """``sql``'s rows, run on a connection of its own: what the server sees of the tracker's."""
    db = peewee.PostgresqlDatabase(**db_url.parse(store_url))
    try:
        return list(db.execute_sql(sql, params).fetchall())
    finally:
        db.close()


@postgres_only
def test_a_pooled_connection_is_handed_out_without_a_round_trip(
    make_tracker: Callable[..., TaskTracker], store_url: str
) -> None:
    """Checking an intact connection out of the pool runs no statement: each write is one round trip, not two."""
    tracker = make_tracker()
    tracker.submit(description="probe")  # the pool's one connection last ran the insert
    db = tracker._store.db
    db.connect()  # checked out as every statement checks it out
    try:
        pid = db.connection().get_backend_pid()  # libpq's own record: no statement
    finally:
        db.close()
    [(query,)] = _server_side(store_url, "SELECT query FROM pg_stat_activity WHERE pid = %s", (pid,))
    # The insert itself (prepared on the connection), not a liveness check's SELECT 1.
    assert query.startswith(f"EXECUTE {tracker._store._insert.name}("), query


@postgres_only
def test_a_connection_quiet_for_long_is_checked_with_a_round_trip(
    make_tracker: Callable[..., TaskTracker], store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past POOL_QUIET_CHECK in the pool a connection gets peewee's SELECT 1: only that finds one dropped silently."""
    monkeypatch.setattr(tasklib.storage, "POOL_QUIET_CHECK", 0.0)  # every connection has been quiet for long
    tracker = make_tracker()
    tracker.submit(description="probe")
    db = tracker._store.db
    db.connect()
    try:
        pid = db.connection().get_backend_pid()
    finally:
        db.close()
    [(query,)] = _server_side(store_url, "SELECT query FROM pg_stat_activity WHERE pid = %s", (pid,))
    assert query == "SELECT 1"


@postgres_only
def test_a_connection_the_server_closed_is_replaced_before_a_submit(
    make_tracker: Callable[..., TaskTracker], store_url: str
) -> None:
    """A pooled connection the server ended while it was idle is never handed to an insert, which could not retry."""
    tracker = make_tracker()
    first = tracker.submit(description="before")
    gone = _server_side(
        store_url,
        "SELECT pg_terminate_backend(pid), pid FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid() AND query LIKE '%%tasklib_task%%'",
    )
    assert gone and all(ok for ok, _ in gone), gone
    pids = tuple(pid for _, pid in gone)
    eventually(lambda: not _server_side(store_url, "SELECT 1 FROM pg_stat_activity WHERE pid IN %s", (pids,)))
    second = tracker.submit(description="after")  # on a new connection: the dead one was discarded
    assert [tracker.get(t.id).description for t in (first, second)] == ["before", "after"]


def _catch(into: list[BaseException], call: Callable[[], Any]) -> None:
    try:
        call()
    except BaseException as exc:
        into.append(exc)


def _restart_postgres() -> None:
    versions = os.listdir("/etc/postgresql")
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", versions[0], "main", "restart"],
        check=True,
        capture_output=True,
        timeout=120,
    )


@postgres_only
@pytest.mark.skipif(
    os.environ.get("TASKLIB_TEST_PG_RESTART") != "1",
    reason="restarts the local PostgreSQL server: set TASKLIB_TEST_PG_RESTART=1",
)
def test_a_postgresql_restart_strands_no_task(make_tracker: Callable[..., TaskTracker], store_url: str) -> None:
    """Tasks running across a server restart all end COMPLETE; host calls meanwhile fail only as StoreError."""
    tracker = make_tracker(max_workers=4, progress_interval=0.02)

    def work(i: int) -> int:
        handle = tasklib.current_task()
        for p in range(0, 100, 2):
            handle.update_progress(p)
            time.sleep(0.02)
        return i

    tasks = [tracker.submit(work, i) for i in range(40)]
    foreign: list[BaseException] = []
    stop = threading.Event()

    def host_reads() -> None:
        while not stop.is_set():
            try:
                tracker.get(tasks[0].id)
            except StoreError:
                pass
            except BaseException as exc:
                foreign.append(exc)
            time.sleep(0.01)

    reader = threading.Thread(target=host_reads)
    reader.start()
    time.sleep(0.5)
    _restart_postgres()
    finals = [tracker.wait(t.id, timeout=120) for t in tasks]
    stop.set()
    reader.join(WAIT)
    assert foreign == []
    assert [(t.status, t.result) for t in finals] == [(S.COMPLETE, i) for i in range(40)]
    assert tracker.get(tasks[0].id).status is S.COMPLETE  # the same threads work again


# -- clocks that disagree, process by process --------------------------------------------

SKEWED_RUNNER = """
    import datetime, sys, threading
    from freezegun import freeze_time
    skew = float(sys.argv[2])
    with freeze_time(datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=skew), tick=True):
        import tasklib
        tracker = tasklib.TaskTracker(sys.argv[1], heartbeat_interval=datetime.timedelta(milliseconds=200),
                                      dead_after=datetime.timedelta(seconds=2))
        release = threading.Event()
        task = tracker.submit(lambda: release.wait(60) and "done")
        print(task.id, flush=True)
        sys.stdin.readline()
        release.set()
        print(tracker.wait(task.id, timeout=30).status.value, flush=True)
        tracker.close()
"""

SKEWED_READER = """
    import datetime, sys
    from freezegun import freeze_time
    skew = float(sys.argv[3])
    with freeze_time(datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=skew), tick=True):
        import tasklib
        reader = tasklib.TaskTracker(sys.argv[1], dead_after=datetime.timedelta(seconds=2),
                                     heartbeat_interval=datetime.timedelta(milliseconds=200))
        print(reader.get(sys.argv[2]).status.value, reader.sweep(), reader.list()[0].status.value, flush=True)
        reader.close()
"""


def test_clocks_that_disagree_kill_nothing(store_url: str) -> None:
    """A runner 120 s behind, read by a process 61 s ahead and one 120 s ahead: its task stays RUNNING, then completes."""
    runner = subprocess.Popen(
        [sys.executable, "-c", _dedent(SKEWED_RUNNER), store_url, "-120"],
        env=_env(),
        text=True,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert runner.stdout is not None and runner.stdin is not None
    task_id = runner.stdout.readline().strip()
    assert task_id, runner.stderr.read() if runner.stderr else ""
    time.sleep(0.5)
    for skew in ("61", "120", "-300"):
        reader = subprocess.run(
            [sys.executable, "-c", _dedent(SKEWED_READER), store_url, task_id, skew],
            env=_env(),
            text=True,
            capture_output=True,
            timeout=WAIT,
        )
        assert reader.stdout.split() == ["RUNNING", "0", "RUNNING"], (skew, reader.stderr)
    runner.stdin.write("go\n")
    runner.stdin.flush()
    out, err = runner.communicate(timeout=WAIT)
    assert out.strip() == "COMPLETE", err


def _dedent(code: str) -> str:
    import textwrap

    return textwrap.dedent(code)


def _env() -> dict[str, str]:
    root = pathlib.Path(__file__).resolve().parent.parent
    return {**os.environ, "PYTHONPATH": str(root)}
