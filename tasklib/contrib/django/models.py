"""A read-only Django view of tasklib's task table, for the admin.

The model is unmanaged (``managed = False``): tasklib creates and migrates its
own tables, Django's migrations never touch them. Read through it; change tasks
only through the tracker (:func:`tasklib.contrib.django.get_tracker`), whose
status machine every change must pass.
"""

from __future__ import annotations

from datetime import datetime, timezone

from django.db import models

from ...status import TaskStatus

__all__ = ["Task"]


def _instant(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, timezone.utc)


class Task(models.Model):
    """A row of ``tasklib_task``; times are milliseconds since the epoch, UTC (see the ``*_at`` properties)."""

    id = models.BigAutoField(primary_key=True)
    status = models.CharField(max_length=16, choices=[(s.value, s.value) for s in TaskStatus])
    description = models.TextField(null=True)
    message = models.TextField(null=True)
    result = models.TextField(null=True, help_text="JSON")
    submitted_by = models.BigIntegerField()
    progress = models.SmallIntegerField()
    submitted = models.BigIntegerField()
    started = models.BigIntegerField(null=True)
    finished = models.BigIntegerField(null=True)
    last_update = models.BigIntegerField()
    runner = models.CharField(max_length=64, null=True)

    class Meta:
        managed = False
        db_table = "tasklib_task"
        app_label = "tasklib"
        ordering = ("-id",)
        verbose_name = "task"
        # Tasks change only through the tracker: viewing is the one permission.
        default_permissions = ("view",)

    def __str__(self) -> str:
        return f"task {self.id}: {self.description}" if self.description else f"task {self.id}"

    @property
    def submitted_at(self) -> datetime | None:
        """When the task was submitted."""
        return _instant(self.submitted)

    @property
    def started_at(self) -> datetime | None:
        """When the task started running, if it did."""
        return _instant(self.started)

    @property
    def finished_at(self) -> datetime | None:
        """When the task finished, if it has."""
        return _instant(self.finished)

    @property
    def last_update_at(self) -> datetime | None:
        """When the task last changed."""
        return _instant(self.last_update)
