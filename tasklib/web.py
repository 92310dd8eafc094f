"""Serve tasks over HTTP as Jira Cloud's task resource: get a task, cancel a task.

:class:`TaskResource` is the whole protocol and needs no web framework: it takes a
request's method, path and headers and returns a :class:`Response`
(:meth:`TaskResource.handle`, or :meth:`TaskResource.handle_async` on an event
loop). Thin adapters put it on a server: :func:`wsgi_app` and :func:`asgi_app`
(standard library only), :func:`flask_blueprint` (``pip install
'tasktally[flask]'``) and :func:`fastapi_router` (``pip install
'tasktally[fastapi]'``); flask and fastapi are imported only when those are
called. Each takes ``authenticate=``, required: the host's authenticator, or
:data:`TRUST_ALL` when the host authenticates callers in front of tasklib. Every
adapter answers the same request the same way.

Status codes and bodies are those of Jira's REST API v3:

=============================================  ==========================================
``GET {prefix}/task/{taskId}``                 200 the task, 401, 403, 404
``HEAD {prefix}/task/{taskId}``                the GET's status and headers, no content
``POST {prefix}/task/{taskId}/cancel``         202 the task, 400, 401, 403, 404
``OPTIONS`` on either path                     204, with ``Allow``
another method on either path                  405, with ``Allow``
any other path (``/task``, ``/task/1/``...)    404
a body over 64 KB                              413, before anything else
a malformed ``Content-Length``                 400
a cross-origin POST (XSRF check)               403
=============================================  ==========================================

Error bodies are Jira's ErrorCollection, ``{"errorMessages": [...], "errors": {}}``,
except the cancel operation's, which Jira's specification declares as a JSON array
of strings. Every body is ``application/json;charset=UTF-8``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Final, Literal, cast
from urllib.parse import quote, unquote, urlsplit

from .aio import AsyncTaskTracker
from .checks import is_int
from .errors import PermissionDenied, TaskNotCancellable, TaskNotFound
from .jsonvalue import dumps
from .task import API_PREFIX, Task
from .telemetry import traced_request
from .tracker import TaskTracker

if TYPE_CHECKING:
    import fastapi
    import flask
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = [
    "DEFAULT_PREFIX",
    "MAX_BODY",
    "TRUST_ALL",
    "AsyncAuthenticate",
    "Authenticate",
    "Authentication",
    "Response",
    "TaskResource",
    "asgi_app",
    "fastapi_router",
    "flask_blueprint",
    "origin_of",
    "wsgi_app",
]

#: Where Jira serves its REST API v3; the task paths are ``{prefix}/task/...``.
DEFAULT_PREFIX = API_PREFIX

#: The host's authenticator: request headers (case-insensitive) to a user id, or
#: None for an anonymous caller.
Authenticate = Callable[[Mapping[str, str]], int | None]
#: An ``async def`` authenticator, for the async adapters (:func:`fastapi_router`, :func:`asgi_app`).
AsyncAuthenticate = Callable[[Mapping[str, str]], Awaitable[int | None]]


class _Trust(enum.Enum):
    ALL = "TRUST_ALL"

    def __repr__(self) -> str:
        return "tasklib.web.TRUST_ALL"


#: ``authenticate=TRUST_ALL``: every HTTP caller is the host's own trusted code and
#: may read and cancel every task. Only for a host that authenticates callers in
#: front of tasklib (a proxy, a middleware) or serves nobody but itself.
TRUST_ALL: Final = _Trust.ALL

#: What ``authenticate=`` takes: the host's :data:`Authenticate` callable, or :data:`TRUST_ALL`.
Authentication = Authenticate | Literal[_Trust.ALL]

#: The largest request body accepted (64 KB); a larger one is refused with 413
#: before anything is read or changed. Jira's two operations take no body at all.
MAX_BODY = 64 * 1024

_CONTENT_TYPE = "application/json;charset=UTF-8"

# The framework adapters must route every method to the resource, so that it, not
# the framework, answers 405 with Jira's body: RFC 9110's methods and PATCH.
_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"]

# Jira's wording where known; none of them repeats anything the client sent.
_UNAUTHENTICATED = "You are not authenticated. Authentication required to perform this operation."
_FORBIDDEN = "You do not have permission to access this task."
_TASK_NOT_FOUND = "The task was not found."
_NOT_CANCELLABLE = "Cancellation of the task is not possible."
_NO_RESOURCE = "No resource was found at this path."
_XSRF_FAILED = "XSRF check failed"  # Jira's words for a refused cross-origin request
_TOO_LARGE = "The request body is too large."
_BAD_LENGTH = "The Content-Length header is malformed."
_DEFAULT_PORTS = {"http": 80, "https": 443}
# What Allow says on each path: HEAD wherever GET is (RFC 9110), OPTIONS everywhere.
_GET_ALLOW = "GET, HEAD, OPTIONS"
# What a path sent on the wire keeps unencoded: RFC 3986's pchar, "/" and "%" (already an escape).
_WIRE_SAFE = "/%!$&'()*+,;=:@~-._"
_CANCEL_ALLOW = "POST, OPTIONS"


def origin_of(url: str) -> str | None:
    """The origin (``scheme://host[:port]``, lower case, default port left out) of a URL, or None.

    None for a URL that has no such origin: a relative one, another scheme than
    http or https, a bad port, or ``null`` (what a browser sends from a sandbox
    or a file). Raises nothing.
    """
    try:
        parts = urlsplit(url.strip())
        scheme, host, port = parts.scheme.lower(), parts.hostname, parts.port
    except ValueError:  # a port out of range or not a number, a bad IPv6 literal
        return None
    if scheme not in _DEFAULT_PORTS or not host or parts.username is not None or parts.password is not None:
        return None
    if ":" in host:
        host = f"[{host}]"
    if port is None or port == _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """A header field by case-insensitive name, from any mapping an adapter or a test passes."""
    value = headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()
    for key, field in headers.items():
        if key.lower() == lowered:
            return field
    return None


@dataclasses.dataclass(frozen=True)
class Response:
    """An HTTP response: the status code, the header fields in order, the body.

    The answer to a HEAD is the GET's, body included: an adapter sends what
    :meth:`framed` gives for the request's method.
    """

    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def framed(self, method: str) -> tuple[list[tuple[str, str]], bytes]:
        """The header fields to send, ``Content-Length`` added, and the bytes of content to send.

        For ``HEAD`` no content, and the ``Content-Length`` of the GET's (RFC 9110:
        a HEAD is answered with the GET's header fields and no content); for a 204
        neither. Raises nothing.
        """
        if self.status == 204:
            return list(self.headers), b""  # RFC 9110 8.6: no Content-Length on a 204
        headers = [*self.headers, ("Content-Length", str(len(self.body)))]
        return headers, b"" if method == "HEAD" else self.body


def _json(status: int, value: Any, *extra: tuple[str, str]) -> Response:
    text = dumps(value)
    # "replace": a lone surrogate in a host name an adapter passed must not become
    # a 500; a real request cannot carry one.
    body = text.encode("utf-8", "replace")
    # no-store: a task's status changes under a poller, and it is one user's data.
    headers = [("Content-Type", _CONTENT_TYPE), ("Cache-Control", "no-store"), *extra]
    return Response(status, headers, body)


def _error_collection(status: int, message: str, *extra: tuple[str, str]) -> Response:
    return _json(status, {"errorMessages": [message], "errors": {}}, *extra)


def _string_array(status: int, message: str, *extra: tuple[str, str]) -> Response:
    return _json(status, [message], *extra)


@dataclasses.dataclass(frozen=True)
class _Call:
    """A request every check but the caller's has let through: the tracker call left to make."""

    task_id: str
    cancel: bool

    def error(self, status: int, message: str) -> Response:
        # Jira's cancel errors are a JSON array; every other error an ErrorCollection.
        return (_string_array if self.cancel else _error_collection)(status, message)

    def refused(self, error: TaskNotFound | PermissionDenied | TaskNotCancellable) -> Response:
        if isinstance(error, TaskNotFound):
            return self.error(404, _TASK_NOT_FOUND)
        if isinstance(error, PermissionDenied):
            return self.error(403, _FORBIDDEN)
        return self.error(400, _NOT_CANCELLABLE)


def _check_user(user: object) -> None:
    if user is not None and not is_int(user):
        # The host's bug: say so by name rather than let the tracker blame as_user.
        raise TypeError(f"authenticate() must return an int user id or None, not {type(user).__name__}")


def _is_async(fn: object) -> bool:
    """Whether calling ``fn`` gives a coroutine: an ``async def`` function or callable object."""
    call = getattr(fn, "__call__", None)  # noqa: B004 - the object's own __call__, for callable instances
    return inspect.iscoroutinefunction(fn) or (call is not None and inspect.iscoroutinefunction(call))


class TaskResource:
    """Jira's task resource, ``GET {prefix}/task/{taskId}`` and ``POST .../cancel``, on a tracker.

    ``authenticate`` is required. ``authenticate(headers)`` is the host's: it
    returns the caller's user id, or None for an anonymous caller (answered 401);
    the tracker then lets only the task's submitter or an administrator see or
    cancel it (403 for others). :data:`TRUST_ALL` says that every caller is the
    host's own trusted code, for a host that authenticates in front of tasklib.

    A POST from a browser page of another origin is refused (Jira's XSRF check):
    when its ``Origin`` header (or, without one, its ``Referer``) names an origin
    other than the request's own, the tracker's ``base_url``'s or one of
    ``allowed_origins`` (``"https://app.example.com"``...), the answer is 403,
    unless the request carries ``X-Atlassian-Token: no-check``, which a page
    cannot send to another origin without the browser asking first (a preflight,
    answered 405). Requests with neither header (curl, server-side clients) pass.

    ``prefix`` is the path before ``/task/``, as it appears in URLs: empty, or
    starting and not ending with ``/``.

    Raises TypeError for a missing or non-callable ``authenticate`` (None
    included: say :data:`TRUST_ALL`), ValueError for a malformed ``prefix`` or
    an entry of ``allowed_origins`` that is not an http(s) origin.
    """

    def __init__(
        self,
        tracker: TaskTracker | AsyncTaskTracker,
        *,
        authenticate: Authentication | AsyncAuthenticate,
        prefix: str = DEFAULT_PREFIX,
        allowed_origins: Iterable[str] = (),
    ) -> None:
        if not isinstance(tracker, (TaskTracker, AsyncTaskTracker)):
            raise TypeError(f"tracker must be a TaskTracker or an AsyncTaskTracker, not {type(tracker).__name__}")
        if authenticate is not TRUST_ALL and not callable(authenticate):
            raise TypeError(
                "authenticate must be a callable(headers) -> int | None, "
                "or tasklib.web.TRUST_ALL to trust every caller with every task"
            )
        if not isinstance(prefix, str):
            raise TypeError(f"prefix must be a str, not {type(prefix).__name__}")
        if prefix and (not prefix.startswith("/") or prefix.endswith("/")):
            raise ValueError(f"prefix must be empty or start and not end with '/', got {prefix!r}")
        if isinstance(allowed_origins, str):
            raise TypeError("allowed_origins must be a collection of origins, not one str")
        origins: set[str] = set()
        for entry in allowed_origins:
            if not isinstance(entry, str):
                raise TypeError(f"allowed_origins holds a {type(entry).__name__}, not a str origin")
            origin = origin_of(entry)
            if origin is None or urlsplit(entry.strip()).path not in ("", "/"):
                raise ValueError(
                    f"allowed_origins must hold http(s) origins such as 'https://example.com', got {entry!r}"
                )
            origins.add(origin)
        base = origin_of(tracker.base_url) if isinstance(tracker.base_url, str) else None
        if base is not None:
            origins.add(base)
        self.tracker = tracker
        self.authenticate = authenticate
        self.prefix = prefix
        self.allowed_origins = frozenset(origins)

    @traced_request
    def handle(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str],
        *,
        scheme: str = "http",
        host: str = "localhost",
        root: str = "",
        body_size: int | None = None,
    ) -> Response:
        """Answer one request, as Jira would.

        ``path`` is the request's path within the application as the client sent
        it (percent-encoded, no query string): the id is percent-decoded exactly
        once here. ``headers`` (a case-insensitive mapping) gives
        ``Content-Length``, ``Origin``, ``Referer`` and ``X-Atlassian-Token``
        and goes to ``authenticate``. ``scheme``, ``host`` (with any port) and
        ``root`` (the percent-encoded path the application is mounted at, WSGI's
        SCRIPT_NAME) make the request's own origin and build a task's ``self``
        when the tracker has no ``base_url``; behind a proxy, or where the Host
        header is not to be trusted, give the tracker a ``base_url``.
        ``body_size`` is the size of the body an adapter read; without it the
        ``Content-Length`` header says (a body over :data:`MAX_BODY` is 413).

        A HEAD is answered as the GET (send it with :meth:`Response.framed`); an
        OPTIONS with 204 and ``Allow``, without asking ``authenticate`` or the
        store.

        Nothing in a request makes this raise. It raises what ``authenticate``
        raises (an error there is the host's bug, and the host's to answer), and
        TrackerClosed or StoreError from the tracker; TypeError on an
        AsyncTaskTracker or an ``async def`` ``authenticate``, which need
        :meth:`handle_async`.
        """
        step = self._admit(method, path, headers, scheme, host, body_size)
        if isinstance(step, Response):
            return step
        if isinstance(self.tracker, AsyncTaskTracker):
            raise TypeError("an AsyncTaskTracker is served by handle_async(): use fastapi_router or asgi_app")
        user = None
        if self.authenticate is not TRUST_ALL:
            if _is_async(self.authenticate):
                raise TypeError("an async def authenticate needs an async adapter: fastapi_router or asgi_app")
            user = cast(Authenticate, self.authenticate)(headers)
            if user is None:
                return step.error(401, _UNAUTHENTICATED)
        _check_user(user)
        try:
            task = (
                self.tracker.cancel(step.task_id, as_user=user)
                if step.cancel
                else self.tracker.get(step.task_id, as_user=user)
            )
        except (TaskNotFound, PermissionDenied, TaskNotCancellable) as refused:
            return step.refused(refused)
        return _json(202 if step.cancel else 200, self._located(task, scheme, host, root).to_dict())

    @traced_request
    async def handle_async(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str],
        *,
        scheme: str = "http",
        host: str = "localhost",
        root: str = "",
        body_size: int | None = None,
    ) -> Response:
        """Answer one request as :meth:`handle` does, on an event loop, never blocking it.

        The same rules and answers, for the async adapters (:func:`fastapi_router`,
        :func:`asgi_app`). An :class:`~tasklib.AsyncTaskTracker`'s methods are
        awaited; a :class:`~tasklib.TaskTracker`'s run in a worker thread
        (``asyncio.to_thread``). An ``async def`` ``authenticate`` is awaited; a
        plain one runs in a worker thread too, since a host's session lookup may
        block. Raises as :meth:`handle`.
        """
        step = self._admit(method, path, headers, scheme, host, body_size)
        if isinstance(step, Response):
            return step
        user = None
        if self.authenticate is not TRUST_ALL:
            if _is_async(self.authenticate):
                user = await cast(AsyncAuthenticate, self.authenticate)(headers)
            else:
                user = await asyncio.to_thread(cast(Authenticate, self.authenticate), headers)
            if user is None:
                return step.error(401, _UNAUTHENTICATED)
        _check_user(user)
        tracker = self.tracker
        try:
            if isinstance(tracker, AsyncTaskTracker):
                call = tracker.cancel if step.cancel else tracker.get
                task = await call(step.task_id, as_user=user)
            else:
                task = await asyncio.to_thread(
                    tracker.cancel if step.cancel else tracker.get, step.task_id, as_user=user
                )
        except (TaskNotFound, PermissionDenied, TaskNotCancellable) as refused:
            return step.refused(refused)
        return _json(202 if step.cancel else 200, self._located(task, scheme, host, root).to_dict())

    def _admit(
        self, method: str, path: str, headers: Mapping[str, str], scheme: str, host: str, body_size: int | None
    ) -> Response | _Call:
        """Every check that needs neither the caller nor the store: the body, the route, the method, the origin.

        Returns the answer when one of them decides it, else the call left to make.
        """
        route = self._route(path)
        # Jira's cancel errors are a JSON array; every other error an ErrorCollection.
        error = _string_array if route is not None and route[1] and method == "POST" else _error_collection
        if body_size is None:
            # PEP 3333 lets a server pass an empty CONTENT_LENGTH for "no body" (Django's does).
            length = (_header(headers, "Content-Length") or "").strip()
            if length and not (length.isascii() and length.isdigit()):
                return error(400, _BAD_LENGTH)
            body_size = int(length) if length else 0
        if body_size > MAX_BODY:
            return error(413, _TOO_LARGE)
        if route is None:
            return _error_collection(404, _NO_RESOURCE)
        task_id, cancel = route
        allow = _CANCEL_ALLOW if cancel else _GET_ALLOW
        if method == "OPTIONS":
            # No Access-Control-* field: CORS is the host's to add, so a browser's
            # preflight from another site's page still fails here.
            return Response(204, [("Allow", allow), ("Cache-Control", "no-store")], b"")
        if method not in (("POST",) if cancel else ("GET", "HEAD")):
            return _error_collection(405, f"This resource allows only {allow}.", ("Allow", allow))
        if cancel and not self._same_origin(headers, scheme, host):
            return error(403, _XSRF_FAILED)
        return _Call(task_id, cancel)

    def see_other(self, task: Task, *, scheme: str = "http", host: str = "localhost", root: str = "") -> Response:
        """A 303 See Other pointing at ``task``, as Jira answers an operation that starts a task.

        For the host's own endpoints: ``Location`` is the task's URL (built as in
        :meth:`handle`), and the body is the task's JSON. Raises nothing.
        """
        task = self._located(task, scheme, host, root)
        return _json(303, task.to_dict(), ("Location", task.url))

    def refusal(self, method: str, path: str, status: int, message: str, *extra: tuple[str, str]) -> Response:
        """An error answer with the body Jira gives for this request.

        A JSON array of one string for a cancel, an ErrorCollection otherwise: for a
        server that refuses a request before :meth:`handle` (a bad Host, a missing
        token). Raises nothing.
        """
        route = self._route(path)
        cancel = route is not None and route[1] and method == "POST"
        return (_string_array if cancel else _error_collection)(status, message, *extra)

    def _same_origin(self, headers: Mapping[str, str], scheme: str, host: str) -> bool:
        """Jira's XSRF check: whether a state-changing request may come from where it says it comes from."""
        token = _header(headers, "X-Atlassian-Token")
        # "nocheck" is the older spelling Jira still honours.
        if token is not None and token.strip().lower() in ("no-check", "nocheck"):
            return True
        claimed = _header(headers, "Origin")
        if claimed is None:
            claimed = _header(headers, "Referer")
            if claimed is None:
                return True  # no browser: curl, a server-side client, a Jira client library
        origin = origin_of(claimed)
        if origin is None:
            return False  # "null" (a sandboxed page, a file) or garbage: nobody we know
        return origin == origin_of(f"{scheme}://{host}") or origin in self.allowed_origins

    def _route(self, path: str) -> tuple[str, bool] | None:
        """The decoded task id and whether it is the cancel path, or None for another path."""
        head = self.prefix + "/task/"
        if not path.startswith(head):
            return None
        # "replace": bytes that are not UTF-8 give U+FFFD, which is in no id and
        # is not "cancel", so the answer is the right 404 and never an exception.
        segments = [unquote(segment, errors="replace") for segment in path[len(head) :].split("/")]
        if not segments[0]:
            return None  # ".../task/", ".../task//1": no task's path, whatever the method
        if len(segments) == 1:
            return segments[0], False
        if len(segments) == 2 and segments[1] == "cancel":
            return segments[0], True
        return None

    def _located(self, task: Task, scheme: str, host: str, root: str) -> Task:
        if self.tracker.base_url is not None:
            return task
        # Without a base_url task.url is Jira's relative path, which ignores this
        # resource's prefix and mount point; Jira's ``self`` is absolute.
        return dataclasses.replace(task, url=f"{scheme}://{host}{root}{self.prefix}/task/{task.id}")


