"""The JSON messages of the shard-submission protocol (protocol.md §3), both directions.

    1  C→S  {"nonce":"<string>"}                                  NonceMessage
    2  S→C  {"attestation":[ints]}                                AttestationMessage
    3  C→S  {"signed_payload":"<P>","signature":"<armored>"}      SubmissionMessage
       P  = {"encrypted_payload":"<hex CT>","public_key":[32 ints]}          SignedPayload
       Q  = {"shard":[ints],"threshold":<uint>[,"bundle_hash":"<hex>"]}      ShareRequest
    4  S→C  {"Accepted":{"remaining":<uint>}} | {"Rejected":{"reason":"<text>"}}   Accepted/Rejected

Writers emit compact JSON with members in that order. Readers differ by side, as §3 says: the
enclave's readers (messages 1 and 3, P, Q) require exactly the members shown; the holder's
readers (messages 2 and 4) ignore unknown members at any level. Both refuse duplicate member
names anywhere, non-integers posing as integers (`true`, `1.0`, `1e0`), byte-array elements
outside 0..255 and lone surrogates (`strictjson`).

Every reader raises only `RemoteProtocolError`, whose message is a fixed text chosen here (never
a piece of the input), so the enclave can log it as is. What the error *means* is decided by the
caller: a bad message 1 or 3 closes the connection, a bad P or Q is answered `Malformed share
request`, a bad message 4 is an unexpected answer (`session.py`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from locksmith.core import canonical_cbor, strictjson
from locksmith.core.bundle.model import Bundle, BundleV0, BundleV1

__all__ = [
    "MALFORMED_SHARE_REQUEST", "MAX_NONCE_BYTES", "MESSAGE1_CAP", "MESSAGE3_CAP",
    "Accepted", "AttestationMessage", "LocalProtocolError", "NonceMessage", "ProtocolError",
    "Rejected", "RemoteProtocolError", "ShareRequest", "SignedPayload", "SubmissionMessage",
    "Verdict", "parse_attestation", "parse_nonce", "parse_share_request",
    "parse_signed_payload", "parse_submission", "parse_verdict", "submission_bundle_hash",
]

MESSAGE1_CAP = 4 * 1024  # payload bytes (protocol.md §2, this project's cap; README §5 #28)
MESSAGE3_CAP = 256 * 1024
MAX_NONCE_BYTES = 512  # protocol.md §4, = the NSM's nonce limit
MAX_UINT = 2**64 - 1  # `remaining` is a Rust usize on the reference's 64-bit targets

# protocol.md §7 step 3: every failure after a holder is identified and before Q is handed to
# the round. Defined here, produced only by `EnclaveSession.open_submission`.
MALFORMED_SHARE_REQUEST = "Malformed share request"

_HEX = re.compile(r"(?:[0-9a-fA-F]{2})*")


class ProtocolError(Exception):
    """Base of the two error kinds, as in h11."""


class RemoteProtocolError(ProtocolError):
    """The peer broke the protocol. `str()` is a fixed, log-safe text (no input echoed)."""


class LocalProtocolError(ProtocolError):
    """We used a session or codec wrongly (wrong state, bad argument): a bug on our side."""


# --- reading helpers -------------------------------------------------------------------------


def _load_object(payload: bytes | str, what: str) -> dict[str, Any]:
    return strictjson.loads_message(payload, what, RemoteProtocolError)


def _exact(obj: dict[str, Any], what: str, required: tuple[str, ...],
           optional: tuple[str, ...] = ()) -> None:
    """The enclave's rule: exactly these members (duplicates were refused by `_load_object`)."""
    for name in obj:
        if name not in required and name not in optional:
            raise RemoteProtocolError(f"{what} has an unknown member")
    for name in required:
        if name not in obj:
            raise RemoteProtocolError(f"{what} lacks member '{name}'")


