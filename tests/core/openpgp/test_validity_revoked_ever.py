"""`validity.revoked_ever`: a revocation counts whenever it was made (formats.md §13.4), for
holders judged at a fixed past time such as a V1 bundle's generation time."""

from __future__ import annotations

from locksmith.core.openpgp import signature as sigmod
from locksmith.core.openpgp.validity import is_live, revoked_ever
from tests.core.openpgp.gpgkit import (
    FIXTURE_CREATED, fixture_secret, revocation, with_direct_signatures, with_subkey_signatures,
)
from tests.core.protocol_kit import fixture_quorum

LATE = FIXTURE_CREATED + 10**8  # long after any time the holder is judged at


def test_an_unrevoked_certificate_is_never_revoked() -> None:
    alice = fixture_quorum().checked.holders[0]
    assert not any(revoked_ever(alice, key) for key in alice.keys())


def test_a_late_soft_subkey_revocation_counts_for_that_subkey_only() -> None:
    alice = fixture_quorum().checked.holders[0]
    sub = alice.subkeys[0].key
    revoked = with_subkey_signatures(alice, 0, [*alice.subkeys[0].signatures, revocation(
        fixture_secret("alice", 0), sub, created=LATE, reason=sigmod.REASON_SUPERSEDED)])
    assert is_live(revoked, sub, FIXTURE_CREATED + 100)  # a soft reason applies from LATE on
    assert revoked_ever(revoked, sub)
    assert not revoked_ever(revoked, revoked.primary)
    assert not revoked_ever(revoked, revoked.subkeys[1].key)


def test_a_primary_revocation_counts() -> None:
    alice = fixture_quorum().checked.holders[0]
    revoked = with_direct_signatures(alice, [revocation(
        fixture_secret("alice", 0), None, created=LATE, reason=sigmod.REASON_RETIRED)])
    assert revoked_ever(revoked, revoked.primary)
