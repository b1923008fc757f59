"""BER-TLV: the length forms, multi-byte tags, ISO padding, and strictness on everything else."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from locksmith.core.card import tlv
from locksmith.core.card.errors import CardError, LocalError, MalformedResponse

single_tags = st.integers(0x01, 0xFE).filter(lambda t: t & 0x1F != 0x1F)
double_tags = st.builds(lambda a, b: a << 8 | b,
                        st.integers(0x01, 0xFE).filter(lambda t: t & 0x1F == 0x1F),
                        st.integers(0x00, 0x7F))
triple_tags = st.builds(lambda a, b, c: a << 16 | b << 8 | c,
                        st.integers(0x01, 0xFE).filter(lambda t: t & 0x1F == 0x1F),
                        st.integers(0x80, 0xFF), st.integers(0x00, 0x7F))
tags = st.one_of(single_tags, double_tags, triple_tags)
values = st.binary(max_size=300)


@pytest.mark.parametrize(("length", "header"), [
    (0, "86 00"), (0x7F, "86 7F"), (0x80, "86 81 80"), (0xFF, "86 81 FF"),
    (0x100, "86 82 01 00"), (0xFFFF, "86 82 FF FF"), (0x10000, "86 83 01 00 00"),
])
def test_lengths_use_the_shortest_form(length: int, header: str) -> None:
    assert tlv.encode(0x86, bytes(length))[:len(bytes.fromhex(header))] == bytes.fromhex(header)


def test_two_byte_tags_encode_as_written_in_the_card_spec() -> None:
    assert tlv.encode(0x7F49, b"\x01").hex() == "7f490101"
    assert tlv.encode(0x5F52, b"") == bytes.fromhex("5F5200")


@pytest.mark.parametrize("tag", [0x00, 0xFF, 0x1F, 0x5F80, 0x7F0181, 0x7F0101, 0x5F, 0x5F81818101,
                                 0x4F4F])
def test_invalid_tags_are_refused_locally(tag: int) -> None:
    with pytest.raises(LocalError):
        tlv.encode(tag, b"")


@given(tags, values)
@settings(max_examples=200)
def test_encode_then_parse_round_trips(tag: int, value: bytes) -> None:
    assert tlv.parse(tlv.encode(tag, value)) == [(tag, value)]


@given(st.lists(st.tuples(tags, values), max_size=5), st.lists(st.sampled_from([0, 0xFF]),
                                                               max_size=3))
@settings(max_examples=150)
def test_a_sequence_parses_back_in_order_ignoring_padding(
        objects: list[tuple[int, bytes]], padding: list[int]) -> None:
    data = bytes(padding).join(tlv.encode(t, v) for t, v in objects) + bytes(padding)
    assert tlv.parse(bytes(padding) + data) == objects


@pytest.mark.parametrize("data", [
    "86", "86 02 01", "86 81", "86 82 01", "5F", "5F 81", "86 80", "86 84 00 00 00 01",
    "5F 81 81 01 00", "86 01 01 87",
])
def test_truncated_or_unsupported_encodings_are_malformed(data: str) -> None:
    with pytest.raises(MalformedResponse):
        tlv.parse(bytes.fromhex(data))


def test_non_minimal_lengths_from_a_card_are_accepted() -> None:
    assert tlv.parse(bytes.fromhex("86 81 01 AA 87 82 00 01 BB")) == [(0x86, b"\xaa"),
                                                                      (0x87, b"\xbb")]


def test_find_descends_depth_first_into_constructed_objects_only() -> None:
    inner = tlv.encode(0x73, tlv.encode(0xC4, b"status") + tlv.encode(0x7F66, tlv.encode(
        0x02, b"\x08\x00")))
    # C1 is primitive: a lookalike object inside its value must not be found.
    data = tlv.encode(0x6E, tlv.encode(0xC1, tlv.encode(0x02, b"hidden")) + inner)
    assert tlv.find(data, 0xC4) == b"status"
    assert tlv.find(data, 0x02) == b"\x08\x00"
    assert tlv.find(data, 0xC5) is None


def test_find_refuses_hostile_nesting_instead_of_recursing_without_bound() -> None:
    data = b"\x01"
    for _ in range(200):
        data = tlv.encode(0x7F60, data)
    with pytest.raises(MalformedResponse, match="nested deeper"):
        tlv.find(data, 0x86)


def test_unwrap_accepts_a_constructed_do_with_or_without_its_tag() -> None:
    content = tlv.encode(0x81, b"\x00")
    assert tlv.unwrap(tlv.encode(0xF9, content), 0xF9) == content
    assert tlv.unwrap(content, 0xF9) == content


def test_constructed_bit_is_read_from_the_first_tag_byte() -> None:
    assert tlv.is_constructed(0x7F49) and tlv.is_constructed(0x6E) and tlv.is_constructed(0xF9)
    assert not tlv.is_constructed(0x5F52) and not tlv.is_constructed(0x86)


@given(st.binary(max_size=400), tags)
@settings(max_examples=200)
def test_garbage_gives_malformed_response_never_another_error(data: bytes, tag: int) -> None:
    for call in (lambda: tlv.parse(data), lambda: tlv.find(data, tag),
                 lambda: tlv.unwrap(data, tag)):
        try:
            call()
        except CardError:
            pass

