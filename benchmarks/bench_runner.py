"""Running functions: tasklib's worker pool and progress handle against their baselines.

1. N no-op tasks through ``submit(fn)`` + ``wait``, against a
   ``concurrent.futures.ThreadPoolExecutor`` running the same no-ops plus the same
   three plain-sqlite3 writes per task (insert, start, complete), same pragmas,
   same number of workers. tasklib writes a task a free worker takes at once
   RUNNING in its insert, so such a task costs it two writes, and a task's end
   that meets the submitting loop's insert is committed by that loop, its
   worker going on at once. Target: tasklib >= 0.7x the baseline's throughput,
   judged by the median round.
2. A task calling ``update_progress`` 1,000,000 times with rising progress, against
   the same loop calling an empty method. Target: <= 3x the time, and at most one
   store write per progress interval.

Rounds alternate between the sides; both at the default durability (WAL +
synchronous=NORMAL). The median and the best round are printed.

    python benchmarks/bench_runner.py [--tasks 10000] [--calls 1000000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import tasklib
from tasklib import TaskTracker
from tasklib.clock import now_ms
from tasklib.status import Event
from tasklib.storage import DEFAULT_DURABILITY, SQLITE_BUSY_TIMEOUT, SQLITE_FILE_PRAGMAS, SQLITE_PRAGMAS

WORKERS = 4
INSERT = (
    "INSERT INTO tasklib_task (status, description, submitted_by, progress, submitted, last_update) "
    "VALUES ('ENQUEUED', ?, ?, 0, ?, ?) RETURNING id"
)
START = (
    "UPDATE tasklib_task SET status = 'RUNNING', started = COALESCE(started, ?), last_update = ? "
    "WHERE id = ? AND status = 'ENQUEUED'"
)
COMPLETE = (
    "UPDATE tasklib_task SET status = 'COMPLETE', progress = 100, result = ?, finished = ?, last_update = ? "
    "WHERE id = ? AND status IN ('RUNNING', 'CANCEL_REQUESTED')"
)


def noop() -> None:
    return None


def connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=SQLITE_BUSY_TIMEOUT, isolation_level=None, check_same_thread=False)
    for name, value in SQLITE_FILE_PRAGMAS + SQLITE_PRAGMAS[DEFAULT_DURABILITY]:
        conn.execute(f"PRAGMA {name} = {value}")
    return conn


def baseline_pool(path: str, n: int) -> float:
    TaskTracker(path).close()  # the same tables
    local = threading.local()

    def run(task_id: int) -> None:
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = connect(path)
        now = now_ms()
        conn.execute(START, (now, now, task_id))
        noop()
        now = now_ms()
        conn.execute(COMPLETE, (None, now, now, task_id))

    main = connect(path)
    began = time.perf_counter()
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        futures = []
        for _ in range(n):
            now = now_ms()
            task_id = main.execute(INSERT, ("bench", 0, now, now)).fetchall()[0][0]
            futures.append(pool.submit(run, task_id))
        for future in futures:
            future.result()
    elapsed = time.perf_counter() - began
    main.close()
    return elapsed


def tasklib_pool(path: str, n: int) -> float:
    tracker = TaskTracker(path, max_workers=WORKERS)
    began = time.perf_counter()
    ids = [tracker.submit(noop, description="bench").id for _ in range(n)]
    for task_id in ids:
        assert tracker.wait(task_id).status is tasklib.TaskStatus.COMPLETE
    elapsed = time.perf_counter() - began
    tracker.close()
    return elapsed


class Empty:
    def update_progress(self, progress: int, message: str | None = None) -> None:
        pass


def progress_loop(handle: object, calls: int) -> float:
    update = handle.update_progress  # type: ignore[attr-defined]
    began = time.perf_counter()
    for i in range(calls):
        update(i * 100 // calls)
    return time.perf_counter() - began


def tasklib_progress(path: str, calls: int, interval: float) -> tuple[float, int]:
    tracker = TaskTracker(path, progress_interval=interval)
    progress_sql = tracker._store._events[Event.PROGRESS].sql
    writes = []
    tracker._store.db.query_hooks.append(lambda event: writes.append(1) if event.sql == progress_sql else None)
    task = tracker.wait(tracker.submit(lambda: progress_loop(tasklib.current_task(), calls)).id)
    tracker.close()
    return task.result, len(writes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--interval", type=float, default=0.1)
    args = parser.parse_args()
    raw_times: list[float] = []
    lib_times: list[float] = []
    empty_best = handle_best = float("inf")
    max_writes_per_interval = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            raw_times.append(baseline_pool(os.path.join(tmp, f"raw{r}.db"), args.tasks))
            lib_times.append(tasklib_pool(os.path.join(tmp, f"lib{r}.db"), args.tasks))
            empty_best = min(empty_best, progress_loop(Empty(), args.calls))
            took, writes = tasklib_progress(os.path.join(tmp, f"prog{r}.db"), args.calls, args.interval)
            handle_best = min(handle_best, took)
            # The first change is written at once; after it, one write per interval at most.
            allowed = 1 + took // args.interval
            max_writes_per_interval = max(max_writes_per_interval, writes / allowed)
    raw_rate, lib_rate = args.tasks / statistics.median(raw_times), args.tasks / statistics.median(lib_times)
    print(f"{args.tasks} no-op tasks on {WORKERS} workers, {args.rounds} alternating rounds (median)")
    print(f"  ThreadPoolExecutor + 3 sqlite3 writes: {raw_rate:8,.0f} tasks/s")
    print(f"  tasklib submit(fn) + wait:             {lib_rate:8,.0f} tasks/s")
    ratio = lib_rate / raw_rate
    best = min(raw_times) / min(lib_times)
    print(f"  ratio median {ratio:.2f}, best {best:.2f} (target >= 0.70): {'PASS' if ratio >= 0.7 else 'FAIL'}")
    slow = handle_best / empty_best
    print(f"{args.calls:,} update_progress calls with rising progress")
    print(f"  empty method: {empty_best:.3f} s   tasklib handle: {handle_best:.3f} s")
    print(f"  ratio {slow:.2f} (target <= 3.00): {'PASS' if slow <= 3 else 'FAIL'}")
    print(
        f"  progress writes / (1 + elapsed // {args.interval} s interval), worst round: "
        f"{max_writes_per_interval:.2f} (target <= 1): {'PASS' if max_writes_per_interval <= 1 else 'FAIL'}"
    )


if __name__ == "__main__":
    main()
