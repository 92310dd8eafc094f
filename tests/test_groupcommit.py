"""Group commit: writes of threads that meet are committed together, each with its own outcome."""

from __future__ import annotations

import pathlib
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

from tasklib.groupcommit import GroupCommit

INSERT = "INSERT INTO t (v) VALUES (?) RETURNING id"


class Recorder:
    """A thread's connection that records what it runs, and can hold one statement until let go."""

    def __init__(
        self, path: pathlib.Path, log: list[tuple[str, Any]], hold: dict[str, threading.Event], interrupt: set[str]
    ) -> None:
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10)
        self._log = log
        self._hold = hold
        self._interrupt = interrupt

    @property
    def in_transaction(self) -> bool:
        return self._conn.in_transaction

    def execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        value = params[0] if params else None
        self._log.append((sql, value))
        if value in self._hold:
            self._hold.pop(value).wait(10)
        if value in self._interrupt:
            self._interrupt.discard(value)  # once, as a Ctrl-C comes once
            raise KeyboardInterrupt
        return self._conn.execute(sql, params)

    def close(self) -> None:
        self._conn.close()


class Harness:
    def __init__(self, path: pathlib.Path) -> None:
        self.path = path
        self.log: list[tuple[str, Any]] = []
        self.hold: dict[str, threading.Event] = {}
        self.interrupt: set[str] = set()
        self._local = threading.local()
        self._opened: list[Recorder] = []
        setup = sqlite3.connect(path, isolation_level=None)
        setup.execute("PRAGMA journal_mode = WAL")
        setup.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL CHECK (v != 'bad'))")
        setup.close()
        self.commits = GroupCommit(self.connection)  # type: ignore[arg-type]

    def connection(self) -> Recorder:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = Recorder(self.path, self.log, self.hold, self.interrupt)
            self._opened.append(conn)
        return conn

    def rows(self) -> list[str]:
        conn = sqlite3.connect(self.path)
        try:
            return [v for (v,) in conn.execute("SELECT v FROM t ORDER BY v")]
        finally:
            conn.close()

    def close(self) -> None:
        for conn in self._opened:
            conn.close()


@pytest.fixture
def harness(tmp_path: pathlib.Path) -> Iterator[Harness]:
    h = Harness(tmp_path / "g.db")
    yield h
    h.close()


