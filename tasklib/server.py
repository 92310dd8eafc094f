"""The HTTP server of ``tasklib serve``: Jira's task resource, safe to leave running.

:func:`make_server` builds a threaded HTTP/1.1 server around a
:class:`~tasklib.web.TaskResource` that

- answers each connection on its own thread, with a listen backlog of
  :data:`BACKLOG`, so a burst of clients is queued rather than refused;
- accepts only the Host names it serves (the address it is bound to, ``localhost``
  on a loopback address, the host of ``base_url``), answering others 400, so a
  web page cannot reach it through DNS rebinding;
- with a ``token`` (the administrator's) and any ``user_tokens`` (one per user),
  requires one of them on every request, as ``Authorization: Bearer <token>`` or
  as the ``tasklib_token`` cookie that the sign-in form at ``/login`` sets (401
  with Jira's body otherwise), compared in constant time;
- shows the live task page (:class:`~tasklib.page.TaskPage`) at ``/``: a user
  sees their own tasks, the administrator every task;
- answers 400 at once to what is not HTTP/1.x (HTTP/0.9, TLS, HTTP/2), and
  closes idle and half-sent connections after ``timeout`` seconds;
- refuses bodies over :data:`~tasklib.web.MAX_BODY` with 413 before reading them.

Every answer under Jira's prefix is one of Jira's codes (200, 202, 400, 401,
403, 404, 405, 413) with Jira's JSON body, or 204 to an OPTIONS; a HEAD gets the
GET's header fields and no content; no answer carries a traceback or a file path.
"""

from __future__ import annotations

import contextlib
import hmac
import http.server
import io
import ipaddress
import json
import re
import socket
import socketserver
from collections.abc import Iterable, Mapping
from http import HTTPStatus
from typing import Any, Final, cast
from urllib.parse import parse_qs, quote, unquote, urlsplit

from .checks import is_int
from .page import TaskPage
from .tracker import TaskTracker
from .web import MAX_BODY, TRUST_ALL, Authentication, Response, TaskResource, origin_of

__all__ = [
    "ADMIN_USER",
    "BACKLOG",
    "COOKIE",
    "DEFAULT_TIMEOUT",
    "TaskServer",
    "TokenAuthenticator",
    "is_loopback",
    "make_server",
    "parse_user_token",
]

#: The user id the administrator's token (``--token``) authenticates as: no real
#: user's, as user tokens take ids from 0 up. Give the tracker
#: ``is_admin=lambda user: user == ADMIN_USER`` so that it may see every task.
ADMIN_USER: Final = -1
#: The cookie the sign-in form sets: the token, for browsers.
COOKIE: Final = "tasklib_token"

#: The listen backlog: connections the kernel queues while every thread is busy
#: (socketserver's default of 5 turned away part of a burst of 200).
BACKLOG = 1024
#: Seconds a connection may stay silent, idle or in the middle of a request.
DEFAULT_TIMEOUT = 10.0

_MAX_LINE = 65536  # the longest request line or header line read
_MAX_DRAIN = 64 * 1024 * 1024  # bytes of an unread body dropped before a close, so the answer is read
_CONTENT_TYPE = "application/json;charset=UTF-8"
# What a request line may start with: a method is a token, in practice letters. TLS
# starts with 0x16, HTTP/2's preface with "PRI", which fails the version check.
_METHOD_START = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
# Fields that decide where a request goes, who sends it and where its body ends: two
# of one of them could be read one way here and another way by the resource or a proxy.
_SINGLE_FIELDS = (
    "host",
    "content-length",
    "transfer-encoding",
    "authorization",
    "origin",
    "referer",
    "x-atlassian-token",
)
_TOKEN = re.compile(rb"[A-Za-z0-9!#$%&'*+.^_`|~-]+")  # RFC 9110's token: what a method is
_JIRA_CODES = frozenset({200, 202, 400, 401, 403, 404, 405, 413})
_UNAUTHENTICATED = "You are not authenticated. Authentication required to perform this operation."
_PAGE_PATHS = frozenset({"/", "/tasks.json", "/page.js", "/tasklib-progress.js"})
_HTML = "text/html;charset=UTF-8"
_LOGIN_STYLE = (
    ":root{color-scheme:light dark;font-family:system-ui,sans-serif}"
    "body{margin:0 auto;max-width:24rem;padding:1rem}input,button{font:inherit}"
    "label{display:block;margin:.5rem 0}input{width:100%;box-sizing:border-box}"
)


