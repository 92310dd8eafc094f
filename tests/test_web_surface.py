"""The HTTP surface every adapter shares: odd paths, every method, HEAD and OPTIONS, answered alike.

The adapters: the WSGI app, the Flask blueprint, the FastAPI router (on a
TaskTracker through Starlette's test client, and on an AsyncTaskTracker in a real
uvicorn process), the bare ASGI app (in a real uvicorn process, on either
tracker), the server of ``tasklib serve`` and the Django views. Then the FastAPI
router's OpenAPI document against Jira's schema, and what only the ASGI app does.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import json
import os
import pathlib
import re
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from urllib.parse import unquote

import pytest

from tasklib import AsyncTaskTracker, TaskStatus, TaskTracker
from tasklib.server import make_server
from tasklib.web import MAX_BODY, TRUST_ALL, asgi_app, fastapi_router, flask_blueprint, wsgi_app

from .helpers import (
    ADMIN,
    ALLOW_CANCEL,
    ALLOW_GET,
    JSON,
    OWNER,
    TASK,
    WAIT,
    asgi_exchange,
    auth,
    bearer,
    body_checker,
    submit,
)

ROOT = pathlib.Path(__file__).resolve().parents[1]
METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]
#: Paths under the prefix that are no resource, "{id}" standing for a real task's id.
ODD_PATHS = [
    "/rest/api/3/task",
    "/rest/api/3/task/",
    "/rest/api/3/task//{id}",
    "/rest/api/3/task/{id}/",
    "/rest/api/3/task//cancel",
    "/rest/api/3/task/{id}//cancel",
    "/rest/api/3/task/{id}/cancel/",
    "/rest/api/3/task/{id}/cancel/x",
    "/rest/api/3/task/{id}/x",
    "/rest/api/3/task/{id}%0A/x",
]

#: (status, header fields by lower-case name, the bytes of content received)
Reply = tuple[int, dict[str, str], bytes]


@dataclasses.dataclass(frozen=True)
class Adapter:
    """An adapter serving a tracker: how to send it a request, and who its owner is."""

    name: str
    tracker: TaskTracker
    owner: int
    owner_headers: dict[str, str]
    send: Callable[[str, str, Mapping[str, str]], Reply]


def lower(fields: Any) -> dict[str, str]:
    return {str(name).lower(): str(value) for name, value in fields.items()}


# -- real servers, read byte for byte --------------------------------------------------


def raw_request(port: int, method: str, path: str, headers: Mapping[str, str], body: bytes = b"") -> Reply:
    """One request on its own connection, the answer read to the end: what the server really sent."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close"]
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    lines += [f"{name}: {value}" for name, value in headers.items()]
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as connection:
        connection.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        data = b""
        while chunk := connection.recv(65536):
            data += chunk
    head, _, content = data.partition(b"\r\n\r\n")
    status_line, *fields = head.decode("latin-1").split("\r\n")
    parsed = {}
    for field in fields:
        name, _, value = field.partition(":")
        parsed[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), parsed, content


