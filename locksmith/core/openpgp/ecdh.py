"""RFC 6637 ECDH for OpenPGP: wrap and unwrap a session-key block for one recipient key.

Curve25519 (the quorum key, Keyfork holders) and NIST P-256/384/521 (formats.md §11). The
block handed in and out is `m = cipher octet ‖ session key ‖ checksum` (built by `pkesk`);
this module owns only what RFC 6637 adds: the ephemeral key, the KDF, PKCS#5 padding and the
AES key wrap. A wrong key shows up as an unwrap failure, which is `DecryptionError`.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, x25519
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from locksmith.core.openpgp.errors import DecryptionError, MessageError, OpenPGPError
from locksmith.core.openpgp.keys import (
    ECDH, DecryptionKey, DelegatedKey, PublicKey, encode_mpi, read_mpi,
)

__all__ = ["kdf", "encrypt_block", "decrypt_block"]

_KDF_HASHES: dict[int, type[hashes.HashAlgorithm]] = {
    8: hashes.SHA256, 9: hashes.SHA384, 10: hashes.SHA512,
}
_KEK_SIZES = {7: 16, 8: 24, 9: 32}  # AES-128/192/256
_ANONYMOUS_SENDER = b"Anonymous Sender    "

Random = Callable[[int], bytes]


def _params(key: PublicKey) -> tuple[type[hashes.HashAlgorithm], int]:
    if key.algorithm != ECDH or key.oid is None:
        raise MessageError("not an ECDH key")
    if key.kdf_hash not in _KDF_HASHES or key.kdf_cipher not in _KEK_SIZES:
        raise MessageError("unsupported ECDH KDF parameters")
    return _KDF_HASHES[key.kdf_hash], _KEK_SIZES[key.kdf_cipher]


def kdf(key: PublicKey, shared: bytes) -> bytes:
    """RFC 6637 §7: Hash(00000001 ‖ Z ‖ Param), truncated to the key-wrap key size.

    Param binds the recipient: curve OID, algorithm 18, the KDF parameters and the
    recipient's v4 fingerprint (the full 20 bytes, not the key ID).
    """
    hash_cls, size = _params(key)
    assert key.oid is not None and key.kdf_hash is not None and key.kdf_cipher is not None
    param = (bytes([len(key.oid)]) + key.oid + bytes([ECDH, 3, 1, key.kdf_hash, key.kdf_cipher])
             + _ANONYMOUS_SENDER + key.fingerprint)
    h = hashes.Hash(hash_cls())
    h.update(b"\x00\x00\x00\x01" + shared + param)
    return h.finalize()[:size]


def _pad(block: bytes) -> bytes:
    n = 8 - len(block) % 8
    return block + bytes([n]) * n


def _unpad(padded: bytes) -> bytes:
    # PKCS#5 as RFC 6637 §8 asks; a pad longer than 8 (some writers pad to 40) is accepted as
    # long as every pad octet holds the pad length.
    n = padded[-1] if padded else 0
    if n == 0 or n >= len(padded) or padded[-n:] != bytes([n]) * n:
        raise DecryptionError("selected key cannot decrypt this message")
    return padded[:-n]


def encrypt_block(recipient: PublicKey, block: bytes, *, urandom: Random = os.urandom) -> bytes:
    """PKESK algorithm fields for ECDH: MPI(ephemeral point) ‖ length octet ‖ wrapped block.

    `urandom` supplies the Curve25519 ephemeral scalar (injectable for reproducible tests);
    NIST ephemeral keys come from the library's own generator.
    """
    public = recipient.crypto_key()
    shared: bytes
    if isinstance(public, x25519.X25519PublicKey):
        eph = x25519.X25519PrivateKey.from_private_bytes(urandom(32))
        point = b"\x40" + eph.public_key().public_bytes_raw()
        shared = eph.exchange(public)
    elif isinstance(public, ec.EllipticCurvePublicKey):
        # Deferred: `serialization` (and its SSH/DSA/DH modules) is only for NIST points here.
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
        eph_ec = ec.generate_private_key(public.curve)
        point = eph_ec.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
        shared = eph_ec.exchange(ec.ECDH(), public)
    else:
        raise MessageError("not an ECDH key")
    wrapped = aes_key_wrap(kdf(recipient, shared), _pad(block))
    return encode_mpi(point) + bytes([len(wrapped)]) + wrapped


def decrypt_block(secret: DecryptionKey, fields: bytes) -> bytes:
    """Inverse of `encrypt_block` with the recipient's key; returns the unpadded block."""
    try:
        point, pos = read_mpi(fields, 0)
    except OpenPGPError as exc:
        raise MessageError("malformed ECDH session key fields") from exc
    if pos >= len(fields) or pos + 1 + fields[pos] != len(fields):
        raise MessageError("malformed ECDH session key fields")
    wrapped = fields[pos + 1 :]
    if len(wrapped) < 24 or len(wrapped) % 8:
        raise MessageError("malformed ECDH wrapped session key")
    shared = _shared_secret(secret, point)
    try:
        padded = aes_key_unwrap(kdf(secret.public, shared), wrapped)
    except InvalidUnwrap as exc:
        raise DecryptionError("selected key cannot decrypt this message") from exc
    return _unpad(padded)


def _shared_secret(secret: DecryptionKey, point: bytes) -> bytes:
    """ECDH with the ephemeral `point`, in software or on the key's device.

    The point is checked before a device sees it, so a malformed message never costs a card
    operation (or a touch); an all-zero result (a low-order point) opens nothing.
    """
    public = secret.public.crypto_key()
    try:
        if isinstance(public, x25519.X25519PublicKey):
            if len(point) != 33 or point[0] != 0x40:
                raise MessageError("malformed Curve25519 ephemeral point")
            if isinstance(secret, DelegatedKey):
                shared = secret.operations.agree(point[1:])
            elif isinstance(secret.private, x25519.X25519PrivateKey):
                shared = secret.private.exchange(x25519.X25519PublicKey.from_public_bytes(point[1:]))
            else:
                raise MessageError("not an ECDH key")
        elif isinstance(public, ec.EllipticCurvePublicKey):
            eph = ec.EllipticCurvePublicKey.from_encoded_point(public.curve, point)
            if isinstance(secret, DelegatedKey):
                shared = secret.operations.agree(point)
            elif isinstance(secret.private, ec.EllipticCurvePrivateKey):
                shared = secret.private.exchange(ec.ECDH(), eph)
            else:
                raise MessageError("not an ECDH key")
        else:
            raise MessageError("not an ECDH key")
    except ValueError as exc:
        if isinstance(exc, OpenPGPError):
            raise
        # Invalid or low-order ephemeral point: no session key can come out of it.
        raise DecryptionError("selected key cannot decrypt this message") from exc
    if not shared.strip(b"\x00"):  # all zero, found at C speed
        raise DecryptionError("selected key cannot decrypt this message")
    return shared
