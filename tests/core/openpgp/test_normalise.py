"""Keyring normalisation (formats.md §12) for `caution secret new`."""

from __future__ import annotations

from locksmith.core.openpgp import armor
from locksmith.core.openpgp.certs import load_certificates
from locksmith.core.openpgp.normalise import normalise_keyring
from tests.core.openpgp.gpgkit import (
    ALICE_FPR, BOB_FPR, bundle_keyring, fixture_certs, gpg_cert, now, private_asc,
)
from tests.oracles import gpg_home


def test_public_fixture_keyring_is_kept_whole_and_in_order() -> None:
    result = normalise_keyring(bundle_keyring(), now())
    assert not result.had_secret
    assert [c.fingerprint for c in result.eligible] == [ALICE_FPR, BOB_FPR]
    assert result.ineligible == ()


def test_secret_material_is_dropped_and_reported() -> None:
    result = normalise_keyring(private_asc("bob") + private_asc("alice"), now())
    assert result.had_secret
    assert [c.fingerprint for c in result.eligible] == [BOB_FPR, ALICE_FPR]
    assert not any(c.has_secret for c in result.certificates)
    assert "PRIVATE" not in result.v0_keyring()
    assert load_certificates(result.v0_keyring()) == [fixture_certs()[1], fixture_certs()[0]]


def test_ineligible_certificates_are_excluded_with_their_missing_roles() -> None:
    noauth, expired = gpg_cert("noauth"), gpg_cert("past")
    data = (noauth.armored() + fixture_certs()[0].armored() + expired.armored()).encode()
    result = normalise_keyring(data, now())
    assert [c.fingerprint for c in result.eligible] == [ALICE_FPR]
    assert [(v.fingerprint, v.display_name, v.missing) for v in result.ineligible] == [
        (noauth.fingerprint, "Noauth <noauth@test>", ("authentication",)),
        (expired.fingerprint, "Past <past@test>",  # an expired key keeps its User ID
         ("signing", "authentication", "storage-encryption")),
    ]


def test_v0_request_is_one_armor_block_without_headers() -> None:
    data = fixture_certs()[0].armored() + gpg_cert("full").armored() + fixture_certs()[1].armored()
    result = normalise_keyring(data, now())
    text = result.v0_keyring()
    assert text.startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n") and text.endswith("-----\n")
    assert len(armor.dearmor_all(text)) == 1
    assert load_certificates(text) == list(result.eligible)
    assert len(result.eligible) == 3


def test_v1_request_is_one_block_per_certificate() -> None:
    result = normalise_keyring(bundle_keyring(), now())
    entries = result.v1_entries()
    assert [load_certificates(e) for e in entries] == [[c] for c in result.eligible]
    assert all(len(armor.dearmor_all(e)) == 1 for e in entries)


def test_gnupg_imports_the_normalised_keyring() -> None:
    result = normalise_keyring(private_asc("alice") + private_asc("bob"), now())
    with gpg_home() as gpg:
        out = gpg.run("--import", "--import-options", "show-only", "--with-colons",
                      input=result.v0_keyring()).stdout
    fprs = [line.split(":")[9] for line in out.decode().splitlines() if line.startswith("fpr:")]
    assert ALICE_FPR in fprs and BOB_FPR in fprs
    assert not any(line.startswith("sec:") for line in out.decode().splitlines())


def test_empty_keyring_normalises_to_nothing() -> None:
    result = normalise_keyring(b"", now())
    assert result.certificates == () and result.eligible == ()
