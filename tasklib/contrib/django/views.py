"""Jira's task routes as Django views, on tasklib's framework-free :class:`~tasklib.web.TaskResource`.

CSRF: the views are exempt from Django's CSRF middleware. They are an API for
non-browser clients, which send no CSRF token; a browser session's cookie is
Django's ``SameSite=Lax`` by default, which a cross-site POST does not carry, and
tasklib's web core applies its own cross-site checks to the cancel route.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse
from django.urls import NoReverseMatch, reverse
from django.views.decorators.csrf import csrf_exempt

from ...page import TaskPage
from ...web import Response, TaskResource
from . import get_tracker
from .conf import user_id

__all__ = ["task_page", "task_resource"]


def _caller(request: HttpRequest) -> Any:
    user = getattr(request, "user", None)
    if user is None:
        raise ImproperlyConfigured(
            "tasklib.contrib.django's views need django.contrib.auth.middleware.AuthenticationMiddleware"
        )
    return user


def _django_response(response: Response, method: str) -> HttpResponse:
    headers, body = response.framed(method)  # HEAD: the GET's Content-Length, no content
    answer = HttpResponse(body, status=response.status)
    if response.status == 204:
        del answer["Content-Type"]  # Django's default, HTML, on an OPTIONS answer with no content
    for name, value in headers:
        answer[name] = value
    return answer


@csrf_exempt
def task_resource(request: HttpRequest, rest: str | None = None) -> HttpResponse:
    """``GET task/{taskId}`` and ``POST task/{taskId}/cancel``, answered as Jira does.

    The caller is ``request.user`` (Django's authentication): anonymous is 401,
    its ``pk`` is the tasklib user id. Raises ImproperlyConfigured without
    Django's AuthenticationMiddleware or with a user model whose keys are not ints.
    """
    user = _caller(request)

    def authenticate(headers: Mapping[str, str]) -> int | None:
        return user_id(user) if user.is_authenticated else None

    # prefix="": Django's URL resolver already matched the include()'s prefix, so
    # the resource sees only "/task/..." and the prefix becomes part of the root.
    resource = TaskResource(get_tracker(), authenticate=authenticate, prefix="")
    tail = "/task" if rest is None else "/task/" + rest
    root = request.path[: len(request.path) - len(tail)]
    response = resource.handle(
        request.method or "",
        # Django decoded the path: encode it again so the resource decodes it once.
        quote(tail, safe="/", errors="replace"),
        request.headers,
        scheme=request.scheme or "http",
        host=request.get_host(),
        root=quote(root, safe="/", errors="replace"),
    )
    return _django_response(response, request.method or "")


def task_page(request: HttpRequest, rest: str) -> HttpResponse:
    """The live task page (:class:`tasklib.page.TaskPage`) for ``request.user``, wherever it is included.

    Its script cancels through Jira's routes, which must be included too
    (``tasklib.contrib.django.urls``). Raises ImproperlyConfigured when they are
    not, or as :func:`task_resource`.
    """
    user = _caller(request)

    def authenticate(headers: Mapping[str, str]) -> int | None:
        return user_id(user) if user.is_authenticated else None

    try:
        api = reverse("tasklib:task", kwargs={"rest": ""})
    except NoReverseMatch as exc:
        raise ImproperlyConfigured(
            'the task page needs Jira\'s routes: path("rest/api/3/", include("tasklib.contrib.django.urls"))'
        ) from exc
    mount = request.path[: len(request.path) - len(rest)].rstrip("/")
    page = TaskPage(get_tracker(), authenticate=authenticate, prefix=quote(mount), api_prefix=api[: -len("/task/")])
    response = page.handle(
        request.method or "", quote(request.path), request.META.get("QUERY_STRING", ""), request.headers
    )
    return _django_response(response, request.method or "")
