"""A live task page: the viewer's tasks, newest first, with progress bars that follow the work.

:class:`TaskPage` needs no web framework and nothing from the network: its HTML,
CSS and JavaScript ship in the package. Served at ``prefix`` (``/tasks`` by
default):

=================================  ===================================================
``GET {prefix}/``                  the page: tasks newest first, ``?status=`` filters,
                                   ``?after=ID`` pages; readable without JavaScript
``GET {prefix}/tasks.json``        a tasklib extension: ``{"tasks": [...], "next": ID}``,
                                   the same query; each task is Jira's JSON plus
                                   ``"cancellable"``
``GET {prefix}/tasklib-progress.js``  a binder of a ``<progress>`` to a task's URL, for
                                   the host's own pages
``GET {prefix}/page.js``           the page's script
=================================  ===================================================

The page's script refreshes the rows from ``tasks.json`` once a second and
cancels through Jira's route, ``POST {api_prefix}/task/{id}/cancel``, so the
tracker's rules apply. A user sees their own tasks; an administrator
(:meth:`~tasklib.TaskTracker.is_admin`) sees every task.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlencode

from .errors import TaskError
from .status import TaskStatus
from .task import Task
from .tracker import TaskTracker
from .web import DEFAULT_PREFIX, TRUST_ALL, Authenticate, Authentication, Response, wsgi_app

if TYPE_CHECKING:
    import fastapi
    import flask
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["DEFAULT_PAGE_PREFIX", "TaskPage", "fastapi_page_router", "flask_page_blueprint", "page_app"]

#: Where :class:`TaskPage` is served by default.
DEFAULT_PAGE_PREFIX = "/tasks"

_SCRIPTS = ("tasklib-progress.js", "page.js")
_CANCELLABLE = frozenset({TaskStatus.ENQUEUED, TaskStatus.RUNNING})
_HTML = "text/html;charset=UTF-8"
_JS = "text/javascript;charset=UTF-8"
_JSON = "application/json;charset=UTF-8"

_STYLE = """
:root { color-scheme: light dark; font-family: system-ui, sans-serif; }
body { margin: 0 auto; max-width: 64rem; padding: 1rem; }
table { border-collapse: collapse; width: 100%; }
th, td { border-bottom: 1px solid #8884; padding: .5rem .4rem; text-align: left; vertical-align: top; }
progress { width: 8rem; max-width: 100%; }
.message { display: block; font-size: .85em; opacity: .8; overflow-wrap: anywhere; }
.filter { display: flex; flex-wrap: wrap; gap: .5rem; align-items: end; margin-bottom: 1rem; }
button, select { font: inherit; }
@media (max-width: 40rem) {
  thead { display: none; }
  table, tbody, tr, td { display: block; width: auto; }
  tr { border-bottom: 1px solid #8884; padding: .5rem 0; }
  td { border: 0; padding: .15rem 0; }
  td[data-label]::before { content: attr(data-label) ": "; font-weight: 600; }
  progress { width: 100%; }
}
"""


def _elapsed(ms: int | None) -> str:
    seconds = (ms or 0) // 1000
    return f"{seconds} s" if seconds < 60 else f"{seconds // 60} min {seconds % 60} s"


def _script(name: str) -> bytes:
    return resources.files("tasklib").joinpath("static").joinpath(name).read_bytes()


def _answer(status: int, content_type: str, body: bytes) -> Response:
    # no-store: the page is one user's, and current at load.
    return Response(status, [("Content-Type", content_type), ("Cache-Control", "no-store")], body)


def _message(status: int, text: str) -> Response:
    page = f"<!doctype html><html lang='en'><meta charset='utf-8'><title>Tasks</title><p>{html.escape(text)}</p>"
    return _answer(status, _HTML, page.encode())


class TaskPage:
    """The live task page on a tracker (see the module).

    ``authenticate(headers)`` is the host's, as for :class:`~tasklib.web.TaskResource`:
    the viewer's user id, or None (answered 401); or :data:`~tasklib.web.TRUST_ALL`,
    for a host that authenticates in front of the page: every viewer sees every
    task (what ``tasklib serve`` does without user tokens). ``prefix`` is where the page is
    served and ``api_prefix`` where Jira's routes are (the page's script cancels
    there); both empty or starting and not ending with ``/``. ``page_size``: rows
    per page, 1 to 1000.

    Raises TypeError for a non-callable ``authenticate``, ValueError for a
    malformed prefix or page size.
    """

    def __init__(
        self,
        tracker: TaskTracker,
        *,
        authenticate: Authentication,
        prefix: str = DEFAULT_PAGE_PREFIX,
        api_prefix: str = DEFAULT_PREFIX,
        page_size: int = 25,
    ) -> None:
        if authenticate is not TRUST_ALL and not callable(authenticate):
            raise TypeError("authenticate must be a callable(headers) -> int | None")
        for name, value in (("prefix", prefix), ("api_prefix", api_prefix)):
            if not isinstance(value, str) or (value and (not value.startswith("/") or value.endswith("/"))):
                raise ValueError(f"{name} must be empty or start and not end with '/', got {value!r}")
        if not isinstance(page_size, int) or isinstance(page_size, bool) or not 1 <= page_size <= 1000:
            raise ValueError(f"page_size must be an int from 1 to 1000, got {page_size!r}")
        self.tracker = tracker
        self.authenticate = authenticate
        self.prefix = prefix
        self.api_prefix = api_prefix
        self.page_size = page_size

    def handles(self, path: str) -> bool:
        """Whether ``path`` (within the application) is one of the page's."""
        return path == self.prefix or path.startswith(self.prefix + "/")

    def handle(self, method: str, path: str, query: str, headers: Mapping[str, str], *, root: str = "") -> Response:
        """Answer one request for the page; ``root`` is the percent-encoded path the application is mounted at.

        ``headers`` is case-insensitive or has lower-case names; it goes to
        ``authenticate`` only. ``query`` is the raw query string.

        Nothing in a request makes this raise; it raises what ``authenticate``
        raises, and TrackerClosed or StoreError from the tracker.
        """
        if not self.handles(path):
            return _message(404, "No page here.")
        rest = path[len(self.prefix) :]
        if rest in ("", "/"):
            route = "page"
        elif rest[1:] in _SCRIPTS:
            route = rest[1:]
        elif rest == "/tasks.json":
            route = "feed"
        else:
            return _message(404, "No page here.")
        if method not in ("GET", "HEAD"):
            answer = _message(405, "Only GET is allowed here.")
            return Response(405, [*answer.headers, ("Allow", "GET, HEAD")], answer.body)
        if route in _SCRIPTS:
            return _answer(200, _JS, _script(route))
        user = None if self.authenticate is TRUST_ALL else self.authenticate(headers)
        if user is None and self.authenticate is not TRUST_ALL:
            return _message(401, "Sign in to see your tasks.")
        params = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
        status = params.get("status") or None
        after = params.get("after") or None
        admin = user is None or self.tracker.is_admin(user)
        try:
            tasks = self.tracker.list(
                status=status, submitted_by=None if admin else user, limit=self.page_size, after=after
            )
        except (TypeError, ValueError, TaskError):
            return _message(400, "Unknown status or page.")
        following = tasks[-1].id if len(tasks) == self.page_size else None
        if route == "feed":
            feed = {"tasks": [self._entry(task) for task in tasks], "next": following}
            text = json.dumps(feed, ensure_ascii=False, separators=(",", ":"))
            return _answer(200, _JSON, text.encode("utf-8", "replace"))
        return _answer(200, _HTML, self._page(tasks, status, after, following, root).encode("utf-8", "replace"))

    def _entry(self, task: Task) -> dict[str, Any]:
        return {**task.to_dict(), "cancellable": task.status in _CANCELLABLE}

    def _page(self, tasks: list[Task], status: str | None, after: str | None, following: str | None, root: str) -> str:
        e = html.escape
        here = root + self.prefix
        query = urlencode({k: v for k, v in (("status", status), ("after", after)) if v})
        options = "".join(
            f"<option value='{s.value}'{' selected' if s.value == status else ''}>{s.value}</option>"
            for s in TaskStatus
        )
        rows = "".join(self._row(task) for task in tasks) or (
            "<tr id='tasklib-empty'><td colspan='5'>No tasks.</td></tr>"
        )
        older = ""
        if following is not None:
            older_query = urlencode({k: v for k, v in (("status", status), ("after", following)) if v})
            older = f"<p><a href='{e(here)}/?{older_query}'>Older tasks</a></p>"
        newest = f"<p><a href='{e(here)}/'>Newest tasks</a></p>" if after else ""
        return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Tasks</title><style>{_STYLE}</style></head>
<body><main>
<h1>Tasks</h1>
<form class="filter" method="get" action="{e(here)}/">
<label>Status <select name="status"><option value="">any</option>{options}</select></label>
<button type="submit">Show</button></form>
<noscript><p>This list is as it was when the page loaded: reload it to see progress.</p></noscript>
<table id="tasklib-tasks" data-feed="{e(here)}/tasks.json?{e(query)}" data-api="{e(root + self.api_prefix)}/task/"
 data-first-page="{"false" if after else "true"}">
<thead><tr><th>Task</th><th>Submitted by</th><th>Status</th><th>Progress</th><th>Elapsed</th><th></th></tr></thead>
<tbody>{rows}</tbody></table>
{newest}{older}
<template id="tasklib-row">{self._row(None)}</template>
</main>
<script src="{e(here)}/tasklib-progress.js"></script>
<script src="{e(here)}/page.js"></script>
</body></html>
"""

    def _row(self, task: Task | None) -> str:
        e = html.escape
        if task is None:  # the template the script fills for a task that appears later
            ident, description, submitter, status, progress, message, elapsed, cancellable = (
                "",
                "",
                "",
                "",
                0,
                "",
                "",
                False,
            )
        else:
            ident, description = task.id, task.description or f"Task {task.id}"
            submitter, status, progress = str(task.submitted_by), task.status.value, task.progress
            message, elapsed = task.message or "", _elapsed(task.to_dict().get("elapsedRuntime"))
            cancellable = task.status in _CANCELLABLE
        label = e(f"Progress of task {ident}: {description}")
        return (
            f"<tr id='task-{e(ident)}' data-task='{e(ident)}' data-status='{e(status)}'>"
            f"<td class='description' data-label='Task'>{e(description)}</td>"
            f"<td class='submitter' data-label='Submitted by'>{e(submitter)}</td>"
            f"<td class='status' data-label='Status'>{e(status)}</td>"
            f"<td data-label='Progress'><progress max='100' value='{progress}' aria-label='{label}'>{progress}%</progress>"
            f"<span class='message'>{e(message)}</span></td>"
            f"<td class='elapsed' data-label='Elapsed'>{e(elapsed)}</td>"
            f"<td><button type='button' class='cancel' hidden{' data-cancellable' if cancellable else ''}>"
            "Cancel</button></td></tr>"
        )


def page_app(
    tracker: TaskTracker,
    *,
    authenticate: Authenticate,
    prefix: str = DEFAULT_PAGE_PREFIX,
    api_prefix: str = DEFAULT_PREFIX,
) -> WSGIApplication:
    """A WSGI application serving the :class:`TaskPage` at ``prefix`` and Jira's routes (:func:`~tasklib.web.wsgi_app`).

    Arguments and errors as :class:`TaskPage`.
    """
    page = TaskPage(tracker, authenticate=authenticate, prefix=prefix, api_prefix=api_prefix)
    api = wsgi_app(tracker, authenticate=authenticate, prefix=api_prefix)

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Any:
        path = environ.get("PATH_INFO", "")
        if not page.handles(path):
            return api(environ, start_response)
        headers = {k[5:].replace("_", "-").lower(): str(v) for k, v in environ.items() if k.startswith("HTTP_")}
        response = page.handle(
            environ.get("REQUEST_METHOD", ""),
            path,
            environ.get("QUERY_STRING", ""),
            headers,
            root=environ.get("SCRIPT_NAME", ""),
        )
        body = b"" if environ.get("REQUEST_METHOD") == "HEAD" else response.body
        reason = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed"}
        start_response(
            f"{response.status} {reason[response.status]}",
            [*response.headers, ("Content-Length", str(len(body)))],
        )
        return [body]

    return app


def flask_page_blueprint(
    tracker: TaskTracker,
    *,
    authenticate: Authenticate,
    prefix: str = DEFAULT_PAGE_PREFIX,
    api_prefix: str = DEFAULT_PREFIX,
) -> flask.Blueprint:
    """A Flask blueprint named "tasklib_page" serving the :class:`TaskPage` at ``prefix``.

    Register it without a ``url_prefix``, beside :func:`tasklib.web.flask_blueprint`
    for Jira's routes. Raises ImportError naming the extra without Flask, and as
    TaskPage for bad arguments.
    """
    try:
        import flask
    except ImportError as error:
        raise ImportError("tasklib.page.flask_page_blueprint needs Flask: pip install 'tasktally[flask]'") from error
    page = TaskPage(tracker, authenticate=authenticate, prefix=prefix, api_prefix=api_prefix)
    blueprint = flask.Blueprint("tasklib_page", __name__)

    def task_page(rest: str = "") -> flask.Response:
        request = flask.request
        response = page.handle(
            request.method,
            request.path,
            request.query_string.decode("latin-1"),
            {name.lower(): value for name, value in request.headers.items()},
            root=request.script_root,
        )
        return flask.Response(response.body, response.status, response.headers)

    for rule in (prefix + "/", prefix + "/<path:rest>"):
        blueprint.add_url_rule(rule, view_func=task_page, methods=["GET", "HEAD", "POST"], endpoint=rule)
    return blueprint


def fastapi_page_router(
    tracker: TaskTracker,
    *,
    authenticate: Authenticate,
    prefix: str = DEFAULT_PAGE_PREFIX,
    api_prefix: str = DEFAULT_PREFIX,
) -> fastapi.APIRouter:
    """A FastAPI (Starlette) router serving the :class:`TaskPage` at ``prefix``.

    Include it without a router ``prefix``, beside :func:`tasklib.web.fastapi_router`;
    ``root_path`` is honoured. Raises ImportError naming the extra without
    FastAPI, and as TaskPage for bad arguments.
    """
    try:
        import fastapi
    except ImportError as error:
        raise ImportError("tasklib.page.fastapi_page_router needs FastAPI: pip install 'tasktally[fastapi]'") from error
    page = TaskPage(tracker, authenticate=authenticate, prefix=prefix, api_prefix=api_prefix)

    # A plain def: Starlette runs it in its thread pool, off the event loop.
    def task_page(request: fastapi.Request) -> fastapi.Response:
        response = page.handle(
            request.method,
            prefix + "/" + request.path_params.get("rest", ""),
            request.url.query,
            request.headers,
            root=request.scope.get("root_path", ""),
        )
        return fastapi.Response(response.body, response.status, dict(response.headers))

    router = fastapi.APIRouter()
    router.add_route(prefix + "/{rest:path}", task_page, methods=["GET", "HEAD", "POST"], include_in_schema=False)
    return router
