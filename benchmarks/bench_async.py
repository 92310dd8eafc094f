"""Awaited reads: AsyncTaskTracker.get + to_json against TaskTracker.get + to_json.

The same tasks in the same store, read by the sync tracker in a loop and by the
async one from ``--concurrency`` coroutines on one event loop (as a server's
requests are); the rate of one coroutine alone is printed too. Rounds alternate between
the two; the medians of the rounds are printed, and the median of each round's ratio.
Target: ratio >= 0.5.

    python benchmarks/bench_async.py [--reads 5000] [--concurrency 16] [--rounds 3] [--store PATH-OR-URL]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from tasklib import AsyncTaskTracker, TaskTracker


def sync_rate(tracker: TaskTracker, ids: list[str], reads: int) -> float:
    began = time.perf_counter()
    for i in range(reads):
        tracker.get(ids[i % len(ids)]).to_json()
    return reads / (time.perf_counter() - began)


async def async_rate(tracker: AsyncTaskTracker, ids: list[str], reads: int, concurrency: int) -> float:
    async def reader(start: int) -> None:
        for i in range(start, reads, concurrency):
            (await tracker.get(ids[i % len(ids)])).to_json()

    began = time.perf_counter()
    await asyncio.gather(*(reader(k) for k in range(concurrency)))
    return reads / (time.perf_counter() - began)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reads", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--store", help="a SQLite path or a database URL (a fresh temporary SQLite file by default)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = args.store or os.path.join(tmp, "async.db")
        sync = TaskTracker(store)
        ids = [sync.submit(description="read me", submitted_by=1).id for _ in range(200)]
        for task_id in ids[::2]:
            sync.update_progress(task_id, 40, message="under way")
        async with AsyncTaskTracker(store) as tracker:
            sync_rate(sync, ids, 500)  # warm up both
            await async_rate(tracker, ids, 500, args.concurrency)
            plain, awaited, single = [], [], []
            for _ in range(args.rounds):
                plain.append(sync_rate(sync, ids, args.reads))
                awaited.append(await async_rate(tracker, ids, args.reads, args.concurrency))
                single.append(await async_rate(tracker, ids, args.reads // 4, 1))
        sync.close()
    print(f"store: {'SQLite file' if not args.store else args.store.split('://')[0]}")
    print(f"get+to_json/s, median of {args.rounds} rounds")
    print(f"  sync:                                 {statistics.median(plain):10.0f}")
    print(f"  awaited ({args.concurrency:3d} at once):                {statistics.median(awaited):10.0f}")
    print(f"  awaited (one at a time):              {statistics.median(single):10.0f}")
    ratios = [a / p for a, p in zip(awaited, plain, strict=True)]
    print(f"ratio (median of the rounds' ratios): {statistics.median(ratios):.2f} (target >= 0.5)")
    # One call at a time pays two thread hand-overs per call, more than a SQLite read costs.
    print(f"ratio, one at a time: {statistics.median(s / p for s, p in zip(single, plain, strict=True)):.2f}")


if __name__ == "__main__":
    asyncio.run(main())
