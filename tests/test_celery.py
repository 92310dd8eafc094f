"""Tracked tasks on real Celery workers: ``celery -A tests.celery_app worker`` processes against Redis.

Tasks are submitted, read and cancelled in this process and run in the workers.
The store is the PostgreSQL database of TASKLIB_TEST_POSTGRES_URL when set, else
a SQLite file; the broker is TASKLIB_TEST_REDIS_URL (redis://127.0.0.1:6379/15).
Without Celery or an answering broker, the tests that need them are skipped.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import pathlib
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import pytest

from tasklib import DispatchError, Task, TaskError, TaskStatus, TaskTracker

from .conftest import POSTGRES_URL, reset_postgres
from .helpers import WAIT, eventually

pytest.importorskip("celery", reason="the Celery tests need the celery extra: pip install '.[celery]'")

ROOT = pathlib.Path(__file__).resolve().parent.parent
REDIS_URL = os.environ.get("TASKLIB_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
#: This run's own queue, so that workers of another run on the same Redis never take its messages.
QUEUE = f"tasklib-test-{uuid.uuid4().hex[:8]}"
S = TaskStatus


def broker_answers() -> str | None:
    """None if the Redis broker answers PING, else why not."""
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=2).ping()
    except (redis.RedisError, OSError, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


@pytest.fixture(scope="module")
def app_module() -> Iterator[ModuleType]:
    """tests.celery_app, configured for this run's queue and broker (as the workers will be)."""
    saved = {name: os.environ.get(name) for name in ("TASKLIB_CELERY_QUEUE", "TASKLIB_TEST_REDIS_URL")}
    os.environ["TASKLIB_CELERY_QUEUE"] = QUEUE
    os.environ["TASKLIB_TEST_REDIS_URL"] = REDIS_URL
    try:
        module = importlib.import_module("tests.celery_app")
        assert module.QUEUE == QUEUE, "tests.celery_app was imported before this module configured it"
        yield module
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture(scope="module")
def broker(app_module: ModuleType) -> Iterator[Any]:
    """The Redis broker as a client, for counting runs; skips the test when none answers."""
    import redis

    why = broker_answers()
    if why is not None:
        pytest.skip(
            f"no Redis broker answers at {REDIS_URL} ({why}): start redis-server, or set TASKLIB_TEST_REDIS_URL"
        )
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    yield client
    # Leave nothing of this run in the database: its queues, their bindings, messages a
    # killed worker left unacknowledged, the run counts.
    for name in client.scan_iter(match=f"*{QUEUE}*"):
        client.delete(name)
    for tag, entry in client.hgetall("unacked").items():
        if QUEUE in entry:
            client.hdel("unacked", tag)
            client.zrem("unacked_index", tag)
    client.close()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The store of this module's tracker and workers: PostgreSQL when configured, else a SQLite file."""
    if POSTGRES_URL:
        reset_postgres(POSTGRES_URL)
        return POSTGRES_URL
    return str(tmp_path_factory.mktemp("celery") / "tasks.db")


@pytest.fixture(scope="module")
def tracker(app_module: ModuleType, store: str) -> Iterator[TaskTracker]:
    """The submitting process's tracker, installed on the app."""
    from tasklib.contrib.celery import install

    tracker = app_module.make_tracker(store)
    install(app_module.app, tracker)
    yield tracker
    tracker.close()


