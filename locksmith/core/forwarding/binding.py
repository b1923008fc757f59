"""What ties a forwarding exchange together (docs/forwarding.md §3): the `user_data` each
attestation carries, and the encryption of the secret.

    UP(H, Np) = "locksmith-forward-v1 provider\\n"  ‖ H ‖ Np      (94 bytes, the provider's)
    UR(H)     = "locksmith-forward-v1 requester\\n" ‖ H           (63 bytes, the requester's)

The prefixes make a document made for one role, or for port 49504 (whose `user_data` is a bare
32-byte key), useless in the other: a replayed 49504 document never has these bytes.

The secret: the provider makes a fresh X25519 pair (e, E) per exchange, Z = X25519(e, R) with
the requester's attested key R, K and N from Z exactly as protocol.md §5 (one recipe,
`core.protocol.transport.transport_keys`), and C = AES-256-GCM(K, N, secret,
aad = "locksmith-forward-v1 secret\\n" ‖ H ‖ Nr ‖ Np). The aad binds C to this bundle and this
exchange, so a ciphertext from another exchange (other nonces) never opens. Like
`transport`, the API is a recipe — `seal_secret` and `RequesterKey.open_secret` — with no way
to pass K or N, and the requester's key object never leaves its private half.

Every failure is a `ForwardingCryptoError` without detail about which step failed.
"""

from __future__ import annotations

from collections.abc import Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from locksmith.core.protocol.transport import TransportError, transport_keys

__all__ = [
    "PROVIDER_PREFIX", "REQUESTER_PREFIX", "SECRET_AAD_PREFIX", "ForwardingCryptoError",
    "RequesterKey", "provider_binding", "requester_binding", "seal_secret", "secret_aad",
]

PROVIDER_PREFIX = b"locksmith-forward-v1 provider\n"
REQUESTER_PREFIX = b"locksmith-forward-v1 requester\n"
SECRET_AAD_PREFIX = b"locksmith-forward-v1 secret\n"
HASH_LENGTH = 32
NONCE_LENGTH = 32
KEY_LENGTH = 32
SECRET_LENGTH = 32

RandomSource = Callable[[int], bytes]


class ForwardingCryptoError(ValueError):
    """The secret cannot be sealed or opened: a bad or unusable X25519 key, or a ciphertext
    that does not decrypt to 32 bytes under this exchange's aad."""


def _require(value: bytes | bytearray, length: int, what: str) -> bytes:
    if len(value) != length:
        raise ValueError(f"{what} must be {length} bytes, got {len(value)}")
    return bytes(value)


def provider_binding(bundle_hash: bytes, provider_nonce: bytes) -> bytes:
    """UP(H, Np): the `user_data` of the provider's document (F2)."""
    return (PROVIDER_PREFIX + _require(bundle_hash, HASH_LENGTH, "bundle hash")
            + _require(provider_nonce, NONCE_LENGTH, "provider nonce"))


def requester_binding(bundle_hash: bytes) -> bytes:
    """UR(H): the `user_data` of the requester's document (F3)."""
    return REQUESTER_PREFIX + _require(bundle_hash, HASH_LENGTH, "bundle hash")


def secret_aad(bundle_hash: bytes, requester_nonce: bytes, provider_nonce: bytes) -> bytes:
    """The additional data of C: the prefix, H, Nr and Np."""
    return (SECRET_AAD_PREFIX + _require(bundle_hash, HASH_LENGTH, "bundle hash")
            + _require(requester_nonce, NONCE_LENGTH, "requester nonce")
            + _require(provider_nonce, NONCE_LENGTH, "provider nonce"))


def _private(random: RandomSource | None) -> X25519PrivateKey:
    if random is None:
        return X25519PrivateKey.generate()
    return X25519PrivateKey.from_private_bytes(_require(random(KEY_LENGTH), KEY_LENGTH,
                                                        "random X25519 secret"))


def _keys(private: X25519PrivateKey, peer_public: bytes) -> tuple[bytes, bytes]:
    """(K, N) of protocol.md §5 from Z = X25519(private, peer); all-zero Z refused."""
    if len(peer_public) != KEY_LENGTH:
        raise ForwardingCryptoError("the X25519 public key must be 32 bytes")
    try:
        shared = private.exchange(X25519PublicKey.from_public_bytes(bytes(peer_public)))
    except ValueError:  # OpenSSL refuses an all-zero result (a small-order point) itself
        raise ForwardingCryptoError("the X25519 shared secret is all zero") from None
    try:
        keys = transport_keys(shared)  # refuses an all-zero Z as well
    except TransportError:
        raise ForwardingCryptoError("the X25519 shared secret is all zero") from None
    return keys.key, keys.nonce


def seal_secret(secret: bytes | bytearray, requester_public: bytes, *, bundle_hash: bytes,
                requester_nonce: bytes, provider_nonce: bytes,
                random: RandomSource | None = None) -> tuple[bytes, bytes]:
    """Provider side: (E, C) for the 32-byte `secret` and the requester's attested key R.

    `ForwardingCryptoError` when R is unusable (all-zero Z: the provider refuses with
    `Requester attestation carries an unusable X25519 key`). `random` only reproduces vectors.
    """
    aad = secret_aad(bundle_hash, requester_nonce, provider_nonce)
    if len(secret) != SECRET_LENGTH:
        raise ValueError(f"the secret must be {SECRET_LENGTH} bytes")
    private = _private(random)
    key, nonce = _keys(private, requester_public)
    ciphertext = AESGCM(key).encrypt(nonce, bytes(secret), aad)
    return private.public_key().public_bytes_raw(), ciphertext


class RequesterKey:
    """The requester's X25519 pair (r, R) for one exchange: R goes into its attestation's
    `public_key`, r opens the one F4 of that exchange."""

    __slots__ = ("_private",)

    def __init__(self, private: X25519PrivateKey) -> None:
        self._private = private

    @classmethod
    def generate(cls, random: RandomSource | None = None) -> RequesterKey:
        """A fresh key from the CSPRNG (`random` only to reproduce test vectors)."""
        return cls(_private(random))

    def public_bytes(self) -> bytes:
        """R, 32 bytes."""
        return self._private.public_key().public_bytes_raw()

    def open_secret(self, provider_public: bytes, ciphertext: bytes, *, bundle_hash: bytes,
                    requester_nonce: bytes, provider_nonce: bytes) -> bytearray:
        """The 32-byte secret (a bytearray the caller wipes), or `ForwardingCryptoError`."""
        aad = secret_aad(bundle_hash, requester_nonce, provider_nonce)
        key, nonce = _keys(self._private, provider_public)
        try:
            plaintext = AESGCM(key).decrypt(nonce, bytes(ciphertext), aad)
        except InvalidTag:
            raise ForwardingCryptoError("the secret does not decrypt") from None
        secret = bytearray(plaintext)  # the bytes copy cannot be wiped (docs/security.md)
        if len(secret) != SECRET_LENGTH:
            secret[:] = bytes(len(secret))
            raise ForwardingCryptoError("the decrypted secret is not 32 bytes")
        return secret

    def __repr__(self) -> str:
        return f"RequesterKey(public={self.public_bytes().hex()})"
