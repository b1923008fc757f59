"""Canonical CBOR (formats.md §6): the bytes behind the V1 bundle hash, the proof nonce and the
ImportedV0 content hash.

These hashes are compared with values computed by the reference (the Keymaker's attestation
`user_data` and `nonce`, locksmithd's `bundle_hash` check), so the encoding must be
byte-identical to what the reference produces from its typed values, including its quirks: byte
vectors become arrays of unsigned integers (not CBOR byte strings), and map keys are ordered by
encoded length before bytes. The encoder is a few explicit lines over a tiny value model rather
than a general library in a canonical mode, so every one of those choices is visible here and
none depends on a library's notion of "canonical".

Value model: `int` (0..2**64-1), `str`, `ByteVector`, sequences and `str`-keyed mappings of
these. Raw `bytes` and `bool` are refused, because it would be ambiguous whether the caller meant
the reference's array-of-integers form or a CBOR byte string / simple value.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypeAlias

from locksmith.core.bundle.model import BundleV0, BundleV1Data, ImportedV0, KeyEntry, OpenPGPKey

__all__ = [
    "IMPORTED_V0_TAG",
    "NONCE_TAG",
    "ByteVector",
    "CborValue",
    "bundle_hash",
    "encode",
    "imported_v0_content_hash",
    "imported_v0_value",
    "proof_nonce",
    "v1_data_value",
]

NONCE_TAG = "keymaker-generate-quorum-necroproof-nonce-v1"
IMPORTED_V0_TAG = "caution-imported-v0"


@dataclass(frozen=True)
class ByteVector:
    """Bytes the reference serialises as a `Vec<u8>`: an array of unsigned integers."""

    data: bytes


CborValue: TypeAlias = "int | str | ByteVector | Sequence[CborValue] | Mapping[str, CborValue]"

_MAJOR_UINT = 0
_MAJOR_TEXT = 3
_MAJOR_ARRAY = 4
_MAJOR_MAP = 5


def _head(major: int, argument: int) -> bytes:
    """Initial byte plus the shortest argument encoding (RFC 8949 §4.2.1 preferred form)."""
    if argument < 24:
        return bytes([major << 5 | argument])
    for info, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if argument < 1 << (8 * size):
            return bytes([major << 5 | info]) + argument.to_bytes(size, "big")
    raise ValueError(f"integer {argument} does not fit in 64 bits")


_BYTE_AS_UINT = [_head(_MAJOR_UINT, byte) for byte in range(256)]


def _encode_into(value: CborValue, out: bytearray) -> None:
    if isinstance(value, bool) or isinstance(value, (bytes, bytearray, memoryview)):
        raise TypeError(f"{type(value).__name__} is not part of the canonical value model")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("negative integers are not part of the canonical value model")
        out += _head(_MAJOR_UINT, value)
    elif isinstance(value, str):
        encoded = value.encode("utf-8")
        out += _head(_MAJOR_TEXT, len(encoded))
        out += encoded
    elif isinstance(value, ByteVector):
        out += _head(_MAJOR_ARRAY, len(value.data))
        out += b"".join(_BYTE_AS_UINT[byte] for byte in value.data)
    elif isinstance(value, Mapping):
        entries = []
        for key, member in value.items():
            if not isinstance(key, str):
                raise TypeError("map keys must be text strings")
            encoded_key = bytearray()
            _encode_into(key, encoded_key)
            entries.append((len(encoded_key), bytes(encoded_key), member))
        entries.sort(key=lambda entry: (entry[0], entry[1]))
        out += _head(_MAJOR_MAP, len(entries))
        for _, key_bytes, member in entries:
            out += key_bytes
            _encode_into(member, out)
    elif isinstance(value, Sequence):
        out += _head(_MAJOR_ARRAY, len(value))
        for element in value:
            _encode_into(element, out)
    else:
        raise TypeError(f"{type(value).__name__} is not part of the canonical value model")


def encode(value: CborValue) -> bytes:
    out = bytearray()
    _encode_into(value, out)
    return bytes(out)


def _key_value(entry: KeyEntry) -> CborValue:
    if isinstance(entry, OpenPGPKey):
        return {"OpenPGP": {"cert": entry.cert}}
    return {"WebAuthn": {"credential": list(entry.credential), "cert": entry.cert}}


def v1_data_value(data: BundleV1Data) -> CborValue:
    """The reference's generic value for V1 `data`, `"version": "V1"` included (§6.1)."""
    return {
        "version": data.version,
        "bundle_id": ByteVector(data.bundle_id),
        "label": dict(data.label),
        "keyring": [_key_value(entry) for entry in data.keyring],
        "threshold": data.threshold,
        "max": data.max,
        "shardfile": data.shardfile,
        "public_key": data.public_key,
    }


def _v0_value(bundle: BundleV0) -> CborValue:
    return {
        "label": dict(bundle.label),
        "keyring": bundle.keyring,
        "keyring_hash": ByteVector(bundle.keyring_hash),
        "shardfile": bundle.shardfile,
        "public_key": bundle.public_key,
        "necroproof": ByteVector(b""),
    }


def imported_v0_value(imported: ImportedV0) -> CborValue:
    """The whole ImportedV0 object; `format` is the unit variant's name as text (§6.4)."""
    return {
        "format": imported.format,
        "original": _v0_value(imported.original),
        "threshold": imported.threshold,
        "keyring": [_key_value(entry) for entry in imported.keyring],
    }


def bundle_hash(data: BundleV1Data) -> bytes:
    """SHA-256 of canonical `data` (§6.2): what a V1 necroproof's `user_data` must equal."""
    return hashlib.sha256(encode(v1_data_value(data))).digest()


def proof_nonce(bundle_hash: bytes) -> bytes:
    """The attestation nonce Keymaker requests for a bundle hash (§6.3)."""
    if len(bundle_hash) != 32:
        raise ValueError(f"bundle hash must be 32 bytes, got {len(bundle_hash)}")
    return hashlib.sha256(encode([NONCE_TAG, ByteVector(bundle_hash)])).digest()


def imported_v0_content_hash(imported: ImportedV0) -> str:
    """Lowercase hex; sent as `bundle_hash` in submissions for an ImportedV0 bundle (§6.4)."""
    value = [IMPORTED_V0_TAG, imported_v0_value(imported)]
    return hashlib.sha256(encode(value)).hexdigest()
