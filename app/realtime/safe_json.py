"""The JSON module of the Socket.IO and Engine.IO packets (``SocketIO(json=...)``).

``loads`` refuses, with a ValueError like any other bad JSON, a document nested deeper
than ``MAX_DEPTH`` (no event of the app nests beyond 4) instead of recursing until a
RecursionError, and a string holding NUL (``\u0000``), which no field accepts and
PostgreSQL cannot store; integers keep Engine.IO's limit of 100 digits.
"""

from __future__ import annotations

import itertools
import re
from json import (
    detect_encoding,
    dumps,  # noqa: F401 - part of the module interface
)
from typing import Any

from engineio import json as engineio_json

MAX_DEPTH = 32
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_BRACKET = re.compile(r"[][{}]")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


class TooDeep(ValueError):
    """A JSON document nested deeper than ``MAX_DEPTH``."""

    def __init__(self) -> None:
        super().__init__(f"JSON nested deeper than {MAX_DEPTH} levels")


class HasNul(ValueError):
    """A JSON document with NUL in a string (a key or a value)."""

    def __init__(self) -> None:
        super().__init__("a string contains NUL (\\u0000), which no field accepts")


def loads(text: str | bytes, **kwargs: Any) -> Any:
    """``json.loads``, refusing documents nested deeper than ``MAX_DEPTH``."""
    try:
        value = engineio_json.loads(text, **kwargs)
    except RecursionError:
        raise TooDeep() from None
    if isinstance(text, bytes | bytearray):  # as json.loads reads it (UTF-16 too)
        text = text.decode(detect_encoding(text), "replace")
    # A valid document's strings are well formed, so stripping them is linear; a
    # document with few brackets cannot be deep at all.
    if text.count("[") + text.count("{") > MAX_DEPTH and depth(text) > MAX_DEPTH:
        raise TooDeep()
    if "\\u0000" in text and has_nul(value):  # JSON can only spell NUL that way
        raise HasNul()
    return value


def has_nul(value: Any) -> bool:
    """Whether a decoded document (at most ``MAX_DEPTH`` deep) holds NUL in a string."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(has_nul(k) or has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(map(has_nul, value))
    return False


def depth(text: str) -> int:
    """How deep the brackets of a valid JSON document nest."""
    brackets = _BRACKET.findall(_STRING.sub("", text))
    return max(itertools.accumulate(map(_STEP.__getitem__, brackets)), default=0)
