"""ASCII armor: byte-exact writing (the reference's shardfile), lenient but checked reading."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from locksmith.core.openpgp import armor
from locksmith.core.openpgp.errors import ArmorError
from tests.conftest import CAUTION_V0


def _bitwise_crc24(data: bytes) -> int:
    """RFC 4880 §6.1's reference loop, as an independent oracle for the table-driven code."""
    crc = 0xB704CE
    for byte in data:
        crc ^= byte << 16
        for _ in range(8):
            crc <<= 1
            if crc & 0x1000000:
                crc ^= 0x1864CFB
    return crc & 0xFFFFFF


def test_crc24_check_value() -> None:
    assert armor.crc24(b"123456789") == 0x21CF02
    assert armor.crc24(b"") == 0xB704CE


@given(st.binary(max_size=2000))
def test_crc24_equals_the_rfc_loop(data: bytes) -> None:
    assert armor.crc24(data) == _bitwise_crc24(data)


def test_crc24_equals_the_rfc_loop_for_every_length_around_its_six_byte_steps() -> None:
    data = bytes(range(256)) * 2
    for length in range(40):
        assert armor.crc24(data[:length]) == _bitwise_crc24(data[:length]), length


def test_reference_shardfile_armor_is_reproduced_byte_for_byte() -> None:
    text = json.loads((CAUTION_V0 / "bundle.json").read_text())["shardfile"]
    assert armor.armor("MESSAGE", armor.dearmor_one(text, "MESSAGE")) == text


def test_several_blocks_headers_and_crlf_are_read() -> None:
    one, two = armor.armor("MESSAGE", b"one"), armor.armor("PUBLIC KEY BLOCK", b"two")
    with_header = two.replace("\n\n", "\nComment: hello\nVersion: x\n\n", 1)
    blocks = armor.dearmor_all(("noise\n" + one + with_header).replace("\n", "\r\n"))
    assert [(b.kind, b.data) for b in blocks] == [("MESSAGE", b"one"), ("PUBLIC KEY BLOCK", b"two")]


def test_a_wrong_checksum_is_refused() -> None:
    text = armor.armor("MESSAGE", b"payload")
    crc_line = text.splitlines()[-2]
    bad = text.replace(crc_line, "=" + ("AAAA" if crc_line != "=AAAA" else "BBBB"))
    with pytest.raises(ArmorError, match="checksum mismatch"):
        armor.dearmor_one(bad)


def test_a_missing_checksum_is_accepted() -> None:
    text = armor.armor("MESSAGE", b"payload")
    crc_line = text.splitlines()[-2]
    assert armor.dearmor_one(text.replace(crc_line + "\n", "")) == b"payload"


def test_exactly_one_block_of_the_expected_kind() -> None:
    with pytest.raises(ArmorError, match="exactly one armor block"):
        armor.dearmor_one(armor.armor("MESSAGE", b"a") * 2)
    with pytest.raises(ArmorError, match="expected an armored PGP MESSAGE"):
        armor.dearmor_one(armor.armor("SIGNATURE", b"a"), "MESSAGE")


@given(st.binary(max_size=3000))
def test_any_content_round_trips(data: bytes) -> None:
    text = armor.armor("MESSAGE", data)
    assert all(len(line) <= 64 for line in text.splitlines())
    assert armor.dearmor_one(text, "MESSAGE") == data
