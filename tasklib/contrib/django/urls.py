"""Jira's two task routes, for ``path("rest/api/3/", include("tasklib.contrib.django.urls"))``.

Every method reaches the view, so that tasklib, not Django, answers 405 with
Jira's body.
"""

from __future__ import annotations

from django.urls import re_path

from .views import task_resource

__all__ = ["app_name", "urlpatterns"]

app_name = "tasklib"
# [\s\S], not ".": an id holding an encoded newline must reach the resource (a
# 404 of Jira's), not fall through to the host's HTML 404. The bare "task" too,
# which CommonMiddleware's APPEND_SLASH would otherwise redirect.
urlpatterns = [
    re_path(r"^task/(?P<rest>[\s\S]*)\Z", task_resource, name="task"),
    re_path(r"^task\Z", task_resource, name="task-root"),
]
