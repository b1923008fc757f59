"""The bindings and the secret's encryption (docs/forwarding.md §3): the `user_data` layouts
have the documented lengths and prefixes, a sealed secret opens only for the right key, bundle
and exchange, and unusable keys are refused."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given
from hypothesis import strategies as st

from locksmith.core.forwarding.binding import (
    ForwardingCryptoError, RequesterKey, provider_binding, requester_binding, seal_secret,
    secret_aad,
)
from locksmith.core.protocol.transport import transport_keys

H = bytes(range(32))
NR = bytes(range(32, 64))
NP = bytes(range(64, 96))
SECRET = bytes(range(100, 132))
EXCHANGE = {"bundle_hash": H, "requester_nonce": NR, "provider_nonce": NP}
# A point of order 1 (u = 0) and one of order 8 on Curve25519: X25519 with them is all zero.
SMALL_ORDER = [bytes(32), bytes.fromhex(
    "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800")]

blobs32 = st.binary(min_size=32, max_size=32)


def test_the_bindings_have_the_documented_layout_and_lengths() -> None:
    up = provider_binding(H, NP)
    ur = requester_binding(H)
    assert up == b"locksmith-forward-v1 provider\n" + H + NP and len(up) == 94
    assert ur == b"locksmith-forward-v1 requester\n" + H and len(ur) == 63
    assert secret_aad(H, NR, NP) == b"locksmith-forward-v1 secret\n" + H + NR + NP


def test_neither_binding_can_be_mistaken_for_the_other_or_for_a_49504_key() -> None:
    up, ur = provider_binding(H, NP), requester_binding(H)
    assert not up.startswith(ur[:31]) and not ur.startswith(up[:30])
    assert len(up) != 32 and len(ur) != 32


@given(secret=blobs32, h=blobs32, nr=blobs32, np_=blobs32)
def test_a_sealed_secret_opens_with_the_requester_key_of_the_exchange(
        secret: bytes, h: bytes, nr: bytes, np_: bytes) -> None:
    key = RequesterKey.generate()
    e, c = seal_secret(bytearray(secret), key.public_bytes(), bundle_hash=h,
                       requester_nonce=nr, provider_nonce=np_)
    assert len(e) == 32 and len(c) == 48
    opened = key.open_secret(e, c, bundle_hash=h, requester_nonce=nr, provider_nonce=np_)
    assert isinstance(opened, bytearray) and opened == secret


def test_the_construction_is_protocol_md_5_keys_with_the_exchange_as_aad() -> None:
    """Recomputed by hand from Z with the 49504 recipe, so both stay one recipe."""
    r = X25519PrivateKey.from_private_bytes(bytes([7]) * 32)
    e_secret = bytes([9]) * 32
    e, c = seal_secret(SECRET, r.public_key().public_bytes_raw(), random=lambda n: e_secret,
                       **EXCHANGE)
    z = X25519PrivateKey.from_private_bytes(e_secret).exchange(r.public_key())
    keys = transport_keys(z)
    assert AESGCM(keys.key).decrypt(keys.nonce, c, secret_aad(H, NR, NP)) == SECRET
    assert e == X25519PrivateKey.from_private_bytes(e_secret).public_key().public_bytes_raw()


@pytest.mark.parametrize("change", ["bundle_hash", "requester_nonce", "provider_nonce"])
def test_a_ciphertext_does_not_open_for_another_bundle_or_exchange(change: str) -> None:
    key = RequesterKey.generate()
    e, c = seal_secret(SECRET, key.public_bytes(), **EXCHANGE)
    other = {**EXCHANGE, change: bytes(32)}
    with pytest.raises(ForwardingCryptoError):
        key.open_secret(e, c, **other)


def test_a_ciphertext_does_not_open_with_another_key_or_when_altered() -> None:
    key = RequesterKey.generate()
    e, c = seal_secret(SECRET, key.public_bytes(), **EXCHANGE)
    with pytest.raises(ForwardingCryptoError):
        RequesterKey.generate().open_secret(e, c, **EXCHANGE)
    for i in (0, 31, 47):
        altered = bytearray(c)
        altered[i] ^= 1
        with pytest.raises(ForwardingCryptoError):
            key.open_secret(e, bytes(altered), **EXCHANGE)
    with pytest.raises(ForwardingCryptoError):
        key.open_secret(e, c[:40], **EXCHANGE)


def test_a_plaintext_of_another_length_is_refused_by_the_requester() -> None:
    """A provider that seals 31 bytes by hand: the AEAD opens, the length check refuses."""
    key = RequesterKey.generate()
    e_private = X25519PrivateKey.generate()
    z = e_private.exchange(X25519PublicKey.from_public_bytes(key.public_bytes()))
    keys = transport_keys(z)
    c = AESGCM(keys.key).encrypt(keys.nonce, bytes(31), secret_aad(H, NR, NP))
    with pytest.raises(ForwardingCryptoError, match="not 32 bytes"):
        key.open_secret(e_private.public_key().public_bytes_raw(), c, **EXCHANGE)


@pytest.mark.parametrize("point", SMALL_ORDER)
def test_small_order_keys_are_refused_on_both_sides(point: bytes) -> None:
    with pytest.raises(ForwardingCryptoError):
        seal_secret(SECRET, point, **EXCHANGE)
    with pytest.raises(ForwardingCryptoError):
        RequesterKey.generate().open_secret(point, bytes(48), **EXCHANGE)


def test_wrong_lengths_are_refused() -> None:
    key = RequesterKey.generate()
    with pytest.raises(ForwardingCryptoError):
        seal_secret(SECRET, key.public_bytes()[:31], **EXCHANGE)
    with pytest.raises(ValueError):
        seal_secret(SECRET[:31], key.public_bytes(), **EXCHANGE)
    with pytest.raises(ValueError):
        provider_binding(H[:31], NP)
    with pytest.raises(ValueError):
        seal_secret(SECRET, key.public_bytes(), **{**EXCHANGE, "provider_nonce": NP[:8]})


def test_each_seal_uses_a_fresh_provider_key() -> None:
    key = RequesterKey.generate()
    first = seal_secret(SECRET, key.public_bytes(), **EXCHANGE)
    second = seal_secret(SECRET, key.public_bytes(), **EXCHANGE)
    assert first[0] != second[0] and first[1] != second[1]


def test_the_requester_key_shows_only_its_public_half() -> None:
    key = RequesterKey.generate()
    assert repr(key) == f"RequesterKey(public={key.public_bytes().hex()})"
