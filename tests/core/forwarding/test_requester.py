"""The requester's decisions (docs/forwarding.md §6 steps 4, 5, 7) with real documents from
simulated NSMs, real approvals and real sealed secrets: a provider is accepted only with a fresh,
non-debug document bound to this exchange and bundle; only approvals naming this bundle and this
enclave's PCRs are presented; and only a secret whose quorum key is the bundle's is ever kept."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from locksmith.core.attestation.nsm_simulated import SimulatedNsm
from locksmith.core.attestation.pcr_policy import TrustedHashes
from locksmith.core.attestation.verify import TrustAnchor
from locksmith.core.forwarding.approval import PcrSet
from locksmith.core.forwarding.binding import (
    RequesterKey, provider_binding, requester_binding, seal_secret,
)
from locksmith.core.forwarding.messages import MAX_APPROVALS, Challenge, Forwarded
from locksmith.core.forwarding.requester import (
    REJECT_BINDING, BundleAltered, ProviderRejected, ProviderVerified, SecretMismatch,
    SecretReceived, SecretUnreadable, approvals_to_present, check_provider, receive_secret,
)
from locksmith.core.openpgp.certs import load_certificates
from locksmith.core.protocol.reconstitution import KeyCheck, check_recovered_key
from tests.core.forwarding.approval_kit import DAY, NOW, SET_A, SET_B, approval_quorum
from tests.core.protocol_kit import generated_quorum, tampered_public_key

QUORUM = approval_quorum(2, 3)
H = QUORUM.bundle_hash
NR = bytes(range(32))
NP = bytes(range(100, 132))
NOW_MS = NOW * 1000


class Fleet:
    """A simulated NSM directory and enclaves sharing its CA, attesting at NOW."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.nsm()  # creates the CA
        self.anchor = TrustAnchor.from_pem((directory / "root.pem").read_bytes())
        hashes = TrustedHashes.from_json((directory / "trusted_hashes.json").read_bytes())
        self.pcrs = PcrSet.from_pcrs(hashes.pcrs)

    def nsm(self, pcrs: PcrSet | None = None) -> SimulatedNsm:
        overrides = None if pcrs is None else pcrs.as_pcrs()
        return SimulatedNsm.open(self.directory, clock=lambda: NOW, pcr_overrides=overrides)

    def challenge(self, *, nonce: bytes = NR, user_data: bytes | None = None,
                  pcrs: PcrSet | None = None, np: bytes = NP) -> Challenge:
        data = provider_binding(H, np) if user_data is None else user_data
        return Challenge(np, self.nsm(pcrs).attest(user_data=data, nonce=nonce))


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    yield Fleet(tmp_path_factory.mktemp("fleet"))


def check(fleet: Fleet, challenge: Challenge, *, anchor: TrustAnchor | None = None,
          now_ms: int = NOW_MS) -> ProviderVerified:
    return check_provider(challenge, anchor=anchor or fleet.anchor, now_ms=now_ms,
                          requester_nonce=NR, bundle_hash=H)


# --- step 4: the provider's document -----------------------------------------------------------


def test_a_fresh_document_bound_to_this_exchange_names_the_provider_and_its_pcrs(
        fleet: Fleet) -> None:
    verified = check(fleet, fleet.challenge())
    assert verified.pcrs == fleet.pcrs and verified.module_id


def test_a_provider_with_other_pcrs_is_accepted_its_secret_decides(fleet: Fleet) -> None:
    assert check(fleet, fleet.challenge(pcrs=SET_B)).pcrs == SET_B


def test_a_document_for_another_nonce_is_refused(fleet: Fleet) -> None:
    with pytest.raises(ProviderRejected, match="^Provider attestation rejected: .*nonce"):
        check(fleet, fleet.challenge(nonce=bytes(32)))


@pytest.mark.parametrize("user_data", [
    provider_binding(bytes(32), NP),  # another bundle
    provider_binding(H, bytes(32)),  # another exchange's Np
    requester_binding(H),  # the other role's binding
    bytes(range(32)),  # a 49504 document: a bare X25519 key
    None,
])
def test_a_document_bound_to_anything_else_is_refused(fleet: Fleet,
                                                      user_data: bytes | None) -> None:
    document = fleet.nsm().attest(user_data=user_data, nonce=NR)
    with pytest.raises(ProviderRejected) as raised:
        check(fleet, Challenge(NP, document))
    assert str(raised.value) == REJECT_BINDING


def test_a_debug_mode_provider_is_refused(fleet: Fleet) -> None:
    with pytest.raises(ProviderRejected) as raised:
        check(fleet, fleet.challenge(pcrs=PcrSet(bytes(48), bytes(48), bytes(48))))
    assert str(raised.value) == ("Provider attestation rejected: debug-mode enclave (all-zero "
                                 "PCRs) refused")


