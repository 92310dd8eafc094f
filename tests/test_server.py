"""The server of ``tasklib serve`` on the wire: what is not HTTP/1.x, slow clients, bursts, Host, the token."""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote, urlencode

import pytest

from tasklib import TaskStatus, TaskTracker
from tasklib.server import (
    ADMIN_USER,
    BACKLOG,
    TaskServer,
    TokenAuthenticator,
    is_loopback,
    make_server,
    parse_user_token,
)
from tasklib.web import TRUST_ALL

from .helpers import OWNER, TASK, WAIT, bearer, rows, submit

TOKEN = "s3cret-token"


@contextlib.contextmanager
def running(tracker: TaskTracker, **options: Any) -> Iterator[TaskServer]:
    """A server for ``tracker`` on a free port of 127.0.0.1, serving in a thread until the block ends."""
    options.setdefault("authenticate", TRUST_ALL)
    server = make_server(tracker, options.pop("host", "127.0.0.1"), 0, **options)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=WAIT)


def exchange(port: int, data: bytes, *, timeout: float = WAIT) -> bytes:
    """Send raw bytes on a new connection; everything the server sent until it closed the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return received


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def get(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.headers), response.read()
    finally:
        connection.close()


@pytest.fixture
def task_id(tracker: TaskTracker) -> str:
    return submit(tracker, TaskStatus.RUNNING)


# -- what is not HTTP/1.x is refused at once ----------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"GET /rest/api/3/task/1\r\n",  # HTTP/0.9
        b"GET /rest/api/3/task/1 HTTP/0.9\r\n\r\n",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",  # HTTP/2 with prior knowledge
        bytes.fromhex("160301020001") + b"\x00" * 40,  # the start of a TLS ClientHello
        b"\x00\x01\x02 binary",
        b"G\xffT / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1 extra\r\n\r\n",
        b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 1000 + b"\r\n",  # 1,000 header fields
        b"GET / HTTP/1.1\r\nBad header line\r\n\r\n",
    ],
    ids=lambda data: repr(data[:24]),
)
def test_what_is_not_http_1_gets_400_at_once(tracker: TaskTracker, data: bytes) -> None:
    """HTTP/0.9, HTTP/2, TLS bytes, malformed request lines and headers: 400 and a close, not a wait for the timeout."""
    # A timeout far beyond the client's: an answer only after it would fail the test.
    with running(tracker, timeout=600) as server:
        answer = exchange(server.server_port, data)
    assert status_of(answer) == 400, answer[:200]
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"Connection: close" in head
    assert json.loads(body)["errorMessages"]


@pytest.mark.parametrize(
    "data",
    [
        b"",  # connected, then silent
        b"GET /rest/api/3/task/1 HTTP/1.1\r\nHost: 127.0.0.1\r\n",  # headers never finished
        b"GET /rest/api/3/task/1 HTT",  # request line never finished
        b"POST /rest/api/3/task/1/cancel HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 10\r\n\r\nabc",  # body short
    ],
    ids=["idle", "half-sent headers", "half-sent line", "half-sent body"],
)
def test_idle_and_half_sent_connections_are_closed(tracker: TaskTracker, task_id: str, data: bytes) -> None:
    """A connection that stays silent or stops mid-request is closed by the server after its timeout; nothing changes."""
    before = rows(tracker)
    with (
        running(tracker, timeout=0.5) as server,
        socket.create_connection(("127.0.0.1", server.server_port), timeout=WAIT) as sock,
    ):
        sock.sendall(data)
        received = b""
        while chunk := sock.recv(65536):  # returns b"" once the server has closed
            received += chunk
    assert b"202" not in received.split(b"\r\n", 1)[0]
    assert rows(tracker) == before


def test_a_kept_alive_connection_serves_several_requests(tracker: TaskTracker, task_id: str) -> None:
    """HTTP/1.1 keep-alive: two requests, with a small body in between, on one connection, both answered."""
    with running(tracker) as server:
        connection = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=WAIT)
        try:
            connection.request("GET", TASK + task_id)
            first = connection.getresponse()
            assert (first.status, json.loads(first.read())["id"]) == (200, task_id)
            connection.request("POST", TASK + task_id + "/cancel", body=b"x" * 1000)
            second = connection.getresponse()
            assert (second.status, json.loads(second.read())["status"]) == (202, "CANCEL_REQUESTED")
        finally:
            connection.close()


# -- a burst of clients ------------------------------------------------------------------


def test_200_simultaneous_gets_are_all_answered(tracker: TaskTracker, task_id: str) -> None:
    """200 clients connecting at the same moment all get their 200 (the listen backlog is not 5)."""
    assert BACKLOG >= 200
    answers: list[int] = []
    errors: list[BaseException] = []
    clients = 200
    start = threading.Barrier(clients)

    def client(port: int) -> None:
        try:
            start.wait(WAIT)
            status, _, body = get(port, TASK + task_id)
            assert json.loads(body)["id"] == task_id
            answers.append(status)
        except BaseException as exc:  # reported below, with the count
            errors.append(exc)

    with running(tracker) as server:
        threads = [threading.Thread(target=client, args=(server.server_port,)) for _ in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(2 * WAIT)
    assert errors == [] and answers == [200] * clients, (len(answers), errors[:3])


# -- Host: no DNS rebinding -----------------------------------------------------------------


@pytest.mark.parametrize(
    "host, allowed",
    [
        ("127.0.0.1:{port}", True),
        ("127.0.0.1", True),
        ("localhost:{port}", True),
        ("LOCALHOST", True),
        ("jira.example.com", True),  # the host of base_url
        ("evil.example", False),
        ("evil.example:{port}", False),
        ("127.0.0.1.evil.example", False),
        ("10.0.0.1", False),  # not an address it is bound to
        ("", False),
        ("127.0.0.1/x", False),
        ("user@127.0.0.1", False),
        ("127.0.0.1:99999", False),
    ],
)
def test_only_the_servers_own_host_names_are_answered(
    make_tracker: Callable[..., TaskTracker], host: str, allowed: bool
) -> None:
    """A Host the server is not bound to (as a page on a rebound DNS name sends) is 400; its own names are served."""
    tracker = make_tracker(base_url="https://jira.example.com/rest/api/3/task/")
    task_id = submit(tracker)
    with running(tracker) as server:
        status, _, body = get(server.server_port, TASK + task_id, {"Host": host.format(port=server.server_port)})
    assert status == (200 if allowed else 400)
    if not allowed:
        assert json.loads(body) == {"errorMessages": ["The Host header does not name this server."], "errors": {}}


@pytest.mark.parametrize(
    "fields",
    [
        "Host: 127.0.0.1\r\nHost: evil.example",
        "Content-Length: 0\r\nContent-Length: 5",
        f"Authorization: Bearer {TOKEN}\r\nAuthorization: Bearer x",
        "Origin: http://127.0.0.1\r\nOrigin: http://evil.example",
    ],
)
def test_a_field_that_decides_twice_is_400(tracker: TaskTracker, task_id: str, fields: str) -> None:
    """Two Host, Content-Length, Authorization or Origin fields could be read two ways: 400, nothing changes."""
    before = rows(tracker)
    with running(tracker, token=TOKEN) as server:
        data = f"POST {TASK}{task_id}/cancel HTTP/1.1\r\n{fields}\r\n\r\n"
        assert status_of(exchange(server.server_port, data.encode())) == 400
    assert rows(tracker) == before


def test_bound_to_localhost_its_addresses_are_its_names(tracker: TaskTracker, task_id: str) -> None:
    """Bound to "localhost", a Host of 127.0.0.1 is the server's own; evil.example is not."""
    with running(tracker, host="localhost") as server:
        port = server.server_port
        assert get(port, TASK + task_id, {"Host": f"127.0.0.1:{port}"})[0] == 200
        assert get(port, TASK + task_id, {"Host": f"localhost:{port}"})[0] == 200
        assert get(port, TASK + task_id, {"Host": "evil.example"})[0] == 400


