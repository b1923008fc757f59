"""The provider's decision on one F3 (docs/forwarding.md §5.2 steps 4–7), with real documents
from simulated NSMs and real approvals signed by the bundle's holders: the first failing check
decides, each refusal has its documented text, and the secret is allowed only to the same
image or to a PCR set that `threshold` distinct holders approved."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from locksmith.core.attestation.nsm_simulated import SimulatedNsm
from locksmith.core.attestation.pcr_policy import TrustedHashes
from locksmith.core.attestation.verify import TrustAnchor
from locksmith.core.forwarding.approval import PcrSet
from locksmith.core.forwarding.binding import (
    RequesterKey, provider_binding, requester_binding,
)
from locksmith.core.forwarding.messages import Request
from locksmith.core.forwarding.provider import (
    NO_KEY, REQUESTER_BOUND_ELSEWHERE, RULE_SAME_PCRS, Allowed, Denied, judge_request,
    unsupported_version,
)
from tests.core.forwarding.approval_kit import DAY, NOW, SET_A, SET_B, approval_quorum

QUORUM = approval_quorum(2, 3)
NP = bytes(range(32))
R = RequesterKey.generate(random=lambda n: bytes([5]) * n).public_bytes()


class Fleet:
    """A simulated NSM directory (the provider's own image) and enclaves with other PCRs that
    share its CA, all attesting at the fixed time NOW."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.own = SimulatedNsm.open(directory, clock=lambda: NOW)
        self.anchor = TrustAnchor.from_pem((directory / "root.pem").read_bytes())
        hashes = TrustedHashes.from_json((directory / "trusted_hashes.json").read_bytes())
        self.own_pcrs = PcrSet.from_pcrs(hashes.pcrs)

    def enclave(self, pcrs: PcrSet | None = None) -> SimulatedNsm:
        overrides = None if pcrs is None else pcrs.as_pcrs()
        return SimulatedNsm.open(self.directory, clock=lambda: NOW, pcr_overrides=overrides)

    def document(self, pcrs: PcrSet | None = None, *, nonce: bytes = NP,
                 user_data: bytes | None = None, public_key: bytes | None = R) -> bytes:
        data = requester_binding(QUORUM.bundle_hash) if user_data is None else user_data
        return self.enclave(pcrs).attest(user_data=data, nonce=nonce, public_key=public_key)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    yield Fleet(tmp_path_factory.mktemp("fleet"))


def judge(fleet: Fleet, document: bytes, approvals: tuple[str, ...] = (), *,
          anchor: TrustAnchor | None = None, now: int = NOW, excluded: tuple[int, ...] = (),
          stored: Mapping[PcrSet, tuple[str, ...]] | None = None,
          asked: list[PcrSet] | None = None) -> Allowed | Denied:
    def lookup(pcrs: PcrSet) -> tuple[str, ...]:
        if asked is not None:
            asked.append(pcrs)
        return (stored or {}).get(pcrs, ())

    return judge_request(Request(document, approvals), anchor=anchor or fleet.anchor,
                         now_ms=now * 1000, provider_nonce=NP, bundle_hash=QUORUM.bundle_hash,
                         own_pcrs=fleet.own_pcrs, holders=QUORUM.holders,
                         threshold=QUORUM.threshold, excluded=excluded, stored=lookup)


# --- the rule (step 7) -----------------------------------------------------------------------


def test_the_same_image_is_allowed_by_rule_same_pcrs_with_its_attested_key(fleet: Fleet) -> None:
    decision = judge(fleet, fleet.document())
    assert isinstance(decision, Allowed)
    assert decision.rule == RULE_SAME_PCRS == "same-pcrs"
    assert decision.requester_public == R and decision.pcrs == fleet.own_pcrs
    assert decision.module_id.startswith("locksmith-sim-")


def test_the_same_image_is_allowed_whatever_approvals_it_carries(fleet: Fleet) -> None:
    decision = judge(fleet, fleet.document(), ("not an approval", "\x00" * 100))
    assert isinstance(decision, Allowed) and decision.rule == "same-pcrs"


def test_other_pcrs_without_approvals_are_refused_with_the_count(fleet: Fleet) -> None:
    decision = judge(fleet, fleet.document(SET_A))
    assert decision == Denied("Requester PCRs are not approved (0 of 2 holder approvals)",
                              decision.module_id, SET_A)
    assert decision.module_id is not None


def test_other_pcrs_approved_by_threshold_holders_are_allowed_naming_them(fleet: Fleet) -> None:
    approvals = (QUORUM.approve(2), QUORUM.approve(0))
    decision = judge(fleet, fleet.document(SET_A), approvals)
    assert isinstance(decision, Allowed)
    assert decision.rule == "approved by holders 0, 2" and decision.pcrs == SET_A
    assert decision.requester_public == R


def test_one_holder_approving_twice_is_one_approval(fleet: Fleet) -> None:
    approvals = (QUORUM.approve(1), QUORUM.approve(1, expires=NOW + 2 * DAY))
    decision = judge(fleet, fleet.document(SET_A), approvals)
    assert isinstance(decision, Denied)
    assert decision.reason == "Requester PCRs are not approved (1 of 2 holder approvals)"


def test_approvals_count_only_for_exactly_the_set_they_name(fleet: Fleet) -> None:
    approvals = (QUORUM.approve(0, SET_B), QUORUM.approve(1, SET_B), QUORUM.approve(2))
    decision = judge(fleet, fleet.document(SET_A), approvals)
    assert isinstance(decision, Denied)
    assert decision.reason == "Requester PCRs are not approved (1 of 2 holder approvals)"
    assert isinstance(judge(fleet, fleet.document(SET_B), approvals), Allowed)


def test_an_excluded_holder_approval_does_not_count(fleet: Fleet) -> None:
    approvals = (QUORUM.approve(0), QUORUM.approve(1))
    assert isinstance(judge(fleet, fleet.document(SET_A), approvals), Allowed)
    decision = judge(fleet, fleet.document(SET_A), approvals, excluded=(1,))
    assert isinstance(decision, Denied)
    assert decision.reason == "Requester PCRs are not approved (1 of 2 holder approvals)"


def test_expired_approvals_do_not_count_at_the_provider_time(fleet: Fleet) -> None:
    approvals = (QUORUM.approve(0, expires=NOW + 60), QUORUM.approve(1, expires=NOW + 60))
    assert isinstance(judge(fleet, fleet.document(SET_A), approvals, now=NOW + 59), Allowed)
    decision = judge(fleet, fleet.document(SET_A), approvals, now=NOW + 61)
    assert isinstance(decision, Denied) and "(0 of 2" in decision.reason


# --- stored approvals (pushed in A1, §4.4) counted with F3's ----------------------------------


def test_stored_approvals_alone_admit_a_requester_that_carries_none(fleet: Fleet) -> None:
    asked: list[PcrSet] = []
    decision = judge(fleet, fleet.document(SET_A),
                     stored={SET_A: (QUORUM.approve(0), QUORUM.approve(2))}, asked=asked)
    assert isinstance(decision, Allowed) and decision.rule == "approved by holders 0, 2"
    assert asked == [SET_A]  # only the requester's own set is looked up


def test_stored_and_presented_approvals_add_up_but_a_holder_counts_once(fleet: Fleet) -> None:
    stored = {SET_A: (QUORUM.approve(1),)}
    both = judge(fleet, fleet.document(SET_A), (QUORUM.approve(0),), stored=stored)
    assert isinstance(both, Allowed) and both.rule == "approved by holders 0, 1"
    same = judge(fleet, fleet.document(SET_A), (QUORUM.approve(1, expires=NOW + 2 * DAY),),
                 stored=stored)
    assert isinstance(same, Denied)
    assert same.reason == "Requester PCRs are not approved (1 of 2 holder approvals)"


def test_stored_approvals_are_judged_again_at_the_request(fleet: Fleet) -> None:
    """Expired since the push, or by a holder excluded: they no longer count."""
    stored = {SET_A: (QUORUM.approve(0, expires=NOW + 60), QUORUM.approve(1))}
    assert isinstance(judge(fleet, fleet.document(SET_A), stored=stored), Allowed)
    later = judge(fleet, fleet.document(SET_A), stored=stored, now=NOW + 60)
    assert isinstance(later, Denied) and "(1 of 2" in later.reason
    excluded = judge(fleet, fleet.document(SET_A), stored=stored, excluded=(1,))
    assert isinstance(excluded, Denied) and "(1 of 2" in excluded.reason


def test_the_store_is_not_consulted_for_the_same_image_or_a_rejected_document(
        fleet: Fleet) -> None:
    asked: list[PcrSet] = []
    assert isinstance(judge(fleet, fleet.document(), asked=asked), Allowed)
    assert isinstance(judge(fleet, fleet.document(SET_A, nonce=bytes(32)), asked=asked), Denied)
    assert asked == []


# --- the document (steps 4–6) ----------------------------------------------------------------


def test_a_document_for_another_nonce_is_rejected_before_anything_else(fleet: Fleet) -> None:
    approvals = (QUORUM.approve(0), QUORUM.approve(1))
    decision = judge(fleet, fleet.document(SET_A, nonce=bytes(32)), approvals)
    assert decision == Denied("Requester attestation rejected: nonce did not match", None, None)


def test_a_document_from_another_root_is_rejected(fleet: Fleet, tmp_path: Path) -> None:
    other = SimulatedNsm.open(tmp_path, clock=lambda: NOW, pcr_overrides=fleet.own_pcrs.as_pcrs())
    document = other.attest(user_data=requester_binding(QUORUM.bundle_hash), nonce=NP,
                            public_key=R)
    decision = judge(fleet, document)
    assert decision == Denied("Requester attestation rejected: certificate chain does not lead "
                              "to the trusted root", None, None)


def test_the_aws_root_refuses_a_simulated_document(fleet: Fleet) -> None:
    from locksmith.core.attestation.verify import aws_nitro_root
    decision = judge(fleet, fleet.document(), anchor=aws_nitro_root())
    assert isinstance(decision, Denied) and decision.module_id is None
    assert decision.reason.startswith("Requester attestation rejected: ")


def test_a_debug_mode_requester_is_refused_even_with_approvals(fleet: Fleet) -> None:
    debug = PcrSet(bytes(48), bytes(48), bytes(48))
    decision = judge(fleet, fleet.document(debug), (QUORUM.approve(0, debug),))
    assert decision == Denied("Requester attestation rejected: debug-mode enclave (all-zero "
                              "PCRs) refused", None, None)


def test_a_document_outside_its_certificate_validity_is_rejected(fleet: Fleet) -> None:
    decision = judge(fleet, fleet.document(), now=NOW + 4 * 3600)  # the leaf lives 3 hours
    assert isinstance(decision, Denied)
    assert decision.reason.startswith("Requester attestation rejected: certificate "
                                      "locksmith-sim-")
    assert "is not valid at" in decision.reason


def test_garbage_instead_of_a_document_is_rejected_as_malformed(fleet: Fleet) -> None:
    decision = judge(fleet, b"\xa0")
    assert isinstance(decision, Denied)
    assert decision.reason.startswith("Requester attestation rejected: malformed attestation "
                                      "document")


@pytest.mark.parametrize("user_data", [
    requester_binding(bytes(32)),  # made for another bundle
    provider_binding(QUORUM.bundle_hash, NP),  # a provider's document
    R,  # a 49504 document: user_data is a bare 32-byte key
    b"",
], ids=["other bundle", "provider binding", "49504 key", "empty"])
def test_a_document_bound_to_anything_but_ur_h_is_refused(fleet: Fleet, user_data: bytes) -> None:
    decision = judge(fleet, fleet.document(user_data=user_data))
    assert isinstance(decision, Denied) and decision.reason == REQUESTER_BOUND_ELSEWHERE
    assert decision.pcrs == fleet.own_pcrs and decision.module_id is not None


def test_a_49504_document_without_a_public_key_is_refused_on_its_binding(fleet: Fleet) -> None:
    decision = judge(fleet, fleet.document(user_data=R, public_key=None))
    assert isinstance(decision, Denied)
    assert decision.reason == "Requester attestation is bound to a different bundle"


@pytest.mark.parametrize("public_key", [None, b"", bytes(31), bytes(33), bytes(1024)],
                         ids=["absent", "empty", "31", "33", "1024"])
def test_a_document_without_a_32_byte_key_is_refused(fleet: Fleet,
                                                     public_key: bytes | None) -> None:
    decision = judge(fleet, fleet.document(public_key=public_key))
    assert isinstance(decision, Denied)
    assert decision.reason == NO_KEY == "Requester attestation carries no X25519 key"


def test_the_version_refusal_names_both_versions() -> None:
    assert unsupported_version(2) == "unsupported forwarding version 2 (this provider speaks 1)"
