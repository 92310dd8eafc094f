"""Several processes on one store: contention, cancels across processes, kill -9, bad stores at open."""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator

import pytest

from tasklib import StoreError, TaskStatus, TaskTracker
from tasklib.clock import now_ms

from .helpers import WAIT, eventually

S = TaskStatus
ROOT = pathlib.Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def python(code: str, *args: str, **kwargs: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        env=ENV,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **kwargs,
    )  # type: ignore[call-overload]


WORKER = """
    import sys, time
    import tasklib
    store, name, n, start = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    tracker = tasklib.TaskTracker(store)
    time.sleep(max(0.0, start - time.time()))
    ids = []
    for i in range(n):
        task = tracker.submit(description=f"{name}-{i}", submitted_by=i)
        for p in range(10, 100, 10):
            tracker.update_progress(task.id, p, message=f"{p} of 100")
        assert tracker.get(task.id).progress == 90
        tracker.complete(task.id, result={"by": name, "i": i})
        ids.append(task.id)
    tracker.close()
    print(" ".join(ids))
"""


def test_processes_writing_at_once_lose_nothing(make_tracker: Callable[..., TaskTracker], store_url: str) -> None:
    """4 processes submit, report and complete at once: no error reaches them and no update is lost."""
    make_tracker()  # creates the store before the race
    start = str(time.time() + 1.0)
    procs = [python(WORKER, store_url, f"p{k}", "60", start) for k in range(4)]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, [err for _, err in outputs]
    reader = make_tracker()
    seen = 0
    for k, (out, _) in enumerate(outputs):
        for i, task_id in enumerate(out.split()):
            task = reader.get(task_id)
            assert (task.status, task.progress, task.result) == (S.COMPLETE, 100, {"by": f"p{k}", "i": i})
            assert task.message == "90 of 100" and task.description == f"p{k}-{i}"
            seen += 1
    assert seen == 240


RUNNER = """
    import sys, time, datetime
    import tasklib
    tracker = tasklib.TaskTracker(sys.argv[1], progress_interval=0.2)
    def work():
        handle = tasklib.current_task()
        i = 0
        while True:
            handle.raise_if_cancelled()
            handle.update_progress(min(99, 1 + i // 50))
            i += 1
            time.sleep(0.001)
    task = tracker.submit(work)
    print(task.id, flush=True)
    print(tracker.wait(task.id, timeout=60).status.value, flush=True)
    tracker.close()
"""


def test_cancel_in_one_process_is_seen_in_another(make_tracker: Callable[..., TaskTracker], store_url: str) -> None:
    """A cancel requested here stops the task running in another process within one progress interval."""
    tracker = make_tracker()
    child = python(RUNNER, store_url)
    assert child.stdout is not None
    task_id = child.stdout.readline().strip()
    eventually(lambda: tracker.get(task_id).progress > 1)
    asked = now_ms()
    assert tracker.cancel(task_id).status is S.CANCEL_REQUESTED
    out, err = child.communicate(timeout=WAIT)
    assert child.returncode == 0, err
    assert out.strip() == "CANCELLED"
    done = tracker.get(task_id)
    assert done.status is S.CANCELLED
    assert done.finished - asked <= 200 + 500  # one interval, plus slack for a loaded machine


KILLED_WRITER = """
    import sys, threading
    import tasklib
    tracker = tasklib.TaskTracker(sys.argv[1])
    lock = threading.Lock()
    def say(*words):
        with lock:
            print(*words, flush=True)
    def writer(k):
        i = 0
        while True:
            task = tracker.submit(description=f"w{k}-{i}" + "x" * 2000)
            say(task.id, "ENQUEUED")
            tracker.update_progress(task.id, 50, message="y" * 2000)
            say(task.id, "RUNNING")
            tracker.complete(task.id, result=list(range(200)))
            say(task.id, "COMPLETE")
            i += 1
    for k in range(3):
        threading.Thread(target=writer, args=(k,), daemon=True).start()
    threading.Event().wait()
"""
ORDER = {"ENQUEUED": 0, "RUNNING": 1, "COMPLETE": 2}


@pytest.mark.parametrize("after", [0.0, 0.2, 0.5])
def test_kill_9_while_writing_keeps_the_file_intact(db_path: pathlib.Path, after: float) -> None:
    """SIGKILL in the middle of writes leaves an intact SQLite file holding every committed change."""
    TaskTracker(str(db_path)).close()
    child = python(KILLED_WRITER, str(db_path))
    assert child.stdout is not None
    said: dict[str, str] = {}

    def hear(line: str) -> None:
        if line.endswith("\n"):  # a kill in the middle of a print leaves a partial last line
            task_id, status = line.split()
            said[task_id] = status

    while len(said) <= 10:  # writing is under way, over more than ten tasks
        line = child.stdout.readline()
        assert line, "the child stopped before writing anything"
        hear(line)
    time.sleep(after)
    child.send_signal(signal.SIGKILL)
    # Read to the end through the same buffered reader: communicate() would read the
    # pipe beneath it and miss the lines readline() has already buffered.
    out = child.stdout.read()
    child.communicate(timeout=WAIT)
    for line in out.splitlines(keepends=True):
        hear(line)
    with sqlite3.connect(db_path) as raw:
        assert raw.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    tracker = TaskTracker(str(db_path))
    for task_id, status in said.items():
        stored = tracker.get(task_id).status.value
        # Committed, then reported: the store holds that step, or the one after it
        # if the kill fell between a commit and its report.
        assert ORDER[stored] - ORDER[status] in (0, 1), (task_id, status, stored)
        if stored == "COMPLETE":
            assert tracker.get(task_id).result == list(range(200))
    tracker.close()


