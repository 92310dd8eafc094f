"""The Celery app of tests/test_celery.py: its test process sends these tasks, ``celery -A tests.celery_app worker`` runs them.

Configured from the environment at import, so the test process and each worker
it starts agree: TASKLIB_TEST_REDIS_URL (the broker), TASKLIB_CELERY_QUEUE (this
run's own queue), TASKLIB_CELERY_VISIBILITY (seconds before Redis hands an
unacknowledged message out again), TASKLIB_CELERY_ACKS_LATE. A worker also gets
TASKLIB_CELERY_STORE, the tasklib store it tracks in, and installs its tracker.
"""

from __future__ import annotations

import logging
import os
import time
from datetime import timedelta
from typing import Any

import redis
from celery import Celery

import tasklib
from tasklib.contrib.celery import TrackedTask, install

BROKER = os.environ.get("TASKLIB_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
QUEUE = os.environ.get("TASKLIB_CELERY_QUEUE", "tasklib-tests")
#: Short in the tests, so that a lost worker's runner is found dead within seconds.
HEARTBEAT = timedelta(seconds=0.5)
DEAD_AFTER = timedelta(seconds=3)
PROGRESS_INTERVAL = 0.05

app = Celery("tasklib_tests", broker=BROKER)
app.conf.update(
    task_default_queue=QUEUE,
    task_ignore_result=True,
    # Acknowledged after the run, and given back to the queue when the worker
    # process dies: the message of a killed worker's task is delivered again.
    task_acks_late=os.environ.get("TASKLIB_CELERY_ACKS_LATE") == "1",
    task_reject_on_worker_lost=os.environ.get("TASKLIB_CELERY_ACKS_LATE") == "1",
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
    broker_transport_options={
        "visibility_timeout": float(os.environ.get("TASKLIB_CELERY_VISIBILITY", "3600")),
        "unacked_restore_interval": 1,
        "unacked_restore_throttle": 1,
    },
)


def make_tracker(store: str) -> tasklib.TaskTracker:
    """The tracker of the test process and of each worker: the same store and liveness settings."""
    return tasklib.TaskTracker(
        store, heartbeat_interval=HEARTBEAT, dead_after=DEAD_AFTER, progress_interval=PROGRESS_INTERVAL
    )


if os.environ.get("TASKLIB_CELERY_STORE"):
    install(app, make_tracker(os.environ["TASKLIB_CELERY_STORE"]))
    # The heartbeat job runs twice a second here; Celery's worker logs INFO.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)


def _redis() -> redis.Redis:
    return redis.Redis.from_url(BROKER)


def ran(key: str) -> None:
    """Count a run of the task function ``key`` in the broker's Redis, where the test reads it."""
    _redis().hincrby(f"{QUEUE}:ran", key, 1)


@app.task(base=TrackedTask, bind=True)
def add(self: Any, a: int, b: int) -> dict[str, int]:
    task = tasklib.current_task()
    task.update_progress(50, message=f"adding in {os.getpid()}")
    return {"sum": a + b}


@app.task(base=TrackedTask, bind=True)
def fail(self: Any, text: str) -> None:
    raise ValueError(text)


@app.task(base=TrackedTask, bind=True)
def until_cancelled(self: Any, key: str) -> str:
    """Reports its pid, then polls for a cancel request (30 s at most)."""
    ran(key)
    task = tasklib.current_task()
    task.update_progress(10, message=f"pid {os.getpid()}")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        task.raise_if_cancelled()
        time.sleep(0.01)
    return "never cancelled"


@app.task(base=TrackedTask, bind=True)
def mark(self: Any, key: str) -> str:
    """Records that it ran."""
    ran(key)
    return key


@app.task(base=TrackedTask, bind=True, max_retries=3)
def flaky(self: Any, key: str, failures: int) -> dict[str, int]:
    """Fails its first ``failures`` attempts, each retried by Celery after a short pause."""
    ran(key)
    attempt = self.request.retries + 1
    tasklib.current_task().update_progress(attempt * 10)
    if attempt <= failures:
        raise self.retry(exc=ConnectionError(f"attempt {attempt} failed"), countdown=0.5)
    return {"attempts": attempt}


@app.task(base=TrackedTask, bind=True, autoretry_for=(KeyError,), max_retries=2, default_retry_delay=0.1)
def always_missing(self: Any, key: str) -> None:
    """Fails every attempt; Celery's autoretry gives up after the third."""
    ran(key)
    raise KeyError(key)


@app.task(base=TrackedTask, bind=True)
def noop(self: Any, i: int) -> int:
    ran(str(i))
    return i


@app.task(bind=True)
def untracked(self: Any, key: str) -> str:
    ran(key)
    return key
