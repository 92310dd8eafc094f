"""Core store operations: tasklib against plain sqlite3 running the same statements.

Both sides use one transaction per operation, the same SQL text (taken from
tasklib's own prepared statements) and the same pragmas, on files in the same
directory, at each durability ("normal": WAL + synchronous=NORMAL, "full":
synchronous=FULL). Rounds alternate between the two sides, so a noisy neighbour
hurts both alike; the median round of each side is judged, the best is printed
beside it. get+to_json makes the same text on both sides (Jira's
TaskProgressBeanObject, checked before timing). Targets: every ratio >= 0.7,
get+to_json >= 0.8.

    python benchmarks/bench_core.py [--tasks 20000] [--full-tasks 2000] [--reads 20000] [--rounds 5]
        [--durability normal full]

"full" syncs at every commit, a few hundred writes a second on many disks, so it
runs fewer tasks (--full-tasks). A read syncs nothing: get+to_json runs --reads
times a round at either durability (cycling over the tasks), long enough to be
timed through the neighbours' noise.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from tasklib import TaskTracker
from tasklib.clock import now_ms
from tasklib.status import Event
from tasklib.storage import DURABILITIES, SQLITE_BUSY_TIMEOUT, SQLITE_FILE_PRAGMAS, SQLITE_PRAGMAS

OPS = ("submit", "update_progress", "get+to_json", "complete")
TARGETS = {"submit": 0.7, "update_progress": 0.7, "get+to_json": 0.8, "complete": 0.7}
ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
PREFIX = "https://example.com/rest/api/3/task/"


def jira_json(row: tuple, now: int) -> str:
    """The row as Jira's TaskProgressBeanObject, the text tasklib's get().to_json() gives."""
    task_id = str(row[0])
    d: dict = {"self": PREFIX + task_id, "id": task_id}
    if row[2] is not None:
        d["description"] = row[2]
    d["status"] = row[1]
    if row[3] is not None:
        d["message"] = row[3]
    if row[4] is not None:
        d["result"] = json.loads(row[4])
    started, finished = row[8], row[9]
    d["submittedBy"] = row[5]
    d["progress"] = row[6]
    d["elapsedRuntime"] = 0 if started is None else max(0, (finished if finished is not None else now) - started)
    d["submitted"] = row[7]
    if started is not None:
        d["started"] = started
    if finished is not None:
        d["finished"] = finished
    d["lastUpdate"] = row[10]
    return ENCODER.encode(d)


def run_tasklib(path: str, n: int, durability: str, reads: int) -> dict[str, float]:
    tracker = TaskTracker(path, base_url=PREFIX, durability=durability)
    times: dict[str, float] = {}
    t = time.perf_counter()
    ids = [tracker.submit(description="bench", submitted_by=10000).id for _ in range(n)]
    times["submit"] = time.perf_counter() - t
    t = time.perf_counter()
    for task_id in ids:
        tracker.update_progress(task_id, 50, message="half way")
    times["update_progress"] = time.perf_counter() - t
    read = [ids[i % n] for i in range(reads)]
    t = time.perf_counter()
    for task_id in read:
        tracker.get(task_id).to_json()
    times["get+to_json"] = time.perf_counter() - t
    t = time.perf_counter()
    for task_id in ids:
        tracker.complete(task_id, result={"deleted": 100})
    times["complete"] = time.perf_counter() - t
    tracker.close()
    return times


def run_sqlite3(
    path: str, n: int, statements: dict[str, tuple[str, Callable[..., list]]], durability: str, reads: int
) -> dict[str, float]:
    # Create the same tables with tasklib, then close it: only the statements are timed.
    TaskTracker(path).close()
    conn = sqlite3.connect(path, timeout=SQLITE_BUSY_TIMEOUT, isolation_level=None)
    for name, value in SQLITE_FILE_PRAGMAS + SQLITE_PRAGMAS[durability]:
        conn.execute(f"PRAGMA {name} = {value}")
    times: dict[str, float] = {}
    insert_sql, insert_bind = statements["insert"]
    t = time.perf_counter()
    ids = []
    for _ in range(n):
        row = conn.execute(
            insert_sql, insert_bind({"description": "bench", "submitted_by": 10000, "now": now_ms(), "runner": None})
        ).fetchall()[0]
        ids.append(row[0])
    times["submit"] = time.perf_counter() - t
    progress_sql, progress_bind = statements["progress"]
    t = time.perf_counter()
    for key in ids:
        conn.execute(
            progress_sql,
            progress_bind(
                {"id": key, "now": now_ms(), "progress": 50, "message": "half way", "result": None, "runner": "r"}
            ),
        ).fetchall()
    times["update_progress"] = time.perf_counter() - t
    select_sql, select_bind = statements["select"]
    read = [ids[i % n] for i in range(reads)]
    t = time.perf_counter()
    for key in read:
        row = conn.execute(select_sql, select_bind({"id": key})).fetchall()[0]
        jira_json(row, now_ms())
    times["get+to_json"] = time.perf_counter() - t
    complete_sql, complete_bind = statements["complete"]
    t = time.perf_counter()
    for key in ids:
        conn.execute(
            complete_sql,
            complete_bind({"id": key, "now": now_ms(), "progress": None, "message": None, "result": '{"deleted":100}'}),
        ).fetchall()
    times["complete"] = time.perf_counter() - t
    conn.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--full-tasks", type=int, default=2_000)
    parser.add_argument("--reads", type=int, default=20_000, help="get+to_json calls a round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--durability", nargs="+", choices=DURABILITIES, default=list(DURABILITIES))
    args = parser.parse_args()
    verdicts = []
    with tempfile.TemporaryDirectory() as tmp:
        probe = TaskTracker(os.path.join(tmp, "probe.db"), base_url=PREFIX)
        store = probe._store
        statements = {
            "insert": (store._insert.sql, store._insert.bind),
            "select": (store._select.sql, store._select.bind),
            "progress": (store._events[Event.PROGRESS].sql, store._events[Event.PROGRESS].bind),
            "complete": (store._events[Event.COMPLETE].sql, store._events[Event.COMPLETE].bind),
        }
        # Both sides make the same JSON text of a task: the same work, not only the same query.
        task = probe.submit(description="probe", submitted_by=10000)
        probe.update_progress(task.id, 50, message="half way")
        probe.complete(task.id, result={"deleted": 100})  # finished: its elapsed time is fixed
        row = probe._store.fetch_row(int(task.id))
        assert row is not None and jira_json(row, now_ms()) == probe.get(task.id).to_json()
        probe.close()
        for durability in args.durability:
            n = args.full_tasks if durability == "full" else args.tasks
            lib_times: dict[str, list[float]] = {op: [] for op in OPS}
            raw_times: dict[str, list[float]] = {op: [] for op in OPS}
            for r in range(args.rounds):
                raw_path, lib_path = (os.path.join(tmp, f"{side}-{durability}{r}.db") for side in ("raw", "lib"))
                # Each side goes first every other round: neither always meets a warmer machine.
                if r % 2 == 0:
                    raw = run_sqlite3(raw_path, n, statements, durability, args.reads)
                    lib = run_tasklib(lib_path, n, durability, args.reads)
                else:
                    lib = run_tasklib(lib_path, n, durability, args.reads)
                    raw = run_sqlite3(raw_path, n, statements, durability, args.reads)
                for op in OPS:
                    raw_times[op].append(raw[op])
                    lib_times[op].append(lib[op])
            print(
                f"durability={durability}: {n} tasks ({args.reads} reads), {args.rounds} alternating rounds, "
                "one transaction per operation; ratio = tasklib / sqlite3 throughput"
            )
            print(f"{'operation':<16}{'sqlite3 ops/s':>15}{'tasklib ops/s':>15}{'median':>8}{'best':>8}{'target':>8}")
            for op in OPS:
                calls = args.reads if op == "get+to_json" else n
                raw_rate = calls / statistics.median(raw_times[op])
                lib_rate = calls / statistics.median(lib_times[op])
                median = lib_rate / raw_rate
                best = min(raw_times[op]) / min(lib_times[op])
                ok = median >= TARGETS[op]
                verdicts.append(ok)
                print(
                    f"{op:<16}{raw_rate:>15,.0f}{lib_rate:>15,.0f}{median:>8.2f}{best:>8.2f}"
                    f"{TARGETS[op]:>8.2f}  {'PASS' if ok else 'FAIL'}"
                )
    print(f"judged by the median: {'PASS' if all(verdicts) else 'FAIL'}")


if __name__ == "__main__":
    main()
