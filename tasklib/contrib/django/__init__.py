"""tasklib in a Django project: the app ``tasklib.contrib.django`` (``pip install tasktally[django]``).

Add ``"tasklib.contrib.django"`` to ``INSTALLED_APPS`` and configure it with one
``TASKLIB = {...}`` setting (see :mod:`tasklib.contrib.django.conf`). The process
has one tracker, built from that setting on the first :func:`get_tracker` call and
closed when the process exits; importing the app, or running a ``manage.py``
command that never asks for the tracker, builds nothing and starts no thread.
"""

from __future__ import annotations

import atexit
import threading

from ...tracker import TaskTracker

__all__ = ["close_tracker", "get_tracker"]


class _ProcessTracker:
    """The process's one tracker, built on first use (the only state this app keeps)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tracker: TaskTracker | None = None

    def get(self) -> TaskTracker:
        with self._lock:
            if self._tracker is None:
                # Imported here: reading the settings needs a configured Django,
                # which importing this package must not.
                from .conf import build_tracker

                self._tracker = build_tracker()
                atexit.register(self.close)
            return self._tracker

    def close(self) -> None:
        with self._lock:
            tracker, self._tracker = self._tracker, None
        if tracker is not None:
            atexit.unregister(self.close)
            # wait=False: an exiting server must not hang on long work; running
            # tasks are asked to stop and none is left RUNNING.
            tracker.close(wait=False)


_process_tracker = _ProcessTracker()


def get_tracker() -> TaskTracker:
    """The process's :class:`~tasklib.TaskTracker`, built from ``settings.TASKLIB`` on the first call.

    Thread-safe: concurrent first calls build one tracker. It is closed
    (``close(wait=False)``) when the process exits, or by :func:`close_tracker`.
    Raises ``django.core.exceptions.ImproperlyConfigured`` for a bad setting and
    :class:`~tasklib.StoreError` when the store cannot be opened.
    """
    return _process_tracker.get()


def close_tracker() -> None:
    """Close the process's tracker, if one was built; the next :func:`get_tracker` builds a new one.

    Called when ``TASKLIB`` or ``DATABASES`` changes in tests (``override_settings``),
    and for hosts that end their tracker before the process exits. Raises nothing
    of its own.
    """
    _process_tracker.close()
