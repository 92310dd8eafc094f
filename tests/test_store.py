"""The SQLite store: its pragmas, its own tables, and how it opens."""

from __future__ import annotations

import pathlib
import re
import sqlite3

import peewee
import pytest

from tasklib import StoreError, TaskStatus, TaskTracker

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
    assert {"tasklib_task_runner", "tasklib_task_status_id"} <= indexes
    TaskTracker(str(path)).close()  # a second open finds nothing to upgrade


def test_apply_refuses_a_misspelled_field_and_writes_nothing(tracker: TaskTracker) -> None:
    """Store.apply takes its fields by name: a misspelled one is a TypeError, not dropped silently."""
    from tasklib.status import Event

    task = tracker.submit()
    with pytest.raises(TypeError):
        tracker._store.apply(int(task.id), Event.PROGRESS, 1, progres=5)  # type: ignore[call-arg]
    assert tracker.get(task.id).status is TaskStatus.ENQUEUED
    assert tracker.get(task.id).progress == 0
