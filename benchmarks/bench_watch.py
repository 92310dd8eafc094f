"""Idle waiters cost nothing: the store's write throughput with 1,000 idle wait() callers.

One tracker writes progress reports (a write each, as fast as it can) on one set
of tasks; another tracker on the same store has ``--waiters`` threads blocked in
``wait()`` on other tasks that never change. Rounds alternate between writing
alone and writing beside the waiters; the best round of each counts, so a noisy
neighbour hurts both alike. Target: ratio >= 0.8.

    python benchmarks/bench_watch.py [--waiters 1000] [--writes 3000] [--rounds 3] [--store PATH-OR-URL]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from tasklib import TaskTracker


def write_rate(tracker: TaskTracker, ids: list[str], writes: int, cpu: list[float] | None = None) -> float:
    """Progress writes per second, round-robin over ``ids``; appends this process's CPU seconds per write to ``cpu``."""
    began, used = time.perf_counter(), time.process_time()
    for i in range(writes):
        tracker.update_progress(ids[i % len(ids)], i % 100)
    if cpu is not None:
        cpu.append((time.process_time() - used) / writes)
    return writes / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--waiters", type=int, default=1000)
    parser.add_argument("--writes", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--store", help="a SQLite path or a database URL (a fresh temporary SQLite file by default)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = args.store or os.path.join(tmp, "watch.db")
        writer = TaskTracker(store)
        watcher = TaskTracker(store)
        ids = [writer.submit(description="written", submitted_by=1).id for _ in range(100)]
        idle = [writer.submit(description="idle", submitted_by=1).id for _ in range(args.waiters)]
        write_rate(writer, ids, 200)  # warm up: connections, caches
        threading.stack_size(256 * 1024)  # a thousand threads with small stacks
        alone: list[float] = []
        beside: list[float] = []
        cpu_alone: list[float] = []
        cpu_beside: list[float] = []
        for _ in range(args.rounds):
            alone.append(write_rate(writer, ids, args.writes, cpu_alone))
            threads = [
                threading.Thread(target=watcher.wait, args=(task_id,), daemon=True, name="bench-waiter")
                for task_id in idle
            ]
            for thread in threads:
                thread.start()
            while watcher.changes.waiters < args.waiters:
                time.sleep(0.01)
            time.sleep(1.0)  # every waiter past its first read, asleep
            beside.append(write_rate(writer, ids, args.writes, cpu_beside))
            # End the waits: cancel the idle tasks, then give them fresh ones next round.
            for task_id in idle:
                writer.cancel(task_id)
            for thread in threads:
                thread.join()
            idle = [writer.submit(description="idle", submitted_by=1).id for _ in range(args.waiters)]
        writer.close()
        watcher.close()
    best_alone, best_beside = max(alone), max(beside)
    print(f"store: {'SQLite file' if not args.store else args.store.split('://')[0]}")
    print(f"writes/s alone:                      {best_alone:10.0f}")
    print(f"writes/s beside {args.waiters:5d} idle waiters: {best_beside:10.0f}")
    # CPU time per write (the whole process: writer, waiters and listening thread)
    # tells the waiters' cost apart from a busy machine's noise in the rates.
    print(f"CPU per write alone / beside: {min(cpu_alone) * 1e6:.0f} / {min(cpu_beside) * 1e6:.0f} us")
    print(f"ratio: {best_beside / best_alone:.2f} (target >= 0.8)")


if __name__ == "__main__":
    main()
