"""Signature subpackets (RFC 4880 §5.2.3.1): the model, the area codec, and builders.

Split out of `signature` only for size; `signature` re-exports everything a caller needs, so
import from there. A subpacket area is kept as its raw wire bytes by `Signature` (verification
must hash exactly what was signed); the parsed `Subpacket` tuple is a view of those bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

from locksmith.core.openpgp.errors import OpenPGPError

__all__ = [
    "Notation",
    "Subpacket",
    "SignatureError",
    "MalformedSignature",
    "UnsupportedSignature",
    "BadSignature",
    "parse_area",
    "serialize_area",
    "CREATION_TIME",
    "SIGNATURE_EXPIRATION",
    "EXPORTABLE",
    "TRUST",
    "REGULAR_EXPRESSION",
    "REVOCABLE",
    "KEY_EXPIRATION",
    "PREFERRED_SYMMETRIC",
    "REVOCATION_KEY",
    "ISSUER_KEY_ID",
    "NOTATION",
    "PREFERRED_HASH",
    "PREFERRED_COMPRESSION",
    "KEY_SERVER_PREFERENCES",
    "PREFERRED_KEY_SERVER",
    "PRIMARY_USER_ID",
    "POLICY_URI",
    "KEY_FLAGS",
    "SIGNERS_USER_ID",
    "REVOCATION_REASON",
    "FEATURES",
    "SIGNATURE_TARGET",
    "EMBEDDED_SIGNATURE",
    "ISSUER_FINGERPRINT",
    "INTENDED_RECIPIENT",
    "PREFERRED_AEAD_CIPHERSUITES",
    "FLAG_CERTIFY",
    "FLAG_SIGN",
    "FLAG_ENCRYPT_COMMUNICATIONS",
    "FLAG_ENCRYPT_STORAGE",
    "FLAG_SPLIT_KEY",
    "FLAG_AUTHENTICATE",
    "FLAG_GROUP_KEY",
    "FEATURE_MDC",
    "REASON_NONE",
    "REASON_SUPERSEDED",
    "REASON_COMPROMISED",
    "REASON_RETIRED",
    "REASON_USER_ID_INVALID",
    "KNOWN_TYPES",
]

# Subpacket types (RFC 4880 §5.2.3.1, RFC 9580 §5.2.3.7).
CREATION_TIME = 2
SIGNATURE_EXPIRATION = 3
EXPORTABLE = 4
TRUST = 5
REGULAR_EXPRESSION = 6
REVOCABLE = 7
KEY_EXPIRATION = 9
PREFERRED_SYMMETRIC = 11
REVOCATION_KEY = 12
ISSUER_KEY_ID = 16
NOTATION = 20
PREFERRED_HASH = 21
PREFERRED_COMPRESSION = 22
KEY_SERVER_PREFERENCES = 23
PREFERRED_KEY_SERVER = 24
PRIMARY_USER_ID = 25
POLICY_URI = 26
KEY_FLAGS = 27
SIGNERS_USER_ID = 28
REVOCATION_REASON = 29
FEATURES = 30
SIGNATURE_TARGET = 31
EMBEDDED_SIGNATURE = 32
ISSUER_FINGERPRINT = 33
INTENDED_RECIPIENT = 35
PREFERRED_AEAD_CIPHERSUITES = 39

# Key flags (first octet in the low bits of `Signature.key_flags`).
FLAG_CERTIFY = 0x01
FLAG_SIGN = 0x02
FLAG_ENCRYPT_COMMUNICATIONS = 0x04
FLAG_ENCRYPT_STORAGE = 0x08
FLAG_SPLIT_KEY = 0x10
FLAG_AUTHENTICATE = 0x20
FLAG_GROUP_KEY = 0x80

# Features (first octet).
FEATURE_MDC = 0x01

# Reasons for revocation (RFC 4880 §5.2.3.23).
REASON_NONE = 0
REASON_SUPERSEDED = 1
REASON_COMPROMISED = 2
REASON_RETIRED = 3
REASON_USER_ID_INVALID = 32

# Subpacket types whose meaning this layer models, so a *critical* one is not "unknown". A
# caller that does not enforce one of them (trust signatures, designated revokers) should pass
# its own set to `Signature.unknown_critical`.
KNOWN_TYPES = frozenset({
    CREATION_TIME, SIGNATURE_EXPIRATION, EXPORTABLE, REVOCABLE, KEY_EXPIRATION,
    PREFERRED_SYMMETRIC, ISSUER_KEY_ID, NOTATION, PREFERRED_HASH, PREFERRED_COMPRESSION,
    KEY_SERVER_PREFERENCES, PREFERRED_KEY_SERVER, PRIMARY_USER_ID, POLICY_URI, KEY_FLAGS,
    SIGNERS_USER_ID, REVOCATION_REASON, FEATURES, EMBEDDED_SIGNATURE, ISSUER_FINGERPRINT,
    INTENDED_RECIPIENT, PREFERRED_AEAD_CIPHERSUITES,
})


class SignatureError(OpenPGPError):
    """A signature that is malformed, unsupported, or does not verify."""


class MalformedSignature(SignatureError):
    pass


class UnsupportedSignature(SignatureError):
    """A version, algorithm or hash this project does not implement."""


class BadSignature(SignatureError):
    """A well-formed signature that does not verify."""


@dataclass(frozen=True)
class Notation:
    """A notation data subpacket (RFC 4880 §5.2.3.16)."""

    name: str
    value: bytes
    human_readable: bool
    critical: bool


@dataclass(frozen=True)
class Subpacket:
    type: int
    body: bytes
    critical: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.type < 128:
            raise ValueError("a subpacket type is 0..127 (the top bit is the critical flag)")

    def serialize(self) -> bytes:
        length = len(self.body) + 1  # the length counts the type octet
        if length < 192:
            head = bytes([length])
        elif length < 8384:
            length -= 192
            head = bytes([(length >> 8) + 192, length & 0xFF])
        else:
            head = b"\xff" + length.to_bytes(4, "big")
        return head + bytes([self.type | (0x80 if self.critical else 0)]) + self.body

    # Builders for what this project writes. Times are seconds since the epoch (or, for the
    # two expiration subpackets, seconds after the key's / signature's creation).

    @classmethod
    def creation_time(cls, when: int) -> "Subpacket":
        return cls(CREATION_TIME, _u32(when, "creation time"))

    @classmethod
    def signature_expiration(cls, seconds: int) -> "Subpacket":
        return cls(SIGNATURE_EXPIRATION, _u32(seconds, "signature expiration"))

    @classmethod
    def key_expiration(cls, seconds: int) -> "Subpacket":
        return cls(KEY_EXPIRATION, _u32(seconds, "key expiration"))

    @classmethod
    def key_flags(cls, flags: int) -> "Subpacket":
        if flags < 0:
            raise ValueError("negative key flags")
        return cls(KEY_FLAGS, flags.to_bytes(max(1, (flags.bit_length() + 7) // 8), "little"))

    @classmethod
    def issuer_key_id(cls, key_id: bytes) -> "Subpacket":
        if len(key_id) != 8:
            raise ValueError("a key ID is 8 bytes")
        return cls(ISSUER_KEY_ID, bytes(key_id))

    @classmethod
    def issuer_fingerprint(cls, fingerprint: bytes) -> "Subpacket":
        if len(fingerprint) != 20:
            raise ValueError("a v4 fingerprint is 20 bytes")
        return cls(ISSUER_FINGERPRINT, b"\x04" + fingerprint)

    @classmethod
    def primary_user_id(cls) -> "Subpacket":
        return cls(PRIMARY_USER_ID, b"\x01")

    @classmethod
    def preferred_symmetric(cls, *algorithms: int) -> "Subpacket":
        return cls(PREFERRED_SYMMETRIC, bytes(algorithms))

    @classmethod
    def preferred_hash(cls, *algorithms: int) -> "Subpacket":
        return cls(PREFERRED_HASH, bytes(algorithms))

    @classmethod
    def preferred_compression(cls, *algorithms: int) -> "Subpacket":
        return cls(PREFERRED_COMPRESSION, bytes(algorithms))

    @classmethod
    def features(cls, flags: int) -> "Subpacket":
        return cls(FEATURES, bytes([flags]))

    @classmethod
    def embedded_signature(cls, signature_body: bytes) -> "Subpacket":
        return cls(EMBEDDED_SIGNATURE, bytes(signature_body))

    @classmethod
    def revocation_reason(cls, code: int, reason: str = "") -> "Subpacket":
        return cls(REVOCATION_REASON, bytes([code]) + reason.encode("utf-8"))

    @classmethod
    def notation(cls, name: str, value: bytes, *, human_readable: bool = False,
                 critical: bool = False) -> "Subpacket":
        raw_name = name.encode("utf-8")
        if len(raw_name) > 0xFFFF or len(value) > 0xFFFF:
            raise ValueError("notation name or value too long")
        flags = b"\x80\x00\x00\x00" if human_readable else b"\x00\x00\x00\x00"
        body = (flags + len(raw_name).to_bytes(2, "big") + len(value).to_bytes(2, "big")
                + raw_name + value)
        return cls(NOTATION, body, critical)

    # Readers. Each raises MalformedSignature when the body does not fit its type.

    def as_time(self) -> int:
        if len(self.body) != 4:
            raise MalformedSignature(f"subpacket {self.type} must be 4 bytes")
        return int.from_bytes(self.body, "big")

    def as_notation(self) -> Notation:
        body = self.body
        if len(body) < 8:
            raise MalformedSignature("truncated notation subpacket")
        name_len = int.from_bytes(body[4:6], "big")
        value_len = int.from_bytes(body[6:8], "big")
        if 8 + name_len + value_len != len(body):
            raise MalformedSignature("notation subpacket lengths do not match its size")
        name = body[8 : 8 + name_len].decode("utf-8", errors="replace")
        return Notation(name, body[8 + name_len :], bool(body[0] & 0x80), self.critical)


def _u32(value: int, what: str) -> bytes:
    if not 0 <= value <= 0xFFFFFFFF:
        raise ValueError(f"{what} does not fit in 32 bits")
    return value.to_bytes(4, "big")


def parse_area(area: bytes) -> tuple[Subpacket, ...]:
    """Split a subpacket area into subpackets; any framing error is `MalformedSignature`."""
    out: list[Subpacket] = []
    pos = 0
    while pos < len(area):
        first = area[pos]
        if first < 192:
            length, pos = first, pos + 1
        elif first < 255:
            if pos + 2 > len(area):
                raise MalformedSignature("truncated subpacket length")
            length, pos = ((first - 192) << 8) + area[pos + 1] + 192, pos + 2
        else:
            if pos + 5 > len(area):
                raise MalformedSignature("truncated subpacket length")
            length, pos = int.from_bytes(area[pos + 1 : pos + 5], "big"), pos + 5
        if length == 0 or pos + length > len(area):
            raise MalformedSignature("invalid subpacket length")
        kind = area[pos]
        out.append(Subpacket(kind & 0x7F, bytes(area[pos + 1 : pos + length]), bool(kind & 0x80)))
        pos += length
    return tuple(out)


def serialize_area(subpackets: tuple[Subpacket, ...] | list[Subpacket]) -> bytes:
    area = b"".join(sp.serialize() for sp in subpackets)
    if len(area) > 0xFFFF:
        raise ValueError("subpacket area too large")
    return area
