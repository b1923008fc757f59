"""Encrypted OpenPGP messages, PKESK v3 + SEIPD v1, without PGPy (formats.md §7, §11).

The recipes layer: `encrypt` and `decrypt` are all a caller needs (the CLI's secret encryption,
the shardfile writer and reader, locksmith-oneshot). Ciphers, CFB, MDC and padding are not
knobs. PGPy is not used because it is slow to import on the boot path, cannot read a stream of
several messages, and never tries wildcard (all-zero) key IDs.

Public API:
  * `encrypt(plaintext, recipients, *, wildcard=False, inner=None, urandom=os.urandom)
    -> bytes` (binary message)
  * `decrypt(message, keys, *, max_size=MAX_SIZE) -> Decrypted` (binary or armored input)
  * `signed_literal(body, signer, *, created, hashed=()) -> bytes`: one-pass signature +
    literal + signature, the inner packets of a shardfile share message (formats.md §7.2)
  * `Decrypted(plaintext, key, one_pass_signatures, signatures)`
  * errors: `MessageError` > `NotIntegrityProtected`, `UnsupportedMessage`,
    `DecompressionLimit`; `DecryptionError` (text `selected key cannot decrypt this message`)
    > `NoMatchingRecipient` (no PKESK was addressed to any of the keys).
"""

# No `from __future__ import annotations`: see keys.py (NamedTuple fields at import).

import os
import zlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, NamedTuple

from locksmith.core.openpgp import pkesk as _pkesk
from locksmith.core.openpgp import seipd
from locksmith.core.openpgp.armor import dearmor_one, is_armored
from locksmith.core.openpgp.errors import (
    DecryptionError, MessageError, OpenPGPError, PacketError,
)
from locksmith.core.openpgp.keys import DecryptionKey, PublicKey, SecretKey
from locksmith.core.openpgp.packets import (
    AEAD, COMPRESSED, LITERAL, MARKER, ONE_PASS_SIGNATURE, PADDING, PKESK, SEIPD, SIGNATURE,
    SYMMETRIC_NO_MDC, Packet, encode_packet, parse_packets,
)
from locksmith.core.openpgp.seipd import UnsupportedMessage

if TYPE_CHECKING:
    from locksmith.core.openpgp import signature

__all__ = [
    "MAX_SIZE", "Decrypted", "encrypt", "decrypt", "signed_literal", "MessageError",
    "DecryptionError", "NoMatchingRecipient", "NotIntegrityProtected", "UnsupportedMessage",
    "DecompressionLimit",
]

MAX_SIZE = 1 << 20  # formats.md §11: 1 MiB of decompressed data per message
_SKESK = 3
_CANNOT = "selected key cannot decrypt this message"
_COMPRESSION_NONE, _ZIP, _ZLIB, _BZIP2 = 0, 1, 2, 3


class NoMatchingRecipient(DecryptionError):
    """No PKESK names (or, as a wildcard, could be for) any of the given keys."""


class NotIntegrityProtected(MessageError):
    pass


class DecompressionLimit(MessageError):
    pass


class Decrypted(NamedTuple):  # not a dataclass: see keys.PublicKey
    """A decrypted message: the literal body, the key that opened it, and unverified signatures.

    Signatures are not checked here (locksmith-oneshot ignores them; the shardfile reader
    verifies them with `signature.verify(signer, sig, signature.document(plaintext))`). Their
    packets are parsed on access, so a signature this project cannot read only matters to
    callers that look at it.
    """

    plaintext: bytes
    key: DecryptionKey
    one_pass_packets: tuple[bytes, ...] = ()
    signature_packets: tuple[bytes, ...] = ()

    def __repr__(self) -> str:
        return "Decrypted()"  # never the plaintext or the key

    @property
    def one_pass_signatures(self) -> "tuple[signature.OnePassSignature, ...]":
        # Deferred: the signature/sigpackets/subpackets stack is not needed to decrypt (oneshot).
        from locksmith.core.openpgp import signature
        return tuple(signature.OnePassSignature.parse(b) for b in self.one_pass_packets)

    @property
    def signatures(self) -> "tuple[signature.Signature, ...]":
        from locksmith.core.openpgp import signature  # deferred: see one_pass_signatures
        return tuple(signature.Signature.parse(b) for b in self.signature_packets)


