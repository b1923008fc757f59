"""Matching a card to a bundle holder by the fingerprints on the card (cli.md §5.3)."""

from __future__ import annotations

import pytest

from locksmith.core.card.holders import match_card
from locksmith.core.openpgp import signature as sig
from locksmith.core.openpgp.certs import Certificate, load_certificates
from locksmith.core.openpgp.keygen import generate_holder_key

NOW = 1_760_000_000


def _holder(name: str) -> Certificate:
    generated = generate_holder_key(name, f"{name}@example.org", now=NOW - 100)
    return load_certificates(generated.public_armored)[0]


@pytest.fixture(scope="module")
def holders() -> list[Certificate]:
    return [_holder("alice"), _holder("bob"), _holder("carol")]


def _slots(cert: Certificate) -> dict[str, bytes]:
    """The fingerprints a card holding this holder's keys shows, by role."""
    from locksmith.core.openpgp import validity
    by_flag = {}
    for key in validity.live_keys(cert, NOW):
        for flag, role in ((sig.FLAG_SIGN, "sign"), (sig.FLAG_ENCRYPT_STORAGE, "encrypt"),
                           (sig.FLAG_AUTHENTICATE, "auth")):
            if key.flags & flag:
                by_flag[role] = key.key.fingerprint
    return by_flag


def test_a_card_with_a_holders_signing_and_decryption_keys_matches_that_holder(
        holders: list[Certificate]) -> None:
    bob = _slots(holders[1])
    match = match_card(holders, bob["sign"], bob["encrypt"], NOW)
    assert match is not None and match.index == 1
    assert match.certificate is holders[1]
    assert (match.signing_key.fingerprint, match.decryption_key.fingerprint) == (
        bob["sign"], bob["encrypt"])


def test_a_card_mixing_two_holders_keys_matches_nobody(holders: list[Certificate]) -> None:
    alice, bob = _slots(holders[0]), _slots(holders[1])
    assert match_card(holders, alice["sign"], bob["encrypt"], NOW) is None


def test_keys_in_the_wrong_slots_match_nobody(holders: list[Certificate]) -> None:
    alice = _slots(holders[0])
    assert match_card(holders, alice["encrypt"], alice["sign"], NOW) is None
    assert match_card(holders, alice["auth"], alice["encrypt"], NOW) is None  # auth cannot sign


def test_an_empty_slot_matches_nobody(holders: list[Certificate]) -> None:
    alice = _slots(holders[0])
    assert match_card(holders, None, alice["encrypt"], NOW) is None
    assert match_card(holders, alice["sign"], None, NOW) is None


def test_the_holder_option_restricts_the_match(holders: list[Certificate]) -> None:
    carol = _slots(holders[2])
    assert match_card(holders, carol["sign"], carol["encrypt"], NOW,
                      holders[0].fingerprint) is None
    found = match_card(holders, carol["sign"], carol["encrypt"], NOW, holders[2].fingerprint)
    assert found is not None and found.index == 2


def test_webauthn_entries_never_match(holders: list[Certificate]) -> None:
    alice = _slots(holders[0])
    assert match_card([None, *holders], alice["sign"], alice["encrypt"], NOW).index == 1  # type: ignore[union-attr]


def test_a_signing_key_that_is_not_live_now_does_not_match(holders: list[Certificate]) -> None:
    alice = _slots(holders[0])
    assert match_card(holders, alice["sign"], alice["encrypt"], NOW - 1000) is None
