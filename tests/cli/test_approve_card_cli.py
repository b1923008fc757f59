"""`caution secret approve` with an OpenPGP smart card (docs/forwarding.md §7, cli.md §5.3), and
`approvals check` counting what the card signed.

The card is jcecard behind this test process's own pcscd (tests/cardkit), as for `send-shard`.
The bundle is the reference fixtures' 2-of-2 quorum of Alice and Bob as an ImportedV0 bundle
(forwarding needs a threshold); their keys go on the card the way `keytocard` puts them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from locksmith.core.bundle.checks import CheckedBundle
from locksmith.core.bundle.model import BundleV0, ImportedV0, OpenPGPKey
from locksmith.core.forwarding.approval import PcrSet, statement_of
from locksmith.personalities.caution.card.holder import TOUCH
from tests.cardkit.provision import set_uif
from tests.cardkit.stack import VirtualCard
from tests.cli.clirun import Result, caution
from tests.cli.test_send_shard_card_cli import (
    PIN, aid_of, fixture_holder, pin_file, pin_retries, put_holder_on, put_strangers_keys_on,
    terminal,
)
from tests.conftest import CAUTION_V0

Capsys = pytest.CaptureFixture[str]
IMAGE = PcrSet(b"\x5a" * 48, b"\x5b" * 48, b"\x5c" * 48)


@pytest.fixture
def project(v0: CheckedBundle, tmp_path: Path) -> Path:
    assert isinstance(v0.bundle, BundleV0)
    imported = ImportedV0(v0.bundle, 2, tuple(OpenPGPKey(c.armored()) for c in v0.holders))
    (tmp_path / ".caution").mkdir()
    (tmp_path / ".caution" / "quorum-bundle.json").write_text(imported.to_json())
    return tmp_path


def run(capsys: Capsys, project: Path, *args: str) -> Result:
    return caution(capsys, "--workdir", str(project), "secret", *args)


def approve_with_card(capsys: Capsys, project: Path, *extra: str) -> Result:
    return run(capsys, project, "approve", "--pcr0", IMAGE.pcr0.hex(), "--pcr1",
               IMAGE.pcr1.hex(), "--pcr2", IMAGE.pcr2.hex(), "--expires", "2031-01-01", *extra)


def approval_path(project: Path, name: str) -> Path:
    fpr = fixture_holder(name).fingerprint
    return project / ".caution" / "approvals" / f"{fpr}-{IMAGE.set_id}.asc"


def test_a_card_holder_approves_with_the_pin_asked_once(
        capsys: Capsys, project: Path, virtual_card: VirtualCard,
        monkeypatch: pytest.MonkeyPatch) -> None:
    put_holder_on(virtual_card, "alice", cardholder="Holder<<Alice")
    prompts = terminal(monkeypatch, PIN)
    result = approve_with_card(capsys, project)
    assert result.code == 0, result.err
    assert prompts == [f"Unlock card {aid_of(virtual_card)} (Alice Holder)\n"
                       "Remaining PIN entry attempts: 3\n\nPIN: "]
    alice = fixture_holder("alice").fingerprint
    path = approval_path(project, "alice")
    assert result.err.splitlines()[-1] == (
        f"Approval by holder 0 ({alice}) of PCR set {IMAGE.set_id} written to "
        f".caution/approvals/{alice}-{IMAGE.set_id}.asc, expires 2031-01-01T23:59:59Z")
    statement = statement_of(path.read_text())
    assert statement is not None and statement.pcrs == IMAGE
    assert PIN not in result.err and PIN not in result.out


def test_a_card_and_a_key_file_make_the_two_approvals_a_2_of_2_bundle_needs(
        capsys: Capsys, project: Path, virtual_card: VirtualCard,
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    put_holder_on(virtual_card, "bob")
    prompts = terminal(monkeypatch)
    card = approve_with_card(capsys, project, "--pin-file", str(pin_file(tmp_path, PIN)))
    assert card.code == 0 and prompts == [], card.err
    assert "by holder 1 (" in card.err.splitlines()[-1]
    check_args = ["approvals", "check", "--pcr0", IMAGE.pcr0.hex(), "--pcr1", IMAGE.pcr1.hex(),
                  "--pcr2", IMAGE.pcr2.hex()]
    alone = run(capsys, project, *check_args)
    assert alone.code == 1 and "1 of 2 holders — not approved" in alone.err
    keyring = approve_with_card(capsys, project, "--keyring",
                                str(CAUTION_V0 / "alice.private.asc"))
    assert keyring.code == 0, keyring.err
    both = run(capsys, project, *check_args)
    assert both.code == 0, both.err
    summary = f"PCR set {IMAGE.set_id} (pcr0 {IMAGE.pcr0.hex()[:16]}…): 2 of 2 holders"
    assert f"{summary} — approved" in both.err.splitlines()


def test_a_card_with_a_touch_policy_asks_for_one_touch(
        capsys: Capsys, project: Path, virtual_card: VirtualCard,
        monkeypatch: pytest.MonkeyPatch) -> None:
    put_holder_on(virtual_card, "alice")
    with virtual_card.removed() as storage:
        set_uif(storage, "sig", 1)
    terminal(monkeypatch, PIN)
    result = approve_with_card(capsys, project)
    assert result.code == 0, result.err
    assert result.err.splitlines().count(TOUCH) == 1


def test_a_card_of_no_holder_is_listed_and_no_pin_is_asked(
        capsys: Capsys, project: Path, virtual_card: VirtualCard,
        monkeypatch: pytest.MonkeyPatch) -> None:
    put_strangers_keys_on(virtual_card)
    prompts = terminal(monkeypatch, PIN)
    result = approve_with_card(capsys, project)
    assert result.code == 1 and prompts == []
    said = result.err.splitlines()
    error = said.index("error: No card matches a holder of this bundle")
    assert said[error + 1:] and all(line.startswith("  caused by: reader '")
                                    for line in said[error + 1:])
    assert not (project / ".caution" / "approvals").exists()


def test_an_existing_approval_stops_before_the_card_is_unlocked(
        capsys: Capsys, project: Path, virtual_card: VirtualCard,
        monkeypatch: pytest.MonkeyPatch) -> None:
    put_holder_on(virtual_card, "alice")
    path = approval_path(project, "alice")
    path.parent.mkdir(parents=True)
    path.write_text("an older approval\n")
    prompts = terminal(monkeypatch, PIN)
    result = approve_with_card(capsys, project)
    assert result.code == 1 and prompts == []
    assert result.err.splitlines()[-1] == (
        f"error: .caution/approvals/{path.name} already exists; pass --force to replace it")
    assert pin_retries(virtual_card) == 3 and path.read_text() == "an older approval\n"
