"""The four messages of key forwarding (docs/forwarding.md §3), both directions.

    F1  R→P  {"version":1,"bundle_hash":"<64 hex>","nonce":"<64 hex>"}            Hello
    F2  P→R  {"nonce":"<64 hex>","attestation":"<hex>"}                            Challenge
    F3  R→P  {"attestation":"<hex>","approvals":["<approval file text>", …]}       Request
    F4  P→R  {"Forwarded":{"public_key":"<64 hex>","encrypted_secret":"<96 hex>"}}  Forwarded
          or {"Refused":{"reason":"<text>"}}                                       Refused

Each message travels as the payload of one keyfork-frame (`core.protocol.frame`); `encode()`
returns that payload (compact JSON, members in the order above, hex in lowercase), and the
`*_CAP` constants are the largest payload each receiver reads — checked from the frame header
before the body is read (`frame.FrameDecoder.next_payload(cap)`).

Both sides read strictly, unlike 49504's holder side: exactly the members shown (any order),
no duplicates, strings where strings are shown, hex of the right length in either case. Every
failure is a `MessageError` whose text is fixed here and never quotes the input, so it can be
logged as is; the receiver closes the connection without a response. The one value checked
by the *caller* rather than here is F1's `version`: any JSON integer parses, and the provider
answers one other than `VERSION` with `Refused` (§3).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from locksmith.core import strictjson

__all__ = [
    "ANSWER_CAP", "CHALLENGE_CAP", "DEFAULT_PORT", "HELLO_CAP", "MAX_APPROVALS",
    "MAX_APPROVAL_BYTES", "NONCE_LENGTH", "REQUEST_CAP", "SECRET_CIPHERTEXT_LENGTH", "VERSION",
    "Challenge", "Forwarded", "Hello", "MessageError", "Refused", "Request", "parse_answer",
    "parse_challenge", "parse_hello", "parse_request",
]

VERSION = 1
DEFAULT_PORT = 49505
MAX_APPROVALS = 254
MAX_APPROVAL_BYTES = 16 * 1024  # UTF-8 bytes of one approval file text
HELLO_CAP = 4 * 1024  # payload bytes
CHALLENGE_CAP = 160 * 1024
REQUEST_CAP = (1 << 20) - 32  # the frame limit: L = 32 + payload ≤ 1 MiB
ANSWER_CAP = 4 * 1024
NONCE_LENGTH = 32
HASH_LENGTH = 32
KEY_LENGTH = 32  # X25519 public keys
SECRET_CIPHERTEXT_LENGTH = 48  # the 32-byte secret and the 16-byte GCM tag

_HEX = re.compile(r"(?:[0-9a-fA-F]{2})*")


class MessageError(ValueError):
    """A message that must close the connection without a response; `str()` is a fixed,
    log-safe text naming the message and the member, never a piece of the input."""


# --- reading helpers -------------------------------------------------------------------------


def _object(payload: bytes | str, what: str) -> dict[str, Any]:
    try:
        value = strictjson.loads(payload)
    except strictjson.DuplicateMemberError:
        raise MessageError(f"{what} has a duplicate member") from None
    except strictjson.StrictJSONError:  # its texts may quote the input: replace them
        raise MessageError(f"{what} is not valid JSON") from None
    if not isinstance(value, dict):
        raise MessageError(f"{what} is not a JSON object")
    return value


def _exact(value: Any, what: str, members: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise MessageError(f"{what} is not a JSON object")
    for name in value:
        if name not in members:
            raise MessageError(f"{what} has an unknown member")
    for name in members:
        if name not in value:
            raise MessageError(f"{what} lacks member '{name}'")
    return value


def _string(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise MessageError(f"{what} must be a string")
    return value


def _hex(value: Any, what: str, length: int | None = None) -> bytes:
    text = _string(value, what)
    if not _HEX.fullmatch(text):
        raise MessageError(f"{what} must be hex")
    if length is not None and len(text) != 2 * length:
        raise MessageError(f"{what} must be {length} bytes")
    return bytes.fromhex(text)


def _compact(value: dict[str, Any]) -> bytes:
    return strictjson.dumps_compact(value).encode("utf-8")


def _check_length(value: bytes, length: int, what: str) -> None:
    """For the writers: a wrong length is our bug, not the peer's."""
    if len(value) != length:
        raise ValueError(f"{what} must be {length} bytes, got {len(value)}")


# --- F1 --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hello:
    version: int
    bundle_hash: bytes
    nonce: bytes  # Nr

    def encode(self) -> bytes:
        _check_length(self.bundle_hash, HASH_LENGTH, "bundle_hash")
        _check_length(self.nonce, NONCE_LENGTH, "nonce")
        return _compact({"version": self.version, "bundle_hash": self.bundle_hash.hex(),
                         "nonce": self.nonce.hex()})


