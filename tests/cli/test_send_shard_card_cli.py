"""`send-shard` from an OpenPGP smart card (cli.md §5.3), in-process against the in-test enclave.

The card is jcecard (a third-party virtual OpenPGP card) behind this test process's own pcscd and
Debian's vpcd driver (tests/cardkit): the CLI talks to it through pyscard exactly as it would to
a YubiKey. The holders are the reference fixtures' Alice and Bob, whose keys are put on cards the
way `keytocard` does. What reached the enclave is asserted at the enclave.
"""

from __future__ import annotations

import getpass
from pathlib import Path

import pytest

from locksmith.core.openpgp.certs import Certificate
from locksmith.core.openpgp.secretkeys import load_secret_keys
from tests.cardkit.provision import (
    card_keys_from_keyring, card_session, cv25519_key, ed25519_key, provision, set_uif,
)
from tests.cardkit.stack import VirtualCard
from tests.cli.enclave_harness import FakeEnclave
from tests.cli.clirun import Result
from tests.cli.send_shard_kit import SENT, Capsys, lines, send
from tests.conftest import CAUTION_V0

ACCEPTED = "Shard accepted, 1 remaining shards until reconstitution"
PIN, WRONG = "123456", "654321"


def fixture_holder(name: str) -> Certificate:
    return load_secret_keys((CAUTION_V0 / f"{name}.private.asc").read_bytes()).certificates[0]


def put_holder_on(card: VirtualCard, name: str, cardholder: str | None = None) -> Certificate:
    """The fixture holder's signing and decryption keys on `card`, as `keytocard` puts them."""
    private = (CAUTION_V0 / f"{name}.private.asc").read_bytes()
    cert = fixture_holder(name)
    signing, decryption, authentication = card_keys_from_keyring(private, cert.public().armored())
    provision(card.reader, signing=signing, decryption=decryption,
              authentication=authentication, cardholder=cardholder)
    return cert


def put_strangers_keys_on(card: VirtualCard) -> None:
    provision(card.reader, signing=ed25519_key(), decryption=cv25519_key())


def aid_of(card: VirtualCard) -> str:
    with card_session(card.reader) as session:
        data = session.application_data()
    start = data.index(b"\x4f\x10") + 2
    return data[start:start + 16].hex().upper()


def pin_retries(card: VirtualCard) -> int:
    with card_session(card.reader) as session:
        return session.pw_status()[4]


def burn_pin_attempts(card: VirtualCard, count: int) -> None:
    with card_session(card.reader) as session:
        for _ in range(count):
            with pytest.raises(Exception):
                session.verify(WRONG, 0x82)


def terminal(monkeypatch: pytest.MonkeyPatch, *answers: str) -> list[str]:
    """getpass answering `answers` in turn; returns the prompts it was shown."""
    prompts: list[str] = []
    pending = list(answers)

    def fake(prompt: str = "Password: ", stream: object = None) -> str:
        prompts.append(prompt)
        if not pending:
            raise EOFError
        return pending.pop(0)

    monkeypatch.setattr(getpass, "getpass", fake)
    return prompts


def pin_file(tmp_path: Path, pin: str) -> Path:
    path = tmp_path / "pin"
    path.write_text(pin + "\n")
    path.chmod(0o600)
    return path


def send_card(capsys: Capsys, enclave: FakeEnclave, nsm_dir: Path, *extra: str) -> Result:
    """`send-shard` without --keyring: the smart-card path."""
    return send(capsys, enclave.address, nsm_dir, *extra, holder="")


# --- the happy path -------------------------------------------------------------------------


def test_a_card_holder_sends_a_shard_with_the_pin_asked_once(
        capsys: Capsys, enclave: FakeEnclave, nsm_dir: Path, virtual_card: VirtualCard,
        monkeypatch: pytest.MonkeyPatch) -> None:
    put_holder_on(virtual_card, "alice", cardholder="Holder<<Alice")
    aid = aid_of(virtual_card)
    prompts = terminal(monkeypatch, PIN)
    result = send_card(capsys, enclave, nsm_dir)
    assert result.code == 0, result.err
    assert prompts == [f"Unlock card {aid} (Alice Holder)\nRemaining PIN entry attempts: 3\n\nPIN: "]
    assert lines(result)[-1] == ACCEPTED
    assert [(s.holder, s.submitted) for s in enclave.seen] == [(0, True)]
    assert f"for holder {fixture_holder('alice').fingerprint}" in result.err
    assert PIN not in result.err and PIN not in result.out