# -- WSGI ----------------------------------------------------------------------


class _EnvironHeaders(Mapping[str, str]):
    """The request headers of a WSGI environ, by case-insensitive name."""

    def __init__(self, environ: WSGIEnvironment) -> None:
        self._fields: dict[str, str] = {}
        for key, value in environ.items():
            if key.startswith("HTTP_"):
                key = key[5:]
            elif key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
                continue
            self._fields[key.replace("_", "-").lower()] = value

    def __getitem__(self, name: str) -> str:
        return self._fields[name.lower()]

    def __iter__(self) -> Iterator[str]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)


def _wire(text: str) -> str:
    # PEP 3333 hands over paths percent-decoded, as bytes read as Latin-1; encode
    # them again so the resource decodes the id exactly once ("%2531" must stay
    # "%31", not become "1"). "replace" covers servers that break that rule.
    return quote(text.encode("latin-1", "replace"), safe="/")


def _wsgi_host(environ: WSGIEnvironment) -> str:
    if environ.get("HTTP_HOST"):
        return str(environ["HTTP_HOST"])
    # PEP 3333's URL reconstruction, for an HTTP/1.0 request without Host.
    name, port = environ.get("SERVER_NAME", "localhost"), environ.get("SERVER_PORT", "")
    default = "443" if environ.get("wsgi.url_scheme") == "https" else "80"
    return name if port in ("", default) else f"{name}:{port}"