def test_an_http_1_0_request_without_host_is_answered(tracker: TaskTracker, task_id: str) -> None:
    """HTTP/1.0 has no Host header; no browser sends such a request, so it is served."""
    with running(tracker) as server:
        answer = exchange(server.server_port, f"GET {TASK}{task_id} HTTP/1.0\r\n\r\n".encode())
    assert status_of(answer) == 200


# -- the token --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization, code",
    [
        (None, 401),
        ("", 401),
        ("Bearer", 401),
        (f"Bearer {TOKEN}x", 401),
        (f"Bearer {TOKEN[:-1]}", 401),
        (f"bearer {TOKEN}", 401),
        (f"Basic {TOKEN}", 401),
        (f"Bearer  {TOKEN}", 401),
        ("Bearer \u00e9", 401),
        (f"Bearer {TOKEN}", 200),
    ],
)
def test_with_a_token_every_request_must_carry_it(
    tracker: TaskTracker, task_id: str, authorization: str | None, code: int
) -> None:
    """With a token, a request without exactly "Bearer <token>" is 401 with Jira's body, GET and cancel alike."""
    before = rows(tracker)
    headers = {} if authorization is None else {"Authorization": authorization}
    with running(tracker, token=TOKEN) as server:
        status, fields, body = get(server.server_port, TASK + task_id, headers)
        assert status == code
        connection = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=WAIT)
        connection.request("POST", TASK + task_id + "/cancel", headers=headers)
        cancel = connection.getresponse()
        cancel_body = json.loads(cancel.read())
        connection.close()
    if code == 401:
        assert fields["WWW-Authenticate"] == "Bearer"
        assert json.loads(body)["errorMessages"] == [
            "You are not authenticated. Authentication required to perform this operation."
        ]
        assert (cancel.status, len(cancel_body)) == (401, 1)  # the cancel's errors are an array
        assert rows(tracker) == before
    else:
        assert cancel.status == 202


