"""Checking and encoding the values a task stores as JSON (its ``result``)."""

from __future__ import annotations

import json
import math
from typing import Any

__all__ = ["decode", "encode"]


def encode(value: Any, name: str = "result") -> str:
    """``value`` as compact JSON text that decodes back equal to it.

    Raises TypeError naming where a value JSON cannot represent sits (a set, a
    datetime, an object, a dict key that is not a str), and ValueError for NaN
    or an infinity, or nesting too deep to encode.
    """
    try:
        _check(value, name)
        return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except RecursionError:
        raise ValueError(f"{name} is nested too deeply to store as JSON") from None


def decode(text: str) -> Any:
    """The value :func:`encode` wrote."""
    return json.loads(text)


def _check(value: Any, where: str) -> None:
    # json.dumps alone would turn tuples into lists and int keys into strings, so the
    # value would not come back equal; walk it once and refuse such shapes up front.
    if value is None or isinstance(value, (str, bool, int)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where} is {value!r}, which JSON cannot represent")
        return
    if isinstance(value, list):
        for i, item in enumerate(value):
            _check(item, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{where} has a key {key!r} of type {type(key).__name__}; JSON object keys must be str")
            _check(item, f"{where}[{key!r}]")
        return
    hint = " (use a list)" if isinstance(value, tuple) else ""
    raise TypeError(f"{where} is a {type(value).__name__}, which JSON cannot represent{hint}")
