"""Holder key generation for `caution secret keygen` (cli.md §2): a Keymaker-eligible layout.

Ed25519 primary (certify), Ed25519 signing subkey with back-signature, Curve25519 storage
encryption subkey (KDF SHA-256/AES-128), Ed25519 authentication subkey; all created at `now`,
no expiry, no passphrase. Fresh randomness comes from the OS through `cryptography`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric import ed25519, x25519

from locksmith.core.openpgp import signature as sig
from locksmith.core.openpgp.armor import armor
from locksmith.core.openpgp.certbuild import build_certificate
from locksmith.core.openpgp.certs import load_certificates
from locksmith.core.openpgp.keys import PublicKey, SecretKey


@dataclass(frozen=True)
class GeneratedKey:
    fingerprint: str
    public_armored: str
    private_armored: str = field(repr=False)


def new_ed25519_key(now: int) -> SecretKey:
    """A fresh random Ed25519 key created at `now`."""
    private = ed25519.Ed25519PrivateKey.generate()
    return SecretKey(PublicKey.ed25519(private.public_key().public_bytes_raw(), now), private)


def new_cv25519_key(now: int) -> SecretKey:
    """A fresh random Curve25519 ECDH key (KDF SHA-256/AES-128) created at `now`."""
    private = x25519.X25519PrivateKey.generate()
    return SecretKey(PublicKey.cv25519(private.public_key().public_bytes_raw(), now), private)


def user_id(name: str, email: str) -> str:
    return f"{name} <{email}>"


def generate_holder_key(name: str, email: str, *, now: int) -> GeneratedKey:
    primary = new_ed25519_key(now)
    subkeys = [(new_ed25519_key(now), sig.FLAG_SIGN), (new_cv25519_key(now), sig.FLAG_ENCRYPT_STORAGE),
               (new_ed25519_key(now), sig.FLAG_AUTHENTICATE)]
    uid = user_id(name, email)
    private = build_certificate(primary, uid, subkeys, signed_at=now, secret=True)
    [cert] = load_certificates(private)
    return GeneratedKey(cert.fingerprint, cert.public().armored(),
                        armor("PRIVATE KEY BLOCK", private))
