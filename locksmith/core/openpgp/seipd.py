"""SEIPD v1 (RFC 4880 §5.13): AES in OpenPGP CFB with an all-zero IV, plus the SHA-1 MDC.

The only bulk encryption this project reads or writes (formats.md §7.2, §11). Callers never
see CFB, the prefix or the MDC: `encrypt` takes the inner packets, `decrypt` returns them or
raises `DecryptionError`, whatever went wrong (wrong session key, quick-check or MDC mismatch,
truncation), because during trial decryption all of these mean "not this key" and no finer
signal should leak.
"""

from __future__ import annotations

import os
from _operator import _compare_digest  # hmac.compare_digest, without hmac's _hashlib
from collections.abc import Callable

from cryptography.hazmat.decrepit.ciphers.modes import CFB
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

from locksmith.core.openpgp.errors import DecryptionError, MessageError

__all__ = ["VERSION", "encrypt", "decrypt", "UnsupportedMessage"]

VERSION = 1
_BLOCK = 16  # AES only: formats.md §11 rejects every other cipher
_MDC_HEADER = b"\xd3\x14"  # new-format MDC packet (tag 19), 20-byte body
_MDC_SIZE = 22
_KEY_SIZES = {7: 16, 8: 24, 9: 32}
_CANNOT = "selected key cannot decrypt this message"


class UnsupportedMessage(MessageError):
    """A message using something deliberately not implemented (AEAD, SEIPD v2, other ciphers)."""


def _sha1(data: bytes) -> bytes:
    """SHA-1 from `cryptography`, which is loaded anyway: `hashlib` would load the system's
    libcrypto as well, a cost on the boot path (issue 11)."""
    digest = hashes.Hash(hashes.SHA1())
    digest.update(data)
    return digest.finalize()


def _cipher(cipher: int, key: bytes) -> Cipher[CFB]:
    if cipher not in _KEY_SIZES:
        raise UnsupportedMessage(f"unsupported symmetric algorithm {cipher} (only AES is accepted)")
    if len(key) != _KEY_SIZES[cipher]:
        raise ValueError("session key length does not match its cipher")
    return Cipher(algorithms.AES(key), CFB(bytes(_BLOCK)))


def encrypt(cipher: int, key: bytes, inner: bytes, *,
            urandom: Callable[[int], bytes] = os.urandom) -> bytes:
    """The SEIPD packet body (version octet ‖ ciphertext) for the inner packets."""
    prefix = urandom(_BLOCK)
    prefix += prefix[-2:]
    clear = prefix + inner + _MDC_HEADER
    clear += _sha1(clear)
    encryptor = _cipher(cipher, key).encryptor()
    return bytes([VERSION]) + encryptor.update(clear) + encryptor.finalize()


def check_version(body: bytes) -> None:
    """Refuse what is not SEIPD v1 before any key is tried (RFC 9580's v2 is AEAD)."""
    if not body:
        raise MessageError("empty encrypted data packet")
    if body[0] == 2:
        raise UnsupportedMessage("SEIPD v2 (AEAD) messages are not supported")
    if body[0] != VERSION:
        raise MessageError(f"unsupported SEIPD version {body[0]}")


def decrypt(cipher: int, key: bytes, body: bytes) -> bytes:
    """The inner packets of a SEIPD v1 body; `DecryptionError` unless prefix and MDC check out."""
    check_version(body)
    ciphertext = body[1:]
    if len(ciphertext) < _BLOCK + 2 + _MDC_SIZE:
        raise DecryptionError(_CANNOT)
    decryptor = _cipher(cipher, key).decryptor()
    head = decryptor.update(ciphertext[: _BLOCK + 2])
    if head[_BLOCK - 2 : _BLOCK] != head[_BLOCK:]:
        raise DecryptionError(_CANNOT)  # quick check: almost surely the wrong session key
    clear = head + decryptor.update(ciphertext[_BLOCK + 2 :]) + decryptor.finalize()
    mdc_at = len(clear) - _MDC_SIZE
    expected = _sha1(clear[: mdc_at + 2])
    if clear[mdc_at : mdc_at + 2] != _MDC_HEADER or not _compare_digest(
            clear[mdc_at + 2 :], expected):
        raise DecryptionError(_CANNOT)
    return clear[_BLOCK + 2 : mdc_at]
