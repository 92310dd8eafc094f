"""The Django admin over tasklib's tasks: read-only, with a Cancel action through the tracker.

Shown only when ``TASKLIB["DATABASE"]`` is the alias of a Django database, where
the admin can read tasklib's table; listed rows show the status the tracker
reports (a task whose runner is gone reads DEAD), filterable by stored status and
submitter, searchable by description.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from ...errors import PermissionDenied, TaskNotCancellable, TaskNotFound
from ...status import TaskStatus
from . import get_tracker
from .conf import database_alias, user_id
from .models import Task

__all__ = ["TaskAdmin"]


@admin.register(Task)
class TaskAdmin(admin.ModelAdmin):
    """Tasks, newest first; nothing is added, edited or deleted here."""

    list_display = ("id", "description", "submitted_by", "current_status", "progress", "message", "submitted_at")
    list_display_links = ("id", "description")
    list_filter = ("status", "submitted_by")
    search_fields = ("description",)
    actions = ("cancel_tasks",)
    fields = (
        "id",
        "description",
        "submitted_by",
        "current_status",
        "progress",
        "message",
        "result",
        "submitted_at",
        "started_at",
        "finished_at",
        "last_update_at",
        "runner",
    )
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[Task]:
        alias = database_alias()
        queryset = super().get_queryset(request)
        return queryset.using(alias) if alias is not None else queryset.none()

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return database_alias() is not None and bool(super().has_view_permission(request, obj))

    def has_module_permission(self, request: HttpRequest) -> bool:
        return database_alias() is not None and bool(super().has_module_permission(request))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="status")
    def current_status(self, obj: Task) -> str:
        # The tracker's reading, not the stored column: it ends the tasks of runners that are gone.
        try:
            return get_tracker().get(str(obj.id)).status.value
        except TaskNotFound:
            return "purged"

    @admin.action(description="Cancel selected tasks")
    def cancel_tasks(self, request: HttpRequest, queryset: QuerySet[Task]) -> None:
        """Cancel each selected task as the signed-in user, and report what could not be."""
        tracker = get_tracker()
        as_user = user_id(request.user)
        cancelled: list[str] = []
        requested: list[str] = []
        refused: list[str] = []
        for task_id in queryset.order_by("id").values_list("id", flat=True):
            try:
                task = tracker.cancel(str(task_id), as_user=as_user)
            except TaskNotCancellable as exc:
                refused.append(f"{task_id} ({exc.status.value})")
            except PermissionDenied:
                refused.append(f"{task_id} (not yours to cancel)")
            except TaskNotFound:
                refused.append(f"{task_id} (no longer stored)")
            else:
                (cancelled if task.status is TaskStatus.CANCELLED else requested).append(task.id)
        if cancelled:
            self.message_user(request, f"Cancelled: {', '.join(cancelled)}.", messages.SUCCESS)
        if requested:
            self.message_user(
                request, f"Cancel requested (running; they stop shortly): {', '.join(requested)}.", messages.SUCCESS
            )
        if refused:
            self.message_user(request, f"Could not cancel: {', '.join(refused)}.", messages.WARNING)