def _read(reader: Any, value: Any, name: str, **kw: Any) -> Any:
    """Run a `strictjson.read_*` check; its texts name only our field and an index."""
    try:
        return reader(value, name, **kw)
    except strictjson.StrictJSONError as exc:
        raise RemoteProtocolError(str(exc)) from None


def _uint(value: Any, name: str, maximum: int | None = None) -> int:
    number: int = _read(strictjson.read_int, value, name)
    if number < 0 or (maximum is not None and number > maximum):
        raise RemoteProtocolError(f"{name} must be an unsigned integer")
    return number


def _compact(value: dict[str, Any]) -> bytes:
    return strictjson.dumps_compact(value).encode("utf-8")


# --- message 1 -------------------------------------------------------------------------------


@dataclass(frozen=True)
class NonceMessage:
    nonce: str

    def encode(self) -> bytes:
        return _compact({"nonce": self.nonce})

    @property
    def nonce_bytes(self) -> bytes:
        """The attestation's `nonce`: the UTF-8 bytes of the string exactly as received (§4)."""
        return self.nonce.encode("utf-8")


def parse_nonce(payload: bytes) -> NonceMessage:
    """Enclave side. Any failure closes the connection without a response (§4)."""
    obj = _load_object(payload, "message 1")
    _exact(obj, "message 1", ("nonce",))
    nonce: str = _read(strictjson.read_str, obj["nonce"], "nonce")
    # Lone surrogates were refused by the parser, so the string always encodes.
    if not 1 <= len(nonce.encode("utf-8")) <= MAX_NONCE_BYTES:
        raise RemoteProtocolError(f"nonce must be 1..{MAX_NONCE_BYTES} UTF-8 bytes")
    return NonceMessage(nonce)


# --- message 2 -------------------------------------------------------------------------------


@dataclass(frozen=True)
class AttestationMessage:
    document: bytes = field(repr=False)

    def encode(self) -> bytes:
        return _compact({"attestation": list(self.document)})


def parse_attestation(payload: bytes) -> AttestationMessage:
    """Holder side: unknown members ignored, `attestation` a byte array."""
    obj = _load_object(payload, "message 2")
    if "attestation" not in obj:
        raise RemoteProtocolError("message 2 lacks member 'attestation'")
    return AttestationMessage(_read(strictjson.read_bytes, obj["attestation"], "attestation"))


# --- message 3 and its inner P and Q ---------------------------------------------------------


@dataclass(frozen=True)
class SubmissionMessage:
    signed_payload: str = field(repr=False)  # P, a JSON text; signed as its UTF-8 bytes
    signature: str = field(repr=False)  # ASCII-armored detached signature

    def encode(self) -> bytes:
        return _compact({"signed_payload": self.signed_payload, "signature": self.signature})


def parse_submission(payload: bytes) -> SubmissionMessage:
    """Enclave side, §7 step 1: exactly two string members; failure closes the connection."""
    obj = _load_object(payload, "message 3")
    _exact(obj, "message 3", ("signed_payload", "signature"))
    return SubmissionMessage(_read(strictjson.read_str, obj["signed_payload"], "signed_payload"),
                             _read(strictjson.read_str, obj["signature"], "signature"))


@dataclass(frozen=True)
class SignedPayload:
    """P: the holder's fresh X25519 public key C and the sealed Q (ciphertext ‖ tag)."""

    encrypted_payload: bytes = field(repr=False)
    public_key: bytes

    def encode(self) -> str:
        """The JSON text that is signed and carried as the `signed_payload` string."""
        return strictjson.dumps_compact({"encrypted_payload": self.encrypted_payload.hex(),
                                         "public_key": list(self.public_key)})