class Worker:
    """One ``celery worker`` process (and its pool's children), in a process group of its own."""

    def __init__(self, log: pathlib.Path, process: subprocess.Popen[bytes]) -> None:
        self.log = log
        self.process = process

    @property
    def pid(self) -> int:
        return self.process.pid

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        while " ready." not in self.text():
            if self.process.poll() is not None:
                pytest.fail(f"the celery worker exited with {self.process.returncode}:\n{self.text()[-3000:]}")
            assert time.monotonic() < deadline, f"the celery worker did not get ready:\n{self.text()[-3000:]}"
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL the whole worker: its main process and its pool's."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=WAIT)

    def stop(self) -> None:
        """A warm shutdown (SIGTERM), then SIGKILL for whatever is left of its group."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=20)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=WAIT)


@pytest.fixture(scope="module")
def start_worker(broker: Any, store: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Worker]]:
    """Start workers on this run's queue and store; every one is stopped at the end, whatever happens."""
    started: list[Worker] = []
    logs = tmp_path_factory.mktemp("celery-logs")

    def start(pool: str = "prefork", concurrency: int = 2, queue: str = QUEUE, **env: str) -> Worker:
        name = f"w{len(started)}-{uuid.uuid4().hex[:6]}"
        log = logs / f"{name}.log"
        environ = {
            **os.environ,
            "TASKLIB_CELERY_STORE": store,
            "TASKLIB_CELERY_QUEUE": QUEUE,
            "TASKLIB_TEST_REDIS_URL": REDIS_URL,
            "PYTHONPATH": str(ROOT),
            **env,
        }
        command = [sys.executable, "-m", "celery", "-A", "tests.celery_app", "worker", "-P", pool]
        command += ["-c", str(concurrency), "-Q", queue, "-n", f"{name}@%h", "-l", "info"]
        command += ["--without-heartbeat", "--without-mingle", "--without-gossip"]
        with log.open("wb") as out:
            process = subprocess.Popen(
                command, cwd=ROOT, env=environ, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        worker = Worker(log, process)
        started.append(worker)
        worker.wait_ready()
        return worker

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture(scope="module", params=["prefork", "threads"])
def workers(request: pytest.FixtureRequest, start_worker: Callable[..., Worker]) -> Iterator[list[Worker]]:
    """Two workers of two slots each, of the pool named by the parameter; stopped before the other pool's start."""
    pair = [start_worker(request.param), start_worker(request.param)]
    yield pair
    for worker in pair:
        worker.stop()


def runs(broker: Any, key: str) -> int:
    """How many times a task function recorded a run under ``key``."""
    return int(broker.hget(f"{QUEUE}:ran", key) or 0)


def key() -> str:
    return uuid.uuid4().hex


def in_logs(workers: list[Worker], text: str) -> bool:
    return any(text in worker.text() for worker in workers)


# -- each outcome, across processes ---------------------------------------------------


def test_a_task_runs_in_a_worker_and_ends_complete_with_its_result(
    app_module: ModuleType, tracker: TaskTracker, workers: list[Worker]
) -> None:
    """Recorded ENQUEUED by submit, then RUNNING in a worker process, COMPLETE with the return value."""
    task = tracker.submit(app_module.add, 2, 3, description="Add", submitted_by=10000)
    assert task.status is S.ENQUEUED and task.description == "Add"
    done = tracker.wait(task.id, timeout=WAIT)
    assert done.status is S.COMPLETE and done.result == {"sum": 5} and done.progress == 100
    assert done.message is not None and done.message.startswith("adding in ")
    assert int(done.message.split()[-1]) != os.getpid()  # its progress came from a worker process
    assert done.started is not None and done.submitted_by == 10000


def test_an_exception_ends_the_task_failed_with_type_and_text(
    app_module: ModuleType, tracker: TaskTracker, workers: list[Worker]
) -> None:
    done = tracker.wait(tracker.submit(app_module.fail, "disk full").id, timeout=WAIT)
    assert done.status is S.FAILED and done.message == "ValueError: disk full"


def test_cancel_of_a_running_task_is_seen_by_the_worker(
    app_module: ModuleType, tracker: TaskTracker, workers: list[Worker], broker: Any
) -> None:
    """RUNNING -> CANCEL_REQUESTED here; the worker's raise_if_cancelled ends it CANCELLED."""
    name = key()
    task = tracker.submit(app_module.until_cancelled, name)
    eventually(lambda: tracker.get(task.id).status is S.RUNNING)
    assert tracker.cancel(task.id).status is S.CANCEL_REQUESTED
    done = tracker.wait(task.id, timeout=WAIT)
    assert done.status is S.CANCELLED
    assert done.message is not None and done.message.startswith("pid ")  # its last report stays
    assert runs(broker, name) == 1


def test_a_celery_retry_keeps_the_task_running_with_the_attempt_in_its_message(
    app_module: ModuleType, tracker: TaskTracker, workers: list[Worker], broker: Any
) -> None:
    """Two retries: RUNNING throughout, the message naming the attempts; COMPLETE after the third."""
    name = key()
    task = tracker.submit(app_module.flaky, name, 2)
    seen: list[Task] = []
    deadline = time.monotonic() + WAIT
    while not (seen and seen[-1].status.is_terminal):
        assert time.monotonic() < deadline, seen
        seen.append(tracker.get(task.id))
        time.sleep(0.01)
    assert {snapshot.status for snapshot in seen} <= {S.ENQUEUED, S.RUNNING, S.COMPLETE}
    messages = {snapshot.message for snapshot in seen if snapshot.status is S.RUNNING}
    assert "attempt 1 of 4 failed (ConnectionError: attempt 1 failed); attempt 2 of 4 is queued" in messages
    assert "attempt 2 of 4 failed (ConnectionError: attempt 2 failed); attempt 3 of 4 is queued" in messages
    done = seen[-1]
    assert done.status is S.COMPLETE and done.result == {"attempts": 3} and done.message == "attempt 3 of 4"
    assert runs(broker, name) == 3


def test_the_task_fails_only_when_celery_gives_up_retrying(
    app_module: ModuleType, tracker: TaskTracker, workers: list[Worker], broker: Any
) -> None:
    """autoretry_for with max_retries=2: three attempts, then FAILED with the last error."""
    name = key()
    done = tracker.wait(tracker.submit(app_module.always_missing, name).id, timeout=WAIT)
    assert done.status is S.FAILED and done.message == f"KeyError: '{name}'"
    assert runs(broker, name) == 3


def test_cancel_of_an_enqueued_task_revokes_its_message_and_it_never_runs(
    app_module: ModuleType,
    tracker: TaskTracker,
    workers: list[Worker],
    start_worker: Callable[..., Worker],
    broker: Any,
    request: pytest.FixtureRequest,
) -> None:
    """A task whose message waits in the broker, cancelled: CANCELLED at once, and never run by the worker that gets it.

    Its message waits on a queue no worker consumes yet, rather than behind busy
    slots: how many messages a worker reserves beyond its slots is Celery's to
    choose, so slots filled with blockers did not always hold the task back.
    """
    queue = own_queue()
    name = key()
    task = tracker.submit(app_module.mark.s().set(queue=queue), name)
    assert tracker.get(task.id).status is S.ENQUEUED
    cancelled = tracker.cancel(task.id)
    assert cancelled.status is S.CANCELLED
    late = start_worker(request.node.callspec.params["workers"], queue=queue)
    try:
        # The worker drops the message: revoked, or found CANCELLED when it came.
        revoked = f"Discarding revoked task: tests.celery_app.mark[{tracker.name}:{task.id}]"
        eventually(lambda: in_logs([late], revoked) or in_logs([late], f"task {task.id} is not run"))
        after = tracker.wait(tracker.submit(app_module.mark.s().set(queue=queue), key()).id, timeout=WAIT)
        assert after.status is S.COMPLETE
    finally:
        late.stop()
    assert runs(broker, name) == 0
    assert tracker.get(task.id).status is S.CANCELLED


def test_a_message_whose_task_has_finished_is_acknowledged_and_skipped(
    app_module: ModuleType, tracker: TaskTracker, workers: list[Worker], broker: Any
) -> None:
    """A message delivered again for a finished task (here: sent by hand) runs nothing and changes nothing."""
    done = tracker.wait(tracker.submit(app_module.add, 1, 1).id, timeout=WAIT)
    name = key()
    app_module.mark.apply_async((name,), headers={"tasklib_id": done.id})
    eventually(lambda: in_logs(workers, f"task {done.id} is not run: it has finished"))
    assert runs(broker, name) == 0
    assert tracker.get(done.id) == done


def test_a_task_sent_with_delay_runs_untracked(
    app_module: ModuleType, tracker: TaskTracker, workers: list[Worker], broker: Any
) -> None:
    """A TrackedTask sent without tasklib runs as a plain Celery task; nothing is recorded."""
    before = tracker.list(limit=1)
    name = key()
    app_module.mark.delay(name)
    app_module.untracked.delay(name)
    eventually(lambda: runs(broker, name) == 2)
    assert tracker.list(limit=1) == before


def test_a_celery_task_that_is_not_tracked_is_refused(app_module: ModuleType, tracker: TaskTracker) -> None:
    before = tracker.list(limit=1)
    with pytest.raises(TypeError, match="base=TrackedTask"):
        tracker.submit(app_module.untracked, "x")
    assert tracker.list(limit=1) == before


def test_a_broker_that_refuses_the_message_fails_the_task_and_submit_raises(app_module: ModuleType, store: str) -> None:
    """Nothing listens on the broker's port: FAILED with the broker's error, DispatchError, no ENQUEUED task."""
    from celery import Celery

    from tasklib.contrib.celery import TrackedTask, install

    app = Celery("refused", broker="redis://127.0.0.1:9/0")  # the discard port: nothing answers
    app.conf.update(broker_connection_timeout=1, broker_connection_max_retries=0)
    app.conf.task_publish_retry_policy = {"max_retries": 0}

    @app.task(base=TrackedTask, bind=True)
    def nowhere(self: Any) -> None:
        raise AssertionError("never runs")

    with app_module.make_tracker(store) as tracker:
        install(app, tracker)
        with pytest.raises(DispatchError) as info:
            tracker.submit(nowhere, description="never sent")
        assert isinstance(info.value, TaskError)
        assert "OperationalError" in str(info.value) and "111" in str(info.value)
        task = tracker.get(info.value.task_id)
        assert task.status is S.FAILED and task.description == "never sent"
        assert task.message == f"could not be sent: {info.value.reason}"
        assert tracker.list(status=S.ENQUEUED) == []


# -- lost workers -----------------------------------------------------------------------


def own_queue() -> str:
    """A queue of the test's own: the module's workers never take its messages (a signature sends there)."""
    return f"{QUEUE}-{uuid.uuid4().hex[:6]}"


def test_a_worker_killed_mid_task_leaves_that_task_dead_and_the_others_complete(
    app_module: ModuleType, tracker: TaskTracker, start_worker: Callable[..., Worker], broker: Any
) -> None:
    """kill -9 of a whole worker (threads pool) running a task: DEAD within dead_after, all others COMPLETE.

    The killed worker also holds a message it reserved and never started: Redis hands it
    out again after the visibility timeout (4 s here), and the other worker runs it.
    """
    queue = own_queue()
    workers = [start_worker("threads", 1, queue=queue, TASKLIB_CELERY_VISIBILITY="4") for _ in range(2)]
    victim = tracker.submit(app_module.until_cancelled.s().set(queue=queue), key())
    eventually(lambda: (tracker.get(victim.id).message or "").startswith("pid "))
    pid = int((tracker.get(victim.id).message or "").split()[-1])
    doomed = next(worker for worker in workers if worker.pid == pid)
    others = [tracker.submit(app_module.add.s().set(queue=queue), i, i) for i in range(20)]
    # Killed once the others flow: not while a message is on its way to it. (Redis hands a
    # message to a consumer before the consumer records it as unacknowledged: one popped
    # by a process killed in between is lost by the broker, and its task stays ENQUEUED.)
    eventually(lambda: sum(tracker.get(task.id).status is S.COMPLETE for task in others) >= 10)
    doomed.kill()
    dead = tracker.wait(victim.id, timeout=WAIT)
    assert dead.status is S.DEAD
    assert dead.message is not None and f":{pid} " in dead.message
    for i, task in enumerate(others):
        done = tracker.wait(task.id, timeout=WAIT)
        assert done.status is S.COMPLETE and done.result == {"sum": 2 * i}
    assert tracker.list(status=S.RUNNING) == [] and tracker.list(status=S.ENQUEUED) == []


def test_a_killed_pool_process_whose_message_is_delivered_again_leaves_its_task_dead(
    app_module: ModuleType, tracker: TaskTracker, start_worker: Callable[..., Worker], broker: Any
) -> None:
    """kill -9 of the prefork child running a task, with late acks: Celery delivers the message again, it is skipped."""
    queue = own_queue()
    workers = [start_worker("prefork", queue=queue, TASKLIB_CELERY_ACKS_LATE="1") for _ in range(2)]
    name = key()
    victim = tracker.submit(app_module.until_cancelled.s().set(queue=queue), name)
    eventually(lambda: (tracker.get(victim.id).message or "").startswith("pid "))
    pid = int((tracker.get(victim.id).message or "").split()[-1])
    assert pid not in {worker.pid for worker in workers}  # a pool child, not a worker's main process
    os.kill(pid, signal.SIGKILL)
    dead = tracker.wait(victim.id, timeout=WAIT)
    assert dead.status is S.DEAD
    eventually(lambda: in_logs(workers, f"task {victim.id} is not run"))
    assert runs(broker, name) == 1  # delivered again, never run again
    assert tracker.get(victim.id) == dead
    done = tracker.wait(tracker.submit(app_module.add.s(4, 4).set(queue=queue)).id, timeout=WAIT)  # they go on
    assert done.status is S.COMPLETE


# -- volume -------------------------------------------------------------------------------


def test_2000_tasks_through_two_workers_all_complete_none_lost_or_duplicated(
    app_module: ModuleType, tracker: TaskTracker, start_worker: Callable[..., Worker], broker: Any
) -> None:
    """Two prefork workers of two slots: every task COMPLETE with its own result, each function run once."""
    queue = own_queue()
    for _ in range(2):
        start_worker("prefork", 2, queue=queue)
    broker.delete(f"{QUEUE}:ran")
    noop = app_module.noop.s().set(queue=queue)
    tasks = [tracker.submit(noop, i) for i in range(2000)]
    assert len({task.id for task in tasks}) == 2000
    for i, task in enumerate(tasks):
        done = tracker.wait(task.id, timeout=120)
        assert done.status is S.COMPLETE and done.result == i
    counts = broker.hgetall(f"{QUEUE}:ran")
    assert counts == {str(i): "1" for i in range(2000)}
