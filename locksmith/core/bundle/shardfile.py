"""The shardfile: Keyfork's OpenPGP shard format (formats.md §7).

One armored `PGP MESSAGE` whose content is N+1 encrypted messages: message 0 carries the
metadata (version, threshold, the shard-signing certificate and every holder's certificate) to
all holders; message i carries holder i's 33-byte share, signed by the shard-signing key, to that
holder only. Every PKESK has a wildcard key ID, so a reader learns nothing about recipients and
must try its keys (which is also why PGPy cannot read these files).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from locksmith.core import shamir
from locksmith.core.openpgp import message, quorumkey, signature, validity
from locksmith.core.openpgp.armor import armor, dearmor_one
from locksmith.core.openpgp.certs import Certificate, load_certificates
from locksmith.core.openpgp.errors import DecryptionError, OpenPGPError
from locksmith.core.openpgp.keys import DecryptionKey
from locksmith.core.openpgp.packets import PKESK, SEIPD, Packet, parse_packets

INVALID_STRUCTURE = "invalid shardfile packet structure"
INVALID_COUNT = "invalid shardfile message count"
CANNOT_DECRYPT = "selected key cannot decrypt this message"
BAD_METADATA = "unsupported or truncated shard metadata"
MISSING_SIGNER = "missing metadata signing certificate"
SIGNATURE_COUNT = "unexpected share signature count"
BAD_SIGNATURE = "share signature does not verify"
COORDINATE_MISMATCH = "share coordinate mismatch"
NOT_A_HOLDER = "this key is not a holder in the shardfile metadata"

METADATA_VERSION = 1
SHARE_LENGTH = 33
MIN_MESSAGES, MAX_MESSAGES = 2, 255


class ShardfileError(ValueError):
    """A shardfile that cannot be read or used; the message is one of this module's texts."""


@dataclass(frozen=True)
class Metadata:
    threshold: int
    signer: Certificate
    holders: tuple[Certificate, ...]

    @property
    def holder_fingerprints(self) -> tuple[str, ...]:
        return tuple(h.fingerprint for h in self.holders)


@dataclass(frozen=True)
class OwnShare:
    """A holder's decrypted share: `share[0]` is its coordinate x = index + 1."""

    share: bytes = field(repr=False)
    index: int
    metadata: Metadata

    @property
    def threshold(self) -> int:
        return self.metadata.threshold


# --- structure (§7.3) ------------------------------------------------------------------------


def split_messages(shardfile: str | bytes) -> list[bytes]:
    """The binary messages of a shardfile, checked against the `(PKESK+ SEIPD)+` grammar."""
    try:
        stream = parse_packets(dearmor_one(shardfile, "MESSAGE"))
    except OpenPGPError as exc:
        raise ShardfileError(INVALID_STRUCTURE) from exc
    messages: list[bytes] = []
    current: list[Packet] = []
    for packet in stream:
        if packet.tag == PKESK:
            current.append(packet)
        elif packet.tag == SEIPD and current:
            current.append(packet)
            messages.append(b"".join(p.serialize() for p in current))
            current = []
        else:
            raise ShardfileError(INVALID_STRUCTURE)
    if current or not messages:
        raise ShardfileError(INVALID_STRUCTURE)
    if not MIN_MESSAGES <= len(messages) <= MAX_MESSAGES:
        raise ShardfileError(INVALID_COUNT)
    return messages


def message_count(shardfile: str | bytes) -> int:
    return len(split_messages(shardfile))


# --- writing (§7.5) --------------------------------------------------------------------------


