"""Secret keys of a private keyring (formats.md §11) and holder matching (cli.md §5.2 step 3)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa, x25519

from locksmith.core.openpgp.certs import load_certificates
from locksmith.core.openpgp.keys import PublicKey
from locksmith.core.openpgp.packets import SECRET_KEY, Packet
from locksmith.core.openpgp.secretkeys import (
    ARGON2_AEAD_REFUSAL, OTHER_PROTECTION_REFUSAL, PassphraseRequired, Protection,
    SecretKeyError, UnsupportedProtection, WrongPassphrase, load_secret_keys, match_holder,
    normalise_fingerprint,
)
from tests.core.openpgp.gpgkit import (
    ALICE_FPR, BOB_FPR, fixture_certs, gpg_cert, gpg_export, now, private_asc,
)


def _with_secret_part(secret: bytes) -> bytes:
    """Alice's primary as a secret key packet with the given secret part."""
    alice, _ = fixture_certs()
    return Packet(SECRET_KEY, alice.primary.body + secret).serialize()


def test_unprotected_fixture_keys_unlock_without_a_passphrase() -> None:
    ring = load_secret_keys(private_asc("alice"))
    assert [k.protection for k in ring.keys] == [Protection.NONE] * 4
    assert {k.primary_fingerprint for k in ring.keys} == {ALICE_FPR}
    keys = [k.unlock() for k in ring.keys]
    assert all(isinstance(k.private, ed25519.Ed25519PrivateKey) for k in keys[:3])
    assert isinstance(keys[3].private, x25519.X25519PrivateKey)
    alice, _ = fixture_certs()
    assert [k.public for k in keys] == list(alice.keys())


def test_several_keys_in_one_file_armored_or_binary() -> None:
    both = private_asc("alice") + private_asc("bob")
    ring = load_secret_keys(both)
    assert len(ring.keys) == 8
    assert len(ring.for_primary(BOB_FPR.lower())) == 4
    binary = b"".join(c.secret_packets[k.fingerprint].serialize()
                      for c in load_certificates(both) for k in c.keys())
    assert [k.fingerprint for k in load_secret_keys(binary).keys] == [
        k.fingerprint for k in ring.keys]


def test_public_keyring_has_no_secret_keys() -> None:
    alice, _ = fixture_certs()
    assert load_secret_keys(alice.serialize()).keys == ()


def test_corrupt_checksum_of_an_unprotected_key_is_refused() -> None:
    ring = load_secret_keys(private_asc("alice"))
    packet = ring.keys[0].packet
    broken = Packet(packet.tag, packet.body[:-1] + bytes([packet.body[-1] ^ 1]))
    with pytest.raises(SecretKeyError, match="checksum"):
        load_secret_keys(broken.serialize()).keys[0].unlock()


def test_passphrase_protected_gnupg_export_unlocks_with_the_right_passphrase() -> None:
    data = gpg_export("locked", "--export-secret-keys", passphrase="secret")
    ring = load_secret_keys(data)
    assert len(ring.keys) == 4
    assert all(k.needs_passphrase for k in ring.keys)
    assert all(k.protection is Protection.ITERATED_SALTED for k in ring.keys)
    cert = gpg_cert("locked")
    assert [k.unlock("secret").public for k in ring.keys] == list(cert.keys())
    with pytest.raises(WrongPassphrase):
        ring.keys[0].unlock("Secret")
    with pytest.raises(PassphraseRequired):
        ring.keys[0].unlock()


def test_unprotected_rsa_export_unlocks_to_rsa_keys() -> None:
    data = gpg_export("rsa", "--export-secret-keys")
    ring = load_secret_keys(data)
    assert all(isinstance(k.unlock().private, rsa.RSAPrivateKey) for k in ring.keys)


ARGON2 = bytes([254, 9, 4]) + b"\x11" * 16 + bytes([1, 4, 16]) + b"\x22" * 16 + b"\x33" * 40
AEAD = bytes([253, 9, 2, 3, 8]) + b"\x11" * 8 + bytes([0x60]) + b"\x22" * 15 + b"\x33" * 40


