"""What a host's operators see: tasklib's log records, and its OpenTelemetry spans and metrics."""

from __future__ import annotations

import ast
import asyncio
import logging
import os
import pathlib
import socket
import subprocess
import sys
import threading
import wsgiref.util
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

import tasklib
from tasklib import AsyncTaskTracker, TaskCancelled, TaskStatus, TaskTracker
from tasklib.telemetry import DURATION_METRIC, ENDED_METRIC, RUN_SPAN, SCOPE
from tasklib.web import TRUST_ALL, asgi_app, wsgi_app

from .helpers import WAIT, asgi_exchange

pytest.importorskip("opentelemetry.sdk", reason="OpenTelemetry's SDK: install the test extra")

from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

PACKAGE = pathlib.Path(tasklib.__file__).parent
RUNNER = f"{socket.gethostname()}:{os.getpid()}"


def tasklib_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "tasklib" or r.name.startswith("tasklib.")]


# -- logging ---------------------------------------------------------------------


def test_the_package_installs_a_null_handler() -> None:
    handlers = logging.getLogger("tasklib").handlers
    assert any(type(h) is logging.NullHandler for h in handlers)


def test_a_failing_task_is_logged_once_at_warning_with_its_traceback(
    make_tracker: Callable[..., TaskTracker], caplog: pytest.LogCaptureFixture
) -> None:
    tracker = make_tracker()

    def work() -> None:
        raise KeyError("no such row")

    with caplog.at_level(logging.DEBUG, logger="tasklib"):
        task = tracker.wait(tracker.submit(work, description="fails").id, timeout=WAIT)
    assert task.status is TaskStatus.FAILED
    [record] = [r for r in tasklib_records(caplog) if r.levelno >= logging.WARNING]
    assert record.levelno == logging.WARNING
    assert record.exc_info is not None and record.exc_info[0] is KeyError
    assert record.task_id == task.id  # type: ignore[attr-defined]
    assert record.runner == RUNNER  # type: ignore[attr-defined]
    assert task.id in record.getMessage() and not record.getMessage().startswith("tasklib")


def test_a_cancelled_task_is_no_warning(
    make_tracker: Callable[..., TaskTracker], caplog: pytest.LogCaptureFixture
) -> None:
    tracker = make_tracker(progress_interval=0.01)
    started = threading.Event()

    def work() -> None:
        started.set()
        while True:
            tasklib.current_task().raise_if_cancelled()
            threading.Event().wait(0.005)

    with caplog.at_level(logging.DEBUG, logger="tasklib"):
        task = tracker.submit(work, description="cancelled")
        assert started.wait(WAIT)
        tracker.cancel(task.id)
        assert tracker.wait(task.id, timeout=WAIT).status is TaskStatus.CANCELLED
    assert [r for r in tasklib_records(caplog) if r.levelno >= logging.WARNING] == []


def test_every_record_carries_the_task_and_the_runner(
    make_tracker: Callable[..., TaskTracker], caplog: pytest.LogCaptureFixture
) -> None:
    """Records of several kinds, each with ``task_id`` and ``runner`` (None where it is about none)."""
    tracker = make_tracker()

    def broken(task: tasklib.Task) -> None:
        raise RuntimeError("hook broke")

    with caplog.at_level(logging.DEBUG, logger="tasklib"):
        tracker.on_change(broken)
        task = tracker.submit(description="hooked")
        tracker.wait(tracker.submit(lambda: 1 / 0).id, timeout=WAIT)
        tracker.on_change(broken, remove=True)
    records = tasklib_records(caplog)
    assert len(records) >= 3
    for record in records:
        assert hasattr(record, "task_id") and hasattr(record, "runner"), record.getMessage()
        assert not record.getMessage().lower().startswith("tasklib:")
    hooked = [r for r in records if "on_change hook failed" in r.getMessage()]
    assert task.id in [r.task_id for r in hooked]  # type: ignore[attr-defined]
    failed = [r for r in records if r.exc_info and r.exc_info[0] is ZeroDivisionError]
    assert len(failed) == 1 and failed[0].levelno == logging.WARNING


def test_a_format_string_may_name_the_extras(tracker: TaskTracker) -> None:
    """A host's formatter can use ``%(task_id)s`` and ``%(runner)s`` on any tasklib record."""
    stream: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            stream.append(self.format(record))

    handler = Collect()
    handler.setFormatter(logging.Formatter("%(levelname)s [%(task_id)s @ %(runner)s] %(message)s"))
    logger = logging.getLogger("tasklib")
    logger.addHandler(handler)
    try:
        tracker.wait(tracker.submit(lambda: [][0]).id, timeout=WAIT)
    finally:
        logger.removeHandler(handler)
    assert any(line.startswith("WARNING [") and f"@ {RUNNER}]" in line for line in stream), stream


