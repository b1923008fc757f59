"""Transport encryption of the share request Q (protocol.md §5), as a recipe.

The holder encrypts Q to the enclave's per-connection X25519 key S (the `user_data` of the
attestation it just verified); the enclave decrypts with its secret s. Both sides compute

    Z   = X25519(own secret, peer public)           all-zero Z refused (non-contributory key)
    PRK = HKDF-Extract(salt = none, Z)              = HMAC-SHA256(32 zero bytes, Z)
    K   = HKDF-Expand(PRK, "key", 32)               AES-256 key
    N   = HKDF-Expand(PRK, "nonce", 12)             AES-GCM nonce
    CT  = AES-256-GCM(K, N, Q, aad = empty)         ciphertext ‖ 16-byte tag

Why a recipe and no knobs: every parameter above is fixed by the wire format, and the one way
to get GCM wrong — reusing (K, N) — is excluded by construction only if both key pairs are fresh
per connection. So the API offers exactly two operations, `seal` (holder, makes its own fresh
key pair) and `EnclaveKey.open` (enclave, one key per connection), and no way to pass K or N.
The X25519 randomness is injectable only so that the protocol.md §5 vector can be reproduced.

Every failure is a `TransportError` without detail about which step failed: the enclave answers
all of them with the same `Malformed share request` (protocol.md §7 step 3).

Wiping: K and N are `bytes` made by `cryptography`, which Python cannot overwrite; the private
keys live inside OpenSSL objects freed with them. Nothing here is kept beyond a call.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

__all__ = ["KEY_LENGTH", "EnclaveKey", "RandomSource", "Sealed", "TransportError", "TransportKeys", "seal",
           "transport_keys"]

KEY_LENGTH = 32  # X25519 public and secret keys
_NO_SALT = bytes(32)  # HKDF-Extract without salt = HMAC with HashLen zero bytes (RFC 5869 §2.2)

RandomSource = Callable[[int], bytes]


class TransportError(ValueError):
    """Q cannot be sealed or opened: bad peer key, all-zero shared secret, or failed decryption."""


@dataclass(frozen=True, repr=False)
class TransportKeys:
    """K and N of protocol.md §5 (exposed for the spec vector; `seal`/`open` use them)."""

    key: bytes
    nonce: bytes


@dataclass(frozen=True)
class Sealed:
    """What the holder puts into P: its fresh public key C and CT (ciphertext ‖ tag)."""

    client_public: bytes
    ciphertext: bytes = field(repr=False)


def _private_key(random: RandomSource | None) -> X25519PrivateKey:
    if random is None:
        return X25519PrivateKey.generate()
    secret = bytes(random(KEY_LENGTH))
    if len(secret) != KEY_LENGTH:
        raise TransportError(f"random source returned {len(secret)} bytes, expected {KEY_LENGTH}")
    return X25519PrivateKey.from_private_bytes(secret)


def _shared_secret(private: X25519PrivateKey, peer_public: bytes) -> bytes:
    if len(peer_public) != KEY_LENGTH:
        raise TransportError(f"X25519 public key must be {KEY_LENGTH} bytes")
    try:
        shared = private.exchange(X25519PublicKey.from_public_bytes(bytes(peer_public)))
    except ValueError:  # OpenSSL refuses an all-zero result (small-order point) itself
        raise TransportError("X25519 shared secret is all zero") from None
    if not any(shared):  # belt and braces: the spec requires the check on both sides
        raise TransportError("X25519 shared secret is all zero")
    return shared


def transport_keys(shared_secret: bytes) -> TransportKeys:
    """K and N from Z: one HKDF-Extract (no salt), two independent expands of the same PRK."""
    if len(shared_secret) != KEY_LENGTH or not any(shared_secret):
        raise TransportError("X25519 shared secret must be 32 bytes and not all zero")
    prk = hmac.digest(_NO_SALT, bytes(shared_secret), "sha256")
    key = HKDFExpand(hashes.SHA256(), 32, b"key").derive(prk)
    nonce = HKDFExpand(hashes.SHA256(), 12, b"nonce").derive(prk)
    return TransportKeys(key, nonce)


def seal(enclave_public: bytes, plaintext: bytes, *, random: RandomSource | None = None) -> Sealed:
    """Holder side: encrypt `plaintext` (Q) to the enclave key S with a fresh key pair (c, C)."""
    private = _private_key(random)
    keys = transport_keys(_shared_secret(private, enclave_public))
    ciphertext = AESGCM(keys.key).encrypt(keys.nonce, bytes(plaintext), b"")
    return Sealed(private.public_key().public_bytes_raw(), ciphertext)


class EnclaveKey:
    """The enclave's X25519 key pair (s, S) for one connection: S goes into the attestation's
    `user_data`, s opens the one submission of that connection."""

    __slots__ = ("_private",)

    def __init__(self, private: X25519PrivateKey) -> None:
        self._private = private

    @classmethod
    def generate(cls, random: RandomSource | None = None) -> EnclaveKey:
        """A fresh key from the CSPRNG (`random` only to reproduce test vectors)."""
        return cls(_private_key(random))

    @property
    def public_bytes(self) -> bytes:
        """S, 32 bytes: the attestation's `user_data` (protocol.md §4)."""
        return self._private.public_key().public_bytes_raw()

    def open(self, client_public: bytes, ciphertext: bytes) -> bytes:
        """Enclave side: decrypt CT from the holder's C; any failure is `TransportError`."""
        keys = transport_keys(_shared_secret(self._private, client_public))
        try:
            return AESGCM(keys.key).decrypt(keys.nonce, bytes(ciphertext), b"")
        except InvalidTag:
            raise TransportError("share request does not decrypt") from None

    def __repr__(self) -> str:
        return f"EnclaveKey(public={self.public_bytes.hex()})"
