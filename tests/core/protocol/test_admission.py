"""Admission to locksmithd's attestation slots (finding F1), sans-IO: rules 1–3 of
`core.protocol.admission` with a fake clock."""

from __future__ import annotations

import pytest

from locksmith.core.protocol.admission import Admission, Decision, Phase, Policy
from locksmith.core.protocol.messages import LocalProtocolError


def _gate(**policy: float) -> Admission[str]:
    values = {"slots": 2, "waiting": 3, "grace": 5.0, "attest_rate": 100.0, "attest_burst": 100}
    values.update(policy)
    return Admission(Policy(**values), now=0.0)  # type: ignore[arg-type]


def _attested(gate: Admission[str], *keys: str, at: float = 0.0) -> None:
    """Bring `keys` to AWAITING (message 2 sent at `at`)."""
    for key in keys:
        assert gate.arrive(key, at).accepted
        gate.message1(key)
    assert gate.poll(at).admit == keys
    for key in keys:
        gate.attested(key, at)


def test_a_queued_peer_is_admitted_at_once_while_a_slot_is_free() -> None:
    gate = _gate()
    assert gate.arrive("a", 0.0).accepted and gate.phase("a") is Phase.HELLO
    assert gate.poll(0.0) == Decision()  # no message 1 yet: nothing to attest
    assert gate.message1("a")
    assert gate.poll(0.0) == Decision(admit=("a",))
    assert gate.phase("a") is Phase.ATTESTING


def test_waiting_peers_are_admitted_in_the_order_their_message_1_completed() -> None:
    gate = _gate(slots=1)
    for key in ("a", "b", "c"):
        gate.arrive(key, 0.0)
    for key in ("c", "a", "b"):
        gate.message1(key)
    assert gate.poll(0.0).admit == ("c",)
    gate.leave("c")
    assert gate.poll(0.1).admit == ("a",)
    gate.leave("a")
    assert gate.poll(0.2).admit == ("b",)


def test_the_longest_idle_after_message_2_makes_way_once_its_grace_is_over() -> None:
    gate = _gate(slots=2, grace=5.0)
    _attested(gate, "a", at=0.0)
    _attested(gate, "b", at=1.0)
    gate.arrive("h", 2.0)
    gate.message1("h")
    assert gate.poll(2.0) == Decision(wake_at=5.0)  # a's grace ends at 5 s: nobody is cut yet
    assert gate.poll(5.0) == Decision(admit=("h",), evict=("a",))
    assert gate.phase("a") is None and gate.phase("b") is Phase.AWAITING
    assert gate.attested("a", 5.0) is False  # the evicted task may still report: ignored


def test_nothing_is_evicted_while_nobody_waits() -> None:
    gate = _gate(slots=2, grace=0.0)
    _attested(gate, "a", "b")
    assert gate.poll(1000.0) == Decision()
    assert gate.counts()[Phase.AWAITING] == 2


def test_submitted_and_attesting_connections_are_never_evicted() -> None:
    gate = _gate(slots=2, grace=0.0)
    _attested(gate, "a")
    gate.submitted("a")
    gate.arrive("b", 0.0)
    gate.message1("b")
    assert gate.poll(0.0).admit == ("b",)  # b attesting, a submitted: both slots taken
    gate.arrive("h", 1.0)
    gate.message1("h")
    assert gate.poll(100.0) == Decision()
    gate.leave("a")
    assert gate.poll(100.0).admit == ("h",)


def test_a_newcomer_pushes_out_the_oldest_silent_peer_and_is_refused_only_behind_message_1(
) -> None:
    gate = _gate(slots=1, waiting=3)
    _attested(gate, "a")  # the one slot
    for key in ("s1", "w1", "s2"):
        assert gate.arrive(key, 0.0).accepted
    gate.message1("w1")
    assert gate.poll(0.0) == Decision(wake_at=5.0)  # w1 waits for a's grace to end
    arrival = gate.arrive("n1", 0.3)  # s1, w1, s2 hold the 3 places: s1 makes way
    assert arrival.accepted and arrival.evicted == ("s1",)
    arrival = gate.arrive("n2", 0.4)
    assert arrival.accepted and arrival.evicted == ("s2",)
    gate.message1("n1")
    gate.message1("n2")
    refused = gate.arrive("n3", 0.5)  # w1, n1, n2 all sent message 1: they keep their places
    assert not refused.accepted and refused.evicted == ()
    assert gate.phase("n3") is None and gate.queued == 3


def test_attestations_are_rationed_by_the_token_bucket() -> None:
    gate = _gate(slots=10, waiting=10, attest_rate=2.0, attest_burst=2)
    for key in "abcd":
        gate.arrive(key, 0.0)
        gate.message1(key)
    first = gate.poll(0.0)
    assert first.admit == ("a", "b") and first.wake_at == pytest.approx(0.5)
    assert gate.poll(0.25).admit == ()
    assert gate.poll(0.5).admit == ("c",)
    assert gate.poll(1.0).admit == ("d",)
    assert gate.poll(100.0) == Decision()  # the bucket refills to its burst, no further


def test_leaving_frees_the_right_pool_whatever_the_phase() -> None:
    gate = _gate(slots=1, waiting=1)
    _attested(gate, "a")
    gate.arrive("b", 0.0)
    gate.leave("b")  # a waiting place back
    assert gate.arrive("c", 0.0).accepted
    gate.leave("a")  # a slot back
    gate.message1("c")
    assert gate.poll(0.0).admit == ("c",)
    gate.leave("never-seen")  # no-op


def test_transitions_out_of_order_are_local_protocol_errors() -> None:
    gate = _gate()
    gate.arrive("a", 0.0)
    with pytest.raises(LocalProtocolError):
        gate.attested("a", 0.0)
    with pytest.raises(LocalProtocolError):
        gate.arrive("a", 0.0)
    assert gate.message1("gone") is False


def test_policy_refuses_nonsense() -> None:
    for bad in ({"slots": 0}, {"waiting": 0}, {"attest_burst": 0}, {"grace": -1.0},
                {"attest_rate": 0.0}):
        with pytest.raises(ValueError):
            Policy(**bad)  # type: ignore[arg-type]
