"""Serve tasks over HTTP as Jira Cloud's task resource: get a task, cancel a task.

:class:`TaskResource` is the whole protocol and needs no web framework: it takes a
request's method, path and headers and returns a :class:`Response`. Thin adapters
put it on a server: :func:`wsgi_app` (standard library only), :func:`flask_blueprint`
(``pip install tasktally[flask]``) and :func:`fastapi_router` (``pip install
tasktally[fastapi]``); flask and fastapi are imported only when those are called.

Status codes and bodies are those of Jira's REST API v3:

======================================  ==========================================
``GET {prefix}/task/{taskId}``          200 the task, 401, 403, 404
``POST {prefix}/task/{taskId}/cancel``  202 the task, 400, 401, 403, 404
another method on either path           405, with ``Allow``
any other path                          404
======================================  ==========================================

Error bodies are Jira's ErrorCollection, ``{"errorMessages": [...], "errors": {}}``,
except the cancel operation's, which Jira's specification declares as a JSON array
of strings. Every body is ``application/json;charset=UTF-8``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote

from .checks import is_int
from .errors import PermissionDenied, TaskNotCancellable, TaskNotFound
from .jsonvalue import dumps
from .task import API_PREFIX, Task
from .tracker import TaskTracker

if TYPE_CHECKING:
    import fastapi
    import flask
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = [
    "DEFAULT_PREFIX",
    "Authenticate",
    "Response",
    "TaskResource",
    "fastapi_router",
    "flask_blueprint",
    "wsgi_app",
]

#: Where Jira serves its REST API v3; the task paths are ``{prefix}/task/...``.
DEFAULT_PREFIX = API_PREFIX

#: The host's authenticator: request headers (case-insensitive) to a user id, or
#: None for an anonymous caller.
Authenticate = Callable[[Mapping[str, str]], int | None]

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


@dataclasses.dataclass(frozen=True)
class Response:
    """An HTTP response: the status code, the header fields in order, the body."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes


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


def _string_array(status: int, message: str) -> Response:
    return _json(status, [message])


class TaskResource:
    """Jira's task resource, ``GET {prefix}/task/{taskId}`` and ``POST .../cancel``, on a tracker.

    ``authenticate(headers)`` is the host's: it returns the caller's user id, or
    None for an anonymous caller (answered 401); the tracker then lets only the
    task's submitter or an administrator see or cancel it (403 for others).
    Without ``authenticate`` every caller is trusted as the host's own code.
    ``prefix`` is the path before ``/task/``, as it appears in URLs: empty, or
    starting and not ending with ``/``.

    Raises TypeError for an ``authenticate`` that is not callable and ValueError
    for a malformed ``prefix``.
    """

    def __init__(
        self,
        tracker: TaskTracker,
        *,
        authenticate: Authenticate | None = None,
        prefix: str = DEFAULT_PREFIX,
    ) -> None:
        if authenticate is not None and not callable(authenticate):
            raise TypeError("authenticate must be a callable(headers) -> int | None, or None")
        if not isinstance(prefix, str):
            raise TypeError(f"prefix must be a str, not {type(prefix).__name__}")
        if prefix and (not prefix.startswith("/") or prefix.endswith("/")):
            raise ValueError(f"prefix must be empty or start and not end with '/', got {prefix!r}")
        self.tracker = tracker
        self.authenticate = authenticate
        self.prefix = prefix

    def handle(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str],
        *,
        scheme: str = "http",
        host: str = "localhost",
        root: str = "",
    ) -> Response:
        """Answer one request, as Jira would.

        ``path`` is the request's path within the application as the client sent
        it (percent-encoded, no query string): the id is percent-decoded exactly
        once here. ``headers`` (a case-insensitive mapping) goes to
        ``authenticate`` only. ``scheme``, ``host`` (with any port) and ``root``
        (the percent-encoded path the application is mounted at, WSGI's
        SCRIPT_NAME) build a task's ``self`` when the tracker has no ``base_url``;
        behind a proxy, or where the Host header is not to be trusted, give the
        tracker a ``base_url``.

        Nothing in a request makes this raise. It raises what ``authenticate``
        raises (an error there is the host's bug, and the host's to answer), and
        TrackerClosed or StoreError from the tracker.
        """
        route = self._route(path)
        if route is None:
            return _error_collection(404, _NO_RESOURCE)
        task_id, cancel = route
        allowed = "POST" if cancel else "GET"
        if method != allowed:
            return _error_collection(405, f"Only {allowed} is allowed here.", ("Allow", allowed))
        error = _string_array if cancel else _error_collection
        user = None
        if self.authenticate is not None:
            user = self.authenticate(headers)
            if user is None:
                return error(401, _UNAUTHENTICATED)
            if not is_int(user):
                # The host's bug: say so by name rather than let the tracker blame as_user.
                raise TypeError(f"authenticate() must return an int user id or None, not {type(user).__name__}")
        try:
            task = self.tracker.cancel(task_id, as_user=user) if cancel else self.tracker.get(task_id, as_user=user)
        except TaskNotFound:
            return error(404, _TASK_NOT_FOUND)
        except PermissionDenied:
            return error(403, _FORBIDDEN)
        except TaskNotCancellable:
            return error(400, _NOT_CANCELLABLE)
        return _json(202 if cancel else 200, self._located(task, scheme, host, root).to_dict())

    def see_other(self, task: Task, *, scheme: str = "http", host: str = "localhost", root: str = "") -> Response:
        """A 303 See Other pointing at ``task``, as Jira answers an operation that starts a task.

        For the host's own endpoints: ``Location`` is the task's URL (built as in
        :meth:`handle`), and the body is the task's JSON. Raises nothing.
        """
        task = self._located(task, scheme, host, root)
        return _json(303, task.to_dict(), ("Location", task.url))

    def _route(self, path: str) -> tuple[str, bool] | None:
        """The decoded task id and whether it is the cancel path, or None for another path."""
        head = self.prefix + "/task/"
        if not path.startswith(head):
            return None
        # "replace": bytes that are not UTF-8 give U+FFFD, which is in no id and
        # is not "cancel", so the answer is the right 404 and never an exception.
        segments = [unquote(segment, errors="replace") for segment in path[len(head) :].split("/")]
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