def parse_hello(payload: bytes) -> Hello:
    """Provider side. `version` is any JSON integer (`true`, `1.0` and `1e0` are not)."""
    obj = _exact(_object(payload, "F1"), "F1", ("version", "bundle_hash", "nonce"))
    version = obj["version"]
    if not isinstance(version, int) or isinstance(version, bool):
        raise MessageError("F1 version must be an integer")
    return Hello(version, _hex(obj["bundle_hash"], "F1 bundle_hash", HASH_LENGTH),
                 _hex(obj["nonce"], "F1 nonce", NONCE_LENGTH))


# --- F2 --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Challenge:
    nonce: bytes  # Np
    attestation: bytes = field(repr=False)  # Dp, the provider's NSM document

    def encode(self) -> bytes:
        _check_length(self.nonce, NONCE_LENGTH, "nonce")
        return _compact({"nonce": self.nonce.hex(), "attestation": self.attestation.hex()})


def parse_challenge(payload: bytes) -> Challenge:
    """Requester side."""
    obj = _exact(_object(payload, "F2"), "F2", ("nonce", "attestation"))
    return Challenge(_hex(obj["nonce"], "F2 nonce", NONCE_LENGTH),
                     _hex(obj["attestation"], "F2 attestation"))


# --- F3 --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    attestation: bytes = field(repr=False)  # Dr, the requester's NSM document
    approvals: tuple[str, ...] = ()  # approval file texts (§4.2), judged by the provider

    def encode(self) -> bytes:
        if len(self.approvals) > MAX_APPROVALS:
            raise ValueError(f"at most {MAX_APPROVALS} approvals fit in F3")
        if any(len(text.encode("utf-8")) > MAX_APPROVAL_BYTES for text in self.approvals):
            raise ValueError(f"an approval of F3 is larger than {MAX_APPROVAL_BYTES} bytes")
        return _compact({"attestation": self.attestation.hex(),
                         "approvals": list(self.approvals)})


def parse_request(payload: bytes) -> Request:
    """Provider side: at most `MAX_APPROVALS` strings of at most `MAX_APPROVAL_BYTES` each."""
    obj = _exact(_object(payload, "F3"), "F3", ("attestation", "approvals"))
    attestation = _hex(obj["attestation"], "F3 attestation")
    approvals = obj["approvals"]
    if not isinstance(approvals, list):
        raise MessageError("F3 approvals must be an array of strings")
    if len(approvals) > MAX_APPROVALS:
        raise MessageError(f"F3 carries more than {MAX_APPROVALS} approvals")
    for text in approvals:
        _string(text, "F3 approvals element")
        # Lone surrogates were refused by the parser, so every string encodes.
        if len(text) > MAX_APPROVAL_BYTES or len(text.encode("utf-8")) > MAX_APPROVAL_BYTES:
            raise MessageError(f"an F3 approval is larger than {MAX_APPROVAL_BYTES} bytes")
    return Request(attestation, tuple(approvals))


# --- F4 --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Forwarded:
    public_key: bytes  # E, the provider's fresh X25519 key
    encrypted_secret: bytes = field(repr=False)  # C

    def encode(self) -> bytes:
        _check_length(self.public_key, KEY_LENGTH, "public_key")
        _check_length(self.encrypted_secret, SECRET_CIPHERTEXT_LENGTH, "encrypted_secret")
        return _compact({"Forwarded": {"public_key": self.public_key.hex(),
                                       "encrypted_secret": self.encrypted_secret.hex()}})


@dataclass(frozen=True)
class Refused:
    reason: str

    def encode(self) -> bytes:
        payload = _compact({"Refused": {"reason": self.reason}})
        if len(payload) > ANSWER_CAP:
            raise ValueError(f"a Refused answer must fit in {ANSWER_CAP} bytes")
        return payload


def parse_answer(payload: bytes) -> Forwarded | Refused:
    """Requester side: exactly one of `Forwarded` and `Refused`, each with exactly its
    members."""
    obj = _object(payload, "F4")
    if len(obj) != 1 or next(iter(obj)) not in ("Forwarded", "Refused"):
        raise MessageError("F4 is neither one Forwarded nor one Refused")
    if "Forwarded" in obj:
        body = _exact(obj["Forwarded"], "F4 Forwarded", ("public_key", "encrypted_secret"))
        return Forwarded(_hex(body["public_key"], "F4 public_key", KEY_LENGTH),
                         _hex(body["encrypted_secret"], "F4 encrypted_secret",
                              SECRET_CIPHERTEXT_LENGTH))
    body = _exact(obj["Refused"], "F4 Refused", ("reason",))
    return Refused(_string(body["reason"], "F4 reason"))