def start_uvicorn(stack: contextlib.ExitStack, log: pathlib.Path, store: str, kind: str) -> int:
    """A real uvicorn process serving ``tests.asgi_host`` (``kind``) on a free port; returns the port."""
    pytest.importorskip("uvicorn")
    env = {**os.environ, "TASKLIB_TEST_STORE": store, "TASKLIB_TEST_APP": kind, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "uvicorn", "--factory", "tests.asgi_host:make"]
    command += ["--host", "127.0.0.1", "--port", "0", "--no-access-log", "--timeout-graceful-shutdown", "5"]
    output = stack.enter_context(log.open("w"))
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT)

    def stop() -> None:
        process.terminate()
        try:
            process.wait(WAIT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(WAIT)

    stack.callback(stop)
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        found = re.search(r"Uvicorn running on http://127\.0\.0\.1:(\d+)", log.read_text())
        if found:
            return int(found.group(1))
        assert process.poll() is None, log.read_text()
        time.sleep(0.05)
    raise AssertionError(f"uvicorn did not start: {log.read_text()}")


def uvicorn_adapter(kind: str) -> Callable[..., Adapter]:
    def build(stack: contextlib.ExitStack, make_tracker: Callable[..., TaskTracker], store: str, tmp: Any) -> Adapter:
        tracker = make_tracker(base_url=None, is_admin=lambda user: user == ADMIN)
        port = start_uvicorn(stack, tmp / f"{kind}.log", store, kind)

        def send(method: str, path: str, headers: Mapping[str, str]) -> Reply:
            return raw_request(port, method, path, headers)

        return Adapter(kind, tracker, OWNER, auth(OWNER), send)

    return build


def serve_adapter(
    stack: contextlib.ExitStack, make_tracker: Callable[..., TaskTracker], store: str, tmp: Any
) -> Adapter:
    tracker = make_tracker(base_url=None, is_admin=lambda user: user == ADMIN)
    server = make_server(tracker, "127.0.0.1", 0, authenticate=bearer)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(WAIT)

    stack.callback(stop)

    def send(method: str, path: str, headers: Mapping[str, str]) -> Reply:
        return raw_request(server.server_port, method, path, headers)

    return Adapter("serve", tracker, OWNER, auth(OWNER), send)


# -- in-process adapters ------------------------------------------------------------------


def wsgi_adapter(
    stack: contextlib.ExitStack, make_tracker: Callable[..., TaskTracker], store: str, tmp: Any
) -> Adapter:
    from wsgiref.util import setup_testing_defaults
    from wsgiref.validate import WSGIWarning, validator

    tracker = make_tracker(base_url=None, is_admin=lambda user: user == ADMIN)
    app = validator(wsgi_app(tracker, authenticate=bearer))

    def send(method: str, path: str, headers: Mapping[str, str]) -> Reply:
        env: dict[str, Any] = {"REQUEST_METHOD": method, "PATH_INFO": unquote(path, encoding="latin-1")}
        env.update(QUERY_STRING="", SCRIPT_NAME="")
        setup_testing_defaults(env)
        env.update({"HTTP_" + k.upper().replace("-", "_"): v for k, v in headers.items()})
        env["wsgi.input"] = io.BytesIO(b"")
        answer: dict[str, Any] = {}

        def start_response(status: str, fields: list[tuple[str, str]], exc_info: Any = None) -> Any:
            answer.update(status=int(status.split()[0]), headers=lower(dict(fields)))
            return lambda data: None

        with warnings.catch_warnings():
            # The validator only warns of methods it does not know; they are part of the test.
            warnings.filterwarnings("ignore", message="Unknown REQUEST_METHOD", category=WSGIWarning)
            iterable: Any = app(env, start_response)
        try:
            body = b"".join(iterable)
        finally:
            iterable.close()
        return answer["status"], answer["headers"], body

    return Adapter("wsgi", tracker, OWNER, auth(OWNER), send)


def flask_adapter(
    stack: contextlib.ExitStack, make_tracker: Callable[..., TaskTracker], store: str, tmp: Any
) -> Adapter:
    flask = pytest.importorskip("flask")
    tracker = make_tracker(base_url=None, is_admin=lambda user: user == ADMIN)
    app = flask.Flask(__name__)
    app.testing = True
    app.register_blueprint(flask_blueprint(tracker, authenticate=bearer))
    client = stack.enter_context(app.test_client())

    def send(method: str, path: str, headers: Mapping[str, str]) -> Reply:
        response = client.open(path, method=method, headers=dict(headers))
        return response.status_code, lower(response.headers), response.data

    return Adapter("flask", tracker, OWNER, auth(OWNER), send)


def fastapi_adapter(
    stack: contextlib.ExitStack, make_tracker: Callable[..., TaskTracker], store: str, tmp: Any
) -> Adapter:
    fastapi = pytest.importorskip("fastapi")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*httpx2", category=UserWarning)
        testclient = pytest.importorskip("fastapi.testclient")
    tracker = make_tracker(base_url=None, is_admin=lambda user: user == ADMIN)
    app = fastapi.FastAPI()
    app.include_router(fastapi_router(tracker, authenticate=bearer))
    client = stack.enter_context(testclient.TestClient(app, follow_redirects=False))

    def send(method: str, path: str, headers: Mapping[str, str]) -> Reply:
        response = client.request(method, path, headers=dict(headers))
        return response.status_code, lower(response.headers), response.content

    return Adapter("fastapi", tracker, OWNER, auth(OWNER), send)


def django_adapter(
    stack: contextlib.ExitStack, make_tracker: Callable[..., TaskTracker], store: str, tmp: Any
) -> Adapter:
    pytest.importorskip("pytest_django")
    from django.contrib.auth import get_user_model
    from django.test import Client
    from django.test.utils import override_settings

    from tasklib.contrib.django import close_tracker, get_tracker

    stack.enter_context(override_settings(TASKLIB={"DATABASE": store}))
    stack.callback(close_tracker)
    owner = get_user_model().objects.create_user("owner", password="pw")
    client = Client()

    def send(method: str, path: str, headers: Mapping[str, str]) -> Reply:
        response = client.generic(method, path, headers=dict(headers))
        return response.status_code, lower(response.headers), response.content

    # The test project authenticates by X-Remote-User, as a proxy in front of Django would.
    return Adapter("django", get_tracker(), owner.pk, {"X-Remote-User": "owner"}, send)


ADAPTERS: dict[str, Callable[..., Adapter]] = {
    "wsgi": wsgi_adapter,
    "flask": flask_adapter,
    "fastapi": fastapi_adapter,
    "fastapi-async": uvicorn_adapter("fastapi-async"),
    "asgi": uvicorn_adapter("asgi"),
    "asgi-async": uvicorn_adapter("asgi-async"),
    "serve": serve_adapter,
    "django": django_adapter,
}


@pytest.fixture(
    params=[
        pytest.param(name, marks=[pytest.mark.django_db(transaction=True, databases="__all__")] * (name == "django"))
        for name in ADAPTERS
    ]
)
def adapter(
    request: pytest.FixtureRequest, make_tracker: Callable[..., TaskTracker], store_url: str, tmp_path: pathlib.Path
) -> Iterator[Adapter]:
    with contextlib.ExitStack() as stack:
        yield ADAPTERS[request.param](stack, make_tracker, store_url, tmp_path)


@pytest.fixture(scope="session")
def check(task_schema: dict[str, Any]) -> Callable[..., Any]:
    return body_checker(task_schema)


def expected(path: str, method: str, task_path: str) -> tuple[int, str | None]:
    """The status and Allow every adapter answers, on a task's path, a cancel path or another path."""
    if re.fullmatch(re.escape(TASK) + r"[0-9]+", path):
        if method in ("GET", "HEAD"):
            return (200 if path == task_path else 404), None
        return (204, ALLOW_GET) if method == "OPTIONS" else (405, ALLOW_GET)
    if re.fullmatch(re.escape(TASK) + r"[0-9]+/cancel", path):
        if method == "POST":
            return 202, None
        return (204, ALLOW_CANCEL) if method == "OPTIONS" else (405, ALLOW_CANCEL)
    return 404, None


def test_every_adapter_answers_odd_paths_every_method_head_and_options_alike(
    adapter: Adapter, check: Callable[..., Any]
) -> None:
    """The matrix: JSON 404 for odd paths, JSON 405 with Allow, HEAD as GET without content, OPTIONS 204 with Allow."""
    tracker = adapter.tracker
    # Finished, so that its JSON, elapsedRuntime included, is the same from one request to the next.
    task_id = submit(tracker, TaskStatus.COMPLETE, user=adapter.owner)
    task_path = TASK + task_id
    paths = [task_path, task_path + "/cancel", TASK + "4242"] + [p.format(id=task_id) for p in ODD_PATHS]
    for path in paths:
        get = adapter.send("GET", path, adapter.owner_headers)
        for method in METHODS:
            if path.endswith("/cancel") and method == "POST":
                # Each cancel on a task of its own, so that each is 202.
                fresh = submit(tracker, TaskStatus.RUNNING, user=adapter.owner)
                status, fields, body = adapter.send(method, TASK + fresh + "/cancel", adapter.owner_headers)
                assert (status, check(status, fields.get("content-type"), body)["id"]) == (202, fresh)
                assert tracker.get(fresh).status is TaskStatus.CANCEL_REQUESTED
                continue
            code, allow = expected(path, method, task_path)
            where = (adapter.name, method, path)
            status, fields, body = adapter.send(method, path, adapter.owner_headers)
            assert (status, fields.get("allow")) == (code, allow), where
            if status == 204:
                # RFC 9110: no Content-Length on a 204; Django's CommonMiddleware adds one, "0", to every answer.
                length = fields.get("content-length") if adapter.name != "django" else None
                assert (body, length, fields.get("content-type")) == (b"", None, None), where
            elif method == "HEAD":
                # RFC 9110: the GET's header fields, Content-Length included, and no content.
                assert (status, body) == (get[0], b""), where
                for name in ("content-type", "content-length", "cache-control", "allow"):
                    assert fields.get(name) == get[1].get(name), (where, name)
            else:
                value = check(status, fields.get("content-type"), body, cancel=False)
                assert fields["content-length"] == str(len(body)), where
                if status == 200:
                    assert value["id"] == task_id, where
    assert tracker.get(task_id).status is TaskStatus.COMPLETE


# -- the FastAPI router's OpenAPI document -----------------------------------------------------


@pytest.fixture
def openapi(tracker: TaskTracker) -> dict[str, Any]:
    fastapi = pytest.importorskip("fastapi")
    app = fastapi.FastAPI()
    app.include_router(fastapi_router(tracker, authenticate=bearer))
    document: dict[str, Any] = app.openapi()
    return document


def resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in schema:
        resolved: dict[str, Any] = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
        return resolved
    return schema


def test_openapi_has_jiras_two_operations_with_their_status_codes(openapi: dict[str, Any]) -> None:
    """getTask (200, 401, 403, 404) and cancelTask (202, 400, 401, 403, 404), the taskId parameter, nothing else."""
    paths = openapi["paths"]
    assert {path: list(operations) for path, operations in paths.items()} == {
        TASK + "{taskId}": ["get"],
        TASK + "{taskId}/cancel": ["post"],
    }
    get, cancel = paths[TASK + "{taskId}"]["get"], paths[TASK + "{taskId}/cancel"]["post"]
    assert (get["operationId"], cancel["operationId"]) == ("getTask", "cancelTask")
    assert sorted(get["responses"]) == ["200", "401", "403", "404"]
    assert sorted(cancel["responses"]) == ["202", "400", "401", "403", "404"]
    for operation in (get, cancel):
        assert operation["parameters"] == [
            {
                "name": "taskId",
                "in": "path",
                "required": True,
                "description": "The ID of the task.",
                "schema": {"type": "string"},
            }
        ]


def test_openapi_response_models_are_jiras_schemas(openapi: dict[str, Any], task_schema: dict[str, Any]) -> None:
    """200 and 202 are TaskProgressBeanObject, getTask's errors ErrorCollection, cancelTask's an array of strings."""
    get = openapi["paths"][TASK + "{taskId}"]["get"]["responses"]
    cancel = openapi["paths"][TASK + "{taskId}/cancel"]["post"]["responses"]

    def body(response: dict[str, Any]) -> dict[str, Any]:
        return resolve(openapi, response["content"]["application/json"]["schema"])

    def shape(schema: dict[str, Any]) -> dict[str, Any]:
        """What must match Jira's: property names with their types, formats and enums; required; closedness."""
        properties = {
            name: {k: v for k, v in value.items() if k in ("type", "format", "enum", "items", "additionalProperties")}
            for name, value in schema["properties"].items()
        }
        return {
            "type": schema["type"],
            "properties": properties,
            "required": sorted(schema.get("required", [])),
            "additionalProperties": schema.get("additionalProperties", True),
        }

    jira_task = shape(task_schema)
    assert shape(body(get["200"])) == shape(body(cancel["202"])) == jira_task
    errors = shape(task_schema["$defs"]["ErrorCollection"])
    errors["additionalProperties"] = False  # Jira's OpenAPI document (Dec 2025) closes it; the $comment says so
    for code in ("401", "403", "404"):
        assert shape(body(get[code])) == errors, code
    for code in ("400", "401", "403", "404"):
        declared = body(cancel[code])
        assert (declared["type"], declared["items"]) == ("array", task_schema["$defs"]["CancelTaskErrorBody"]["items"])


def test_what_the_router_answers_matches_its_openapi_document(
    openapi: dict[str, Any], tracker: TaskTracker, check: Callable[..., Any]
) -> None:
    """Each answer validates against the schema the document gives for its status code."""
    jsonschema = pytest.importorskip("jsonschema")
    fastapi = pytest.importorskip("fastapi")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*httpx2", category=UserWarning)
        testclient = pytest.importorskip("fastapi.testclient")
    app = fastapi.FastAPI()
    app.include_router(fastapi_router(tracker, authenticate=bearer))
    running, done = submit(tracker, TaskStatus.RUNNING), submit(tracker, TaskStatus.COMPLETE)
    requests = [
        ("GET", TASK + running, OWNER, "get", "{taskId}", 200),
        ("GET", TASK + running, None, "get", "{taskId}", 401),
        ("GET", TASK + running, 20000, "get", "{taskId}", 403),
        ("GET", TASK + "4242", OWNER, "get", "{taskId}", 404),
        ("POST", TASK + done + "/cancel", OWNER, "post", "{taskId}/cancel", 400),
        ("POST", TASK + running + "/cancel", None, "post", "{taskId}/cancel", 401),
        ("POST", TASK + running + "/cancel", 20000, "post", "{taskId}/cancel", 403),
        ("POST", TASK + "4242/cancel", OWNER, "post", "{taskId}/cancel", 404),
        ("POST", TASK + running + "/cancel", OWNER, "post", "{taskId}/cancel", 202),
    ]
    with testclient.TestClient(app) as client:
        for method, path, user, verb, template, code in requests:
            response = client.request(method, path, headers=auth(user))
            assert response.status_code == code, (method, path, user)
            declared = openapi["paths"][TASK + template][verb]["responses"][str(code)]
            schema = resolve(openapi, declared["content"]["application/json"]["schema"])
            jsonschema.validate(response.json(), {**schema, "components": openapi["components"]})


# -- the ASGI app: what no other adapter does ------------------------------------------------


def asgi_call(app: Any, method: str, path: str, headers: Mapping[str, str], body: bytes = b"", **scope: Any) -> Reply:
    """Call an ASGI app once, on a loop of its own."""
    return asyncio.run(asgi_exchange(app, method, path, headers, body, **scope))


@pytest.mark.parametrize("async_tracker", [False, True], ids=["TaskTracker", "AsyncTaskTracker"])
def test_asgi_app_under_a_root_path_with_either_tracker(
    store_url: str, check: Callable[..., Any], async_tracker: bool
) -> None:
    """Mounted at root_path /app: the path is matched without it, and self says it."""
    with TaskTracker(store_url) as sync:
        task_id = submit(sync)
        tracker: TaskTracker | AsyncTaskTracker = AsyncTaskTracker(store_url) if async_tracker else sync
        app = asgi_app(tracker, authenticate=TRUST_ALL)
        status, fields, body = asgi_call(app, "GET", "/app" + TASK + task_id, {"Host": "h"}, root_path="/app")
        assert status == 200
        assert check(status, fields["content-type"], body)["self"] == f"http://h/app{TASK}{task_id}"
        if isinstance(tracker, AsyncTaskTracker):
            asyncio.run(tracker.close())


def test_asgi_app_reads_a_chunked_body_up_to_the_limit(tracker: TaskTracker, check: Callable[..., Any]) -> None:
    """A body without Content-Length is read in its messages: over MAX_BODY it is 413 and nothing changes."""
    app = asgi_app(tracker, authenticate=TRUST_ALL)
    task_id = submit(tracker, TaskStatus.RUNNING)
    status, fields, body = asgi_call(app, "POST", TASK + task_id + "/cancel", {}, b"x" * (MAX_BODY + 1))
    assert (status, check(status, fields["content-type"], body, cancel=True)) == (
        413,
        ["The request body is too large."],
    )
    assert tracker.get(task_id).status is TaskStatus.RUNNING
    status, fields, body = asgi_call(app, "POST", TASK + task_id + "/cancel", {}, b"x" * MAX_BODY)
    assert status == 202


def test_asgi_app_answers_lifespan_and_refuses_websockets(tracker: TaskTracker) -> None:
    """Lifespan startup and shutdown complete (the tracker is left open: the host's); a WebSocket is closed."""
    app = asgi_app(tracker, authenticate=TRUST_ALL)
    sent: list[dict[str, Any]] = []
    incoming = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}, {"type": "websocket.connect"}]

    async def receive() -> dict[str, Any]:
        return incoming.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send))
    asyncio.run(app({"type": "websocket", "path": TASK + "1", "headers": []}, receive, send))
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete", "websocket.close"]
    assert tracker.submit(description="still open").status is TaskStatus.ENQUEUED


