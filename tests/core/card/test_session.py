"""The OpenPGP session against a small virtual card: APDU forms chosen from the card's
capabilities, KDF PIN hashing, PIN errors, and real Ed25519 / X25519 / RSA operations."""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, x25519
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from locksmith.core.card import tlv
from locksmith.core.card.errors import (
    CardError,
    DataNotFound,
    LocalError,
    MalformedResponse,
    NotSupported,
    PinBlocked,
    UnsupportedFeature,
    WrongPin,
)
from locksmith.core.card.kdf import PW1, PW1_SIGN
from locksmith.core.card.session import (
    OpenPGPCard,
    digest_info,
    ecdh_cipher_do,
    normalise_shared_secret,
    rsa_cipher,
)
from tests.core.card.test_appdata import application_data

CV25519 = bytes.fromhex("2b060104019755010501")
P256 = bytes.fromhex("2a8648ce3d030107")
P521 = bytes.fromhex("2b81040023")
SALT = bytes.fromhex("0102030405060708")
SELECT = "00A4040006D27600012401"


def h(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


def raw_public(key: x25519.X25519PrivateKey | Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw,
                                         serialization.PublicFormat.Raw)


class VirtualCard:
    """Just enough of an OpenPGP card 3.4: chaining, extended lengths, 61xx, PINs, PSO."""

    def __init__(self, *, pin: bytes = b"123456", kdf_count: int | None = None,
                 dos: dict[int, bytes | int] | None = None, wrong_pin_sw: int | None = None,
                 rsa_answer: bytes | None = None, **six_e: object) -> None:
        self.pin, self.kdf_count, self.retries = pin, kdf_count, 3
        self.wrong_pin_sw = wrong_pin_sw
        self.signing_key = Ed25519PrivateKey.generate()
        self.decryption_key = x25519.X25519PrivateKey.generate()
        self.rsa_answer = rsa_answer
        self.dos: dict[int, bytes | int] = {
            0x6E: application_data(**six_e),  # type: ignore[arg-type]
            0x65: tlv.encode(0x65, tlv.encode(0x5B, b"Doe<<Jo"))}
        if kdf_count is not None:
            self.dos[0xF9] = tlv.encode(0xF9, b"".join(tlv.encode(t, v) for t, v in [
                (0x81, b"\x03"), (0x82, b"\x08"), (0x83, kdf_count.to_bytes(4, "big")),
                (0x84, SALT), (0x86, SALT)]))
        self.dos.update(dos or {})
        self.log: list[str] = []
        self.verified: set[int] = set()
        self.chain = bytearray()
        self.pending = b""

    def status_c4(self) -> bytes:
        return bytes([1, 0x7F, 0x7F, 0x7F, self.retries, 0, 3])

    def __call__(self, raw: bytes) -> bytes:
        self.log.append(raw.hex().upper())
        cla, ins, p1, p2 = raw[:4]
        body = raw[4:]
        extended = len(body) > 1 and body[0] == 0
        data, le = b"", 0
        if extended:
            if len(body) == 3:
                le = int.from_bytes(body[1:], "big") or 65536
            else:
                lc = int.from_bytes(body[1:3], "big")
                data = body[3:3 + lc]
                le = (int.from_bytes(body[3 + lc:], "big") or 65536) if body[3 + lc:] else 0
        elif len(body) == 1:
            le = body[0] or 256
        elif body:
            data = body[1:1 + body[0]]
            le = (body[1 + body[0]] or 256) if len(body) > 1 + body[0] else 0
        if cla & 0x10:
            self.chain += data
            return h("9000")
        data, self.chain = bytes(self.chain) + data, bytearray()
        if ins == 0xC0:
            return self._answer(self.pending, le)
        answer = self._dispatch(ins, p1, p2, data)
        if isinstance(answer, int):
            return answer.to_bytes(2, "big")
        return self._answer(answer, le)

    def _answer(self, data: bytes, le: int) -> bytes:
        if len(data) <= le:
            return data + h("9000")
        self.pending = data[le:]
        return data[:le] + bytes([0x61, min(len(self.pending), 256) % 256])

    def _dispatch(self, ins: int, p1: int, p2: int, data: bytes) -> bytes | int:
        if ins == 0xA4:
            return b"" if data == h("D27600012401") else 0x6A82
        if ins == 0xCA:
            tag = p1 << 8 | p2
            if tag == 0xC4:
                return self.status_c4()
            return self.dos.get(tag, 0x6A88)
        if ins == 0x20:
            return self._verify(p2, data)
        if ins == 0x2A and (p1, p2) == (0x9E, 0x9A):
            return self.signing_key.sign(data) if PW1_SIGN in self.verified else 0x6982
        if ins == 0x2A and (p1, p2) == (0x80, 0x86):
            if PW1 not in self.verified:
                return 0x6982
            if self.rsa_answer is not None:
                return self.rsa_answer if data[:1] == b"\x00" else 0x6A80
            point = tlv.find(data, 0x86)
            if point is None or len(point) != 32:
                return 0x6A80
            return self.decryption_key.exchange(x25519.X25519PublicKey.from_public_bytes(point))
        return 0x6D00

    def _verify(self, reference: int, data: bytes) -> bytes | int:
        if self.retries == 0:
            return 0x6983
        expected = self.pin
        if self.kdf_count is not None:
            stream = (SALT + self.pin) * (self.kdf_count // len(SALT + self.pin) + 1)
            expected = hashlib.sha256(stream[:max(self.kdf_count, len(SALT + self.pin))]).digest()
        if data != expected:
            self.retries -= 1
            return self.wrong_pin_sw or 0x63C0 | self.retries
        self.retries = 3
        self.verified.add(reference)
        return b""


def ready(card: VirtualCard) -> OpenPGPCard:
    session = OpenPGPCard(card)
    session.select()
    session.application_data()
    return session


# --- reading the card ----------------------------------------------------------------------

def test_select_uses_the_aid_prefix_without_le() -> None:
    card = VirtualCard()
    OpenPGPCard(card).select()
    assert card.log == [SELECT]


def test_application_data_follows_61xx_and_asks_for_the_kdf_do_6e_lacks() -> None:
    card = VirtualCard()
    six_e = card.dos[0x6E]
    assert isinstance(six_e, bytes) and len(six_e) > 256
    data = ready(card).data
    assert card.log == [SELECT, "00CA006E00", f"00C00000{len(six_e) - 256:02X}", "00CA00F900"]
    assert data is not None and data.decryption_attributes.name == "cv25519"


def test_uif_dos_missing_from_6e_are_read_one_by_one_tolerating_absence() -> None:
    card = VirtualCard(replace={0xD6: None, 0xD7: None, 0xD8: None},
                       dos={0xD6: h("0220"), 0xD8: 0x6D00})
    data = ready(card).data
    assert card.log[-3:] == ["00CA00D600", "00CA00D700", "00CA00D800"]
    assert data is not None and data.uif_signature is not None
    assert data.uif_signature.name == "fixed"
    assert data.uif_decryption is None and data.uif_authentication is None


def test_a_kdf_capable_card_is_asked_for_f9_when_6e_lacks_it() -> None:
    card = VirtualCard(kdf_count=1000)
    data = ready(card).data
    assert "00CA00F900" in card.log
    assert data is not None and data.kdf is not None and data.kdf.iterations == 1000


def test_a_kdf_capable_card_without_f9_has_no_kdf() -> None:
    card = VirtualCard()
    session = ready(card)
    assert "00CA00F900" in card.log and session.data is not None and session.data.kdf is None


def test_a_card_that_claims_kdf_but_fails_to_return_it_is_not_used() -> None:
    with pytest.raises(NotSupported):
        ready(VirtualCard(dos={0xF9: 0x6D00}))


def test_a_card_without_kdf_support_is_not_asked_for_f9() -> None:
    card = VirtualCard(replace={0xC0: h("7C000BFE080000FF0000")})
    ready(card)
    assert "00CA00F900" not in card.log


def test_cardholder_name_and_its_absence() -> None:
    card = VirtualCard()
    assert ready(card).cardholder_name() == "Jo Doe"
    del card.dos[0x65]
    assert ready(card).cardholder_name() is None


def test_pw_status_reads_c4() -> None:
    assert ready(VirtualCard()).pw_status().pw1_retries == 3


# --- PINs ----------------------------------------------------------------------------------

def test_verify_sends_the_raw_pin_without_kdf() -> None:
    card = VirtualCard()
    ready(card).verify_pin(PW1, b"123456")
    assert card.log[-1] == "0020008206313233343536"


def test_verify_sends_the_s2k_hash_on_a_kdf_card() -> None:
    card = VirtualCard(kdf_count=100_000)
    session = ready(card)
    session.verify_pin(PW1, b"123456")
    assert card.log[-1].startswith("0020008220") and "313233343536" not in card.log[-1]
    assert PW1 in card.verified


def test_verify_before_reading_the_card_reads_the_kdf_first() -> None:
    card = VirtualCard(kdf_count=1000)
    session = OpenPGPCard(card)
    session.select()
    session.verify_pin(PW1_SIGN, b"123456")
    assert card.log[:-1] == [SELECT, "00CA006E00", card.log[2], "00CA00F900"]
    assert card.log[-1].startswith("0020008120") and PW1_SIGN in card.verified


def test_a_wrong_pin_reports_the_attempts_left_and_never_the_pin() -> None:
    session = ready(VirtualCard())
    with pytest.raises(WrongPin) as caught:
        session.verify_pin(PW1, b"987654")
    assert caught.value.retries == 2 and caught.value.sw == 0x63C2
    for text in (str(caught.value), repr(caught.value)):
        assert "987654" not in text and "393837" not in text


def test_the_last_wrong_pin_and_a_blocked_pin_are_pin_blocked() -> None:
    card = VirtualCard()
    session = ready(card)
    card.retries = 1
    with pytest.raises(PinBlocked):
        session.verify_pin(PW1, b"000000")
    with pytest.raises(PinBlocked, match="the PIN is blocked"):
        session.verify_pin(PW1, b"123456")


def test_a_6982_answer_to_verify_is_a_wrong_pin_with_the_card_s_counter() -> None:
    card = VirtualCard(wrong_pin_sw=0x6982)
    session = ready(card)
    with pytest.raises(WrongPin) as caught:
        session.verify_pin(PW1, b"000000")
    assert caught.value.retries == 2 and card.log[-1] == "00CA00C400"
    card.retries = 1
    with pytest.raises(PinBlocked):
        session.verify_pin(PW1, b"000000")


@pytest.mark.parametrize(("reference", "pin"), [(0x84, b"123456"), (PW1, b"")])
def test_bad_verify_arguments_are_local_errors(reference: int, pin: bytes) -> None:
    card = VirtualCard()
    session = ready(card)
    sent = len(card.log)
    with pytest.raises(LocalError):
        session.verify_pin(reference, pin)
    assert len(card.log) == sent


# --- private-key operations ----------------------------------------------------------------

def test_ed25519_signature_over_a_digest_verifies() -> None:
    card = VirtualCard()
    session = ready(card)
    session.verify_pin(PW1_SIGN, b"123456")
    digest = hashlib.sha256(b"message").digest()
    signature = session.sign(digest)
    card.signing_key.public_key().verify(signature, digest)
    assert card.log[-1] == "002A9E9A20" + digest.hex().upper() + "00"


def test_signing_without_the_pin_is_refused_by_the_card() -> None:
    with pytest.raises(CardError, match="6982"):
        ready(VirtualCard()).sign(bytes(32))


def test_x25519_decipher_gives_the_shared_secret() -> None:
    card = VirtualCard()
    session = ready(card)
    session.verify_pin(PW1, b"123456")
    ephemeral = x25519.X25519PrivateKey.generate()
    result = session.decipher(ecdh_cipher_do(b"\x40" + raw_public(ephemeral)))
    shared = normalise_shared_secret(result, CV25519)
    assert shared == ephemeral.exchange(card.decryption_key.public_key())
    assert card.log[-1].startswith("002A808627A6257F49228620")


def test_rsa_decipher_of_257_bytes_is_one_extended_apdu_on_an_extended_card() -> None:
    card = VirtualCard(rsa_answer=b"session key")
    session = ready(card)
    session.verify_pin(PW1, b"123456")
    assert session.decipher(rsa_cipher(bytes(range(256)))) == b"session key"
    assert card.log[-1] == "002A8086000101" + "00" + bytes(range(256)).hex().upper() + "0800"


def test_without_extended_length_information_le_is_0000() -> None:
    card = VirtualCard(rsa_answer=b"k", replace={0x7F66: None})
    session = ready(card)
    session.verify_pin(PW1, b"123456")
    session.decipher(rsa_cipher(bytes(256)))
    assert card.log[-1] == "002A8086000101" + "00" * 257 + "0000"


def test_rsa_decipher_is_chained_on_a_card_without_extended_lengths() -> None:
    card = VirtualCard(rsa_answer=b"k", replace={0x5F52: h("0073000080059000")})
    session = ready(card)
    session.verify_pin(PW1, b"123456")
    assert session.decipher(rsa_cipher(bytes(range(256)))) == b"k"
    assert card.log[-2] == "102A8086FF00" + bytes(range(254)).hex().upper()
    assert card.log[-1] == "002A808602FEFF00"


def test_before_the_card_is_read_long_commands_are_chained_short_apdus() -> None:
    card = VirtualCard(rsa_answer=b"k")
    card.verified.add(PW1)
    session = OpenPGPCard(card)
    session.decipher(rsa_cipher(bytes(300)))
    assert [entry[:10] for entry in card.log] == ["102A8086FF", "002A80862E"]


def test_a_large_rsa_signature_is_asked_for_with_an_extended_le() -> None:
    card = VirtualCard(replace={0xC1: h("010C00002000")})
    card.signing_key = _FixedSigner(bytes(384))  # type: ignore[assignment]
    session = ready(card)
    session.verify_pin(PW1_SIGN, b"123456")
    assert session.sign(digest_info("SHA-256", bytes(32))) == bytes(384)
    assert card.log[-1].startswith("002A9E9A000033") and card.log[-1].endswith("0800")


class _FixedSigner:
    def __init__(self, answer: bytes) -> None:
        self.answer = answer

    def sign(self, data: bytes) -> bytes:
        return self.answer


def test_an_empty_result_is_malformed() -> None:
    card = VirtualCard(rsa_answer=b"")
    session = ready(card)
    session.verify_pin(PW1, b"123456")
    with pytest.raises(MalformedResponse):
        session.decipher(rsa_cipher(b"\x01"))


@given(st.lists(st.binary(max_size=12), min_size=1, max_size=30),
       st.sampled_from(["select", "application_data", "cardholder_name", "pw_status", "verify",
                        "sign", "decipher"]))
@settings(max_examples=200)
def test_a_card_answering_garbage_causes_only_card_errors(answers: list[bytes],
                                                          method: str) -> None:
    queue = list(answers)

    def card(raw: bytes) -> bytes:
        return queue.pop(0) if queue else h("6F00")

    session = OpenPGPCard(card)
    calls = {
        "select": session.select, "application_data": session.application_data,
        "cardholder_name": session.cardholder_name, "pw_status": session.pw_status,
        "verify": lambda: session.verify_pin(PW1, b"123456"),
        "sign": lambda: session.sign(bytes(32)), "decipher": lambda: session.decipher(b"\x00"),
    }
    try:
        calls[method]()
    except CardError:
        pass


# --- builders ------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "prefix"), [
    ("SHA-256", "3031300d060960864801650304020105000420"),
    ("sha384", "3041300d060960864801650304020205000430"),
    ("SHA512", "3051300d060960864801650304020305000440"),
])
def test_digest_info_prefixes(name: str, prefix: str) -> None:
    size = bytes.fromhex(prefix)[-1]
    assert digest_info(name, bytes(range(size))) == bytes.fromhex(prefix) + bytes(range(size))


