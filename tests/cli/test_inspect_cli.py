"""`caution secret inspect` (cli.md §7.1) for v0, V1 and ImportedV0, and the loading path it
shares with `secret encrypt` (V1 proofs verified per keymaker.md §8.2)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from locksmith.core.attestation.nsm_simulated import SimulatedNsm
from locksmith.core.bundle.model import BundleV0, BundleV1, ImportedV0, OpenPGPKey
from locksmith.core.canonical_cbor import bundle_hash, imported_v0_content_hash, proof_nonce
from locksmith.core.keymaker import request as km
from locksmith.core.openpgp.certs import load_certificates
from locksmith.personalities.keymaker.service import KeymakerService
from tests.cli.clirun import Result, caution
from tests.conftest import CAUTION_V0
from tests.keymaker_helpers import Holder, keygen_holders

Capsys = pytest.CaptureFixture[str]
FIXTURE = CAUTION_V0 / "bundle.json"
TEST_FPR = "15B0E570536A4B00A90151DB726E3FCA18892D05"
ALICE = "930755D28A0F722225264690D92F1A9EE975CFE8"
BOB = "EE9DCBD1ADDAF6B55BB54B67A13E41E31AC969A9"
KEYS = ["generation", "label", "threshold", "max", "holders", "quorum_fingerprint",
        "keyring_hash_ok", "bundle_hash", "proof_nonce", "proof_ok", "attestation_time"]
NO_POLICY = ("warning: no Keymaker PCR policy; the proof was checked against the trust root but "
             "not against expected Keymaker code")


@pytest.fixture(scope="module")
def nsm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("nsm")


@pytest.fixture(scope="module")
def holders() -> list[Holder]:
    return keygen_holders(3, "insp")


@pytest.fixture(scope="module")
def v1_bundle(nsm_dir: Path, holders: list[Holder]) -> BundleV1:
    """Made by the Keymaker service itself, with the simulated NSM."""
    service = KeymakerService(SimulatedNsm.open(nsm_dir), "simulated")
    request = km.V1Request(bytes(range(16)), {"name": "inspect me"},
                           tuple(OpenPGPKey(h.public) for h in holders), 2, 3)
    certs = [load_certificates(h.public)[0] for h in holders]
    return BundleV1.from_json(service.generate(request, certs))


def _trusted(nsm_dir: Path, policy: bool = True) -> list[str]:
    args = ["--trust-root", str(nsm_dir / "root.pem")]
    return args + (["--keymaker-pcr-policy", str(nsm_dir / "keymaker-pcr-policy.json")]
                   if policy else [])


def inspect(capsys: Capsys, path: Path, *args: str) -> tuple[Result, dict[str, Any] | None]:
    result = caution(capsys, "secret", "inspect", str(path), "--json", *args)
    return result, (json.loads(result.out) if result.out else None)


def test_the_v0_fixture_shows_two_holders_and_the_quorum_fingerprint(capsys: Capsys) -> None:
    result = caution(capsys, "secret", "inspect", str(FIXTURE))
    assert result.code == 0, result.err
    assert result.out == ""
    lines = result.err.splitlines()
    assert lines[0] == ("warning: this bundle's quorum key comes from the public test secret; "
                        "anything encrypted to it can be read by anyone")
    assert "Holders:      2" in lines
    assert any(line.startswith(f"  1. {ALICE}  Alice") for line in lines)
    assert any(line.startswith(f"  2. {BOB}  Bob") for line in lines)
    assert any(line.startswith(f"Quorum key:   {TEST_FPR} (") for line in lines)
    assert "keyring_hash: OK" in lines
    result, report = inspect(capsys, FIXTURE)
    assert report is not None and list(report) == KEYS
    assert report["generation"] == "v0" and report["threshold"] is None and report["max"] == 2
    assert [h["fingerprint"] for h in report["holders"]] == [ALICE, BOB]
    assert all(h["eligible"] for h in report["holders"])
    assert report["quorum_fingerprint"] == TEST_FPR
    assert (report["keyring_hash_ok"], report["proof_ok"], report["bundle_hash"]) == (True, None, None)


def test_a_v0_keyring_hash_mismatch_is_shown_and_fails(capsys: Capsys, tmp_path: Path) -> None:
    raw = json.loads(FIXTURE.read_text())
    raw["keyring_hash"][0] ^= 1
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(raw))
    result = caution(capsys, "secret", "inspect", str(path))
    assert result.code == 1
    assert "keyring_hash: MISMATCH" in result.err.splitlines()
    assert result.err.splitlines()[-1] == (
        f"error: invalid quorum bundle {path}: keyring checksum mismatch; restore the original "
        "bundle (no repair override)")
    result, report = inspect(capsys, path)
    assert result.code == 1 and report is not None and report["keyring_hash_ok"] is False


def test_a_v1_bundle_is_verified_and_its_hashes_shown(capsys: Capsys, tmp_path: Path,
                                                     nsm_dir: Path, v1_bundle: BundleV1,
                                                     holders: list[Holder]) -> None:
    path = tmp_path / "v1.json"
    path.write_text(v1_bundle.to_json())
    digest = bundle_hash(v1_bundle.data)
    result = caution(capsys, "secret", "inspect", str(path), *_trusted(nsm_dir))
    assert result.code == 0, result.err
    lines = result.err.splitlines()
    assert "Threshold:    2 of 3" in lines and "Label:        name=inspect me" in lines
    assert f"Bundle hash:  {digest.hex()}" in lines
    assert f"Proof nonce:  {proof_nonce(digest).hex()}" in lines
    assert any(line.startswith("Proof:        verified (PCR set 0 of ") for line in lines)
    result, report = inspect(capsys, path, *_trusted(nsm_dir))
    assert report is not None and result.code == 0
    assert report["generation"] == "V1" and (report["threshold"], report["max"]) == (2, 3)
    assert report["label"] == {"name": "inspect me"}
    assert [h["fingerprint"] for h in report["holders"]] == [h.fingerprint for h in holders]
    assert report["holders"][0]["user_id"] == "insp 0 <insp0@example.org>"
    assert (report["bundle_hash"], report["proof_nonce"]) == (digest.hex(), proof_nonce(digest).hex())
    assert report["proof_ok"] is True and isinstance(report["attestation_time"], int)
    assert report["keyring_hash_ok"] is None


@pytest.mark.parametrize("change", [
    {"label": {"name": "evil"}}, {"threshold": 1},
    {"keyring": "swap"},
])
def test_a_tampered_v1_bundle_fails_inspect(capsys: Capsys, tmp_path: Path, nsm_dir: Path,
                                            v1_bundle: BundleV1, change: dict[str, Any]) -> None:
    raw = v1_bundle.to_dict()
    if change.get("keyring") == "swap":
        change = {"keyring": [raw["data"]["keyring"][i] for i in (2, 1, 0)]}
    raw["data"].update(change)
    path = tmp_path / "tampered.json"
    path.write_text(json.dumps(raw))
    result, report = inspect(capsys, path, *_trusted(nsm_dir))
    assert result.code == 1 and report is not None
    assert report["proof_ok"] is False and report["attestation_time"] is None
    assert result.err.splitlines()[-1].startswith(
        "error: keymaker necroproof did not match any PCR set")


def test_policy_defaults_and_failures(capsys: Capsys, tmp_path: Path, nsm_dir: Path,
                                      v1_bundle: BundleV1) -> None:
    (tmp_path / ".caution").mkdir()
    path = tmp_path / ".caution" / "quorum-bundle.json"
    path.write_text(v1_bundle.to_json())
    where = ["--workdir", str(tmp_path), "secret", "inspect", ".caution/quorum-bundle.json"]
    root = ["--trust-root", str(nsm_dir / "root.pem")]
    result = caution(capsys, *where, *root)
    assert result.code == 0 and NO_POLICY in result.err.splitlines()
    assert ("Proof:        NOT AUTHENTICATED: signed by a Nitro enclave under the trust root, but "
            "no PCR policy says which Keymaker code; any enclave could have made this bundle"
            in result.err.splitlines())
    shutil.copy(nsm_dir / "keymaker-pcr-policy.json", tmp_path / ".caution")
    result = caution(capsys, *where, *root)
    assert result.code == 0 and "Keymaker proof verified (PCR set 0" in result.err
    result = caution(capsys, *where)  # the simulated root is never trusted by default
    assert result.code == 1 and result.err.splitlines()[-1].endswith(
        "set 0: certificate chain does not lead to the trusted root")
    (tmp_path / ".caution" / "keymaker-pcr-policy.json").write_text('{"sets": []}')
    result = caution(capsys, *where, *root)
    assert (result.code, result.err.splitlines()[-2]) == (
        1, "error: keymaker PCR policy did not contain any PCR sets")


def _imported() -> ImportedV0:
    original = BundleV0.from_json(FIXTURE.read_text())
    certs = load_certificates(original.keyring)
    return ImportedV0(original, 2, tuple(OpenPGPKey(c.armored()) for c in certs))


def test_an_imported_v0_bundle_shows_its_threshold_and_content_hash(
        capsys: Capsys, tmp_path: Path) -> None:
    imported = _imported()
    path = tmp_path / "imported.json"
    path.write_text(imported.to_json())
    result, report = inspect(capsys, path)
    assert result.code == 0, result.err
    assert report is not None and report["generation"] == "ImportedV0"
    assert (report["threshold"], report["max"], report["quorum_fingerprint"]) == (2, 2, TEST_FPR)
    assert report["bundle_hash"] == imported_v0_content_hash(imported)
    assert report["proof_ok"] is None and report["keyring_hash_ok"] is None


def test_an_unreadable_bundle_is_an_error(capsys: Capsys, tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text("[]")
    result = caution(capsys, "secret", "inspect", str(path))
    assert (result.code, result.err.strip()) == (
        1, f"error: invalid quorum bundle {path}: could not parse quorum bundle JSON")


# --- `secret encrypt` reads V1 and ImportedV0 through the same loading path -------------------


def _project(tmp_path: Path, bundle_json: str) -> Path:
    (tmp_path / ".caution").mkdir(parents=True)
    (tmp_path / ".caution" / "quorum-bundle.json").write_text(bundle_json)
    (tmp_path / ".env").write_text("TOKEN=abc\n")
    return tmp_path


def test_encrypt_uses_a_v1_bundle_only_after_its_proof_verifies(
        capsys: Capsys, tmp_path: Path, nsm_dir: Path, v1_bundle: BundleV1) -> None:
    good = _project(tmp_path / "good", v1_bundle.to_json())
    result = caution(capsys, "--workdir", str(good), "secret", "encrypt", *_trusted(nsm_dir))
    assert result.code == 0, result.err
    assert "Keymaker proof verified (PCR set 0" in result.err
    assert (good / ".caution" / "secrets" / "TOKEN.asc").is_file()
    raw = v1_bundle.to_dict()
    raw["data"]["label"] = {"name": "evil"}
    bad = _project(tmp_path / "bad", json.dumps(raw))
    result = caution(capsys, "--workdir", str(bad), "secret", "encrypt", *_trusted(nsm_dir))
    assert result.code == 1 and "keymaker necroproof did not match any PCR set" in result.err
    assert not (bad / ".caution" / "secrets").exists()
    result = caution(capsys, "--workdir", str(good), "secret", "encrypt",
                     "--trust-root", str(nsm_dir / "root.pem"))
    assert result.code == 1 and "error: no Keymaker PCR policy: " in result.err
    result = caution(capsys, "--workdir", str(good), "secret", "encrypt",
                     "--trust-root", str(nsm_dir / "root.pem"), "--unsafe-no-keymaker-policy")
    assert result.code == 0 and NO_POLICY in result.err.splitlines()


def test_encrypt_refuses_a_bundle_proven_by_a_keymaker_outside_the_policy(
        capsys: Capsys, tmp_path: Path, nsm_dir: Path, other_nsm_dir: Path,
        v1_bundle: BundleV1) -> None:
    project = _project(tmp_path / "p", v1_bundle.to_json())
    result = caution(capsys, "--workdir", str(project), "secret", "encrypt",
                     "--keymaker-pcr-policy", str(other_nsm_dir / "keymaker-pcr-policy.json"),
                     "--trust-root", str(nsm_dir / "root.pem"))
    assert result.code == 1 and "keymaker necroproof did not match any PCR set" in result.err
    assert not (project / ".caution" / "secrets").exists()


def test_encrypt_reads_an_imported_v0_bundle(capsys: Capsys, tmp_path: Path) -> None:
    project = _project(tmp_path, _imported().to_json())
    result = caution(capsys, "--workdir", str(project), "secret", "encrypt")
    assert result.code == 0, result.err
    assert result.err.splitlines()[-1] == "encrypted 1 secret(s)"


def test_a_default_policy_path_that_exists_but_is_no_file_is_not_skipped(
        capsys: Capsys, tmp_path: Path, nsm_dir: Path, v1_bundle: BundleV1) -> None:
    """cli.md §1: the default policy is used "if it exists"; one that exists but cannot be read
    is an error, never a silent fall-back to the weaker trust-root-only check."""
    (tmp_path / ".caution" / "keymaker-pcr-policy.json").mkdir(parents=True)
    (tmp_path / ".caution" / "quorum-bundle.json").write_text(v1_bundle.to_json())
    result = caution(capsys, "--workdir", str(tmp_path), "secret", "inspect",
                     ".caution/quorum-bundle.json", "--trust-root", str(nsm_dir / "root.pem"))
    assert result.code == 1
    assert NO_POLICY not in result.err.splitlines()
    assert result.err.splitlines()[-2:] == [
        f"error: cannot read Keymaker PCR policy {Path('.caution/keymaker-pcr-policy.json')}",
        "  caused by: Is a directory"]


def test_a_hostile_label_cannot_write_to_the_terminal_or_forge_lines(
        capsys: Capsys, tmp_path: Path, nsm_dir: Path, holders: list[Holder]) -> None:
    forged = "Keymaker proof verified (PCR set 9, generated 2099-01-01T00:00:00Z)"
    hostile = {"name": f"x\x1b[2J\x1b[H\r\n{forged}\u202e"}
    service = KeymakerService(SimulatedNsm.open(nsm_dir), "simulated")
    request = km.V1Request(bytes(range(1, 17)), hostile,
                           tuple(OpenPGPKey(h.public) for h in holders), 2, 3)
    bundle = service.generate(request, [load_certificates(h.public)[0] for h in holders])
    path = tmp_path / "hostile.json"
    path.write_bytes(bundle)
    result = caution(capsys, "secret", "inspect", str(path), *_trusted(nsm_dir))
    assert result.code == 0, result.err
    assert not any(c in result.err for c in "\x1b\r\u202e")
    lines = result.err.splitlines()
    assert forged not in lines and not any(line.startswith("Keymaker proof verified (PCR set 9")
                                           for line in lines)
    assert any("\\x1b[2J\\x1b[H\\r\\nKeymaker proof verified (PCR set 9" in line for line in lines)
