"""Hostile callers, through every adapter: WSGI, Flask, FastAPI, the server of ``tasklib serve``, ASGI (uvicorn).

Each case runs once per adapter (one parametrized matrix); the fuzz test sends
at least 1,000 generated requests to each.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import io
import json
import random
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit
from wsgiref.validate import WSGIWarning, validator

import pytest

from tasklib import TaskStatus, TaskTracker
from tasklib.server import make_server
from tasklib.web import (
    DEFAULT_PREFIX,
    MAX_BODY,
    TRUST_ALL,
    TaskResource,
    asgi_app,
    fastapi_router,
    flask_blueprint,
    origin_of,
    wsgi_app,
)

from .helpers import (
    ADMIN,
    ALLOW_CANCEL,
    ALLOW_GET,
    BASE_URL,
    JSON,
    OTHER,
    OWNER,
    TASK,
    auth,
    bearer,
    body_checker,
    eventually,
    fuzz_paths,
    is_cancel,
    rows,
    submit,
)

#: Every code an adapter may answer: Jira's, and 413 for a body too large.
JIRA_CODES = {200, 202, 400, 401, 403, 404, 405, 413}
#: ... and 204, an OPTIONS answer.
CODES = {204} | JIRA_CODES
XSRF = ["XSRF check failed"]

Reply = tuple[int, Mapping[str, str], bytes]
Send = Callable[[str, str, Mapping[str, str], bytes], Reply]


@dataclasses.dataclass(frozen=True)
class Adapter:
    """One adapter on a tracker: how to send it a request, and the origin its requests go to."""

    name: str
    origin: str
    send: Send

    def __call__(self, method: str, path: str, headers: Mapping[str, str] | None = None, body: bytes = b"") -> Reply:
        return self.send(method, path, dict(headers or {}), body)


def wsgi_adapter(stack: contextlib.ExitStack, tracker: TaskTracker, **options: Any) -> Adapter:
    """wsgi_app called in-process under wsgiref's validator, with the environ a server builds."""
    app = validator(wsgi_app(tracker, **options))

    def send(method: str, path: str, headers: Mapping[str, str], body: bytes) -> Reply:
        target, _, query = path.split("#", 1)[0].partition("?")  # a client never sends the fragment
        env: dict[str, Any] = {
            "REQUEST_METHOD": method,
            "PATH_INFO": unquote(target, encoding="latin-1"),  # as PEP 3333 servers decode it
            "SCRIPT_NAME": "",
            "QUERY_STRING": query,
            "SERVER_NAME": "example.com",
            "SERVER_PORT": "80",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "HTTP_HOST": "example.com",
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(body),
            "wsgi.errors": io.StringIO(),
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
        }
        if body:
            env["CONTENT_LENGTH"] = str(len(body))
        for name, value in headers.items():
            key = name.upper().replace("-", "_")
            env[key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + key] = value
        answer: dict[str, Any] = {}

        def start_response(status: str, fields: list[tuple[str, str]], exc_info: Any = None) -> Any:
            answer.update(status=int(status.split()[0]), headers=dict(fields))
            return lambda data: None

        with warnings.catch_warnings():
            # The validator only warns of methods it does not know; they are part of the test.
            warnings.filterwarnings("ignore", message="Unknown REQUEST_METHOD", category=WSGIWarning)
            iterable: Any = app(env, start_response)
        try:
            data = b"".join(iterable)
        finally:
            iterable.close()
        return answer["status"], answer["headers"], data

    return Adapter("wsgi", "http://example.com", send)


def flask_adapter(stack: contextlib.ExitStack, tracker: TaskTracker, **options: Any) -> Adapter:
    flask = pytest.importorskip("flask")
    app = flask.Flask(__name__)
    app.testing = True  # an exception reaches the test instead of becoming a 500
    app.register_blueprint(flask_blueprint(tracker, **options))
    client = stack.enter_context(app.test_client())

    def send(method: str, path: str, headers: Mapping[str, str], body: bytes) -> Reply:
        response = client.open(path, method=method, headers=dict(headers), data=body)
        return response.status_code, response.headers, response.data

    return Adapter("flask", "http://localhost", send)