@pytest.mark.parametrize(("name", "digest"), [("SHA-1", bytes(20)), ("SHA-256", bytes(31))])
def test_digest_info_refuses_unknown_hashes_and_wrong_sizes(name: str, digest: bytes) -> None:
    with pytest.raises(LocalError):
        digest_info(name, digest)


def test_x25519_cipher_do_is_exactly_the_spec_layout() -> None:
    key = bytes(range(32))
    assert ecdh_cipher_do(key) == h("A625 7F4922 8620") + key
    assert ecdh_cipher_do(b"\x40" + key) == ecdh_cipher_do(key)


def test_p521_cipher_do_uses_two_byte_lengths() -> None:
    point = ec.generate_private_key(ec.SECP521R1()).public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    assert len(point) == 133
    assert ecdh_cipher_do(point) == h("A6818C 7F498188 868185") + point


@given(st.binary(min_size=1, max_size=300).filter(lambda b: not (len(b) == 33 and b[0] == 0x40)))
@settings(max_examples=100)
def test_cipher_do_round_trips_through_the_tlv_parser(public: bytes) -> None:
    do = ecdh_cipher_do(public)
    [(outer, body)] = tlv.parse(do)
    [(middle, inner)] = tlv.parse(body)
    assert (outer, middle, tlv.parse(inner)) == (0xA6, 0x7F49, [(0x86, public)])