@pytest.mark.parametrize("secret, text", [
    (ARGON2, ARGON2_AEAD_REFUSAL),  # usage 254, S2K type 4 (Argon2)
    (AEAD, ARGON2_AEAD_REFUSAL),  # usage 253 (AEAD), iterated+salted S2K
    (bytes([255, 9, 3, 8]) + b"\x11" * 8 + bytes([0x60]) + b"\x22" * 56, OTHER_PROTECTION_REFUSAL),
    (bytes([254, 9, 0, 8]) + b"\x22" * 56, OTHER_PROTECTION_REFUSAL),  # simple S2K
    (bytes([254, 9, 1, 8]) + b"\x11" * 8 + b"\x22" * 56, OTHER_PROTECTION_REFUSAL),  # salted
    (bytes([9]) + b"\x22" * 56, OTHER_PROTECTION_REFUSAL),  # a cipher octet as usage
    (bytes([254, 3, 3, 8]) + b"\x11" * 8 + bytes([0x60]) + b"\x22" * 48,
     OTHER_PROTECTION_REFUSAL),  # iterated+salted, but CAST5
])
def test_unsupported_protection_is_refused_with_the_exact_text(secret: bytes, text: str) -> None:
    (key,) = load_secret_keys(_with_secret_part(secret)).keys
    assert key.protection is Protection.UNSUPPORTED and key.refusal == text
    with pytest.raises(UnsupportedProtection) as info:
        key.unlock("anything")
    assert str(info.value) == text


def test_refusal_texts_are_formats_11_verbatim() -> None:
    assert ARGON2_AEAD_REFUSAL == ("unsupported secret-key protection (Argon2/AEAD); "
                                   "re-export the key with iterated+salted S2K")
    assert OTHER_PROTECTION_REFUSAL == (
        "unsupported secret-key protection; re-export the key with iterated+salted S2K")


def test_a_refused_key_does_not_hide_the_usable_ones() -> None:
    bob = b"".join(p.serialize() for p in load_certificates(private_asc("bob"))[0]
                   .secret_packets.values())
    ring = load_secret_keys(_with_secret_part(ARGON2) + bob)
    assert [k.protection for k in ring.keys] == [Protection.UNSUPPORTED] + [Protection.NONE] * 4


def test_gnupg_stubs_are_not_secret_keys() -> None:
    ring = load_secret_keys(gpg_export("full", "--export-secret-subkeys"))
    cert = gpg_cert("full")
    assert [k.public for k in ring.keys] == [s.key for s in cert.subkeys]
    assert match_holder(ring, [cert], now()) is not None  # subkeys suffice for a holder


def test_holder_matching_finds_the_holder_in_bundle_order() -> None:
    alice, bob = fixture_certs()
    ring = load_secret_keys(private_asc("bob"))
    match = match_holder(ring, [alice, bob], now())
    assert match is not None and match.index == 1 and match.certificate == bob
    assert [k.fingerprint for k in match.signing] == [bob.subkeys[0].key.fingerprint_hex]
    assert [k.fingerprint for k in match.decryption] == [bob.subkeys[2].key.fingerprint_hex]
    assert match_holder(ring, [alice], now()) is None


def test_holder_option_chooses_among_several_matches() -> None:
    alice, bob = fixture_certs()
    ring = load_secret_keys(private_asc("alice") + private_asc("bob"))
    first = match_holder(ring, [alice, bob], now())
    assert first is not None and first.index == 0
    chosen = match_holder(ring, [alice, bob], now(), holder="ee9d cbd1 adda f6b5 5bb5 "
                          "4b67 a13e 41e3 1ac9 69a9")
    assert chosen is not None and chosen.index == 1
    assert normalise_fingerprint(" ee9d CBD1 ") == "EE9DCBD1"


def test_holder_without_a_live_signing_secret_key_does_not_match() -> None:
    alice, _ = fixture_certs()
    ring = load_secret_keys(private_asc("alice"))
    sign = alice.subkeys[0].key.fingerprint
    without_sign = [k for k in ring.keys if k.public.fingerprint != sign]
    data = b"".join(k.packet.serialize() for k in without_sign)
    assert match_holder(load_secret_keys(data), [alice], now()) is None
    # ... nor one judged before its keys exist (liveness is the bundle certificate's, now).
    assert match_holder(ring, [alice], 1600000000) is None


def test_holder_without_a_decryption_secret_key_does_not_match() -> None:
    alice, _ = fixture_certs()
    ring = load_secret_keys(private_asc("alice"))
    encr = alice.subkeys[2].key.fingerprint
    data = b"".join(k.packet.serialize() for k in ring.keys if k.public.fingerprint != encr)
    assert match_holder(load_secret_keys(data), [alice], now()) is None


def test_unlocked_key_matches_its_public_key() -> None:
    ring = load_secret_keys(private_asc("alice"))
    key = ring.keys[3].unlock()
    assert isinstance(key.public, PublicKey) and key.packet_body() == ring.keys[3].packet.body