def _valid_token(token: str) -> bool:
    return bool(token) and token.isascii() and token.isprintable() and " " not in token


def parse_user_token(text: str) -> tuple[int, str]:
    """``"USER_ID=TOKEN"`` (``--user-token``) as ``(user_id, token)``.

    Raises ValueError, saying what is wrong, for a missing ``=``, a user id that
    is not a whole number from 0 up, or a token that is empty or not printable
    ASCII without spaces.
    """
    user, sep, token = text.partition("=")
    user = user.strip()
    if not sep:
        raise ValueError(f"a user token must be USER_ID=TOKEN, got {text.split('=')[0][:20]!r}...")
    if not (user.isascii() and user.isdigit()) or int(user) >= 2**63:
        raise ValueError(f"a user token's user id must be a whole number from 0 up, got {user[:20]!r}")
    if not _valid_token(token):
        raise ValueError(f"the token of user {int(user)} must be printable ASCII without spaces")
    return int(user), token


class TokenAuthenticator:
    """Who a request is, from its token: the administrator's or one user's.

    Called with a request's headers, as ``authenticate`` is: the user id of the
    token in ``Authorization: Bearer <token>`` or, without that header, in the
    :data:`COOKIE` cookie; :data:`ADMIN_USER` for ``admin_token``; None for no
    token or an unknown one. Tokens are compared in constant time, each of them
    every time, so that the answer's timing tells nothing about any of them.

    Raises ValueError for a malformed token, a negative user id, or a token
    given twice.
    """

    def __init__(self, admin_token: str | None, user_tokens: Mapping[int, str]) -> None:
        pairs: list[tuple[bytes, int]] = []
        if admin_token is not None:
            pairs.append((admin_token.encode(), ADMIN_USER))
        for user, token in user_tokens.items():
            if not is_int(user) or user < 0:
                raise ValueError(f"a user id must be a whole number from 0 up, got {user!r}")
            pairs.append((token.encode() if isinstance(token, str) else b"", user))
        for known, _ in pairs:
            if not _valid_token(known.decode("utf-8", "replace")):
                raise ValueError("the token must be printable ASCII without spaces")
        if len({known for known, _ in pairs}) != len(pairs):
            raise ValueError("two users have the same token: each needs their own")
        self._pairs = tuple(pairs)

    def user_for(self, token: str) -> int | None:
        """The user id of ``token``, or None for a token of nobody's."""
        given = token.encode("utf-8", "surrogateescape")
        found: int | None = None
        for known, user in self._pairs:
            if hmac.compare_digest(given, known):  # no early exit: every token is compared
                found = user
        return found

    def __call__(self, headers: Mapping[str, str]) -> int | None:
        authorization = _field(headers, "authorization")
        if authorization is not None:
            # Exactly "Bearer <token>", as before there were user tokens.
            scheme, _, token = authorization.partition(" ")
            return self.user_for(token) if scheme == "Bearer" else None
        cookie = _cookie(_field(headers, "cookie") or "")
        return None if cookie is None else self.user_for(cookie)


