"""PKESK v3 packets (RFC 4880 §5.1): one session key, wrapped for one recipient key.

ECDH (18, via `ecdh`) and RSA (1/2, PKCS#1 v1.5) only, as formats.md §7.2 and §11 ask. The
key ID is the recipient's or the wildcard (eight zero bytes, what shardfiles use so that a
message does not name its holders). Every failure to recover a session key with a given key
is `DecryptionError`, because during trial decryption it only means "not this key".
"""

# No `from __future__ import annotations` here: typing.NamedTuple would compile every field's
# annotation string at import, a cost on locksmith-oneshot's start (issue 11).

import os
from collections.abc import Callable
from typing import NamedTuple

from cryptography.hazmat.primitives.asymmetric import padding, rsa

from locksmith.core.openpgp import ecdh
from locksmith.core.openpgp.errors import DecryptionError, MessageError, OpenPGPError
from locksmith.core.openpgp.keys import (
    ECDH, RSA_ENCRYPT_ONLY, RSA_ENCRYPT_SIGN, DecryptionKey, DelegatedKey, PublicKey, encode_mpi,
    read_mpi,
)
from locksmith.core.openpgp.packets import PKESK as PKESK_TAG
from locksmith.core.openpgp.packets import encode_packet
from locksmith.core.openpgp.seipd import UnsupportedMessage

__all__ = ["PKESK", "WILDCARD", "CIPHER_KEY_SIZES", "AES256", "build", "unwrap", "compatible"]

WILDCARD = bytes(8)
AES128, AES192, AES256 = 7, 8, 9
CIPHER_KEY_SIZES = {AES128: 16, AES192: 24, AES256: 32}
_RSA_ENCRYPTING = (RSA_ENCRYPT_SIGN, RSA_ENCRYPT_ONLY)
_CANNOT = "selected key cannot decrypt this message"

Random = Callable[[int], bytes]


class PKESK(NamedTuple):  # not a dataclass: see keys.PublicKey
    key_id: bytes
    algorithm: int
    fields: bytes  # the algorithm-specific part, as on the wire

    @property
    def wildcard(self) -> bool:
        return self.key_id == WILDCARD

    @classmethod
    def parse(cls, body: bytes) -> "PKESK":
        if not body:
            raise MessageError("empty PKESK packet")
        if body[0] != 3:
            raise MessageError(f"unsupported PKESK version {body[0]}")
        if len(body) < 11:
            raise MessageError("truncated PKESK packet")
        return cls(bytes(body[1:9]), body[9], bytes(body[10:]))

    def serialize(self) -> bytes:
        return b"\x03" + self.key_id + bytes([self.algorithm]) + self.fields

    def packet(self) -> bytes:
        return encode_packet(PKESK_TAG, self.serialize())


def compatible(pkesk: PKESK, key: PublicKey) -> bool:
    """Whether `key` may be tried on `pkesk` (formats.md §7.4 trial rule).

    A real key ID names exactly one key; a wildcard is tried with every key whose algorithm
    family matches (RSA 1 and 2 count as one family).
    """
    if not pkesk.wildcard:
        return pkesk.key_id == key.key_id and _family(pkesk.algorithm) == _family(key.algorithm)
    family = _family(pkesk.algorithm)
    return family is not None and family == _family(key.algorithm)


def _family(algorithm: int) -> str | None:
    if algorithm == ECDH:
        return "ecdh"
    if algorithm in _RSA_ENCRYPTING:
        return "rsa"
    return None


def session_block(cipher: int, key: bytes) -> bytes:
    """`cipher octet ‖ key ‖ checksum` (sum of the key octets mod 65536)."""
    if CIPHER_KEY_SIZES.get(cipher) != len(key):
        raise ValueError("session key does not match its cipher")
    return bytes([cipher]) + key + (sum(key) & 0xFFFF).to_bytes(2, "big")


def parse_session_block(block: bytes) -> tuple[int, bytes]:
    if len(block) < 3:
        raise DecryptionError(_CANNOT)
    cipher, key, checksum = block[0], block[1:-2], block[-2:]
    if (sum(key) & 0xFFFF).to_bytes(2, "big") != checksum:
        # With RSA implicit rejection a wrong key yields random bytes, so this is "not this key".
        raise DecryptionError(_CANNOT)
    if cipher not in CIPHER_KEY_SIZES:
        raise UnsupportedMessage(f"unsupported symmetric algorithm {cipher} (only AES is accepted)")
    if CIPHER_KEY_SIZES[cipher] != len(key):
        raise DecryptionError(_CANNOT)
    return cipher, key


def build(recipient: PublicKey, cipher: int, key: bytes, *, wildcard: bool = False,
          urandom: Random = os.urandom) -> PKESK:
    block = session_block(cipher, key)
    public = recipient.crypto_key()
    if recipient.algorithm == ECDH:
        fields = ecdh.encrypt_block(recipient, block, urandom=urandom)
    elif recipient.algorithm in _RSA_ENCRYPTING and isinstance(public, rsa.RSAPublicKey):
        fields = encode_mpi(public.encrypt(block, padding.PKCS1v15()))
    else:
        raise MessageError(f"cannot encrypt to public-key algorithm {recipient.algorithm}")
    return PKESK(WILDCARD if wildcard else recipient.key_id, recipient.algorithm, fields)


def unwrap(pkesk: PKESK, secret: DecryptionKey) -> tuple[int, bytes]:
    """The (cipher, session key) that `pkesk` carries for `secret`; `DecryptionError` if none."""
    if not compatible(pkesk, secret.public):
        raise DecryptionError(_CANNOT)
    if pkesk.algorithm == ECDH:
        return parse_session_block(ecdh.decrypt_block(secret, pkesk.fields))
    public = secret.public.crypto_key()
    if not isinstance(public, rsa.RSAPublicKey):
        raise DecryptionError(_CANNOT)
    try:
        value, end = read_mpi(pkesk.fields, 0)
    except OpenPGPError as exc:
        raise MessageError("malformed RSA session key fields") from exc
    size = (public.key_size + 7) // 8
    if end != len(pkesk.fields) or len(value) > size:
        raise MessageError("malformed RSA session key fields")
    ciphertext = value.rjust(size, b"\x00")
    if isinstance(secret, DelegatedKey):
        block = secret.operations.decrypt_rsa(ciphertext)
    elif isinstance(secret.private, rsa.RSAPrivateKey):
        try:
            block = secret.private.decrypt(ciphertext, padding.PKCS1v15())
        except ValueError as exc:
            raise DecryptionError(_CANNOT) from exc
    else:
        raise DecryptionError(_CANNOT)
    return parse_session_block(block)
