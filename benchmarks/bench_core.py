"""Core store operations: tasklib against plain sqlite3 running the same statements.

Both sides use one transaction per operation, the same SQL text (taken from
tasklib's own prepared statements) and the same pragmas, on files in the same
directory. Rounds alternate between the two sides and the best round of each
counts, so a noisy neighbour hurts both alike. Target: every ratio >= 0.5.

    python benchmarks/bench_core.py [--tasks 20000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from tasklib import TaskTracker
from tasklib.clock import now_ms
from tasklib.status import Event
from tasklib.storage import SQLITE_BUSY_TIMEOUT, SQLITE_FILE_PRAGMAS, SQLITE_PRAGMAS

OPS = ("submit", "update_progress", "get+to_json", "complete")
ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
KEYS = (
    "id",
    "status",
    "description",
    "message",
    "result",
    "submittedBy",
    "progress",
    "submitted",
    "started",
    "finished",
    "lastUpdate",
)


def run_tasklib(path: str, n: int) -> dict[str, float]:
    tracker = TaskTracker(path, base_url="https://example.com/rest/api/3/task/")
    times: dict[str, float] = {}
    t = time.perf_counter()
    ids = [tracker.submit(description="bench", submitted_by=10000).id for _ in range(n)]
    times["submit"] = time.perf_counter() - t
    t = time.perf_counter()
    for task_id in ids:
        tracker.update_progress(task_id, 50, message="half way")
    times["update_progress"] = time.perf_counter() - t
    t = time.perf_counter()
    for task_id in ids:
        tracker.get(task_id).to_json()
    times["get+to_json"] = time.perf_counter() - t
    t = time.perf_counter()
    for task_id in ids:
        tracker.complete(task_id, result={"deleted": 100})
    times["complete"] = time.perf_counter() - t
    tracker.close()
    return times


def run_sqlite3(path: str, n: int, statements: dict[str, tuple[str, Callable[..., list]]]) -> dict[str, float]:
    # Create the same tables with tasklib, then close it: only the statements are timed.
    TaskTracker(path).close()
    conn = sqlite3.connect(path, timeout=SQLITE_BUSY_TIMEOUT, isolation_level=None)
    for name, value in SQLITE_FILE_PRAGMAS + SQLITE_PRAGMAS:
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
            progress_bind({"id": key, "now": now_ms(), "progress": 50, "message": "half way", "result": None}),
        ).fetchall()
    times["update_progress"] = time.perf_counter() - t
    select_sql, select_bind = statements["select"]
    t = time.perf_counter()
    for key in ids:
        row = conn.execute(select_sql, select_bind({"id": key})).fetchall()[0]
        # strict=False: the row's last column, the runner, is not part of the JSON.
        ENCODER.encode({k: v for k, v in zip(KEYS, row, strict=False) if v is not None})
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
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        probe = TaskTracker(os.path.join(tmp, "probe.db"))
        store = probe._store
        statements = {
            "insert": (store._insert.sql, store._insert.bind),
            "select": (store._select.sql, store._select.bind),
            "progress": (store._events[Event.PROGRESS].sql, store._events[Event.PROGRESS].bind),
            "complete": (store._events[Event.COMPLETE].sql, store._events[Event.COMPLETE].bind),
        }
        probe.close()
        best_lib = {op: float("inf") for op in OPS}
        best_raw = {op: float("inf") for op in OPS}
        for r in range(args.rounds):
            raw = run_sqlite3(os.path.join(tmp, f"raw{r}.db"), args.tasks, statements)
            lib = run_tasklib(os.path.join(tmp, f"lib{r}.db"), args.tasks)
            for op in OPS:
                best_raw[op] = min(best_raw[op], raw[op])
                best_lib[op] = min(best_lib[op], lib[op])
    print(f"{args.tasks} tasks, best of {args.rounds} alternating rounds, one transaction per operation")
    print(f"{'operation':<16}{'sqlite3 ops/s':>15}{'tasklib ops/s':>15}{'ratio':>8}")
    worst = float("inf")
    for op in OPS:
        raw_rate, lib_rate = args.tasks / best_raw[op], args.tasks / best_lib[op]
        worst = min(worst, lib_rate / raw_rate)
        print(f"{op:<16}{raw_rate:>15,.0f}{lib_rate:>15,.0f}{lib_rate / raw_rate:>8.2f}")
    print(f"lowest ratio {worst:.2f} (target >= 0.50): {'PASS' if worst >= 0.5 else 'FAIL'}")


if __name__ == "__main__":
    main()
