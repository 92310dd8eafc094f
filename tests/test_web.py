"""tasklib.web: Jira's task resource over HTTP, its WSGI adapter, and a real server end to end."""

from __future__ import annotations

import contextlib
import datetime
import http.client
import json
import socket
import threading
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from urllib.parse import quote, unquote
from wsgiref.simple_server import WSGIRequestHandler, make_server
from wsgiref.util import setup_testing_defaults
from wsgiref.validate import validator

import pytest
from freezegun import freeze_time

from tasklib import TaskStatus, TaskTracker
from tasklib.web import TRUST_ALL, Response, TaskResource, wsgi_app

from .helpers import (
    ADMIN,
    ALLOW_CANCEL,
    ALLOW_GET,
    ALLOWED,
    BASE_URL,
    NASTY_IDS,
    OTHER,
    OWNER,
    TASK,
    TERMINAL,
    auth,
    bearer,
    body_checker,
    fuzz_paths,
    is_cancel,
    rows,
    submit,
)

OTHER_PATHS = [
    "",
    "/",
    "/rest/api/3",
    "/rest/api/3/task",
    "/rest/api/3/task/1/",
    "/rest/api/3/task/1/cancel/",
    "/rest/api/3/task/1/cancel/x",
    "/rest/api/3/task/1/CANCEL",
    "/rest/api/3/task/1/abort",
    "/rest/api/3/tasks/1",
    "/rest/api/2/task/1",
    "/REST/api/3/task/1",
    "/rest/api/3/task/1/../2",
]


def header(response: Response, name: str) -> str | None:
    return next((v for k, v in response.headers if k.lower() == name.lower()), None)


@pytest.fixture(scope="session")
def check(task_schema: dict[str, Any]) -> Callable[..., Any]:
    """check(status, content_type, body, *, cancel=False): the body checked against Jira's schemas."""
    return body_checker(task_schema)


@pytest.fixture
def guarded(make_tracker: Callable[..., TaskTracker]) -> TaskTracker:
    """A tracker on which user ADMIN is an administrator."""
    return make_tracker(is_admin=lambda user: user == ADMIN)


@pytest.fixture
def resource(guarded: TaskTracker) -> TaskResource:
    return TaskResource(guarded, authenticate=bearer)


def fields(headers: Mapping[str, str]) -> dict[str, str]:
    """Header fields keyed by lower-case name: case-insensitive for ``bearer``, as adapters give them."""
    return {name.lower(): value for name, value in headers.items()}


def call(
    resource: TaskResource, check: Callable[..., Any], method: str, path: str, user: int | None
) -> tuple[int, Any]:
    """One request through the core; checks the body and returns status and decoded body."""
    response = resource.handle(method, path, fields(auth(user)))
    body = check(response.status, header(response, "Content-Type"), response.body, cancel=is_cancel(path))
    return response.status, body


# -- the core: GET --------------------------------------------------------------


def test_get_gives_the_task_to_its_submitter_and_an_admin(
    resource: TaskResource, guarded: TaskTracker, check: Callable[..., Any]
) -> None:
    """GET answers 200 with exactly the task's JSON to its submitter and to an administrator."""
    with freeze_time("2026-05-01 12:00:00") as clock:
        task_id = submit(guarded, TaskStatus.RUNNING)
        clock.tick(2.5)
        for user in (OWNER, ADMIN):
            status, body = call(resource, check, "GET", TASK + task_id, user)
            assert status == 200
            assert body == guarded.get(task_id).to_dict()
            assert (body["self"], body["elapsedRuntime"]) == (BASE_URL + task_id, 2500)


def test_get_by_another_user_is_403(resource: TaskResource, guarded: TaskTracker, check: Callable[..., Any]) -> None:
    """A user who neither submitted the task nor administers gets 403 and no task data."""
    task_id = submit(guarded)
    status, body = call(resource, check, "GET", TASK + task_id, OTHER)
    assert status == 403
    assert "submittedBy" not in json.dumps(body)


