"""Bounds on the work a hostile certificate can cause (hardening finding S1): RSA keys with huge
public exponents or moduli are unsupported, signatures per certificate are capped, and
signatures by other keys are ruled out by their issuer before any hashing."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from locksmith.core.openpgp import signature as sig
from locksmith.core.openpgp.certbuild import build_certificate
from locksmith.core.openpgp.certs import MAX_SIGNATURES, CertificateError, load_certificates
from locksmith.core.openpgp.errors import UnsupportedKey
from locksmith.core.openpgp.keygen import new_ed25519_key
from locksmith.core.openpgp.keys import RSA_ENCRYPT_SIGN, PublicKey, encode_mpi

N_2048 = rsa.generate_private_key(65537, 2048).public_key().public_numbers().n


def _rsa(n: int, e: int) -> PublicKey:
    return PublicKey.parse(b"\x04\x00\x00\x00\x01" + bytes([RSA_ENCRYPT_SIGN]) + encode_mpi(n)
                           + encode_mpi(e))


def test_an_rsa_key_with_an_exponent_beyond_32_bits_is_unsupported() -> None:
    with pytest.raises(UnsupportedKey, match="exponent"):
        _rsa(N_2048, (1 << 2000) + 1).crypto_key()
    assert _rsa(N_2048, 65537).supported and _rsa(N_2048, (1 << 32) - 1).supported


def test_an_rsa_modulus_beyond_16384_bits_is_unsupported() -> None:
    with pytest.raises(UnsupportedKey, match="too large"):
        _rsa((1 << 16400) + 1, 65537).crypto_key()


def _certificate_with(extra_signatures: int) -> bytes:
    primary = new_ed25519_key(1_700_000_000)
    cert = build_certificate(primary, "Padded <p@example.org>", [], signed_at=1_700_000_000)
    padding = sig.create(primary, sig.direct_key(primary.public), sig.DIRECT_KEY,
                         created=1_700_000_000).packet()
    return cert + padding * extra_signatures


def test_a_certificate_with_more_signatures_than_the_cap_is_refused() -> None:
    assert load_certificates(_certificate_with(MAX_SIGNATURES - 1))
    with pytest.raises(CertificateError, match=f"more than {MAX_SIGNATURES} signatures"):
        load_certificates(_certificate_with(MAX_SIGNATURES))


def test_third_party_certifications_are_ruled_out_by_issuer_without_verification(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from locksmith.core.openpgp import validity
    primary, stranger = new_ed25519_key(1_700_000_000), new_ed25519_key(1_700_000_000)
    uid = "Holder <h@example.org>"
    cert = build_certificate(primary, uid, [], signed_at=1_700_000_000)
    third_party = sig.create(stranger, sig.certification(primary.public, uid),
                             sig.GENERIC_CERTIFICATION, created=1_700_000_001).packet()
    [parsed] = load_certificates(cert + third_party * 200)
    calls: list[object] = []
    real = sig.verify
    monkeypatch.setattr(sig, "verify", lambda *a: (calls.append(a), real(*a))[1])
    assert validity.primary_state(parsed, 1_700_000_100) is validity.PrimaryState.LIVE
    assert len(calls) == 1  # the self-certification only
