"""keymaker.md §8.2: a V1 bundle's proof, verified at its own timestamp, with or without a policy.

Proofs come from the simulated NSM, whose root is trusted only when passed explicitly; the
failure texts are the spec's, one test per text.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest

from locksmith.core.attestation.nsm_simulated import SimulatedNsm
from locksmith.core.attestation.pcr_policy import PcrPolicy, PcrSet
from locksmith.core.attestation.verify import TrustAnchor
from locksmith.core.bundle.keymaker_proof import KeymakerProofError, verify_keymaker_proof
from locksmith.core.bundle.model import (
    NO_NECROPROOF,
    BundleError,
    BundleV1,
    BundleV1Data,
    OpenPGPKey,
)
from locksmith.core.canonical_cbor import bundle_hash, proof_nonce
from tests.core.test_canonical_cbor import DERIVED_DATA, DERIVED_HASH, DERIVED_NONCE

ZERO = bytes(48)
DATA = BundleV1Data(bundle_id=bytes(range(16)), label={"name": "proof test"},
                    keyring=(OpenPGPKey("A"), OpenPGPKey("B"), OpenPGPKey("C")),
                    threshold=2, max=3, shardfile="S", public_key="P")


@pytest.fixture(scope="module")
def nsm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("nsm")


@pytest.fixture(scope="module")
def nsm(nsm_dir: Path) -> SimulatedNsm:
    return SimulatedNsm.open(nsm_dir)


@pytest.fixture(scope="module")
def policy(nsm_dir: Path, nsm: SimulatedNsm) -> PcrPolicy:
    return PcrPolicy.from_json((nsm_dir / "keymaker-pcr-policy.json").read_bytes())


@pytest.fixture(scope="module")
def root(nsm_dir: Path, nsm: SimulatedNsm) -> TrustAnchor:
    return TrustAnchor.from_pem((nsm_dir / "root.pem").read_bytes())


def proofed(nsm: SimulatedNsm, data: BundleV1Data = DATA, **fields: bytes | None) -> BundleV1:
    digest = bundle_hash(data)
    request: dict[str, bytes | None] = {"user_data": digest, "nonce": proof_nonce(digest)}
    request.update(fields)
    return BundleV1(data, nsm.attest(**request))


def _fails(bundle: BundleV1, policy: PcrPolicy | None, root: TrustAnchor | None,
           **kwargs: bool) -> str:
    with pytest.raises(KeymakerProofError) as info:
        verify_keymaker_proof(bundle, policy, trust_root=root, **kwargs)
    return str(info.value)


def test_proof_over_the_bundle_hash_is_accepted_by_the_first_matching_set(
        nsm: SimulatedNsm, policy: PcrPolicy, root: TrustAnchor) -> None:
    bundle = proofed(nsm)
    result = verify_keymaker_proof(bundle, policy, trust_root=root)
    assert result.set_index == 0
    assert result.bundle_hash == bundle_hash(DATA) == result.attestation.user_data
    assert result.nonce == proof_nonce(result.bundle_hash) == result.attestation.nonce
    assert abs(result.generated_ms - time.time() * 1000) < 60_000


def test_spec_vectors_hash_and_nonce_of_the_derived_example(
        nsm: SimulatedNsm, root: TrustAnchor) -> None:
    result = verify_keymaker_proof(proofed(nsm, DERIVED_DATA), None, trust_root=root)
    assert result.bundle_hash.hex() == DERIVED_HASH
    assert result.nonce.hex() == DERIVED_NONCE


def test_proof_is_verified_at_its_own_timestamp_long_after_the_leaf_expired(
        tmp_path: Path) -> None:
    then = time.time() - 30 * 86400  # the 3-hour leaf expired four weeks ago
    old_nsm = SimulatedNsm.open(tmp_path, clock=lambda: then)
    policy = PcrPolicy.from_json((tmp_path / "keymaker-pcr-policy.json").read_bytes())
    root = TrustAnchor.from_pem((tmp_path / "root.pem").read_bytes())
    result = verify_keymaker_proof(proofed(old_nsm), policy, trust_root=root)
    assert result.generated_ms == int(then * 1000)


def test_a_later_set_matches_when_the_first_does_not(
        nsm: SimulatedNsm, policy: PcrPolicy, root: TrustAnchor) -> None:
    other = PcrSet({0: b"\x01" * 48, 1: b"\x02" * 48, 2: b"\x03" * 48})
    result = verify_keymaker_proof(proofed(nsm), PcrPolicy((other, *policy.sets)),
                                   trust_root=root)
    assert result.set_index == 1


def test_no_matching_set_lists_every_set_with_its_reason(
        nsm: SimulatedNsm, policy: PcrPolicy, root: TrustAnchor) -> None:
    good = policy.sets[0]
    other = PcrSet({**good.pcrs, 0: b"\x01" * 48})
    debug = PcrSet({0: ZERO, 1: ZERO, 2: ZERO})
    text = _fails(proofed(nsm), PcrPolicy((other, debug)), root)
    assert text == (
        "keymaker necroproof did not match any PCR set valid at the necroproof timestamp "
        f"(2 attempts): set 0: PCR0 mismatch (expected {'01' * 48}, got {good.pcrs[0].hex()}); "
        "set 1: debug-mode PCRs are not accepted")


def test_a_set_that_expired_before_the_proof_was_made_does_not_match(
        nsm: SimulatedNsm, policy: PcrPolicy, root: TrustAnchor) -> None:
    expired = dataclasses.replace(policy.sets[0], expires_at_unix_seconds=1_700_000_000)
    text = _fails(proofed(nsm), PcrPolicy((expired,)), root)
    assert text.endswith("(1 attempts): set 0: PCR policy expired at Unix second 1700000000")
    later = dataclasses.replace(policy.sets[0], expires_at_unix_seconds=int(time.time()) + 3600)
    assert verify_keymaker_proof(proofed(nsm), PcrPolicy((later,)), trust_root=root).set_index == 0


def test_user_data_must_be_the_bundle_hash(nsm: SimulatedNsm, policy: PcrPolicy,
                                           root: TrustAnchor) -> None:
    wrong = proofed(nsm, user_data=bytes(32))
    assert _fails(wrong, policy, root).endswith(
        "set 0: keymaker necroproof user data did not match the quorum bundle hash")
    assert _fails(wrong, None, root) == (
        "keymaker necroproof is invalid: keymaker necroproof user data did not match the "
        "quorum bundle hash")


def test_user_data_must_be_present(nsm: SimulatedNsm, policy: PcrPolicy, root: TrustAnchor) -> None:
    assert _fails(proofed(nsm, user_data=None), policy, root).endswith(
        "set 0: keymaker necroproof document does not contain bytes user_data")


def test_nonce_must_be_the_proof_nonce(nsm: SimulatedNsm, policy: PcrPolicy,
                                       root: TrustAnchor) -> None:
    assert _fails(proofed(nsm, nonce=bytes(32)), policy, root).endswith("set 0: nonce did not match")


@pytest.mark.parametrize("change", [
    {"label": {"name": "other"}}, {"threshold": 1},
    {"keyring": (OpenPGPKey("B"), OpenPGPKey("A"), OpenPGPKey("C"))}, {"shardfile": "T"},
])
def test_any_change_to_the_data_breaks_the_proof(nsm: SimulatedNsm, policy: PcrPolicy,
                                                 root: TrustAnchor, change: dict) -> None:
    original = proofed(nsm)
    tampered = BundleV1(dataclasses.replace(DATA, **change), original.necroproof)
    assert _fails(tampered, policy, root).endswith("set 0: nonce did not match")
    assert _fails(tampered, None, root) == "keymaker necroproof is invalid: nonce did not match"


def test_without_a_policy_everything_but_the_pcrs_is_checked(
        nsm: SimulatedNsm, root: TrustAnchor) -> None:
    bundle = proofed(nsm)
    assert verify_keymaker_proof(bundle, None, trust_root=root).set_index is None
    assert _fails(bundle, None, None) == (
        "keymaker necroproof is invalid: certificate chain does not lead to the trusted root")


def test_a_simulated_proof_never_verifies_under_the_default_aws_root(
        nsm: SimulatedNsm, policy: PcrPolicy) -> None:
    assert _fails(proofed(nsm), policy, None).endswith(
        "set 0: certificate chain does not lead to the trusted root")


def test_debug_keymaker_proofs_need_allow_debug(tmp_path: Path) -> None:
    debug_nsm = SimulatedNsm.open(tmp_path, pcr_overrides={0: ZERO, 1: ZERO, 2: ZERO})
    root = TrustAnchor.from_pem((tmp_path / "root.pem").read_bytes())
    bundle = proofed(debug_nsm)
    assert _fails(bundle, None, root) == (
        "keymaker necroproof is invalid: debug-mode enclave (all-zero PCRs) refused")
    assert verify_keymaker_proof(bundle, None, trust_root=root, allow_debug=True).attestation.is_debug
    debug_policy = PcrPolicy((PcrSet({0: ZERO, 1: ZERO, 2: ZERO}),))
    assert _fails(bundle, debug_policy, root).endswith("set 0: debug-mode PCRs are not accepted")
    assert verify_keymaker_proof(bundle, debug_policy, trust_root=root,
                                 allow_debug=True).set_index == 0


def test_an_empty_necroproof_is_refused_with_the_reference_text() -> None:
    with pytest.raises(BundleError, match=f"^{NO_NECROPROOF}$"):
        BundleV1(DATA, b"")
