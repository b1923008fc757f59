"""The provider's approval store (docs/forwarding.md §4.4) with real approvals signed by the
bundle's holders: only texts that count are kept, one per (holder, PCR set) with the latest
expiry, expired ones are dropped when the store is used, the capacity bounds new entries, and
every text of a push is accounted for once in A2."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from locksmith.core.forwarding.approval import DUPLICATE, EXCLUDED, OTHER_BUNDLE, format_time
from locksmith.core.forwarding.messages import Discarded, Push, Stored
from locksmith.core.forwarding.store import STORE_FULL, ApprovalStore, PushOutcome, judge_push
from tests.core.forwarding.approval_kit import DAY, NOW, SET_A, SET_B, approval_quorum

QUORUM = approval_quorum(2, 3)


def push(store: ApprovalStore, *texts: str, now: int = NOW,
         excluded: tuple[int, ...] = ()) -> PushOutcome:
    message = Push(texts)
    tally = judge_push(message, holders=QUORUM.holders, bundle_hash=QUORUM.bundle_hash,
                       threshold=QUORUM.threshold, now=now, excluded=excluded)
    return store.add(message, tally, now)


def test_approvals_that_count_are_stored_with_their_pcr_sets() -> None:
    store = ApprovalStore()
    outcome = push(store, QUORUM.approve(0), QUORUM.approve(1, SET_B))
    assert outcome == PushOutcome(Stored(2), tuple(sorted((SET_A.set_id, SET_B.set_id))))
    assert store.texts_for(SET_A, NOW) == (QUORUM.approve(0),)
    assert store.texts_for(SET_B, NOW) == (QUORUM.approve(1, SET_B),)
    assert len(store) == 2


def test_texts_that_do_not_count_are_discarded_with_their_reasons_and_not_stored() -> None:
    store = ApprovalStore()
    # another bundle named (check 3 comes before the signature's, check 4)
    other_bundle = QUORUM.approve(0).replace(QUORUM.bundle_hash.hex(), "00" * 32)
    outcome = push(store, "garbage", QUORUM.approve(1, expires=NOW - 1), other_bundle,
                   QUORUM.approve(2), excluded=(2,))
    assert outcome.answer == Stored(0, (
        Discarded(0, "not an approval (malformed cleartext signed message)"),
        Discarded(1, f"expired {format_time(NOW - 1)}"),
        Discarded(2, OTHER_BUNDLE),
        Discarded(3, EXCLUDED.format(k=2))))
    assert outcome.sets == () and len(store) == 0


def test_a_later_expiry_replaces_the_held_approval_and_an_earlier_one_is_a_duplicate() -> None:
    store = ApprovalStore()
    first, later = QUORUM.approve(0, expires=NOW + DAY), QUORUM.approve(0, expires=NOW + 2 * DAY)
    assert push(store, first).answer == Stored(1)
    assert push(store, later).answer == Stored(1)
    assert store.texts_for(SET_A, NOW) == (later,)
    assert push(store, first).answer == Stored(0, (Discarded(0, DUPLICATE.format(k=0)),))
    assert store.texts_for(SET_A, NOW) == (later,)


def test_pushing_the_same_approval_again_changes_nothing_and_reports_it_stored() -> None:
    store = ApprovalStore()
    text = QUORUM.approve(1)
    assert push(store, text).answer == Stored(1)
    assert push(store, text).answer == Stored(1)
    assert len(store) == 1 and store.texts_for(SET_A, NOW) == (text,)


def test_within_one_push_a_holder_counts_once_per_set() -> None:
    store = ApprovalStore()
    outcome = push(store, QUORUM.approve(0, expires=NOW + DAY),
                   QUORUM.approve(0, expires=NOW + 2 * DAY))
    assert outcome.answer == Stored(1, (Discarded(0, DUPLICATE.format(k=0)),))
    assert len(store) == 1


def test_expired_entries_are_dropped_when_the_store_is_used() -> None:
    store = ApprovalStore()
    push(store, QUORUM.approve(0, expires=NOW + 10), QUORUM.approve(1, expires=NOW + DAY))
    assert len(store) == 2
    assert store.texts_for(SET_A, NOW + 10) == (QUORUM.approve(1, expires=NOW + DAY),)
    assert len(store) == 1


def test_past_its_capacity_new_entries_are_discarded_but_replacements_still_happen() -> None:
    store = ApprovalStore(capacity=2)
    outcome = push(store, QUORUM.approve(0), QUORUM.approve(1), QUORUM.approve(2))
    assert outcome.answer == Stored(2, (Discarded(2, STORE_FULL),))
    later = QUORUM.approve(1, expires=NOW + 2 * DAY)
    assert push(store, later, QUORUM.approve(2, SET_B)).answer == Stored(
        1, (Discarded(1, STORE_FULL),))
    assert store.texts_for(SET_A, NOW) == (QUORUM.approve(0), later)


def test_room_freed_by_expiry_is_used_by_the_next_push() -> None:
    store = ApprovalStore(capacity=1)
    push(store, QUORUM.approve(0, expires=NOW + 10))
    assert push(store, QUORUM.approve(1), now=NOW + 10).answer == Stored(1)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.sampled_from(range(8)), min_size=1, max_size=16), st.integers(1, 4))
def test_every_pushed_text_is_either_stored_or_discarded_once_in_order(
        choices: list[int], capacity: int) -> None:
    """Whatever mix of texts (valid, duplicate, expired, garbage) and whatever capacity."""
    pool = [QUORUM.approve(0), QUORUM.approve(1), QUORUM.approve(2, SET_B),
            QUORUM.approve(0, expires=NOW + 2 * DAY), QUORUM.approve(1, expires=NOW - 5),
            "garbage", QUORUM.approve(2), QUORUM.approve(1, SET_B)]
    store = ApprovalStore(capacity)
    outcome = push(store, *(pool[c] for c in choices))
    assert outcome.answer.answers(len(choices))
    assert len(store) <= capacity
    held = {text for pcrs in (SET_A, SET_B) for text in store.texts_for(pcrs, NOW)}
    assert held <= {pool[c] for c in choices}
