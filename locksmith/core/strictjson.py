"""Strict JSON input and the two output styles of formats.md §1.

Every JSON document this project reads is something a peer or a file could have tampered with,
so the reader is stricter than `json.loads`: duplicate member names are refused (the reference
keeps one of them silently, which lets two parties see different values in the same signed or
hashed text), NaN/Infinity and numbers that overflow a float are refused (they are not JSON),
unpaired surrogate escapes are refused (they cannot be written back as UTF-8, so hashing or
re-serialising them would fail far from the input), and bytes are decoded as UTF-8 only (never
sniffed as UTF-16/32, no BOM).

Byte strings travel as JSON arrays of integers 0..255; the `read_*` helpers refuse `true`,
`1.0` and other look-alikes that `isinstance(x, int)` or `int(x)` would let through, and name
the offending field so callers can report it verbatim.

The writers are plain `json.dumps` calls: the reference's serde_json escapes exactly the same
characters as Python with `ensure_ascii=False` (`"`, `\\`, `\\b \\f \\n \\r \\t`, other C0 controls
as lowercase `\\u00xx`; `/`, DEL, U+2028/2029 and non-ASCII written raw), and Python's indent=2
layout is serde_json's pretty layout (one element per line, `[]`/`{}` for empty containers).
tests/core/test_strictjson.py pins each of these rules.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

__all__ = [
    "DuplicateMemberError",
    "JSONObject",
    "StrictJSONError",
    "check_members",
    "dumps_compact",
    "dumps_pretty",
    "first_duplicate",
    "loads",
    "loads_message",
    "read_bytes",
    "read_int",
    "read_list",
    "read_object",
    "read_str",
    "read_str_list",
    "read_str_map",
]


class StrictJSONError(ValueError):
    """Input is not acceptable JSON, or a value has the wrong shape; the message names why."""


class DuplicateMemberError(StrictJSONError):
    """A member name occurs twice in one object (keymaker.md §3 answers this one specially)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"duplicate member '{name}'")
        self.name = name


class JSONObject(dict[str, Any]):
    """A parsed object that remembers the member names it saw more than once.

    `loads(..., duplicates="record")` returns these so that a schema reader can report a
    duplicate with the context of the object it occurs in (formats.md §1 member errors) rather
    than with a bare parser message. The value kept for a duplicated name is the last one, but
    a reader must refuse the object before looking at it.
    """

    __slots__ = ("duplicates",)

    def __init__(self) -> None:
        super().__init__()
        self.duplicates: tuple[str, ...] = ()


_SURROGATE = re.compile("[\ud800-\udfff]")


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for name, value in pairs:
        if name in obj:
            raise DuplicateMemberError(name)
        obj[name] = value
    return obj


def _record_duplicates(pairs: list[tuple[str, Any]]) -> JSONObject:
    obj = JSONObject()
    seen: list[str] = []
    for name, value in pairs:
        if name in obj and name not in seen:
            seen.append(name)
        obj[name] = value
    obj.duplicates = tuple(seen)
    return obj


def _reject_constant(name: str) -> Any:
    raise StrictJSONError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise StrictJSONError(f"number {text} is out of range")
    return value


def _check_strings(root: Any) -> None:
    """Refuse unpaired surrogates anywhere (iteratively: nesting depth is attacker-chosen)."""
    stack = [root]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            if _SURROGATE.search(value):
                raise StrictJSONError("string contains an unpaired surrogate")
        elif isinstance(value, dict):
            for name, member in value.items():
                if _SURROGATE.search(name):
                    raise StrictJSONError("member name contains an unpaired surrogate")
                stack.append(member)
        elif isinstance(value, list):
            stack.extend(value)


def loads(data: str | bytes, *, duplicates: Literal["reject", "record"] = "reject") -> Any:
    """Parse one JSON text (RFC 8259, UTF-8); raises only `StrictJSONError`.

    With `duplicates="reject"` a repeated member name anywhere raises `DuplicateMemberError`.
    With `duplicates="record"` every object is a `JSONObject` whose `duplicates` the caller
    must check (schema readers do, to name the object); everything else is still rejected.
    """
    if isinstance(data, (bytes, bytearray, memoryview)):
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise StrictJSONError(f"invalid UTF-8 at byte {exc.start}") from None
    else:
        text = data
    hook = _reject_duplicates if duplicates == "reject" else _record_duplicates
    try:
        value = json.loads(
            text,
            object_pairs_hook=hook,
            parse_constant=_reject_constant,
            parse_float=_finite_float,
        )
    except StrictJSONError:
        raise
    except RecursionError:
        raise StrictJSONError("JSON nesting is too deep") from None
    except ValueError as exc:  # JSONDecodeError, and int() refusing over-long digit strings
        raise StrictJSONError(str(exc)) from None
    _check_strings(value)
    return value