def test_async_adapters_never_block_the_loop_on_authenticate_or_the_store(tracker: TaskTracker) -> None:
    """A plain authenticate runs off the loop: it waits for a coroutine that can run only if the loop is free."""
    task_id = submit(tracker)
    released = threading.Event()

    def waiting(headers: Mapping[str, str]) -> int | None:
        assert released.wait(WAIT), "authenticate ran on the event loop"
        return OWNER

    app = asgi_app(tracker, authenticate=waiting)

    async def main() -> int:
        async def release() -> None:
            await asyncio.sleep(0.05)  # a turn of the loop after the request started
            released.set()

        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {"type": "http", "method": "GET", "path": TASK + task_id, "headers": [], "scheme": "http"}
        await asyncio.gather(app(scope, receive, send), release())
        return int(sent[0]["status"])

    assert asyncio.run(main()) == 200


def test_sync_adapters_refuse_an_async_tracker_or_authenticate(tmp_path: pathlib.Path) -> None:
    """wsgi_app and flask_blueprint answer in the request's thread: an AsyncTaskTracker or async def is a TypeError."""

    async def authenticate(headers: Mapping[str, str]) -> int | None:
        return None

    with TaskTracker(str(tmp_path / "t.db")) as tracker:
        with pytest.raises(TypeError, match="AsyncTaskTracker is for fastapi_router and asgi_app"):
            wsgi_app(AsyncTaskTracker(str(tmp_path / "t.db")), authenticate=TRUST_ALL)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="must be a plain function"):
            wsgi_app(tracker, authenticate=authenticate)
        with pytest.raises(TypeError, match="TaskTracker or an AsyncTaskTracker"):
            asgi_app(object(), authenticate=TRUST_ALL)  # type: ignore[arg-type]


