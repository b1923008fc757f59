"""keyfork-frame (locksmith/core/protocol/frame.py) under arbitrary and mutated byte streams.

Allowed to escape: `FrameError` (and its subclass `FrameTooLarge`). Nothing else, whatever the
bytes and however they are chunked. tests/core/protocol/test_frame.py already proves the round
trip of valid frames under any chunking; this adds hostile streams, per-message caps and the
memory bound of a maximal frame.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from locksmith.core.protocol import frame
from tests.fuzz.strategies import bounded, chunked, fuzz, mutated

ALLOWED = (frame.FrameError,)
caps = st.none() | st.sampled_from([0, 1, 31, 32, 4096, 256 * 1024, frame.MAX_LENGTH])


def _drain(chunks: list[bytes], cap: int | None) -> list[bytes]:
    """Feed `chunks` as a socket would and take every complete payload; check the decoder's
    own bookkeeping after each step (never a negative need, never an over-read)."""
    decoder = frame.FrameDecoder()
    out: list[bytes] = []
    try:
        for chunk in chunks:
            decoder.feed(chunk)
            while True:
                before = decoder.buffered
                assert decoder.needed(cap) >= 0
                payload = decoder.next_payload(cap)
                if payload is None:
                    assert decoder.buffered == before
                    break
                assert before - decoder.buffered == frame.HEADER + frame.DIGEST + len(payload)
                assert cap is None or len(payload) <= cap
                out.append(payload)
    except ALLOWED:
        pass
    return out


@fuzz(deadline_ms=500, scale=2)
@given(st.binary(max_size=600).flatmap(chunked), caps)
def test_fuzz_random_streams_raise_only_frame_errors(chunks: list[bytes], cap: int | None) -> None:
    _drain(chunks, cap)


def _frames(payloads: list[bytes]) -> bytes:
    return b"".join(frame.encode(p) for p in payloads)


valid_streams = st.lists(st.binary(max_size=80), min_size=1, max_size=3).map(_frames)


@fuzz(deadline_ms=500, scale=2)
@given(valid_streams.flatmap(mutated).flatmap(chunked), caps)
def test_fuzz_mutated_frame_streams_raise_only_frame_errors(chunks: list[bytes],
                                                             cap: int | None) -> None:
    _drain(chunks, cap)


@fuzz(deadline_ms=500)
@given(st.integers(0, 2**32 - 1), st.binary(max_size=64), caps)
def test_fuzz_any_header_length_is_judged_from_the_header_alone(length: int, tail: bytes,
                                                                cap: int | None) -> None:
    """A header is accepted or refused before any body byte arrives, by its value alone."""
    decoder = frame.FrameDecoder()
    decoder.feed(length.to_bytes(4, "big") + tail)
    acceptable = frame.MIN_LENGTH <= length <= frame.MAX_LENGTH and (
        cap is None or length - frame.DIGEST <= cap)
    try:
        need = decoder.needed(cap)
    except frame.FrameTooLarge:
        assert not acceptable
        return
    assert acceptable and need == max(0, frame.HEADER + length - decoder.buffered)


def test_fuzz_a_maximal_frame_decodes_in_bounded_time_and_memory() -> None:
    """The largest legal frame (1 MiB), fed in 4 KiB reads, then one byte of it corrupted:
    linear time, and a few copies of the frame in memory (the buffer and the payload sliced
    out of it, about three today), not one per read."""
    payload = bytes(range(256)) * ((frame.MAX_LENGTH - frame.DIGEST) // 256)
    data = frame.encode(payload)
    for corrupt in (False, True):
        stream = bytearray(data)
        if corrupt:
            stream[-1] ^= 1
        reads = [bytes(stream[i:i + 4096]) for i in range(0, len(stream), 4096)]
        out = bounded(_drain, reads, None, seconds=2.0, peak_bytes=4 * len(data))
        assert out == ([] if corrupt else [payload])
