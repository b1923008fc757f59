"""SLIP-10 key derivation for Ed25519, hardened only (formats.md §9.2).

The quorum certificate's keys live under Keyfork's OpenPGP root `m/7366512'/0'` ("pgp"), so the
derivation must match SLIP-10 exactly. Ed25519 has no public-parent derivation, which is why a
non-hardened index is an error here rather than something silently hardened: accepting `m/0/1`
as `m/0'/1'` would derive a different key than the text claims.
"""

# No `from __future__ import annotations` here: typing.NamedTuple would compile every field's
# annotation string at import, a cost on locksmith-oneshot's start (issue 11).

import re
from collections.abc import Sequence
from typing import NamedTuple

from cryptography.hazmat.primitives import hashes, hmac

__all__ = [
    "HARDENED",
    "ExtendedKey",
    "Slip10Error",
    "derive_child",
    "derive_path",
    "format_path",
    "master_key",
    "parse_path",
]

HARDENED = 0x8000_0000
_CURVE_KEY = b"ed25519 seed"
_MAX_DEPTH = 255  # BIP-32/SLIP-10 serialise depth in one byte
_COMPONENT = r"(0|[1-9][0-9]*)(')?"  # compiled on first use: not on locksmith-oneshot's path


class Slip10Error(ValueError):
    """A seed, index or path that SLIP-10 Ed25519 derivation does not accept."""


class ExtendedKey(NamedTuple):
    """A derived node. Key material is kept out of `repr` so it cannot leak into logs.

    A NamedTuple rather than a dataclass, like the OpenPGP key records (issue 11: `dataclasses`
    is costly to import on the boot path)."""

    private_key: bytes
    chain_code: bytes
    depth: int = 0

    def __repr__(self) -> str:
        return f"ExtendedKey(depth={self.depth})"


def _hmac_sha512(key: bytes, data: bytes) -> bytes:
    # `cryptography`'s HMAC: `hmac`/`hashlib` would load the system's libcrypto as well.
    mac = hmac.HMAC(key, hashes.SHA512())
    mac.update(data)
    return mac.finalize()


def master_key(seed: bytes) -> ExtendedKey:
    """Master node: HMAC-SHA512(key="ed25519 seed", seed), split into key and chain code.

    Seeds of 16..64 bytes are accepted (BIP-32's 128..512 bits); this covers the 64-byte BIP-39
    seed and the raw 32-byte seed of the reference's keyforkd harness.
    """
    if not 16 <= len(seed) <= 64:
        raise Slip10Error(f"seed must be 16 to 64 bytes, got {len(seed)}")
    digest = _hmac_sha512(_CURVE_KEY, bytes(seed))
    return ExtendedKey(private_key=digest[:32], chain_code=digest[32:], depth=0)


def derive_child(parent: ExtendedKey, index: int) -> ExtendedKey:
    """Hardened child: `index` is the full 32-bit index and must have the hardened bit set."""
    if not HARDENED <= index <= 0xFFFF_FFFF:
        if 0 <= index < HARDENED:
            raise Slip10Error(f"non-hardened index {index} is not supported for Ed25519")
        raise Slip10Error(f"child index {index} is out of range")
    if parent.depth >= _MAX_DEPTH:
        raise Slip10Error(f"derivation deeper than {_MAX_DEPTH} levels")
    data = b"\x00" + parent.private_key + index.to_bytes(4, "big")
    digest = _hmac_sha512(parent.chain_code, data)
    return ExtendedKey(private_key=digest[:32], chain_code=digest[32:], depth=parent.depth + 1)


def derive_path(seed: bytes, path: str | Sequence[int]) -> ExtendedKey:
    """Master node of `seed`, then each hardened index of `path` (text or parsed indices)."""
    indices = parse_path(path) if isinstance(path, str) else path
    node = master_key(seed)
    for index in indices:
        node = derive_child(node, index)
    return node


def parse_path(text: str) -> tuple[int, ...]:
    """Parse `m/<decimal>'/…` into full indices (hardened bit set).

    Strict on purpose (ASCII digits, no leading zeros, `'` only, no spaces) so a path has one
    spelling and `format_path(parse_path(p)) == p` for every accepted `p`.
    """
    parts = text.split("/")
    if parts[0] != "m":
        raise Slip10Error(f"malformed derivation path {text!r}: must start with 'm'")
    indices = []
    for part in parts[1:]:
        match = re.fullmatch(_COMPONENT, part, re.ASCII)
        if match is None:
            raise Slip10Error(f"malformed derivation path {text!r}: bad component {part!r}")
        number = int(match.group(1))
        if number >= HARDENED:
            raise Slip10Error(f"malformed derivation path {text!r}: index {number} too large")
        if match.group(2) is None:
            raise Slip10Error(
                f"derivation path {text!r}: non-hardened component {part!r} is not supported for Ed25519"
            )
        indices.append(number | HARDENED)
    return tuple(indices)


def format_path(indices: Sequence[int]) -> str:
    """Inverse of `parse_path`: full hardened indices to `m/…'` text."""
    parts = ["m"]
    for index in indices:
        if not HARDENED <= index <= 0xFFFF_FFFF:
            raise Slip10Error(f"index {index} is not a hardened 32-bit index")
        parts.append(f"{index - HARDENED}'")
    return "/".join(parts)
