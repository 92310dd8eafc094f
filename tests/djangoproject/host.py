"""The host's own code in the test project: header authentication and a view that starts work."""

from __future__ import annotations

import time

from django.contrib.auth.middleware import RemoteUserMiddleware
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

import tasklib
from tasklib.contrib.django import get_tracker
from tasklib.web import TaskResource


class HeaderUserMiddleware(RemoteUserMiddleware):
    """Authenticates a request by its ``X-Remote-User`` header, as a proxy in front of Django would."""

    header = "HTTP_X_REMOTE_USER"


def work(steps: int, step_seconds: float) -> dict[str, int]:
    """Reports progress ``steps`` times, stopping when cancelled."""
    task = tasklib.current_task()
    for done in range(1, steps + 1):
        for _ in range(10):  # short sleeps, so a cancel request is seen at once
            task.raise_if_cancelled()
            time.sleep(step_seconds / 10)
        task.update_progress(done * 100 // steps, f"{done} of {steps}")
    return {"steps": steps}


@csrf_exempt
def start(request: HttpRequest) -> HttpResponse:
    """POST: start ``work`` for the signed-in user; 303 See Other to the task, as Jira does."""
    if not request.user.is_authenticated:
        return HttpResponse(status=401)
    steps = int(request.GET.get("steps", "3"))
    seconds = float(request.GET.get("seconds", "0.1"))
    tracker = get_tracker()
    if request.GET.get("driven"):
        # Host-driven: started here, and left for the host's own code to finish.
        task = tracker.submit(description="driven by the host", submitted_by=request.user.pk)
        task = tracker.start(task.id)
    else:
        task = tracker.submit(work, steps, seconds, description=f"work of {steps} steps", submitted_by=request.user.pk)
    resource = TaskResource(tracker, authenticate=lambda headers: request.user.pk)
    response = resource.see_other(task, scheme=request.scheme, host=request.get_host())
    answer = HttpResponse(response.body, status=response.status)
    for name, value in response.headers:
        answer[name] = value
    return answer