def test_anonymous_caller_is_401_and_changes_nothing(
    resource: TaskResource, guarded: TaskTracker, check: Callable[..., Any]
) -> None:
    """Without a user, GET is 401 (ErrorCollection) and cancel is 401 (array); the task is untouched."""
    task_id = submit(guarded, TaskStatus.RUNNING)
    before = rows(guarded)
    assert call(resource, check, "GET", TASK + task_id, None)[0] == 401
    assert call(resource, check, "POST", TASK + task_id + "/cancel", None)[0] == 401
    assert call(resource, check, "GET", TASK + "42", None)[0] == 401  # existence is not revealed
    assert rows(guarded) == before


@pytest.mark.parametrize("bad", [*NASTY_IDS, "7" * 1000000], ids=lambda s: repr(s[:24]))
def test_malformed_ids_are_404(
    resource: TaskResource, guarded: TaskTracker, check: Callable[..., Any], bad: str
) -> None:
    """Any id that is not a task's, sent percent-encoded, is 404 for GET and for cancel."""
    submit(guarded)
    before = rows(guarded)
    encoded = quote(bad, safe="", errors="surrogatepass")
    assert call(resource, check, "GET", TASK + encoded, OWNER)[0] == 404
    assert call(resource, check, "POST", TASK + encoded + "/cancel", OWNER)[0] == 404
    assert rows(guarded) == before


def test_unknown_and_purged_ids_are_404(
    resource: TaskResource, guarded: TaskTracker, check: Callable[..., Any]
) -> None:
    """An id never given out, and the id of a purged task, are 404 even to an administrator."""
    task_id = submit(guarded, TaskStatus.COMPLETE)
    assert guarded.purge(now=datetime.datetime(2100, 1, 1)) == 1
    for task in ("42", task_id):
        for user in (OWNER, ADMIN):
            assert call(resource, check, "GET", TASK + task, user)[0] == 404
            assert call(resource, check, "POST", TASK + task + "/cancel", user)[0] == 404


# -- the core: cancel -----------------------------------------------------------


def test_cancel_of_an_enqueued_task_is_202_cancelled(
    resource: TaskResource, guarded: TaskTracker, check: Callable[..., Any]
) -> None:
    """POST cancel on an ENQUEUED task answers 202 with the task, now CANCELLED."""
    task_id = submit(guarded)
    status, body = call(resource, check, "POST", TASK + task_id + "/cancel", OWNER)
    assert (status, body["status"]) == (202, "CANCELLED")
    assert guarded.get(task_id).status is TaskStatus.CANCELLED


def test_cancel_of_a_running_task_is_202_cancel_requested_and_repeatable(
    resource: TaskResource, guarded: TaskTracker, check: Callable[..., Any]
) -> None:
    """A RUNNING task becomes CANCEL_REQUESTED (202); asking again is 202 and changes nothing."""
    task_id = submit(guarded, TaskStatus.RUNNING)
    status, body = call(resource, check, "POST", TASK + task_id + "/cancel", ADMIN)
    assert (status, body["status"]) == (202, "CANCEL_REQUESTED")
    before = rows(guarded)
    status, body = call(resource, check, "POST", TASK + task_id + "/cancel", OWNER)
    assert (status, body["status"]) == (202, "CANCEL_REQUESTED")
    assert rows(guarded) == before


@pytest.mark.parametrize("status", TERMINAL, ids=str)
def test_cancel_of_a_finished_task_is_400(
    resource: TaskResource, guarded: TaskTracker, check: Callable[..., Any], status: TaskStatus
) -> None:
    """A finished task cannot be cancelled: 400 with Jira's message as a JSON array, task unchanged."""
    task_id = submit(guarded, status)
    before = rows(guarded)
    code, body = call(resource, check, "POST", TASK + task_id + "/cancel", OWNER)
    assert (code, body) == (400, ["Cancellation of the task is not possible."])
    assert rows(guarded) == before


def test_cancel_by_another_user_is_403_even_when_finished(
    resource: TaskResource, guarded: TaskTracker, check: Callable[..., Any]
) -> None:
    """Another user's cancel is 403 (not 400, which would tell the task's state) and changes nothing."""
    running, done = submit(guarded, TaskStatus.RUNNING), submit(guarded, TaskStatus.COMPLETE)
    before = rows(guarded)
    for task_id in (running, done):
        assert call(resource, check, "POST", TASK + task_id + "/cancel", OTHER)[0] == 403
    assert rows(guarded) == before