def _field(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        value = next((v for k, v in headers.items() if k.lower() == name), None)
    return value


def _cookie(field: str) -> str | None:
    """The token in a Cookie header field, percent-decoded; None without one."""
    for pair in field.split(";"):
        name, sep, value = pair.strip().partition("=")
        if sep and name == COOKIE:
            return unquote(value.strip().strip('"'), errors="replace")
    return None


def _login_page(status: int, note: str = "") -> Response:
    body = (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>Sign in: tasks</title><style>{_LOGIN_STYLE}</style></head><body><main>"
        f"<h1>Sign in</h1>{note}"
        "<form method='post' action='/login'>"
        "<label>Token <input type='password' name='token' autocomplete='current-password' required autofocus></label>"
        "<button type='submit'>Sign in</button></form></main></body></html>"
    )
    return Response(status, [("Content-Type", _HTML), ("Cache-Control", "no-store")], body.encode())


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) can be reached only from this machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _host_name(field: str) -> str | None:
    """The host name of a Host header field, lower case, without the port; None if malformed."""
    try:
        parts = urlsplit("//" + field.strip())
        name, _ = parts.hostname, parts.port
    except ValueError:
        return None
    if not name or parts.path or parts.query or parts.fragment or parts.username is not None:
        return None
    return name


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class TaskServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    """A threaded HTTP server answering with a :class:`~tasklib.web.TaskResource`; see :func:`make_server`."""

    daemon_threads = True
    block_on_close = False
    request_queue_size = BACKLOG

    def __init__(
        self,
        address: tuple[str, int],
        resource: TaskResource,
        *,
        page: TaskPage,
        authenticator: TokenAuthenticator | None,
        host_names: Iterable[str],
        any_ip: bool,
        timeout: float,
    ) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.resource = resource
        self.page = page
        self.authenticator = authenticator
        self.host_names = frozenset(name.lower() for name in host_names)
        self.any_ip = any_ip
        self.connection_timeout = timeout
        super().__init__(address, _Handler)

    def host_allowed(self, field: str | None) -> bool:
        """Whether a request's Host header names this server (an HTTP/1.0 request may have none)."""
        if field is None:
            return True
        name = _host_name(field)
        if name is None:
            return False
        # An IP address cannot be re-pointed by DNS; a name only if it is one of ours.
        return name in self.host_names or (self.any_ip and _is_ip(name))


