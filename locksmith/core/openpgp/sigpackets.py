"""Signature and one-pass signature packets (RFC 4880 §5.2.3, §5.4): parse and serialize.

Split out of `signature` only for size; import from `signature`, which re-exports all of this
and is where hashing, signing and verification live. The subpacket areas are kept as raw wire
bytes because verification must hash exactly what the signer hashed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from locksmith.core.openpgp.errors import OpenPGPError
from locksmith.core.openpgp.keys import ECDSA, EDDSA, RSA_ALGORITHMS, PublicKey, read_mpi
from locksmith.core.openpgp.packets import ONE_PASS_SIGNATURE, SIGNATURE, encode_packet
from locksmith.core.openpgp.subpackets import (
    CREATION_TIME, EMBEDDED_SIGNATURE, EXPORTABLE, FEATURES, ISSUER_FINGERPRINT, ISSUER_KEY_ID,
    KEY_EXPIRATION, KEY_FLAGS, KNOWN_TYPES, NOTATION, PREFERRED_COMPRESSION, PREFERRED_HASH,
    PREFERRED_SYMMETRIC, PRIMARY_USER_ID, REVOCATION_REASON, SIGNATURE_EXPIRATION,
    MalformedSignature, Notation, Subpacket, UnsupportedSignature, parse_area,
)

__all__ = [
    "BINARY",
    "TEXT",
    "GENERIC_CERTIFICATION",
    "PERSONA_CERTIFICATION",
    "CASUAL_CERTIFICATION",
    "POSITIVE_CERTIFICATION",
    "SUBKEY_BINDING",
    "PRIMARY_KEY_BINDING",
    "DIRECT_KEY",
    "KEY_REVOCATION",
    "SUBKEY_REVOCATION",
    "CERTIFICATION_REVOCATION",
    "MD5",
    "SHA1",
    "RIPEMD160",
    "SHA256",
    "SHA384",
    "SHA512",
    "SHA224",
    "Signature",
    "OnePassSignature",
]

# Signature types (RFC 4880 §5.2.1).
BINARY = 0x00
TEXT = 0x01
GENERIC_CERTIFICATION = 0x10
PERSONA_CERTIFICATION = 0x11
CASUAL_CERTIFICATION = 0x12
POSITIVE_CERTIFICATION = 0x13
SUBKEY_BINDING = 0x18
PRIMARY_KEY_BINDING = 0x19
DIRECT_KEY = 0x1F
KEY_REVOCATION = 0x20
SUBKEY_REVOCATION = 0x28
CERTIFICATION_REVOCATION = 0x30

# Hash algorithm ids (RFC 4880 §9.4); hashing itself is in `signature`.
MD5, SHA1, RIPEMD160, SHA256, SHA384, SHA512, SHA224 = 1, 2, 3, 8, 9, 10, 11

@dataclass(frozen=True)
class Signature:
    """A v4 signature packet; the subpacket areas are kept byte-exact for hashing."""

    sig_type: int
    pubkey_algorithm: int
    hash_algorithm: int
    hashed_area: bytes
    unhashed_area: bytes
    left16: bytes
    material: bytes
    hashed: tuple[Subpacket, ...] = field(init=False, repr=False, compare=False)
    unhashed: tuple[Subpacket, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "hashed", parse_area(self.hashed_area))
        object.__setattr__(self, "unhashed", parse_area(self.unhashed_area))
        if len(self.left16) != 2:
            raise MalformedSignature("the digest prefix must be 2 bytes")
        if len(self.hashed_area) > 0xFFFF or len(self.unhashed_area) > 0xFFFF:
            raise MalformedSignature("subpacket area too large")

    @classmethod
    def parse(cls, body: bytes) -> "Signature":
        if not body:
            raise MalformedSignature("empty signature packet")
        if body[0] != 4:
            raise UnsupportedSignature(f"unsupported signature version {body[0]}")
        if len(body) < 8:
            raise MalformedSignature("truncated signature packet")
        hashed_len = int.from_bytes(body[4:6], "big")
        pos = 6 + hashed_len
        if pos + 2 > len(body):
            raise MalformedSignature("truncated signature packet")
        unhashed_len = int.from_bytes(body[pos : pos + 2], "big")
        end = pos + 2 + unhashed_len
        if end + 2 > len(body):
            raise MalformedSignature("truncated signature packet")
        return cls(body[1], body[2], body[3], bytes(body[6:pos]), bytes(body[pos + 2 : end]),
                   bytes(body[end : end + 2]), bytes(body[end + 2 :]))

    def serialize(self) -> bytes:
        return (self._header() + len(self.unhashed_area).to_bytes(2, "big") + self.unhashed_area
                + self.left16 + self.material)

    def packet(self) -> bytes:
        return encode_packet(SIGNATURE, self.serialize())

    def _header(self) -> bytes:
        return (bytes([4, self.sig_type, self.pubkey_algorithm, self.hash_algorithm])
                + len(self.hashed_area).to_bytes(2, "big") + self.hashed_area)

    def trailer(self) -> bytes:
        """What is hashed after the target (RFC 4880 §5.2.4): hashed part + 04 FF + length."""
        head = self._header()
        return head + b"\x04\xff" + len(head).to_bytes(4, "big")

    @property
    def mpis(self) -> tuple[bytes, ...]:
        """The signature MPIs (RSA: s; EdDSA, ECDSA: r, s) exactly as stored."""
        count = 1 if self.pubkey_algorithm in RSA_ALGORITHMS else 2
        if self.pubkey_algorithm not in (*RSA_ALGORITHMS, ECDSA, EDDSA):
            raise UnsupportedSignature(f"unsupported public-key algorithm {self.pubkey_algorithm}")
        out, pos = [], 0
        try:
            for _ in range(count):
                value, pos = read_mpi(self.material, pos)
                out.append(value)
        except OpenPGPError as exc:
            raise MalformedSignature("truncated signature MPIs") from exc
        if pos != len(self.material):
            raise MalformedSignature("trailing data after the signature MPIs")
        return tuple(out)

    # --- subpacket accessors: the hashed area only, unless said otherwise ---

    def _first(self, kind: int, *, unhashed_too: bool = False) -> Subpacket | None:
        areas = self.hashed + self.unhashed if unhashed_too else self.hashed
        return next((sp for sp in areas if sp.type == kind), None)

    @property
    def created(self) -> int | None:
        sp = self._first(CREATION_TIME)
        return None if sp is None else sp.as_time()

    @property
    def signature_expiration(self) -> int | None:
        """Seconds after creation at which the signature expires; None when it never does."""
        sp = self._first(SIGNATURE_EXPIRATION)
        return None if sp is None or sp.as_time() == 0 else sp.as_time()

    @property
    def key_expiration(self) -> int | None:
        """Seconds after the *key's* creation at which it expires; None when it never does."""
        sp = self._first(KEY_EXPIRATION)
        return None if sp is None or sp.as_time() == 0 else sp.as_time()

    @property
    def key_flags(self) -> int | None:
        """Key flags with the first octet in the low bits; None when absent (grants nothing)."""
        sp = self._first(KEY_FLAGS)
        return None if sp is None else int.from_bytes(sp.body, "little")

    @property
    def issuer_key_id(self) -> bytes | None:
        """Issuer key ID from either area (it is only a hint), else from the fingerprint."""
        sp = self._first(ISSUER_KEY_ID, unhashed_too=True)
        if sp is not None:
            if len(sp.body) != 8:
                raise MalformedSignature("issuer key ID subpacket must be 8 bytes")
            return sp.body
        fpr = self.issuer_fingerprint
        return None if fpr is None else fpr[-8:]

    @property
    def issuer_fingerprint(self) -> bytes | None:
        """The v4 issuer fingerprint (20 bytes) from either area; None for absent or not v4."""
        sp = self._first(ISSUER_FINGERPRINT, unhashed_too=True)
        if sp is None or sp.body[:1] != b"\x04":
            return None
        if len(sp.body) != 21:
            raise MalformedSignature("issuer fingerprint subpacket must be 21 bytes")
        return sp.body[1:]

    @property
    def embedded_signatures(self) -> tuple["Signature", ...]:
        """Embedded signatures (back-signatures) from either area: each carries its own proof."""
        return tuple(Signature.parse(sp.body) for sp in self.hashed + self.unhashed
                     if sp.type == EMBEDDED_SIGNATURE)

    @property
    def revocation_reason(self) -> tuple[int, str] | None:
        sp = self._first(REVOCATION_REASON)
        if sp is None:
            return None
        if not sp.body:
            raise MalformedSignature("empty reason-for-revocation subpacket")
        return sp.body[0], sp.body[1:].decode("utf-8", errors="replace")

    @property
    def primary_user_id(self) -> bool:
        sp = self._first(PRIMARY_USER_ID)
        return sp is not None and sp.body[:1] not in (b"", b"\x00")

    @property
    def notations(self) -> tuple[Notation, ...]:
        return tuple(sp.as_notation() for sp in self.hashed if sp.type == NOTATION)

    @property
    def features(self) -> bytes | None:
        sp = self._first(FEATURES)
        return None if sp is None else sp.body

    @property
    def preferred_symmetric(self) -> tuple[int, ...] | None:
        sp = self._first(PREFERRED_SYMMETRIC)
        return None if sp is None else tuple(sp.body)

    @property
    def preferred_hash(self) -> tuple[int, ...] | None:
        sp = self._first(PREFERRED_HASH)
        return None if sp is None else tuple(sp.body)

    @property
    def preferred_compression(self) -> tuple[int, ...] | None:
        sp = self._first(PREFERRED_COMPRESSION)
        return None if sp is None else tuple(sp.body)

    @property
    def exportable(self) -> bool:
        sp = self._first(EXPORTABLE)
        return sp is None or sp.body != b"\x00"

    def unknown_critical(self, known_types: frozenset[int] = KNOWN_TYPES,
                         known_notations: frozenset[str] = frozenset()) -> tuple[str, ...]:
        """Descriptions of critical hashed subpackets/notations the caller does not know.

        RFC 4880 §5.2.3.1: a signature with one of these must be treated as invalid.
        """
        unknown = []
        for sp in self.hashed:
            if not sp.critical:
                continue
            if sp.type == NOTATION:
                name = sp.as_notation().name
                if name not in known_notations:
                    unknown.append(f"critical notation {name!r}")
            elif sp.type not in known_types:
                unknown.append(f"critical subpacket {sp.type}")
        return tuple(unknown)


