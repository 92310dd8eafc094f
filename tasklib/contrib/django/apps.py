"""The Django application configuration of ``tasklib.contrib.django``."""

from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.test.signals import setting_changed

__all__ = ["TasklibConfig"]


def _settings_changed(*, setting: str, **kwargs: Any) -> None:
    # A test's override_settings must reach the tracker: the next use builds a new one.
    if setting in ("TASKLIB", "DATABASES"):
        from . import close_tracker

        close_tracker()


class TasklibConfig(AppConfig):
    """The app: its label is ``tasklib``; ready() only connects a signal, it builds no tracker."""

    name = "tasklib.contrib.django"
    label = "tasklib"
    verbose_name = "tasklib"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        setting_changed.connect(_settings_changed, dispatch_uid="tasklib.contrib.django.settings_changed")