# -- the core: routing ------------------------------------------------------------


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE", "TRACE", "get", "head", "", "FOO BAR"])
def test_other_methods_on_the_task_are_405(
    resource: TaskResource, guarded: TaskTracker, check: Callable[..., Any], method: str
) -> None:
    """Any method but GET, HEAD and OPTIONS on the task is 405 with Allow, and does nothing."""
    task_id = submit(guarded, TaskStatus.RUNNING)
    before = rows(guarded)
    response = resource.handle(method, TASK + task_id, fields(auth(OWNER)))
    assert (response.status, header(response, "Allow")) == (405, ALLOW_GET)
    check(405, header(response, "Content-Type"), response.body)
    assert rows(guarded) == before


@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "DELETE", "HEAD", "post"])
def test_other_methods_on_cancel_are_405(
    resource: TaskResource, guarded: TaskTracker, check: Callable[..., Any], method: str
) -> None:
    """Any method but POST and OPTIONS on the cancel path is 405 with Allow; the task is not cancelled."""
    task_id = submit(guarded, TaskStatus.RUNNING)
    before = rows(guarded)
    response = resource.handle(method, TASK + task_id + "/cancel", {})
    assert (response.status, header(response, "Allow")) == (405, ALLOW_CANCEL)
    check(405, header(response, "Content-Type"), response.body)
    assert rows(guarded) == before


@pytest.mark.parametrize("path", OTHER_PATHS)
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_other_paths_are_404(
    resource: TaskResource, guarded: TaskTracker, check: Callable[..., Any], path: str, method: str
) -> None:
    """A path that is not the task or its cancel is 404 with an ErrorCollection, whoever asks."""
    submit(guarded)
    before = rows(guarded)
    for user in (None, OWNER):
        response = resource.handle(method, path, fields(auth(user)))
        assert response.status == 404
        check(404, header(response, "Content-Type"), response.body)
    assert rows(guarded) == before


def test_the_id_is_percent_decoded_exactly_once(
    resource: TaskResource, guarded: TaskTracker, check: Callable[..., Any]
) -> None:
    """ "%31" is task 1 and "%63ancel" is cancel, but "%2531" is the id "%31": not found."""
    task_id = submit(guarded)
    assert task_id == "1"
    assert call(resource, check, "GET", TASK + "%31", OWNER)[1]["id"] == "1"
    assert call(resource, check, "GET", TASK + "%2531", OWNER)[0] == 404
    assert call(resource, check, "POST", TASK + "%31/%63ancel", OWNER)[0] == 202


def test_custom_prefix(guarded: TaskTracker, check: Callable[..., Any]) -> None:
    """With prefix="/api", the resource serves /api/task/... and nothing under Jira's prefix."""
    resource = TaskResource(guarded, authenticate=bearer, prefix="/api")
    task_id = submit(guarded)
    assert call(resource, check, "GET", "/api/task/" + task_id, OWNER)[0] == 200
    assert call(resource, check, "GET", TASK + task_id, OWNER)[0] == 404
    assert TaskResource(guarded, authenticate=TRUST_ALL, prefix="").handle("GET", "/task/" + task_id, {}).status == 200


# -- the core: self, authentication, construction --------------------------------


def test_self_is_built_from_the_request_when_the_tracker_has_no_base_url(
    make_tracker: Callable[..., TaskTracker], check: Callable[..., Any]
) -> None:
    """Without base_url, self is scheme://host + root + prefix + /task/id, for GET and cancel."""
    tracker = make_tracker(base_url=None)
    task_id = tracker.submit().id
    resource = TaskResource(tracker, authenticate=TRUST_ALL, prefix="/api")
    where = {"scheme": "https", "host": "example.com:8443", "root": "/app"}
    get = resource.handle("GET", "/api/task/" + task_id, {}, **where)
    expected = f"https://example.com:8443/app/api/task/{task_id}"
    assert check(get.status, header(get, "Content-Type"), get.body)["self"] == expected
    cancel = resource.handle("POST", f"/api/task/{task_id}/cancel", {}, **where)
    assert check(cancel.status, header(cancel, "Content-Type"), cancel.body)["self"] == expected
    assert tracker.get(task_id).url == "/rest/api/3/task/" + task_id  # the tracker itself is unchanged


