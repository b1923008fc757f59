"""Shamir secret sharing over GF(2^8) with reduction polynomial 0x11D (formats.md §8).

The field and share layout must match the `blahaj` crate used by Keyfork, because shares made
by the reference Keymaker are combined here and vice versa: a share is `bytes([x]) + y`, with
one independent polynomial per secret byte. 0x11D (not the AES polynomial 0x11B) is what makes
the bytes agree.

Side-channel stance: Python gives no constant-time guarantees, so the aim is only to avoid the
cheap, obvious leaks. Secret bytes (the secret, the coefficients and every y value) are never
branched on: they are only ever used as indices into 256-byte multiplication tables (through
`bytes.translate`) and combined with XOR. The zero case of log/exp multiplication is handled
arithmetically (a sentinel logarithm that lands in a zero region of the exp table) rather than
with an `if`. Branches and divisions happen only on the x coordinates, which are public. Table
lookups indexed by secret bytes can still leak through the cache; that is accepted here.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from functools import cache

__all__ = ["MAX_SHARES", "ShamirError", "combine", "gf_div", "gf_mul", "split"]

MAX_SHARES = 254
"""Largest share count (formats.md §8: 1 ≤ t ≤ N ≤ 254)."""

_POLY = 0x11D
_LOG_ZERO = 512  # sentinel: any sum involving it indexes the zero tail of _EXP


def _build_tables() -> tuple[tuple[int, ...], tuple[int, ...]]:
    exp = [0] * 1025  # indices 510.. stay 0 so that log(0) = 512 yields a zero product
    log = [0] * 256
    value = 1
    for power in range(255):
        exp[power] = value
        exp[power + 255] = value  # lets log(a)+log(b) ≤ 508 index without a modulo
        log[value] = power
        value <<= 1
        if value & 0x100:
            value ^= _POLY
    log[0] = _LOG_ZERO
    return tuple(exp), tuple(log)


_EXP, _LOG = _build_tables()


class ShamirError(ValueError):
    """A share set or split request that cannot be honoured (one-line, secret-free message)."""


def gf_mul(a: int, b: int) -> int:
    """Multiply two field elements; branch-free so it is safe on secret operands."""
    return _EXP[_LOG[a] + _LOG[b]]


def gf_div(a: int, b: int) -> int:
    """Divide by a non-zero element; only ever used on public x coordinates."""
    if b == 0:
        raise ZeroDivisionError("division by zero in GF(256)")
    return _EXP[(_LOG[a] - _LOG[b]) % 255] if a else 0


@cache
def _mul_table(c: int) -> bytes:
    # Multiplication by the constant c as a 256-byte translation table, so a whole share row is
    # multiplied with one `bytes.translate` (a table lookup per byte, no secret-dependent branch).
    return bytes(_EXP[_LOG[v] + _LOG[c]] for v in range(256))


def _xor(a: bytes, b: bytes) -> bytes:
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(len(a), "big")


def split(
    secret: bytes,
    threshold: int,
    count: int,
    random_bytes: Callable[[int], bytes] = os.urandom,
) -> list[bytes]:
    """Split `secret` into `count` shares, any `threshold` of which recover it.

    Coefficients are drawn uniformly from 0..255 (the correct Shamir distribution; the reference
    draws from 1..255 and its shares decode identically). All of them come from a single call
    `random_bytes((threshold - 1) * len(secret))`, laid out coefficient-major: bytes
    `[(k-1)·L, k·L)` are a_k for byte positions 0..L-1. That makes the draw injectable, so the
    spec vectors (given as coefficient bytes) are reproducible exactly. Shares get x = 1..count.
    """
    if not isinstance(threshold, int) or not isinstance(count, int):
        raise ShamirError("threshold and share count must be integers")
    if not 1 <= threshold <= count <= MAX_SHARES:
        raise ShamirError(
            f"invalid threshold {threshold} of {count} shares (need 1 <= threshold <= count <= {MAX_SHARES})"
        )
    if len(secret) == 0:
        raise ShamirError("cannot split an empty secret")
    length = len(secret)
    wanted = (threshold - 1) * length
    drawn = bytes(random_bytes(wanted)) if wanted else b""
    if len(drawn) != wanted:
        raise ShamirError(f"random source returned {len(drawn)} bytes, expected {wanted}")
    # Highest-degree coefficient first, for Horner evaluation.
    coefficients = [drawn[k * length : (k + 1) * length] for k in reversed(range(threshold - 1))]
    shares = []
    for x in range(1, count + 1):
        table = _mul_table(x)
        acc = bytes(length)
        for coefficient in coefficients:
            acc = _xor(acc, coefficient).translate(table)
        shares.append(bytes([x]) + _xor(acc, bytes(secret)))
    return shares


def _lagrange_at_zero(xs: Sequence[int]) -> list[int]:
    # l_i = Π_{m≠i} x_m / (x_m ⊕ x_i): depends only on the public x coordinates.
    weights = []
    for i, xi in enumerate(xs):
        numerator, denominator = 1, 1
        for m, xm in enumerate(xs):
            if m != i:
                numerator = gf_mul(numerator, xm)
                denominator = gf_mul(denominator, xm ^ xi)
        weights.append(gf_div(numerator, denominator))
    return weights


def combine(shares: Sequence[bytes], threshold: int | None = None) -> bytes:
    """Recover the secret by Lagrange interpolation at 0 over every supplied share.

    With fewer than the split's threshold the result is simply wrong (information-theoretically
    unrelated to the secret), which is why callers that know the threshold should pass it: it is
    the only way to turn that case into an error.
    """
    if len(shares) == 0:
        raise ShamirError("no shares to combine")
    if threshold is not None:
        if not 1 <= threshold <= MAX_SHARES:
            raise ShamirError(f"invalid threshold {threshold}")
        if len(shares) < threshold:
            raise ShamirError(f"need at least {threshold} shares, got {len(shares)}")
    length = len(shares[0])
    if length < 2:
        raise ShamirError(f"share 1 is too short ({length} bytes)")
    seen: set[int] = set()
    for position, share in enumerate(shares, start=1):
        if len(share) != length:
            raise ShamirError(f"shares have different lengths ({length} and {len(share)} bytes)")
        x = share[0]
        if x == 0:
            raise ShamirError(f"share {position} has x coordinate 0")
        if x in seen:
            raise ShamirError(f"duplicate x coordinate {x}")
        seen.add(x)
    weights = _lagrange_at_zero([share[0] for share in shares])
    secret = bytes(length - 1)
    for share, weight in zip(shares, weights):
        secret = _xor(secret, bytes(share[1:]).translate(_mul_table(weight)))
    return secret
