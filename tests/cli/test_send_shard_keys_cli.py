"""`send-shard` with what holders bring: passphrase-protected keys, V1 and ImportedV0 bundles
(their hash travels in Q), and a v0 bundle whose keyring order differs from its metadata."""

from __future__ import annotations

import getpass
import time
from pathlib import Path

import pytest

from locksmith.core.attestation.nsm_simulated import SimulatedNsm
from locksmith.core.bundle.checks import CheckedBundle, check_bundle
from locksmith.core.bundle.model import BundleV0, BundleV1, ImportedV0, OpenPGPKey
from locksmith.core.canonical_cbor import bundle_hash, imported_v0_content_hash
from locksmith.core.keymaker import request as km
from locksmith.core.keymaker.quorum import generate_quorum
from locksmith.core.openpgp.armor import armor
from locksmith.core.openpgp.certs import load_certificates
from locksmith.personalities.keymaker.service import KeymakerService
from tests.cli.enclave_harness import running
from tests.cli.send_shard_kit import SENDING, Capsys, lines, send
from tests.core.openpgp.gpgkit import gpg_export, gpg_key
from tests.keymaker_helpers import Holder, keygen_holders

# --- passphrase-protected keys ---------------------------------------------------------------


@pytest.fixture(scope="module")
def locked(tmp_path_factory: pytest.TempPathFactory) -> tuple[CheckedBundle, Path, Path, str]:
    """A 1-of-1 quorum for a GnuPG holder whose secret keys are protected by `secret`."""
    fpr = gpg_key("locked")
    root = tmp_path_factory.mktemp("locked")
    keyring = armor("PUBLIC KEY BLOCK", gpg_export("locked"))
    bundle = generate_quorum(keyring, 1, 1, now=int(time.time()), secret=bytes(range(32)))
    path = root / "bundle.json"
    path.write_text(bundle.to_json())
    private = root / "locked.private.gpg"
    private.write_bytes(gpg_export("locked", "--export-secret-keys", passphrase="secret"))
    return check_bundle(bundle), path, private, fpr