def logging_calls(path: pathlib.Path) -> list[str]:
    """Calls in ``path`` that log past :func:`tasklib.telemetry.log`: ``logger.x(...)``, ``logging.getLogger``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = node.func.value
            name = owner.id if isinstance(owner, ast.Name) else ""
            if name == "logger" or (name == "logging" and node.func.attr in {"getLogger", "log", "warning", "error"}):
                found.append(f"{path.name}:{node.lineno}")
    return found


def test_every_module_logs_through_the_one_function() -> None:
    """So every record carries the extras: only telemetry.py and the package's NullHandler touch the logger."""
    found = [
        call
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.name not in {"telemetry.py", "__init__.py"} or path.parent != PACKAGE
        for call in logging_calls(path)
    ]
    assert found == []
    assert logging_calls(PACKAGE / "__init__.py") == ["__init__.py:" + str(_null_handler_line())]


def _null_handler_line() -> int:
    for number, line in enumerate((PACKAGE / "__init__.py").read_text().splitlines(), 1):
        if "NullHandler" in line:
            return number
    raise AssertionError("no NullHandler in tasklib/__init__.py")


# -- OpenTelemetry -----------------------------------------------------------------


class Otel:
    """An SDK tracer provider and meter provider with in-memory exporters."""

    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def finished(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.spans.get_finished_spans() if s.name == name]

    def points(self, metric: str) -> list[Any]:
        data = self.reader.get_metrics_data()
        assert data is not None
        return [
            point
            for resource in data.resource_metrics
            for scope in resource.scope_metrics
            if scope.scope.name == SCOPE
            for m in scope.metrics
            if m.name == metric
            for point in m.data.data_points
        ]

    def ended(self) -> dict[str, int]:
        return {p.attributes["tasklib.task.status"]: p.value for p in self.points(ENDED_METRIC)}

    def shutdown(self) -> None:
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


@pytest.fixture
def otel() -> Iterator[Otel]:
    providers = Otel()
    yield providers
    providers.shutdown()


@pytest.fixture
def traced(make_tracker: Callable[..., TaskTracker], otel: Otel) -> TaskTracker:
    return make_tracker(
        tracer_provider=otel.tracer_provider, meter_provider=otel.meter_provider, progress_interval=0.01
    )


def test_a_span_around_each_task_run(traced: TaskTracker, otel: Otel) -> None:
    inner: list[Any] = []

    def work() -> str:
        # The run's span is current inside the function: the host's spans nest in it.
        with otel.tracer_provider.get_tracer("host").start_as_current_span("host work") as span:
            inner.append(span.get_span_context())
        return "ok"

    def fail() -> None:
        raise ValueError("bad input")

    done = traced.wait(traced.submit(work).id, timeout=WAIT)
    failed = traced.wait(traced.submit(fail).id, timeout=WAIT)
    runs = {s.attributes["tasklib.task.id"]: s for s in otel.finished(RUN_SPAN) if s.attributes}
    assert set(runs) == {done.id, failed.id}
    assert runs[done.id].attributes == {
        "tasklib.task.id": done.id,
        "tasklib.runner": RUNNER,
        "tasklib.task.status": "COMPLETE",
    }
    assert runs[done.id].status.status_code is trace.StatusCode.UNSET
    assert runs[failed.id].attributes is not None
    assert runs[failed.id].attributes["tasklib.task.status"] == "FAILED"
    assert runs[failed.id].status.status_code is trace.StatusCode.ERROR
    assert [e.name for e in runs[failed.id].events] == ["exception"]
    [host_span] = otel.finished("host work")
    assert host_span.parent is not None
    assert host_span.parent.span_id == runs[done.id].context.span_id
    assert inner[0].trace_id == runs[done.id].context.trace_id


def test_counters_by_final_status_and_a_histogram_of_run_times(traced: TaskTracker, otel: Otel) -> None:
    def cancelled() -> None:
        raise TaskCancelled("gave up")  # with no request: FAILED

    for _ in range(3):
        traced.wait(traced.submit(lambda: 1).id, timeout=WAIT)
    traced.wait(traced.submit(lambda: 1 / 0).id, timeout=WAIT)
    traced.wait(traced.submit(cancelled).id, timeout=WAIT)
    host = traced.submit(description="host-driven")
    traced.cancel(host.id)  # ENQUEUED: CANCELLED at once
    running = traced.start(traced.submit(description="left running").id)
    assert otel.ended() == {"COMPLETE": 3, "FAILED": 2, "CANCELLED": 1}
    durations = {p.attributes["tasklib.task.status"]: p for p in otel.points(DURATION_METRIC)}
    assert set(durations) == {"COMPLETE", "FAILED"}  # only task functions' runs are timed
    assert durations["COMPLETE"].count == 3 and durations["FAILED"].count == 2
    assert durations["COMPLETE"].sum >= 0
    traced.close()  # the task it started is made DEAD, and counted
    assert otel.ended() == {"COMPLETE": 3, "FAILED": 2, "CANCELLED": 1, "DEAD": 1}
    assert running.status is TaskStatus.RUNNING