def test_rsa_cipher_prefixes_a_zero_and_restores_the_modulus_length() -> None:
    assert rsa_cipher(b"\x01\x02") == b"\x00\x01\x02"
    assert rsa_cipher(b"\x01\x02", modulus_bits=32) == h("00 0000 0102")
    with pytest.raises(LocalError):
        rsa_cipher(bytes(5), modulus_bits=32)


def test_shared_secrets_are_normalised_to_the_rfc_6637_form() -> None:
    x = bytes(range(32))
    assert normalise_shared_secret(x, CV25519) == x
    assert normalise_shared_secret(b"\x40" + x, CV25519) == x
    assert normalise_shared_secret(x, P256) == x
    assert normalise_shared_secret(b"\x04" + x + bytes(32), P256) == x
    x521 = bytes(66)
    assert normalise_shared_secret(b"\x04" + x521 + bytes(66), P521) == x521


@pytest.mark.parametrize(("result", "oid"), [
    (bytes(31), CV25519), (b"\x04" + bytes(32), CV25519), (bytes(33), P256),
    (b"\x05" + bytes(64), P256), (b"", P256)])
def test_shared_secrets_of_the_wrong_shape_are_malformed(result: bytes, oid: bytes) -> None:
    with pytest.raises(MalformedResponse):
        normalise_shared_secret(result, oid)


def test_an_unknown_curve_is_unsupported() -> None:
    with pytest.raises(UnsupportedFeature):
        normalise_shared_secret(bytes(32), bytes.fromhex("2b0601"))


def test_data_not_found_is_raised_for_a_missing_do() -> None:
    with pytest.raises(DataNotFound):
        ready(VirtualCard()).get_data(0x0101)