def test_the_token_and_authenticate_together(tracker: TaskTracker, task_id: str) -> None:
    """A host's authenticate still decides who the caller is once the token is checked."""
    with running(tracker, token=TOKEN, authenticate=bearer) as server:
        assert get(server.server_port, TASK + task_id, {"Authorization": f"Bearer {TOKEN}"})[0] == 401
        assert get(server.server_port, TASK + task_id, {"Authorization": f"Bearer {OWNER}"})[0] == 401


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.1", "example.com"])
def test_an_address_other_than_loopback_needs_a_token_or_insecure(tracker: TaskTracker, host: str) -> None:
    """Serving every task to the network without a token is refused with ValueError, before binding."""
    with pytest.raises(ValueError, match="--insecure"):
        make_server(tracker, host, 0, authenticate=TRUST_ALL)


@pytest.mark.parametrize("token", ["", "with space", "new\nline", "caf\u00e9"])
def test_a_malformed_token_is_refused(tracker: TaskTracker, token: str) -> None:
    with pytest.raises(ValueError, match="token"):
        make_server(tracker, "127.0.0.1", 0, authenticate=TRUST_ALL, token=token)


def test_binding_everywhere_with_a_token_serves(tracker: TaskTracker, task_id: str) -> None:
    """0.0.0.0 with a token serves; an IP literal as Host is allowed there, a name that is not the machine's is not."""
    with running(tracker, host="0.0.0.0", token=TOKEN) as server:
        port = server.server_port
        authorized = {"Authorization": f"Bearer {TOKEN}"}
        assert get(port, TASK + task_id, authorized)[0] == 200
        assert get(port, TASK + task_id, {**authorized, "Host": f"192.0.2.7:{port}"})[0] == 200
        assert get(port, TASK + task_id, {**authorized, "Host": "evil.example"})[0] == 400


