"""Holders' detached signatures over P (protocol.md §6, §7 step 2), with GnuPG and Sequoia."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from locksmith.core.openpgp import armor, packets
from locksmith.core.openpgp import signature as sigmod
from locksmith.core.openpgp.certs import Certificate
from locksmith.core.openpgp.holder_signature import (
    LOG_CLOCK_SKEW, LOG_INVALID_ARMOR, LOG_INVALID_COUNT, REJECT_CLOCK_SKEW,
    REJECT_MULTIPLE_HOLDERS, REJECT_NO_HOLDER, HolderSignatureError, armor_signature,
    parse_holder_signature, prepare_detached_text, sign_detached_text, verify_holder_signature,
)
from locksmith.core.openpgp.signature import Signature, Subpacket
from tests.core.openpgp.gpgkit import (
    ALICE_FPR, FIXTURE_CREATED, binding, fixture_certs, fixture_secret, now, private_asc,
    revocation, with_subkey_signatures,
)
from tests.oracles import gpg_home, sq

P = b'{"encrypted_payload":"e967dad6","public_key":[15,170,104,78]}'
SIGN = 0


def _alice_signs(data: bytes = P, created: int | None = None, **kw: object) -> bytes:
    when = now() if created is None else created
    sig = sigmod.create(fixture_secret("alice", 1), sigmod.document(data), sigmod.TEXT,
                        created=when, **kw)  # type: ignore[arg-type]
    return armor_signature(sig)


def _rejected(sig: bytes | str, holders: list[Certificate | None], at: int,
              data: bytes = P) -> HolderSignatureError:
    with pytest.raises(HolderSignatureError) as info:
        verify_holder_signature(sig, data, holders, at)
    return info.value


def _files(tmp: Path, data: bytes, sig: bytes) -> tuple[str, str]:
    (tmp / "p.json").write_bytes(data)
    (tmp / "p.json.asc").write_bytes(sig)
    return str(tmp / "p.json.asc"), str(tmp / "p.json")


# --- what we write ------------------------------------------------------------------------------


def test_sign_detached_text_writes_protocol_6_signature() -> None:
    created = now()
    armored = sign_detached_text(fixture_secret("alice", 1), P, created)
    assert armored.startswith(b"-----BEGIN PGP SIGNATURE-----\n\n")
    (packet,) = packets.parse_packets(armor.dearmor_one(armored, "SIGNATURE"))
    sig = Signature.parse(packet.body)
    assert (sig.sig_type, sig.hash_algorithm, sig.created) == (sigmod.TEXT, sigmod.SHA512, created)
    assert [s.type for s in sig.hashed] == [sigmod.CREATION_TIME, sigmod.ISSUER_FINGERPRINT]
    assert [s.type for s in sig.unhashed] == [sigmod.ISSUER_KEY_ID]
    alice, _ = fixture_certs()
    assert sig.issuer_fingerprint == alice.subkeys[SIGN].key.fingerprint


@pytest.mark.parametrize("data", [P, b"two\nlines\r\nand a bare\rCR\n"])
def test_gpg_verify_accepts_our_detached_text_signature(data: bytes) -> None:
    alice, _ = fixture_certs()
    with gpg_home() as gpg, tempfile.TemporaryDirectory() as tmp:
        gpg.import_(alice.serialize())
        sig_path, data_path = _files(Path(tmp), data, sign_detached_text(
            fixture_secret("alice", 1), data, now()))
        out = gpg.run("--verify", sig_path, data_path, status=True, check=False)
    assert out.returncode == 0, out.stderr
    assert f"VALIDSIG {alice.subkeys[SIGN].key.fingerprint_hex}".encode() in out.status


def test_card_path_prepare_then_finish_gives_a_verifying_signature() -> None:
    secret = fixture_secret("alice", 1)
    prepared = prepare_detached_text(secret.public, P, now())
    raw = secret.private.sign(prepared.digest)  # type: ignore[union-attr, call-arg]
    armored = armor_signature(prepared.finish([raw[:32], raw[32:]]))
    assert verify_holder_signature(armored, P, list(fixture_certs()), now()).index == 0


# --- accepted -----------------------------------------------------------------------------------


def test_our_signature_identifies_the_holder_and_key() -> None:
    alice, bob = fixture_certs()
    match = verify_holder_signature(_alice_signs(), P, [bob, alice], now())
    assert match.index == 1 and match.certificate == alice
    assert match.key == alice.subkeys[SIGN].key
    assert verify_holder_signature(_alice_signs().decode(), P, [None, bob, alice], now()).index == 2


def test_gpg_detach_sign_textmode_is_accepted() -> None:
    with gpg_home() as gpg, tempfile.TemporaryDirectory() as tmp:
        gpg.import_(private_asc("alice"))
        (Path(tmp) / "p.json").write_bytes(P)
        sig = gpg.run("--local-user", ALICE_FPR, "--armor", "--textmode", "--detach-sign",
                      "--output", "-", str(Path(tmp) / "p.json")).stdout
    assert parse_holder_signature(sig).sig_type == sigmod.TEXT
    alice, bob = fixture_certs()
    assert verify_holder_signature(sig, P, [alice, bob], now()).index == 0


def test_sq_sign_detached_is_accepted() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        key = Path(tmp) / "bob.asc"
        key.write_bytes(private_asc("bob"))
        (Path(tmp) / "p.json").write_bytes(P)
        out = sq("sign", "--detached", "--signer-key", str(key), str(Path(tmp) / "p.json"))
    sig = parse_holder_signature(out.stdout)
    assert sig.sig_type == sigmod.BINARY and sig.notations  # Sequoia's salt notation
    alice, bob = fixture_certs()
    assert verify_holder_signature(out.stdout, P, [alice, bob], now()).index == 1


@pytest.mark.parametrize("hash_algorithm", [sigmod.SHA256, sigmod.SHA384, sigmod.SHA512])
def test_accepted_hashes(hash_algorithm: int) -> None:
    sig = _alice_signs(hash_algorithm=hash_algorithm)
    assert verify_holder_signature(sig, P, list(fixture_certs()), now()).index == 0


def test_sixty_seconds_ahead_is_still_accepted() -> None:
    t = now()
    assert verify_holder_signature(_alice_signs(created=t + 60), P, list(fixture_certs()), t)


# --- rejected -----------------------------------------------------------------------------------


def test_signature_by_a_key_outside_the_holders_is_rejected() -> None:
    _, bob = fixture_certs()
    assert _rejected(_alice_signs(), [bob], now()).reason == REJECT_NO_HOLDER


def test_signature_over_other_data_is_rejected() -> None:
    assert _rejected(_alice_signs(), list(fixture_certs()), now(), data=P + b" ").reason == \
        REJECT_NO_HOLDER


def test_more_than_sixty_seconds_ahead_is_a_clock_skew_failure() -> None:
    t = now()
    error = _rejected(_alice_signs(created=t + 61), list(fixture_certs()), t)
    assert (error.reason, error.category) == (REJECT_CLOCK_SKEW, LOG_CLOCK_SKEW)
    assert str(error) == ("Signature is more than 60 seconds ahead of the enclave clock; "
                          "check signer and enclave clocks")


def test_two_signature_packets_are_rejected() -> None:
    one = armor.dearmor_one(_alice_signs())
    doubled = armor.armor("SIGNATURE", one + one).encode()
    error = _rejected(doubled, list(fixture_certs()), now())
    assert (error.reason, error.category) == (REJECT_NO_HOLDER, LOG_INVALID_COUNT)
    two_blocks = _alice_signs() + _alice_signs()
    assert _rejected(two_blocks, list(fixture_certs()), now()).category == LOG_INVALID_COUNT


def test_malformed_armor_is_rejected() -> None:
    lines = _alice_signs().split(b"\n")
    lines[2] = lines[2][:10] + (b"B" if lines[2][10:11] != b"B" else b"C") + lines[2][11:]
    error = _rejected(b"\n".join(lines), list(fixture_certs()), now())  # CRC-24 mismatch
    assert (error.reason, error.category) == (REJECT_NO_HOLDER, LOG_INVALID_ARMOR)
    assert _rejected(b"not armor", list(fixture_certs()), now()).reason == REJECT_NO_HOLDER


@pytest.mark.parametrize("hash_algorithm", [sigmod.SHA1, sigmod.SHA224])
def test_other_hashes_are_rejected(hash_algorithm: int) -> None:
    sig = _alice_signs(hash_algorithm=hash_algorithm)
    assert _rejected(sig, list(fixture_certs()), now()).reason == REJECT_NO_HOLDER


def test_unknown_critical_subpacket_is_rejected() -> None:
    sig = _alice_signs(hashed=[Subpacket(100, b"x", critical=True)])
    assert _rejected(sig, list(fixture_certs()), now()).reason == REJECT_NO_HOLDER


def test_non_document_signature_type_is_rejected() -> None:
    alice, _ = fixture_certs()
    target = sigmod.subkey_binding(alice.primary, alice.subkeys[SIGN].key)
    sig = sigmod.create(fixture_secret("alice", 1), target, sigmod.PRIMARY_KEY_BINDING,
                        created=now())
    assert _rejected(armor_signature(sig), [alice], now()).reason == REJECT_NO_HOLDER


def test_same_holder_twice_matches_multiple_holders() -> None:
    alice, _ = fixture_certs()
    assert _rejected(_alice_signs(), [alice, alice], now()).reason == REJECT_MULTIPLE_HOLDERS


def test_key_not_yet_existing_at_s_is_no_candidate() -> None:
    sig = _alice_signs(created=FIXTURE_CREATED - 10)
    assert _rejected(sig, list(fixture_certs()), now()).reason == REJECT_NO_HOLDER


def test_key_expired_now_cannot_sign_even_with_s_before_expiry() -> None:
    alice, _ = fixture_certs()
    packet = binding(fixture_secret("alice", 0), alice.subkeys[SIGN].key, created=FIXTURE_CREATED,
                     flags=sigmod.FLAG_SIGN, expiry=1000, backsig=fixture_secret("alice", 1))
    expiring = with_subkey_signatures(alice, SIGN, [packet])
    sig = _alice_signs(created=FIXTURE_CREATED + 100)
    assert verify_holder_signature(sig, P, [expiring], FIXTURE_CREATED + 500).index == 0
    assert _rejected(sig, [expiring], FIXTURE_CREATED + 1000).reason == REJECT_NO_HOLDER
    assert _rejected(sig, [expiring], now()).reason == REJECT_NO_HOLDER


@pytest.mark.parametrize("reason", [sigmod.REASON_SUPERSEDED, sigmod.REASON_COMPROMISED])
def test_revoked_signing_key_and_backdated_signatures(reason: int) -> None:
    alice, _ = fixture_certs()
    revoked_at = FIXTURE_CREATED + 1000
    rev = revocation(fixture_secret("alice", 0), alice.subkeys[SIGN].key, created=revoked_at,
                     reason=reason)
    cert = with_subkey_signatures(alice, SIGN, [*alice.subkeys[SIGN].signatures, rev])
    after, backdated = _alice_signs(created=revoked_at + 10), _alice_signs(created=revoked_at - 10)
    assert _rejected(after, [cert], revoked_at + 20).reason == REJECT_NO_HOLDER  # dead at S
    assert _rejected(backdated, [cert], now()).reason == REJECT_NO_HOLDER  # dead now
    if reason == sigmod.REASON_SUPERSEDED:  # soft: before the revocation the key was fine
        assert verify_holder_signature(backdated, P, [cert], revoked_at - 5).index == 0
    else:  # hard: never
        assert _rejected(backdated, [cert], revoked_at - 5).reason == REJECT_NO_HOLDER


def test_signature_text_with_a_lone_surrogate_is_rejected() -> None:
    error = _rejected(_alice_signs().decode() + "\ud800", list(fixture_certs()), now())
    assert (error.reason, error.category) == (REJECT_NO_HOLDER, LOG_INVALID_ARMOR)
