"""Checks of the arguments the public API takes: TypeError or ValueError, before any write."""

from __future__ import annotations

import re
from typing import Literal, TypeGuard, overload

from .errors import TaskNotFound

__all__ = [
    "MAX_ID",
    "check_message",
    "check_progress",
    "check_text",
    "check_user",
    "grants",
    "is_int",
    "is_number",
    "parse_id",
]

#: Ids and user ids are Jira's int64.
MAX_ID = 2**63 - 1

# Ids are the store's positive 64-bit integers written plainly: no sign, no
# leading zero, no whitespace, ASCII digits only.
_ID = re.compile(r"[1-9][0-9]{0,18}", re.ASCII)


def is_int(value: object) -> TypeGuard[int]:
    """Whether ``value`` is an int but not a bool (which Python counts as an int)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> TypeGuard[int | float]:
    """Whether ``value`` is an int or a float, but not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def parse_id(task_id: str) -> int:
    """The store's integer id for ``task_id``; TaskNotFound for any string that cannot be one.

    Raises TypeError for a ``task_id`` that is not a str.
    """
    # The usual id, without the pattern: up to 18 ASCII digits, no leading zero, so below MAX_ID.
    if type(task_id) is str and 0 < len(task_id) < 19 and task_id.isdigit() and task_id.isascii() and task_id[0] != "0":
        return int(task_id)
    if not isinstance(task_id, str):
        raise TypeError(f"task_id must be a str, not {type(task_id).__name__}")
    if len(task_id) > 19 or not _ID.fullmatch(task_id):
        raise TaskNotFound(task_id)
    value = int(task_id)
    if value > MAX_ID:
        raise TaskNotFound(task_id)
    return value


@overload
def check_user(name: str, value: object, *, optional: Literal[False]) -> int: ...
@overload
def check_user(name: str, value: object, *, optional: bool) -> int | None: ...
def check_user(name: str, value: object, *, optional: bool) -> int | None:
    """A user id: an int (not a bool) that fits in 64 bits; None too when ``optional``.

    Returns the id as a plain ``int``: an ``int`` subclass could answer ``==`` or
    ``<=`` as it likes (claim to equal every submitter), so only its integer value
    is kept. Raises TypeError or ValueError.
    """
    if type(value) is int and -MAX_ID - 1 <= value <= MAX_ID:
        return value
    if value is None and optional:
        return None
    if not is_int(value):
        raise TypeError(f"{name} must be an int user id, not {type(value).__name__}")
    # int.__int__ reads the value without calling anything the subclass defines.
    plain = int.__int__(value)
    if not -MAX_ID - 1 <= plain <= MAX_ID:
        raise ValueError(f"{name} must fit in 64 bits, as Jira's int64 submittedBy, got {plain}")
    return plain


def grants(verdict: object) -> bool:
    """Whether a host's permission callback (``is_admin``) granted: only ``True`` itself does.

    A truthy value such as ``"no"``, ``1`` or a non-empty list is a host's bug
    that must not hand out administrator rights.
    """
    return verdict is True


def check_text(name: str, value: object) -> None:
    """An optional text: None or a str a store can hold: no NUL (PostgreSQL refuses it), no lone surrogate."""
    if value is None:
        return
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str or None, not {type(value).__name__}")
    if "\x00" in value:
        raise ValueError(f"{name} must not contain NUL characters")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError(f"{name} holds a lone surrogate at index {exc.start}, which UTF-8 cannot encode") from None


def check_message(message: object) -> None:
    if message is not None:
        check_text("message", message)


def check_progress(progress: object) -> None:
    """A progress percentage: an int (not a bool or a float) from 0 to 100."""
    if type(progress) is int and 0 <= progress <= 100:
        return
    if not is_int(progress):
        raise TypeError(f"progress must be an int from 0 to 100, not {type(progress).__name__}")
    if not 0 <= progress <= 100:
        raise ValueError(f"progress must be from 0 to 100, got {progress}")