def _read_environ_body(environ: WSGIEnvironment) -> int | None:
    """Read and drop a request body of at most MAX_BODY bytes; return its size.

    Read so that a kept-alive connection stays in step with its requests. A body
    declared larger is not read (its size is returned, for a 413), nor is one whose
    Content-Length is malformed (None: the resource answers 400 from the header).
    Without Content-Length, a body is read only where the server says the input
    ends (``wsgi.input_terminated``, PEP 3333's chunked bodies); elsewhere it is
    taken as empty, as PEP 3333 forbids reading past the declared length.
    """
    length = str(environ.get("CONTENT_LENGTH") or "").strip()
    stream = environ.get("wsgi.input")
    if length:
        if not (length.isascii() and length.isdigit()):
            return None
        declared = int(length)
        if declared > MAX_BODY or stream is None:
            return declared
        return _drain(stream, declared)
    if stream is not None and environ.get("wsgi.input_terminated"):
        return _drain(stream, MAX_BODY + 1)
    return 0


def _drain(stream: Any, limit: int) -> int:
    size = 0
    while size < limit:
        chunk = stream.read(min(limit - size, 16384))
        if not chunk:
            break
        size += len(chunk)
    return size


def _handle_environ(resource: TaskResource, environ: WSGIEnvironment) -> Response:
    return resource.handle(
        environ.get("REQUEST_METHOD", ""),
        _wire(environ.get("PATH_INFO", "")),
        _EnvironHeaders(environ),
        scheme=environ.get("wsgi.url_scheme", "http"),
        host=_wsgi_host(environ),
        root=_wire(environ.get("SCRIPT_NAME", "")),
        body_size=_read_environ_body(environ),
    )


