"""RFC 6637 ECDH: KDF binding, padding, key wrap, Curve25519 and NIST curves, both directions."""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, x25519
from cryptography.hazmat.primitives.keywrap import aes_key_unwrap

from locksmith.core.openpgp import ecdh
from locksmith.core.openpgp.errors import DecryptionError, MessageError
from locksmith.core.openpgp.keys import (
    OID_CURVE25519, OID_P256, OID_P384, OID_P521, PublicKey, SecretKey, read_mpi,
)
from tests.core.openpgp.openpgp_testkit import nist_ecdh_key

AES256_BLOCK = bytes([9]) + bytes(range(32)) + (sum(range(32))).to_bytes(2, "big")  # 35 bytes
AES128_BLOCK = bytes([7]) + bytes(range(16)) + (sum(range(16))).to_bytes(2, "big")  # 19 bytes


def _cv25519(seed: bytes = b"\x05" * 32, kdf_hash: int = 8, kdf_cipher: int = 7) -> SecretKey:
    private = x25519.X25519PrivateKey.from_private_bytes(seed)
    public = PublicKey.cv25519(private.public_key().public_bytes_raw(), 1, kdf_hash, kdf_cipher)
    return SecretKey(public, private)


NIST = [(ec.SECP256R1(), OID_P256, 8, 7), (ec.SECP384R1(), OID_P384, 9, 8),
        (ec.SECP521R1(), OID_P521, 10, 9)]


def test_kdf_hashes_counter_shared_secret_and_the_recipient_bound_parameters():
    key = _cv25519().public
    shared = bytes(range(32))
    param = (bytes([10]) + OID_CURVE25519 + b"\x12\x03\x01\x08\x07" + b"Anonymous Sender    "
             + key.fingerprint)
    expected = hashlib.sha256(b"\x00\x00\x00\x01" + shared + param).digest()[:16]
    assert ecdh.kdf(key, shared) == expected
    other = _cv25519(b"\x06" * 32).public
    assert ecdh.kdf(other, shared) != expected  # the fingerprint binds the recipient


@pytest.mark.parametrize("kdf_hash,kdf_cipher,size", [(8, 7, 16), (9, 8, 24), (10, 9, 32)])
def test_kdf_output_is_truncated_to_the_key_wrap_key_size(kdf_hash, kdf_cipher, size):
    assert len(ecdh.kdf(_cv25519(kdf_hash=kdf_hash, kdf_cipher=kdf_cipher).public, b"z" * 32)) == size


@pytest.mark.parametrize("kdf_hash,kdf_cipher", [(8, 7), (9, 8), (10, 9)])
def test_curve25519_round_trip(kdf_hash, kdf_cipher):
    key = _cv25519(kdf_hash=kdf_hash, kdf_cipher=kdf_cipher)
    for block in (AES256_BLOCK, AES128_BLOCK):
        fields = ecdh.encrypt_block(key.public, block)
        point, pos = read_mpi(fields, 0)
        assert len(point) == 33 and point[0] == 0x40
        assert fields[pos] == len(fields) - pos - 1
        assert ecdh.decrypt_block(key, fields) == block


@pytest.mark.parametrize("curve,oid,kdf_hash,kdf_cipher", NIST)
def test_nist_round_trip_uses_uncompressed_ephemeral_points(curve, oid, kdf_hash, kdf_cipher):
    key = nist_ecdh_key(curve, oid, kdf_hash, kdf_cipher)
    fields = ecdh.encrypt_block(key.public, AES256_BLOCK)
    point, _ = read_mpi(fields, 0)
    assert point[0] == 0x04 and len(point) == 1 + 2 * ((curve.key_size + 7) // 8)
    assert ecdh.decrypt_block(key, fields) == AES256_BLOCK


def test_session_block_is_pkcs5_padded_to_a_multiple_of_eight_before_wrapping():
    key = _cv25519()
    fixed = b"\x09" * 32
    fields = ecdh.encrypt_block(key.public, AES256_BLOCK, urandom=lambda n: fixed[:n])
    point, pos = read_mpi(fields, 0)
    wrapped = fields[pos + 1 :]
    shared = x25519.X25519PrivateKey.from_private_bytes(fixed).exchange(key.public.crypto_key())
    padded = aes_key_unwrap(ecdh.kdf(key.public, shared), wrapped)
    assert padded == AES256_BLOCK + b"\x05" * 5  # 35 → 40
    assert len(ecdh.encrypt_block(key.public, AES128_BLOCK)) == 2 + 33 + 1 + 24 + 8  # 19 → 24


def test_injected_randomness_makes_encryption_reproducible():
    key = _cv25519()
    fixed = lambda n: b"\x42" * n  # noqa: E731
    assert ecdh.encrypt_block(key.public, AES256_BLOCK, urandom=fixed) == ecdh.encrypt_block(
        key.public, AES256_BLOCK, urandom=fixed)


def test_the_wrong_key_fails_as_decryption_error():
    fields = ecdh.encrypt_block(_cv25519().public, AES256_BLOCK)
    with pytest.raises(DecryptionError, match="selected key cannot decrypt this message"):
        ecdh.decrypt_block(_cv25519(b"\x06" * 32), fields)


def test_a_same_point_key_with_other_kdf_parameters_cannot_unwrap():
    fields = ecdh.encrypt_block(_cv25519(kdf_hash=8, kdf_cipher=7).public, AES256_BLOCK)
    with pytest.raises(DecryptionError):
        ecdh.decrypt_block(_cv25519(kdf_hash=10, kdf_cipher=9), fields)


def test_a_low_order_ephemeral_point_is_a_decryption_error():
    fields = b"\x01\x07\x40" + bytes(32) + bytes([40]) + bytes(40)
    with pytest.raises(DecryptionError):
        ecdh.decrypt_block(_cv25519(), fields)


@pytest.mark.parametrize("fields", [
    b"", b"\x01\x07\x40" + bytes(32), b"\x01\x07\x40" + bytes(32) + b"\x28" + bytes(39),
    b"\x00\xff\x04" + bytes(32) + b"\x28" + bytes(40), b"\x01\x07\x40" + bytes(32) + b"\x05" + bytes(5),
])
def test_malformed_fields_raise_library_errors(fields):
    with pytest.raises((MessageError, DecryptionError)):
        ecdh.decrypt_block(_cv25519(), fields)


def test_bad_padding_after_a_correct_unwrap_is_a_decryption_error():
    key = _cv25519()
    from cryptography.hazmat.primitives.keywrap import aes_key_wrap

    fixed = b"\x09" * 32
    eph = x25519.X25519PrivateKey.from_private_bytes(fixed)
    shared = eph.exchange(key.public.crypto_key())
    wrapped = aes_key_wrap(ecdh.kdf(key.public, shared), AES256_BLOCK + b"\x05\x05\x05\x05\x06")
    fields = b"\x01\x07\x40" + eph.public_key().public_bytes_raw() + bytes([len(wrapped)]) + wrapped
    with pytest.raises(DecryptionError):
        ecdh.decrypt_block(key, fields)


def test_unsupported_kdf_parameters_are_refused():
    key = _cv25519(kdf_hash=2, kdf_cipher=7)
    with pytest.raises(MessageError, match="KDF"):
        ecdh.encrypt_block(key.public, AES256_BLOCK)
