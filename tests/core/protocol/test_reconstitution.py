"""The reconstitution round (protocol.md §8): checks 1–6 in order, slots, recovery outcomes,
and the amended robust recovery (shares kept, other subsets tried, culprits named)."""

from __future__ import annotations

import os

import pytest

from locksmith.core.bundle.checks import check_bundle
from locksmith.core.bundle.model import BundleV0
from locksmith.core.openpgp.certs import load_certificates
from locksmith.core.protocol.messages import (
    Accepted, LocalProtocolError, Rejected, ShareRequest, submission_bundle_hash,
)
from locksmith.core.protocol.reconstitution import (
    REJECT_COORDINATE, REJECT_DUPLICATE, REJECT_FOREIGN_SUBKEY, REJECT_MALFORMED_SHARE,
    REJECT_OTHER_BUNDLE, REJECT_THRESHOLD, REJECT_UNKNOWN_HOLDER, BundleTampered, QuorumReached,
    ReconstitutionRound, RecoveryFailed, ShareAccepted, ShareRejected,
)
from locksmith.core.protocol.share_search import new_subset_count, new_subsets, off_polynomial
from locksmith.core.shamir import split
from tests.core.protocol_kit import (
    FIXTURE_SECRET, Quorum, fixture_quorum, generated_quorum, tampered_public_key,
    with_public_key,
)


def _request(quorum: Quorum, k: int, threshold: int | None = None, *,
             bundle_hash: str | None | bool = True, share: bytes | None = None) -> ShareRequest:
    """Holder k's honest Q unless overridden; bundle_hash True = the bundle's own (if any)."""
    claimed: str | None
    if bundle_hash is True:
        own = submission_bundle_hash(quorum.checked.bundle)
        claimed = None if own is None else own.hex()
    else:
        assert bundle_hash is not False
        claimed = bundle_hash
    t = threshold if threshold is not None else quorum.threshold
    assert t is not None
    return ShareRequest(bytearray(share if share is not None else quorum.holders[k].share), t,
                        claimed)


def _wrong_y(share: bytes) -> bytes:
    return share[:5] + bytes([share[5] ^ 0x5A]) + share[6:]


def _round(quorum: Quorum) -> ReconstitutionRound:
    return ReconstitutionRound.from_bundle(quorum.checked)


# --- fixed threshold (V1, ImportedV0) --------------------------------------------------------------

FIXED = ["V1", "ImportedV0"]


@pytest.mark.parametrize("generation", FIXED)
def test_two_of_three_recovers_the_secret(generation: str) -> None:
    quorum = generated_quorum(2, 3, generation)
    rnd = _round(quorum)
    first = rnd.admit(_request(quorum, 2), 2)
    assert isinstance(first, ShareAccepted) and first.verdict == Accepted(1)
    fpr = quorum.holders[2].fingerprint
    assert first.log == (f"accepted share from holder 2 ({fpr}); 1 remaining",)
    done = rnd.admit(_request(quorum, 0), 0)
    assert isinstance(done, QuorumReached) and done.verdict == Accepted(0)
    assert bytes(done.secret) == quorum.secret
    assert rnd.finished
    with pytest.raises(LocalProtocolError):
        rnd.admit(_request(quorum, 1), 1)


def test_three_of_five_fixed_threshold_counts_down() -> None:
    quorum = generated_quorum(3, 5, "ImportedV0")
    rnd = _round(quorum)
    assert [rnd.admit(_request(quorum, k), k).verdict for k in (4, 1)] == [Accepted(2), Accepted(1)]
    done = rnd.admit(_request(quorum, 3), 3)
    assert isinstance(done, QuorumReached) and bytes(done.secret) == quorum.secret


@pytest.mark.parametrize("generation", FIXED)
def test_other_bundle_hash_is_rejected(generation: str) -> None:
    quorum = generated_quorum(2, 3, generation)
    rnd = _round(quorum)
    for claimed in ["00" * 32, "zz" * 32, "ab" * 31, "ab" * 33, "", " " + "00" * 32]:
        result = rnd.admit(_request(quorum, 0, bundle_hash=claimed), 0)
        assert result == ShareRejected(Rejected(REJECT_OTHER_BUNDLE),
                                       (f"rejected submission: {REJECT_OTHER_BUNDLE}",))
    assert rnd.remaining() == 2


