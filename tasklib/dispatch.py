"""The seam between tasklib and a task queue (Celery, and others alike): tasklib tracks, the queue runs.

A queue's integration is one module (see :mod:`tasklib.contrib.celery`). On the
sending side it gives the tracker a :class:`Dispatcher`
(:meth:`tasklib.TaskTracker.add_dispatcher`): :meth:`~tasklib.TaskTracker.submit`
then records the task of a function the dispatcher claims, ENQUEUED, and hands it
to :meth:`Dispatcher.send`, which carries the task's id in the message beside the
function's arguments. On the worker's side the integration calls
:func:`run_delivered` with that id: the task is taken for this process (its
runner, which heartbeats), run with the same handle as the thread pool, and ended.

What each queue must map: a message whose task must not run (cancelled, finished,
DEAD, held by another process) raises :class:`~tasklib.TaskSkipped`, to be
acknowledged and dropped; an exception after which the queue will run the task
again is named by ``retrying``, and leaves the task RUNNING, held by no process,
until the next attempt takes it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from .clock import now_ms
from .errors import DispatchError, TaskError
from .status import Event
from .telemetry import log
from .workers import describe

if TYPE_CHECKING:
    from .ledger import Ledger
    from .task import Task
    from .tracker import TaskTracker

__all__ = ["Dispatcher", "dispatch", "revoke", "run_delivered"]


class Dispatcher(Protocol):
    """What a task queue's integration gives a tracker, so that :meth:`~tasklib.TaskTracker.submit` sends to it."""

    def claims(self, fn: object) -> bool:
        """Whether ``fn`` is one of this queue's tasks, to be sent rather than run here.

        May raise TypeError for one of its tasks it cannot track (then nothing is recorded).
        """
        ...

    def send(self, task_id: str, fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Send the recorded ENQUEUED task ``task_id`` to the queue, its id in the message's headers.

        Raises whatever the queue raises when it refuses the message.
        """
        ...

    def revoke(self, task_id: str) -> None:
        """Ask the queue to drop the message of ``task_id``, cancelled before it started.

        Best effort: a worker that gets the message anyway finds the task
        CANCELLED and skips it. Raises what the queue raises.
        """
        ...


def dispatch(
    ledger: Ledger,
    dispatcher: Dispatcher,
    fn: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    description: str | None,
    submitted_by: int,
) -> Task:
    """Record the task ENQUEUED, then send it; the recorded task.

    If the queue refuses it the task ends FAILED with the queue's error as message,
    and DispatchError (a TaskError) names that error. Raises StoreError if the task
    cannot be recorded (nothing is sent then).
    """
    task = ledger.insert(description=description, submitted_by=submitted_by, now=now_ms(), owned=False)
    try:
        dispatcher.send(task.id, fn, args, kwargs)
    except Exception as exc:
        reason = describe(exc)
        try:
            ledger.transition(task.id, Event.FAIL, message=f"could not be sent: {reason}")
        except TaskError as failed:
            # The task stays ENQUEUED; stale_after, where set, ends it.
            log(
                logging.ERROR,
                "task %s was not sent, and could not be marked FAILED: %s",
                task.id,
                failed,
                task_id=task.id,
            )
        raise DispatchError(task.id, reason) from exc
    return task


def revoke(dispatcher: Dispatcher, task_id: str) -> None:
    """``dispatcher.revoke(task_id)``, logging a failure: the worker's skip still stops the task."""
    try:
        dispatcher.revoke(task_id)
    except Exception as exc:
        log(logging.WARNING, "could not revoke the message of task %s: %s", task_id, describe(exc), task_id=task_id)


def run_delivered(
    tracker: TaskTracker,
    task_id: str,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    attempt: int = 1,
    attempts: int | None = None,
    retrying: Callable[[BaseException], str | None] | None = None,
) -> Any:
    """Run, in the calling thread of a queue's worker, the task ``task_id`` its message carried.

    The task is taken for this process, whose tracker is opened (a runner that
    heartbeats): an ENQUEUED task becomes RUNNING; a RUNNING one released for a
    retry is taken over. Then ``fn(*args, **kwargs)`` runs with
    :func:`tasklib.current_task` giving its handle, and ends the task as on the
    thread pool: COMPLETE with what it returned, FAILED "Type: text",
    CANCELLED on TaskCancelled after a cancel request. ``attempt`` (from 1) of
    ``attempts`` (None: no limit) is the queue's count: from the second attempt
    on the message says which one runs. ``retrying(exc)`` returns the message of
    a task the queue will run again after ``exc`` (None when it will not): the
    task is then released, still RUNNING.

    Returns what ``fn`` returned and raises what it raised, once that is
    recorded. Raises TaskSkipped, without running ``fn``, when the task must not
    run here: it was cancelled (one cancelled while a retry was pending ends
    CANCELLED now), has finished or become DEAD, was purged, or another process
    holds it. Raises TrackerClosed once the tracker is closed, StoreError if it
    cannot be opened.
    """
    if attempt < 1:
        raise ValueError(f"attempt counts from 1, got {attempt}")
    note = None
    if attempt > 1:
        note = f"attempt {attempt}" + (f" of {attempts}" if attempts is not None else "")
    pool = tracker.workers
    return pool.run_delivered(task_id, fn, args, kwargs, note=note, retrying=retrying)