class _Handler(http.server.BaseHTTPRequestHandler):
    """One connection: HTTP/1.1 with keep-alive, answering only with Jira's codes and bodies."""

    server: TaskServer
    protocol_version = "HTTP/1.1"
    server_version = "tasklib"
    sys_version = ""

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self.server.connection_timeout)

    def handle_one_request(self) -> None:
        self.close_connection = True
        try:
            # Peek, not readline: bytes that are no request line (TLS) may hold no newline at all.
            first = cast(io.BufferedReader, self.rfile).peek(1)[:1]
            if not first:
                return  # the client closed the connection
            if first[0] not in _METHOD_START:
                self._refuse(400, "The request is not HTTP/1.x.")
                return
            raw = self.rfile.readline(_MAX_LINE + 1)
            if len(raw) > _MAX_LINE:
                self._refuse(400, "The request line is too long.")
                return
            if not raw.endswith(b"\n"):
                return  # cut short: the client closed mid-line
            words = raw.split()
            if len(words) != 3 or not words[2].startswith(b"HTTP/1."):
                self._refuse(400, "The request is not HTTP/1.x.")
                return
            if not _TOKEN.fullmatch(words[0]):
                self._refuse(400, "The request method is malformed.")
                return
            self.raw_requestline = raw
            if not self.parse_request():  # answers its own errors, through send_error
                return
            # A line that is no "name: value" ends the email parser's headers early: what
            # follows would be dropped unseen (a second Host, an Authorization...).
            if self.headers.defects or self.headers.get_payload():
                self._refuse(400, "A header field is malformed.")
                return
            self._answer()
            self.wfile.flush()
        except (TimeoutError, ConnectionError):
            self.close_connection = True  # idle or half-sent too long, or gone: drop it

    def handle_expect_100(self) -> bool:
        # Say "go on" only to a body that will be read; a larger one is refused unread.
        length = self.headers.get("Content-Length", "")
        if length.isdigit() and int(length) <= MAX_BODY:
            return super().handle_expect_100()
        return True

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # http.server's own refusals (a bad header, too many of them, an odd
        # version) come here: they are 400, as Jira's codes have nothing else.
        self._refuse(code if code in _JIRA_CODES else 400, "The request is malformed.")

    def log_message(self, format: str, *args: Any) -> None:
        pass  # no access log: what a client sends is not written to the terminal

    def _answer(self) -> None:
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            headers.setdefault(name.lower(), value)  # the first, as self.headers.get() gives it
        path = self.path.split("?", 1)[0].split("#", 1)[0]
        # http.server read the request line as Latin-1: give the resource its bytes, percent-encoded.
        wire = quote(path.encode("latin-1", "replace"), safe="/%!$&'()*+,;=:@~-._")
        resource = self.server.resource

        def refuse(code: int, message: str, *extra: tuple[str, str]) -> None:
            self._send(resource.refusal(self.command, wire, code, message, *extra))

        names = [name.lower() for name in self.headers]
        if any(names.count(name) > 1 for name in _SINGLE_FIELDS):
            self.close_connection = True
            refuse(400, "A header field that must appear once appears more than once.")
            return
        if "transfer-encoding" in headers:
            # A chunked body is not read here: a request must say its length.
            self.close_connection = True
            refuse(400, "A request body must have a Content-Length.")
            return
        length = headers.get("content-length", "0").strip() or "0"
        size = int(length) if length.isascii() and length.isdigit() else None
        body = b""
        if size is not None and size <= MAX_BODY:
            body = self.rfile.read(size)  # read before answering, so that the connection stays in step
        else:
            self.close_connection = True  # unread: the connection is out of step
        if not self.server.host_allowed(self.headers.get("Host")):
            refuse(400, "The Host header does not name this server.")
            return
        host = self.headers.get("Host") or "{}:{}".format(*self.server.server_address[:2])
        authenticator = self.server.authenticator
        if path == "/login":
            self._send(self._login(headers, body, host))
            return
        if authenticator is not None and authenticator(headers) is None:
            if path == "/" and self.command in ("GET", "HEAD"):
                # A browser without its cookie: to the sign-in form.
                self._send(Response(303, [("Location", "/login"), ("Cache-Control", "no-store")], b""))
            else:
                refuse(401, _UNAUTHENTICATED, ("WWW-Authenticate", "Bearer"))
            return
        if path in _PAGE_PATHS:
            query = self.path.partition("?")[2].partition("#")[0]
            self._send(self.server.page.handle(self.command, path, query, headers))
            return
        self._send(resource.handle(self.command, wire, headers, host=host, body_size=size))

    def _login(self, headers: Mapping[str, str], body: bytes, host: str) -> Response:
        """The sign-in form (GET) and its answer (POST): the token's cookie, or 401."""
        if self.server.authenticator is None:
            note = "<p>No sign-in here: this server trusts everyone on this machine. <a href='/'>Tasks</a></p>"
            page = f"<!doctype html><html lang='en'><meta charset='utf-8'><title>Tasks</title>{note}"
            return Response(404, [("Content-Type", _HTML), ("Cache-Control", "no-store")], page.encode())
        if self.command in ("GET", "HEAD"):
            return _login_page(200)
        if self.command != "POST":
            return Response(405, [("Allow", "GET, HEAD, POST"), ("Cache-Control", "no-store")], b"")
        # Another site's form must not sign a browser in as someone else.
        claimed = headers.get("origin") or headers.get("referer")
        if claimed is not None and origin_of(claimed) != origin_of(f"http://{host}"):
            return _login_page(403, "<p role='alert'>Sign in from this server's own page.</p>")
        fields = parse_qs(body.decode("utf-8", "replace"), max_num_fields=4)
        token = (fields.get("token") or [""])[-1]
        if self.server.authenticator.user_for(token) is None:
            return _login_page(401, "<p role='alert'>That token is not known here.</p>")
        cookie = f"{COOKIE}={quote(token, safe='')}; Path=/; HttpOnly; SameSite=Strict"
        return Response(303, [("Location", "/"), ("Set-Cookie", cookie), ("Cache-Control", "no-store")], b"")

    def _refuse(self, code: int, message: str) -> None:
        """Answer a request that could not be read, and close the connection."""
        body = json.dumps({"errorMessages": [message], "errors": {}}, separators=(",", ":")).encode()
        self.close_connection = True
        self._send(Response(code, [("Content-Type", _CONTENT_TYPE), ("Cache-Control", "no-store")], body))

    def _send(self, response: Response) -> None:
        if not getattr(self, "request_version", "").startswith("HTTP/1."):
            self.request_version = "HTTP/1.1"  # an error before the request line was read
        self.send_response_only(response.status, HTTPStatus(response.status).phrase)
        # HEAD: the GET's header fields, no content.
        headers, body = response.framed(getattr(self, "command", None) or "")
        for name, value in headers:
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        if self.close_connection:
            self._linger()

    def _linger(self) -> None:
        # Closing a socket with unread bytes makes the kernel send a reset, which
        # can destroy the answer before the client reads it (a refused 10 MB body).
        # Stop writing, then read and drop what the client still sends, briefly.
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_WR)
            self.connection.settimeout(min(self.server.connection_timeout, 2.0))
            received = 0
            while received < _MAX_DRAIN:
                chunk = self.connection.recv(65536)
                if not chunk:
                    break
                received += len(chunk)