def _sync_resource(
    adapter: str,
    tracker: TaskTracker | AsyncTaskTracker,
    authenticate: Authentication,
    prefix: str,
    allowed_origins: Iterable[str],
) -> TaskResource:
    """The resource of an adapter that answers in the request's own thread: no AsyncTaskTracker, no async def."""
    if isinstance(tracker, AsyncTaskTracker):
        raise TypeError(f"{adapter} serves a TaskTracker; an AsyncTaskTracker is for fastapi_router and asgi_app")
    if authenticate is not TRUST_ALL and _is_async(authenticate):
        raise TypeError(f"{adapter} calls authenticate in the request's thread: it must be a plain function")
    return TaskResource(tracker, authenticate=authenticate, prefix=prefix, allowed_origins=allowed_origins)


def wsgi_app(
    tracker: TaskTracker,
    *,
    authenticate: Authentication,
    prefix: str = DEFAULT_PREFIX,
    allowed_origins: Iterable[str] = (),
) -> WSGIApplication:
    """A WSGI application serving :class:`TaskResource` (arguments and errors as there).

    ``authenticate`` is required: the host's authenticator, or :data:`TRUST_ALL`.
    It matches PATH_INFO against ``prefix``, so mounted under a SCRIPT_NAME it
    serves ``SCRIPT_NAME + prefix + /task/...``, and ``self`` says so. Every
    other path is a JSON 404. Raises TypeError, besides, for an
    AsyncTaskTracker or an ``async def`` ``authenticate``.
    """
    resource = _sync_resource("wsgi_app", tracker, authenticate, prefix, allowed_origins)

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
        response = _handle_environ(resource, environ)
        headers, body = response.framed(environ.get("REQUEST_METHOD", ""))
        start_response(f"{response.status} {HTTPStatus(response.status).phrase}", headers)
        return [body]

    return app