def test_a_host_that_cannot_be_encoded_does_not_break_the_answer(
    make_tracker: Callable[..., TaskTracker], check: Callable[..., Any]
) -> None:
    """A lone surrogate in the host an adapter passes becomes "?" in self, not an exception."""
    tracker = make_tracker(base_url=None)
    task_id = tracker.submit().id
    response = TaskResource(tracker, authenticate=TRUST_ALL).handle("GET", TASK + task_id, {}, host="h\ud800st")
    body = check(response.status, header(response, "Content-Type"), response.body)
    assert body["self"] == f"http://h?st{TASK}{task_id}"


def test_self_is_the_trackers_url_when_it_has_a_base_url(
    resource: TaskResource, guarded: TaskTracker, check: Callable[..., Any]
) -> None:
    """With base_url, self is base_url + id whatever host the request names."""
    task_id = submit(guarded)
    response = resource.handle("GET", TASK + task_id, fields(auth(OWNER)), scheme="https", host="evil.example")
    assert response.status == 200
    assert check(200, header(response, "Content-Type"), response.body)["self"] == BASE_URL + task_id


def test_trust_all_trusts_every_caller(guarded: TaskTracker, check: Callable[..., Any]) -> None:
    """With authenticate=TRUST_ALL the caller is the host's own code: no 401, no 403."""
    resource = TaskResource(guarded, authenticate=TRUST_ALL)
    task_id = submit(guarded, user=OTHER)
    assert call(resource, check, "GET", TASK + task_id, None)[0] == 200
    assert call(resource, check, "POST", TASK + task_id + "/cancel", None)[0] == 202


def test_authenticate_sees_only_resource_requests_and_its_errors_propagate(guarded: TaskTracker) -> None:
    """authenticate is called only for a routed path and method; an error it raises reaches the host."""
    seen: list[Mapping[str, str]] = []

    def broken(headers: Mapping[str, str]) -> int | None:
        seen.append(headers)
        raise RuntimeError("the host's session store is down")

    resource = TaskResource(guarded, authenticate=broken)
    assert resource.handle("GET", "/elsewhere", {"X": "1"}).status == 404
    assert resource.handle("DELETE", TASK + "1", {"X": "1"}).status == 405
    assert seen == []
    with pytest.raises(RuntimeError, match="session store"):
        resource.handle("GET", TASK + "1", {"X": "1"})
    assert seen == [{"X": "1"}]


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"prefix": "rest/api/3"}, ValueError),
        ({"prefix": "/rest/api/3/"}, ValueError),
        ({"prefix": "/"}, ValueError),
        ({"prefix": None}, TypeError),
        ({"authenticate": "bearer"}, TypeError),
        ({"authenticate": None}, TypeError),
        ({"allowed_origins": "https://example.com"}, TypeError),
        ({"allowed_origins": [1]}, TypeError),
        ({"allowed_origins": ["example.com"]}, ValueError),
        ({"allowed_origins": ["https://example.com/app"]}, ValueError),
        ({"allowed_origins": ["ftp://example.com"]}, ValueError),
        ({"allowed_origins": ["null"]}, ValueError),
    ],
    ids=repr,
)
def test_bad_constructor_arguments(guarded: TaskTracker, kwargs: dict[str, Any], error: type[Exception]) -> None:
    """TaskResource refuses a malformed prefix or origin, and an authenticate that is neither callable nor TRUST_ALL."""
    with pytest.raises(error):
        TaskResource(guarded, **{"authenticate": bearer, **kwargs})


@pytest.mark.parametrize("build", [TaskResource, wsgi_app])
def test_authenticate_is_required(guarded: TaskTracker, build: Callable[..., Any]) -> None:
    """Leaving authenticate out is a TypeError: trusting every caller must be said with TRUST_ALL."""
    with pytest.raises(TypeError, match="authenticate"):
        build(guarded)
    with pytest.raises(TypeError, match="TRUST_ALL"):
        build(guarded, authenticate=None)
    assert repr(TRUST_ALL) == "tasklib.web.TRUST_ALL"


