"""The SQLite store: its pragmas, its own tables, and how it opens."""

from __future__ import annotations

import pathlib
import re
import sqlite3
import threading
import time
from collections.abc import Callable
from datetime import timedelta

import peewee
import pytest

from tasklib import StoreError, TaskStatus, TaskTracker

from .helpers import WAIT, eventually

TASKLIB_TABLES = {"tasklib_task", "tasklib_meta", "tasklib_runner", "tasklib_lease"}


def test_sqlite_file_is_wal_with_busy_timeout(db_path: pathlib.Path) -> None:
    """A store tasklib opens itself is a WAL-mode SQLite file with a busy timeout."""
    tracker = TaskTracker(str(db_path))
    tracker.submit()
    db = tracker._store.db
    assert db.execute_sql("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute_sql("PRAGMA busy_timeout").fetchone()[0] >= 5000
    tracker.close()
    with sqlite3.connect(db_path) as raw:
        tables = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {t for t in tables if not t.startswith("sqlite_")} == TASKLIB_TABLES


def test_url_form_opens_the_same_file(db_path: pathlib.Path) -> None:
    """ "sqlite:///path" and the bare path name the same store."""
    first = TaskTracker(str(db_path))
    task = first.submit(description="by path")
    second = TaskTracker(f"sqlite:///{db_path}")
    assert second.get(task.id).description == "by path"
    assert second._store.db.execute_sql("PRAGMA journal_mode").fetchone()[0] == "wal"
    first.close()
    second.close()


def test_shares_a_host_database_without_touching_its_tables(db_path: pathlib.Path) -> None:
    """Given the host's peewee database, tasklib adds only tasklib_* tables and leaves the host's data alone."""
    host_db = peewee.SqliteDatabase(str(db_path))

    class Project(peewee.Model):
        key = peewee.CharField()

        class Meta:
            database = host_db

    host_db.create_tables([Project])
    Project.create(key="FOO")
    tracker = TaskTracker(host_db)
    task = tracker.submit(description="Delete FOO")
    tracker.complete(task.id)
    assert tracker.purge(now=4_000_000_000_000) == 1
    tracker.close()
    assert [p.key for p in Project.select()] == ["FOO"]
    tables = {t for t in host_db.get_tables() if not t.startswith("sqlite_")}
    assert tables == {"project"} | TASKLIB_TABLES


def test_two_trackers_in_one_process_do_not_interfere(tmp_path: pathlib.Path) -> None:
    """Two trackers on two files keep separate tasks, ids and settings."""
    a = TaskTracker(str(tmp_path / "a.db"), base_url="https://a/")
    b = TaskTracker(str(tmp_path / "b.db"), base_url="https://b/")
    ta = a.submit(description="a")
    tb = b.submit(description="b")
    assert (ta.id, tb.id) == ("1", "1")
    a.complete(ta.id)
    assert b.get(tb.id).status is TaskStatus.ENQUEUED
    assert (a.get("1").url, b.get("1").url) == ("https://a/1", "https://b/1")
    a.close()
    assert b.get("1").description == "b"
    b.close()


def test_store_of_a_newer_schema_is_refused_unchanged(db_path: pathlib.Path) -> None:
    """A store written by a newer tasklib is refused with a clear error, and left as it was."""
    TaskTracker(str(db_path)).close()
    with sqlite3.connect(db_path) as raw:
        raw.execute("UPDATE tasklib_meta SET value = '999' WHERE key = 'schema_version'")
    before = db_path.read_bytes()
    with pytest.raises(StoreError, match="newer tasklib"):
        TaskTracker(str(db_path))
    assert db_path.read_bytes() == before


def test_not_a_database_is_a_clear_error(tmp_path: pathlib.Path) -> None:
    """A file that is not SQLite is refused with StoreError naming it, and is not changed."""
    path = tmp_path / "notes.txt"
    path.write_bytes(b"this is not a database\n" * 100)
    with pytest.raises(StoreError, match=re.escape("notes.txt")):
        TaskTracker(str(path))
    assert path.read_bytes() == b"this is not a database\n" * 100


def test_store_of_schema_1_is_upgraded_in_place(tmp_path: pathlib.Path) -> None:
    """A store file written by the first schema opens, is upgraded, and keeps every task as it was."""
    import shutil

    from tasklib.storage import SCHEMA_VERSION

    path = tmp_path / "old.db"
    shutil.copy(pathlib.Path(__file__).parent / "data" / "store-v1.db", path)
    with sqlite3.connect(path) as raw:
        before = raw.execute("SELECT * FROM tasklib_task ORDER BY id").fetchall()
    assert len(before) == 5
    tracker = TaskTracker(str(path))
    assert [tracker.get(str(i)).status for i in range(1, 6)] == [
        TaskStatus.ENQUEUED,
        TaskStatus.RUNNING,
        TaskStatus.COMPLETE,
        TaskStatus.FAILED,
        TaskStatus.CANCEL_REQUESTED,
    ]
    assert tracker.get("3").result == {"deleted": 100}
    assert tracker.wait(tracker.submit(lambda: "new").id, timeout=30).result == "new"
    tracker.close()
    with sqlite3.connect(path) as raw:
        after = raw.execute("SELECT * FROM tasklib_task WHERE id <= 5 ORDER BY id").fetchall()
        version = raw.execute("SELECT value FROM tasklib_meta WHERE key = 'schema_version'").fetchone()[0]
        indexes = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert [row[:11] for row in after] == before and {row[11] for row in after} == {None}
    assert version == str(SCHEMA_VERSION)
    assert {"tasklib_task_runner_status", "tasklib_task_status_id"} <= indexes
    TaskTracker(str(path)).close()  # a second open finds nothing to upgrade


def test_store_of_schema_2_is_upgraded_in_place(tmp_path: pathlib.Path) -> None:
    """A store file written by schema 2 (a process that ended without closing) opens, is upgraded, keeps its tasks.

    Its runner's heartbeat (set back to 2023 in the file) is long silent, so its unfinished tasks read DEAD.
    """
    import shutil

    from tasklib.storage import SCHEMA_VERSION

    path = tmp_path / "old.db"
    shutil.copy(pathlib.Path(__file__).parent / "data" / "store-v2.db", path)
    with sqlite3.connect(path) as raw:
        before = raw.execute("SELECT * FROM tasklib_task ORDER BY id").fetchall()
    assert [row[1] for row in before] == ["ENQUEUED", "RUNNING", "COMPLETE", "FAILED", "CANCEL_REQUESTED", "COMPLETE"]
    tracker = TaskTracker(str(path))
    with sqlite3.connect(path) as raw:
        version = raw.execute("SELECT value FROM tasklib_meta WHERE key = 'schema_version'").fetchone()[0]
        indexes = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert raw.execute("SELECT * FROM tasklib_task ORDER BY id").fetchall() == before  # upgrading changed no row
    assert version == str(SCHEMA_VERSION) == "3"
    assert "tasklib_task_runner_status" in indexes and "tasklib_task_runner" not in indexes
    assert [tracker.get(str(i)).status for i in range(1, 7)] == [
        TaskStatus.ENQUEUED,
        TaskStatus.DEAD,
        TaskStatus.COMPLETE,
        TaskStatus.FAILED,
        TaskStatus.DEAD,
        TaskStatus.COMPLETE,
    ]
    assert tracker.get("3").result == {"deleted": 100} and tracker.get("6").result == "ran"
    assert tracker.wait(tracker.submit(lambda: "new").id, timeout=30).result == "new"
    tracker.close()
    TaskTracker(str(path)).close()  # a second open finds nothing to upgrade


@pytest.mark.parametrize(("durability", "synchronous"), [("normal", 1), ("full", 2)])
def test_durability_reaches_every_connection(db_path: pathlib.Path, durability: str, synchronous: int) -> None:
    """PRAGMA synchronous reads 1 (normal) or 2 (full) on every connection tasklib opens, in every thread.

    The caller's, the worker threads' and the maintenance scheduler's: each
    thread opens its own connection to the file.
    """
    tracker = TaskTracker(
        str(db_path),
        durability=durability,
        max_workers=3,
        heartbeat_interval=timedelta(milliseconds=50),
        dead_after=timedelta(seconds=30),
    )
    db = tracker._store.db
    together = threading.Barrier(3, timeout=WAIT)

    def work() -> list[object]:
        together.wait()  # the three workers at once, so each has opened its connection
        return [threading.current_thread().name, db.execute_sql("PRAGMA synchronous").fetchone()[0]]

    tasks = [tracker.submit(work) for _ in range(3)]
    seen = [tracker.wait(task.id, timeout=WAIT).result for task in tasks]
    assert len({name for name, _ in seen}) == 3
    assert [level for _, level in seen] == [synchronous] * 3
    with sqlite3.connect(db_path) as raw:
        first = raw.execute("SELECT heartbeat FROM tasklib_runner").fetchone()[0]

    def beaten() -> bool:
        with sqlite3.connect(db_path) as raw:
            return bool(raw.execute("SELECT heartbeat FROM tasklib_runner").fetchone()[0] != first)

    eventually(beaten)  # the scheduler's thread has written through its own connection
    connections = db.open_connections()
    # The caller's, the three workers', and at least one of the scheduler's.
    assert len(connections) >= 5
    assert [conn.execute("PRAGMA synchronous").fetchone()[0] for conn in connections] == [synchronous] * len(
        connections
    )
    tracker.close()


@pytest.mark.parametrize(("durability", "synchronous"), [("normal", 1), ("full", 2)])
def test_durability_reaches_the_change_probe(db_path: pathlib.Path, durability: str, synchronous: int) -> None:
    """The connection that watches the file for other processes' writes has the store's durability too."""
    tracker = TaskTracker(str(db_path), durability=durability)
    task = tracker.submit()
    watching = threading.Thread(target=tracker.wait, args=(task.id, WAIT))
    watching.start()  # the first waiter starts the listening thread, which opens the probe

    def probe_connection() -> sqlite3.Connection | None:
        probe = tracker.changes._probe
        return None if probe is None else probe._conn  # type: ignore[attr-defined]

    eventually(lambda: probe_connection() is not None)
    conn = probe_connection()
    assert conn is not None and conn.execute("PRAGMA synchronous").fetchone()[0] == synchronous
    tracker.complete(task.id)
    watching.join(WAIT)
    tracker.close()


@pytest.mark.parametrize("durability", ["NORMAL", "off", "", None, 2])
def test_durability_is_normal_or_full(db_path: pathlib.Path, durability: object) -> None:
    """Any other durability is refused, naming the allowed ones, before anything is opened."""
    error = TypeError if not isinstance(durability, str) else ValueError
    with pytest.raises(error, match="durability must be"):
        TaskTracker(str(db_path), durability=durability)  # type: ignore[arg-type]
    assert not db_path.exists()
    with pytest.raises(ValueError, match="'normal' or 'full'"):
        TaskTracker(str(db_path), durability="off")


def test_durability_leaves_a_host_database_alone(db_path: pathlib.Path) -> None:
    """A peewee database the host passes in keeps its own synchronous setting under either durability."""
    host_db = peewee.SqliteDatabase(str(db_path), pragmas={"synchronous": 0})
    for durability in ("normal", "full"):
        tracker = TaskTracker(host_db, durability=durability)
        tracker.submit()
        assert host_db.execute_sql("PRAGMA synchronous").fetchone()[0] == 0
        tracker.close()


def test_apply_refuses_a_misspelled_field_and_writes_nothing(tracker: TaskTracker) -> None:
    """Store.apply takes its fields by name: a misspelled one is a TypeError, not dropped silently."""
    from tasklib.status import Event

    task = tracker.submit()
    with pytest.raises(TypeError):
        tracker._store.apply(int(task.id), Event.PROGRESS, 1, progres=5)  # type: ignore[call-arg]
    assert tracker.get(task.id).status is TaskStatus.ENQUEUED
    assert tracker.get(task.id).progress == 0


def test_every_hot_statement_finds_its_rows_through_an_index(tracker: TaskTracker, is_sqlite: bool) -> None:
    """EXPLAIN (QUERY PLAN) of every statement on the task table shows an index and no scan of the table.

    On PostgreSQL sequential scans are priced out for the check: a small table
    would otherwise be scanned by choice, and a statement no index can serve is
    still planned as one.
    """
    db = tracker._store.db
    statements = tracker._store.hot_statements()
    assert {"get", "list", "list_status", "list_submitted_by", "kill_runner", "kill_stale", "purge"} <= set(statements)
    plans = {}
    with db.atomic():
        if not is_sqlite:
            db.execute_sql("SET LOCAL enable_seqscan = off")
        for name, (sql, params) in statements.items():
            explain = "EXPLAIN QUERY PLAN " if is_sqlite else "EXPLAIN "
            plans[name] = " | ".join(str(row[-1]) for row in db.execute_sql(explain + sql, params).fetchall())
    for name, plan in plans.items():
        if is_sqlite:
            assert "SCAN" not in plan and ("INDEX" in plan or "PRIMARY KEY" in plan), (name, plan)
        else:
            assert "Seq Scan" not in plan and "Index" in plan, (name, plan)


# -- PostgreSQL: prepared statements ----------------------------------------------


def _prepared(tracker: TaskTracker) -> set[str]:
    """The statements prepared on the pool's connection (a pool of one: every statement's)."""
    db = tracker._store.db
    try:
        return {str(row[0]) for row in db.execute_sql("SELECT name FROM pg_prepared_statements").fetchall()}
    finally:
        db.close()


def test_postgresql_runs_a_tasks_statements_prepared(make_tracker: Callable[..., TaskTracker], is_sqlite: bool) -> None:
    """PostgreSQL: a task's insert, start, end and read are prepared once on a connection, then only executed.

    Their plans still go through an index, as the statements' own do.
    """
    if is_sqlite:
        pytest.skip("PostgreSQL's prepared statements")
    from tasklib.status import Event

    tracker = make_tracker(pool_size=1)
    store = tracker._store
    for _ in range(2):  # the second task runs what the first prepared
        task = tracker.submit(description="t", submitted_by=1)
        tracker.start(task.id)
        tracker.complete(task.id, result={"n": 1})
        assert tracker.get(task.id).result == {"n": 1}
    used = (store._insert, store._events[Event.START], store._events[Event.COMPLETE], store._select)
    assert {stmt.name for stmt in used} <= _prepared(tracker)
    assert all(name.startswith("tasklib_task_") for name in _prepared(tracker))
    db = store.db
    with db.atomic():
        db.execute_sql("SET LOCAL enable_seqscan = off")
        db.execute_sql("SET LOCAL plan_cache_mode = force_generic_plan")  # the plan a prepared statement keeps
        _, params = store.hot_statements()["apply_complete"]
        assert params == store._events[Event.COMPLETE].bind(
            {"id": 1, "now": 1, "progress": None, "message": None, "result": None, "runner": "r"}
        )
        name = store._events[Event.COMPLETE].name
        plan = " | ".join(
            str(row[0]) for row in db.execute_sql(f"EXPLAIN EXECUTE {name}({', '.join(['%s'] * len(params))})", params)
        )
    assert "Seq Scan" not in plan and "Index" in plan, plan


@pytest.mark.parametrize("first", ["insert", "write"])
def test_postgresql_statements_go_plain_once_the_server_forgets_them(
    make_tracker: Callable[..., TaskTracker], is_sqlite: bool, store_url: str, first: str
) -> None:
    """A prepared statement the server lost (a pooler, a DEALLOCATE) is sent as plain SQL instead, once, and from then on.

    The failed EXECUTE changed nothing: the new task is inserted once, and the
    write's listeners hear of it once.
    """
    if is_sqlite:
        pytest.skip("PostgreSQL's prepared statements")
    psycopg2 = pytest.importorskip("psycopg2")
    tracker = make_tracker(pool_size=1)
    task = tracker.submit(description="t", submitted_by=1)
    tracker.start(task.id)
    tracker.update_progress(task.id, 10)  # prepared, as the next write's statement
    db = tracker._store.db
    db.execute_sql("DEALLOCATE ALL")  # behind tasklib's back, on the connection its next statement gets
    db.close()
    listener = psycopg2.connect(store_url)
    try:
        listener.autocommit = True
        with listener.cursor() as cursor:
            cursor.execute("LISTEN tasklib_task")
        if first == "insert":
            second = tracker.submit(description="second", submitted_by=1)
            assert int(second.id) == int(task.id) + 1
            assert [t.description for t in tracker.list(submitted_by=1)] == ["second", "t"]
        else:
            tracker.update_progress(task.id, 40)
            assert tracker.get(task.id).progress == 40
            eventually(lambda: listener.poll() or listener.notifies)
        time.sleep(0.2)  # a notification more, were there one, would be in by now
        listener.poll()
        assert len(listener.notifies) == (0 if first == "insert" else 1)
    finally:
        listener.close()
    tracker.complete(task.id)
    assert tracker.get(task.id).status is TaskStatus.COMPLETE
    assert not _prepared(tracker)  # plain SQL from then on