# -- Flask -------------------------------------------------------------------------


def flask_blueprint(
    tracker: TaskTracker,
    *,
    authenticate: Authentication,
    prefix: str = DEFAULT_PREFIX,
    allowed_origins: Iterable[str] = (),
) -> flask.Blueprint:
    """A Flask blueprint named "tasklib" serving :class:`TaskResource` at ``prefix + /task``.

    ``authenticate`` is required: the host's authenticator, or :data:`TRUST_ALL`.
    Register it without a ``url_prefix`` (pass ``prefix`` here instead): the
    resource matches the application's whole path. Every path under
    ``prefix + /task`` is the resource's (JSON 404, never Werkzeug's HTML page nor
    its slash redirects); registering adds a converter named ``tasklib_rest`` to
    the application's URL map. Raises ImportError naming the extra when Flask is
    not installed, and as :func:`wsgi_app` for bad arguments.
    """
    try:
        import flask
        from werkzeug.routing import BaseConverter
    except ImportError as error:
        raise ImportError("tasklib.web.flask_blueprint needs Flask: pip install 'tasktally[flask]'") from error
    resource = _sync_resource("flask_blueprint", tracker, authenticate, prefix, allowed_origins)
    blueprint = flask.Blueprint("tasklib", __name__)
    head = prefix + "/task"

    class TaskPathConverter(BaseConverter):
        """Nothing, or "/" and anything: ".../task" and every path under it, empty segments included."""

        regex = r"(?:/.*)?"
        part_isolating = False

    def task_resource(rest: str) -> flask.Response:
        response = _handle_environ(resource, flask.request.environ)
        # Werkzeug drops the content of a HEAD answer and keeps its Content-Length.
        answer = flask.Response(response.body, response.status, response.headers)
        if response.status == 204:
            del answer.headers["Content-Type"]  # Flask's default, HTML, on an OPTIONS answer with no content
        return answer

    def add_converter(state: flask.blueprints.BlueprintSetupState) -> None:
        state.app.url_map.converters.setdefault("tasklib_rest", TaskPathConverter)

    def unrouted() -> flask.Response | None:
        # Werkzeug refuses a method that no rule lists ("get", "FOO") with its own
        # HTML 405 before any view runs: on the resource's paths, answer it here.
        path = flask.request.path
        if flask.request.routing_exception is not None and (path == head or path.startswith(head + "/")):
            return task_resource("")
        return None

    blueprint.record_once(add_converter)
    blueprint.before_app_request(unrouted)
    # merge_slashes=False: Werkzeug would otherwise answer a path with "//" by a
    # 308 redirect to one without, which a client follows, even with a POST.
    blueprint.add_url_rule(
        head + "<tasklib_rest:rest>",
        view_func=task_resource,
        methods=_METHODS,
        provide_automatic_options=False,
        merge_slashes=False,
        strict_slashes=False,
    )
    return blueprint