def fastapi_adapter(stack: contextlib.ExitStack, tracker: TaskTracker, **options: Any) -> Adapter:
    fastapi = pytest.importorskip("fastapi")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*httpx2", category=UserWarning)
        testclient = pytest.importorskip("fastapi.testclient")
    app = fastapi.FastAPI()
    app.include_router(fastapi_router(tracker, **options))
    client = stack.enter_context(testclient.TestClient(app))  # raises what the app raises: no hidden 500

    def send(method: str, path: str, headers: Mapping[str, str], body: bytes) -> Reply:
        response = client.request(method, path, headers=dict(headers), content=body)
        return response.status_code, response.headers, response.content

    return Adapter("fastapi", "http://testserver", send)


def serve_adapter(stack: contextlib.ExitStack, tracker: TaskTracker, **options: Any) -> Adapter:
    """The server of ``tasklib serve``, for real on a free port of 127.0.0.1, one connection per request."""
    server = make_server(tracker, "127.0.0.1", 0, **options)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)

    stack.callback(stop)
    port = server.server_port
    return Adapter("serve", f"http://127.0.0.1:{port}", http_send(port))


def http_send(port: int) -> Send:
    """Requests over real HTTP to 127.0.0.1:port, one connection each."""

    def send(method: str, path: str, headers: Mapping[str, str], body: bytes) -> Reply:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            connection.request(method, path, body=body or None, headers=dict(headers))
            response = connection.getresponse()
            return response.status, response.headers, response.read()
        finally:
            connection.close()

    return send


def asgi_adapter(stack: contextlib.ExitStack, tracker: TaskTracker, **options: Any) -> Adapter:
    """asgi_app served for real by uvicorn, on a free port of 127.0.0.1, in a thread of this process."""
    uvicorn = pytest.importorskip("uvicorn")
    config = uvicorn.Config(asgi_app(tracker, **options), host="127.0.0.1", port=0, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)  # no signal handlers off the main thread
    thread.start()

    def stop() -> None:
        server.should_exit = True
        thread.join(timeout=10)

    stack.callback(stop)
    eventually(lambda: server.started)
    port = server.servers[0].sockets[0].getsockname()[1]
    return Adapter("asgi", f"http://127.0.0.1:{port}", http_send(port))


ADAPTERS = {
    "wsgi": wsgi_adapter,
    "flask": flask_adapter,
    "fastapi": fastapi_adapter,
    "serve": serve_adapter,
    "asgi": asgi_adapter,
}


@pytest.fixture(params=list(ADAPTERS))
def adapt(request: pytest.FixtureRequest) -> Iterator[Callable[..., Adapter]]:
    """adapt(tracker, **options): the parametrized adapter, built around ``tracker``; closed at the end.

    Unless given, ``authenticate`` is the tests' bearer authenticator.
    """
    with contextlib.ExitStack() as stack:

        def build(tracker: TaskTracker, **options: Any) -> Adapter:
            options.setdefault("authenticate", bearer)
            return ADAPTERS[request.param](stack, tracker, **options)

        yield build


@pytest.fixture(scope="session")
def check(task_schema: dict[str, Any]) -> Callable[..., Any]:
    return body_checker(task_schema)


@pytest.fixture
def guarded(make_tracker: Callable[..., TaskTracker]) -> TaskTracker:
    """A tracker on which ADMIN administers; self URLs come from the request."""
    return make_tracker(base_url=None, is_admin=lambda user: user == ADMIN)


def header(headers: Mapping[str, str], name: str) -> str | None:
    return next((v for k, v in headers.items() if k.lower() == name.lower()), None)


def content_type(headers: Mapping[str, str]) -> str | None:
    return header(headers, "Content-Type")


# -- cross-site cancel: Jira's XSRF check ------------------------------------------------