# --- writing -----------------------------------------------------------------------------


def _literal(body: bytes) -> bytes:
    # Format 'b', empty file name, date 0 (cli.md §4, formats.md §7.2): nothing but the value.
    return encode_packet(LITERAL, b"b\x00\x00\x00\x00\x00" + body)


def signed_literal(body: bytes, signer: SecretKey, *, created: int,
                   hashed: "Sequence[signature.Subpacket]" = ()) -> bytes:
    """One-pass signature, literal, binary-document signature (SHA-512) by `signer`."""
    from locksmith.core.openpgp import signature  # deferred: only writers sign (not oneshot)
    ops = signature.OnePassSignature.for_key(signer.public, signature.BINARY, signature.SHA512)
    sig = signature.create(signer, signature.document(body), signature.BINARY, created=created,
                           hashed=hashed)
    return ops.packet() + _literal(body) + sig.packet()


def encrypt(plaintext: bytes, recipients: Sequence[PublicKey], *, wildcard: bool = False,
            inner: bytes | None = None,
            urandom: Callable[[int], bytes] = os.urandom) -> bytes:
    """A binary message: one PKESK v3 per recipient key, then SEIPD v1 with AES-256.

    `plaintext` is the literal body. `inner`, when given, replaces the default single literal
    packet (e.g. `signed_literal(...)`); it must read back under `decrypt`'s grammar with
    `plaintext` as its literal body, so a writer cannot produce what readers reject.
    `wildcard` writes all-zero key IDs (shardfiles); otherwise each PKESK names its key.
    `urandom` supplies the session key, the CFB prefix and Curve25519 ephemeral scalars; it
    is a parameter only so that tests can be reproducible.
    """
    if not recipients:
        raise ValueError("a message needs at least one recipient")
    if inner is None:
        inner = _literal(plaintext)
    else:
        body, _, _ = _read_inner(inner, MAX_SIZE)
        if body != plaintext:
            raise ValueError("inner packets do not carry the plaintext as their literal body")
    key = urandom(32)
    out = [_pkesk.build(r, _pkesk.AES256, key, wildcard=wildcard, urandom=urandom).packet()
           for r in recipients]
    out.append(encode_packet(SEIPD, seipd.encrypt(_pkesk.AES256, key, inner, urandom=urandom)))
    return b"".join(out)


# --- reading -----------------------------------------------------------------------------


def decrypt(message: bytes | str, keys: Sequence[DecryptionKey], *,
            max_size: int = MAX_SIZE, likely_recipient: int | None = None) -> Decrypted:
    """Decrypt one message with the first of `keys` that works (formats.md §7.4 trial rule).

    Every PKESK is tried with every compatible key (its own key for a real key ID; each key of
    the algorithm for a wildcard); the first session key whose SEIPD has a valid MDC wins.
    `likely_recipient` (a PKESK position) is tried first: with wildcard recipients each try
    is a private-key operation, which on a smart card may each wait for a touch.
    """
    esks, data = _structure(message)
    if likely_recipient is not None and 0 <= likely_recipient < len(esks):
        esks.insert(0, esks.pop(likely_recipient))
    attempted = False
    unsupported: UnsupportedMessage | None = None
    seen: set[tuple[int, bytes]] = set()
    for esk in esks:
        for key in keys:
            if not _pkesk.compatible(esk, key.public):
                continue
            attempted = True
            try:
                session = _pkesk.unwrap(esk, key)
            except UnsupportedMessage as exc:  # e.g. CAST5: say so if nothing else works
                unsupported = exc
                continue
            except OpenPGPError:  # wrong key, or a PKESK we cannot read: try the next one
                continue
            if session in seen:
                continue
            seen.add(session)
            try:
                inner = seipd.decrypt(session[0], session[1], data)
            except DecryptionError:
                continue
            body, ops, sigs = _read_inner(inner, max_size)
            return Decrypted(body, key, ops, sigs)
    if unsupported is not None:
        raise unsupported
    raise DecryptionError(_CANNOT) if attempted else NoMatchingRecipient(_CANNOT)


def _packets(data: bytes) -> list[Packet]:
    try:
        return parse_packets(data)
    except PacketError as exc:
        raise MessageError(f"malformed message: {exc}") from exc