def in_thread(target: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["value"] = target()
        except BaseException as exc:
            out["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    return thread, out


def until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def held_leader(harness: Harness) -> tuple[threading.Event, threading.Thread, dict[str, Any]]:
    """A first writer whose statement is held: the writes that come next queue behind it."""
    release = harness.hold["lead"] = threading.Event()
    thread, out = in_thread(lambda: harness.commits.write(INSERT, ("lead",)))
    until(lambda: ("INSERT INTO t (v) VALUES (?) RETURNING id", "lead") in harness.log)
    return release, thread, out


def queue_writers(harness: Harness, values: list[str]) -> list[tuple[threading.Thread, dict[str, Any]]]:
    writers = []
    for count, value in enumerate(values, start=1):
        writers.append(in_thread(lambda value=value: harness.commits.write(INSERT, (value,))))
        until(lambda count=count: harness.commits.waiting == count)
    return writers


def test_writes_that_meet_are_committed_in_one_transaction_each_with_its_own_rows(harness: Harness) -> None:
    release, leader, lead_out = held_leader(harness)
    writers = queue_writers(harness, ["a", "b", "c"])
    release.set()
    leader.join(10)
    for thread, _ in writers:
        thread.join(10)
    ids = [lead_out["value"][0][0][0]] + [out["value"][0][0][0] for _, out in writers]
    assert len(set(ids)) == 4
    assert all(out["value"][1] == 1 for _, out in [(leader, lead_out), *writers])
    assert harness.rows() == ["a", "b", "c", "lead"]
    # The leader's own write alone, then the three queued ones in one transaction, on its connection.
    statements = [sql for sql, _ in harness.log]
    assert statements.count("BEGIN IMMEDIATE") == 1
    assert statements.count("COMMIT") == 1
    begin = statements.index("BEGIN IMMEDIATE")
    assert [value for _, value in harness.log[begin + 1 : begin + 4]] == ["a", "b", "c"]
    assert harness.commits.waiting == 0


def test_a_write_that_fails_in_a_batch_fails_alone_and_changes_nothing(harness: Harness) -> None:
    release, leader, lead_out = held_leader(harness)
    writers = queue_writers(harness, ["a", "bad", "c"])
    release.set()
    for thread, _ in [(leader, lead_out), *writers]:
        thread.join(10)
    outs = [out for _, out in writers]
    assert "error" not in lead_out and "error" not in outs[0] and "error" not in outs[2]
    assert isinstance(outs[1]["error"], sqlite3.IntegrityError)
    assert harness.rows() == ["a", "c", "lead"]
    assert "ROLLBACK" in [sql for sql, _ in harness.log]
    # Still usable: the next write leads, alone.
    assert harness.commits.write(INSERT, ("d",))[1] == 1
    assert harness.rows() == ["a", "c", "d", "lead"]


def test_a_leader_interrupted_in_a_batch_hands_its_writes_on_and_alone_sees_the_interrupt(harness: Harness) -> None:
    release, leader, lead_out = held_leader(harness)
    harness.interrupt.add("b")  # Ctrl-C lands while the leader runs the second queued write
    writers = queue_writers(harness, ["a", "b", "c"])
    release.set()
    for thread, _ in [(leader, lead_out), *writers]:
        thread.join(10)
    # The leader's own write was committed before it led the batch; its caller sees the interrupt.
    assert isinstance(lead_out.get("error"), KeyboardInterrupt)
    # The batch was undone and led again by the first of its writers: every write committed once.
    for _, out in writers:
        assert "error" not in out and out["value"][1] == 1
    assert harness.rows() == ["a", "b", "c", "lead"]
    statements = [sql for sql, _ in harness.log]
    assert statements.count("ROLLBACK") == 1 and statements.count("COMMIT") == 1
    assert harness.commits.waiting == 0
    assert harness.commits.write(INSERT, ("d",))[1] == 1
    assert harness.rows() == ["a", "b", "c", "d", "lead"]


def test_a_write_inside_the_callers_transaction_commits_with_it(harness: Harness) -> None:
    conn = harness.connection()
    conn.execute("BEGIN IMMEDIATE")
    harness.commits.write(INSERT, ("x",))
    conn.execute("ROLLBACK")
    assert harness.rows() == []
    conn.execute("BEGIN IMMEDIATE")
    harness.commits.write(INSERT, ("y",))
    conn.execute("COMMIT")
    assert harness.rows() == ["y"]


def test_many_threads_each_write_committed_once_with_its_own_id(harness: Harness) -> None:
    threads, per_thread = 8, 300
    got: dict[int, list[int]] = {}

    def writer(n: int) -> None:
        got[n] = [harness.commits.write(INSERT, (f"{n}-{i}",))[0][0][0] for i in range(per_thread)]

    workers = [threading.Thread(target=writer, args=(n,)) for n in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join(60)
    ids = [i for n in range(threads) for i in got[n]]
    assert len(ids) == len(set(ids)) == threads * per_thread
    assert len(harness.rows()) == threads * per_thread
    # Each thread's writes were committed in the order it made them.
    for n in range(threads):
        assert got[n] == sorted(got[n])


def test_a_detached_write_is_committed_by_the_write_under_way_which_tells_its_rows(harness: Harness) -> None:
    told: list[Any] = []
    # No write under way: nothing is queued, the caller writes it itself.
    assert harness.commits.write_detached(INSERT, ("alone",), told.append) is False
    assert harness.rows() == [] and told == []
    release, leader, lead_out = held_leader(harness)
    writers = queue_writers(harness, ["a"])
    assert harness.commits.write_detached(INSERT, ("d",), told.append) is True  # returns at once
    assert harness.commits.waiting == 2 and told == []
    release.set()
    for thread, _ in [(leader, lead_out), *writers]:
        thread.join(10)
    # Committed in the batch with the waiting writer's, on the leader's connection; told its own row.
    assert harness.rows() == ["a", "d", "lead"]
    assert len(told) == 1 and told[0][1] == 1
    assert "error" not in writers[0][1] and writers[0][1]["value"][1] == 1
    assert told[0][0][0][0] not in (lead_out["value"][0][0][0], writers[0][1]["value"][0][0][0])
    assert harness.commits.waiting == 0 and not harness.commits.leading


def test_a_detached_write_that_fails_is_told_none_and_the_others_are_written(harness: Harness) -> None:
    told: list[Any] = []
    release, leader, lead_out = held_leader(harness)
    writers = queue_writers(harness, ["a"])
    assert harness.commits.write_detached(INSERT, ("bad",), told.append)
    release.set()
    for thread, _ in [(leader, lead_out), *writers]:
        thread.join(10)
    assert told == [None]
    assert "error" not in lead_out and "error" not in writers[0][1]
    assert harness.rows() == ["a", "lead"]


def test_detached_writes_never_lead_a_leader_interrupted_gives_them_back_unwritten(harness: Harness) -> None:
    told: list[Any] = []
    release, leader, lead_out = held_leader(harness)
    harness.interrupt.add("d")  # Ctrl-C lands while the leader runs the first detached write
    assert harness.commits.write_detached(INSERT, ("d",), told.append)
    assert harness.commits.write_detached(INSERT, ("e",), told.append)
    release.set()
    leader.join(10)
    assert isinstance(lead_out.get("error"), KeyboardInterrupt)
    # Nobody waits on them, so nobody could lead them: each is told it was not written.
    assert told == [None, None]
    assert harness.rows() == ["lead"]
    assert harness.commits.waiting == 0 and not harness.commits.leading
    assert harness.commits.write(INSERT, ("f",))[1] == 1  # the lead was given up, not stranded
    assert harness.rows() == ["f", "lead"]