def test_the_tasks_a_sweep_makes_dead_are_counted(
    make_tracker: Callable[..., TaskTracker], traced: TaskTracker, otel: Otel
) -> None:
    runner = make_tracker(name="runner")
    for i in range(2):
        runner.start(runner.submit(description=f"t{i}").id)
    later = datetime.now(timezone.utc) + runner.dead_after + timedelta(seconds=1)
    assert traced.sweep(now=later) == 2
    assert otel.ended() == {"DEAD": 2}


def call(app: Any, method: str, path: str) -> int:
    environ: dict[str, Any] = {"REQUEST_METHOD": method, "PATH_INFO": path}
    wsgiref.util.setup_testing_defaults(environ)
    statuses: list[str] = []
    body = b"".join(app(environ, lambda status, headers, exc_info=None: statuses.append(status)))
    assert body
    return int(statuses[0].split()[0])


def test_a_span_around_each_http_request(traced: TaskTracker, otel: Otel) -> None:
    app = wsgi_app(traced, authenticate=TRUST_ALL)
    task = traced.submit(description="served")
    assert call(app, "GET", f"/rest/api/3/task/{task.id}") == 200
    assert call(app, "GET", "/rest/api/3/task/999999") == 404
    assert call(app, "POST", f"/rest/api/3/task/{task.id}/cancel") == 202
    spans = [s for s in otel.spans.get_finished_spans() if s.name != RUN_SPAN]
    assert [(s.name, s.kind, dict(s.attributes or {})) for s in spans] == [
        (
            "GET",
            trace.SpanKind.SERVER,
            {
                "http.request.method": "GET",
                "url.path": f"/rest/api/3/task/{task.id}",
                "http.response.status_code": 200,
            },
        ),
        (
            "GET",
            trace.SpanKind.SERVER,
            {"http.request.method": "GET", "url.path": "/rest/api/3/task/999999", "http.response.status_code": 404},
        ),
        (
            "POST",
            trace.SpanKind.SERVER,
            {
                "http.request.method": "POST",
                "url.path": f"/rest/api/3/task/{task.id}/cancel",
                "http.response.status_code": 202,
            },
        ),
    ]
    assert otel.ended() == {"CANCELLED": 1}


#: Run in a fresh interpreter where OpenTelemetry cannot be imported.
WITHOUT_OTEL = """
import importlib.abc, sys

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "opentelemetry" or name.startswith("opentelemetry."):
            raise ImportError(f"blocked: {name}")
        return None

sys.meta_path.insert(0, Block())

import wsgiref.util
from tasklib import TaskTracker
from tasklib.web import TRUST_ALL, wsgi_app

with TaskTracker(sys.argv[1]) as tracker:
    assert tracker.telemetry is None
    task = tracker.wait(tracker.submit(lambda: 41 + 1).id, timeout=30)
    assert task.result == 42, task
    failed = tracker.wait(tracker.submit(lambda: 1 / 0).id, timeout=30)
    assert failed.status.value == "FAILED"
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/rest/api/3/task/" + task.id}
    wsgiref.util.setup_testing_defaults(environ)
    seen = []
    body = b"".join(wsgi_app(tracker, authenticate=TRUST_ALL)(environ, lambda s, h, e=None: seen.append(s)))
    assert seen == ["200 OK"] and b'"COMPLETE"' in body, (seen, body)
try:
    TaskTracker(sys.argv[1], tracer_provider=object())
except ValueError as exc:
    assert "opentelemetry-api" in str(exc)
else:
    raise AssertionError("a provider without the API was taken")
loaded = sorted(m for m in sys.modules if m.startswith("opentelemetry"))
assert loaded == [], loaded
print("ok")
"""


def test_without_opentelemetry_nothing_is_imported_and_all_works(store_url: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_OTEL, store_url], capture_output=True, text=True, timeout=WAIT * 2
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