def test_a_protected_key_is_unlocked_once_at_the_terminal(
        capsys: Capsys, locked: tuple[CheckedBundle, Path, Path, str], nsm_dir: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    checked, bundle, private, _ = locked
    prompts: list[str] = []

    def terminal(prompt: str = "Password: ", stream: object = None) -> str:
        prompts.append(prompt)
        return "secret"

    monkeypatch.setattr(getpass, "getpass", terminal)
    with running(checked, SimulatedNsm.open(nsm_dir)) as server:
        result = send(capsys, server.address, nsm_dir, "--keyring", str(private), holder="",
                      bundle=bundle)
    assert result.code == 0, result.err
    assert len(prompts) == 1  # the passphrase that opened the share also unlocks the signing key
    assert prompts[0].startswith("Unlock private key (") and prompts[0].endswith(")\n\nPassword: ")
    assert "secret" not in result.err
    assert lines(result)[-1] == "Shard accepted, 0 remaining shards until reconstitution"


def test_three_wrong_passphrases_stop_before_connecting(
        capsys: Capsys, locked: tuple[CheckedBundle, Path, Path, str], nsm_dir: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    checked, bundle, private, _ = locked
    prompts: list[str] = []

    def terminal(prompt: str = "Password: ", stream: object = None) -> str:
        prompts.append(prompt)
        return f"wrong {len(prompts)}"

    monkeypatch.setattr(getpass, "getpass", terminal)
    with running(checked, SimulatedNsm.open(nsm_dir)) as server:
        result = send(capsys, server.address, nsm_dir, "--keyring", str(private), holder="",
                      bundle=bundle)
        assert server.seen == []
    assert result.code == 1
    assert len(prompts) == 3 and len(set(prompts)) == 1
    assert lines(result)[-1] == "error: too many failed attempts"
    assert "wrong 1" not in result.err and SENDING[:20] not in result.err


# --- V1 bundles --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def v1(nsm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[BundleV1, Path, list[Holder]]:
    holders = keygen_holders(3, "v1send")
    service = KeymakerService(SimulatedNsm.open(nsm_dir), "simulated")
    request = km.V1Request(bytes(range(16)), {"name": "send me"},
                           tuple(OpenPGPKey(h.public) for h in holders), 2, 3)
    certs = [load_certificates(h.public)[0] for h in holders]
    bundle = BundleV1.from_json(service.generate(request, certs))
    path = tmp_path_factory.mktemp("v1") / "bundle.json"
    path.write_text(bundle.to_json())
    return bundle, path, holders


def test_a_v1_bundle_is_proof_checked_and_its_hash_is_sent(
        capsys: Capsys, v1: tuple[BundleV1, Path, list[Holder]], nsm_dir: Path,
        tmp_path: Path) -> None:
    bundle, path, holders = v1
    private = tmp_path / "h1.private.asc"
    private.write_bytes(holders[1].private)
    with running(check_bundle(bundle), SimulatedNsm.open(nsm_dir)) as server:
        result = send(capsys, server.address, nsm_dir, "--keyring", str(private), holder="",
                      bundle=path, *("--keymaker-pcr-policy",
                                     str(nsm_dir / "keymaker-pcr-policy.json")))
        assert result.code == 0, result.err
        assert [(s.holder, s.threshold, s.bundle_hash) for s in server.seen] == [
            (1, 2, bundle_hash(bundle.data).hex())]
    assert lines(result)[0].startswith("warning: trusting a development root")
    assert lines(result)[1].startswith("Keymaker proof verified (PCR set 0")
    assert sum("trusting a development root" in line for line in lines(result)) == 1
    assert lines(result)[-1] == "Shard accepted, 1 remaining shards until reconstitution"


def test_a_v1_proof_that_fails_stops_before_connecting(
        capsys: Capsys, v1: tuple[BundleV1, Path, list[Holder]], nsm_dir: Path,
        tmp_path: Path) -> None:
    bundle, path, holders = v1
    private = tmp_path / "h0.private.asc"
    private.write_bytes(holders[0].private)
    with running(check_bundle(bundle), SimulatedNsm.open(nsm_dir)) as server:
        result = send(capsys, server.address, nsm_dir, "--keyring", str(private), holder="",
                      bundle=path, trust=False)
        assert server.seen == []
    assert result.code == 1
    assert "Sending shard" not in result.err


def test_an_imported_v0_bundle_sends_its_content_hash(capsys: Capsys, v0: CheckedBundle,
                                                      nsm_dir: Path, tmp_path: Path) -> None:
    assert isinstance(v0.bundle, BundleV0)
    imported = ImportedV0(v0.bundle, 2, tuple(OpenPGPKey(c.armored()) for c in v0.holders))
    path = tmp_path / "imported.json"
    path.write_text(imported.to_json())
    with running(check_bundle(imported), SimulatedNsm.open(nsm_dir)) as server:
        result = send(capsys, server.address, nsm_dir, holder="bob", bundle=path)
        assert result.code == 0, result.err
        assert [(s.holder, s.threshold, s.bundle_hash) for s in server.seen] == [
            (1, 2, imported_v0_content_hash(imported))]


def test_a_v0_keyring_order_that_differs_from_the_metadata_warns_and_the_enclave_refuses(
        capsys: Capsys, v0: CheckedBundle, nsm_dir: Path, tmp_path: Path) -> None:
    assert isinstance(v0.bundle, BundleV0)
    swapped_keyring = "".join(c.armored() for c in v0.holders[::-1])
    swapped = BundleV0.new(dict(v0.bundle.label), swapped_keyring, v0.bundle.shardfile,
                           v0.bundle.public_key)
    path = tmp_path / "swapped.json"
    path.write_text(swapped.to_json())
    with running(check_bundle(swapped), SimulatedNsm.open(nsm_dir)) as server:
        result = send(capsys, server.address, nsm_dir, bundle=path)
    assert ("warning: this v0 bundle's keyring order differs from its encrypted metadata; a "
            "strict enclave will reject the share") in lines(result)
    assert result.code == 1
    assert lines(result)[-1] == ("error: Shard rejected by enclave: Share coordinate does not "
                                 "match the holder's bundle position")
