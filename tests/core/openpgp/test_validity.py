"""formats.md §13: liveness and eligibility, on the fixtures, GnuPG-made holders, and
certificates edited with signature.py; PGPy as an independent judge of binding signatures."""

from __future__ import annotations

import dataclasses
import warnings

import pytest

from locksmith.core.openpgp import signature as sigmod
from locksmith.core.openpgp.certs import Certificate, Component, load_certificates
from locksmith.core.openpgp.keys import PublicKey
from locksmith.core.openpgp.packets import SIGNATURE, Packet
from locksmith.core.openpgp.signature import Signature, Subpacket
from locksmith.core.openpgp.validity import (
    DUPLICATE_HOLDER, SHARED_ENCRYPTION_KEY, PrimaryState, decryption_keys, eligibility,
    find_holder_conflict, is_live, key_material_id, live_keys, primary_expiration,
    primary_state,
    signing_candidates, storage_encryption_keys, structural_roles, valid_user_ids,
)
from tests.core.openpgp.gpgkit import (
    ALICE_FPR, BOB_FPR, DAY, FIXTURE_CREATED, Y2024, binding, fixture_certs, fixture_secret,
    gpg_cert, now, private_asc, revocation, with_direct_signatures, with_subkey_signatures,
)

ALL_ROLES = ("signing", "authentication", "storage-encryption")
SIGN, AUTH, ENCR = 0, 1, 2  # subkey indexes in the fixture certificates
T = FIXTURE_CREATED + 1000  # a time after the fixture's creation, used with edited certs
MID_2024 = Y2024 + 180 * DAY


def _pgpy_binding_ok(cert: Certificate, subkey_index: int) -> bool:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgpy

        key, _ = pgpy.PGPKey.from_blob(cert.serialize())
        keyid = cert.subkeys[subkey_index].key.key_id.hex().upper()
        return bool(key.verify(key.subkeys[keyid]))


def _alice_rebound(index: int, *, created: int = T, **kw: object) -> Certificate:
    """Alice with subkey `index`'s binding replaced by one made here (keyword args: `binding`)."""
    alice, _ = fixture_certs()
    packet = binding(fixture_secret("alice", 0), alice.subkeys[index].key, created=created,
                     **kw)  # type: ignore[arg-type]
    return with_subkey_signatures(alice, index, [packet])


def _sign_rebound(with_backsig: bool) -> Certificate:
    backsig = fixture_secret("alice", 1) if with_backsig else None
    return _alice_rebound(SIGN, flags=sigmod.FLAG_SIGN, backsig=backsig)


# --- eligible holders ------------------------------------------------------------------------


def test_fixture_holders_are_eligible_with_their_user_ids_as_display_names() -> None:
    alice, bob = fixture_certs()
    a, b = eligibility(alice, now()), eligibility(bob, now())
    assert a.eligible and b.eligible
    assert (a.fingerprint, a.display_name) == (ALICE_FPR, "Alice V0 public TEST KEY")
    assert (b.fingerprint, b.display_name) == (BOB_FPR, "Bob V0 public TEST KEY")
    assert a.primary is PrimaryState.LIVE and a.missing == ()


def test_fixture_key_flags_come_from_the_bindings() -> None:
    alice, _ = fixture_certs()
    flags = [(k.key.fingerprint_hex, k.flags, k.is_primary) for k in live_keys(alice, now())]
    assert flags == [
        (ALICE_FPR, sigmod.FLAG_CERTIFY, True),
        ("099BCA1940AA01D024F5CF9252EC0037158915C0", sigmod.FLAG_SIGN, False),
        ("2A1C9BD0E7BA5B27CB5803F88DA09680A6BC2A5C", sigmod.FLAG_AUTHENTICATE, False),
        ("F90C0ABA155C7EAAEA11C078955C403FFA5653A3", sigmod.FLAG_ENCRYPT_STORAGE, False),
    ]
    assert storage_encryption_keys(alice, now()) == [alice.subkeys[ENCR].key]
    assert decryption_keys(alice) == [alice.subkeys[ENCR].key]
    assert signing_candidates(alice, now(), now()) == [alice.subkeys[SIGN].key]
    assert structural_roles(alice) == frozenset(ALL_ROLES)


def test_nothing_is_live_before_the_keys_exist() -> None:
    alice, _ = fixture_certs()
    verdict = eligibility(alice, FIXTURE_CREATED - 1)
    assert verdict.primary is PrimaryState.NOT_YET_VALID and verdict.missing == ALL_ROLES
    assert verdict.display_name == ALICE_FPR  # no User ID is valid yet either