@pytest.mark.parametrize(
    "host, loopback",
    [
        *[("127.0.0.1", True), ("127.1.2.3", True), ("::1", True), ("[::1]", True), ("localhost", True)],
        *[("0.0.0.0", False), ("::", False), ("10.0.0.1", False), ("example.com", False), ("", False)],
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


# -- the page at /, user tokens, the sign-in form --------------------------------------

ALICE_TOKEN, BOB_TOKEN = "alice;=t0ken", "bob-t0ken"  # ";" and "=": the cookie must carry them intact
ALICE, BOB = 7, 8


def request(
    port: int, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.headers), response.read()
    finally:
        connection.close()


@pytest.fixture
def users_tracker(make_tracker: Callable[..., TaskTracker]) -> TaskTracker:
    return make_tracker(base_url=None, is_admin=lambda user: user == ADMIN_USER)


@contextlib.contextmanager
def with_users(tracker: TaskTracker) -> Iterator[int]:
    with running(tracker, token=TOKEN, user_tokens={ALICE: ALICE_TOKEN, BOB: BOB_TOKEN}) as server:
        yield server.server_port


def sign_in(port: int, token: str) -> str:
    """The Cookie header the sign-in form gives for ``token``."""
    status, headers, _ = request(port, "POST", "/login", urlencode({"token": token}).encode(), {"Content-Type": FORM})
    assert (status, headers["Location"]) == (303, "/")
    cookie = headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    return cookie.split(";")[0]


FORM = "application/x-www-form-urlencoded"


def test_each_user_sees_their_own_tasks_and_the_administrator_all(users_tracker: TaskTracker) -> None:
    """By bearer token or by the form's cookie, a user's page and feed list only their tasks."""
    alices, bobs = submit(users_tracker, user=ALICE), submit(users_tracker, user=BOB)
    with with_users(users_tracker) as port:
        for who, own, other in ((ALICE_TOKEN, alices, bobs), (BOB_TOKEN, bobs, alices)):
            for headers in ({"Authorization": f"Bearer {who}"}, {"Cookie": sign_in(port, who)}):
                status, _, page = request(port, "GET", "/", headers=headers)
                assert status == 200 and f"id='task-{own}'".encode() in page
                assert f"id='task-{other}'".encode() not in page
                _, _, feed = request(port, "GET", "/tasks.json", headers=headers)
                assert [task["id"] for task in json.loads(feed)["tasks"]] == [own]
                status, _, _ = request(port, "GET", f"{TASK}{other}", headers=headers)
                assert status == 403
        _, _, feed = request(port, "GET", "/tasks.json", headers={"Authorization": f"Bearer {TOKEN}"})
        assert {task["id"] for task in json.loads(feed)["tasks"]} == {alices, bobs}


def test_the_sign_in_form(users_tracker: TaskTracker) -> None:
    """The form is plain HTML; a wrong token is 401 and sets nothing; another site's form is 403."""
    with with_users(users_tracker) as port:
        status, headers, page = request(port, "GET", "/")
        assert (status, headers["Location"]) == (303, "/login")
        status, _, page = request(port, "GET", "/login")
        assert status == 200 and b"<form method='post' action='/login'>" in page and b"<script" not in page
        status, headers, page = request(port, "POST", "/login", b"token=guess", {"Content-Type": FORM})
        assert status == 401 and "Set-Cookie" not in headers and b"not known" in page
        body = urlencode({"token": ALICE_TOKEN}).encode()
        status, headers, _ = request(
            port, "POST", "/login", body, {"Content-Type": FORM, "Origin": "https://evil.example"}
        )
        assert status == 403 and "Set-Cookie" not in headers
        status, _, _ = request(port, "GET", "/", headers={"Cookie": "tasklib_token=guess"})
        assert status == 303
        status, _, _ = request(port, "GET", f"{TASK}1", headers={"Cookie": "tasklib_token=guess"})
        assert status == 401


def test_a_cookie_cancel_still_passes_the_xsrf_check(users_tracker: TaskTracker) -> None:
    """The cookie goes with any request the browser makes: a cancel from another origin is still 403."""
    task = submit(users_tracker, TaskStatus.RUNNING, user=ALICE)
    with with_users(users_tracker) as port:
        cookie = sign_in(port, ALICE_TOKEN)
        status, _, _ = request(
            port, "POST", f"{TASK}{task}/cancel", headers={"Cookie": cookie, "Origin": "https://evil.example"}
        )
        assert status == 403 and users_tracker.get(task).status is TaskStatus.RUNNING
        status, _, _ = request(
            port, "POST", f"{TASK}{task}/cancel", headers={"Cookie": cookie, "Origin": f"http://127.0.0.1:{port}"}
        )
        assert status == 202 and users_tracker.get(task).status is TaskStatus.CANCEL_REQUESTED


def test_without_tokens_the_page_shows_every_task(tracker: TaskTracker) -> None:
    """Loopback, no token: everyone is trusted, the page lists every task and /login has nothing to do."""
    ids = [submit(tracker, user=user) for user in (ALICE, BOB)]
    with running(tracker) as server:
        status, _, page = request(server.server_port, "GET", "/")
        assert status == 200 and all(f"id='task-{task}'".encode() in page for task in ids)
        assert request(server.server_port, "GET", "/login")[0] == 404


def test_user_tokens_are_checked(tracker: TaskTracker, users_tracker: TaskTracker) -> None:
    """Rejected before anything listens: no administrator, a tracker that does not grant ADMIN_USER, bad tokens."""
    users = {ALICE: ALICE_TOKEN}
    with pytest.raises(ValueError, match="administrator's token"):
        make_server(users_tracker, "127.0.0.1", 0, authenticate=TRUST_ALL, user_tokens=users)
    with pytest.raises(ValueError, match="is_admin must grant ADMIN_USER"):
        make_server(tracker, "127.0.0.1", 0, authenticate=TRUST_ALL, token=TOKEN, user_tokens=users)
    for bad in ({ALICE: TOKEN}, {-2: "x"}, {ALICE: "with space"}, {ALICE: ""}):
        with pytest.raises(ValueError):
            make_server(users_tracker, "127.0.0.1", 0, authenticate=TRUST_ALL, token=TOKEN, user_tokens=bad)


@pytest.mark.parametrize(
    "text, expected",
    [("7=abc", (7, "abc")), ("0=a=b", (0, "a=b")), ("7", None), ("-1=x", None), ("x=y", None), ("7=a b", None)],
)
def test_parse_user_token(text: str, expected: tuple[int, str] | None) -> None:
    if expected is None:
        with pytest.raises(ValueError):
            parse_user_token(text)
    else:
        assert parse_user_token(text) == expected


def test_the_authenticator_reads_bearer_before_cookie() -> None:
    authenticate = TokenAuthenticator(TOKEN, {ALICE: ALICE_TOKEN})
    cookie = f"a=b; tasklib_token={quote(ALICE_TOKEN, safe='')}"
    assert authenticate({"cookie": cookie}) == ALICE
    assert authenticate({"authorization": f"Bearer {TOKEN}", "cookie": cookie}) == ADMIN_USER
    assert authenticate({"authorization": "Bearer nope", "cookie": cookie}) is None
    assert authenticate({"authorization": f"Basic {TOKEN}"}) is None
    assert authenticate({}) is None