# -- ASGI: FastAPI and a bare application -------------------------------------------


def fastapi_router(
    tracker: TaskTracker | AsyncTaskTracker,
    *,
    authenticate: Authentication | AsyncAuthenticate,
    prefix: str = DEFAULT_PREFIX,
    allowed_origins: Iterable[str] = (),
) -> fastapi.APIRouter:
    """A FastAPI (Starlette) router serving :class:`TaskResource` at ``prefix + /task``.

    ``tracker`` is an :class:`~tasklib.AsyncTaskTracker`, whose methods are
    awaited, or a :class:`~tasklib.TaskTracker`, whose calls run in worker
    threads; either way the event loop never waits for the store (see
    :meth:`TaskResource.handle_async`). ``authenticate`` is required: the host's
    authenticator (a plain or an ``async def`` function), or :data:`TRUST_ALL`.
    Include it without a router ``prefix`` (pass ``prefix`` here instead);
    ``root_path`` is honoured. The two operations appear in the application's
    OpenAPI document as Jira declares them (``getTask``, ``cancelTask``, their
    status codes and bodies); every other path under ``prefix + /task`` is a
    JSON 404, never a redirect. Raises ImportError naming the extra when FastAPI
    is not installed, and as TaskResource for bad arguments.
    """
    try:
        import fastapi
        from fastapi.routing import APIRoute
        from starlette.routing import Match
        from starlette.types import Receive, Scope, Send
    except ImportError as error:
        raise ImportError("tasklib.web.fastapi_router needs FastAPI: pip install 'tasktally[fastapi]'") from error
    from .openapi import operations

    resource = TaskResource(tracker, authenticate=authenticate, prefix=prefix, allowed_origins=allowed_origins)
    head = prefix + "/task"

    async def answer(request: fastapi.Request, path: str) -> fastapi.Response:
        size = await _read_body(request.headers.get("content-length"), request.stream())
        server = request.scope.get("server")
        response = await resource.handle_async(
            request.method,
            path,
            request.headers,
            scheme=request.scope.get("scheme", "http"),
            host=request.headers.get("host") or (f"{server[0]}:{server[1]}" if server else "localhost"),
            root=quote(request.scope.get("root_path", ""), errors="replace"),
            body_size=size,
        )
        headers, body = response.framed(request.method)
        return fastapi.Response(body, response.status, dict(headers))

    # Starlette decoded the path: each route encodes its part again, so the resource decodes it once.
    async def task(request: fastapi.Request) -> fastapi.Response:
        return await answer(request, f"{head}/{quote(request.path_params['taskId'], safe='', errors='replace')}")

    async def cancel(request: fastapi.Request) -> fastapi.Response:
        task_id = quote(request.path_params["taskId"], safe="", errors="replace")
        return await answer(request, f"{head}/{task_id}/cancel")

    async def anything(request: fastapi.Request) -> fastapi.Response:
        return await answer(request, head + quote(request.path_params["rest"], safe="/", errors="replace"))

    class TaskPaths(APIRoute):
        """``prefix/task`` and every path under it, any method: the resource answers (404, 405...).

        Matched here rather than by a ``{rest:path}`` pattern, whose "." stops at a
        newline (``%0A``), where Starlette would answer a plain 404 or 405 of its own.
        """

        def matches(self, scope: Scope) -> tuple[Match, Scope]:
            path = _route_path(scope)
            rest = path[len(head) :]
            if scope["type"] != "http" or not path.startswith(head) or (rest and not rest.startswith("/")):
                return Match.NONE, {}
            return Match.FULL, {"endpoint": self.endpoint, "path_params": {"rest": rest}, "route": self}

        async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
            # Every method, "get" and "FOO" too: FastAPI's own check would answer them a plain 405.
            response = await anything(fastapi.Request(scope, receive))
            await response(scope, receive, send)

    for endpoint in (task, cancel, anything):
        # FastAPI reads the annotation to pass the Request; under "from __future__
        # import annotations" it is a string this module cannot resolve at run time.
        endpoint.__annotations__["request"] = fastapi.Request
    router = fastapi.APIRouter()
    get_task, cancel_task = operations()
    # The documented operations first; TaskPaths takes their other methods and every other path.
    # Their endpoints take the Request alone, so FastAPI adds no 422 that Jira does not answer.
    router.routes.append(APIRoute(f"{head}/{{taskId}}", task, methods=["GET"], **get_task))
    router.routes.append(APIRoute(f"{head}/{{taskId}}/cancel", cancel, methods=["POST"], **cancel_task))
    router.routes.append(TaskPaths(head, anything, methods=_METHODS, include_in_schema=False))
    return router


