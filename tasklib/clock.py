"""The one place tasklib reads the time: integer milliseconds since the Unix epoch.

Logic takes ``now`` as an argument; only the public edges call :func:`now_ms`,
so tests can pass a time or freeze it with freezegun.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

__all__ = ["Instant", "duration_ms", "now_ms", "to_ms"]

#: What a ``now=`` argument accepts: an aware or naive-UTC datetime, or epoch milliseconds.
Instant = datetime | int


def now_ms() -> int:
    """The current time in epoch milliseconds."""
    # Rounded from time.time(), not floored from time_ns(): freezegun derives
    # time_ns() from a float, which floors a frozen 12:00:07.250 to ...249 ms.
    return round(time.time() * 1000)


def to_ms(now: Instant | None) -> int:
    """``now`` as epoch milliseconds; None means the current time.

    A naive datetime is taken as UTC, as freezegun and ``datetime.utcnow()`` give it.
    Raises TypeError for anything else.
    """
    if now is None:
        return now_ms()
    if isinstance(now, datetime):
        if now.tzinfo is None:
            now = now.replace(tzinfo=timezone.utc)
        return (now - _EPOCH) // timedelta(milliseconds=1)
    if isinstance(now, int) and not isinstance(now, bool):
        return now
    raise TypeError(f"now must be a datetime or epoch milliseconds (int), not {type(now).__name__}")


def duration_ms(value: timedelta, name: str) -> int:
    """A positive ``timedelta`` argument in milliseconds; TypeError/ValueError otherwise."""
    if not isinstance(value, timedelta):
        raise TypeError(f"{name} must be a datetime.timedelta, not {type(value).__name__}")
    ms = value // timedelta(milliseconds=1)
    if ms <= 0:
        raise ValueError(f"{name} must be positive, got {value!r}")
    return ms


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
