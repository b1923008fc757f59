"""KDF-DO parsing and PIN hashing: the card's salts and count, hashed as GnuPG does, or refused."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pgpy.constants import HashAlgorithm, String2KeyType, SymmetricKeyAlgorithm
from pgpy.packet.fields import String2Key

from locksmith.core.card import tlv
from locksmith.core.card.errors import (
    CardError,
    LocalError,
    MalformedResponse,
    UnsupportedFeature,
)
from locksmith.core.card.kdf import (
    PW1,
    PW1_SIGN,
    PW3,
    RESETTING_CODE,
    KdfDo,
    hash_pin,
    iterated_salted_s2k,
)

SALT_PW1 = bytes.fromhex("0102030405060708")
SALT_RC = bytes.fromhex("1112131415161718")
SALT_PW3 = bytes.fromhex("2122232425262728")


def kdf_do(count: int = 0x02000000, hash_id: int = 0x08, *, algorithm: int = 3,
           drop: tuple[int, ...] = ()) -> bytes:
    """The F9 object as GnuPG's `gen_kdf_data` lays it out (salts of 8 bytes, both hashes)."""
    fields = [(0x81, bytes([algorithm])), (0x82, bytes([hash_id])),
              (0x83, count.to_bytes(4, "big")), (0x84, SALT_PW1), (0x85, SALT_RC),
              (0x86, SALT_PW3), (0x87, bytes(32)), (0x88, bytes(32))]
    return tlv.encode(0xF9, b"".join(tlv.encode(t, v) for t, v in fields if t not in drop))


