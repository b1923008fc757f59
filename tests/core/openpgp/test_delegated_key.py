"""Delegated (smart-card) keys in trial decryption: the same messages open with the private
operations done elsewhere, and a malformed message never reaches the device."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, x25519

from locksmith.core.openpgp import message
from locksmith.core.openpgp.errors import DecryptionError, MessageError
from locksmith.core.openpgp.keys import DelegatedKey, SecretKey
from locksmith.core.openpgp.packets import encode_packet, parse_packets
from tests.core.openpgp.test_message import P256_KEY, RSA_KEY, X25519_KEYS

PLAINTEXT = b"a share travels inside"


@dataclass
class SoftwareDevice:
    """`KeyOperations` over a software key, counting what the "card" was asked to do."""

    key: SecretKey
    calls: list[bytes] = field(default_factory=list)

    def agree(self, ephemeral: bytes) -> bytes:
        self.calls.append(ephemeral)
        private = self.key.private
        if isinstance(private, x25519.X25519PrivateKey):
            return private.exchange(x25519.X25519PublicKey.from_public_bytes(ephemeral))
        assert isinstance(private, ec.EllipticCurvePrivateKey)
        point = ec.EllipticCurvePublicKey.from_encoded_point(private.curve, ephemeral)
        return private.exchange(ec.ECDH(), point)

    def decrypt_rsa(self, ciphertext: bytes) -> bytes:
        self.calls.append(ciphertext)
        assert isinstance(self.key.private, rsa.RSAPrivateKey)
        try:
            return self.key.private.decrypt(ciphertext, padding.PKCS1v15())
        except ValueError as exc:
            raise DecryptionError("the card could not decrypt") from exc


@pytest.mark.parametrize("key", [X25519_KEYS[0], P256_KEY, RSA_KEY], ids=["cv25519", "p256", "rsa"])
def test_a_message_opens_with_a_delegated_key_as_with_the_software_key(key: SecretKey) -> None:
    device = SoftwareDevice(key)
    sealed = message.encrypt(PLAINTEXT, [key.public], wildcard=True)
    opened = message.decrypt(sealed, [DelegatedKey(key.public, device)])
    assert opened.plaintext == PLAINTEXT and len(device.calls) == 1


def test_a_curve25519_card_receives_the_native_key_without_the_openpgp_prefix() -> None:
    device = SoftwareDevice(X25519_KEYS[0])
    message.decrypt(message.encrypt(PLAINTEXT, [X25519_KEYS[0].public]),
                    [DelegatedKey(X25519_KEYS[0].public, device)])
    assert [len(c) for c in device.calls] == [32]


def test_a_nist_card_receives_the_uncompressed_point() -> None:
    device = SoftwareDevice(P256_KEY)
    message.decrypt(message.encrypt(PLAINTEXT, [P256_KEY.public]),
                    [DelegatedKey(P256_KEY.public, device)])
    assert device.calls[0][:1] == b"\x04" and len(device.calls[0]) == 65


def test_wildcard_trial_asks_the_card_once_per_compatible_recipient_until_one_opens() -> None:
    others = [k.public for k in X25519_KEYS[1:4]]
    mine = X25519_KEYS[0]
    sealed = message.encrypt(PLAINTEXT, [*others, mine.public], wildcard=True)
    device = SoftwareDevice(mine)
    assert message.decrypt(sealed, [DelegatedKey(mine.public, device)]).plaintext == PLAINTEXT
    assert len(device.calls) == 4  # three wrong recipients, then its own


def test_a_card_that_cannot_decrypt_any_recipient_is_not_this_key() -> None:
    sealed = message.encrypt(PLAINTEXT, [X25519_KEYS[1].public], wildcard=True)
    stranger = DelegatedKey(X25519_KEYS[0].public, SoftwareDevice(X25519_KEYS[0]))
    with pytest.raises(DecryptionError, match="selected key cannot decrypt this message"):
        message.decrypt(sealed, [stranger])


def test_an_all_zero_shared_secret_from_a_card_opens_nothing() -> None:
    class ZeroDevice(SoftwareDevice):
        def agree(self, ephemeral: bytes) -> bytes:
            return bytes(32)

    sealed = message.encrypt(PLAINTEXT, [X25519_KEYS[0].public])
    with pytest.raises(DecryptionError):
        message.decrypt(sealed, [DelegatedKey(X25519_KEYS[0].public, ZeroDevice(X25519_KEYS[0]))])


def test_a_malformed_ephemeral_point_never_reaches_the_card() -> None:
    key = X25519_KEYS[0]
    sealed = message.encrypt(PLAINTEXT, [key.public])
    esk, seipd_packet = parse_packets(sealed)
    body = bytearray(esk.body)
    body[12] = 0x41  # the 0x40 native-point prefix of the ephemeral MPI
    tampered = encode_packet(1, bytes(body)) + encode_packet(seipd_packet.tag, seipd_packet.body)
    device = SoftwareDevice(key)
    with pytest.raises((MessageError, DecryptionError)):
        message.decrypt(tampered, [DelegatedKey(key.public, device)])
    assert device.calls == []


def test_an_rsa_card_receives_a_modulus_sized_ciphertext() -> None:
    device = SoftwareDevice(RSA_KEY)
    sealed = message.encrypt(PLAINTEXT, [RSA_KEY.public])
    message.decrypt(sealed, [DelegatedKey(RSA_KEY.public, device)])
    assert len(device.calls[0]) == 256  # leading zero octets of the MPI restored


def test_the_likely_recipient_is_tried_first_so_a_card_is_asked_once() -> None:
    others = [k.public for k in X25519_KEYS[1:4]]
    mine = X25519_KEYS[0]
    sealed = message.encrypt(PLAINTEXT, [*others, mine.public], wildcard=True)
    device = SoftwareDevice(mine)
    opened = message.decrypt(sealed, [DelegatedKey(mine.public, device)], likely_recipient=3)
    assert opened.plaintext == PLAINTEXT and len(device.calls) == 1


@pytest.mark.parametrize("hint", [0, 7, -1])
def test_a_wrong_or_impossible_likely_recipient_still_finds_the_key(hint: int) -> None:
    others = [k.public for k in X25519_KEYS[1:4]]
    mine = X25519_KEYS[0]
    sealed = message.encrypt(PLAINTEXT, [*others, mine.public], wildcard=True)
    opened = message.decrypt(sealed, [DelegatedKey(mine.public, SoftwareDevice(mine))],
                             likely_recipient=hint)
    assert opened.plaintext == PLAINTEXT
