"""Strict CBOR decoding and COSE_Sign1 (RFC 9052) with ES384, as Nitro attestation documents use.

Pure: bytes in, values or `CoseError` out. Decoding is two passes: a small well-formedness scan
written here (exactly one item, no trailing bytes, no tags except an optional COSE_Sign1 tag 18 at
the very top, bounded nesting) and then cbor2 with duplicate map keys refused. The scan keeps
cbor2's semantic tags (bignums, dates, shared references, ...) out of the picture entirely, so a
document can only decode to ints, strings, bytes, lists, dicts, floats, bools, None and simple
values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

COSE_SIGN1_TAG = 18
ALG_ES384 = -35
HEADER_ALG = 1
HEADER_CRIT = 2
ES384_PROTECTED = bytes.fromhex("a1013822")  # {1: -35}, as the NSM encodes it
ES384_SIGNATURE_LEN = 96
_P384_COORD = 48
MAX_DEPTH = 16


class CoseError(ValueError):
    """Not well-formed CBOR or not a COSE_Sign1 structure; the message is a one-line detail."""


# --------------------------------------------------------------------------- strict CBOR


def _head(data: bytes, pos: int) -> tuple[int, int, int | None, int]:
    """Read an item head at `pos`: (major type, additional info, argument or None, next pos)."""
    if pos >= len(data):
        raise CoseError("truncated CBOR")
    ib = data[pos]
    major, ai = ib >> 5, ib & 0x1F
    pos += 1
    if ai < 24:
        return major, ai, ai, pos
    if ai <= 27:
        n = 1 << (ai - 24)
        if pos + n > len(data):
            raise CoseError("truncated CBOR")
        return major, ai, int.from_bytes(data[pos:pos + n], "big"), pos + n
    if ai == 31:
        return major, ai, None, pos
    raise CoseError(f"reserved CBOR additional information {ai} at offset {pos - 1}")


def _scan(data: bytes, pos: int, depth: int) -> int:
    """Check that one well-formed, tag-free item starts at `pos`; return the offset after it."""
    if depth > MAX_DEPTH:
        raise CoseError(f"CBOR nesting deeper than {MAX_DEPTH}")
    start = pos
    major, ai, arg, pos = _head(data, pos)
    if major in (0, 1):
        if arg is None:
            raise CoseError(f"indefinite-length integer at offset {start}")
        return pos
    if major in (2, 3):
        if arg is not None:
            if arg > len(data) - pos:
                raise CoseError("truncated CBOR")
            return pos + arg
        while True:  # indefinite-length string: definite chunks of the same major type, then break
            if pos < len(data) and data[pos] == 0xFF:
                return pos + 1
            chunk_at = pos
            chunk_major, _, chunk_len, pos = _head(data, pos)
            if chunk_major != major or chunk_len is None:
                raise CoseError(f"invalid chunk in indefinite-length string at offset {chunk_at}")
            if chunk_len > len(data) - pos:
                raise CoseError("truncated CBOR")
            pos += chunk_len
    if major in (4, 5):
        per_entry = 1 if major == 4 else 2
        if arg is not None:
            for _ in range(arg * per_entry):  # each item takes >= 1 byte, so this is bounded
                pos = _scan(data, pos, depth + 1)
            return pos
        count = 0
        while True:
            if pos < len(data) and data[pos] == 0xFF:
                if count % per_entry:
                    raise CoseError(f"map with a key but no value at offset {pos}")
                return pos + 1
            pos = _scan(data, pos, depth + 1)
            count += 1
    if major == 6:
        raise CoseError(f"unexpected CBOR tag {arg} at offset {start}")
    # major 7: simple values and floats
    if arg is None:
        raise CoseError(f"unexpected CBOR break at offset {start}")
    if ai == 24 and arg < 32:
        raise CoseError(f"badly encoded CBOR simple value at offset {start}")
    return pos


def loads_strict(data: bytes) -> Any:
    """Decode exactly one tag-free CBOR item that fills `data`, refusing duplicate map keys."""
    end = _scan(data, 0, 0)
    if end != len(data):
        raise CoseError(f"{len(data) - end} bytes after the CBOR item")
    return _cbor2_loads(data)


def _cbor2_loads(data: bytes) -> Any:
    try:
        return cbor2.loads(data, allow_duplicate_keys=False, max_depth=MAX_DEPTH + 2)
    except (cbor2.CBORError, ValueError, TypeError, OverflowError) as exc:
        raise CoseError(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from exc


# --------------------------------------------------------------------------- COSE_Sign1


@dataclass(frozen=True)
class CoseSign1:
    """A decoded COSE_Sign1. `protected` and `payload` are the byte strings exactly as received."""

    protected: bytes
    unprotected: dict[Any, Any]
    payload: bytes
    signature: bytes
    tagged: bool


def decode_sign1(data: bytes) -> CoseSign1:
    """Decode a COSE_Sign1 (untagged, or with tag 18) and check the types of its four members."""
    tagged = False
    pos = 0
    major, _, arg, after = _head(data, 0)
    if major == 6:
        if arg != COSE_SIGN1_TAG:
            raise CoseError(f"unexpected CBOR tag {arg} (only tag 18, COSE_Sign1, is allowed)")
        tagged, pos = True, after
    end = _scan(data, pos, 0)
    if end != len(data):
        raise CoseError(f"{len(data) - end} bytes after the COSE_Sign1 structure")
    value = _cbor2_loads(data[pos:])
    if not isinstance(value, list):
        raise CoseError(f"expected a COSE_Sign1 array, got {_kind(value)}")
    if len(value) != 4:
        raise CoseError(f"COSE_Sign1 array has {len(value)} items, expected 4")
    protected, unprotected, payload, signature = value
    if not isinstance(protected, bytes):
        raise CoseError(f"protected header is {_kind(protected)}, expected a byte string")
    if not isinstance(unprotected, dict):
        raise CoseError(f"unprotected header is {_kind(unprotected)}, expected a map")
    if not isinstance(payload, bytes):
        raise CoseError(f"payload is {_kind(payload)}, expected a byte string")
    if not isinstance(signature, bytes):
        raise CoseError(f"signature is {_kind(signature)}, expected a byte string")
    if len(signature) != ES384_SIGNATURE_LEN:
        raise CoseError(f"signature is {len(signature)} bytes, expected {ES384_SIGNATURE_LEN}")
    return CoseSign1(protected, unprotected, payload, signature, tagged)


def encode_sign1(protected: bytes, payload: bytes, signature: bytes, *, tagged: bool = False) -> bytes:
    """Encode a COSE_Sign1 with an empty unprotected header (the NSM's form when untagged)."""
    body = cbor2.dumps([protected, {}, payload, signature])
    return (bytes([0xC0 | COSE_SIGN1_TAG]) + body) if tagged else body


def sig_structure(protected: bytes, payload: bytes) -> bytes:
    """`["Signature1", protected, h'', payload]`, definite lengths (RFC 9052 §4.4)."""
    return bytes(cbor2.dumps(["Signature1", protected, b"", payload]))


def verify_es384(public_key: ec.EllipticCurvePublicKey, protected: bytes, payload: bytes,
                 signature: bytes) -> bool:
    """Verify a raw `r || s` ES384 signature. High-S values are accepted (real AWS documents)."""
    if len(signature) != ES384_SIGNATURE_LEN:
        return False
    r = int.from_bytes(signature[:_P384_COORD], "big")
    s = int.from_bytes(signature[_P384_COORD:], "big")
    try:
        public_key.verify(encode_dss_signature(r, s), sig_structure(protected, payload),
                          ec.ECDSA(hashes.SHA384()))
    except (InvalidSignature, ValueError):
        return False
    return True


def sign_es384(private_key: ec.EllipticCurvePrivateKey, protected: bytes, payload: bytes) -> bytes:
    """Sign the Sig_structure and return the raw 96-byte `r || s` signature."""
    der = private_key.sign(sig_structure(protected, payload), ec.ECDSA(hashes.SHA384()))
    r, s = decode_dss_signature(der)
    return r.to_bytes(_P384_COORD, "big") + s.to_bytes(_P384_COORD, "big")


def _kind(value: object) -> str:
    names = {bytes: "a byte string", str: "a text string", list: "an array", dict: "a map",
             int: "an integer", float: "a float", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "another CBOR value")