@pytest.mark.parametrize("base_url", [BASE_URL, None])
def test_see_other_points_at_the_task(
    make_tracker: Callable[..., TaskTracker], check: Callable[..., Any], base_url: str | None
) -> None:
    """see_other answers 303 with Location the task's absolute URL and the task as body."""
    tracker = make_tracker(base_url=base_url)
    task = tracker.submit(submitted_by=OWNER)
    response = TaskResource(tracker, authenticate=TRUST_ALL).see_other(task, scheme="https", host="example.com")
    body = check(response.status, header(response, "Content-Type"), response.body)
    expected = BASE_URL + task.id if base_url else f"https://example.com/rest/api/3/task/{task.id}"
    assert (response.status, header(response, "Location"), body["self"]) == (303, expected, expected)


# -- fuzzing the core -------------------------------------------------------------


FUZZ_HEADERS: list[dict[str, str]] = [
    {},
    {"Authorization": ""},
    {"Authorization": "Bearer"},
    {"Authorization": "Bearer -1"},
    {"Authorization": "Bearer ١٠٠٠٠"},
    {"Authorization": "Bearer " + "9" * 5000},
    {"Authorization": "Bearer 10000\x00"},
    {"Authorization": "Basic MTAwMDA6"},
    {"authorization": f"Bearer {OTHER}"},
    {"AUTHORIZATION": f"bearer {OWNER}"},
    {"Authorization": "\ud800" * 3, "X-\x00": "\xff" * 1000},
]


def test_fuzzed_requests_never_fail_nor_leak(guarded: TaskTracker, check: Callable[..., Any]) -> None:
    """Thousands of odd paths, methods and headers from strangers: only Jira's status codes, nothing seen or changed."""
    resource = TaskResource(guarded, authenticate=bearer)
    for status in TaskStatus:
        submit(guarded, status)
    before = rows(guarded)
    methods = ["GET", "POST", "PUT", "DELETE", "HEAD", "get", "", "G\x00T"]
    seen: set[int] = set()
    for i, path in enumerate(fuzz_paths(seed=20260501, count=1000)):
        for j in range(3):
            method = methods[(i + j) % len(methods)]
            headers = fields(FUZZ_HEADERS[(3 * i + j) % len(FUZZ_HEADERS)])
            response = resource.handle(method, path, headers)
            assert response.status in ALLOWED - {200, 202}, (method, path, headers)
            check(response.status, header(response, "Content-Type"), response.body, cancel=is_cancel(path))
            seen.add(response.status)
    assert seen == {401, 403, 404, 405}  # the fuzzing reached every refusal
    assert rows(guarded) == before


def test_fuzzed_requests_by_a_submitter_only_ever_answer_with_the_named_task(
    guarded: TaskTracker, check: Callable[..., Any]
) -> None:
    """For a submitter, fuzzed paths get Jira's codes, and 200/202 only with that user's task the path names."""
    resource = TaskResource(guarded, authenticate=bearer)
    ids = {submit(guarded, status) for status in TaskStatus}
    others = {submit(guarded, status, user=OTHER) for status in TaskStatus}
    before = {i: (t.status, t.last_update) for i in others for t in [guarded.get(i)]}
    seen: set[int] = set()
    paths = fuzz_paths(seed=7, count=1000) + [TASK + i for i in sorted(ids | others)]
    for path in paths + [path + "/cancel" for path in paths[-len(ids | others) :]]:
        for method in ("GET", "POST"):
            response = resource.handle(method, path, fields(auth(OWNER)))
            assert response.status in ALLOWED, (method, path)
            body = check(response.status, header(response, "Content-Type"), response.body, cancel=is_cancel(path))
            seen.add(response.status)
            if response.status in (200, 202):
                assert body["id"] in ids and body["submittedBy"] == OWNER
                assert unquote(path.split("/")[5]) == body["id"]
    assert seen == ALLOWED - {401}  # the fuzzing reached every answer a signed-in user can get
    assert {i: (t.status, t.last_update) for i in others for t in [guarded.get(i)]} == before


# -- WSGI -----------------------------------------------------------------------------


def wsgi_call(
    app: Any, path_info: str, method: str = "GET", **environ: str | None
) -> tuple[str, dict[str, str], bytes]:
    """Run ``app`` under wsgiref's validator on one request; returns status line, headers and body.

    ``environ`` adds to wsgiref's testing defaults; a value of None removes that key.
    """
    env: dict[str, Any] = {"REQUEST_METHOD": method, "PATH_INFO": path_info, "SCRIPT_NAME": "", "QUERY_STRING": ""}
    setup_testing_defaults(env)
    for key, value in environ.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    answer: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
        answer.update(status=status, headers=dict(headers))
        return lambda data: None

    iterable: Any = validator(app)(env, start_response)  # wsgiref's wrapper, which has close()
    try:
        body = b"".join(iterable)
    finally:
        iterable.close()
    return answer["status"], answer["headers"], body