def _route_path(scope: Mapping[str, Any]) -> str:
    """An ASGI request's path within the application: without the ``root_path`` servers put in front."""
    path, root = str(scope.get("path", "")), str(scope.get("root_path", ""))
    if root and path.startswith(root) and path[len(root) : len(root) + 1] in ("", "/"):
        return path[len(root) :]
    return path


def _asgi_wire_path(scope: Mapping[str, Any]) -> str:
    """An ASGI request's path within the application, percent-encoded as the client sent it.

    From ``raw_path`` where the server gives it, so that "%2F" and "%23" stay
    encoded; a fragment a server left in is dropped, as no client sends one.
    Otherwise the decoded ``path``, encoded again, so the resource decodes it once.
    """
    root = str(scope.get("root_path", ""))
    raw = scope.get("raw_path")
    if not isinstance(raw, bytes):
        return quote(_route_path(scope), safe="/", errors="replace")
    wire = quote(raw.split(b"?", 1)[0].split(b"#", 1)[0], safe=_WIRE_SAFE)
    encoded_root = quote(root, safe=_WIRE_SAFE, errors="replace")
    if encoded_root and wire.startswith(encoded_root) and wire[len(encoded_root) : len(encoded_root) + 1] in ("", "/"):
        return wire[len(encoded_root) :]  # servers put the root path in front of the path
    return wire


