"""Holder identification (protocol.md §7 step 2) over OpenPGP and WebAuthn holders together."""

from __future__ import annotations

import pytest

from locksmith.core.bundle import BundleV1, BundleV1Data, OpenPGPKey, WebAuthnKey
from locksmith.core.bundle_checks import check_bundle
from locksmith.core.openpgp import signature as sigmod
from locksmith.core.openpgp.certs import Certificate
from locksmith.core.openpgp.holder_signature import (
    LOG_CLOCK_SKEW, LOG_INVALID_ARMOR, REJECT_CLOCK_SKEW, REJECT_MULTIPLE_HOLDERS,
    REJECT_NO_HOLDER, HolderSignatureError,
)
from locksmith.core.protocol_holders import BundleHolders, IdentifiedHolder
from tests.core.openpgp.gpgkit import (
    FIXTURE_CREATED, binding, fixture_secret, revocation, with_subkey_signatures,
)
from tests.core.protocol_kit import NOW, fixture_quorum, generated_quorum

P = b'{"encrypted_payload":"00","public_key":[]}'
G = FIXTURE_CREATED + 100  # the bundle's generation time for WebAuthn holders
ALICE_FPR = "930755D28A0F722225264690D92F1A9EE975CFE8"


def _alice() -> Certificate:
    return fixture_quorum().checked.holders[0]


def _alice_signs(created: int = NOW) -> str:
    return fixture_quorum().holders[0].sign(P, created).decode()


def _signing_subkey_expired_after_g() -> Certificate:
    """Alice with her signing subkey re-bound to expire at FIXTURE_CREATED + 1000 (< now)."""
    alice = _alice()
    rebound = binding(fixture_secret("alice", 0), alice.subkeys[0].key, created=FIXTURE_CREATED,
                      flags=sigmod.FLAG_SIGN, expiry=1000, backsig=fixture_secret("alice", 1))
    return with_subkey_signatures(alice, 0, [rebound])


def _reason(holders: BundleHolders, signature: str, now: int = NOW) -> HolderSignatureError:
    with pytest.raises(HolderSignatureError) as info:
        holders.identify(signature, P, now)
    return info.value


def test_openpgp_holders_are_identified_by_their_signing_key() -> None:
    holders = BundleHolders.from_bundle(fixture_quorum().checked)
    assert len(holders) == 2 and holders.fingerprints[0] == ALICE_FPR
    assert holders.identify(_alice_signs(), P, NOW) == IdentifiedHolder(0, ALICE_FPR)


def test_webauthn_key_live_at_generation_time_verifies_though_expired_now() -> None:
    cert = _signing_subkey_expired_after_g()
    as_openpgp = BundleHolders([cert])
    assert _reason(as_openpgp, _alice_signs()).reason == REJECT_NO_HOLDER  # §13.3: dead now
    as_webauthn = BundleHolders([cert], webauthn=[0], generation_time=G)
    assert as_webauthn.identify(_alice_signs(), P, NOW) == IdentifiedHolder(0, ALICE_FPR)


def test_webauthn_key_revoked_after_generation_time_does_not_verify() -> None:
    alice = _alice()
    revoked = with_subkey_signatures(alice, 0, [*alice.subkeys[0].signatures, revocation(
        fixture_secret("alice", 0), alice.subkeys[0].key, created=G + 10,
        reason=sigmod.REASON_SUPERSEDED)])
    holders = BundleHolders([revoked], webauthn=[0], generation_time=G)
    assert _reason(holders, _alice_signs()).reason == REJECT_NO_HOLDER


def test_webauthn_signature_more_than_60s_ahead_is_clock_skew() -> None:
    holders = BundleHolders([_alice()], webauthn=[0], generation_time=G)
    error = _reason(holders, _alice_signs(NOW + 61))
    assert (error.reason, error.category) == (REJECT_CLOCK_SKEW, LOG_CLOCK_SKEW)


def test_openpgp_and_webauthn_match_together_is_multiple_holders() -> None:
    alice = _alice()
    holders = BundleHolders([alice, alice], webauthn=[1], generation_time=G)
    assert _reason(holders, _alice_signs()).reason == REJECT_MULTIPLE_HOLDERS


def test_mixed_bundle_keeps_the_shape_rules() -> None:
    holders = BundleHolders([_alice(), _alice()], webauthn=[1], generation_time=G)
    error = _reason(holders, "-----BEGIN PGP SIGNATURE-----\n\nnope\n-----END PGP SIGNATURE-----\n")
    assert (error.reason, error.category) == (REJECT_NO_HOLDER, LOG_INVALID_ARMOR)


def test_v1_bundle_with_a_webauthn_entry_needs_the_generation_time() -> None:
    quorum = generated_quorum(2, 3, "V1")
    assert isinstance(quorum.checked.bundle, BundleV1)
    data = quorum.checked.bundle.data
    keyring = (WebAuthnKey(("credential",), data.keyring[0].cert), *data.keyring[1:])
    assert isinstance(keyring[1], OpenPGPKey)
    bundle = BundleV1(BundleV1Data(data.bundle_id, data.label, keyring, data.threshold, data.max,
                                   data.shardfile, data.public_key), b"\x01")
    checked = check_bundle(bundle)
    with pytest.raises(ValueError, match="generation time"):
        BundleHolders.from_bundle(checked)
    holders = BundleHolders.from_bundle(checked, generation_time=NOW - 10)
    for holder in (quorum.holders[0], quorum.holders[1]):  # WebAuthn, then OpenPGP
        signature = holder.sign(P).decode()
        assert holders.identify(signature, P, NOW) == IdentifiedHolder(holder.index,
                                                                        holder.fingerprint)


def test_webauthn_index_must_be_a_holder() -> None:
    with pytest.raises(ValueError):
        BundleHolders([_alice()], webauthn=[1], generation_time=G)