def test_bundle_hash_is_compared_as_bytes_in_either_case() -> None:
    quorum = generated_quorum(2, 3, "V1")
    own = submission_bundle_hash(quorum.checked.bundle)
    assert own is not None
    result = _round(quorum).admit(_request(quorum, 0, bundle_hash=own.hex().upper()), 0)
    assert isinstance(result, ShareAccepted)


def test_missing_bundle_hash_is_accepted_with_a_warning() -> None:
    quorum = generated_quorum(2, 3, "V1")
    result = _round(quorum).admit(_request(quorum, 1, bundle_hash=None), 1)
    assert isinstance(result, ShareAccepted)
    assert "carries no bundle_hash" in result.log[0] and quorum.holders[1].fingerprint in result.log[0]


@pytest.mark.parametrize("claimed", [1, 3, 0])
def test_threshold_mismatch_is_rejected(claimed: int) -> None:
    quorum = generated_quorum(2, 3, "V1")
    result = _round(quorum).admit(_request(quorum, 0, claimed), 0)
    assert result.verdict == Rejected(REJECT_THRESHOLD)


@pytest.mark.parametrize("holder", [3, 254, -1])
def test_unknown_holder_is_rejected(holder: int) -> None:
    quorum = generated_quorum(2, 3, "V1")
    assert _round(quorum).admit(_request(quorum, 0), holder).verdict == Rejected(REJECT_UNKNOWN_HOLDER)


@pytest.mark.parametrize("share", [b"", b"\x01" * 32, b"\x01" * 34, b"\x00" + b"\x07" * 32])
def test_malformed_share_is_rejected(share: bytes) -> None:
    quorum = generated_quorum(2, 3, "V1")
    result = _round(quorum).admit(_request(quorum, 0, share=share), 0)
    assert result.verdict == Rejected(REJECT_MALFORMED_SHARE)


def test_share_for_another_position_is_rejected() -> None:
    quorum = generated_quorum(2, 3, "V1")
    result = _round(quorum).admit(_request(quorum, 0), 1)  # holder 1 sends x = 1
    assert result.verdict == Rejected(REJECT_COORDINATE)


def test_duplicate_holder_is_rejected_without_consuming_a_slot() -> None:
    quorum = generated_quorum(3, 5, "V1")
    rnd = _round(quorum)
    assert rnd.admit(_request(quorum, 0), 0).verdict == Accepted(2)
    assert rnd.admit(_request(quorum, 0), 0).verdict == Rejected(REJECT_DUPLICATE)
    assert rnd.remaining() == 2
    assert rnd.admit(_request(quorum, 1), 1).verdict == Accepted(1)


def test_checks_apply_in_spec_order() -> None:
    quorum = generated_quorum(2, 3, "V1")
    rnd = _round(quorum)
    x1 = quorum.holders[0].share
    bad = [  # each request fails the named check and every later one
        (_request(quorum, 0, 3, bundle_hash="00" * 32, share=b"\x00"), 9, REJECT_OTHER_BUNDLE),
        (_request(quorum, 0, 3, share=b"\x00"), 9, REJECT_THRESHOLD),
        (_request(quorum, 0, share=b"\x00"), 9, REJECT_UNKNOWN_HOLDER),
        (_request(quorum, 0, share=b"\x00"), 1, REJECT_MALFORMED_SHARE),
        (_request(quorum, 0, share=x1), 1, REJECT_COORDINATE),
    ]
    for request, holder, reason in bad:
        assert rnd.admit(request, holder).verdict == Rejected(reason)
    assert rnd.remaining() == 2