@pytest.mark.parametrize("name", ["full", "rsa", "sha1old"])
def test_gnupg_holders_are_eligible(name: str) -> None:
    cert = gpg_cert(name)
    verdict = eligibility(cert, now())
    assert verdict.eligible, verdict
    assert verdict.display_name == f"{name.title()} <{name}@test>"


@pytest.mark.parametrize("name", ["full", "rsa"])
def test_pgpy_agrees_the_gnupg_bindings_we_accept_are_valid(name: str) -> None:
    cert = gpg_cert(name)
    for index in range(3):
        assert is_live(cert, cert.subkeys[index].key, now())
        assert _pgpy_binding_ok(cert, index)


def test_pgpy_agrees_the_fixture_bindings_we_accept_are_valid() -> None:
    for cert in fixture_certs():
        for index in range(3):
            assert is_live(cert, cert.subkeys[index].key, now())
            assert _pgpy_binding_ok(cert, index)


def test_secret_material_makes_a_certificate_ineligible() -> None:
    (tsk,) = load_certificates(private_asc("alice"))
    verdict = eligibility(tsk, now())
    assert verdict.has_secret and verdict.missing == () and not verdict.eligible


# --- GnuPG-made ineligible holders ---------------------------------------------------------------


@pytest.mark.parametrize("name, missing", [
    ("nosign", ("signing",)),
    ("noauth", ("authentication",)),
    ("noencr", ("storage-encryption",)),
    ("sha1sub", ("storage-encryption",)),  # that subkey's binding is SHA-1 made after 2023-02-01
    ("subhard", ("storage-encryption",)),  # revoked as compromised
    ("subsoft", ("storage-encryption",)),  # revoked as superseded, in 2025
])
def test_gnupg_holders_missing_a_role_are_ineligible(name: str, missing: tuple[str, ...]) -> None:
    verdict = eligibility(gpg_cert(name), now())
    assert verdict.primary is PrimaryState.LIVE
    assert verdict.missing == missing and not verdict.eligible


