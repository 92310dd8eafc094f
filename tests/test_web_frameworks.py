"""tasklib.web's Flask and FastAPI adapters, each through its framework's own test client."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from tasklib import TaskStatus, TaskTracker
from tasklib.web import DEFAULT_PREFIX, fastapi_router, flask_blueprint

from .helpers import (
    ADMIN,
    ALLOW_CANCEL,
    ALLOW_GET,
    ALLOWED,
    OTHER,
    OWNER,
    TASK,
    auth,
    bearer,
    body_checker,
    fuzz_paths,
    is_cancel,
    rows,
    submit,
)

flask = pytest.importorskip("flask")
fastapi = pytest.importorskip("fastapi")
with warnings.catch_warnings():
    # Starlette 1.x warns when it finds httpx rather than httpx2; httpx2 needs Python
    # 3.11, so on 3.10 httpx is the client there is, and it works.
    warnings.filterwarnings("ignore", message=".*httpx2", category=UserWarning)
    testclient = pytest.importorskip("fastapi.testclient")

#: send(method, path, headers) -> (status, response headers, body)
Send = Callable[[str, str, Mapping[str, str]], "tuple[int, Mapping[str, str], bytes]"]


def flask_send(stack: contextlib.ExitStack, tracker: TaskTracker, root: str = "", **options: Any) -> Send:
    """A Flask app with the blueprint and a route of the host's own, behind Flask's test client."""
    app = flask.Flask(__name__)
    app.testing = True  # errors propagate to the test instead of becoming a 500 page
    app.register_blueprint(flask_blueprint(tracker, authenticate=bearer, **options))
    app.add_url_rule(DEFAULT_PREFIX + "/myself", "myself", lambda: {"accountId": "host"})
    client = stack.enter_context(app.test_client())

    def send(method: str, path: str, headers: Mapping[str, str]) -> tuple[int, Mapping[str, str], bytes]:
        response = client.open(path, method=method, headers=dict(headers), base_url="http://localhost" + root)
        return response.status_code, response.headers, response.data

    return send


def fastapi_send(stack: contextlib.ExitStack, tracker: TaskTracker, root: str = "", **options: Any) -> Send:
    """A FastAPI app with the router and a route of the host's own, behind Starlette's test client."""
    app = fastapi.FastAPI()
    app.include_router(fastapi_router(tracker, authenticate=bearer, **options))
    app.add_api_route(DEFAULT_PREFIX + "/myself", lambda: {"accountId": "host"})
    # Entered, the client keeps one event loop for all requests instead of one per request.
    # It raises what the app raises, so a 500 fails the test.
    client = stack.enter_context(testclient.TestClient(app, root_path=root))

    def send(method: str, path: str, headers: Mapping[str, str]) -> tuple[int, Mapping[str, str], bytes]:
        response = client.request(method, path, headers=dict(headers))
        return response.status_code, response.headers, response.content

    return send


@pytest.fixture(params=[flask_send, fastapi_send], ids=["flask", "fastapi"])
def serve(request: pytest.FixtureRequest) -> Iterator[Callable[..., Send]]:
    """Builds test clients of one framework around a tracker; all are closed at the end."""
    with contextlib.ExitStack() as stack:
        yield functools.partial(request.param, stack)


@pytest.fixture(scope="session")
def check(task_schema: dict[str, Any]) -> Callable[..., Any]:
    """check(status, content_type, body, *, cancel=False): the body checked against Jira's schemas."""
    return body_checker(task_schema)


@pytest.fixture
def guarded(make_tracker: Callable[..., TaskTracker]) -> TaskTracker:
    return make_tracker(base_url=None, is_admin=lambda user: user == ADMIN)


def test_adapter_answers_with_jiras_codes_and_bodies(
    serve: Callable[..., Send], guarded: TaskTracker, check: Callable[..., Any]
) -> None:
    """Through the framework, every code of the resource comes back with Jira's body and headers."""
    send = serve(guarded)
    running, done = submit(guarded, TaskStatus.RUNNING), submit(guarded, TaskStatus.COMPLETE)
    expected: list[tuple[str, str, int | None, int]] = [
        ("GET", TASK + running, OWNER, 200),
        ("GET", TASK + "%3" + running, OWNER, 200),  # %31 is "1"
        ("GET", TASK + running, ADMIN, 200),
        ("GET", TASK + running, None, 401),
        ("GET", TASK + running, OTHER, 403),
        ("GET", TASK + "4242", OWNER, 404),
        ("GET", TASK + "-1", OWNER, 404),
        ("GET", TASK + running + "/", OWNER, 404),
        ("DELETE", TASK + running, OWNER, 405),
        ("PUT", TASK + running, OWNER, 405),
        ("PATCH", TASK + running, OWNER, 405),
        ("GET", TASK + running + "/cancel", OWNER, 405),
        ("POST", TASK + running + "/cancel", None, 401),
        ("POST", TASK + running + "/cancel", OTHER, 403),
        ("POST", TASK + "4242/cancel", OWNER, 404),
        ("POST", TASK + done + "/cancel", OWNER, 400),
        ("POST", TASK + running + "/cancel", OWNER, 202),
    ]
    for method, path, user, code in expected:
        status, headers, body = send(method, path, auth(user))
        assert status == code, (method, path, user)
        value = check(status, headers["Content-Type"], body, cancel=is_cancel(path))
        if status == 405:
            assert headers["Allow"] == (ALLOW_CANCEL if is_cancel(path) else ALLOW_GET)
        if status in (200, 202):
            assert value["id"] == running and value["submittedBy"] == OWNER
    assert guarded.get(running).status is TaskStatus.CANCEL_REQUESTED
    # Not redirected to /task/{id}/cancel (Werkzeug merges slashes by default): no such path.
    assert send("POST", TASK + "/" + done + "//cancel", auth(OWNER))[0] == 404


