"""Holder identification (protocol.md §7 step 2) over OpenPGP and WebAuthn holders together."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from locksmith.core.bundle.checks import check_bundle
from locksmith.core.bundle.model import BundleV1, BundleV1Data, OpenPGPKey, WebAuthnKey
from locksmith.core.openpgp import signature as sigmod
from locksmith.core.openpgp.certs import Certificate
from locksmith.core.openpgp.holder_signature import (
    LOG_CLOCK_SKEW, LOG_INVALID_ARMOR, REJECT_CLOCK_SKEW, REJECT_MULTIPLE_HOLDERS,
    REJECT_NO_HOLDER, HolderSignatureError, armor_signature, verify_holder_signature,
)
from locksmith.core.openpgp.keys import SecretKey, encode_mpi
from locksmith.core.openpgp.signature import Signature, Subpacket, serialize_area
from locksmith.core.protocol.holders import BundleHolders, IdentifiedHolder
from tests.core.openpgp.gpgkit import (
    FIXTURE_CREATED, binding, fixture_secret, revocation, with_subkey_signatures,
)
from tests.core.protocol_kit import NOW, T0, fixture_quorum, generated_quorum

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


# --- indexed identification (finding F3) -----------------------------------------------------


def _custom_signature(holder_key: SecretKey, data: bytes, *, hashed: Sequence[Subpacket] = (),
                      unhashed: Sequence[Subpacket] = (), created: int = NOW) -> str:
    """A text signature over `data` by `holder_key` with exactly these issuer subpackets (the
    creation time is always there): what a client that names no issuer, or the wrong one,
    would send."""
    areas = serialize_area([Subpacket.creation_time(created), *hashed])
    unhashed_area = serialize_area(list(unhashed))
    draft = Signature(sigmod.TEXT, holder_key.public.algorithm, sigmod.SHA512, areas,
                      unhashed_area, b"\x00\x00", b"")
    digest = sigmod.signature_digest(draft, sigmod.document(data))
    private = holder_key.private
    assert isinstance(private, ed25519.Ed25519PrivateKey)
    raw = private.sign(digest)
    material = encode_mpi(raw[:32]) + encode_mpi(raw[32:])
    sig = Signature(sigmod.TEXT, holder_key.public.algorithm, sigmod.SHA512, areas,
                    unhashed_area, digest[:2], material)
    return armor_signature(sig).decode("ascii")


def _count_digests(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = sigmod.signature_digest

    def counting(sig: Signature, target: sigmod.HashInput) -> bytes:
        calls.append(len(target.data))
        return real(sig, target)

    monkeypatch.setattr(sigmod, "signature_digest", counting)
    return calls


def test_an_honest_signature_is_decided_by_its_issuer_with_one_digest(
        monkeypatch: pytest.MonkeyPatch) -> None:
    quorum = generated_quorum(3, 5)
    holders = BundleHolders.from_bundle(quorum.checked)
    holder = quorum.holders[3]
    signature = holder.sign(P).decode()
    calls = _count_digests(monkeypatch)
    screening = holders.screen(signature, P, NOW)
    assert not screening.needs_scan
    assert screening.outcome == IdentifiedHolder(3, holder.fingerprint)
    assert screening.tried == {holder.signing_key.public.fingerprint}
    assert calls == [len(P)]  # one canonicalisation and hash, whatever the holder count


def test_a_signature_without_issuer_subpackets_is_still_identified_by_the_scan(
        monkeypatch: pytest.MonkeyPatch) -> None:
    quorum = generated_quorum(3, 5)
    holders = BundleHolders.from_bundle(quorum.checked)
    holder = quorum.holders[2]
    signature = _custom_signature(holder.signing_key, P)
    calls = _count_digests(monkeypatch)
    screening = holders.screen(signature, P, NOW)
    assert screening.needs_scan and screening.tried == frozenset()
    assert holders.scan(screening) == IdentifiedHolder(2, holder.fingerprint)
    assert calls == [len(P)]  # the scan reuses the screen's digest
    assert verify_holder_signature(signature, P, quorum.checked.holders, NOW).index == 2


def test_a_misleading_issuer_falls_back_to_the_scan_and_finds_the_real_signer() -> None:
    quorum = generated_quorum(3, 5)
    holders = BundleHolders.from_bundle(quorum.checked)
    signer, named = quorum.holders[0], quorum.holders[4]
    signature = _custom_signature(signer.signing_key, P, unhashed=[
        Subpacket.issuer_key_id(named.signing_key.public.key_id)])
    screening = holders.screen(signature, P, NOW)
    assert screening.needs_scan and screening.tried == {named.signing_key.public.fingerprint}
    assert holders.scan(screening) == IdentifiedHolder(0, signer.fingerprint)


def test_a_wrong_digest_prefix_is_refused_without_any_key_check(
        monkeypatch: pytest.MonkeyPatch) -> None:
    quorum = generated_quorum(3, 5)
    holders = BundleHolders.from_bundle(quorum.checked)
    checked: list[bytes] = []
    monkeypatch.setattr("locksmith.core.protocol.holders.verifies_digest",
                        lambda key, sig, digest: bool(checked.append(key.fingerprint)))
    signature = quorum.holders[1].sign(P + b"x").decode()  # over other bytes
    screening = holders.screen(signature, P, NOW)
    assert isinstance(screening.outcome, HolderSignatureError)
    assert screening.outcome.reason == REJECT_NO_HOLDER and checked == []


def _identify(holders: BundleHolders, signature: str, data: bytes, now: int) -> object:
    try:
        return holders.identify(signature, data, now).index
    except HolderSignatureError as exc:
        return (exc.reason, exc.category)


def _reference(certs: Sequence[Certificate], signature: str, data: bytes, now: int) -> object:
    try:
        return verify_holder_signature(signature, data, certs, now).index
    except HolderSignatureError as exc:
        return (exc.reason, exc.category)


def test_indexed_identification_agrees_with_the_plain_reading_of_section_7() -> None:
    quorum = generated_quorum(3, 5)
    outsider = generated_quorum(2, 3).holders[0]
    alice = fixture_quorum().checked.holders[0]
    certs = (*quorum.checked.holders, alice, alice)  # Alice twice: "multiple holders"
    holders = BundleHolders(certs)
    h = quorum.holders
    signatures = [
        h[0].sign(P).decode(), h[4].sign(P, NOW + 61).decode(), h[2].sign(P, NOW + 60).decode(),
        h[1].sign(P + b" ").decode(), outsider.sign(P).decode(), _alice_signs(),
        _custom_signature(h[3].signing_key, P),
        _custom_signature(h[3].signing_key, P, created=NOW + 3600),
        _custom_signature(h[1].signing_key, P, hashed=[
            Subpacket.issuer_fingerprint(outsider.signing_key.public.fingerprint)]),
        _custom_signature(outsider.signing_key, P, unhashed=[
            Subpacket.issuer_key_id(h[2].signing_key.public.key_id)]),
        "", "not armor",
    ]
    for signature in signatures:
        for now in (NOW, T0 - 10**8):  # the second: before every key existed
            assert _identify(holders, signature, P, now) == _reference(certs, signature, P, now)
