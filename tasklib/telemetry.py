"""What tasklib tells a host's operators: its log records, and OpenTelemetry spans and metrics.

Logging: tasklib logs to the ``tasklib`` logger, on which the package installs a
:class:`logging.NullHandler` (the host configures handlers). Every record
carries two extra attributes, ``task_id`` (the task's id) and ``runner`` (the
runner's ``host:pid``), None where the record is not about one, so a format
string or a structured handler can use them on any record. :func:`log` is the
one way tasklib's modules log.

OpenTelemetry, with the ``otel`` extra (``opentelemetry-api``): a tracker's
:class:`Telemetry` makes a span around each run of a task function and around
each HTTP request the web layer answers, counts the tasks this process brings to
a final status, and records how long task functions ran. It uses the tracer and
meter providers given to the tracker, or else the API's global ones (those the
host's SDK set up; without an SDK the API does nothing). Without
``opentelemetry-api`` installed nothing of it is imported and nothing changes.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast

from .status import TaskStatus

if TYPE_CHECKING:
    from opentelemetry.metrics import Histogram, MeterProvider
    from opentelemetry.trace import Span, TracerProvider

    from .task import Task

__all__ = [
    "DURATION_METRIC",
    "ENDED_METRIC",
    "RUN_SPAN",
    "SCOPE",
    "TaskRun",
    "Telemetry",
    "log",
    "logger",
    "task_run",
    "traced_request",
]

logger = logging.getLogger("tasklib")

#: The instrumentation scope of tasklib's tracer and meter.
SCOPE = "tasklib"
#: The name of the span around each run of a task function.
RUN_SPAN = "tasklib.task.run"
#: The counter of tasks that reached a final status, by ``tasklib.task.status``.
ENDED_METRIC = "tasklib.tasks.ended"
#: The histogram of how long task functions ran, in seconds, by ``tasklib.task.status``.
DURATION_METRIC = "tasklib.task.duration"

# The metrics' attributes for each status, made once: every task's end records them.
_STATUS_ATTRIBUTES = {status: {"tasklib.task.status": status.value} for status in TaskStatus}
_ENDED_ATTRIBUTES = {status: attributes for status, attributes in _STATUS_ATTRIBUTES.items() if status.is_terminal}
_UNRECORDED = {"tasklib.task.status": "UNRECORDED"}


def log(
    level: int,
    msg: str,
    *args: object,
    task_id: str | None = None,
    runner: str | None = None,
    exc_info: BaseException | bool | None = None,
) -> None:
    """Log ``msg % args`` on the ``tasklib`` logger, with ``task_id`` and ``runner`` as the record's extras.

    The record's location is the caller's.
    """
    logger.log(level, msg, *args, exc_info=exc_info, extra={"task_id": task_id, "runner": runner}, stacklevel=2)


class TaskRun(Protocol):
    """What a worker tells the span around one run of a task function."""

    def failed(self, exc: BaseException) -> None:
        """The function raised ``exc`` (its task ends FAILED)."""

    def ended(self, status: TaskStatus | None) -> None:
        """The status the task's end was recorded with, or is being written with (None if it could not be)."""


class _NoRun:
    """A run nobody traces."""

    def failed(self, exc: BaseException) -> None:
        pass

    def ended(self, status: TaskStatus | None) -> None:
        pass


class _TracedRun:
    def __init__(self, span: Span) -> None:
        self.span = span
        self.status: str | None = None

    def failed(self, exc: BaseException) -> None:
        self.span.record_exception(exc)

    def ended(self, status: TaskStatus | None) -> None:
        if status is not None:
            self.status = status.value
            self.span.set_attribute("tasklib.task.status", self.status)


class _TimedRun:
    """A run with no span (no tracer records one): its duration goes to the histogram alone."""

    __slots__ = ("_attributes", "_began", "_histogram")

    def __init__(self, histogram: Histogram) -> None:
        self._histogram = histogram
        self._began = 0.0
        self._attributes = _UNRECORDED

    def __enter__(self) -> _TimedRun:
        self._began = time.perf_counter()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._histogram.record(time.perf_counter() - self._began, self._attributes)

    def failed(self, exc: BaseException) -> None:
        pass

    def ended(self, status: TaskStatus | None) -> None:
        if status is not None:
            self._attributes = _STATUS_ATTRIBUTES[status]