#: The API's global providers, set by the host's SDK, are used when none is given.
GLOBAL_PROVIDERS = """
import sys
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tasklib import TaskTracker

spans, reader = InMemorySpanExporter(), InMemoryMetricReader()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(spans))
trace.set_tracer_provider(provider)
metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
with TaskTracker(sys.argv[1]) as tracker:
    task = tracker.wait(tracker.submit(lambda: 1).id, timeout=30)
names = [s.name for s in spans.get_finished_spans()]
counted = [
    (m.name, p.value)
    for r in reader.get_metrics_data().resource_metrics
    for s in r.scope_metrics
    for m in s.metrics
    for p in m.data.data_points
    if m.name == "tasklib.tasks.ended"
]
print(names, counted)
"""


def test_the_global_providers_serve_when_none_is_given(store_url: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", GLOBAL_PROVIDERS, store_url], capture_output=True, text=True, timeout=WAIT * 2
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['tasklib.task.run'] [('tasklib.tasks.ended', 1)]"


#: A tracker built before the host's SDK is set up: no span while the API's
#: tracer does nothing, spans once the SDK is set, the durations all along.
SDK_SET_LATER = """
import sys
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tasklib import TaskTracker

reader = InMemoryMetricReader()
metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
with TaskTracker(sys.argv[1]) as tracker:
    before = tracker.wait(tracker.submit(lambda: 1).id, timeout=30)
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    trace.set_tracer_provider(provider)
    after = tracker.wait(tracker.submit(lambda: 2).id, timeout=30)
ids = [s.attributes["tasklib.task.id"] for s in spans.get_finished_spans()]
runs = [
    p.count
    for r in reader.get_metrics_data().resource_metrics
    for s in r.scope_metrics
    for m in s.metrics
    for p in m.data.data_points
    if m.name == "tasklib.task.duration"
]
print(ids == [after.id], runs)
"""


def test_spans_start_once_the_host_sets_up_its_sdk_and_durations_never_stop(store_url: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SDK_SET_LATER, store_url], capture_output=True, text=True, timeout=WAIT * 2
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True [2]"


def test_an_async_task_function_runs_in_its_span_on_the_hosts_loop(store_url: str, otel: Otel) -> None:
    async def work() -> str:
        await asyncio.sleep(0)
        with otel.tracer_provider.get_tracer("host").start_as_current_span("awaited work"):
            await asyncio.sleep(0)
        return "ok"

    async def main() -> tuple[str, Any]:
        async with AsyncTaskTracker(
            store_url, tracer_provider=otel.tracer_provider, meter_provider=otel.meter_provider
        ) as tracker:
            task = await tracker.wait((await tracker.submit(work)).id, timeout=WAIT)
            return task.id, tracker.telemetry

    task_id, telemetry = asyncio.run(main())
    assert telemetry is not None
    [run] = otel.finished(RUN_SPAN)
    [inner] = otel.finished("awaited work")
    assert run.attributes is not None and run.attributes["tasklib.task.id"] == task_id
    assert inner.parent is not None and inner.parent.span_id == run.context.span_id
    assert otel.ended() == {"COMPLETE": 1}


def test_a_span_around_each_request_of_the_async_adapters(store_url: str, otel: Otel) -> None:
    """asgi_app on an AsyncTaskTracker: TaskResource.handle_async is traced as handle is."""

    async def request(app: Any, method: str, path: str) -> int:
        status, _, _ = await asgi_exchange(app, method, path, {"Host": "localhost"})
        return status

    async def main() -> tuple[str, list[int]]:
        async with AsyncTaskTracker(
            store_url, tracer_provider=otel.tracer_provider, meter_provider=otel.meter_provider
        ) as tracker:
            app = asgi_app(tracker, authenticate=TRUST_ALL)
            task = await tracker.submit(description="served")
            codes = [
                await request(app, "GET", f"/rest/api/3/task/{task.id}"),
                await request(app, "POST", f"/rest/api/3/task/{task.id}/cancel"),
                await request(app, "GET", "/rest/api/3/task/"),
            ]
            return task.id, codes

    task_id, codes = asyncio.run(main())
    assert codes == [200, 202, 404]
    spans = [s for s in otel.spans.get_finished_spans() if s.name != RUN_SPAN]
    assert [(s.name, s.kind, (s.attributes or {}).get("http.response.status_code")) for s in spans] == [
        ("GET", trace.SpanKind.SERVER, 200),
        ("POST", trace.SpanKind.SERVER, 202),
        ("GET", trace.SpanKind.SERVER, 404),
    ]
    assert (spans[1].attributes or {}).get("url.path") == f"/rest/api/3/task/{task_id}/cancel"
    assert otel.ended() == {"CANCELLED": 1}