def _structure(message: bytes | str) -> tuple[list[_pkesk.PKESK], bytes]:
    """Check the message grammar (markers, ESKs, one encrypted-data packet); keep the PKESKs."""
    if isinstance(message, str) or is_armored(message):
        message = dearmor_one(message, "MESSAGE")
    packets = [p for p in _packets(bytes(message)) if p.tag != MARKER]
    if not packets:
        raise MessageError("malformed message: no packets")
    last = packets[-1]
    if last.tag == SYMMETRIC_NO_MDC:
        raise NotIntegrityProtected("message is not integrity protected (no MDC)")
    if last.tag == AEAD:
        raise UnsupportedMessage("AEAD encrypted data (packet tag 20) is not supported")
    if last.tag != SEIPD:
        raise MessageError("malformed message: it does not end in encrypted data")
    seipd.check_version(last.body)
    esks: list[_pkesk.PKESK] = []
    for packet in packets[:-1]:
        if packet.tag == PKESK:
            try:
                esks.append(_pkesk.PKESK.parse(packet.body))
            except MessageError:
                continue  # a version we cannot use (v6): not for us
        elif packet.tag != _SKESK:  # passphrase-encrypted session keys are simply not ours
            raise MessageError(f"malformed message: unexpected packet (tag {packet.tag})")
    if len(esks) + sum(p.tag == _SKESK for p in packets[:-1]) == 0:
        raise MessageError("malformed message: no encrypted session key")
    return esks, last.body


def _read_inner(data: bytes, max_size: int) -> tuple[bytes, tuple[bytes, ...], tuple[bytes, ...]]:
    """Literal body, one-pass and signature packet bodies of decrypted SEIPD content.

    Grammar: an optional single compressed packet around the rest; then exactly one literal
    packet, with one-pass signatures, signatures, markers and padding around it.
    """
    packets = _packets(data)
    if len(packets) == 1 and packets[0].tag == COMPRESSED:
        packets = _packets(_decompress(packets[0].body, max_size))
    literals: list[bytes] = []
    ops: list[bytes] = []
    sigs: list[bytes] = []
    for packet in packets:
        if packet.tag == LITERAL:
            literals.append(_literal_body(packet.body))
        elif packet.tag == ONE_PASS_SIGNATURE:
            ops.append(packet.body)
        elif packet.tag == SIGNATURE:
            sigs.append(packet.body)
        elif packet.tag not in (MARKER, PADDING):
            raise MessageError(f"malformed message: unexpected packet (tag {packet.tag}) "
                               "inside the encrypted data")
    if len(literals) != 1:
        raise MessageError(f"malformed message: {len(literals)} literal data packets")
    return literals[0], tuple(ops), tuple(sigs)


def _literal_body(body: bytes) -> bytes:
    if len(body) < 6 or len(body) < 6 + body[1]:
        raise MessageError("malformed message: truncated literal data packet")
    return body[6 + body[1] :]


def _decompress(body: bytes, max_size: int) -> bytes:
    if not body:
        raise MessageError("malformed message: empty compressed data packet")
    algorithm, data = body[0], body[1:]
    limit = max_size + 1
    try:
        if algorithm == _COMPRESSION_NONE:
            out, done = data[:limit], True
        elif algorithm in (_ZIP, _ZLIB):
            z = zlib.decompressobj(-15 if algorithm == _ZIP else 15)
            out = z.decompress(data, limit)
            done = z.eof
        elif algorithm == _BZIP2:
            import bz2  # deferred: bzip2 messages are rare, and this loads _bz2 (oneshot path)
            b = bz2.BZ2Decompressor()
            out = b.decompress(data, limit)
            done = b.eof
        else:
            raise UnsupportedMessage(f"unsupported compression algorithm {algorithm}")
    except (zlib.error, OSError, EOFError, ValueError) as exc:
        if isinstance(exc, OpenPGPError):
            raise
        raise MessageError("malformed message: invalid compressed data") from exc
    if len(out) > max_size:
        raise DecompressionLimit(f"decompressed message exceeds {max_size} bytes")
    if not done:
        raise MessageError("malformed message: truncated compressed data")
    return out
