"""v4 key packets: parse and build their bodies, fingerprints, and `cryptography` key objects.

This is the shared vocabulary of the OpenPGP layer: the message code encrypts to a `PublicKey`
and decrypts with a `SecretKey`; the certificate adapter and the quorum-key derivation produce
them. Only v4 keys exist here (formats.md §11: v3/v6 → `unsupported key version`).
"""

# No `from __future__ import annotations` here: typing.NamedTuple would compile every field's
# annotation string at import, a cost on locksmith-oneshot's start (issue 11).

from functools import lru_cache
from typing import NamedTuple, Protocol, Union

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa, x25519

from locksmith.core.openpgp.errors import PacketError, UnsupportedKey

# Public-key algorithm ids (RFC 4880 §9.1, RFC 6637, draft-koch-eddsa).
RSA_ENCRYPT_SIGN = 1
RSA_ENCRYPT_ONLY = 2
RSA_SIGN_ONLY = 3
ECDH = 18
ECDSA = 19
EDDSA = 22
RSA_ALGORITHMS = (RSA_ENCRYPT_SIGN, RSA_ENCRYPT_ONLY, RSA_SIGN_ONLY)

OID_ED25519 = bytes.fromhex("2b06010401da470f01")
OID_CURVE25519 = bytes.fromhex("2b060104019755010501")
OID_P256 = bytes.fromhex("2a8648ce3d030107")
OID_P384 = bytes.fromhex("2b81040022")
OID_P521 = bytes.fromhex("2b81040023")
NIST_CURVES: dict[bytes, ec.EllipticCurve] = {
    OID_P256: ec.SECP256R1(),
    OID_P384: ec.SECP384R1(),
    OID_P521: ec.SECP521R1(),
}

PublicKeyObject = Union[
    ed25519.Ed25519PublicKey, x25519.X25519PublicKey, rsa.RSAPublicKey, ec.EllipticCurvePublicKey
]
PrivateKeyObject = Union[
    ed25519.Ed25519PrivateKey, x25519.X25519PrivateKey, rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey
]

MIN_RSA_BITS = 2048
# Verification cost grows with the exponent's bits and the modulus' size: a hostile key with a
# huge public exponent makes every check of it dozens of times slower. Real keys use 65537.
MAX_RSA_BITS = 16384
MAX_RSA_EXPONENT = (1 << 32) - 1