def test_wrong_share_at_quorum_keeps_every_share_and_the_next_honest_share_completes() -> None:
    quorum = generated_quorum(2, 3, "V1")
    rnd = _round(quorum)
    assert rnd.admit(_request(quorum, 0, share=_wrong_y(quorum.holders[0].share)), 0).verdict \
        == Accepted(1)
    failed = rnd.admit(_request(quorum, 2), 2)
    fprs = [h.fingerprint for h in quorum.holders]
    assert isinstance(failed, RecoveryFailed)
    assert failed.verdict == Accepted(1)  # stored; one more share is needed
    assert (failed.contributors, failed.tried, failed.candidates) == ((0, 2), 1, 1)
    assert failed.log == (
        f"accepted share from holder 2 ({fprs[2]}); 1 remaining",
        "no 2 of the 2 shares held recover the bundle's secret (1 of 1 combinations with "
        "holder 2's share tried); every share is kept",
        f"failed recovery used shares from: 0 ({fprs[0]}), 2 ({fprs[2]})")
    assert not rnd.finished and rnd.remaining() == 1
    # No restart: both contributors are still held, so a resubmission is a duplicate ...
    for k in (0, 2):
        assert rnd.admit(_request(quorum, k), k).verdict == Rejected(REJECT_DUPLICATE)
    # ... and the third holder's share completes the quorum with holder 2's.
    done = rnd.admit(_request(quorum, 1), 1)
    assert isinstance(done, QuorumReached) and bytes(done.secret) == quorum.secret
    assert done.culprits == (0,)
    assert done.log[-3:] == (
        "quorum reached: the recovered secret matches the bundle public key",
        f"the matching recovery used shares from: 1 ({fprs[1]}), 2 ({fprs[2]})",
        f"likely culprit: holder 0 ({fprs[0]}) sent a share that is not on the recovered "
        "polynomial (in every failed combination tried with it, in none that matched)")


def test_a_failed_recovery_wipes_the_candidate_secret_but_keeps_the_shares() -> None:
    quorum = generated_quorum(2, 3, "V1")
    rnd = _round(quorum)
    rnd.admit(_request(quorum, 0, share=_wrong_y(quorum.holders[0].share)), 0)
    stored = rnd._sets[2][0]  # white box: the round's own copy
    rnd.admit(_request(quorum, 1), 1)
    assert bytes(stored) == _wrong_y(quorum.holders[0].share)
    assert sorted(rnd._sets[2]) == [0, 1]
    done = rnd.admit(_request(quorum, 2), 2)
    assert isinstance(done, QuorumReached)
    assert stored == bytearray(33) and rnd._sets == {}  # every share wiped when the round ends


@pytest.mark.parametrize("generation", FIXED)
@pytest.mark.parametrize("order", [(0, 1, 2, 3, 4), (2, 0, 3, 1, 4), (2, 3, 4, 0, 1),
                                   (4, 3, 2, 1, 0)])
def test_three_honest_of_five_unlock_whatever_two_rogue_holders_send_and_when(
        generation: str, order: tuple[int, ...]) -> None:
    """Holders 0 and 1 sign random shares with their real keys; 2, 3 and 4 are honest."""
    quorum = generated_quorum(3, 5, generation)
    rnd = _round(quorum)
    result = None
    for k in order:
        share = quorum.holders[k].share
        if k in (0, 1):
            share = share[:1] + os.urandom(32)
        result = rnd.admit(_request(quorum, k, share=share), k)
        if isinstance(result, QuorumReached):
            break
        assert isinstance(result, (ShareAccepted, RecoveryFailed)) and result.verdict.remaining >= 1
        # The rogues keep resubmitting: every answer is the same duplicate text.
        for rogue in (0, 1):
            if rogue in rnd._sets.get(3, {}):
                garbage = bytes([rogue + 1]) + os.urandom(32)
                again = rnd.admit(_request(quorum, rogue, share=garbage), rogue)
                assert again.verdict == Rejected(REJECT_DUPLICATE)
    assert isinstance(result, QuorumReached) and bytes(result.secret) == quorum.secret
    held_rogues = tuple(k for k in (0, 1) if order.index(k) < order.index(max(
        (2, 3, 4), key=order.index)))
    assert result.culprits == held_rogues


def test_the_search_is_capped_per_arriving_share_and_says_so() -> None:
    quorum = generated_quorum(3, 5, "V1")
    rnd = ReconstitutionRound(holders=[h.fingerprint for h in quorum.holders],
                              public_key=quorum.checked.quorum_certificate, threshold=3,
                              bundle_hash=None, search_cap=2)
    for k in (0, 1):  # rogues first
        rnd.admit(_request(quorum, k, bundle_hash=None,
                           share=bytes([k + 1]) + os.urandom(32)), k)
    rnd.admit(_request(quorum, 2, bundle_hash=None), 2)  # C(2, 2) = 1 subset: fails
    fourth = rnd.admit(_request(quorum, 3, bundle_hash=None), 3)
    assert isinstance(fourth, RecoveryFailed) and (fourth.tried, fourth.candidates) == (2, 3)
    assert "(2 of 3 combinations with holder 3's share tried)" in fourth.log[1]
    # Through holder 4: {0,1,4}, {0,2,4}, ... {2,3,4} last. With two tries the honest subset
    # is not reached: the documented limit a quorum beyond the cap's reach would hit.
    fifth = rnd.admit(_request(quorum, 4, bundle_hash=None), 4)
    assert isinstance(fifth, RecoveryFailed) and (fifth.tried, fifth.candidates) == (2, 6)