def test_the_asgi_app_needs_no_framework(tmp_path: pathlib.Path) -> None:
    """`tasklib.web.asgi_app` builds and answers where no web framework can be imported."""
    code = (
        "import sys, asyncio\n"
        "for name in ('flask', 'fastapi', 'starlette', 'werkzeug', 'pydantic', 'uvicorn'): sys.modules[name] = None\n"
        "import tasklib, tasklib.web\n"
        "app = tasklib.web.asgi_app(tasklib.TaskTracker('tasks.db'), authenticate=tasklib.web.TRUST_ALL)\n"
        "sent = []\n"
        "async def receive(): return {'type': 'http.request', 'body': b''}\n"
        "async def send(m): sent.append(m)\n"
        "asyncio.run(app({'type': 'http', 'method': 'GET', 'path': '/rest/api/3/task', 'headers': []}, receive, send))\n"
        "print(sent[0]['status'])\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "404\n", "")


def test_a_json_body_is_what_each_status_says(adapter: Adapter) -> None:
    """No adapter answers HTML or a redirect under the prefix: every answer with content is Jira's JSON."""
    for path in [TASK[:-1], TASK, TASK + "x/y/z", TASK + "%2F", TASK + "1/cancel/"]:
        for method in ("GET", "POST", "DELETE", "get", "FOO"):
            status, fields, body = adapter.send(method, path, adapter.owner_headers)
            assert status in (404, 405), (adapter.name, method, path)
            assert (fields.get("content-type"), json.loads(body)["errors"]) == (JSON, {}), (adapter.name, method, path)


# -- CORS, as docs/web.md adds it ----------------------------------------------------------------


def test_the_documented_cors_lines_let_an_allowed_page_read_and_cancel(tracker: TaskTracker) -> None:
    """Preflight answered by the host's CORS layer, answers carry Access-Control-Allow-Origin, the cancel is 202."""
    fastapi = pytest.importorskip("fastapi")
    flask = pytest.importorskip("flask")
    flask_cors = pytest.importorskip("flask_cors")
    cors = pytest.importorskip("starlette.middleware.cors")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*httpx2", category=UserWarning)
        testclient = pytest.importorskip("fastapi.testclient")
    origins = ["https://app.example.com"]
    options = {"allow_origins": origins, "allow_methods": ["GET", "POST"], "allow_headers": ["Authorization"]}
    fastapi_app = fastapi.FastAPI()
    fastapi_app.include_router(fastapi_router(tracker, authenticate=bearer, allowed_origins=origins))
    fastapi_app.add_middleware(cors.CORSMiddleware, **options)
    flask_app = flask.Flask(__name__)
    flask_app.register_blueprint(flask_blueprint(tracker, authenticate=bearer, allowed_origins=origins))
    flask_cors.CORS(flask_app, origins=origins, allow_headers=["Authorization"])
    asgi = cors.CORSMiddleware(asgi_app(tracker, authenticate=bearer, allowed_origins=origins), **options)

    page = {"Origin": origins[0], **auth(OWNER)}
    preflight = {"Origin": origins[0], "Access-Control-Request-Method": "POST"}
    preflight["Access-Control-Request-Headers"] = "authorization"
    with testclient.TestClient(fastapi_app) as fastapi_client, testclient.TestClient(asgi) as asgi_client:
        flask_client = flask_app.test_client()
        for name, send in [
            ("fastapi", lambda m, p, h: fastapi_client.request(m, p, headers=h)),
            ("asgi", lambda m, p, h: asgi_client.request(m, p, headers=h)),
            ("flask", lambda m, p, h: flask_client.open(p, method=m, headers=h)),
        ]:
            task_id = submit(tracker, TaskStatus.RUNNING)
            answer = send("OPTIONS", TASK + task_id + "/cancel", preflight)
            assert answer.status_code in (200, 204), name
            assert answer.headers["Access-Control-Allow-Origin"] == origins[0], name
            answer = send("GET", TASK + task_id, page)
            assert (answer.status_code, answer.headers["Access-Control-Allow-Origin"]) == (200, origins[0]), name
            answer = send("POST", TASK + task_id + "/cancel", page)
            assert (answer.status_code, answer.headers["Access-Control-Allow-Origin"]) == (202, origins[0]), name
            evil = send("OPTIONS", TASK + task_id + "/cancel", {**preflight, "Origin": "http://evil.example"})
            assert "Access-Control-Allow-Origin" not in evil.headers, name
