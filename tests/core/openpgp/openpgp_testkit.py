"""What the OpenPGP tests need and neither `locksmith` nor the oracles (`tests.oracles`) provide:
every self-signature of a certificate paired with its signer and target, and NIST ECDH keys.

Certificates come from the library's grouping (`certs.load_certificates`) and secret keys from
its loader (`secretkeys.load_secret_keys(...).keys[i].unlock()`). The packet walker that used to
live here went: no test used it to check those layers, only to reach signatures and keys.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from locksmith.core.openpgp import signature
from locksmith.core.openpgp.certs import Certificate
from locksmith.core.openpgp.keys import ECDH, PublicKey, SecretKey, encode_mpi
from locksmith.core.openpgp.packets import Packet


def parse_signatures(packets: Iterable[Packet]) -> list[signature.Signature]:
    """Signature packets as the library keeps them in a `Certificate`, parsed."""
    return [signature.Signature.parse(p.body) for p in packets]


def self_signature_checks(
        cert: Certificate) -> Iterator[tuple[PublicKey, signature.Signature, signature.HashInput]]:
    """Every (signer, signature, target) the certificate claims, back-signatures included.

    Deliberately not `validity.py`, which picks the signatures that count: this hands each one
    to `signature.verify`, so a test can demand that all of them verify.
    """
    primary = cert.primary
    for sig in parse_signatures(cert.direct_signatures):
        yield primary, sig, signature.direct_key(primary)
    for uid in cert.user_ids:
        for sig in parse_signatures(uid.signatures):
            yield primary, sig, signature.certification(primary, uid.packet.body)
    for sub in cert.subkeys:
        target = signature.subkey_binding(primary, sub.key)
        for sig in parse_signatures(sub.signatures):
            yield primary, sig, target
            for back in sig.embedded_signatures:
                yield sub.key, back, target


def nist_ecdh_key(curve: ec.EllipticCurve, oid: bytes, kdf_hash: int, kdf_cipher: int,
                  created: int = 1) -> SecretKey:
    private = ec.generate_private_key(curve)
    point = private.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    body = (b"\x04" + created.to_bytes(4, "big") + bytes([ECDH, len(oid)]) + oid + encode_mpi(point)
            + bytes([3, 1, kdf_hash, kdf_cipher]))
    public = PublicKey.parse(body)
    return SecretKey(public, private)