def test_an_excluded_holder_is_an_unknown_holder_and_never_stored() -> None:
    quorum = generated_quorum(2, 3, "V1")
    rnd = ReconstitutionRound.from_bundle(quorum.checked, excluded=[0])
    fpr = quorum.holders[0].fingerprint
    result = rnd.admit(_request(quorum, 0), 0)
    assert result == ShareRejected(Rejected(REJECT_UNKNOWN_HOLDER), (
        f"submission from holder 0 ({fpr}), excluded by the operator",
        f"rejected submission: {REJECT_UNKNOWN_HOLDER}"))
    assert rnd._sets == {}
    assert rnd.admit(_request(quorum, 1), 1).verdict == Accepted(1)
    assert isinstance(rnd.admit(_request(quorum, 2), 2), QuorumReached)


def test_round_refuses_out_of_range_exclusions_and_a_zero_cap() -> None:
    quorum = generated_quorum(2, 3, "V1")
    with pytest.raises(ValueError):
        ReconstitutionRound.from_bundle(quorum.checked, excluded=[3])
    with pytest.raises(ValueError):
        ReconstitutionRound(holders=["A", "B"], public_key=quorum.checked.quorum_certificate,
                            threshold=2, bundle_hash=None, search_cap=0)


# --- share_search ------------------------------------------------------------------------------


def test_new_subsets_are_exactly_those_through_the_newest_share() -> None:
    subsets = list(new_subsets(4, [3, 0, 1], 3))
    assert subsets == [(0, 1, 4), (0, 3, 4), (1, 3, 4)]
    assert new_subset_count(3, 3) == 3 and new_subset_count(253, 2) == 253


def test_off_polynomial_names_exactly_the_wrong_shares() -> None:
    secret = os.urandom(32)
    shares = split(secret, 3, 6)
    held = dict(enumerate(shares))
    held[4] = held[4][:1] + os.urandom(32)
    held[5] = held[5][:7] + bytes([held[5][7] ^ 1]) + held[5][8:]  # one bit of one byte
    assert off_polynomial([held[0], held[1], held[2]], held) == [4, 5]
    assert off_polynomial([held[1], held[2], held[3]], held) == [4, 5]


def test_round_copies_the_share_and_wipe_ends_it() -> None:
    quorum = generated_quorum(2, 3, "V1")
    rnd = _round(quorum)
    request = _request(quorum, 0)
    rnd.admit(request, 0)
    request.wipe()  # the session wipes its copy after answering; the round's stays intact
    stored = rnd._sets[2][0]
    assert bytes(stored) == quorum.holders[0].share
    rnd.wipe()
    assert stored == bytearray(33) and rnd.finished


# --- v0: one share set per claimed threshold -------------------------------------------------------


def test_fixture_v0_recovers_07_from_alice_and_bob() -> None:
    quorum = fixture_quorum()
    rnd = _round(quorum)
    first = rnd.admit(_request(quorum, 1, 2), 1)
    assert first.verdict == Accepted(1)
    assert first.log == (("accepted share from holder 1 (EE9DCBD1ADDAF6B55BB54B67A13E41E31AC969A9)"
                          " for threshold 2; 1 remaining"),)
    done = rnd.admit(_request(quorum, 0, 2), 0)
    assert isinstance(done, QuorumReached) and bytes(done.secret) == FIXTURE_SECRET


def test_v0_ignores_any_bundle_hash() -> None:
    quorum = fixture_quorum()
    result = _round(quorum).admit(_request(quorum, 0, 2, bundle_hash="not a hash"), 0)
    assert result.verdict == Accepted(1) and len(result.log) == 1


@pytest.mark.parametrize("claimed", [0, 6, 2**64])
def test_v0_threshold_must_be_within_the_holder_count(claimed: int) -> None:
    quorum = generated_quorum(3, 5)
    assert _round(quorum).admit(_request(quorum, 0, claimed), 0).verdict == Rejected(REJECT_THRESHOLD)