def test_wsgi_app_serves_the_resource_and_reads_headers_case_insensitively(
    make_tracker: Callable[..., TaskTracker], check: Callable[..., Any]
) -> None:
    """The WSGI app answers as the core does, and authenticate finds HTTP_AUTHORIZATION under any case."""
    tracker = make_tracker(base_url=None)
    task_id = tracker.submit(submitted_by=OWNER).id
    seen: list[tuple[str | None, ...]] = []

    def authenticate(headers: Mapping[str, str]) -> int | None:
        seen.append((headers.get("AUTHORIZATION"), headers.get("x-request-id"), headers.get("Content-Type")))
        return bearer(headers)

    app = wsgi_app(tracker, authenticate=authenticate)
    status, headers, body = wsgi_call(
        app,
        TASK + task_id,
        HTTP_AUTHORIZATION=f"Bearer {OWNER}",
        HTTP_X_REQUEST_ID="abc",
        CONTENT_TYPE="text/plain",
        HTTP_HOST="example.com:8080",
    )
    assert status == "200 OK"
    assert headers["Content-Length"] == str(len(body))
    assert check(200, headers["Content-Type"], body)["self"] == f"http://example.com:8080{TASK}{task_id}"
    assert seen == [(f"Bearer {OWNER}", "abc", "text/plain")]
    status, headers, body = wsgi_call(app, TASK + task_id + "/cancel", "POST")
    assert status == "401 Unauthorized" and check(401, headers["Content-Type"], body, cancel=True)
    status, headers, _ = wsgi_call(app, TASK + task_id, "DELETE")
    assert (status, headers["Allow"]) == ("405 Method Not Allowed", ALLOW_GET)


def test_wsgi_app_under_a_script_name(make_tracker: Callable[..., TaskTracker], check: Callable[..., Any]) -> None:
    """Mounted at SCRIPT_NAME /app, the app matches PATH_INFO and puts /app in self."""
    tracker = make_tracker(base_url=None)
    task_id = tracker.submit().id
    app = wsgi_app(tracker, authenticate=TRUST_ALL)
    status, headers, body = wsgi_call(app, TASK + task_id, SCRIPT_NAME="/app", HTTP_HOST="h")
    assert status == "200 OK"
    assert check(200, headers["Content-Type"], body)["self"] == f"http://h/app{TASK}{task_id}"
    assert wsgi_call(app, "/app" + TASK + task_id, SCRIPT_NAME="/app")[0] == "404 Not Found"


def test_wsgi_host_falls_back_to_server_name_and_port(
    make_tracker: Callable[..., TaskTracker], check: Callable[..., Any]
) -> None:
    """Without a Host header, self uses SERVER_NAME and a non-default SERVER_PORT (PEP 3333)."""
    tracker = make_tracker(base_url=None)
    task_id = tracker.submit().id
    app = wsgi_app(tracker, authenticate=TRUST_ALL)
    for scheme, port, host in [("http", "80", "srv"), ("http", "8080", "srv:8080"), ("https", "443", "srv")]:
        env: dict[str, Any] = {"SERVER_NAME": "srv", "SERVER_PORT": port, "wsgi.url_scheme": scheme, "HTTP_HOST": None}
        _status, headers, body = wsgi_call(app, TASK + task_id, **env)
        assert check(200, headers["Content-Type"], body)["self"] == f"{scheme}://{host}{TASK}{task_id}"


@pytest.mark.parametrize(
    "path_info, found",
    [
        ("/rest/api/3/task/1", True),  # the client sent /1 or /%31
        ("/rest/api/3/task/%31", False),  # the client sent /%2531
        ("/rest/api/3/task/\xc3\xa9", False),  # the client sent /%C3%A9: é as Latin-1 bytes
        ("/rest/api/3/task/\xff", False),  # not UTF-8
        ("/rest/api/3/task/\u0663", False),  # a server breaking PEP 3333's Latin-1 rule
    ],
)
def test_wsgi_path_info_is_not_decoded_twice(
    make_tracker: Callable[..., TaskTracker], path_info: str, found: bool
) -> None:
    """PATH_INFO arrives decoded once; the app must not decode it again."""
    tracker = make_tracker()
    tracker.submit()
    assert wsgi_call(wsgi_app(tracker, authenticate=TRUST_ALL), path_info)[0] == (
        "200 OK" if found else "404 Not Found"
    )


