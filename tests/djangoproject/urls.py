"""The test project's URLs: Jira's task routes where Jira has them, the admin, a host view."""

from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from .host import start

urlpatterns = [
    path("rest/api/3/", include("tasklib.contrib.django.urls")),
    path("admin/", admin.site.urls),
    path("work/", start),
    path("tasks/", include("tasklib.contrib.django.page_urls")),
]
