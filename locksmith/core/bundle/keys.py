"""Keyring entries (`Key`, formats.md §3) shared by V1 and ImportedV0, and the bundle error.

Kept apart from the bundle generations so that `model.py` stays one screenful per generation;
import everything from `locksmith.core.bundle.model`, which re-exports these names.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

from locksmith.core.strictjson import (
    StrictJSONError,
    check_members,
    read_list,
    read_object,
    read_str,
    read_str_list,
)

__all__ = [
    "BundleError",
    "KeyEntry",
    "OpenPGPKey",
    "WebAuthnKey",
    "key_entry_from_dict",
    "keyring_from_list",
    "reading",
]

_KEY_VARIANTS = ("OpenPGP", "WebAuthn")


class BundleError(ValueError):
    """A bundle is unreadable or structurally invalid; `str()` is the formats.md text."""


@contextmanager
def reading() -> Iterator[None]:
    """Turn the shape errors of `strictjson` (already worded with our contexts) into ours."""
    try:
        yield
    except StrictJSONError as exc:
        raise BundleError(str(exc)) from None


@dataclass(frozen=True)
class OpenPGPKey:
    """An external holder: one armored public certificate."""

    cert: str

    variant: ClassVar[str] = "OpenPGP"

    def to_dict(self) -> dict[str, Any]:
        return {"OpenPGP": {"cert": self.cert}}


@dataclass(frozen=True)
class WebAuthnKey:
    """A custody-service holder; `credential` strings are opaque and only carried and hashed."""

    credential: tuple[str, ...]
    cert: str

    variant: ClassVar[str] = "WebAuthn"

    def __post_init__(self) -> None:
        object.__setattr__(self, "credential", tuple(self.credential))

    def to_dict(self) -> dict[str, Any]:
        return {"WebAuthn": {"credential": list(self.credential), "cert": self.cert}}


KeyEntry = OpenPGPKey | WebAuthnKey


def key_entry_from_dict(value: Any, index: int) -> KeyEntry:
    """Read `Key` number `index` (0-based holder index, which the error contexts use)."""
    context = f"keyring entry {index}"
    with reading():
        entry = read_object(value, context)
        duplicates = getattr(entry, "duplicates", ())
        if duplicates:
            raise BundleError(f"{context}: duplicate member '{duplicates[0]}'")
        for name in entry:
            if name not in _KEY_VARIANTS:
                raise BundleError(f"{context}: unknown member '{name}'")
        if len(entry) != 1:
            raise BundleError(f"{context}: expected exactly one member, OpenPGP or WebAuthn")
        ((variant, body),) = entry.items()
        inner = f"{context} {variant}"
        fields = read_object(body, inner)
        if variant == "OpenPGP":
            check_members(fields, inner, ("cert",))
            return OpenPGPKey(read_str(fields["cert"], f"{inner}: cert"))
        check_members(fields, inner, ("credential", "cert"))
        return WebAuthnKey(
            credential=tuple(read_str_list(fields["credential"], f"{inner}: credential")),
            cert=read_str(fields["cert"], f"{inner}: cert"),
        )


def keyring_from_list(value: Any, field: str) -> tuple[KeyEntry, ...]:
    with reading():
        entries = read_list(value, field)
    return tuple(key_entry_from_dict(entry, index) for index, entry in enumerate(entries))