def reference_s2k(hash_name: str, salt: bytes, pin: bytes, count: int) -> bytes:
    """RFC 4880 §3.7.1.3 written out: the whole octet stream, then one hash."""
    material = salt + pin
    total = max(count, len(material))
    stream = (material * (total // len(material) + 1))[:total]
    return hashlib.new(hash_name, stream).digest()


def test_gnupg_layout_parses_into_every_field() -> None:
    kdf = KdfDo.parse(kdf_do())
    assert kdf == KdfDo(3, 0x08, 0x02000000, SALT_PW1, SALT_RC, SALT_PW3, bytes(32), bytes(32))
    assert kdf.enabled


def test_the_do_parses_with_or_without_its_outer_tag() -> None:
    assert KdfDo.parse(tlv.unwrap(kdf_do(), 0xF9)) == KdfDo.parse(kdf_do())


@pytest.mark.parametrize("data", ["810100", "F903810100", "", "F900"])
def test_algorithm_none_or_an_empty_do_means_raw_pins(data: str) -> None:
    kdf = KdfDo.parse(bytes.fromhex(data))
    assert kdf.algorithm == 0 and not kdf.enabled
    assert hash_pin(kdf, b"123456", PW1) == b"123456"


def test_no_kdf_do_means_raw_pins() -> None:
    assert hash_pin(None, b"123456", PW1_SIGN) == b"123456"


@pytest.mark.parametrize("data", [
    "820108",  # no algorithm
    "81020003",  # algorithm of two bytes
    "810103 820108 840801020304050607 08",  # no count
    "810103 83040200000084080102030405060708",  # no hash
    "810103 820108 830402000000",  # no PW1 salt
    "810103 82020008 830402000000 84080102030405060708",
    "810103 820108 8303020000 84080102030405060708",
    "810100 810100",  # duplicated
    "8101",  # truncated
])
def test_incomplete_or_inconsistent_kdf_dos_are_malformed(data: str) -> None:
    with pytest.raises(MalformedResponse):
        KdfDo.parse(bytes.fromhex(data.replace(" ", "")))


def test_small_count_vector_computed_by_hand_with_hashlib() -> None:
    kdf = KdfDo.parse(kdf_do(count=100))
    stream = (SALT_PW1 + b"123456") * 7  # 98 bytes, then 2 more of the next repetition
    expected = hashlib.sha256(stream + SALT_PW1[:2]).hexdigest()
    assert expected == "3a1e199089ba2b9f775643d728d556d45fc09f88c0ce1acaafb8633b5c7a5bdb"
    assert hash_pin(kdf, b"123456", PW1).hex() == expected


def test_a_count_below_salt_plus_pin_hashes_the_whole_of_them_once() -> None:
    kdf = KdfDo.parse(kdf_do(count=3))
    assert hash_pin(kdf, b"123456", PW1) == hashlib.sha256(SALT_PW1 + b"123456").digest()


def test_pinned_vector_for_a_gnupg_sized_count() -> None:
    kdf = KdfDo.parse(kdf_do(count=0x02000000))
    assert hash_pin(kdf, b"123456", PW1).hex() == (
        "ba8825f8df3c3f5db3649a7ec9734ec8abf8118571a68b77056a758d5b59bb80")


def test_pgpy_s2k_agrees_for_a_coded_count() -> None:
    """An independent S2K implementation: PGPy's, with AES-256 so one SHA-256 context is used."""
    s2k = String2Key()
    s2k.usage = 254
    s2k.encalg = SymmetricKeyAlgorithm.AES256
    s2k.specifier = String2KeyType.Iterated
    s2k.halg = HashAlgorithm.SHA256
    s2k.salt = bytearray(SALT_PW1)
    s2k.count = 0xF0  # coded: 16 << 21 = 0x02000000 octets
    kdf = KdfDo.parse(kdf_do(count=s2k.count))
    assert hash_pin(kdf, b"123456", PW1) == s2k.derive_key(b"123456")


def test_sha512_gives_a_64_byte_hash() -> None:
    kdf = KdfDo.parse(kdf_do(count=1000, hash_id=0x0A))
    result = hash_pin(kdf, b"12345678", PW3)
    assert result == reference_s2k("sha512", SALT_PW3, b"12345678", 1000) and len(result) == 64


@pytest.mark.parametrize(("reference", "salt"), [
    (PW1_SIGN, SALT_PW1), (PW1, SALT_PW1), (PW3, SALT_PW3), (RESETTING_CODE, SALT_RC)])
def test_each_pin_uses_its_own_salt(reference: int, salt: bytes) -> None:
    kdf = KdfDo.parse(kdf_do(count=5000))
    assert hash_pin(kdf, b"secret", reference) == reference_s2k("sha256", salt, b"secret", 5000)


def test_a_missing_admin_salt_is_refused_rather_than_guessed() -> None:
    kdf = KdfDo.parse(kdf_do(drop=(0x86,)))
    with pytest.raises(MalformedResponse, match="no salt"):
        hash_pin(kdf, b"12345678", PW3)
    assert len(hash_pin(kdf, b"123456", PW1)) == 32


def test_unknown_kdf_algorithms_and_hashes_are_refused_never_sent_raw() -> None:
    with pytest.raises(UnsupportedFeature):
        hash_pin(KdfDo.parse(kdf_do(algorithm=4)), b"123456", PW1)
    with pytest.raises(UnsupportedFeature):
        hash_pin(KdfDo.parse(kdf_do(hash_id=0x02)), b"123456", PW1)


def test_a_count_beyond_what_openpgp_can_code_is_refused_not_hashed() -> None:
    with pytest.raises(UnsupportedFeature, match="exceeds 65011712"):
        hash_pin(KdfDo.parse(kdf_do(count=0xFFFFFFFF)), b"123456", PW1)
    assert len(hash_pin(KdfDo.parse(kdf_do(count=65011712)), b"123456", PW1)) == 32


def test_an_unknown_pin_reference_is_a_local_error() -> None:
    with pytest.raises(LocalError):
        hash_pin(None, b"123456", 0x84)


@given(st.binary(min_size=1, max_size=16), st.binary(max_size=40), st.integers(0, 300_000),
       st.sampled_from(["sha256", "sha512"]))
@settings(max_examples=100)
def test_s2k_matches_the_written_out_reference(salt: bytes, pin: bytes, count: int,
                                               hash_name: str) -> None:
    assert iterated_salted_s2k(hash_name, salt, pin, count) == reference_s2k(hash_name, salt,
                                                                             pin, count)


@given(st.lists(st.tuples(st.sampled_from([0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88,
                                           0x89]),
                          st.binary(max_size=10)), max_size=9), st.booleans())
@settings(max_examples=200)
def test_hostile_kdf_dos_give_card_errors_only(fields: list[tuple[int, bytes]],
                                               wrapped: bool) -> None:
    content = b"".join(tlv.encode(t, v) for t, v in fields)
    try:
        kdf = KdfDo.parse(tlv.encode(0xF9, content) if wrapped else content)
        if kdf.iterations is not None:
            kdf = KdfDo(kdf.algorithm, kdf.hash_algorithm, min(kdf.iterations, 100_000),
                        kdf.salt_pw1, kdf.salt_rc, kdf.salt_pw3)
        hash_pin(kdf, b"123456", PW1)
    except CardError:
        pass


@given(st.binary(max_size=80))
@settings(max_examples=100)
def test_garbage_kdf_dos_give_card_errors_only(data: bytes) -> None:
    try:
        KdfDo.parse(data)
    except CardError:
        pass
