"""keyfork-frame codec: the protocol.md §2 vectors, limits checked from the header, no over-read."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from locksmith.core.protocol import frame

NONCE = b'{"nonce":"000102030405060708090a0b"}'
NONCE_FRAME = bytes.fromhex(
    "00000044" "cbfde7d9ab64fc7db08e0e21c800f91a186fff3202eb74c869e949eb92fdf2b6"
    "7b226e6f6e6365223a22303030313032303330343035303630373038303930613062227d")


def test_nonce_payload_encodes_to_the_spec_vector() -> None:
    assert frame.encode(NONCE) == NONCE_FRAME


def test_empty_payload_is_a_valid_frame() -> None:
    encoded = frame.encode(b"")
    assert encoded.hex() == ("00000020e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b"
                             "7852b855")
    decoder = frame.FrameDecoder()
    decoder.feed(encoded)
    assert decoder.next_payload() == b""


@pytest.mark.parametrize("length", [0, 1, 31, 1048577, 0xFFFFFFFF])
def test_bad_lengths_are_refused_from_the_header_alone(length: int) -> None:
    decoder = frame.FrameDecoder()
    decoder.feed(length.to_bytes(4, "big"))
    with pytest.raises(frame.FrameTooLarge, match=f"frame body length {length} is outside"):
        decoder.next_payload()


def test_largest_frame_is_accepted_by_the_codec() -> None:
    payload = b'"' + b"x" * 1_048_542 + b'"'
    encoded = frame.encode(payload)
    assert int.from_bytes(encoded[:4], "big") == 1_048_576
    decoder = frame.FrameDecoder()
    decoder.feed(encoded)
    assert decoder.next_payload() == payload


def test_per_message_cap_is_checked_from_the_header() -> None:
    decoder = frame.FrameDecoder()
    decoder.feed(frame.encode(b"x" * 4097)[:4])
    with pytest.raises(frame.FrameTooLarge):
        decoder.needed(max_payload=4096)


def test_checksum_mismatch_is_refused() -> None:
    bad = bytearray(NONCE_FRAME)
    bad[-1] ^= 1
    decoder = frame.FrameDecoder()
    decoder.feed(bytes(bad))
    with pytest.raises(frame.FrameError, match="checksum"):
        decoder.next_payload()


def test_consecutive_frames_are_not_over_read() -> None:
    decoder = frame.FrameDecoder()
    decoder.feed(frame.encode(b"one") + frame.encode(b"two")[:10])
    assert decoder.next_payload() == b"one"
    assert decoder.next_payload() is None
    assert decoder.buffered == 10


@given(st.lists(st.binary(max_size=300), max_size=5), st.integers(min_value=1, max_value=64))
def test_any_payloads_round_trip_whatever_the_chunking(payloads: list[bytes], chunk: int) -> None:
    stream = b"".join(frame.encode(p) for p in payloads)
    decoder = frame.FrameDecoder()
    out = []
    for i in range(0, len(stream), chunk):
        decoder.feed(stream[i:i + chunk])
        while (payload := decoder.next_payload()) is not None:
            out.append(payload)
    assert out == payloads
