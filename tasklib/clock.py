"""The one place tasklib reads the time: integer milliseconds since the Unix epoch.

Logic takes ``now`` as an argument; only the public edges call :func:`now_ms`,
so tests can pass a time or freeze it with freezegun.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

from .checks import is_int, is_number

__all__ = ["MAX_INSTANT_MS", "Instant", "duration_ms", "now_ms", "seconds", "to_ms"]

#: The latest instant a ``now=`` argument may name: the end of year 9999, the
#: last a datetime can hold (epoch milliseconds).
MAX_INSTANT_MS = 253_402_300_799_999

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
        ms = (now - _EPOCH) // timedelta(milliseconds=1)
    elif is_int(now):
        ms = now
    else:
        raise TypeError(f"now must be a datetime or epoch milliseconds (int), not {type(now).__name__}")
    if not 0 <= ms <= MAX_INSTANT_MS:
        raise ValueError(
            f"now must lie between 1970 and the end of 9999 (epoch milliseconds 0 to {MAX_INSTANT_MS}), got {now}"
        )
    return ms


def duration_ms(value: timedelta, name: str, *, maximum: timedelta | None = None) -> int:
    """A positive ``timedelta`` argument in milliseconds, at most ``maximum``; TypeError/ValueError otherwise."""
    if not isinstance(value, timedelta):
        raise TypeError(f"{name} must be a datetime.timedelta, not {type(value).__name__}")
    ms = value // timedelta(milliseconds=1)
    if ms <= 0:
        raise ValueError(f"{name} must be positive, got {value!r}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be at most {maximum}, got {value}")
    return ms


def seconds(value: object, name: str, *, allow_none: bool = True) -> float | None:
    """A timeout in seconds: a finite non-negative number, or None (also for an infinite one).

    Raises TypeError for a non-number (a bool included) and ValueError, naming the
    argument, for NaN or a negative number. A number too large for a float, like
    an infinity, means no limit.
    """
    if value is None and allow_none:
        return None
    if not is_number(value):
        raise TypeError(f"{name} must be a number of seconds or None, not {type(value).__name__}")
    try:
        as_float = float(value)
    except OverflowError:
        as_float = float("inf")
    if as_float != as_float:
        raise ValueError(f"{name} must be a number of seconds, not NaN")
    if as_float < 0:
        raise ValueError(f"{name} must not be negative, got {value}")
    if as_float > _LONGEST_WAIT:
        if not allow_none:
            raise ValueError(f"{name} must be at most {_LONGEST_WAIT:.0f} seconds, got {value}")
        return None
    return as_float


# threading's waits accept at most TIMEOUT_MAX; anything longer is as good as forever.
_LONGEST_WAIT = 10.0**9


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