def _handle_environ(resource: TaskResource, environ: WSGIEnvironment) -> Response:
    return resource.handle(
        environ.get("REQUEST_METHOD", ""),
        _wire(environ.get("PATH_INFO", "")),
        _EnvironHeaders(environ),
        scheme=environ.get("wsgi.url_scheme", "http"),
        host=_wsgi_host(environ),
        root=_wire(environ.get("SCRIPT_NAME", "")),
    )


def wsgi_app(
    tracker: TaskTracker,
    *,
    authenticate: Authenticate | None = None,
    prefix: str = DEFAULT_PREFIX,
) -> WSGIApplication:
    """A WSGI application serving :class:`TaskResource` (arguments and errors as there).

    It matches PATH_INFO against ``prefix``, so mounted under a SCRIPT_NAME it
    serves ``SCRIPT_NAME + prefix + /task/...``, and ``self`` says so.
    """
    resource = TaskResource(tracker, authenticate=authenticate, prefix=prefix)

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
        response = _handle_environ(resource, environ)
        status = f"{response.status} {HTTPStatus(response.status).phrase}"
        start_response(status, [*response.headers, ("Content-Length", str(len(response.body)))])
        return [response.body]

    return app


# -- Flask and FastAPI -----------------------------------------------------------


def flask_blueprint(
    tracker: TaskTracker,
    *,
    authenticate: Authenticate | None = None,
    prefix: str = DEFAULT_PREFIX,
) -> flask.Blueprint:
    """A Flask blueprint named "tasklib" serving :class:`TaskResource` at ``prefix + /task/``.

    Register it without a ``url_prefix`` (pass ``prefix`` here instead): the
    resource matches the application's whole path. Raises ImportError naming the
    extra when Flask is not installed, and as TaskResource for bad arguments.
    """
    try:
        import flask
    except ImportError as error:
        raise ImportError("tasklib.web.flask_blueprint needs Flask: pip install tasktally[flask]") from error
    resource = TaskResource(tracker, authenticate=authenticate, prefix=prefix)
    blueprint = flask.Blueprint("tasklib", __name__)

    def task_resource(rest: str) -> flask.Response:
        response = _handle_environ(resource, flask.request.environ)
        return flask.Response(response.body, response.status, response.headers)

    # merge_slashes=False: Werkzeug would otherwise answer a path with "//" by a
    # 308 redirect to one without, which a client follows, even with a POST.
    blueprint.add_url_rule(
        prefix + "/task/<path:rest>",
        view_func=task_resource,
        methods=_METHODS,
        provide_automatic_options=False,
        merge_slashes=False,
    )
    return blueprint


def fastapi_router(
    tracker: TaskTracker,
    *,
    authenticate: Authenticate | None = None,
    prefix: str = DEFAULT_PREFIX,
) -> fastapi.APIRouter:
    """A FastAPI (Starlette) router serving :class:`TaskResource` at ``prefix + /task/``.

    Include it without a router ``prefix`` (pass ``prefix`` here instead);
    ``root_path`` is honoured. Raises ImportError naming the extra when FastAPI
    is not installed, and as TaskResource for bad arguments.
    """
    try:
        import fastapi
    except ImportError as error:
        raise ImportError("tasklib.web.fastapi_router needs FastAPI: pip install tasktally[fastapi]") from error
    resource = TaskResource(tracker, authenticate=authenticate, prefix=prefix)
    head = prefix + "/task/"

    # A plain def, not async: Starlette runs it in its thread pool, so the
    # tracker's blocking database call never stalls the event loop.
    def task_resource(request: fastapi.Request) -> fastapi.Response:
        server = request.scope.get("server")
        response = resource.handle(
            request.method,
            # Starlette decoded the path; encode the rest again so it is decoded once.
            head + quote(request.path_params["rest"], safe="/", errors="replace"),
            request.headers,
            scheme=request.scope.get("scheme", "http"),
            host=request.headers.get("host") or (f"{server[0]}:{server[1]}" if server else "localhost"),
            root=quote(request.scope.get("root_path", ""), errors="replace"),
        )
        return fastapi.Response(response.body, response.status, dict(response.headers))

    router = fastapi.APIRouter()
    router.add_route(head + "{rest:path}", task_resource, methods=_METHODS, include_in_schema=False)
    return router