def test_v0_holder_claiming_a_wrong_threshold_does_not_block_honest_holders() -> None:
    quorum = generated_quorum(3, 5)
    fprs = [h.fingerprint for h in quorum.holders]
    rnd = _round(quorum)
    assert rnd.admit(_request(quorum, 0, 2), 0).verdict == Accepted(1)  # the liar, set 2
    assert rnd.admit(_request(quorum, 1, 3), 1).verdict == Accepted(2)  # honest, set 3
    # Checks 3–6 span every set: holder 1 cannot also join set 2.
    assert rnd.admit(_request(quorum, 1, 2), 1).verdict == Rejected(REJECT_DUPLICATE)
    failed = rnd.admit(_request(quorum, 2, 2), 2)  # completes set 2: wrong polynomial degree
    assert isinstance(failed, RecoveryFailed) and failed.contributors == (0, 2)
    assert failed.log[1:] == (
        "no 2 of the 2 shares held for threshold 2 recover the bundle's secret (1 of 1 "
        "combinations with holder 2's share tried); every share is kept",
        f"failed recovery used shares from: 0 ({fprs[0]}), 2 ({fprs[2]})")
    assert rnd.remaining(3) == 2 and rnd.remaining(2) == 1 and not rnd.finished
    # Holders 0 and 2 stay in set 2 (one share per holder per round); 3 and 4 complete set 3.
    assert rnd.admit(_request(quorum, 0, 3), 0).verdict == Rejected(REJECT_DUPLICATE)
    assert rnd.admit(_request(quorum, 3, 3), 3).verdict == Accepted(1)
    done = rnd.admit(_request(quorum, 4, 3), 4)
    assert isinstance(done, QuorumReached) and bytes(done.secret) == quorum.secret
    assert done.culprits == ()  # their shares were right; only their claimed threshold was not
    assert rnd._sets == {}  # every set cleared when the round ends


def test_v0_wrong_share_in_the_honest_set_does_not_block_it() -> None:
    quorum = generated_quorum(2, 3)
    rnd = _round(quorum)
    assert rnd.admit(_request(quorum, 0, 3), 0).verdict == Accepted(2)  # other set, t = 3
    wrong = _request(quorum, 1, 2, share=_wrong_y(quorum.holders[1].share))
    assert rnd.admit(wrong, 1).verdict == Accepted(1)
    assert isinstance(rnd.admit(_request(quorum, 2, 2), 2), RecoveryFailed)
    assert rnd.remaining(3) == 2 and rnd.remaining(2) == 1
    assert rnd.admit(_request(quorum, 1, 2), 1).verdict == Rejected(REJECT_DUPLICATE)
    # Holder 0 sits in set 3 with a right share; only a third honest share in set 2 would
    # complete it, and there is none: set 2 keeps waiting, nothing is wiped.
    assert sorted(rnd._sets[2]) == [1, 2] and sorted(rnd._sets[3]) == [0]


def test_v0_remaining_needs_a_threshold() -> None:
    with pytest.raises(LocalProtocolError):
        _round(fixture_quorum()).remaining()


# --- a bundle altered after generation ---------------------------------------------------------------


def test_foreign_subkey_in_the_bundle_public_key_is_fatal() -> None:
    quorum = fixture_quorum()
    assert isinstance(quorum.checked.bundle, BundleV0)
    tampered = with_public_key(quorum.checked.bundle, tampered_public_key(FIXTURE_SECRET))
    rnd = ReconstitutionRound.from_bundle(check_bundle(tampered))
    rnd.admit(_request(quorum, 0, 2), 0)
    result = rnd.admit(_request(quorum, 1, 2), 1)
    assert result == BundleTampered(Rejected(REJECT_FOREIGN_SUBKEY), (
        "bundle public key carries a subkey not derived from the recovered secret",))
    assert rnd.finished and rnd._sets == {}


def test_other_quorum_key_is_a_mismatch_not_a_tampering() -> None:
    quorum = fixture_quorum()
    other = generated_quorum(2, 3).checked.quorum_certificate
    rnd = ReconstitutionRound(holders=[h.fingerprint for h in quorum.holders], public_key=other,
                              threshold=2, bundle_hash=None)
    rnd.admit(_request(quorum, 0, 2), 0)
    assert isinstance(rnd.admit(_request(quorum, 1, 2), 1), RecoveryFailed)


def test_round_needs_a_sane_threshold() -> None:
    cert = load_certificates(tampered_public_key(FIXTURE_SECRET))[0]
    with pytest.raises(ValueError):
        ReconstitutionRound(holders=["A"], public_key=cert, threshold=2, bundle_hash=None)