async def _read_body(length: str | None, chunks: AsyncIterator[bytes]) -> int | None:
    """Read and drop a request body of at most MAX_BODY + 1 bytes; return its size.

    None, unread, for a malformed or too large ``Content-Length``: the resource
    answers from the header. A body without one (chunked) is read up to the limit.
    """
    declared = (length or "").strip()
    if declared and not (declared.isascii() and declared.isdigit() and int(declared) <= MAX_BODY):
        return None
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > MAX_BODY:
            break
    return size


async def _asgi_chunks(receive: Callable[[], Awaitable[dict[str, Any]]]) -> AsyncIterator[bytes]:
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return  # http.disconnect: the client is gone
        yield bytes(message.get("body", b""))
        if not message.get("more_body", False):
            return


def asgi_app(
    tracker: TaskTracker | AsyncTaskTracker,
    *,
    authenticate: Authentication | AsyncAuthenticate,
    prefix: str = DEFAULT_PREFIX,
    allowed_origins: Iterable[str] = (),
) -> Callable[[dict[str, Any], Any, Any], Awaitable[None]]:
    """An ASGI 3 application serving :class:`TaskResource`, for hosts without a framework.

    Needs nothing beyond the standard library: serve it with any ASGI server
    running an asyncio loop (``uvicorn module:app``). Arguments and errors as :func:`fastapi_router`:
    an :class:`~tasklib.AsyncTaskTracker` is awaited, a
    :class:`~tasklib.TaskTracker` runs in worker threads, ``authenticate`` may
    be ``async def``; the event loop never waits for the store. It matches the
    path (without the scope's ``root_path``) against ``prefix``; every other path
    is a JSON 404. It answers the lifespan protocol (opening and closing nothing:
    the tracker is the host's) and refuses WebSocket connections.
    """
    resource = TaskResource(tracker, authenticate=authenticate, prefix=prefix, allowed_origins=allowed_origins)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if kind == "websocket":
            await send({"type": "websocket.close", "code": 1008})  # before accept: the server answers 403
            return
        if kind != "http":
            raise ValueError(f"tasklib.web.asgi_app serves HTTP, not {kind!r}")
        headers: dict[str, str] = {}
        for name, value in scope.get("headers", ()):
            # The first of a repeated field, as Starlette's Headers.get gives it.
            headers.setdefault(bytes(name).decode("latin-1").lower(), bytes(value).decode("latin-1"))
        root = scope.get("root_path", "")
        server = scope.get("server")
        method = scope.get("method", "")
        response = await resource.handle_async(
            method,
            _asgi_wire_path(scope),
            headers,
            scheme=scope.get("scheme", "http"),
            host=headers.get("host") or (f"{server[0]}:{server[1]}" if server else "localhost"),
            root=quote(root, errors="replace"),
            body_size=await _read_body(headers.get("content-length"), _asgi_chunks(receive)),
        )
        fields, body = response.framed(method)
        raw = [(name.lower().encode("latin-1"), value.encode("latin-1", "replace")) for name, value in fields]
        await send({"type": "http.response.start", "status": response.status, "headers": raw})
        await send({"type": "http.response.body", "body": body})

    return app
