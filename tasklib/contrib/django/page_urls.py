"""The live task page, for ``path("tasks/", include("tasklib.contrib.django.page_urls"))``.

Include Jira's routes too (``tasklib.contrib.django.urls``): the page cancels there.
"""

from __future__ import annotations

from django.urls import re_path

from .views import task_page

__all__ = ["app_name", "urlpatterns"]

app_name = "tasklib_page"
urlpatterns = [re_path(r"^(?P<rest>[\s\S]*)\Z", task_page, name="page")]