@pytest.mark.parametrize(
    "claimed",
    [
        {"Origin": "http://evil.example"},
        {"Origin": "http://evil.example", "Referer": "{origin}/page"},
        {"Origin": "null"},
        {"Origin": "{origin}.evil.example"},
        {"Origin": "https://{host}"},  # another scheme is another origin
        {"Referer": "http://evil.example/attack.html"},
        {"Referer": "not a url"},
    ],
    ids=repr,
)
def test_a_cross_origin_cancel_is_403_and_changes_nothing(
    adapt: Callable[..., Adapter],
    guarded: TaskTracker,
    check: Callable[..., Any],
    claimed: dict[str, str],
) -> None:
    """A cancel a page of another site can send (text/plain, its Origin or Referer) is 403 XSRF; the task runs on."""
    send = adapt(guarded)
    task_id = submit(guarded, TaskStatus.RUNNING)
    before = rows(guarded)
    host = send.origin.split("://", 1)[1]
    headers = {k: v.format(origin=send.origin, host=host) for k, v in claimed.items()}
    headers.update({**auth(OWNER), "Content-Type": "text/plain"})
    status, fields, body = send("POST", TASK + task_id + "/cancel", headers, b"x=1")
    assert (status, check(status, content_type(fields), body, cancel=True)) == (403, XSRF)
    assert rows(guarded) == before


@pytest.mark.parametrize(
    "claimed",
    [
        {},  # curl, a server-side client
        {"Origin": "{origin}"},
        {"Referer": "{origin}/rest/api/3/task/1"},
        {"Origin": "https://app.example.com"},  # the host's allowed_origins
        {"Origin": "HTTPS://App.Example.com:443"},  # the same origin, spelled otherwise
        {"Origin": "http://evil.example", "X-Atlassian-Token": "no-check"},  # Jira's opt-out for non-browsers
    ],
    ids=repr,
)
def test_a_same_origin_or_allowed_cancel_is_202(
    adapt: Callable[..., Adapter],
    guarded: TaskTracker,
    check: Callable[..., Any],
    claimed: dict[str, str],
) -> None:
    """Requests with no Origin or Referer, from the request's own origin, an allowed one, or with no-check pass."""
    send = adapt(guarded, allowed_origins=["https://app.example.com"])
    task_id = submit(guarded, TaskStatus.RUNNING)
    headers = {k: v.format(origin=send.origin) for k, v in claimed.items()}
    status, fields, body = send("POST", TASK + task_id + "/cancel", {**headers, **auth(OWNER)})
    assert (status, check(status, content_type(fields), body)["status"]) == (202, "CANCEL_REQUESTED")


def test_a_get_from_another_origin_is_answered(
    adapt: Callable[..., Adapter], guarded: TaskTracker, check: Callable[..., Any]
) -> None:
    """GET changes nothing, so Origin does not matter to it (the browser keeps the answer from the page)."""
    send = adapt(guarded)
    task_id = submit(guarded)
    status, fields, body = send("GET", TASK + task_id, {"Origin": "http://evil.example", **auth(OWNER)})
    assert (status, check(status, content_type(fields), body)["id"]) == (200, task_id)


def test_the_base_urls_origin_is_allowed(
    adapt: Callable[..., Adapter], make_tracker: Callable[..., TaskTracker], check: Callable[..., Any]
) -> None:
    """Behind a proxy the browser's origin is base_url's: a cancel from there is 202, and self is base_url's."""
    tracker = make_tracker()  # base_url https://your-domain.atlassian.net/...
    send = adapt(tracker)
    task_id = submit(tracker)
    origin = "https://your-domain.atlassian.net"
    status, fields, body = send("POST", TASK + task_id + "/cancel", {"Origin": origin, **auth(OWNER)})
    assert (status, check(status, content_type(fields), body)["self"]) == (202, BASE_URL + task_id)


# -- bodies -----------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [MAX_BODY + 1, 10 * 1024 * 1024])
def test_a_body_over_64_kb_is_413_and_changes_nothing(
    adapt: Callable[..., Adapter], guarded: TaskTracker, check: Callable[..., Any], size: int
) -> None:
    """A cancel with a body over 64 KB is refused with 413 before anything changes; the next request is answered."""
    send = adapt(guarded)
    task_id = submit(guarded, TaskStatus.RUNNING)
    before = rows(guarded)
    status, fields, body = send("POST", TASK + task_id + "/cancel", auth(OWNER), b"x" * size)
    assert status == 413
    check(status, content_type(fields), body, cancel=True)
    assert rows(guarded) == before
    status, fields, body = send("POST", TASK + task_id + "/cancel", auth(OWNER), b"x" * MAX_BODY)
    assert (status, check(status, content_type(fields), body)["status"]) == (202, "CANCEL_REQUESTED")


