"""Checking and encoding the values a task stores as JSON (its ``result``)."""

from __future__ import annotations

import json
import logging
import math
from typing import Any

from .telemetry import log

__all__ = ["MAX_DEPTH", "decode", "dumps", "dumps_acyclic", "encode", "encode_result", "storable_text"]

#: How deeply a stored value may nest lists and objects. Python's JSON reader
#: recurses once per level, so a much deeper value, once stored, could not be read
#: back by a caller already some frames deep; Jira's results are shallow.
MAX_DEPTH = 100


# One encoder for every call: json.dumps with options builds a new one each time.
_COMPACT = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))


# The C encoder JSONEncoder.encode builds anew at every call, built once, without
# the check for cycles: for values read back from JSON, which cannot have any.
_make_encoder = getattr(json.encoder, "c_make_encoder", None)
_ACYCLIC = (
    None
    if _make_encoder is None
    else _make_encoder(None, _COMPACT.default, json.encoder.encode_basestring, None, ":", ",", False, False, False)
)


_scan: Any = json.JSONDecoder().scan_once  # type: ignore[attr-defined]  # set in __init__, not in the stubs


def dumps(value: Any) -> str:
    """``value`` as compact JSON text, non-ASCII kept as is: tasklib's one JSON form."""
    return _COMPACT.encode(value)


def dumps_acyclic(value: Any) -> str:
    """:func:`dumps` of a value that holds no cycle (one read back from JSON), faster.

    The same text as :func:`dumps`; given a cycle it raises RecursionError.
    """
    if _ACYCLIC is None:
        return _COMPACT.encode(value)
    return "".join(_ACYCLIC(value, 0))


def encode(value: Any, name: str = "result") -> str:
    """``value`` as compact JSON text that decodes back equal to it.

    Raises TypeError naming where a value JSON cannot represent sits (a set, a
    datetime, an object, a dict key that is not a str), and ValueError for NaN
    or an infinity, a text UTF-8 cannot encode (a lone surrogate), or nesting
    deeper than MAX_DEPTH levels. Nothing is written when it raises.
    """
    if not _fits(value, 0):
        _check(value, name, 0)  # raises, naming where the value does not fit
    # The check bounds the nesting, so a value that passed holds no cycle.
    return dumps_acyclic(value)


def encode_result(value: Any) -> str | None:
    """A task's ``result`` as stored: None (no result) stays None, else :func:`encode`; raises as it does."""
    return None if value is None else encode(value)


def decode(text: str) -> Any:
    """The value :func:`encode` wrote; None, logged, for a stored text that cannot be read back.

    A value stored by an older tasklib may nest deeper than a reader's stack allows:
    it must not make the task unreadable.
    """
    try:
        # json.loads is this scanner behind layers of Python that skip whitespace
        # around the value; a text tasklib wrote has none, so the scanner alone reads
        # it (on a get, at a third of the cost). Anything else takes json.loads.
        value, end = _scan(text, 0)
        if end == len(text):
            return value
    except (StopIteration, RecursionError, ValueError):
        pass
    try:
        return json.loads(text)
    except (RecursionError, ValueError) as exc:
        log(logging.WARNING, "a stored result cannot be read back (%s); it is shown as absent", type(exc).__name__)
        return None


def storable_text(text: str) -> str:
    """``text`` with what a store cannot hold written as escapes: lone surrogates, NUL."""
    if text.isascii():
        return text.replace("\x00", "\\x00")
    return text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")


def _fits(value: Any, depth: int) -> bool:
    """Whether :func:`_check` would accept ``value``: the same walk, with no path names to build."""
    cls = value.__class__
    if cls is not dict:  # most results are a dict: it goes straight to its walk
        if value is None or cls is bool or cls is int:
            return True
        if isinstance(value, str):
            return value.isascii() or _utf8(value)
        if isinstance(value, float):
            return math.isfinite(value)
        if isinstance(value, list):
            return depth < MAX_DEPTH and all(_fits(item, depth + 1) for item in value)
        if not isinstance(value, dict):
            return False  # an int subclass, a tuple, a set...: _check decides and names it
    if depth >= MAX_DEPTH:
        return False
    # A loop, not all() over a generator, and the plain values taken here without
    # a call each: most results are a flat dict.
    for key, item in value.items():
        if not (isinstance(key, str) and (key.isascii() or _utf8(key))):
            return False
        cls = item.__class__
        if cls is int or cls is bool or item is None or (cls is str and item.isascii()):
            continue
        if not _fits(item, depth + 1):
            return False
    return True


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check(value: Any, where: str, depth: int) -> None:
    # json.dumps alone would turn tuples into lists and int keys into strings, so the
    # value would not come back equal; walk it once and refuse such shapes up front.
    if value is None or isinstance(value, (bool, int)):
        return
    if isinstance(value, str):
        _check_utf8(value, where)
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where} is {value!r}, which JSON cannot represent")
        return
    if isinstance(value, (list, dict)) and depth >= MAX_DEPTH:
        where = where if len(where) <= 60 else where[:60] + "..."
        raise ValueError(f"{where} nests lists and objects deeper than {MAX_DEPTH} levels, more than tasklib stores")
    if isinstance(value, list):
        for i, item in enumerate(value):
            _check(item, f"{where}[{i}]", depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{where} has a key {key!r} of type {type(key).__name__}; JSON object keys must be str")
            _check_utf8(key, f"{where} key")
            _check(item, f"{where}[{key!r}]", depth + 1)
        return
    hint = " (use a list)" if isinstance(value, tuple) else ""
    raise TypeError(f"{where} is a {type(value).__name__}, which JSON cannot represent{hint}")


def _check_utf8(text: str, where: str) -> None:
    if text.isascii():
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"{where} holds {text[exc.start]!a} at index {exc.start}, a lone surrogate that UTF-8 cannot encode"
        ) from None
