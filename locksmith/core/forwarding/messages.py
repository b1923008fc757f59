"""The messages of key forwarding (docs/forwarding.md §3), both directions.

    F1  R→P  {"version":1,"bundle_hash":"<64 hex>","nonce":"<64 hex>"}            Hello
    F2  P→R  {"nonce":"<64 hex>","attestation":"<hex>"}                            Challenge
    F3  R→P  {"attestation":"<hex>","approvals":["<approval file text>", …]}       Request
    F4  P→R  {"Forwarded":{"public_key":"<64 hex>","encrypted_secret":"<96 hex>"}}  Forwarded
          or {"Refused":{"reason":"<text>"}}                                       Refused
    A1  S→P  {"approvals":["<approval file text>", …]}  (1..16)                    Push
    A2  P→S  {"Stored":{"stored":<n>,"discarded":[{"index":<i>,"reason":"…"}]}}    Stored

A connection's first frame is F1 or A1 (a push, §4.4): `parse_first` tells them apart by their
member sets. Its header is checked against `FIRST_CAP` (A1's, the larger), and an F1 longer
than `HELLO_CAP` is refused after parsing, so F1 keeps its own 4 KiB bound.

Each message travels as the payload of one keyfork-frame (`core.protocol.frame`); `encode()`
returns that payload (compact JSON, members in the order above, hex in lowercase), and the
`*_CAP` constants are the largest payload each receiver reads — checked from the frame header
before the body is read (`frame.FrameDecoder.next_payload(cap)`).

Both sides read strictly, unlike 49504's holder side: exactly the members shown (any order),
no duplicates, strings where strings are shown, hex of the right length in either case. Every
failure is a `MessageError` whose text is fixed here and never quotes the input, so it can be
logged as is; the receiver closes the connection without a response. The one value checked
by the *caller* rather than here is F1's `version`: any JSON integer parses, and the provider
answers one other than `VERSION` with `Refused` (§3). A2's counts are checked against the A1
they answer by the pusher (`Stored.answers`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from locksmith.core import strictjson

__all__ = [
    "ANSWER_CAP", "CHALLENGE_CAP", "DEFAULT_PORT", "FIRST_CAP", "HELLO_CAP", "MAX_APPROVALS",
    "MAX_APPROVAL_BYTES", "MAX_PUSHED", "NONCE_LENGTH", "PUSH_CAP", "REQUEST_CAP",
    "SECRET_CIPHERTEXT_LENGTH", "STORED_CAP", "VERSION", "Challenge", "Discarded", "Forwarded",
    "Hello", "MessageError", "Push", "Refused", "Request", "Stored", "parse_answer",
    "parse_challenge", "parse_first", "parse_hello", "parse_request", "parse_stored",
]

VERSION = 1
DEFAULT_PORT = 49505
MAX_APPROVALS = 254
MAX_APPROVAL_BYTES = 16 * 1024  # UTF-8 bytes of one approval file text
HELLO_CAP = 4 * 1024  # payload bytes
CHALLENGE_CAP = 160 * 1024
REQUEST_CAP = (1 << 20) - 32  # the frame limit: L = 32 + payload ≤ 1 MiB
ANSWER_CAP = 4 * 1024
MAX_PUSHED = 16  # approval texts in one A1
PUSH_CAP = 272 * 1024  # 16 texts of 16 KiB and room for their JSON escaping
FIRST_CAP = PUSH_CAP  # the first frame is F1 or A1: its header is checked against the larger
STORED_CAP = 4 * 1024
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
    return strictjson.loads_message(payload, what, MessageError)


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
        _check_approvals(self.approvals, "F3", MAX_APPROVALS)
        return _compact({"attestation": self.attestation.hex(),
                         "approvals": list(self.approvals)})


def parse_request(payload: bytes) -> Request:
    """Provider side: at most `MAX_APPROVALS` strings of at most `MAX_APPROVAL_BYTES` each."""
    obj = _exact(_object(payload, "F3"), "F3", ("attestation", "approvals"))
    attestation = _hex(obj["attestation"], "F3 attestation")
    return Request(attestation, _approvals(obj["approvals"], "F3", MAX_APPROVALS))


def _approvals(value: Any, what: str, most: int) -> tuple[str, ...]:
    """An array of at most `most` strings of at most `MAX_APPROVAL_BYTES` UTF-8 bytes each."""
    if not isinstance(value, list):
        raise MessageError(f"{what} approvals must be an array of strings")
    if len(value) > most:
        raise MessageError(f"{what} carries more than {most} approvals")
    for text in value:
        _string(text, f"{what} approvals element")
        # Lone surrogates were refused by the parser, so every string encodes.
        if len(text) > MAX_APPROVAL_BYTES or len(text.encode("utf-8")) > MAX_APPROVAL_BYTES:
            raise MessageError(f"an {what} approval is larger than {MAX_APPROVAL_BYTES} bytes")
    return tuple(value)


def _check_approvals(approvals: tuple[str, ...], what: str, most: int) -> None:
    """For the writers: what the reader would refuse."""
    if len(approvals) > most:
        raise ValueError(f"at most {most} approvals fit in {what}")
    if any(len(text.encode("utf-8")) > MAX_APPROVAL_BYTES for text in approvals):
        raise ValueError(f"an approval of {what} is larger than {MAX_APPROVAL_BYTES} bytes")


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


# --- the first frame: F1 or A1 ---------------------------------------------------------------


@dataclass(frozen=True)
class Push:
    """A1: approval texts for the provider's store (§4.4), judged like F3's."""

    approvals: tuple[str, ...]

    def encode(self) -> bytes:
        if not self.approvals:
            raise ValueError("an A1 carries at least one approval")
        _check_approvals(self.approvals, "A1", MAX_PUSHED)
        payload = _compact({"approvals": list(self.approvals)})
        if len(payload) > PUSH_CAP:
            raise ValueError(f"an A1 must fit in {PUSH_CAP} bytes")
        return payload


def parse_first(payload: bytes) -> Hello | Push:
    """Provider side: the first frame of a connection, F1 or A1 by its member set."""
    obj = _object(payload, "F1 or A1")
    if set(obj) == {"approvals"}:
        approvals = _approvals(obj["approvals"], "A1", MAX_PUSHED)
        if not approvals:
            raise MessageError("A1 carries no approval")
        return Push(approvals)
    if set(obj) != {"version", "bundle_hash", "nonce"}:
        raise MessageError("the first message is neither F1 nor A1")
    if len(payload) > HELLO_CAP:
        raise MessageError(f"F1 is larger than {HELLO_CAP} bytes")
    return parse_hello(payload)


# --- A2 --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Discarded:
    index: int  # the text's 0-based position in A1
    reason: str  # §4.3's or §4.4's text


@dataclass(frozen=True)
class Stored:
    """A2: how many texts of the A1 the provider now holds, and why the others are not held."""

    stored: int
    discarded: tuple[Discarded, ...] = ()

    def encode(self) -> bytes:
        payload = _compact({"Stored": {"stored": self.stored, "discarded": [
            {"index": d.index, "reason": d.reason} for d in self.discarded]}})
        if len(payload) > STORED_CAP:
            raise ValueError(f"an A2 must fit in {STORED_CAP} bytes")
        return payload

    def answers(self, count: int) -> bool:
        """Whether this is a coherent answer to an A1 of `count` texts (§3): every index in
        range and named once, in order, and stored + discarded = count."""
        indices = [d.index for d in self.discarded]
        return (self.stored + len(indices) == count and indices == sorted(set(indices))
                and all(0 <= i < count for i in indices))


def _count(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise MessageError(f"{what} must be a non-negative integer")
    return value


def parse_stored(payload: bytes) -> Stored:
    """Pusher side: exactly `{"Stored":{"stored":n,"discarded":[{"index":i,"reason":"…"}]}}`."""
    obj = _object(payload, "A2")
    if len(obj) != 1 or "Stored" not in obj:
        raise MessageError("A2 is not one Stored")
    body = _exact(obj["Stored"], "A2 Stored", ("stored", "discarded"))
    items = body["discarded"]
    if not isinstance(items, list):
        raise MessageError("A2 discarded must be an array")
    discarded = []
    for item in items:
        entry = _exact(item, "A2 discarded element", ("index", "reason"))
        discarded.append(Discarded(_count(entry["index"], "A2 index"),
                                   _string(entry["reason"], "A2 reason")))
    return Stored(_count(body["stored"], "A2 stored"), tuple(discarded))