# -- stores that cannot be opened ---------------------------------------------------


def test_missing_directory_is_a_clear_error(tmp_path: pathlib.Path) -> None:
    """A path in a directory that does not exist is refused at open, naming the file; nothing is created."""
    path = tmp_path / "no-such-dir" / "tasks.db"
    with pytest.raises(StoreError, match=re.escape("no-such-dir/tasks.db")):
        TaskTracker(str(path))
    assert not path.parent.exists()


@pytest.fixture
def shared_dir() -> Iterator[pathlib.Path]:
    """A directory another user can read but not write (pytest's own tmp is private to its user)."""
    path = pathlib.Path(tempfile.mkdtemp(prefix="tasklib-ro-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


def as_other_user(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    if os.geteuid() != 0:
        return subprocess.run([sys.executable, "-c", code, *args], env=ENV, text=True, capture_output=True, timeout=60)
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: cannot open a store as a user without write access")
    return subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c", code, *args],
        env=ENV,
        text=True,
        capture_output=True,
        timeout=60,
    )


OPEN = """
import sys
import tasklib
try:
    tasklib.TaskTracker(sys.argv[1])
except tasklib.StoreError as exc:
    print(exc)
    sys.exit(3)
"""


def test_read_only_directory_is_a_clear_error(shared_dir: pathlib.Path) -> None:
    """Opening a new store in a directory the user cannot write fails at open, naming the file; nothing is created."""
    if os.geteuid() != 0:
        shared_dir.chmod(0o555)
    path = shared_dir / "tasks.db"
    result = as_other_user(OPEN, str(path))
    assert result.returncode == 3, result.stderr
    assert str(path) in result.stdout
    assert list(shared_dir.iterdir()) == []


def test_read_only_store_is_a_clear_error_and_unchanged(shared_dir: pathlib.Path) -> None:
    """A store the user may read but not write is refused at open, naming the file, and left unchanged."""
    path = shared_dir / "tasks.db"
    tracker = TaskTracker(str(path))
    tracker.complete(tracker.submit().id, result=1)
    tracker.close()
    path.chmod(0o644)
    if os.geteuid() != 0:
        path.chmod(0o444)
        shared_dir.chmod(0o555)
    before = path.read_bytes()
    result = as_other_user(OPEN, str(path))
    assert result.returncode == 3, result.stderr
    assert str(path) in result.stdout
    assert path.read_bytes() == before
    shared_dir.chmod(0o755)


# -- writes that cannot be made -------------------------------------------------------


@pytest.fixture
def impatient(monkeypatch: pytest.MonkeyPatch) -> None:
    """Give up on a locked SQLite file after ~0.2 s, twice, instead of ~10 s, five times."""
    from tasklib import storage

    monkeypatch.setattr(storage, "SQLITE_BUSY_TIMEOUT", 0.2)
    monkeypatch.setattr(storage, "WRITE_ATTEMPTS", 2)


def test_lock_held_briefly_is_absorbed(db_path: pathlib.Path) -> None:
    """A write lock another process holds for a moment delays a write; no error reaches the caller."""
    tracker = TaskTracker(str(db_path))
    task = tracker.submit()
    locker = python(
        """
        import sqlite3, sys, time
        conn = sqlite3.connect(sys.argv[1], isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        print("locked", flush=True)
        time.sleep(1.0)
        conn.execute("COMMIT")
        """,
        str(db_path),
    )
    assert locker.stdout is not None and locker.stdout.readline().strip() == "locked"
    began = time.monotonic()
    assert tracker.update_progress(task.id, 10).progress == 10
    assert time.monotonic() - began >= 0.5, "the write should have waited for the lock"
    locker.communicate(timeout=WAIT)
    tracker.close()


def test_write_that_cannot_be_made_is_a_store_error_and_changes_nothing(db_path: pathlib.Path, impatient: None) -> None:
    """When the lock is never released in time, the caller gets StoreError and the store is unchanged."""
    tracker = TaskTracker(str(db_path))
    task = tracker.update_progress(tracker.submit().id, 10)
    blocker = sqlite3.connect(db_path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreError, match="could not be written"):
            tracker.complete(task.id, result=1)
        with pytest.raises(StoreError):
            tracker.submit()
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert tracker.get(task.id).status is S.RUNNING
    assert [t.id for t in tracker.list()] == [task.id]
    assert tracker.complete(task.id, result=1).status is S.COMPLETE  # and it works again once free
    tracker.close()


def test_full_disk_is_a_store_error_and_loses_nothing(db_path: pathlib.Path) -> None:
    """When the file cannot grow (SQLITE_FULL), the write fails with StoreError; committed tasks stay intact."""
    tracker = TaskTracker(str(db_path))
    db = tracker._store.db
    pages = db.execute_sql("PRAGMA page_count").fetchone()[0]
    db.execute_sql(f"PRAGMA max_page_count = {pages + 20}")  # this connection's file may grow by 20 pages
    done: list[str] = []
    with pytest.raises(StoreError, match="full"):
        for i in range(1000):
            task = tracker.submit(description=f"{i}:" + "x" * 3000)
            done.append(task.id)
    assert 3 <= len(done) < 1000
    db.execute_sql("PRAGMA max_page_count = 1073741823")
    assert [tracker.get(task_id).description.split(":")[0] for task_id in done] == [str(i) for i in range(len(done))]
    assert [t.id for t in tracker.list(limit=1000)] == done[::-1], "the failed write left nothing behind"
    tracker.close()
    with sqlite3.connect(db_path) as raw:
        assert raw.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