def test_adapter_builds_self_from_the_host_and_mount_point(
    serve: Callable[..., Send], guarded: TaskTracker, check: Callable[..., Any]
) -> None:
    """Without base_url, self is the request's scheme, Host and mount point, then prefix and id."""
    task_id = submit(guarded)
    send = serve(guarded, root="/app")
    status, headers, body = send("GET", TASK + task_id, {**auth(OWNER), "Host": "example.com:8080"})
    assert status == 200
    assert check(status, headers["Content-Type"], body)["self"] == f"http://example.com:8080/app{TASK}{task_id}"


def test_adapter_with_a_custom_prefix_leaves_the_hosts_routes_alone(
    serve: Callable[..., Send], guarded: TaskTracker, check: Callable[..., Any]
) -> None:
    """With prefix="/api" tasks are served under /api, and the host's own routes still answer."""
    task_id = submit(guarded)
    send = serve(guarded, prefix="/api")
    status, headers, body = send("GET", "/api/task/" + task_id, auth(OWNER))
    assert check(status, headers["Content-Type"], body)["self"].endswith("/api/task/" + task_id)
    assert send("GET", TASK + task_id, auth(OWNER))[0] == 404
    status, _, body = send("GET", DEFAULT_PREFIX + "/myself", {})
    assert (status, body.strip()) == (200, b'{"accountId":"host"}')


def test_adapter_fuzzed_requests_never_fail_nor_leak(serve: Callable[..., Send], guarded: TaskTracker) -> None:
    """Odd percent-encoded paths through the framework: only Jira's codes, and no stranger sees or changes a task."""
    for status in TaskStatus:
        submit(guarded, status)
    send = serve(guarded)
    before = rows(guarded)
    paths = fuzz_paths(seed=3, count=40, encode=True)
    for i, path in enumerate(paths):
        for method in ("GET", "POST"):
            user = (None, OTHER)[i % 2]
            code = send(method, path, auth(user))[0]
            assert code in ALLOWED - {200, 202}, (method, path, user)
    assert rows(guarded) == before
    for path in paths:
        for method in ("GET", "POST"):
            assert send(method, path, auth(OWNER))[0] in ALLOWED, (method, path)


@pytest.mark.parametrize("name, build", [("flask", flask_blueprint), ("fastapi", fastapi_router)])
def test_missing_framework_is_an_import_error_naming_the_extra(
    monkeypatch: pytest.MonkeyPatch, guarded: TaskTracker, name: str, build: Callable[..., Any]
) -> None:
    """Without the framework installed, the adapter raises ImportError saying which extra to install."""
    monkeypatch.setitem(sys.modules, name, None)  # makes "import name" fail, as if not installed
    with pytest.raises(ImportError, match=rf"pip install 'tasktally\[{name}\]'"):
        build(guarded, authenticate=bearer)


def test_importing_tasklib_web_needs_no_framework(tmp_path: Path) -> None:
    """`import tasklib.web` and the WSGI app work where neither Flask nor FastAPI can be imported."""
    code = (
        "import sys\n"
        "for name in ('flask', 'fastapi', 'starlette', 'werkzeug'): sys.modules[name] = None\n"
        "import tasklib.web\n"
        "tasklib.web.wsgi_app(tasklib.TaskTracker('tasks.db'), authenticate=tasklib.web.TRUST_ALL)\n"
        "print('ok')\n"
    )
    environ = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=environ, capture_output=True, text=True, timeout=60
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "ok\n", "")


def test_fastapi_decodes_the_path_exactly_once(guarded: TaskTracker) -> None:
    """Given the scope a real ASGI server builds, "%2531" stays the id "%31" and is not task 1."""
    # Starlette's TestClient unquotes the path a second time (starlette issue #2587),
    # so this calls the application with a scope as uvicorn builds it.
    task_id = submit(guarded)
    app = fastapi.FastAPI()
    app.include_router(fastapi_router(guarded, authenticate=bearer))

    def get(path: str, raw_path: bytes) -> int:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": path,
            "raw_path": raw_path,
            "root_path": "",
            "query_string": b"",
            "headers": [(b"host", b"h"), (b"authorization", f"Bearer {OWNER}".encode())],
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 80),
        }
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        asyncio.run(app(scope, receive, send))
        return int(sent[0]["status"])

    assert get(TASK + task_id, (TASK + "%3" + task_id).encode()) == 200
    assert get(TASK + "%3" + task_id, (TASK + "%253" + task_id).encode()) == 404