# -- end to end over real HTTP ---------------------------------------------------------


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def serve(app: Any) -> Iterator[int]:
    """Serve ``app`` with wsgiref on 127.0.0.1 in a thread; yields the port, then shuts down."""
    server = make_server("127.0.0.1", 0, app, handler_class=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server.server_port
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
        assert not thread.is_alive()


def fetch(port: int, method: str, path: str, user: int | None = None) -> tuple[int, http.client.HTTPMessage, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, path, headers=auth(user))
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()


def test_end_to_end_over_http(make_tracker: Callable[..., TaskTracker], check: Callable[..., Any]) -> None:
    """A real server and client: 303 to start work, then 200, 202, 400, 401, 403, 404 and 405."""
    tracker = make_tracker(base_url=None, is_admin=lambda user: user == ADMIN)
    resource = TaskResource(tracker, authenticate=bearer)
    tasks = wsgi_app(tracker, authenticate=bearer)

    def host_app(environ: dict[str, Any], start_response: Any) -> Any:
        # The host's own endpoint that starts work answers 303 to the task, as Jira does.
        if environ["PATH_INFO"] == "/start" and environ["REQUEST_METHOD"] == "POST":
            user = bearer({"authorization": environ.get("HTTP_AUTHORIZATION", "")})
            task = tracker.submit(description="export", submitted_by=user or 0)
            answer = resource.see_other(task, host=environ["HTTP_HOST"])
            start_response("303 See Other", answer.headers)
            return [answer.body]
        return tasks(environ, start_response)

    with serve(validator(host_app)) as port:
        origin = f"http://127.0.0.1:{port}"
        status, headers, body = fetch(port, "POST", "/start", OWNER)
        task = check(status, headers["Content-Type"], body)
        assert status == 303 and headers["Location"] == task["self"] == f"{origin}{TASK}{task['id']}"

        # urllib follows the 303 with a GET, as a browser or Jira client would.
        request = urllib.request.Request(origin + "/start", method="POST", headers=auth(OWNER))
        with urllib.request.urlopen(request, timeout=10) as followed:
            assert followed.status == 200
            assert followed.url == json.loads(followed.read())["self"]

        path = TASK + task["id"]
        expected: list[tuple[str, str, int | None, int]] = [
            ("GET", path, OWNER, 200),
            ("GET", path, ADMIN, 200),
            ("GET", path, None, 401),
            ("GET", path, OTHER, 403),
            ("GET", TASK + "4242", OWNER, 404),
            ("GET", TASK + "%2531", OWNER, 404),
            ("GET", "/rest/api/3/issue/1", OWNER, 404),
            ("DELETE", path, OWNER, 405),
            ("GET", path + "/cancel", OWNER, 405),
            ("POST", path + "/cancel", None, 401),
            ("POST", path + "/cancel", OTHER, 403),
            ("POST", TASK + "4242/cancel", OWNER, 404),
            ("POST", path + "/cancel", OWNER, 202),
            ("POST", path + "/cancel", OWNER, 400),  # it was ENQUEUED, so it is CANCELLED now
        ]
        for method, target, user, code in expected:
            status, headers, body = fetch(port, method, target, user)
            assert status == code, (method, target, user)
            assert headers["Content-Length"] == str(len(body))
            value = check(status, headers["Content-Type"], body, cancel=is_cancel(target))
            if status == 405:
                assert headers["Allow"] == (ALLOW_CANCEL if is_cancel(target) else ALLOW_GET)
            if status in (200, 202):
                assert value["self"] == origin + path
    assert tracker.get(task["id"]).status is TaskStatus.CANCELLED


OWNER_AUTH = b"\r\nAuthorization: Bearer 10000"
RAW_REQUESTS: list[tuple[bytes, int]] = [
    (b"GET /rest/api/3/task/%31 HTTP/1.0" + OWNER_AUTH, 200),
    (b"GET /rest/api/3/task/1?x=%FF&y HTTP/1.0" + OWNER_AUTH, 200),
    (b"GET /rest/api/3/task/1 HTTP/1.0" + OWNER_AUTH + b"\r\nHost: \xff\xfe\x01", 200),
    (b"GET /rest/api/3/task/1 HTTP/1.0" + OWNER_AUTH + b"\r\nHost: " + b"h" * 5000, 200),
    (b"GET /rest/api/3/task/%2531 HTTP/1.0" + OWNER_AUTH, 404),
    (b"GET /rest/api/3/task/%FF%FE HTTP/1.0" + OWNER_AUTH, 404),
    (b"GET /rest/api/3/task/\xc3\xa9 HTTP/1.0" + OWNER_AUTH, 404),
    (b"GET /rest/api/3/task/\xff HTTP/1.0" + OWNER_AUTH, 404),
    (b"GET /rest/api/3/task/1%00 HTTP/1.0" + OWNER_AUTH, 404),
    (b"GET /rest/api/3/task/-1 HTTP/1.0" + OWNER_AUTH, 404),
    (b"GET /rest/api/3/task/1%20OR%201=1 HTTP/1.0" + OWNER_AUTH, 404),
    (b"GET /rest/api/3/task/" + b"9" * 60000 + b" HTTP/1.0" + OWNER_AUTH, 404),
    (b"GET rest/api/3/task/1 HTTP/1.0" + OWNER_AUTH, 404),
    (b"GET /rest/api/3/task/1%2Fcancel HTTP/1.0" + OWNER_AUTH, 405),  # the server decodes %2F
    (b"PROPFIND /rest/api/3/task/1 HTTP/1.0" + OWNER_AUTH, 405),
    (b"get /rest/api/3/task/1 HTTP/1.0" + OWNER_AUTH, 405),
    (b"GET /rest/api/3/task/1 HTTP/1.0", 401),
    (b"GET /rest/api/3/task/1 HTTP/1.0\r\nAuthorization: Bearer \xd9\xa1", 401),
    (b"GET /rest/api/3/task/1 HTTP/1.0\r\nAuthorization: Bearer 20000", 403),
    (b"POST /rest/api/3/task/1%2Fcancel HTTP/1.0\r\nAuthorization: Bearer 20000", 403),
    (b"POST /rest/api/3/task/1/cancel HTTP/1.0\r\nAuthorization: Bearer 20000\r\nContent-Length: 3\r\n\r\nabc", 403),
]


def test_raw_wire_requests_get_the_right_answer(
    make_tracker: Callable[..., TaskTracker], check: Callable[..., Any]
) -> None:
    """Odd bytes on the wire (encodings, Host, Authorization, methods) get the right code, never a 500."""
    tracker = make_tracker(base_url=None)  # so that the Host header goes into self
    task_id = submit(tracker, TaskStatus.RUNNING)
    assert task_id == "1"
    before = rows(tracker)
    with serve(wsgi_app(tracker, authenticate=bearer)) as port:
        for raw, expected in RAW_REQUESTS:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                sock.sendall(raw if b"\r\n\r\n" in raw else raw + b"\r\n\r\n")
                received = b""
                while chunk := sock.recv(65536):
                    received += chunk
            head, _, body = received.partition(b"\r\n\r\n")
            assert int(head.split()[1]) == expected, raw[:80]
            if expected == 200:
                content_type = next(line for line in head.split(b"\r\n") if line.lower().startswith(b"content-type:"))
                task = check(200, content_type.split(b":", 1)[1].strip().decode(), body)
                assert (task["id"], task["submittedBy"]) == ("1", OWNER)
    assert rows(tracker) == before


@pytest.mark.parametrize("bad", [True, "10000", 1.0], ids=repr)
def test_authenticator_returning_a_non_int_is_the_hosts_error(make_tracker: Any, bad: object) -> None:
    """An authenticate() that returns something other than an int or None raises TypeError naming it."""
    tracker = make_tracker()
    task = tracker.submit(submitted_by=1)
    resource = TaskResource(tracker, authenticate=lambda headers: bad)
    with pytest.raises(TypeError, match="authenticate"):
        resource.handle("GET", f"/rest/api/3/task/{task.id}", {})