# -- who may do what --------------------------------------------------------------------------


class Liar(int):
    """A user id that claims to equal every other."""

    def __eq__(self, other: object) -> bool:
        return True

    def __ne__(self, other: object) -> bool:
        return False

    __hash__ = int.__hash__


@pytest.mark.parametrize("verdict", ["no", 1, [False], "True"], ids=repr)
def test_only_true_from_is_admin_grants(
    adapt: Callable[..., Adapter], make_tracker: Callable[..., TaskTracker], verdict: object
) -> None:
    """is_admin returning a truthy value other than True ("no", 1...) grants nothing: 403, task unchanged."""
    tracker = make_tracker(is_admin=lambda user: verdict)
    send = adapt(tracker)
    task_id = submit(tracker, TaskStatus.RUNNING)
    before = rows(tracker)
    assert send("GET", TASK + task_id, auth(OTHER))[0] == 403
    assert send("POST", TASK + task_id + "/cancel", auth(OTHER))[0] == 403
    assert rows(tracker) == before
    with pytest.raises(Exception, match="may not"):
        tracker.get(task_id, as_user=OTHER)


def test_an_int_subclass_with_a_lying_eq_is_not_the_submitter(
    adapt: Callable[..., Adapter], guarded: TaskTracker
) -> None:
    """An authenticate that returns an int subclass equal to everything gets 403: the id is compared as a plain int."""
    send = adapt(guarded, authenticate=lambda headers: Liar(OTHER))
    task_id = submit(guarded, TaskStatus.RUNNING)
    before = rows(guarded)
    assert send("GET", TASK + task_id)[0] == 403
    assert send("POST", TASK + task_id + "/cancel")[0] == 403
    assert rows(guarded) == before
    assert send("GET", TASK + submit(guarded, user=OTHER))[0] == 200  # its real value is still a user


def test_trust_all_serves_every_caller(adapt: Callable[..., Adapter], guarded: TaskTracker) -> None:
    """authenticate=TRUST_ALL: a caller without credentials reads and cancels any task, as the host asked."""
    send = adapt(guarded, authenticate=TRUST_ALL)
    task_id = submit(guarded, TaskStatus.RUNNING, user=OTHER)
    assert send("GET", TASK + task_id)[0] == 200
    assert send("POST", TASK + task_id + "/cancel")[0] == 202


def test_self_ignores_the_host_header_given_a_base_url(
    adapt: Callable[..., Adapter], make_tracker: Callable[..., TaskTracker], check: Callable[..., Any]
) -> None:
    """With base_url, a Host of evil.example changes nothing in self (serve refuses that Host: 400)."""
    tracker = make_tracker()
    send = adapt(tracker)
    task_id = submit(tracker)
    status, fields, body = send("GET", TASK + task_id, {"Host": "evil.example", **auth(OWNER)})
    if send.name == "serve":
        assert status == 400
        check(status, content_type(fields), body)
    else:
        assert (status, check(status, content_type(fields), body)["self"]) == (200, BASE_URL + task_id)


# -- fuzzing ---------------------------------------------------------------------------------

FUZZ_METHODS = ["GET", "GET", "POST", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "get", "FOO"]
FUZZ_ORIGINS = [
    None,
    "http://evil.example",
    "null",
    "{origin}",
    "{origin}/",
    "https://app.example.com",
    "http://[::1",
    "http://h:99999",
    "javascript:alert(1)",
    "x" * 3000,
]