def test_gnupg_primary_expired_by_quick_set_expire() -> None:
    cert = gpg_cert("primexp")
    assert eligibility(cert, Y2024 + DAY // 2).eligible
    verdict = eligibility(cert, now())
    assert verdict.primary is PrimaryState.EXPIRED and verdict.missing == ALL_ROLES


def test_gnupg_subkey_expired_by_quick_set_expire_still_decrypts() -> None:
    cert = gpg_cert("subexp")
    assert eligibility(cert, Y2024 + DAY // 2).eligible
    assert eligibility(cert, now()).missing == ("storage-encryption",)
    assert storage_encryption_keys(cert, now()) == []
    encr = [k for k in cert.subkeys if k.key.algorithm == 18][0].key
    assert decryption_keys(cert) == [encr]  # §13.5: expiry does not prevent decryption


def test_gnupg_key_created_with_a_past_expiry_is_expired() -> None:
    verdict = eligibility(gpg_cert("past"), now())
    assert verdict.primary is PrimaryState.EXPIRED and verdict.missing == ALL_ROLES


def test_gnupg_revocation_certificate_revokes_the_primary() -> None:
    cert = gpg_cert("revoked")
    verdict = eligibility(cert, now())
    assert verdict.primary is PrimaryState.REVOKED and verdict.missing == ALL_ROLES
    assert structural_roles(cert) == frozenset(ALL_ROLES)  # structure ignores revocation


def test_gnupg_subkey_revocation_reason_decides_from_when_it_applies() -> None:
    # Both revoked on 2025-01-01; in mid-2024 only the "superseded" one is still live.
    assert eligibility(gpg_cert("subsoft"), MID_2024).eligible
    assert eligibility(gpg_cert("subhard"), MID_2024).missing == ("storage-encryption",)


def test_gnupg_sha1_self_signatures_after_the_cutoff_leave_no_valid_binding() -> None:
    cert = gpg_cert("sha1new")
    assert primary_state(cert, now()) is PrimaryState.NO_VALID_SELF_SIGNATURE
    assert eligibility(cert, now()).missing == ALL_ROLES
    assert structural_roles(cert) == frozenset()


def test_forged_binding_with_a_flipped_signature_byte_is_rejected_as_by_pgpy() -> None:
    cert = gpg_cert("full")
    encr = [i for i, s in enumerate(cert.subkeys) if s.key.algorithm == 18][0]
    (packet,) = cert.subkeys[encr].signatures
    forged = Packet(SIGNATURE, packet.body[:-1] + bytes([packet.body[-1] ^ 0x01]))
    bad = with_subkey_signatures(cert, encr, [forged])
    assert eligibility(bad, now()).missing == ("storage-encryption",)
    assert not _pgpy_binding_ok(bad, encr)
    assert "storage-encryption" not in structural_roles(bad)


def test_binding_swapped_in_from_another_holder_is_rejected() -> None:
    alice, bob = fixture_certs()
    swapped = with_subkey_signatures(alice, AUTH, bob.subkeys[AUTH].signatures)
    assert eligibility(swapped, now()).missing == ("authentication",)


def test_gnupg_signing_subkey_without_its_back_signature_is_not_a_signing_key() -> None:
    cert = gpg_cert("full")
    sign = [i for i, s in enumerate(cert.subkeys)
            if live_keys(cert, now())[i + 1].flags & sigmod.FLAG_SIGN][0]
    sig = Signature.parse(cert.subkeys[sign].signatures[0].body)
    assert sig.embedded_signatures  # GnuPG puts the back-signature in the unhashed area
    unhashed = sigmod.serialize_area([s for s in sig.unhashed
                                      if s.type != sigmod.EMBEDDED_SIGNATURE])
    stripped = dataclasses.replace(sig, unhashed_area=unhashed)
    edited = with_subkey_signatures(cert, sign, [Packet(SIGNATURE, stripped.serialize())])
    assert eligibility(edited, now()).missing == ("signing",)


def test_signing_subkey_binding_made_without_back_signature_is_rejected() -> None:
    assert eligibility(_sign_rebound(with_backsig=True), now()).eligible
    verdict = eligibility(_sign_rebound(with_backsig=False), now())
    assert verdict.missing == ("signing",)


def test_back_signature_by_the_wrong_key_is_rejected() -> None:
    cert = _alice_rebound(SIGN, flags=sigmod.FLAG_SIGN, backsig=fixture_secret("alice", 2))
    assert eligibility(cert, now()).missing == ("signing",)


@pytest.mark.parametrize("extra, eligible", [
    (Subpacket(100, b"x", critical=True), False),
    (Subpacket(100, b"x", critical=False), True),
    (Subpacket.notation("organization-id@caution.co", b"org", critical=True), True),
    (Subpacket.notation("bundle-id@caution.co", b"b", critical=True), True),
    (Subpacket.notation("other@example.org", b"x", critical=True), False),
    (Subpacket.notation("other@example.org", b"x", critical=False), True),
])
def test_unknown_critical_subpackets_invalidate_a_binding(extra: Subpacket, eligible: bool) -> None:
    cert = _alice_rebound(ENCR, flags=sigmod.FLAG_ENCRYPT_STORAGE, extra=[extra])
    verdict = eligibility(cert, now())
    assert verdict.eligible is eligible
    assert verdict.missing == (() if eligible else ("storage-encryption",))


@pytest.mark.parametrize("hash_algorithm, created, eligible", [
    (sigmod.SHA1, 1675209600, False),  # 2023-02-01T00:00:00Z: on the cutoff, refused
    (sigmod.SHA1, T, False),
    (sigmod.SHA256, T, True),
    (sigmod.SHA224, T, True),
    (sigmod.SHA384, T, True),
])
def test_hash_policy_for_bindings(hash_algorithm: int, created: int, eligible: bool) -> None:
    cert = _alice_rebound(ENCR, created=created, flags=sigmod.FLAG_ENCRYPT_STORAGE,
                          hash_algorithm=hash_algorithm)
    assert eligibility(cert, now()).eligible is eligible


def test_transport_only_encryption_key_does_not_count_but_still_decrypts() -> None:
    transport = _alice_rebound(ENCR, flags=sigmod.FLAG_ENCRYPT_COMMUNICATIONS)
    assert eligibility(transport, now()).missing == ("storage-encryption",)
    assert decryption_keys(transport) == [transport.subkeys[ENCR].key]  # §13.5 fallback
    both = _alice_rebound(ENCR, flags=0x0C)
    assert eligibility(both, now()).eligible


def test_binding_without_key_flags_grants_nothing() -> None:
    alice, _ = fixture_certs()
    sig = sigmod.create(fixture_secret("alice", 0),
                        sigmod.subkey_binding(alice.primary, alice.subkeys[AUTH].key),
                        sigmod.SUBKEY_BINDING, created=T)
    cert = with_subkey_signatures(alice, AUTH, [Packet(SIGNATURE, sig.serialize())])
    assert eligibility(cert, now()).missing == ("authentication",)


def test_key_expiration_in_the_binding_counts_from_the_key_creation() -> None:
    cert = _alice_rebound(ENCR, flags=sigmod.FLAG_ENCRYPT_STORAGE, expiry=2000)
    assert is_live(cert, cert.subkeys[ENCR].key, FIXTURE_CREATED + 1999)
    assert not is_live(cert, cert.subkeys[ENCR].key, FIXTURE_CREATED + 2000)


def test_the_newest_binding_created_at_or_before_t_is_the_one_in_force() -> None:
    alice, _ = fixture_certs()
    newer = binding(fixture_secret("alice", 0), alice.subkeys[ENCR].key, created=T + 500,
                    flags=sigmod.FLAG_AUTHENTICATE)
    cert = with_subkey_signatures(alice, ENCR, [*alice.subkeys[ENCR].signatures, newer])
    key = cert.subkeys[ENCR].key
    def flags(at: int) -> list[int]:
        return [k.flags for k in live_keys(cert, at) if k.key == key]
    assert flags(T + 499) == [sigmod.FLAG_ENCRYPT_STORAGE]
    assert flags(T + 500) == [sigmod.FLAG_AUTHENTICATE]
    assert eligibility(cert, now()).missing == ("storage-encryption",)


@pytest.mark.parametrize("reason, live_before", [
    (sigmod.REASON_SUPERSEDED, True),
    (sigmod.REASON_RETIRED, True),
    (sigmod.REASON_COMPROMISED, False),
    (sigmod.REASON_NONE, False),
    (None, False),
])
def test_subkey_revocation_reason_semantics(reason: int | None, live_before: bool) -> None:
    alice, _ = fixture_certs()
    key = alice.subkeys[ENCR].key
    rev = revocation(fixture_secret("alice", 0), key, created=T, reason=reason)
    cert = with_subkey_signatures(alice, ENCR, [*alice.subkeys[ENCR].signatures, rev])
    assert is_live(cert, key, T - 1) is live_before
    assert not is_live(cert, key, T)
    assert decryption_keys(cert) == [key]  # time and revocation ignored for decryption


def test_soft_primary_revocation_applies_from_its_creation() -> None:
    alice, _ = fixture_certs()
    rev = revocation(fixture_secret("alice", 0), None, created=T, reason=sigmod.REASON_RETIRED)
    cert = with_direct_signatures(alice, [rev])
    assert primary_state(cert, T - 1) is PrimaryState.LIVE
    assert primary_state(cert, T) is PrimaryState.REVOKED
    assert live_keys(cert, T) == []  # a subkey is live only with its primary


def test_revocation_by_another_key_is_ignored() -> None:
    alice, _ = fixture_certs()
    bob_primary = fixture_secret("bob", 0)
    target = sigmod.subkey_binding(alice.primary, alice.subkeys[ENCR].key)
    sig = sigmod.create(bob_primary, target, sigmod.SUBKEY_REVOCATION, created=T)
    cert = with_subkey_signatures(alice, ENCR, [*alice.subkeys[ENCR].signatures,
                                                Packet(SIGNATURE, sig.serialize())])
    assert eligibility(cert, now()).eligible


def test_revoked_user_id_is_not_the_display_name() -> None:
    alice, _ = fixture_certs()
    uid = alice.user_ids[0]
    target = sigmod.certification(alice.primary, uid.packet.body)
    rev = sigmod.create(fixture_secret("alice", 0), target, sigmod.CERTIFICATION_REVOCATION,
                        created=T)
    comp = Component(uid.packet, uid.signatures + (Packet(SIGNATURE, rev.serialize()),))
    (cert,) = load_certificates(dataclasses.replace(alice, components=(comp,)).serialize())
    assert valid_user_ids(cert, T - 1) == ["Alice V0 public TEST KEY"]
    assert valid_user_ids(cert, T) == []
    assert eligibility(cert, now()).display_name == ALICE_FPR


# --- across holders ----------------------------------------------------------------------------


def test_duplicate_holder_is_reported_at_the_later_index() -> None:
    alice, bob = fixture_certs()
    assert find_holder_conflict([alice, bob], now()) is None
    conflict = find_holder_conflict([alice, bob, alice], now())
    assert conflict is not None
    assert (conflict.index, conflict.other, conflict.reason) == (2, 0, DUPLICATE_HOLDER)


def test_shared_encryption_point_is_detected_despite_other_creation_time_and_kdf() -> None:
    alice, bob = fixture_certs()
    point = alice.subkeys[ENCR].key.point
    assert point is not None
    twin = PublicKey.cv25519(point[1:], created=FIXTURE_CREATED + 5, kdf_hash=10, kdf_cipher=9)
    assert key_material_id(twin) == key_material_id(alice.subkeys[ENCR].key)
    assert twin.fingerprint != alice.subkeys[ENCR].key.fingerprint
    bob_packet = bob.subkeys[ENCR].packet
    edited = dataclasses.replace(bob, subkeys=bob.subkeys[:ENCR] + (dataclasses.replace(
        bob.subkeys[ENCR], key=twin, packet=Packet(bob_packet.tag, twin.body)),))
    packet = binding(fixture_secret("bob", 0), twin, created=T,
                     flags=sigmod.FLAG_ENCRYPT_STORAGE)
    bob2 = with_subkey_signatures(edited, ENCR, [packet])
    assert eligibility(bob2, now()).eligible
    conflict = find_holder_conflict([alice, bob2], now())
    assert conflict is not None
    assert (conflict.index, conflict.other, conflict.reason) == (1, 0, SHARED_ENCRYPTION_KEY)
    assert SHARED_ENCRYPTION_KEY == "holders must not share an encryption key"


def test_structural_roles_ignore_time_but_not_signatures() -> None:
    expired = gpg_cert("past")
    assert structural_roles(expired) == frozenset(ALL_ROLES)
    assert structural_roles(gpg_cert("noauth")) == frozenset({"signing", "storage-encryption"})
    assert structural_roles(_sign_rebound(with_backsig=False)) == frozenset(
        {"authentication", "storage-encryption"})


def test_primary_expiration_is_reported_even_once_expired() -> None:
    expiring = primary_expiration(gpg_cert("primexp"), now())
    assert expiring is not None and Y2024 + DAY <= expiring <= Y2024 + DAY + 300
    assert primary_expiration(gpg_cert("full"), now()) is None
    assert primary_expiration(fixture_certs()[0], now()) is None


def test_direct_key_signature_wins_a_tie_with_a_user_id_certification() -> None:
    alice, _ = fixture_certs()
    primary = fixture_secret("alice", 0)
    lifetime = T + 100 - FIXTURE_CREATED
    dk = sigmod.create(primary, sigmod.direct_key(alice.primary), sigmod.DIRECT_KEY, created=T,
                       hashed=[Subpacket.key_flags(1), Subpacket.key_expiration(lifetime)])
    uid = alice.user_ids[0]
    cert_sig = sigmod.create(primary, sigmod.certification(alice.primary, uid.packet.body),
                             sigmod.POSITIVE_CERTIFICATION, created=T,
                             hashed=[Subpacket.key_flags(1)])
    comp = Component(uid.packet, uid.signatures + (Packet(SIGNATURE, cert_sig.serialize()),))
    edited = dataclasses.replace(alice, components=(comp,))
    cert = with_direct_signatures(edited, [Packet(SIGNATURE, dk.serialize())])
    assert primary_state(cert, T + 99) is PrimaryState.LIVE
    assert primary_state(cert, T + 100) is PrimaryState.EXPIRED
    assert primary_expiration(cert, T) == T + 100


def test_binding_past_its_signature_expiration_is_not_in_force() -> None:
    cert = _alice_rebound(ENCR, flags=sigmod.FLAG_ENCRYPT_STORAGE,
                          extra=[Subpacket.signature_expiration(100)])
    key = cert.subkeys[ENCR].key
    assert is_live(cert, key, T + 99) and not is_live(cert, key, T + 100)


def test_verified_sha1_revocation_is_honoured() -> None:
    alice, _ = fixture_certs()
    key = alice.subkeys[ENCR].key
    rev = sigmod.create(fixture_secret("alice", 0), sigmod.subkey_binding(alice.primary, key),
                        sigmod.SUBKEY_REVOCATION, created=T, hash_algorithm=sigmod.SHA1)
    cert = with_subkey_signatures(alice, ENCR, [*alice.subkeys[ENCR].signatures,
                                                Packet(SIGNATURE, rev.serialize())])
    assert eligibility(cert, now()).missing == ("storage-encryption",)
