"""`caution card status` (cli.md §5.3 last point) on virtual cards behind a real pcscd."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cardkit.stack import VirtualCard
from tests.cli.clirun import caution
from tests.cli.send_shard_kit import Capsys
from tests.cli.test_send_shard_card_cli import (
    aid_of, burn_pin_attempts, fixture_holder, put_holder_on, put_strangers_keys_on,
)
from tests.conftest import CAUTION_V0, REPO

BUNDLE = str(CAUTION_V0 / "bundle.json")


def _status(capsys: Capsys, *args: str) -> dict[str, object]:
    result = caution(capsys, "card", "status", "--json", *args)
    assert result.code == 0, result.err
    parsed: dict[str, object] = json.loads(result.out)
    return parsed


def test_card_status_json_lists_the_cards_keys_counters_and_matching_holder(
        capsys: Capsys, virtual_card: VirtualCard) -> None:
    put_holder_on(virtual_card, "alice", cardholder="Holder<<Alice")
    burn_pin_attempts(virtual_card, 1)
    alice = fixture_holder("alice")
    status = _status(capsys, "--bundle", BUNDLE)
    assert status["bundle"] == BUNDLE
    readers = status["readers"]
    assert isinstance(readers, list) and len(readers) == 2
    first, second = readers
    assert first["reader"] == virtual_card.reader and first["error"] is None
    card = first["card"]
    aid = aid_of(virtual_card)
    assert (card["aid"], card["serial"], card["version"], card["cardholder"]) == (
        aid, aid[20:28], "3.4", "Alice Holder")
    on_card = {k.fingerprint_hex for k in alice.keys()}
    for role, algorithm in (("signature", "ed25519"), ("decryption", "cv25519"),
                            ("authentication", "ed25519")):
        assert card["keys"][role]["algorithm"] == algorithm
        assert card["keys"][role]["fingerprint"] in on_card
        assert card["keys"][role]["touch"] == "off"
    assert card["pin_retries"] == {"pw1": 2, "rc": 0, "pw3": 3}
    assert card["kdf"] is False
    assert card["holder"] == {"index": 0, "fingerprint": alice.fingerprint,
                              "user_id": "Alice V0 public TEST KEY"}
    assert second == {"reader": readers[1]["reader"], "error": "no card", "card": None}


def test_card_status_says_when_a_card_belongs_to_no_holder(
        capsys: Capsys, virtual_cards: tuple[VirtualCard, VirtualCard]) -> None:
    stranger, bob = virtual_cards
    put_strangers_keys_on(stranger)
    put_holder_on(bob, "bob")
    readers = _status(capsys, "--bundle", BUNDLE)["readers"]
    assert isinstance(readers, list)
    assert readers[0]["card"]["holder"] is None
    assert readers[1]["card"]["holder"]["index"] == 1
    human = caution(capsys, "card", "status", "--bundle", BUNDLE)
    assert human.code == 0 and human.out == ""
    assert f"    Holder: none of {BUNDLE}" in human.err.splitlines()
    assert any(line.startswith("    Holder: #1 ") for line in human.err.splitlines())


def test_card_status_without_a_bundle_lists_cards_without_holders(
        capsys: Capsys, virtual_card: VirtualCard, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    put_strangers_keys_on(virtual_card)
    monkeypatch.chdir(tmp_path)  # no .caution/quorum-bundle.json here
    status = _status(capsys)
    assert status["bundle"] is None
    readers = status["readers"]
    assert isinstance(readers, list) and readers[0]["card"]["holder"] is None


def test_card_status_without_pyscard_says_how_to_get_it(
        capsys: Capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "smartcard", None)
    result = caution(capsys, "card", "status")
    assert result.code == 1
    assert result.err.splitlines()[-1] == (
        "error: smart-card support is not available in this build; use --keyring or install "
        "with make install-cli-untrusted")


def test_card_status_without_a_pcsc_service_says_so(
        capsys: Capsys) -> None:
    """In a subprocess: libpcsclite reads the socket path once per process."""
    env = {"PATH": "/usr/bin:/bin", "PCSCLITE_CSOCK_NAME": "/nonexistent/pcscd.comm",
           "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-m", "locksmith", "caution", "card", "status"],
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        "error: no PC/SC service is running (start pcscd, the PC/SC daemon)")


def test_the_key_file_path_never_imports_pyscard(tmp_path: Path) -> None:
    """pyscard is the card path's only: a CLI without it (make install-cli) does everything else."""
    probe = ("import sys; from locksmith.__main__ import run; "
             "code = run(['caution', 'secret', 'keygen', sys.argv[1], '--name', 'A', '--email', "
             "'a@example.org', '--shoot-self-in-foot']); "
             "run(['caution', 'secret', 'inspect', sys.argv[2]]); "
             "print(code, 'smartcard' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", probe, str(tmp_path / "a.asc"), BUNDLE],
                            cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.stdout.split() == ["0", "False"], result.stderr