def build(secret: bytes, threshold: int, holders: Sequence[Certificate], *, at: int,
          urandom: Callable[[int], bytes] = os.urandom) -> str:
    """The armored shardfile for `holders` (in holder order), written at time `at`.

    Each holder's live storage-encryption keys at `at` receive a PKESK; a holder without one
    cannot receive a share, which is a caller error (eligibility is checked before this).
    """
    if not 1 <= threshold <= len(holders) <= shamir.MAX_SHARES:
        raise ValueError("threshold and holder count must satisfy 1 <= t <= n <= 254")
    recipients = [validity.storage_encryption_keys(h, at) for h in holders]
    for cert, keys in zip(holders, recipients):
        if not keys:
            raise ValueError(f"holder {cert.fingerprint} has no live storage-encryption key")
    signer = quorumkey.shard_signer(secret)
    signer_cert = quorumkey.shard_signer_certificate(signer, created=at)
    metadata = (bytes([METADATA_VERSION, threshold]) + signer_cert
                + b"".join(h.public().serialize() for h in holders))
    everyone = [key for keys in recipients for key in keys]
    out = [message.encrypt(metadata, everyone, wildcard=True, urandom=urandom)]
    shares = shamir.split(secret, threshold, len(holders), urandom)
    for share, keys in zip(shares, recipients):
        inner = message.signed_literal(share, signer, created=at)
        out.append(message.encrypt(share, keys, wildcard=True, inner=inner, urandom=urandom))
    return armor("MESSAGE", b"".join(out))


# --- reading (§7.4) --------------------------------------------------------------------------


def _decrypt(data: bytes, keys: Sequence[DecryptionKey],
             likely_recipient: int | None = None) -> message.Decrypted:
    try:
        return message.decrypt(data, keys, likely_recipient=likely_recipient)
    except DecryptionError as exc:
        raise ShardfileError(CANNOT_DECRYPT) from exc
    except OpenPGPError as exc:
        raise ShardfileError(INVALID_STRUCTURE) from exc


def parse_metadata(body: bytes) -> Metadata:
    if len(body) < 2 or body[0] != METADATA_VERSION:
        raise ShardfileError(BAD_METADATA)
    try:
        certs = load_certificates(body[2:])
    except OpenPGPError as exc:
        raise ShardfileError(BAD_METADATA) from exc
    if not certs:
        raise ShardfileError(MISSING_SIGNER)
    return Metadata(body[1], certs[0], tuple(certs[1:]))


def decrypt_metadata(shardfile: str | bytes, keys: Sequence[DecryptionKey]) -> Metadata:
    return parse_metadata(_decrypt(split_messages(shardfile)[0], keys).plaintext)


def decrypt_own_share(shardfile: str | bytes, keys: Sequence[DecryptionKey],
                      holder_fingerprint: str, holder_index: int | None = None) -> OwnShare:
    """Steps 1, 2 and 4–7 of formats.md §7.4 for the holder with `holder_fingerprint`.

    Step 3 (metadata against the bundle) belongs to the bundle layer, which knows the
    generation; `OwnShare.metadata` carries what it needs.
    """
    messages = split_messages(shardfile)
    # The metadata is sealed to every holder's keys in holder order (§7.5): a holder with one
    # storage key finds its PKESK at its own index, and a card then needs a single operation.
    metadata = parse_metadata(_decrypt(messages[0], keys, holder_index).plaintext)
    fingerprints = metadata.holder_fingerprints
    if holder_fingerprint not in fingerprints:
        raise ShardfileError(NOT_A_HOLDER)
    index = fingerprints.index(holder_fingerprint)
    if index + 1 >= len(messages):
        raise ShardfileError(INVALID_COUNT)
    opened = _decrypt(messages[index + 1], keys)
    try:
        signatures = opened.signatures
    except OpenPGPError as exc:
        raise ShardfileError(BAD_SIGNATURE) from exc
    if len(signatures) != 1:
        raise ShardfileError(SIGNATURE_COUNT)
    try:
        signature.verify(metadata.signer.primary, signatures[0],
                         signature.document(opened.plaintext))
    except OpenPGPError as exc:
        raise ShardfileError(BAD_SIGNATURE) from exc
    if signatures[0].sig_type != signature.BINARY:
        raise ShardfileError(BAD_SIGNATURE)
    share = opened.plaintext
    if len(share) != SHARE_LENGTH or share[0] != index + 1:
        raise ShardfileError(COORDINATE_MISMATCH)
    return OwnShare(share, index, metadata)