def fuzz_request(
    rng: random.Random, paths: list[str], origin: str
) -> tuple[str, str, dict[str, str], bytes, int | None]:
    """One generated request: method, path, headers, body, and the user it authenticates as."""
    method = rng.choice(FUZZ_METHODS)
    path = rng.choice(paths)
    if rng.random() < 0.2:
        path += rng.choice(["?x=1", "?" + "a" * 2000, "?%FF", "#frag", "/", "/cancel", "//cancel", "/%2e%2e"])
    user = rng.choice([None, OWNER, OTHER, ADMIN, -1])
    headers: dict[str, str] = {}
    if user == -1:
        headers["Authorization"] = rng.choice(["Bearer", "Bearer 9" + "9" * 30, "Basic eDp5", "Bearer 1 0", "bearer 1"])
        user = None
    elif user is not None:
        headers.update(auth(user))
    claimed = rng.choice(FUZZ_ORIGINS)
    if claimed is not None:
        headers[rng.choice(["Origin", "Referer"])] = claimed.format(origin=origin)
    if rng.random() < 0.2:
        headers["X-Atlassian-Token"] = rng.choice(["no-check", "NO-CHECK", "check", ""])
    if rng.random() < 0.2:
        headers["Content-Type"] = rng.choice(["text/plain", "application/x-www-form-urlencoded", "application/json"])
    if rng.random() < 0.1:
        headers["X-" + str(rng.randrange(10**6))] = "v" * rng.randrange(0, 4000)
    body = b""
    if rng.random() < 0.3:
        body = rng.choice(
            [b"{}", b"x" * rng.randrange(1, 5000), b"\x00\xff" * 10, b"z" * (MAX_BODY + rng.randrange(1, 9000))]
        )
    return method, path, headers, body, user


def under_task(path: str) -> bool:
    """Whether ``path`` stays under the resource's paths, also once a client resolves its dot segments."""
    bare = path.split("?", 1)[0].split("#", 1)[0]
    head = DEFAULT_PREFIX + "/task"
    return all(p == head or p.startswith(head + "/") for p in (bare, urlsplit(urljoin("http://h/", bare)).path))


def test_fuzzed_requests_get_only_jiras_codes_and_change_only_what_a_cancel_may(
    adapt: Callable[..., Adapter], guarded: TaskTracker, check: Callable[..., Any]
) -> None:
    """1,200 generated requests per adapter: only Jira's codes, no traceback or path, and only allowed cancels."""
    send = adapt(guarded, allowed_origins=["https://app.example.com"])
    owned = {submit(guarded, status) for status in TaskStatus}
    others = {submit(guarded, status, user=OTHER) for status in TaskStatus}
    paths = fuzz_paths(seed=10, count=150, encode=True)
    paths += [TASK + i for i in sorted(owned | others)] * 20
    paths += [TASK + i + "/cancel" for i in sorted(owned | others)] * 20
    owner = {**dict.fromkeys(owned, OWNER), **dict.fromkeys(others, OTHER)}
    before = {row[0]: row for row in rows(guarded)}
    rng = random.Random(20261201)
    cancelled: set[str] = set()
    seen: set[int] = set()
    for _ in range(1200):
        method, path, headers, body, user = fuzz_request(rng, paths, send.origin)
        status, fields, data = send(method, path, headers, body)
        request = (method, path[:120], {k: v[:80] for k, v in headers.items()}, len(body))
        value: Any = None
        assert status in CODES, request
        assert b"Traceback" not in data and b'File "' not in data and b".py" not in data, request
        if not under_task(path) and content_type(fields) != JSON:
            # A path cut short before the adapter's paths, or that the client's dot segments
            # take out of them (".../task/../"): the host's framework answers.
            assert send.name in ("flask", "fastapi") and status in (404, 405), request
        elif method == "OPTIONS" and status == 204:
            assert (header(fields, "Allow") in (ALLOW_GET, ALLOW_CANCEL), data) == (True, b""), request
        elif "%2f" in path.lower() or (send.name == "fastapi" and "%25" in path):
            # Servers differ on whether an encoded slash separates segments, hence on which body
            # applies; Starlette's test client decodes a path twice (starlette issue #2587).
            value = json.loads(data) if method != "HEAD" else None
        elif method != "HEAD":
            bare = path.split("?", 1)[0].split("#", 1)[0]
            value = check(status, content_type(fields), data, cancel=is_cancel(bare) and method == "POST")
        seen.add(status)
        if status == 202:
            # Only the submitter or an administrator, from no browser or an allowed origin, cancels.
            assert method == "POST" and len(body) <= MAX_BODY, request
            assert user is not None and user in (ADMIN, owner[value["id"]]), request
            claimed = headers.get("Origin", headers.get("Referer"))
            assert (
                claimed is None
                or headers.get("X-Atlassian-Token", "").lower() == "no-check"
                or (claimed.rstrip("/") in (send.origin, "https://app.example.com"))
            ), request
            cancelled.add(value["id"])
        if status == 200:
            assert user is not None, request
            if value is not None:  # a HEAD's answer has no content to name the task
                assert user in (ADMIN, owner[value["id"]]), request
    assert {200, 202, 400, 401, 403, 404, 405, 413} - seen <= {400}, seen  # the generator reached every answer
    for row in rows(guarded):
        if str(row[0]) not in cancelled:
            assert row == before[row[0]]
        else:
            assert row[1] in ("CANCELLED", "CANCEL_REQUESTED")