@dataclass(frozen=True)
class OnePassSignature:
    """A v3 one-pass signature packet (RFC 4880 §5.4)."""

    sig_type: int
    hash_algorithm: int
    pubkey_algorithm: int
    key_id: bytes
    last: bool = True

    @classmethod
    def for_key(cls, key: PublicKey, sig_type: int = BINARY,
                hash_algorithm: int = SHA512) -> "OnePassSignature":
        return cls(sig_type, hash_algorithm, key.algorithm, key.key_id, True)

    @classmethod
    def parse(cls, body: bytes) -> "OnePassSignature":
        if not body:
            raise MalformedSignature("empty one-pass signature packet")
        if body[0] != 3:
            raise UnsupportedSignature(f"unsupported one-pass signature version {body[0]}")
        if len(body) != 13:
            raise MalformedSignature("one-pass signature packet must be 13 bytes")
        if body[12] not in (0, 1):  # every writer uses 0 or 1; anything else is not a flag
            raise MalformedSignature("one-pass signature 'last' flag must be 0 or 1")
        return cls(body[1], body[2], body[3], bytes(body[4:12]), body[12] == 1)

    def serialize(self) -> bytes:
        return (bytes([3, self.sig_type, self.hash_algorithm, self.pubkey_algorithm])
                + self.key_id + bytes([1 if self.last else 0]))

    def packet(self) -> bytes:
        return encode_packet(ONE_PASS_SIGNATURE, self.serialize())
