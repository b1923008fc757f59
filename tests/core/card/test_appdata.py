"""The OpenPGP application's data objects, from a YubiKey-shaped 6E down to single DOs."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from locksmith.core.card import tlv
from locksmith.core.card.appdata import (
    Aid,
    AlgorithmAttributes,
    ApplicationData,
    ExtendedCapabilities,
    PwStatus,
    Uif,
    fingerprint_hex,
    parse_cardholder_name,
    parse_extended_length_info,
    parse_historical_bytes,
)
from locksmith.core.card.errors import CardError, MalformedResponse
from locksmith.core.card.kdf import KdfDo

AID = bytes.fromhex("D2760001240103040006123456780000")
ED25519 = bytes.fromhex("2b06010401da470f01")
CV25519 = bytes.fromhex("2b060104019755010501")
P256 = bytes.fromhex("2a8648ce3d030107")
FPR_SIG = bytes(range(1, 21))
FPR_DEC = bytes(range(21, 41))


def application_data(*, outer: bool = True, extra: bytes = b"",
                     replace: dict[int, bytes | None] | None = None) -> bytes:
    """A YubiKey 5 (firmware 5.4) shaped 6E: 80-byte C5/C6 and 16-byte CD (attestation slot),
    7F66 and the UIF DOs inside 73, chaining and extended lengths in 5F52."""
    discretionary: dict[int, bytes | None] = {
        0xC0: bytes.fromhex("7D000BFE080000FF0000"),
        0xC1: bytes.fromhex("16") + ED25519,
        0xC2: bytes.fromhex("12") + CV25519,
        0xC3: bytes.fromhex("16") + ED25519,
        0xDA: bytes.fromhex("010800001100"),
        0xC4: bytes.fromhex("017F7F7F030003"),
        0xC5: FPR_SIG + FPR_DEC + bytes(40),
        0xC6: bytes(80),
        0xCD: (1_700_000_000).to_bytes(4, "big") * 2 + bytes(8),
        0xDE: bytes.fromhex("0101020103008100"),
        0x7F66: bytes.fromhex("0202080002020800"),
        0xD6: bytes.fromhex("0020"),
        0xD7: bytes.fromhex("0120"),
        0xD8: bytes.fromhex("0020"),
        0xD9: bytes.fromhex("0020"),
    }
    top: dict[int, bytes | None] = {
        0x4F: AID, 0x5F52: bytes.fromhex("00730000E0059000"), 0x7F74: bytes.fromhex("810120")}
    for tag, value in (replace or {}).items():
        (top if tag in top else discretionary)[tag] = value
    inner = b"".join(tlv.encode(t, v) for t, v in top.items() if v is not None)
    inner += tlv.encode(0x73, b"".join(tlv.encode(t, v) for t, v in discretionary.items()
                                       if v is not None) + extra)
    return tlv.encode(0x6E, inner) if outer else inner


def test_a_yubikey_shaped_6e_parses_into_everything_the_cli_shows() -> None:
    data = ApplicationData.parse(application_data())
    assert data.aid.hex == AID.hex().upper()
    assert data.aid.version == (3, 4) and data.aid.manufacturer_name == "Yubico"
    assert data.aid.serial_hex == "12345678"
    assert data.signature_attributes.name == "ed25519"
    assert data.decryption_attributes.name == "cv25519"
    assert data.pw_status.pw1_retries == 3 and data.pw_status.pw3_retries == 3
    assert data.signature_fingerprint == FPR_SIG and data.decryption_fingerprint == FPR_DEC
    assert data.authentication_fingerprint is None
    assert data.signature_generated == 1_700_000_000 and data.authentication_generated is None
    assert data.capabilities.command_chaining and data.capabilities.extended_lengths
    assert data.capabilities.max_command_length == 0x0800
    assert data.capabilities.max_response_length == 0x0800
    assert data.extended_capabilities.kdf_supported
    assert data.uif_signature == Uif(0, 0x20) and data.uif_decryption == Uif(1, 0x20)
    assert data.kdf is None


def test_6e_is_accepted_with_or_without_its_outer_tag() -> None:
    assert ApplicationData.parse(application_data(outer=False)) == ApplicationData.parse(
        application_data())


def test_a_kdf_do_inside_6e_is_parsed() -> None:
    kdf = tlv.encode(0xF9, bytes.fromhex("810100"))
    assert ApplicationData.parse(application_data(extra=kdf)).kdf == KdfDo(0)


def test_without_uif_or_cd_those_fields_are_none() -> None:
    data = ApplicationData.parse(application_data(
        replace={0xD6: None, 0xD7: None, 0xD8: None, 0xCD: None}))
    assert data.uif_signature is None and data.uif_decryption is None
    assert data.signature_generated is None


@pytest.mark.parametrize("tag", [0x4F, 0xC0, 0xC1, 0xC2, 0xC3, 0xC4, 0xC5])
def test_a_missing_mandatory_do_is_malformed_and_named(tag: int) -> None:
    with pytest.raises(MalformedResponse, match=f"lacks {tag:02X}"):
        ApplicationData.parse(application_data(replace={tag: None}))


def test_an_empty_fingerprint_do_means_no_keys() -> None:
    data = ApplicationData.parse(application_data(replace={0xC5: b""}))
    assert data.signature_fingerprint is None and data.decryption_fingerprint is None


def test_a_short_fingerprint_do_is_malformed() -> None:
    with pytest.raises(MalformedResponse, match="fingerprints are 40 bytes"):
        ApplicationData.parse(application_data(replace={0xC5: bytes(40)}))


def test_fingerprints_print_as_upper_hex() -> None:
    assert fingerprint_hex(FPR_SIG) == FPR_SIG.hex().upper()


def test_version_2_cards_take_maximum_lengths_from_c0() -> None:
    aid_v2 = AID[:6] + b"\x02\x01" + AID[8:]
    data = ApplicationData.parse(application_data(replace={
        0x4F: aid_v2, 0x7F66: None, 0xC0: bytes.fromhex("7C000BFE080004000400")}))
    assert data.capabilities.max_command_length == 0x0400
    assert data.extended_capabilities.max_special_do is None


# --- single DOs ----------------------------------------------------------------------------

def test_aid_fields() -> None:
    aid = Aid.parse(bytes.fromhex("D276000124010304000F0A0B0C0D0000"))
    assert aid.manufacturer == 0x000F and aid.manufacturer_name == "Nitrokey"
    assert aid.serial == bytes.fromhex("0A0B0C0D") and aid.serial_hex == "0A0B0C0D"
    assert Aid.parse(AID[:8] + b"\x12\x34" + AID[10:]).manufacturer_name is None


@pytest.mark.parametrize("raw", [AID[:15], AID + b"\x00", b"\xD3" + AID[1:],
                                 AID[:5] + b"\x02" + AID[6:]])
def test_a_non_openpgp_aid_is_malformed(raw: bytes) -> None:
    with pytest.raises(MalformedResponse):
        Aid.parse(raw)


@given(st.integers(0, 255), st.integers(0, 255), st.integers(0, 0xFFFF), st.binary(
    min_size=4, max_size=4))
@settings(max_examples=100)
def test_aid_fields_round_trip(major: int, minor: int, manufacturer: int, serial: bytes) -> None:
    raw = bytes.fromhex("D27600012401") + bytes([major, minor]) + manufacturer.to_bytes(
        2, "big") + serial + b"\x00\x00"
    aid = Aid.parse(raw)
    assert (aid.raw, aid.version, aid.manufacturer, aid.serial) == (
        raw, (major, minor), manufacturer, serial)


@pytest.mark.parametrize(("raw", "name"), [
    ("010800001100", "rsa2048"), ("0110000020", "rsa4096"), ("16" + ED25519.hex(), "ed25519"),
    ("12" + CV25519.hex(), "cv25519"), ("13" + P256.hex(), "nistp256"),
    ("122b81040022", "nistp384"), ("122b81040023ff", "nistp521"),
    ("132b2403030208010107", "brainpoolP256r1"), ("16" + ED25519.hex() + "00", "ed25519"),
    ("122b0601040199", "ecc(2b0601040199)"), ("42", "algorithm 66"),
])
def test_algorithm_attributes_are_named(raw: str, name: str) -> None:
    assert AlgorithmAttributes.parse(bytes.fromhex(raw)).name == name


def test_rsa_attributes_carry_sizes_and_format() -> None:
    attrs = AlgorithmAttributes.parse(bytes.fromhex("010C00002003"))
    assert (attrs.rsa_bits, attrs.rsa_e_bits, attrs.rsa_format) == (3072, 32, 3)


def test_the_import_format_byte_is_stripped_from_the_curve_oid() -> None:
    attrs = AlgorithmAttributes.parse(b"\x12" + CV25519 + b"\xff")
    assert attrs.oid == CV25519 and attrs.import_format == 0xFF and attrs.curve == "cv25519"


def test_rsa_attributes_without_the_format_byte_are_accepted() -> None:
    assert AlgorithmAttributes.parse(bytes.fromhex("0108000011")).rsa_format is None


@pytest.mark.parametrize("raw", ["", "01", "01080000110000", "12", "16ff"])
def test_truncated_algorithm_attributes_are_malformed(raw: str) -> None:
    with pytest.raises(MalformedResponse):
        AlgorithmAttributes.parse(bytes.fromhex(raw))


@given(st.integers(1, 0xFFFF), st.integers(1, 0xFFFF), st.integers(0, 3))
@settings(max_examples=100)
def test_rsa_attributes_round_trip(bits: int, e_bits: int, fmt: int) -> None:
    raw = b"\x01" + bits.to_bytes(2, "big") + e_bits.to_bytes(2, "big") + bytes([fmt])
    attrs = AlgorithmAttributes.parse(raw)
    assert (attrs.rsa_bits, attrs.rsa_e_bits, attrs.rsa_format, attrs.raw) == (
        bits, e_bits, fmt, raw)


def test_pw_status_bytes() -> None:
    status = PwStatus.parse(bytes.fromhex("00FF0C7F020103"))
    assert status == PwStatus(False, 0x7F, 0x0C, 0x7F, 2, 1, 3, True, False)


@given(st.binary(min_size=7, max_size=7))
@settings(max_examples=100)
def test_pw_status_fields_round_trip(raw: bytes) -> None:
    s = PwStatus.parse(raw)
    rebuilt = bytes([int(s.pw1_valid_for_multiple_signatures) if raw[0] in (0, 1) else raw[0],
                     s.pw1_max_length | (0x80 * s.pw1_pin_block_format_2), s.rc_max_length,
                     s.pw3_max_length | (0x80 * s.pw3_pin_block_format_2), s.pw1_retries,
                     s.rc_retries, s.pw3_retries])
    assert rebuilt == raw


def test_extended_capabilities_flags() -> None:
    caps = ExtendedCapabilities.parse(bytes.fromhex("7D000BFE080000FF0101"))
    assert caps.kdf_supported and caps.key_import and not caps.secure_messaging
    assert caps.max_challenge == 0x0BFE and caps.max_cardholder_certificate == 0x0800
    assert caps.max_special_do == 0x00FF and caps.pin_block_2_format and caps.mse_for_key_refs
    assert not ExtendedCapabilities.parse(bytes(10)).kdf_supported


@pytest.mark.parametrize(("historical", "expected"), [
    ("0073 0000E0 059000", (True, True)),
    ("0073 000080 059000", (True, False)),
    ("0031C0 73 000040 059000", (False, True)),
    ("80 73 0000C0", (True, True)),
    ("00 059000", (False, False)),
    ("10 0102", (False, False)),
    ("", (False, False)),
])
def test_card_capabilities_come_from_compact_tlv_73(historical: str,
                                                    expected: tuple[bool, bool]) -> None:
    assert parse_historical_bytes(bytes.fromhex(historical.replace(" ", ""))) == expected


@pytest.mark.parametrize("historical", ["00 9000", "80 75 00", "00 73 00 059000"])
def test_truncated_historical_bytes_are_malformed(historical: str) -> None:
    with pytest.raises(MalformedResponse):
        parse_historical_bytes(bytes.fromhex(historical.replace(" ", "")))


def test_extended_length_information() -> None:
    assert parse_extended_length_info(bytes.fromhex("02020800020204FF")) == (0x0800, 0x04FF)
    with pytest.raises(MalformedResponse):
        parse_extended_length_info(bytes.fromhex("020208000302"))


@pytest.mark.parametrize(("raw", "name", "touch"), [
    ("0020", "off", False), ("0120", "on", True), ("0220", "fixed", True),
    ("0320", "cached", True), ("0420", "cached-fixed", True), ("0900", "mode 9", True)])
def test_uif_modes(raw: str, name: str, touch: bool) -> None:
    uif = Uif.parse(bytes.fromhex(raw))
    assert uif.name == name and uif.requires_touch is touch
    assert uif.features == bytes.fromhex(raw)[1]


@pytest.mark.parametrize("raw", ["", "01", "012000"])
def test_uif_of_the_wrong_size_is_malformed(raw: str) -> None:
    with pytest.raises(MalformedResponse):
        Uif.parse(bytes.fromhex(raw))


# --- cardholder name -----------------------------------------------------------------------

def _name_do(name: bytes, outer: bool = True) -> bytes:
    content = tlv.encode(0x5B, name) + tlv.encode(0x5F2D, b"en") + tlv.encode(0x5F35, b"9")
    return tlv.encode(0x65, content) if outer else content


@pytest.mark.parametrize(("raw", "expected"), [
    (b"Doe<<John", "John Doe"),
    (b"van<der<Berg<<Anna<Maria", "Anna Maria van der Berg"),
    (b"Doe<<", "Doe"),
    (b"Plain Name", "Plain Name"),
    ("M\xfcller<<J\xfcrgen".encode("latin-1"), "Jürgen Müller"),
    (b"", None),
    (b"<<", None),
])
def test_cardholder_names_are_read_in_the_openpgp_convention(raw: bytes,
                                                             expected: str | None) -> None:
    assert parse_cardholder_name(_name_do(raw)) == expected
    assert parse_cardholder_name(_name_do(raw, outer=False)) == expected


def test_a_card_cannot_put_terminal_escapes_in_the_name() -> None:
    name = parse_cardholder_name(_name_do(b"Doe<<John\x1b]0;pwned\x07\x9b2J"))
    assert name is not None and "\x1b" not in name and "\x9b" not in name and "\x07" not in name


def test_no_name_object_means_no_name() -> None:
    assert parse_cardholder_name(tlv.encode(0x65, tlv.encode(0x5F2D, b"en"))) is None


# --- hostile cards -------------------------------------------------------------------------

relevant_tags = st.sampled_from([0x4F, 0x5F52, 0x7F66, 0x73, 0xC0, 0xC1, 0xC2, 0xC3, 0xC4,
                                 0xC5, 0xCD, 0xD6, 0xD7, 0xD8, 0xF9, 0x81, 0x02, 0x5B, 0x65])


def _objects(depth: int) -> st.SearchStrategy[bytes]:
    leaf = st.builds(tlv.encode, relevant_tags, st.binary(max_size=24))
    if depth == 0:
        return leaf
    nested = st.builds(tlv.encode, st.sampled_from([0x6E, 0x73, 0x7F66, 0xF9, 0x65]),
                       st.lists(_objects(depth - 1), max_size=4).map(b"".join))
    return st.one_of(leaf, nested)


def _mutations(data: bytes) -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.integers(0, len(data)).map(lambda n: data[:n]),
        st.tuples(st.integers(0, len(data) - 1), st.integers(0, 255)).map(
            lambda p: data[:p[0]] + bytes([p[1]]) + data[p[0] + 1:]))


PARSERS: list[Callable[[bytes], object]] = [
    ApplicationData.parse, PwStatus.parse, AlgorithmAttributes.parse, Aid.parse, Uif.parse,
    ExtendedCapabilities.parse, parse_cardholder_name, parse_historical_bytes,
    parse_extended_length_info, KdfDo.parse]


def _only_card_errors(data: bytes) -> None:
    for parser in PARSERS:
        try:
            parser(data)
        except CardError:
            pass


@given(st.lists(_objects(2), max_size=6).map(b"".join))
@settings(max_examples=200)
def test_structured_hostile_objects_give_card_errors_only(data: bytes) -> None:
    _only_card_errors(data)


@given(_mutations(application_data()))
@settings(max_examples=200)
def test_truncated_or_corrupted_application_data_gives_card_errors_only(data: bytes) -> None:
    _only_card_errors(data)


@given(st.binary(max_size=200))
@settings(max_examples=200)
def test_random_bytes_give_card_errors_only(data: bytes) -> None:
    _only_card_errors(data)
