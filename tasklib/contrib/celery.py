"""Run tracked tasks on Celery workers: Celery and its broker distribute the work, tasklib tracks it.

::

    app = Celery("host", broker="redis://127.0.0.1:6379/0")
    tracker = tasklib.TaskTracker("postgresql://...")
    install(app, tracker)  # in the web process and in each worker

    @app.task(base=TrackedTask, bind=True)
    def reindex(self, project_key): ...

    task = tracker.submit(reindex, "FOO", description="Reindex FOO", submitted_by=10000)

:meth:`tasklib.TaskTracker.submit` records the task ENQUEUED, then sends it with
its tasklib id in the message's ``tasklib_id`` header (never among the
arguments). The worker runs it through :func:`tasklib.dispatch.run_delivered`:
see that function for the outcomes, and ``docs/celery.md`` for retries, cancel,
lost workers and the pools.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from celery import Celery, Signature, Task, signals
from celery.exceptions import Ignore, Retry

from ..dispatch import run_delivered
from ..errors import TaskCancelled, TaskError, TaskSkipped
from ..telemetry import log
from ..tracker import TaskTracker
from ..workers import current_task, describe

__all__ = ["HEADER", "TrackedTask", "install"]

#: The message header that carries the tasklib id of a task (Celery keeps it on retries).
HEADER = "tasklib_id"


class _Binding:
    """One app's tracker, and the Celery side of the dispatch seam for it."""

    def __init__(self, app: Celery, tracker: TaskTracker) -> None:
        self.app = app
        self.tracker = tracker

    # -- the Dispatcher protocol (tasklib.dispatch.Dispatcher) ---------------

    def claims(self, fn: object) -> bool:
        task = self._task_of(fn)
        if task is None or task.app is not self.app:
            return False
        if not isinstance(task, TrackedTask):
            raise TypeError(
                f"the Celery task {task.name} is not tracked: declare it with @app.task(base=TrackedTask), "
                "or send it with its own .delay()"
            )
        return True

    def _task_of(self, fn: object) -> Any:
        if isinstance(fn, Task):
            return fn
        if isinstance(fn, Signature):
            # A signature names its task; it carries arguments and options (queue, countdown...).
            try:
                return self.app.tasks[fn.task]
            except KeyError:
                return None
        return None

    def send(self, task_id: str, fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        headers = (
            {**(fn.options.get("headers") or {}), HEADER: task_id} if isinstance(fn, Signature) else {HEADER: task_id}
        )
        fn.apply_async(args, kwargs, task_id=self.celery_id(task_id), headers=headers)

    def revoke(self, task_id: str) -> None:
        self.app.control.revoke(self.celery_id(task_id))

    def celery_id(self, task_id: str) -> str:
        """The Celery id of a tasklib task: known without storing it, so a cancel can revoke it."""
        return f"{self.tracker.name}:{task_id}"

    # -- the worker's side ---------------------------------------------------------

    def after_fork(self, **_: Any) -> None:
        # A prefork child: connections and threads of the parent must not be used here.
        self.tracker.after_fork()
        try:
            self.tracker.open()  # this child is a runner from now on: its heartbeat runs
        except TaskError as exc:
            # The child still starts: its first task opens the tracker, or fails saying why.
            log(logging.WARNING, "could not open the tracker in a new pool process: %s", exc)

    def shut_down(self, **_: Any) -> None:
        # A stopping worker leaves no task of its own RUNNING: the tracker's close ends them.
        self.tracker.close()


def _binding(app: Celery) -> _Binding:
    binding = getattr(app, "_tasklib_binding", None)
    if not isinstance(binding, _Binding):
        raise RuntimeError(f"tasklib.contrib.celery.install() was not called for the Celery app {app.main!r}")
    return binding


def install(app: Celery, tracker: TaskTracker) -> None:
    """Track ``app``'s :class:`TrackedTask` tasks in ``tracker``: call it where tasks are sent and in each worker.

    Where tasks are sent, :meth:`tasklib.TaskTracker.submit` of a TrackedTask
    records it and sends it to Celery (a Celery task of ``app`` that is not a
    TrackedTask is refused with TypeError), and :meth:`tasklib.TaskTracker.cancel`
    of an ENQUEUED one revokes its message. In a worker, the tracker runs the
    tasks: each prefork child makes it its own after the fork (Celery's
    ``worker_process_init``) and becomes a runner that heartbeats; a threads or
    solo pool opens it at the first task. A worker that stops closes it.
    Calling it again binds ``app`` to the ``tracker`` given last.
    Raises TypeError for arguments of the wrong type.
    """
    if not isinstance(app, Celery):
        raise TypeError(f"install() takes a Celery app, not {type(app).__name__}")
    if not isinstance(tracker, TaskTracker):
        raise TypeError(f"install() takes a tasklib.TaskTracker, not {type(tracker).__name__}")
    binding = _Binding(app, tracker)
    app._tasklib_binding = binding
    tracker.add_dispatcher(binding)
    # Celery's signals are process-wide: one receiver per app, finding its binding when called.
    uid = f"tasklib:{id(app)}"
    signals.worker_process_init.connect(lambda **kw: _binding(app).after_fork(**kw), weak=False, dispatch_uid=uid)
    signals.worker_process_shutdown.connect(lambda **kw: _binding(app).shut_down(**kw), weak=False, dispatch_uid=uid)
    signals.worker_shutdown.connect(lambda **kw: _binding(app).shut_down(**kw), weak=False, dispatch_uid=uid)


class TrackedTask(Task):  # Celery has no type hints: Task is Any to mypy
    """A Celery task base class whose runs are tasklib tasks: ``@app.task(base=TrackedTask, bind=True)``.

    Sent through :meth:`tasklib.TaskTracker.submit`, a run is RUNNING while it
    runs, its function reports progress and polls for cancel through
    :func:`tasklib.current_task`, and it ends COMPLETE with the return value
    (also Celery's result), FAILED "Type: text", or CANCELLED (Celery sees
    :class:`tasklib.TaskCancelled`, an expected error it logs without a
    traceback). A Celery retry (``self.retry()``, ``autoretry_for``) keeps the
    task RUNNING with a message naming the attempt; it ends only when Celery
    gives up. A message whose task must not run (cancelled, finished, DEAD, held
    by another worker) is acknowledged and ignored. Sent any other way
    (``.delay()``), or called directly, it runs untracked, as a plain Celery task.
    """

    throws = (TaskCancelled,)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        task_id = _tasklib_id(self.request)
        if task_id is None:
            return super().__call__(*args, **kwargs)
        binding = _binding(self.app)
        attempt, attempts = self._attempts()

        def retrying(exc: BaseException) -> str | None:
            return _retry_note(attempt, attempts, exc.exc) if isinstance(exc, Retry) else None

        try:
            return run_delivered(
                binding.tracker,
                str(task_id),
                super().__call__,
                args,
                kwargs,
                attempt=attempt,
                attempts=attempts,
                retrying=retrying,
            )
        except TaskSkipped as skipped:
            log(logging.INFO, "%s: the message is acknowledged and dropped", skipped, task_id=str(task_id))
            raise Ignore(str(skipped)) from None

    def retry(self, args: Any = None, kwargs: Any = None, exc: Any = None, *rest: Any, **options: Any) -> Any:
        """Celery's retry; a tracked run first lets its task go, still RUNNING, with a message naming the attempts.

        Letting go comes before Celery sends the next attempt's message, so that
        attempt, on whichever worker, finds the task free to take. After a cancel
        request it raises :class:`tasklib.TaskCancelled` instead: the task ends
        CANCELLED and is not retried.
        """
        if _tasklib_id(self.request) is not None and not self.request.is_eager:
            attempt, attempts = self._attempts(options.get("max_retries"))
            if attempts is None or attempt < attempts:  # otherwise Celery gives up: the error ends the task
                cause = exc if exc is not None else sys.exc_info()[1]
                current_task().release(_retry_note(attempt, attempts, cause))
        return super().retry(args, kwargs, exc, *rest, **options)

    def _attempts(self, override: Any = None) -> tuple[int, int | None]:
        """This attempt's number (from 1) and how many Celery makes at most (None: no limit)."""
        limit = self.max_retries if override is None else override
        return int(self.request.retries or 0) + 1, None if limit is None else int(limit) + 1


def _tasklib_id(request: Any) -> Any:
    # A worker's request has the message's headers as attributes; an eager run
    # (task_always_eager) has them only in its headers.
    found = request.get(HEADER)
    if found is None:
        found = (request.get("headers") or {}).get(HEADER)
    return found


def _retry_note(attempt: int, attempts: int | None, cause: object) -> str:
    why = describe(cause) if isinstance(cause, BaseException) else str(cause or "retry")
    total = "" if attempts is None else f" of {attempts}"
    return f"attempt {attempt}{total} failed ({why}); attempt {attempt + 1}{total} is queued"