class Telemetry:
    """One tracker's spans and metrics (see the module's description).

    Built by :meth:`create`, which gives None when ``opentelemetry-api`` is not installed.
    """

    def __init__(self, tracer_provider: TracerProvider | None, meter_provider: MeterProvider | None) -> None:
        from opentelemetry import metrics, trace

        version = _version()
        self._trace = trace
        # Without a provider given, spans go to the API's global one, which is a proxy
        # doing nothing until the host's SDK sets one (perhaps after this tracker
        # was built): each run looks, and skips the span's machinery while it does nothing.
        self._global_tracer = tracer_provider is None
        self._tracer = trace.get_tracer(SCOPE, version, tracer_provider=tracer_provider)
        meter = metrics.get_meter(SCOPE, version or "", meter_provider=meter_provider)
        self._ended = meter.create_counter(
            ENDED_METRIC, unit="{task}", description="Tasks this process brought to a final status, by status"
        )
        self._duration = meter.create_histogram(
            DURATION_METRIC, unit="s", description="How long task functions ran, by the status they ended with"
        )

    @classmethod
    def create(
        cls, tracer_provider: TracerProvider | None = None, meter_provider: MeterProvider | None = None
    ) -> Telemetry | None:
        """A tracker's telemetry on these providers (None: the API's global ones), or None without the API.

        Raises ValueError when a provider is given but ``opentelemetry-api`` is not installed.
        """
        try:
            return cls(tracer_provider, meter_provider)
        except ImportError:  # the extra is not installed
            if tracer_provider is not None or meter_provider is not None:
                raise ValueError(
                    "tracer_provider and meter_provider need opentelemetry-api: pip install 'tasktally[otel]'"
                ) from None
            return None

    def changed(self, task: Task) -> None:
        """A status change this process wrote: a task that reached a final status is counted."""
        attributes = _ENDED_ATTRIBUTES.get(task.status)
        if attributes is not None:
            self._ended.add(1, attributes)

    def run(self, task_id: str, runner: str | None) -> contextlib.AbstractContextManager[TaskRun]:
        """The span around one run of a task function, current while it runs, and its duration."""
        if self._global_tracer and isinstance(self._trace.get_tracer_provider(), self._trace.ProxyTracerProvider):
            return _TimedRun(self._duration)  # nothing would record the span: its duration only
        return self._traced_run(task_id, runner)

    @contextlib.contextmanager
    def _traced_run(self, task_id: str, runner: str | None) -> Iterator[TaskRun]:
        attributes = {"tasklib.task.id": task_id}
        if runner is not None:
            attributes["tasklib.runner"] = runner
        with self._tracer.start_as_current_span(RUN_SPAN, attributes=attributes) as span:
            run = _TracedRun(span)
            began = time.perf_counter()
            try:
                yield run
            finally:
                took = time.perf_counter() - began
                if run.status == "FAILED":
                    span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, "the task failed"))
                self._duration.record(took, _UNRECORDED if run.status is None else {"tasklib.task.status": run.status})

    @contextlib.contextmanager
    def request(self, method: str, path: str) -> Iterator[Callable[[int], None]]:
        """The span around one HTTP request; call what it yields with the response's status code."""
        attributes = {"http.request.method": method, "url.path": path}
        kind = self._trace.SpanKind.SERVER
        with self._tracer.start_as_current_span(method, kind=kind, attributes=attributes) as span:

            def answered(status: int) -> None:
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    span.set_status(self._trace.Status(self._trace.StatusCode.ERROR))

            yield answered


def task_run(
    telemetry: Telemetry | None, task_id: str, runner: str | None
) -> contextlib.AbstractContextManager[TaskRun]:
    """``telemetry.run(...)``, or a run nobody traces without telemetry."""
    if telemetry is None:
        return contextlib.nullcontext(_NoRun())
    return telemetry.run(task_id, runner)


F = TypeVar("F", bound=Callable[..., Any])


class _Resource(Protocol):
    tracker: Any


class _Answer(Protocol):
    status: int


def traced_request(handle: F) -> F:
    """Wrap a web resource's ``handle(method, path, ...)``: a span around each request, when the tracker has telemetry.

    ``handle`` may be a plain method or an ``async def`` one. The resource's
    ``tracker`` (a TaskTracker or an AsyncTaskTracker, anything with a
    ``telemetry``) gives the :class:`Telemetry`; the response's ``status``
    becomes the span's ``http.response.status_code``.
    """

    def telemetry_of(resource: _Resource) -> Telemetry | None:
        telemetry = getattr(resource.tracker, "telemetry", None)
        return telemetry if isinstance(telemetry, Telemetry) else None

    if inspect.iscoroutinefunction(handle):

        @functools.wraps(handle)
        async def traced_async(resource: _Resource, method: str, path: str, *args: Any, **kwargs: Any) -> Any:
            telemetry = telemetry_of(resource)
            if telemetry is None:
                return await handle(resource, method, path, *args, **kwargs)
            with telemetry.request(method, path) as answered:
                response: _Answer = await handle(resource, method, path, *args, **kwargs)
                answered(response.status)
                return response

        return cast(F, traced_async)

    @functools.wraps(handle)
    def traced(resource: _Resource, method: str, path: str, *args: Any, **kwargs: Any) -> Any:
        telemetry = telemetry_of(resource)
        if telemetry is None:
            return handle(resource, method, path, *args, **kwargs)
        with telemetry.request(method, path) as answered:
            response: _Answer = handle(resource, method, path, *args, **kwargs)
            answered(response.status)
            return response

    return cast(F, traced)


def _version() -> str | None:
    from importlib import metadata

    try:
        return metadata.version("tasktally")
    except metadata.PackageNotFoundError:
        return None