# -- the core, without an adapter ----------------------------------------------------------------


@pytest.mark.parametrize(
    "headers, body_size, code",
    [
        ({"Content-Length": "abc"}, None, 400),
        ({"Content-Length": "-1"}, None, 400),
        ({"Content-Length": "1e3"}, None, 400),
        ({"Content-Length": "١٠"}, None, 400),
        ({"Content-Length": str(MAX_BODY + 1)}, None, 413),
        ({"content-length": "9" * 40}, None, 413),
        ({}, MAX_BODY + 1, 413),
        ({"Content-Length": "abc"}, 10, 202),  # what the adapter read is what counts
        ({"Content-Length": str(MAX_BODY)}, None, 202),
        ({"Content-Length": ""}, None, 202),  # PEP 3333: empty is no body (Django's runserver sends it)
        ({"Content-Length": " 12 "}, None, 202),
    ],
    ids=repr,
)
def test_the_resource_judges_the_body_before_anything_else(
    guarded: TaskTracker, check: Callable[..., Any], headers: dict[str, str], body_size: int | None, code: int
) -> None:
    """A malformed Content-Length is 400 and a body over MAX_BODY 413, with the cancel's array body; nothing changes."""
    resource = TaskResource(guarded, authenticate=bearer)
    task_id = submit(guarded, TaskStatus.RUNNING)
    before = rows(guarded)
    fields = {name.lower(): value for name, value in {**headers, **auth(OWNER)}.items()}  # as adapters give them
    response = resource.handle("POST", TASK + task_id + "/cancel", fields, body_size=body_size)
    assert response.status == code
    check(code, content_type(dict(response.headers)), response.body, cancel=True)
    if code != 202:
        assert rows(guarded) == before


@pytest.mark.parametrize(
    "url, origin",
    [
        ("https://Example.COM", "https://example.com"),
        ("https://example.com:443/path?q", "https://example.com"),
        ("http://example.com:8080", "http://example.com:8080"),
        ("http://[::1]:8080", "http://[::1]:8080"),
        ("  http://example.com  ", "http://example.com"),
        ("null", None),
        ("", None),
        ("file:///etc/passwd", None),
        ("javascript:alert(1)", None),
        ("//example.com", None),
        ("http://", None),
        ("http://example.com:99999", None),
        ("http://user:pw@example.com", None),
        ("http://[::1", None),
    ],
)
def test_origin_of(url: str, origin: str | None) -> None:
    assert origin_of(url) == origin


def test_refusal_gives_the_body_jira_gives_at_the_path(guarded: TaskTracker) -> None:
    """refusal(): a JSON array of one string for a cancel, an ErrorCollection elsewhere."""
    resource = TaskResource(guarded, authenticate=TRUST_ALL)
    assert json.loads(resource.refusal("POST", TASK + "1/cancel", 401, "no").body) == ["no"]
    assert json.loads(resource.refusal("GET", TASK + "1", 401, "no").body) == {"errorMessages": ["no"], "errors": {}}
    assert json.loads(resource.refusal("GET", TASK + "1/cancel", 400, "no").body)["errorMessages"] == ["no"]