def test_a_wrong_pin_reprompts_with_the_lower_counter_and_the_right_one_restores_it(
        capsys: Capsys, enclave: FakeEnclave, nsm_dir: Path, virtual_card: VirtualCard,
        monkeypatch: pytest.MonkeyPatch) -> None:
    put_holder_on(virtual_card, "alice")
    prompts = terminal(monkeypatch, WRONG, PIN)
    result = send_card(capsys, enclave, nsm_dir)
    assert result.code == 0, result.err
    counters = [p.split("Remaining PIN entry attempts: ")[1].split("\n")[0] for p in prompts]
    assert counters == ["3", "2"]
    assert "Wrong PIN" in result.err and "(2 attempts left)" in result.err
    assert lines(result)[-1] == ACCEPTED
    assert pin_retries(virtual_card) == 3


def test_pins_shorter_than_six_are_refused_without_spending_an_attempt(
        capsys: Capsys, enclave: FakeEnclave, nsm_dir: Path, virtual_card: VirtualCard,
        monkeypatch: pytest.MonkeyPatch) -> None:
    put_holder_on(virtual_card, "alice")
    terminal(monkeypatch, "1", "12345", "")
    result = send_card(capsys, enclave, nsm_dir)
    assert result.code == 1
    assert "Invalid PIN length: provided 1 < expected 6" in lines(result)
    assert "Invalid PIN length: provided 5 < expected 6" in lines(result)
    assert lines(result)[-1] == "error: too many failed attempts"
    assert pin_retries(virtual_card) == 3 and enclave.seen == []