def make_server(
    tracker: TaskTracker,
    host: str = "127.0.0.1",
    port: int = 8080,
    *,
    authenticate: Authentication,
    token: str | None = None,
    user_tokens: Mapping[int, str] | None = None,
    insecure: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
    allowed_origins: Iterable[str] = (),
) -> TaskServer:
    """A :class:`TaskServer` for ``tracker``, bound and listening on ``host:port`` (0: any free port).

    ``authenticate`` is the resource's (required; ``tasklib serve`` passes
    :data:`~tasklib.web.TRUST_ALL`); ``allowed_origins`` too. With ``token``
    (the administrator's) or ``user_tokens`` (``{user_id: token}``), every
    request must carry one of them (see :class:`TokenAuthenticator`), except the
    sign-in form at ``/login``. With ``user_tokens``, the tokens are the
    authentication: ``authenticate`` is not used, each user sees and cancels
    only their own tasks, and the administrator is :data:`ADMIN_USER`, whom the
    tracker's ``is_admin`` must grant. The task page at ``/`` shows the
    viewer's tasks (every task to the administrator, and to everyone when no
    token is set). Without a token, binding an address other than loopback is
    refused unless ``insecure``. Serve it with ``serve_forever()``.

    Raises ValueError for a malformed or repeated token, user tokens without
    ``token`` or with a tracker that does not make :data:`ADMIN_USER` an
    administrator, a non-loopback address without token or ``insecure``, or a
    bad timeout; OSError when the address cannot be bound.
    """
    if token is not None and not _valid_token(token):
        raise ValueError("the token must be printable ASCII without spaces")
    users = dict(user_tokens or {})
    if users and token is None:
        raise ValueError("user tokens need an administrator's token too: give --token (or TASKLIB_TOKEN)")
    if users and not tracker.is_admin(ADMIN_USER):
        raise ValueError("with user tokens, the tracker's is_admin must grant ADMIN_USER")
    authenticator = None if token is None else TokenAuthenticator(token, users)
    if not is_loopback(host) and token is None and not insecure:
        raise ValueError(
            f"refusing to serve every task to anyone who can reach {host} without a token: "
            "give --token (or TASKLIB_TOKEN), or --insecure if that is really meant"
        )
    if not 0 < timeout <= 3600:
        raise ValueError(f"timeout must be from 0 to 3600 seconds, got {timeout}")
    names = {host.strip("[]").lower()}
    if is_loopback(host):
        names.add("localhost")
    if host.lower() == "localhost":  # the name stands for the loopback addresses
        names.update({"127.0.0.1", "::1"})
    if tracker.base_url:
        base_host = urlsplit(tracker.base_url).hostname
        if base_host:
            names.add(base_host)
    any_ip = host in ("0.0.0.0", "::", "")
    if any_ip:
        names.update({socket.gethostname().lower(), socket.getfqdn().lower(), "localhost"})
    trusted = authenticator is None or not users
    resource = TaskResource(
        tracker,
        authenticate=authenticate if trusted or authenticator is None else authenticator,
        allowed_origins=allowed_origins,
    )
    # Everyone who passed the gate of a server without user tokens is trusted with every task.
    page = TaskPage(tracker, authenticate=TRUST_ALL if trusted or authenticator is None else authenticator, prefix="")
    return TaskServer(
        (host, port),
        resource,
        page=page,
        authenticator=authenticator,
        host_names=names,
        any_ip=any_ip,
        timeout=timeout,
    )