def encode_mpi(value: int | bytes) -> bytes:
    raw = value if isinstance(value, bytes) else value.to_bytes((value.bit_length() + 7) // 8, "big")
    raw = raw.lstrip(b"\x00")
    bits = (len(raw) - 1) * 8 + raw[0].bit_length() if raw else 0
    return bits.to_bytes(2, "big") + raw


def read_mpi(data: bytes, pos: int) -> tuple[bytes, int]:
    """Read one MPI at `pos`; return its value bytes (big-endian, as stored) and the new offset."""
    if pos + 2 > len(data):
        raise PacketError("truncated MPI")
    bits = int.from_bytes(data[pos : pos + 2], "big")
    end = pos + 2 + (bits + 7) // 8
    if end > len(data):
        raise PacketError("truncated MPI")
    return data[pos + 2 : end], end


@lru_cache(maxsize=1024)
def _fingerprint(body: bytes) -> bytes:
    """The v4 fingerprint of a key packet body. Cached: decrypting one message asks for the
    recipient's three times (key ID match, trial, ECDH KDF), and locksmith-oneshot decrypts
    every secret with the same key (issue 11). `cryptography`'s SHA-1, loaded anyway:
    `hashlib` would also load the system's libcrypto."""
    digest = hashes.Hash(hashes.SHA1())
    digest.update(b"\x99" + len(body).to_bytes(2, "big") + body)
    return digest.finalize()


# The key records are NamedTuples, not dataclasses: `dataclasses` (with `inspect`) was a large
# share of locksmith-oneshot's imports (issue 11), and these records are immutable anyway.
class PublicKey(NamedTuple):
    """A parsed v4 public key (primary or subkey)."""

    created: int
    algorithm: int
    material: bytes  # the algorithm-specific fields exactly as on the wire
    oid: bytes | None = None
    point: bytes | None = None  # EC point octets (0x40-prefixed native, or 0x04 || x || y)
    rsa_n: int | None = None
    rsa_e: int | None = None
    kdf_hash: int | None = None
    kdf_cipher: int | None = None

    @property
    def body(self) -> bytes:
        return b"\x04" + self.created.to_bytes(4, "big") + bytes([self.algorithm]) + self.material

    @property
    def fingerprint(self) -> bytes:
        return _fingerprint(self.body)

    @property
    def fingerprint_hex(self) -> str:
        return self.fingerprint.hex().upper()

    @property
    def key_id(self) -> bytes:
        return self.fingerprint[-8:]

    @property
    def supported(self) -> bool:
        """Whether this project can use the key (formats.md §11 algorithm list)."""
        try:
            self.crypto_key()
        except UnsupportedKey:
            return False
        return True

    def crypto_key(self) -> PublicKeyObject:
        """The `cryptography` public key; `UnsupportedKey` for anything outside formats.md §11."""
        alg = self.algorithm
        if alg in RSA_ALGORITHMS and self.rsa_n is not None and self.rsa_e is not None:
            if self.rsa_n.bit_length() < MIN_RSA_BITS:
                raise UnsupportedKey(f"RSA key of {self.rsa_n.bit_length()} bits is too small")
            if self.rsa_n.bit_length() > MAX_RSA_BITS:
                raise UnsupportedKey(f"RSA key of {self.rsa_n.bit_length()} bits is too large")
            if self.rsa_e > MAX_RSA_EXPONENT:
                raise UnsupportedKey("RSA public exponent larger than 32 bits")
            try:
                return rsa.RSAPublicNumbers(self.rsa_e, self.rsa_n).public_key()
            except ValueError as exc:  # e.g. an even exponent: not a usable RSA key
                raise UnsupportedKey("invalid RSA public key") from exc
        point = self.point or b""
        if alg == EDDSA and self.oid == OID_ED25519 and len(point) == 33 and point[0] == 0x40:
            return ed25519.Ed25519PublicKey.from_public_bytes(point[1:])
        if alg == ECDH and self.oid == OID_CURVE25519 and len(point) == 33 and point[0] == 0x40:
            return x25519.X25519PublicKey.from_public_bytes(point[1:])
        if alg in (ECDH, ECDSA) and self.oid in NIST_CURVES and point[:1] == b"\x04":
            try:
                return ec.EllipticCurvePublicKey.from_encoded_point(NIST_CURVES[self.oid], point)
            except ValueError as exc:
                raise UnsupportedKey("invalid elliptic-curve point") from exc
        raise UnsupportedKey(f"unsupported public-key algorithm {alg}")

    @classmethod
    def parse(cls, body: bytes) -> "PublicKey":
        key, end = cls.parse_prefix(body)
        if end != len(body):
            raise PacketError("trailing data in public key packet")
        return key

    @classmethod
    def parse_prefix(cls, body: bytes) -> tuple["PublicKey", int]:
        """Parse the public part at the start of a (public or secret) key packet body."""
        if not body:
            raise PacketError("empty key packet")
        if body[0] != 4:
            raise UnsupportedKey("unsupported key version")
        if len(body) < 6:
            raise PacketError("truncated key packet")
        created = int.from_bytes(body[1:5], "big")
        alg = body[5]
        pos = 6
        fields: dict[str, object] = {}
        if alg in RSA_ALGORITHMS:
            n, pos = read_mpi(body, pos)
            e, pos = read_mpi(body, pos)
            fields = {"rsa_n": int.from_bytes(n, "big"), "rsa_e": int.from_bytes(e, "big")}
        elif alg in (ECDH, ECDSA, EDDSA):
            if pos >= len(body):
                raise PacketError("truncated key packet")
            oid_len = body[pos]
            if oid_len in (0, 0xFF) or pos + 1 + oid_len > len(body):
                raise PacketError("invalid curve OID")
            oid = body[pos + 1 : pos + 1 + oid_len]
            point, pos = read_mpi(body, pos + 1 + oid_len)
            fields = {"oid": oid, "point": point}
            if alg == ECDH:
                if pos + 4 > len(body) or body[pos] != 3 or body[pos + 1] != 1:
                    raise PacketError("invalid ECDH KDF parameters")
                fields["kdf_hash"], fields["kdf_cipher"] = body[pos + 2], body[pos + 3]
                pos += 4
        else:
            # Unsupported algorithm (DSA, Elgamal, Ed448, ...): keep it opaque. Its length is
            # unknown inside a secret key packet, so only a public packet can hold it.
            return cls(created, alg, body[6:]), len(body)
        return cls(created, alg, body[6:pos], **fields), pos  # type: ignore[arg-type]

    @classmethod
    def ed25519(cls, public: bytes, created: int) -> "PublicKey":
        point = b"\x40" + public
        material = bytes([len(OID_ED25519)]) + OID_ED25519 + encode_mpi(point)
        return cls(created, EDDSA, material, oid=OID_ED25519, point=point)

    @classmethod
    def cv25519(cls, public: bytes, created: int, kdf_hash: int = 8, kdf_cipher: int = 7) -> "PublicKey":
        """Curve25519 ECDH key; KDF defaults SHA-256 / AES-128 as formats.md §9.3."""
        point = b"\x40" + public
        material = (bytes([len(OID_CURVE25519)]) + OID_CURVE25519 + encode_mpi(point)
                    + bytes([3, 1, kdf_hash, kdf_cipher]))
        return cls(created, ECDH, material, oid=OID_CURVE25519, point=point,
                   kdf_hash=kdf_hash, kdf_cipher=kdf_cipher)


class SecretKey(NamedTuple):
    """A public key together with its usable private key object."""

    public: PublicKey
    private: PrivateKeyObject

    def secret_mpis(self) -> bytes:
        """The unencrypted secret MPIs as stored in a secret key packet (RFC 4880 §5.5.3)."""
        priv = self.private
        if isinstance(priv, ed25519.Ed25519PrivateKey):
            return encode_mpi(priv.private_bytes_raw())
        if isinstance(priv, x25519.X25519PrivateKey):
            # OpenPGP stores the Curve25519 scalar big-endian: reversed native bytes. Clamped
            # first (the same X25519 key, since X25519 clamps anyway): GnuPG uses the stored
            # scalar as-is and refuses an unclamped one ("Bad secret key").
            scalar = bytearray(priv.private_bytes_raw())
            scalar[0] &= 0xF8
            scalar[31] = (scalar[31] & 0x7F) | 0x40
            return encode_mpi(bytes(scalar[::-1]))
        if isinstance(priv, rsa.RSAPrivateKey):
            n = priv.private_numbers()
            # RFC 4880 wants p < q and u = p^-1 mod q.
            p, q = sorted((n.p, n.q))
            return encode_mpi(n.d) + encode_mpi(p) + encode_mpi(q) + encode_mpi(pow(p, -1, q))
        return encode_mpi(priv.private_numbers().private_value)

    def packet_body(self) -> bytes:
        """Secret key packet body, unprotected (S2K usage 0) with its two-octet checksum."""
        mpis = self.secret_mpis()
        checksum = (sum(mpis) & 0xFFFF).to_bytes(2, "big")
        return self.public.body + b"\x00" + mpis + checksum


class KeyOperations(Protocol):
    """The private-key operations of a key held elsewhere, such as an OpenPGP smart card.

    Decryption needs nothing else from a private key, so a card key takes part in the same
    trial-decryption code as a software key. An implementation raises `DecryptionError` when
    the device says the input does not decrypt with this key ("not this key"), and its own
    error types for everything else (a removed card is not a wrong key).
    """

    def agree(self, ephemeral: bytes) -> bytes:
        """ECDH with the sender's ephemeral public key: the native 32-byte key for Curve25519,
        `04 ‖ x ‖ y` for NIST curves. Returns the shared secret (X25519 output, or x)."""
        ...

    def decrypt_rsa(self, ciphertext: bytes) -> bytes:
        """PKCS#1 v1.5 decryption of a modulus-sized ciphertext: the unpadded block."""
        ...


class DelegatedKey(NamedTuple):
    """A public key whose private operations are delegated (`KeyOperations`), e.g. to a card."""

    public: PublicKey
    operations: KeyOperations

    def __repr__(self) -> str:
        return f"DelegatedKey(public={self.public!r})"

    def __eq__(self, other: object) -> bool:  # the key, whatever device holds it
        return isinstance(other, DelegatedKey) and self.public == other.public

    def __ne__(self, other: object) -> bool:
        return not self == other

    def __hash__(self) -> int:
        return hash(self.public)


DecryptionKey = Union[SecretKey, DelegatedKey]
"""What trial decryption accepts: a software key or a delegated (card) key."""


def private_key_from_mpis(public: PublicKey, mpis: bytes) -> PrivateKeyObject:
    """Build the private key object from cleartext secret MPIs, checking it matches `public`."""
    alg = public.algorithm
    pos = 0
    if alg in RSA_ALGORITHMS:
        d, pos = read_mpi(mpis, pos)
        p, pos = read_mpi(mpis, pos)
        q, pos = read_mpi(mpis, pos)
        assert public.rsa_n is not None and public.rsa_e is not None
        di, pi, qi = (int.from_bytes(v, "big") for v in (d, p, q))
        if pi < 2 or qi < 2 or pi * qi != public.rsa_n:
            raise PacketError("RSA secret key does not match its public key")
        numbers = rsa.RSAPrivateNumbers(
            pi, qi, di, di % (pi - 1), di % (qi - 1), pow(qi, -1, pi),
            rsa.RSAPublicNumbers(public.rsa_e, public.rsa_n),
        )
        return numbers.private_key()
    secret, pos = read_mpi(mpis, pos)
    pub_obj = public.crypto_key()
    key: PrivateKeyObject
    if isinstance(pub_obj, ed25519.Ed25519PublicKey):
        key = ed25519.Ed25519PrivateKey.from_private_bytes(secret.rjust(32, b"\x00"))
        matches = key.public_key() == pub_obj
    elif isinstance(pub_obj, x25519.X25519PublicKey):
        key = x25519.X25519PrivateKey.from_private_bytes(secret.rjust(32, b"\x00")[::-1])
        matches = key.public_key() == pub_obj
    elif isinstance(pub_obj, ec.EllipticCurvePublicKey):
        key = ec.derive_private_key(int.from_bytes(secret, "big"), pub_obj.curve)
        matches = key.public_key() == pub_obj
    else:  # pragma: no cover - RSA handled above
        raise UnsupportedKey(f"unsupported public-key algorithm {alg}")
    if not matches:
        raise PacketError("secret key does not match its public key")
    return key
