"""Shamir over GF(256)/0x11D against formats.md §8 (check values, fixture shares, derived vectors)."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from locksmith.core.shamir import MAX_SHARES, ShamirError, combine, gf_div, gf_mul, split

SEVENS = bytes([0x07]) * 32
ALICE = bytes.fromhex("01b72533ceb6b0fe89618de4c224ed69d04b83abcf6bce0b9a819e43feabf994c2")
BOB = bytes.fromhex("027a436f887874e806cb0edc9041cedbb49f12428adf881f2016288fe842e63c90")

# Derived vector 1: t = 2, secret 07×32, a_1 = 01 02 … 20.
V1_SHARES = [
    bytes.fromhex("01060504030201000f0e0d0c0b0a090817161514131211101f1e1d1c1b1a191827"),
    bytes.fromhex("020503010f0d0b09171513111f1d1b19272523212f2d2b29373533313f3d3b3947"),
    bytes.fromhex("030401020b080d0e1f1c191a13101516373431323b383d3e2f2c292a2320252667"),
]
# Derived vector 2: t = 3, secret e0..ff, a_1 = ff, a_2 = 80..9f; shares x = 1, 2, 0x80.
V2_SECRET = bytes(range(0xE0, 0x100))
V2_COEFFICIENTS = b"\xff" * 32 + bytes(range(0x80, 0xA0))
V2_SHARES = {
    0x01: bytes.fromhex("019f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f"),
    0x02: bytes.fromhex("02393c33362d28272211141b1e05000f0a696c63667d78777241444b4e55505f5a"),
    0x80: bytes.fromhex("80f7e5d3c1bfad9b89677543512f3d0b19cad8eefc8290a6b45a487e6c12003624"),
}
V2_X80_UNDER_0x11B = bytes.fromhex(
    "80b02b9d06ea71c75c049f29b25ec573e8c358ee759902b42f77ec5ac12db6009b"
)


def fixed_source(data: bytes) -> Callable[[int], bytes]:
    """A random source that must be asked for exactly `data`, once."""
    calls: list[int] = []

    def source(n: int) -> bytes:
        assert not calls, "split must draw its coefficients in one call"
        calls.append(n)
        assert n == len(data)
        return data

    return source


def slow_mul(a: int, b: int, poly: int) -> int:
    """Textbook carry-less multiply-and-reduce, independent of the module's tables."""
    result = 0
    while b:
        if b & 1:
            result ^= a
        b >>= 1
        a <<= 1
        if a & 0x100:
            a ^= poly
    return result


def test_field_check_values_from_the_spec() -> None:
    assert gf_mul(0x80, 0x02) == 0x1D
    assert gf_mul(0x53, 0xCA) == 0x8F


def test_table_multiplication_equals_carryless_reduction_by_0x11d_for_all_pairs() -> None:
    for a in range(256):
        for b in range(256):
            assert gf_mul(a, b) == slow_mul(a, b, 0x11D)


def test_division_inverts_multiplication() -> None:
    for a in range(256):
        for b in range(1, 256):
            assert gf_div(gf_mul(a, b), b) == a
    with pytest.raises(ZeroDivisionError):
        gf_div(1, 0)


def test_fixture_shares_of_alice_and_bob_recover_sevens() -> None:
    assert combine([ALICE, BOB]) == SEVENS
    assert combine([BOB, ALICE], threshold=2) == SEVENS


def test_split_reproduces_derived_vector_1_byte_exactly() -> None:
    shares = split(SEVENS, 2, 3, random_bytes=fixed_source(bytes(range(1, 33))))
    assert shares == V1_SHARES


@pytest.mark.parametrize("pair", [(0, 1), (0, 2), (1, 2), (2, 0)])
def test_any_two_shares_of_derived_vector_1_recover_the_secret(pair: tuple[int, int]) -> None:
    assert combine([V1_SHARES[i] for i in pair], threshold=2) == SEVENS


def test_split_reproduces_derived_vector_2_which_exercises_reduction() -> None:
    shares = split(V2_SECRET, 3, 0x80, random_bytes=fixed_source(V2_COEFFICIENTS))
    assert len(shares) == 0x80
    for x, expected in V2_SHARES.items():
        assert shares[x - 1] == expected


def test_three_shares_of_derived_vector_2_recover_the_secret() -> None:
    assert combine(list(V2_SHARES.values()), threshold=3) == V2_SECRET


def test_aes_polynomial_0x11b_would_give_different_shares() -> None:
    def share_under(poly: int, x: int) -> bytes:
        y = bytes(
            s ^ slow_mul(0xFF, x, poly) ^ slow_mul(a2, slow_mul(x, x, poly), poly)
            for s, a2 in zip(V2_SECRET, V2_COEFFICIENTS[32:])
        )
        return bytes([x]) + y

    # The test's own evaluator agrees with the spec under 0x11D ...
    assert share_under(0x11D, 0x02) == V2_SHARES[0x02]
    assert share_under(0x11D, 0x80) == V2_SHARES[0x80]
    # ... and under 0x11B yields the spec's negative value, which the module must not produce.
    assert share_under(0x11B, 0x80) == V2_X80_UNDER_0x11B
    assert share_under(0x11B, 0x02) != V2_SHARES[0x02]
    shares = split(V2_SECRET, 3, 0x80, random_bytes=fixed_source(V2_COEFFICIENTS))
    assert shares[0x7F] != V2_X80_UNDER_0x11B