def first_duplicate(value: Any) -> str | None:
    """The first duplicated member name recorded anywhere inside `value`, if any.

    For values a schema reader does not descend into (members it deliberately ignores), so
    that a duplicate cannot hide there.
    """
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            found = getattr(item, "duplicates", ())
            if found:
                return str(found[0])
            stack.extend(reversed(list(item.values())))
        elif isinstance(item, list):
            stack.extend(reversed(item))
    return None


def check_members(
    obj: Mapping[str, Any],
    context: str,
    required: Sequence[str],
    *,
    allow_unknown: bool = False,
) -> None:
    """Apply the member rules of a strict object (formats.md §1) with its context name.

    Checked in a fixed order so that one input always gives one message: duplicates first
    (the tampering signal), then unknown names in document order, then missing names in the
    order the spec lists them.
    """
    duplicates = getattr(obj, "duplicates", ())
    if duplicates:
        raise StrictJSONError(f"{context}: duplicate member '{duplicates[0]}'")
    if not allow_unknown:
        for name in obj:
            if name not in required:
                raise StrictJSONError(f"{context}: unknown member '{name}'")
    for name in required:
        if name not in obj:
            raise StrictJSONError(f"{context}: missing member '{name}'")


def read_object(value: Any, field: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise StrictJSONError(f"{field} must be an object")
    return value


def read_list(value: Any, field: str) -> list[Any]:
    if not isinstance(value, list):
        raise StrictJSONError(f"{field} must be an array")
    return value


def read_str(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise StrictJSONError(f"{field} must be a string")
    return value


def read_int(value: Any, field: str) -> int:
    """A JSON integer; `true`, `1.0` and `1e0` are not (protocol.md §3, formats.md §1)."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise StrictJSONError(f"{field} must be an integer")
    return value


def read_bytes(value: Any, field: str, *, length: int | None = None) -> bytes:
    """A byte string written as an array of integers 0..255, optionally of a fixed length."""
    if not isinstance(value, list):
        raise StrictJSONError(f"{field} must be an array of integers 0..255")
    for index, element in enumerate(value):
        if not isinstance(element, int) or isinstance(element, bool) or not 0 <= element <= 255:
            raise StrictJSONError(f"{field} element {index} must be an integer 0..255")
    if length is not None and len(value) != length:
        raise StrictJSONError(f"{field} must be {length} bytes, got {len(value)}")
    return bytes(value)


def read_str_list(value: Any, field: str) -> list[str]:
    if not isinstance(value, list):
        raise StrictJSONError(f"{field} must be an array of strings")
    for index, element in enumerate(value):
        if not isinstance(element, str):
            raise StrictJSONError(f"{field} element {index} must be a string")
    return value


def read_str_map(value: Any, field: str) -> dict[str, str]:
    """An object of string → string (a bundle `label`); it is not strict, any names allowed."""
    if not isinstance(value, dict):
        raise StrictJSONError(f"{field} must be an object of strings")
    duplicates = getattr(value, "duplicates", ())
    if duplicates:
        raise StrictJSONError(f"{field} has a duplicate member '{duplicates[0]}'")
    for name, element in value.items():
        if not isinstance(element, str):
            raise StrictJSONError(f"{field} value '{name}' must be a string")
    return dict(value)


def dumps_pretty(value: Any) -> str:
    """The reference's file style: 2-space indent, UTF-8 text, no trailing newline."""
    return json.dumps(value, indent=2, ensure_ascii=False, allow_nan=False)


def dumps_compact(value: Any) -> str:
    """No whitespace at all (HTTP bodies, protocol frames); member order is the caller's."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def loads_message(payload: str | bytes, what: str, error: type[Exception]) -> dict[str, Any]:
    """A wire message that must be one JSON object, for a peer that may be hostile: every
    failure raises `error` with a fixed text naming `what`, never one quoting the input (this
    module's own texts may)."""
    try:
        value = loads(payload)
    except DuplicateMemberError:
        raise error(f"{what} has a duplicate member") from None
    except StrictJSONError:
        raise error(f"{what} is not valid JSON") from None
    if not isinstance(value, dict):
        raise error(f"{what} is not a JSON object")
    return value
