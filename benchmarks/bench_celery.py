"""Celery with and without tasklib tracking: the same no-op tasks through the same workers, in one run.

Starts ``--workers`` Celery worker processes (``--pool`` prefork by default, ``--slots``
each) on a queue of its own on the Redis broker, then per round sends ``--tasks``
no-op tasks twice: as a plain Celery task (``.delay(i)``), and as a TrackedTask
through ``tracker.submit`` (each task recorded ENQUEUED, RUNNING in the worker,
COMPLETE with its result). A round's time runs from the first send until the
workers have finished every task, counted by a ``task_postrun`` receiver that both
kinds share. Target: tracked throughput >= 0.5x untracked, judged by the median
of the rounds, whose order alternates. The store is a SQLite file, or PostgreSQL
with ``--postgres URL``.

This file is also the workers' Celery app (``celery -A bench_celery worker``).

    python benchmarks/bench_celery.py [--tasks 2000] [--rounds 5] [--broker redis://127.0.0.1:6379/15]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pathlib
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import redis
from celery import Celery, signals

import tasklib
from tasklib.contrib.celery import TrackedTask, install

HERE = pathlib.Path(__file__).resolve().parent

BROKER = os.environ.get("BENCH_CELERY_BROKER", "redis://127.0.0.1:6379/15")
QUEUE = os.environ.get("BENCH_CELERY_QUEUE", "tasklib-bench")

app = Celery("bench_celery", broker=BROKER)
app.conf.update(
    task_default_queue=QUEUE,
    task_ignore_result=True,
    worker_prefetch_multiplier=4,
    broker_connection_retry_on_startup=True,
)

if os.environ.get("BENCH_CELERY_STORE"):  # a worker process
    install(app, tasklib.TaskTracker(os.environ["BENCH_CELERY_STORE"]))


# Named explicitly: this file runs as __main__ where tasks are sent, as bench_celery in the workers.
@app.task(bind=True, name="bench_celery.plain_noop")
def plain_noop(self: Any, i: int) -> int:
    return i


@app.task(base=TrackedTask, bind=True, name="bench_celery.tracked_noop")
def tracked_noop(self: Any, i: int) -> int:
    return i


_counter: list[redis.Redis] = []


@signals.task_postrun.connect
def _count(**_: Any) -> None:
    # The harness, the same for both kinds: one INCR per finished task.
    if not _counter:
        _counter.append(redis.Redis.from_url(BROKER))
    _counter[0].incr(f"{QUEUE}:done")


def start_workers(count: int, pool: str, slots: int, store: str, logs: pathlib.Path) -> list[subprocess.Popen[bytes]]:
    env = {
        **os.environ,  # with the run's BENCH_CELERY_BROKER and BENCH_CELERY_QUEUE
        "BENCH_CELERY_STORE": store,
        "PYTHONPATH": os.pathsep.join([str(HERE), str(HERE.parent)]),
    }
    workers = []
    for n in range(count):
        log = (logs / f"worker{n}.log").open("wb")
        command = [sys.executable, "-m", "celery", "-A", "bench_celery", "worker", "-P", pool, "-c", str(slots)]
        command += [
            "-Q",
            os.environ["BENCH_CELERY_QUEUE"],
            "-n",
            f"bench{n}-{uuid.uuid4().hex[:6]}@%h",
            "-l",
            "warning",
        ]
        command += ["--without-heartbeat", "--without-mingle", "--without-gossip"]
        workers.append(
            subprocess.Popen(command, cwd=HERE, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        )
    # Ready once each answers a ping.
    deadline = time.monotonic() + 60
    while len(app.control.ping(timeout=0.5) or []) < count:
        if time.monotonic() > deadline or any(w.poll() is not None for w in workers):
            stop_workers(workers)
            sys.exit(f"the workers did not start; see {logs}")
    return workers


def stop_workers(workers: list[subprocess.Popen[bytes]]) -> None:
    for worker in workers:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker.pid, signal.SIGTERM)
    for worker in workers:
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()


def run(client: redis.Redis, send: Any, n: int) -> float:
    """Seconds from the first send until the workers finished ``n`` tasks."""
    counter = f"{os.environ['BENCH_CELERY_QUEUE']}:done"
    client.set(counter, 0)
    began = time.perf_counter()
    for i in range(n):
        send(i)
    while int(client.get(counter) or 0) < n:
        time.sleep(0.002)
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2, help="celery worker processes")
    parser.add_argument("--slots", type=int, default=2, help="pool processes (or threads) of each worker")
    parser.add_argument("--pool", default="prefork", choices=["prefork", "threads", "solo"])
    parser.add_argument("--broker", default=os.environ.get("TASKLIB_TEST_REDIS_URL", BROKER))
    parser.add_argument("--postgres", metavar="URL", help="a PostgreSQL database whose tasklib tables may be used")
    args = parser.parse_args()
    os.environ["BENCH_CELERY_BROKER"] = args.broker
    os.environ["BENCH_CELERY_QUEUE"] = queue = f"tasklib-bench-{uuid.uuid4().hex[:8]}"
    # This process sends: point the app at the run's broker and queue.
    app.conf.broker_url = args.broker
    app.conf.task_default_queue = queue
    client = redis.Redis.from_url(args.broker)
    try:
        client.ping()
    except redis.RedisError as exc:
        sys.exit(f"no Redis broker answers at {args.broker}: {exc}")
    with tempfile.TemporaryDirectory() as tmp:
        store = args.postgres or os.path.join(tmp, "tasks.db")
        tracker = tasklib.TaskTracker(store)
        install(app, tracker)
        workers = start_workers(args.workers, args.pool, args.slots, store, pathlib.Path(tmp))
        plain: list[float] = []
        tracked: list[float] = []
        try:
            run(client, plain_noop.delay, 50)  # warm both paths: connections, imports, forks
            sent: list[tuple[str, int]] = []

            def submit(i: int) -> None:
                sent.append((tracker.submit(tracked_noop, i).id, i))

            run(client, submit, 50)
            for r in range(args.rounds):
                sides = [(plain, plain_noop.delay), (tracked, submit)]
                for times, send in sides if r % 2 == 0 else sides[::-1]:
                    times.append(run(client, send, args.tasks))
            # Every tracked task ended COMPLETE with its result (checked outside the timing).
            assert len(sent) == 50 + args.rounds * args.tasks
            for task_id, i in sent:
                task = tracker.get(task_id)
                assert task.status is tasklib.TaskStatus.COMPLETE and task.result == i, task
        finally:
            stop_workers(workers)
            tracker.close()
            for name in client.scan_iter(match=f"*{queue}*"):
                client.delete(name)
    plain_rate = args.tasks / statistics.median(plain)
    tracked_rate = args.tasks / statistics.median(tracked)
    kind = "PostgreSQL" if args.postgres else "SQLite file"
    print(
        f"{args.tasks} no-op tasks, {args.workers} workers x {args.slots} {args.pool} slots, "
        f"{args.rounds} alternating rounds (median), store: {kind}"
    )
    print(f"  Celery alone:             {plain_rate:8,.0f} tasks/s   rounds: {', '.join(f'{t:.2f}' for t in plain)} s")
    print(
        f"  Celery + tasklib tracked: {tracked_rate:8,.0f} tasks/s   rounds: {', '.join(f'{t:.2f}' for t in tracked)} s"
    )
    ratio = tracked_rate / plain_rate
    print(f"  ratio {ratio:.2f} (target >= 0.50): {'PASS' if ratio >= 0.5 else 'FAIL'}")


if __name__ == "__main__":
    main()