def test_a_document_under_another_root_is_refused(fleet: Fleet, tmp_path: Path) -> None:
    other = Fleet(tmp_path / "other")
    with pytest.raises(ProviderRejected, match="^Provider attestation rejected: "):
        check(fleet, other.challenge())


def test_a_stale_document_is_refused(fleet: Fleet) -> None:
    with pytest.raises(ProviderRejected, match="^Provider attestation rejected: "):
        check(fleet, fleet.challenge(), now_ms=NOW_MS + 400 * DAY * 1000)


# --- step 5: which approvals to present --------------------------------------------------------


def test_only_approvals_of_this_bundle_and_exactly_these_pcrs_are_presented() -> None:
    mine = [QUORUM.approve(0, SET_A), QUORUM.approve(1, SET_A)]
    other_set = QUORUM.approve(2, SET_B)
    other_bundle = QUORUM.approve(2, SET_A).replace(H.hex(), "ab" * 32)
    texts = [other_set, mine[0], "not an approval", other_bundle, mine[1], mine[0]]
    assert approvals_to_present(texts, bundle_hash=H, own_pcrs=SET_A) == tuple(mine)
    assert approvals_to_present(texts, bundle_hash=H, own_pcrs=SET_B) == (other_set,)
    assert approvals_to_present(texts, bundle_hash=bytes(32), own_pcrs=SET_A) == ()


def test_expired_approvals_are_still_presented_the_provider_judges_them() -> None:
    expired = QUORUM.approve(0, SET_A, expires=NOW - DAY, created=NOW - 2 * DAY)
    assert approvals_to_present([expired], bundle_hash=H, own_pcrs=SET_A) == (expired,)


def test_at_most_254_approvals_are_presented() -> None:
    base = QUORUM.approve(0, SET_A)
    texts = [base + "\n" * i for i in range(MAX_APPROVALS + 3)]  # distinct texts, one statement
    assert len(approvals_to_present(texts, bundle_hash=H, own_pcrs=SET_A)) == MAX_APPROVALS


@settings(max_examples=50, deadline=None)
@given(st.lists(st.text(max_size=200), max_size=5))
def test_arbitrary_text_is_never_presented(texts: list[str]) -> None:
    assert approvals_to_present(texts, bundle_hash=H, own_pcrs=SET_A) == ()


# --- step 7: the secret ------------------------------------------------------------------------


SECRET = generated_quorum(2, 3, "V1").secret
PUBLIC_KEY = generated_quorum(2, 3, "V1").checked.quorum_certificate


def forwarded(secret: bytes, key: RequesterKey, *, nr: bytes = NR) -> Forwarded:
    e, c = seal_secret(secret, key.public_bytes(), bundle_hash=H, requester_nonce=nr,
                       provider_nonce=NP)
    return Forwarded(e, c)


def receive(key: RequesterKey, answer: Forwarded, public_key: object = PUBLIC_KEY) -> object:
    return receive_secret(key, answer, bundle_hash=H, requester_nonce=NR, provider_nonce=NP,
                          public_key=public_key)  # type: ignore[arg-type]


def test_the_bundles_own_secret_is_received() -> None:
    key = RequesterKey.generate()
    result = receive(key, forwarded(SECRET, key))
    assert isinstance(result, SecretReceived) and bytes(result.secret) == SECRET


def test_a_wrong_secret_fails_the_recovered_key_check() -> None:
    key = RequesterKey.generate()
    assert isinstance(receive(key, forwarded(bytes(range(32)), key)), SecretMismatch)


def test_a_bundle_key_with_a_foreign_subkey_stops_the_boot() -> None:
    key = RequesterKey.generate()
    tampered = load_certificates(tampered_public_key(SECRET))[0]
    assert isinstance(receive(key, forwarded(SECRET, key), tampered), BundleAltered)


@pytest.mark.parametrize("damage", ["other key", "other exchange", "flipped bit"])
def test_a_secret_that_does_not_open_for_this_exchange_is_unreadable(damage: str) -> None:
    key = RequesterKey.generate()
    if damage == "other key":
        answer = forwarded(SECRET, RequesterKey.generate())
    elif damage == "other exchange":
        answer = forwarded(SECRET, key, nr=bytes(32))
    else:
        good = forwarded(SECRET, key)
        answer = Forwarded(good.public_key, bytes([good.encrypted_secret[0] ^ 1])
                           + good.encrypted_secret[1:])
    assert isinstance(receive(key, answer), SecretUnreadable)


def test_the_recovered_key_check_is_the_rounds_check() -> None:
    assert check_recovered_key(SECRET, PUBLIC_KEY) is KeyCheck.MATCH
    assert check_recovered_key(bytes(32), PUBLIC_KEY) is KeyCheck.MISMATCH
    assert check_recovered_key(SECRET[:31], PUBLIC_KEY) is KeyCheck.MISMATCH
    tampered = load_certificates(tampered_public_key(SECRET))[0]
    assert check_recovered_key(SECRET, tampered) is KeyCheck.FOREIGN_SUBKEY
