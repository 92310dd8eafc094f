"""Many threads of one process on one tracker."""

from __future__ import annotations

import collections
import random
import threading
import time
from collections.abc import Callable

from tasklib import InvalidTransition, TaskNotCancellable, TaskStatus, TaskTracker

TASKS = 40
STEPS = 15


def test_racing_progress_complete_and_cancel(tracker: TaskTracker) -> None:
    """8 threads race progress, complete and cancel: each task ends in exactly one terminal state, no cancel lost."""
    ids = [tracker.start(tracker.submit().id).id for _ in range(TASKS)]
    rng = random.Random(7)
    to_cancel = set(rng.sample(ids, TASKS // 2))
    to_complete = set(rng.sample(ids, TASKS // 4))
    finishes: collections.Counter[str] = collections.Counter()
    lock = threading.Lock()
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def finished(task_id: str) -> None:
        with lock:
            finishes[task_id] += 1

    def worker(seed: int) -> None:
        order = ids[:]
        random.Random(seed).shuffle(order)
        steps = collections.Counter[str]()
        live = set(order)
        deadline = time.monotonic() + 60
        while live and time.monotonic() < deadline:
            for task_id in order:
                if task_id not in live:
                    continue
                try:
                    task = tracker.update_progress(
                        task_id, min(99, steps[task_id] * 7), message=f"step {steps[task_id]}"
                    )
                    steps[task_id] += 1
                    if task.cancel_requested:
                        tracker.acknowledge_cancel(task_id)
                        finished(task_id)
                    elif steps[task_id] >= STEPS and task_id not in to_cancel:
                        tracker.complete(task_id, result=seed)
                        finished(task_id)
                except InvalidTransition:
                    live.discard(task_id)

    def canceller(part: list[str]) -> None:
        for task_id in part:
            try:
                assert tracker.cancel(task_id).status is TaskStatus.CANCEL_REQUESTED
            except TaskNotCancellable:
                assert task_id in to_complete  # the completer got there first

    def completer(part: list[str]) -> None:
        for task_id in part:
            try:
                tracker.complete(task_id, result="completer")
                finished(task_id)
            except InvalidTransition:
                pass

    def run(target: Callable[..., None], *args: object) -> Callable[[], None]:
        def body() -> None:
            start.wait()
            try:
                target(*args)
            except BaseException as exc:  # surfaced by the assertion below
                errors.append(exc)

        return body

    cancels, completes = sorted(to_cancel), sorted(to_complete)
    threads = [threading.Thread(target=run(worker, seed)) for seed in range(4)]
    threads += [threading.Thread(target=run(canceller, cancels[i::2])) for i in range(2)]
    threads += [threading.Thread(target=run(completer, completes[i::2])) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert errors == []

    final = {task_id: tracker.get(task_id).status for task_id in ids}
    assert all(status.is_terminal for status in final.values())
    assert finishes == collections.Counter({task_id: 1 for task_id in ids}), "each task finishes exactly once"
    for task_id, status in final.items():
        if task_id in to_cancel and task_id not in to_complete:
            assert status is TaskStatus.CANCELLED, f"cancel request of {task_id} was lost"
        elif task_id in to_complete and task_id not in to_cancel:
            assert status is TaskStatus.COMPLETE
        elif task_id in to_complete:
            assert status in (TaskStatus.COMPLETE, TaskStatus.CANCELLED)
        else:
            assert status is TaskStatus.COMPLETE