def test_shares_are_one_byte_longer_than_the_secret_with_x_from_one() -> None:
    shares = split(SEVENS, 3, 5)
    assert [s[0] for s in shares] == [1, 2, 3, 4, 5]
    assert all(len(s) == 33 for s in shares)


def test_threshold_one_shares_are_the_secret_itself() -> None:
    shares = split(SEVENS, 1, 3, random_bytes=fixed_source(b""))
    assert all(s[1:] == SEVENS for s in shares)


def test_default_random_source_makes_fresh_shares_each_time() -> None:
    assert split(SEVENS, 2, 2) != split(SEVENS, 2, 2)


@pytest.mark.parametrize(
    ("threshold", "count"),
    [(0, 1), (2, 1), (1, 0), (1, MAX_SHARES + 1), (MAX_SHARES + 1, MAX_SHARES + 1), (-1, 3)],
)
def test_split_rejects_threshold_and_count_outside_the_limits(threshold: int, count: int) -> None:
    with pytest.raises(ShamirError, match="invalid threshold"):
        split(SEVENS, threshold, count)


def test_split_accepts_the_largest_share_count() -> None:
    shares = split(SEVENS, 2, MAX_SHARES)
    assert shares[-1][0] == MAX_SHARES
    assert combine([shares[0], shares[-1]]) == SEVENS


def test_empty_secret_is_rejected() -> None:
    with pytest.raises(ShamirError, match="empty secret"):
        split(b"", 1, 1)


def test_short_random_source_is_rejected() -> None:
    with pytest.raises(ShamirError, match="random source returned 3 bytes, expected 32"):
        split(SEVENS, 2, 2, random_bytes=lambda n: b"abc")


def test_shares_of_different_lengths_are_rejected() -> None:
    with pytest.raises(ShamirError, match="different lengths"):
        combine([ALICE, BOB[:-1]])


def test_duplicate_x_coordinate_is_rejected() -> None:
    with pytest.raises(ShamirError, match="duplicate x coordinate 1"):
        combine([ALICE, ALICE])
    with pytest.raises(ShamirError, match="duplicate x coordinate 2"):
        combine([V1_SHARES[1], bytes([2]) + V1_SHARES[0][1:]])


def test_zero_x_coordinate_is_rejected() -> None:
    with pytest.raises(ShamirError, match="share 2 has x coordinate 0"):
        combine([ALICE, b"\x00" + BOB[1:]])


def test_fewer_shares_than_the_threshold_are_rejected() -> None:
    with pytest.raises(ShamirError, match="need at least 2 shares, got 1"):
        combine([ALICE], threshold=2)


def test_empty_share_list_is_rejected() -> None:
    with pytest.raises(ShamirError, match="no shares"):
        combine([])


@pytest.mark.parametrize("share", [b"", b"\x01"])
def test_share_without_y_bytes_is_rejected(share: bytes) -> None:
    with pytest.raises(ShamirError, match="too short"):
        combine([share])


def test_error_messages_are_single_lines() -> None:
    for call in (lambda: combine([]), lambda: combine([ALICE, ALICE]), lambda: split(b"", 1, 1)):
        with pytest.raises(ShamirError) as info:
            call()
        assert "\n" not in str(info.value)
        assert isinstance(info.value, ValueError)


def test_maximum_threshold_254_of_254_recovers_and_253_shares_do_not() -> None:
    shares = split(V2_SECRET, MAX_SHARES, MAX_SHARES, random_bytes=random.Random(7).randbytes)
    shuffled = random.Random(8).sample(shares, len(shares))
    assert combine(shuffled, threshold=MAX_SHARES) == V2_SECRET
    assert combine(shuffled[:-1]) != V2_SECRET


@st.composite
def split_setups(draw: st.DrawFn) -> tuple[int, int]:
    count = draw(st.integers(1, MAX_SHARES))
    threshold = draw(st.integers(1, count))
    return threshold, count


@settings(max_examples=60, deadline=None)
@given(
    setup=split_setups(),
    secret=st.binary(min_size=32, max_size=32),
    seed=st.integers(0, 2**64),
    data=st.data(),
)
def test_any_threshold_subset_recovers_and_one_fewer_does_not(
    setup: tuple[int, int], secret: bytes, seed: int, data: st.DataObject
) -> None:
    threshold, count = setup
    # Coefficients come from a seeded PRNG, not from Hypothesis: shrinking them towards zero
    # would lower the polynomial degree and let t-1 shares recover the secret legitimately.
    shares = split(secret, threshold, count, random_bytes=random.Random(seed).randbytes)
    for _ in range(2):
        order = data.draw(st.permutations(range(count)))
        chosen = [shares[i] for i in order[:threshold]]
        assert combine(chosen, threshold=threshold) == secret
        if threshold > 1:
            # Wrong except with probability 2^-256 for pseudo-random coefficients.
            assert combine(chosen[:-1]) != secret
        if threshold < count:
            assert combine([shares[i] for i in order[: threshold + 1]]) == secret


@settings(max_examples=50, deadline=None)
@given(secret=st.binary(min_size=1, max_size=80), setup=split_setups())
def test_secrets_of_any_length_round_trip(secret: bytes, setup: tuple[int, int]) -> None:
    threshold, count = setup
    shares = split(secret, threshold, min(count, threshold + 2))
    assert all(len(s) == len(secret) + 1 for s in shares)
    assert combine(shares[-threshold:], threshold=threshold) == secret