def parse_signed_payload(text: str) -> SignedPayload:
    """Enclave side, §7 step 3; hex accepted in either case, no whitespace or odd length."""
    obj = _load_object(text, "signed payload")
    _exact(obj, "signed payload", ("encrypted_payload", "public_key"))
    hex_text: str = _read(strictjson.read_str, obj["encrypted_payload"], "encrypted_payload")
    if not _HEX.fullmatch(hex_text):
        raise RemoteProtocolError("encrypted_payload must be hex")
    public_key = _read(strictjson.read_bytes, obj["public_key"], "public_key", length=32)
    return SignedPayload(bytes.fromhex(hex_text), public_key)


@dataclass(frozen=True)
class ShareRequest:
    """Q. `shard` is a bytearray so that the holder of the object can wipe it (`wipe`).

    `bundle_hash` is kept as the string received (or None when absent or null): the round
    compares it as bytes and counts anything that is not 64 hex digits as different (§8 1).
    """

    shard: bytearray = field(repr=False)
    threshold: int
    bundle_hash: str | None = None

    def encode(self) -> bytes:
        value: dict[str, Any] = {"shard": list(self.shard), "threshold": self.threshold}
        if self.bundle_hash is not None:  # omitted, not null, for v0 bundles (§3, §12)
            value["bundle_hash"] = self.bundle_hash
        return _compact(value)

    def wipe(self) -> None:
        self.shard[:] = bytes(len(self.shard))


def parse_share_request(plaintext: bytes) -> ShareRequest:
    """Enclave side, §7 step 3. `shard` of any length: check 4 of §8 judges it, with its text."""
    obj = _load_object(plaintext, "share request")
    _exact(obj, "share request", ("shard", "threshold"), ("bundle_hash",))
    shard = bytearray(_read(strictjson.read_bytes, obj["shard"], "shard"))
    threshold = _uint(obj["threshold"], "threshold")
    bundle_hash = obj.get("bundle_hash")
    if bundle_hash is not None and not isinstance(bundle_hash, str):
        raise RemoteProtocolError("bundle_hash must be a string or null")
    return ShareRequest(shard, threshold, bundle_hash)


def submission_bundle_hash(bundle: Bundle) -> bytes | None:
    """The hash a holder sends and the enclave compares (§3): V1 bundle hash (formats.md §6.2),
    ImportedV0 content hash (§6.4), none for v0."""
    if isinstance(bundle, BundleV0):
        return None
    if isinstance(bundle, BundleV1):
        return canonical_cbor.bundle_hash(bundle.data)
    return bytes.fromhex(canonical_cbor.imported_v0_content_hash(bundle))


# --- message 4 -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Accepted:
    """`{"Accepted":{"remaining":n}}`: the share was counted; n more complete the quorum."""

    remaining: int

    def encode(self) -> bytes:
        return _compact({"Accepted": {"remaining": self.remaining}})


@dataclass(frozen=True)
class Rejected:
    """`{"Rejected":{"reason":text}}`: the share was not counted; clients treat `reason` as
    opaque text (§12)."""

    reason: str

    def encode(self) -> bytes:
        return _compact({"Rejected": {"reason": self.reason}})


Verdict = Accepted | Rejected


def parse_verdict(payload: bytes) -> Verdict:
    """Holder side: exactly one of `Accepted`/`Rejected`, unknown members ignored (§3, cli.md
    §5.2 step 7); anything else is an unexpected answer (`RemoteProtocolError`)."""
    obj = _load_object(payload, "message 4")
    present = [name for name in ("Accepted", "Rejected") if name in obj]
    if len(present) != 1:
        raise RemoteProtocolError("message 4 is neither one Accepted nor one Rejected")
    body = obj[present[0]]
    if not isinstance(body, dict):
        raise RemoteProtocolError(f"{present[0]} is not an object")
    if present[0] == "Accepted":
        if "remaining" not in body:
            raise RemoteProtocolError("Accepted lacks member 'remaining'")
        return Accepted(_uint(body["remaining"], "remaining", MAX_UINT))
    if "reason" not in body:
        raise RemoteProtocolError("Rejected lacks member 'reason'")
    return Rejected(_read(strictjson.read_str, body["reason"], "reason"))