def test_a_blocked_pin_is_named_with_the_card(capsys: Capsys, enclave: FakeEnclave,
                                              nsm_dir: Path, virtual_card: VirtualCard,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    put_holder_on(virtual_card, "alice")
    burn_pin_attempts(virtual_card, 3)
    prompts = terminal(monkeypatch, PIN)
    result = send_card(capsys, enclave, nsm_dir)
    assert result.code == 1 and prompts == []
    assert lines(result)[-1] == f"error: PIN blocked on card {aid_of(virtual_card)}"
    assert enclave.seen == []


# --- --pin-file ----------------------------------------------------------------------------


def test_a_pin_file_unlocks_the_card_without_a_prompt(
        capsys: Capsys, enclave: FakeEnclave, nsm_dir: Path, virtual_card: VirtualCard,
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    put_holder_on(virtual_card, "alice")
    prompts = terminal(monkeypatch)
    result = send_card(capsys, enclave, nsm_dir, "--pin-file", str(pin_file(tmp_path, PIN)))
    assert result.code == 0, result.err
    assert prompts == [] and lines(result)[-1] == ACCEPTED


def test_a_wrong_pin_file_makes_exactly_one_attempt_and_fails_with_the_cards_error(
        capsys: Capsys, enclave: FakeEnclave, nsm_dir: Path, virtual_card: VirtualCard,
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    put_holder_on(virtual_card, "alice")
    prompts = terminal(monkeypatch, PIN)
    result = send_card(capsys, enclave, nsm_dir, "--pin-file", str(pin_file(tmp_path, WRONG)))
    assert result.code == 1 and prompts == []
    assert lines(result)[-1] == (f"error: card {aid_of(virtual_card)[20:28]} in reader "
                                 f"'{virtual_card.reader}': the card refused the PIN (2 attempts "
                                 "left)")
    assert pin_retries(virtual_card) == 2
    assert enclave.seen == []


def test_a_pin_file_is_never_tried_at_the_last_attempt(
        capsys: Capsys, enclave: FakeEnclave, nsm_dir: Path, virtual_card: VirtualCard,
        tmp_path: Path) -> None:
    put_holder_on(virtual_card, "alice")
    burn_pin_attempts(virtual_card, 2)
    result = send_card(capsys, enclave, nsm_dir, "--pin-file", str(pin_file(tmp_path, PIN)))
    assert result.code == 1
    assert lines(result)[-1] == "error: PIN retry counter is 1; refusing to try a PIN from a file"
    assert pin_retries(virtual_card) == 1 and enclave.seen == []


def test_a_group_readable_pin_file_is_refused(capsys: Capsys, enclave: FakeEnclave,
                                              nsm_dir: Path, virtual_card: VirtualCard,
                                              tmp_path: Path) -> None:
    put_holder_on(virtual_card, "alice")
    path = pin_file(tmp_path, PIN)
    path.chmod(0o640)
    result = send_card(capsys, enclave, nsm_dir, "--pin-file", str(path))
    assert result.code == 1
    assert lines(result)[-1] == f"error: {path} must not be readable by group or others"
    assert pin_retries(virtual_card) == 3 and enclave.seen == []


# --- which card ----------------------------------------------------------------------------


def test_a_card_of_no_holder_is_listed_and_nothing_reaches_the_enclave(
        capsys: Capsys, enclave: FakeEnclave, nsm_dir: Path,
        virtual_cards: tuple[VirtualCard, VirtualCard], monkeypatch: pytest.MonkeyPatch) -> None:
    for card in virtual_cards:
        put_strangers_keys_on(card)
    prompts = terminal(monkeypatch, PIN)
    result = send_card(capsys, enclave, nsm_dir)
    assert result.code == 1 and prompts == []
    error = lines(result).index("error: No card matches a holder of this bundle")
    listed = lines(result)[error + 1:]
    assert len(listed) == 2
    for card, line in zip(virtual_cards, listed):
        assert line.startswith(f"  caused by: reader '{card.reader}': card {aid_of(card)}")
        assert "signature " in line and "decryption " in line
    assert enclave.seen == []


def test_with_two_readers_the_card_that_matches_is_used(
        capsys: Capsys, enclave: FakeEnclave, nsm_dir: Path,
        virtual_cards: tuple[VirtualCard, VirtualCard], monkeypatch: pytest.MonkeyPatch) -> None:
    stranger, alice = virtual_cards
    put_strangers_keys_on(stranger)
    put_holder_on(alice, "alice")
    prompts = terminal(monkeypatch, PIN)
    result = send_card(capsys, enclave, nsm_dir)
    assert result.code == 0, result.err
    assert prompts[0].startswith(f"Unlock card {aid_of(alice)}")
    assert f"in reader '{alice.reader}'" in result.err
    assert [s.holder for s in enclave.seen] == [0]


def test_the_holder_option_chooses_between_two_matching_cards(
        capsys: Capsys, enclave: FakeEnclave, nsm_dir: Path,
        virtual_cards: tuple[VirtualCard, VirtualCard], monkeypatch: pytest.MonkeyPatch) -> None:
    alice_card, bob_card = virtual_cards
    put_holder_on(alice_card, "alice")
    bob = put_holder_on(bob_card, "bob")
    prompts = terminal(monkeypatch, PIN)
    result = send_card(capsys, enclave, nsm_dir, "--holder", bob.fingerprint.lower())
    assert result.code == 0, result.err
    assert prompts[0].startswith(f"Unlock card {aid_of(bob_card)}")
    assert [s.holder for s in enclave.seen] == [1]


def test_a_card_with_a_touch_policy_asks_for_a_touch_before_each_operation(
        capsys: Capsys, enclave: FakeEnclave, nsm_dir: Path, virtual_card: VirtualCard,
        monkeypatch: pytest.MonkeyPatch) -> None:
    put_holder_on(virtual_card, "bob")  # the second holder: its metadata PKESK is not first
    with virtual_card.removed() as storage:
        set_uif(storage, "sig", 1)
        set_uif(storage, "dec", 1)
    terminal(monkeypatch, PIN)
    result = send_card(capsys, enclave, nsm_dir)
    assert result.code == 0, result.err
    said = lines(result)
    touches = [i for i, line in enumerate(said) if line == "Touch your card to confirm"]
    sending = next(i for i, line in enumerate(said) if line.startswith("Sending shard"))
    verified = next(i for i, line in enumerate(said) if line.startswith("Enclave attestation verified"))
    # one decryption each for the metadata message (its own PKESK tried first) and the share,
    # before connecting; the signature after the attestation, before message 3 is sent
    assert len(touches) == 3
    assert all(i < sending for i in touches[:-1])
    assert verified < touches[-1] < said.index(SENT)
