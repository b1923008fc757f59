"""Finding `t` shares that agree among more than `t` (review finding F2), pure GF(256) helpers.

A holder with a valid signing key can send `coordinate ‖ 32 random bytes`. Nothing tells such a
share apart from an honest one until a recovery that includes it fails the recovered-key check,
and any `t` points fit some polynomial of degree t − 1, so no consistency test can single it out
either. The round therefore keeps every share and tries other t-subsets; this module says which
subsets are new when a share arrives, how many there are, and — once a subset has matched —
which other shares do not lie on the recovered polynomial (the holders to name in the log).

Why only subsets containing the newest share: every subset of the shares held before it was
tried when they arrived (up to the cap, see `reconstitution`), so only the `C(m−1, t−1)`
subsets through the new share can be new.

Side channels as in `shamir`: branches and divisions happen only on the public x coordinates;
y bytes go through translation tables and XOR.
"""

from __future__ import annotations

import hmac
import itertools
import math
from collections.abc import Iterator, Mapping, Sequence

from locksmith.core.shamir import gf_div, gf_mul

__all__ = ["new_subsets", "new_subset_count", "off_polynomial"]


def new_subsets(newest: int, others: Sequence[int], t: int) -> Iterator[tuple[int, ...]]:
    """Every t-subset of `others ∪ {newest}` that contains `newest`, as sorted tuples, in
    lexicographic order of the others (holder indices)."""
    for rest in itertools.combinations(sorted(others), t - 1):
        yield tuple(sorted((*rest, newest)))


def new_subset_count(others: int, t: int) -> int:
    """How many subsets `new_subsets` yields for `others` other shares: C(others, t − 1)."""
    return math.comb(others, t - 1)


def _weights_at(x: int, xs: Sequence[int]) -> list[int]:
    """Lagrange basis values l_i(x) = Π_{m≠i} (x ⊕ x_m) / (x_i ⊕ x_m) (public x only)."""
    weights = []
    for i, xi in enumerate(xs):
        numerator, denominator = 1, 1
        for m, xm in enumerate(xs):
            if m != i:
                numerator = gf_mul(numerator, x ^ xm)
                denominator = gf_mul(denominator, xi ^ xm)
        weights.append(gf_div(numerator, denominator))
    return weights


def _evaluate(points: Sequence[bytes | bytearray], x: int) -> bytes:
    """The y bytes at `x` of the polynomial through `points` (shares `x ‖ y`)."""
    weights = _weights_at(x, [p[0] for p in points])
    acc = 0
    for point, weight in zip(points, weights):
        table = bytes(gf_mul(v, weight) for v in range(256))
        acc ^= int.from_bytes(bytes(point[1:]).translate(table), "big")
    return acc.to_bytes(len(points[0]) - 1, "big")


def off_polynomial(points: Sequence[bytes | bytearray],
                   shares: Mapping[int, bytes | bytearray]) -> list[int]:
    """The keys of `shares` whose share does not lie on the polynomial through `points`.

    `points` are the t shares of the subset that matched the bundle; a share off that
    polynomial is a wrong share (its holder signed garbage), which is why the log names it."""
    used = {p[0] for p in points}
    wrong = []
    for key, share in sorted(shares.items()):
        if share[0] in used:
            continue
        if not hmac.compare_digest(_evaluate(points, share[0]), bytes(share[1:])):
            wrong.append(key)
    return wrong
