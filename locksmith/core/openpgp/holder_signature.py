"""Holders' detached signatures over the signed payload P (protocol.md §6, §7 step 2).

Signing and checking both go through `signature.py` (one hasher); this module adds only the
rules protocol.md states about *the signature*: exactly one signature packet, a document type
(0x00 or 0x01), a creation time, an accepted hash, no unknown critical subpacket, creation time
at most 60 s ahead of the verifier's clock, made by a signing key live at S and at now
(formats.md §13.3), matching exactly one holder. Each rejection text of protocol.md §7 is
defined once here; the failure also carries the fixed log category of protocol.md §7
("Logging"), so the server can log one bounded line without repeating any input.

Identification cost (review finding F3): a submission's signature is one packet, so what it
covers — the canonicalised P plus the trailer, hashed with its one hash algorithm — is the same
for every candidate key. `signed_digest` computes it once and checks the 2-byte prefix, and
`verifies_digest` checks a key against that digest; `issuer_hints` reads the issuer key IDs and
fingerprints so that the caller can try the named keys first. `verify_holder_signature` below
stays the plain, one-holder-at-a-time reading of protocol.md §7 (the reference the indexed
identification in `protocol.holders` is tested against).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from locksmith.core.openpgp import armor, packets, signature as sigmod
from locksmith.core.openpgp.certs import Certificate
from locksmith.core.openpgp.errors import OpenPGPError
from locksmith.core.openpgp.keys import RSA_ALGORITHMS, PublicKey, SecretKey
from locksmith.core.openpgp.signature import PreparedSignature, Signature
# Package-internal: checking a key against a digest computed once (`verifies_digest`) is the
# whole point of F3, and `signature.verify` would recompute the digest for every key.
from locksmith.core.openpgp.signature import verify_digest
from locksmith.core.openpgp.validity import signing_candidates

__all__ = [
    "ACCEPTED_HASHES", "CLOCK_SKEW_TOLERANCE", "HolderMatch", "HolderSignatureError",
    "LOG_CLOCK_SKEW", "LOG_INVALID_ARMOR", "LOG_INVALID_CERTIFICATE", "LOG_INVALID_COUNT",
    "LOG_INVALID_SIGNATURE", "REJECT_CLOCK_SKEW", "REJECT_MULTIPLE_HOLDERS",
    "REJECT_NO_HOLDER", "armor_signature", "issuer_hints", "parse_holder_signature",
    "prepare_detached_text", "same_algorithm", "sign_detached_text", "signed_digest",
    "verifies_digest", "verify_for_holder", "verify_holder_signature",
]

REJECT_NO_HOLDER = "Signature did not verify for any bundle holder"
REJECT_CLOCK_SKEW = ("Signature is more than 60 seconds ahead of the enclave clock; "
                     "check signer and enclave clocks")
REJECT_MULTIPLE_HOLDERS = "Signature matches multiple bundle holders"

LOG_INVALID_SIGNATURE = "invalid holder signature"
LOG_INVALID_ARMOR = "invalid signature armor"
LOG_INVALID_COUNT = "invalid signature count"
LOG_INVALID_CERTIFICATE = "invalid holder certificate"
LOG_CLOCK_SKEW = "signature clock skew"

CLOCK_SKEW_TOLERANCE = 60  # seconds a signature may be ahead of the verifier (protocol.md §7)
ACCEPTED_HASHES = frozenset({sigmod.SHA256, sigmod.SHA384, sigmod.SHA512})  # protocol.md §6
_DOCUMENT_TYPES = frozenset({sigmod.BINARY, sigmod.TEXT})


class HolderSignatureError(OpenPGPError):
    """A submission signature that is rejected; `str()` is the protocol's `Rejected` reason."""

    def __init__(self, reason: str, category: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.category = category  # protocol.md §7 log category, never input-derived


@dataclass(frozen=True)
class HolderMatch:
    index: int  # the holder's index in the list given (0-based, = share x - 1)
    certificate: Certificate
    key: PublicKey  # the signing key that verified
    signature: Signature


# --- signing (holder side) -----------------------------------------------------------------


def prepare_detached_text(public_key: PublicKey, data: bytes, created: int) -> PreparedSignature:
    """For a smart card: the digest to sign; `.finish(mpis)` then gives the signature."""
    return sigmod.prepare(public_key, sigmod.document(data), sigmod.TEXT, created=created,
                          hash_algorithm=sigmod.SHA512)


def armor_signature(sig: Signature) -> bytes:
    """`-----BEGIN PGP SIGNATURE-----` armor, as carried in message 3 (protocol.md §6)."""
    return armor.armor("SIGNATURE", sig.packet()).encode("ascii")


def sign_detached_text(secret_key: SecretKey, data: bytes, created: int) -> bytes:
    """Armored detached text-mode (0x01) SHA-512 signature over `data` (protocol.md §6).

    Hashed: creation time and issuer fingerprint; unhashed: issuer key ID. Returned as the
    ASCII armor's bytes (decode as ASCII for the JSON string of message 3).
    """
    sig = sigmod.create(secret_key, sigmod.document(data), sigmod.TEXT, created=created,
                        hash_algorithm=sigmod.SHA512)
    return armor_signature(sig)


# --- checking (enclave side) ---------------------------------------------------------------


def parse_holder_signature(sig_bytes: bytes | str) -> Signature:
    """The one signature packet of `sig_bytes`, with the shape protocol.md §6–§7 require."""
    try:
        raw = sig_bytes.encode("utf-8") if isinstance(sig_bytes, str) else bytes(sig_bytes)
        stream = [p for blob in armor.openpgp_binary(raw) for p in packets.parse_packets(blob)]
    except (OpenPGPError, UnicodeEncodeError) as exc:  # e.g. a lone surrogate from JSON
        raise HolderSignatureError(REJECT_NO_HOLDER, LOG_INVALID_ARMOR) from exc
    if len(stream) != 1 or stream[0].tag != packets.SIGNATURE:
        raise HolderSignatureError(REJECT_NO_HOLDER, LOG_INVALID_COUNT)
    try:
        sig = Signature.parse(stream[0].body)
        unknown = sig.unknown_critical()
        created = sig.created
    except OpenPGPError as exc:
        raise HolderSignatureError(REJECT_NO_HOLDER, LOG_INVALID_SIGNATURE) from exc
    if (sig.sig_type not in _DOCUMENT_TYPES or created is None
            or sig.hash_algorithm not in ACCEPTED_HASHES or unknown):
        raise HolderSignatureError(REJECT_NO_HOLDER, LOG_INVALID_SIGNATURE)
    return sig


def signed_digest(sig: Signature, data: bytes) -> bytes | None:
    """The digest `sig` makes over `data` (one canonicalisation, one hash), or None when the
    signature's 2-byte digest prefix does not match it: then no key can verify the signature.
    The prefix is not a secret (anyone can compute it), so a match proves nothing either."""
    digest = sigmod.signature_digest(sig, sigmod.document(data))
    return digest if sig.left16 == digest[:2] else None


def verifies_digest(key: PublicKey, sig: Signature, digest: bytes) -> bool:
    """Whether `key` made `sig` over the document whose `signed_digest` is `digest`."""
    try:
        verify_digest(key, sig, digest)
        return True
    except ValueError:  # OpenPGPError, or `cryptography` refusing the key's numbers
        return False


def same_algorithm(sig: Signature, key: PublicKey) -> bool:
    """Whether `key` could have made `sig` at all (RSA variants count as one algorithm)."""
    return sig.pubkey_algorithm == key.algorithm or (
        sig.pubkey_algorithm in RSA_ALGORITHMS and key.algorithm in RSA_ALGORITHMS)


def issuer_hints(sig: Signature) -> tuple[frozenset[bytes], frozenset[bytes]]:
    """(issuer key IDs, v4 issuer fingerprints) named by `sig`, hashed or unhashed.

    Hints only: an unhashed subpacket is not covered by the signature, and a malformed one is
    skipped rather than refused (protocol.md §7 does not judge issuers). A fingerprint also
    names its key ID."""
    key_ids: set[bytes] = set()
    fingerprints: set[bytes] = set()
    for sp in (*sig.hashed, *sig.unhashed):
        if sp.type == sigmod.ISSUER_KEY_ID and len(sp.body) == 8:
            key_ids.add(bytes(sp.body))
        elif sp.type == sigmod.ISSUER_FINGERPRINT and len(sp.body) == 21 and sp.body[0] == 4:
            fingerprints.add(bytes(sp.body[1:]))
            key_ids.add(bytes(sp.body[-8:]))
    return frozenset(key_ids), frozenset(fingerprints)


def _verifies(key: PublicKey, sig: Signature, data: bytes) -> bool:
    try:
        sigmod.verify(key, sig, sigmod.document(data))
        return True
    except ValueError:  # OpenPGPError, or `cryptography` refusing the key's numbers
        return False


def verify_for_holder(sig: Signature, data: bytes, cert: Certificate,
                      now: int) -> tuple[PublicKey | None, bool]:
    """(the candidate key that verifies `sig`, or None; whether it is a clock-skew failure).

    The candidates are §13.3's: signing keys live at S and at now, created ≤ S. A signature
    that verifies but is dated more than 60 s after `now` is a clock-skew failure, not a match.
    """
    created = sig.created
    assert created is not None  # parse_holder_signature guarantees it
    for key in signing_candidates(cert, created, now):
        if _verifies(key, sig, data):
            return key, created > now + CLOCK_SKEW_TOLERANCE
    return None, False


def verify_holder_signature(sig_bytes: bytes | str, data: bytes,
                            holders: Sequence[Certificate | None], now: int) -> HolderMatch:
    """Identify the one holder whose signing key made `sig_bytes` over `data` (protocol.md §7).

    `None` entries stand for holders verified some other way (WebAuthn, formats.md §13.4);
    they are skipped and keep their index. Outcomes: exactly one match → `HolderMatch`; no
    match with a clock-skew failure → REJECT_CLOCK_SKEW; none → REJECT_NO_HOLDER; several →
    REJECT_MULTIPLE_HOLDERS (all raised as `HolderSignatureError`).
    """
    sig = parse_holder_signature(sig_bytes)
    matches: list[HolderMatch] = []
    skewed = False
    for index, cert in enumerate(holders):
        if cert is None:
            continue
        key, skew = verify_for_holder(sig, data, cert, now)
        if key is not None and skew:
            skewed = True
        elif key is not None:
            matches.append(HolderMatch(index, cert, key, sig))
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise HolderSignatureError(REJECT_MULTIPLE_HOLDERS, LOG_INVALID_SIGNATURE)
    if skewed:
        raise HolderSignatureError(REJECT_CLOCK_SKEW, LOG_CLOCK_SKEW)
    raise HolderSignatureError(REJECT_NO_HOLDER, LOG_INVALID_SIGNATURE)
