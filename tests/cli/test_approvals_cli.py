"""`caution secret approve` with a key file and `caution secret approvals check`
(docs/forwarding.md §7), in-process, over a V1 2-of-3 bundle made by a simulated-NSM Keymaker.

The image being approved is another simulated enclave's (`other_nsm_dir`): the case the
approvals exist for, an upgrade to code with other PCRs. Approvals of strangers and of other
bundles, which `approve` itself refuses to make, are made with the core signing code.
"""

from __future__ import annotations

import json
import shutil
import stat
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from locksmith.core.attestation.nsm_simulated import SimulatedNsm
from locksmith.core.attestation.pcr_policy import TrustedHashes
from locksmith.core.bundle.model import BundleV1, OpenPGPKey
from locksmith.core.canonical_cbor import bundle_hash
from locksmith.core.forwarding.approval import (
    PcrSet, Statement, format_time, parse_time, statement_of,
)
from locksmith.core.keymaker import request as km
from locksmith.core.openpgp.certs import load_certificates
from locksmith.personalities.keymaker.service import KeymakerService
from tests.cli.clirun import Result, caution
from tests.conftest import CAUTION_V0
from tests.core.forwarding.approval_kit import signed, signing_key, stranger
from tests.keymaker_helpers import Holder, keygen_holders

Capsys = pytest.CaptureFixture[str]
UNTIL = "2030-01-01"
UNTIL_TEXT = "2030-01-01T23:59:59Z"


@dataclass(frozen=True)
class Repo:
    """A bundle, its three holders' keys and the PCRs of the image to approve."""

    bundle: BundleV1
    holders: list[Holder]
    image: PcrSet
    nsm_dir: Path
    image_hashes: Path

    @property
    def digest(self) -> bytes:
        return bundle_hash(self.bundle.data)


@pytest.fixture(scope="module")
def repo(nsm_dir: Path, other_nsm_dir: Path) -> Repo:
    holders = keygen_holders(3, "approver")
    service = KeymakerService(SimulatedNsm.open(nsm_dir), "simulated")
    request = km.V1Request(bytes(range(16)), {"name": "fleet"},
                           tuple(OpenPGPKey(h.public) for h in holders), 2, 3)
    bundle = BundleV1.from_json(service.generate(
        request, [load_certificates(h.public)[0] for h in holders]))
    hashes = other_nsm_dir / "trusted_hashes.json"
    image = PcrSet.from_pcrs(TrustedHashes.from_json(hashes.read_bytes()).pcrs)
    return Repo(bundle, holders, image, nsm_dir, hashes)


@pytest.fixture
def project(repo: Repo, tmp_path: Path) -> Path:
    """An application repository: the bundle and policy in .caution/, the holders' keyrings."""
    caution_dir = tmp_path / ".caution"
    caution_dir.mkdir()
    (caution_dir / "quorum-bundle.json").write_text(repo.bundle.to_json())
    shutil.copy(repo.nsm_dir / "keymaker-pcr-policy.json", caution_dir)
    for k, holder in enumerate(repo.holders):
        (tmp_path / f"h{k}.private.asc").write_bytes(holder.private)
    return tmp_path


def pcr_args(pcrs: PcrSet) -> list[str]:
    return ["--pcr0", pcrs.pcr0.hex(), "--pcr1", pcrs.pcr1.hex(), "--pcr2", pcrs.pcr2.hex()]


def run(capsys: Capsys, project: Path, repo: Repo, *args: str) -> Result:
    return caution(capsys, "--workdir", str(project), "secret", *args, "--trust-root",
                   str(repo.nsm_dir / "root.pem"))


def approve(capsys: Capsys, project: Path, repo: Repo, k: int, *extra: str,
            pcrs: PcrSet | None = None) -> Result:
    return run(capsys, project, repo, "approve", "--keyring", f"h{k}.private.asc",
               *pcr_args(pcrs or repo.image), "--expires", UNTIL, *extra)


def check(capsys: Capsys, project: Path, repo: Repo, *extra: str) -> Result:
    return run(capsys, project, repo, "approvals", "check", *extra)


def default_path(repo: Repo, k: int, pcrs: PcrSet | None = None) -> str:
    return f".caution/approvals/{repo.holders[k].fingerprint}-{(pcrs or repo.image).set_id}.asc"


def errors(result: Result) -> list[str]:
    return [line for line in result.err.splitlines() if line.startswith("error:")]


def write_approval(project: Path, name: str, text: str) -> None:
    directory = project / ".caution" / "approvals"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_text(text)


# --- approve ---------------------------------------------------------------------------------


def test_approve_with_a_key_file_writes_the_holders_approval_under_caution_approvals(
        capsys: Capsys, project: Path, repo: Repo) -> None:
    result = approve(capsys, project, repo, 1)
    assert result.code == 0, result.err
    fpr = repo.holders[1].fingerprint
    path = default_path(repo, 1)
    assert result.err.splitlines()[-1] == (
        f"Approval by holder 1 ({fpr}) of PCR set {repo.image.set_id} written to {path}, "
        f"expires {UNTIL_TEXT}")
    written = project / path
    assert stat.S_IMODE(written.stat().st_mode) == 0o644
    assert statement_of(written.read_text()) == Statement(repo.digest, repo.image,
                                                          parse_time(UNTIL_TEXT))
    assert result.out == ""


def test_approve_reads_the_pcrs_from_the_trusted_hashes_file_by_default(
        capsys: Capsys, project: Path, repo: Repo) -> None:
    shutil.copy(repo.image_hashes, project / ".caution" / "trusted_hashes.json")
    result = run(capsys, project, repo, "approve", "--keyring", "h0.private.asc")
    assert result.code == 0, result.err
    assert (project / default_path(repo, 0)).is_file()
    assert "expires " in result.err.splitlines()[-1]


def test_approve_expires_in_90_days_unless_told_otherwise(capsys: Capsys, project: Path,
                                                          repo: Repo) -> None:
    before = int(time.time())
    result = run(capsys, project, repo, "approve", "--keyring", "h2.private.asc",
                 *pcr_args(repo.image))
    assert result.code == 0, result.err
    statement = statement_of((project / default_path(repo, 2)).read_text())
    assert statement is not None
    assert before + 90 * 86400 <= statement.expires <= int(time.time()) + 90 * 86400


def test_holder_chooses_which_holder_of_a_shared_keyring_signs(capsys: Capsys, project: Path,
                                                               repo: Repo) -> None:
    both = project / "both.private.asc"
    both.write_bytes(repo.holders[2].private + b"\n" + repo.holders[1].private)
    first = run(capsys, project, repo, "approve", "--keyring", "both.private.asc",
                *pcr_args(repo.image), "--expires", UNTIL)
    assert first.code == 0 and "by holder 1 (" in first.err, first.err
    chosen = run(capsys, project, repo, "approve", "--keyring", "both.private.asc",
                 *pcr_args(repo.image), "--expires", UNTIL,
                 "--holder", repo.holders[2].fingerprint.lower())
    assert chosen.code == 0 and "by holder 2 (" in chosen.err, chosen.err


def test_an_existing_approval_is_replaced_only_with_force(capsys: Capsys, project: Path,
                                                         repo: Repo) -> None:
    assert approve(capsys, project, repo, 0).code == 0
    path = project / default_path(repo, 0)
    old = path.read_text()
    again = approve(capsys, project, repo, 0, "--expires", "2031-01-01")
    assert (again.code, errors(again)) == (
        1, [f"error: {default_path(repo, 0)} already exists; pass --force to replace it"])
    assert path.read_text() == old
    forced = approve(capsys, project, repo, 0, "--expires", "2031-01-01", "--force")
    assert forced.code == 0, forced.err
    assert "expires: 2031-01-01T23:59:59Z" in path.read_text()


KEY = ["--keyring", "h0.private.asc"]
IMAGE = "image"  # stands for the three --pcrN options of the image to approve


@pytest.mark.parametrize("args,code,message", [
    ([*KEY, "--pcr0", "ab", "--pcr1", "00" * 48, "--pcr2", "00" * 48], 2,
     "invalid --pcr0 value: expected 96 hex digits (48 bytes)"),
    ([*KEY, "--pcr0", "01" * 48], 2, "--pcr0, --pcr1 and --pcr2 must be given together"),
    ([*KEY, IMAGE, "--expires", "2020-01-01"], 1, "--expires is in the past"),
    ([*KEY, IMAGE, "--expires", "0d"], 1, "--expires is in the past"),
    ([*KEY, IMAGE, "--expires", "2030-02-30"], 2,
     "invalid --expires '2030-02-30': expected YYYY-MM-DD, YYYY-MM-DDTHH:MM:SSZ or a number of "
     "days such as 90d"),
    ([*KEY, "--pcr0", "00" * 48, "--pcr1", "00" * 48, "--pcr2", "00" * 48], 1,
     "refusing to approve a debug-mode (all-zero) PCR set"),
    ([*KEY, IMAGE, "--holder", "AB" * 20], 1,
     f"--holder {'AB' * 20} is not a holder of this bundle"),
    ([*KEY, IMAGE, "--bundle", "v0.json"], 1,
     "key forwarding needs a bundle with a threshold (V1 or ImportedV0); v0.json is a v0 bundle"),
    ([*KEY, IMAGE, "--bundle", "broken.json"], 1, None),
    ([*KEY, IMAGE, "--bundle", "missing.json"], 1, "quorum bundle not found: missing.json"),
    ([*KEY, "--trusted-hashes", "broken.json"], 1, None),
    ([*KEY], 1, "No trusted PCR values: pass --pcr0/--pcr1/--pcr2 or create "
                ".caution/trusted_hashes.json"),
    (["--keyring", "stranger.private.asc", IMAGE], 1,
     "no key in stranger.private.asc belongs to a holder of this bundle"),
], ids=["bad hex", "one pcr", "past date", "0 days", "no such date", "all zero", "not a holder",
        "v0 bundle", "malformed bundle", "missing bundle", "malformed trusted hashes",
        "no pcrs at all", "a stranger's key"])
def test_bad_input_is_one_error_line_and_writes_nothing(
        capsys: Capsys, project: Path, repo: Repo, args: list[str], code: int,
        message: str | None) -> None:
    shutil.copy(CAUTION_V0 / "bundle.json", project / "v0.json")
    (project / "broken.json").write_text("{not json")
    (project / "stranger.private.asc").write_text(stranger())
    expanded = [a for arg in args for a in (pcr_args(repo.image) if arg == IMAGE else [arg])]
    result = run(capsys, project, repo, "approve", *expanded)
    assert result.code == code, result.err
    assert len(errors(result)) == 1 and result.err.splitlines()[-1] == errors(result)[0]
    if message is not None:
        assert errors(result) == [f"error: {message}"]
    assert not (project / ".caution" / "approvals").exists()


# --- approvals check -------------------------------------------------------------------------


def test_two_distinct_holders_of_a_2_of_3_bundle_approve_the_image(
        capsys: Capsys, project: Path, repo: Repo) -> None:
    for k in (2, 0):
        assert approve(capsys, project, repo, k).code == 0
    result = check(capsys, project, repo, *pcr_args(repo.image))
    assert result.code == 0, result.err
    said = result.err.splitlines()
    header = next(i for i, line in enumerate(said) if line.startswith("PCR set "))
    assert said[header:] == [
        f"PCR set {repo.image.set_id} (pcr0 {repo.image.pcr0.hex()[:16]}…): 2 of 2 holders — "
        "approved",
        f"  holder 0 {repo.holders[0].fingerprint} expires {UNTIL_TEXT}",
        f"  holder 2 {repo.holders[2].fingerprint} expires {UNTIL_TEXT}",
    ]


def test_one_holder_is_not_enough_and_exits_1_when_the_set_is_asked_about(
        capsys: Capsys, project: Path, repo: Repo) -> None:
    assert approve(capsys, project, repo, 1).code == 0
    listed = check(capsys, project, repo)
    assert listed.code == 0, listed.err
    assert "1 of 2 holders — not approved" in listed.err
    asked = check(capsys, project, repo, "--trusted-hashes", str(repo.image_hashes))
    assert asked.code == 1
    assert asked.err.splitlines()[-1] == (
        f"error: PCR set {repo.image.set_id} is not approved (1 of 2 holder approvals)")


def test_an_image_nobody_approved_is_reported_with_zero_holders(
        capsys: Capsys, project: Path, repo: Repo) -> None:
    result = check(capsys, project, repo, *pcr_args(repo.image))
    assert result.code == 1
    assert "No approval files in .caution/approvals" in result.err
    assert f"PCR set {repo.image.set_id} (pcr0 {repo.image.pcr0.hex()[:16]}…): 0 of 2 " \
           "holders — not approved" in result.err


def test_discarded_files_are_listed_with_their_reasons_and_do_not_count(
        capsys: Capsys, project: Path, repo: Repo) -> None:
    now = int(time.time())
    assert approve(capsys, project, repo, 0).code == 0
    assert approve(capsys, project, repo, 0, "--expires", "2029-06-01",
                   "--output", ".caution/approvals/0-again.asc").code == 0
    assert approve(capsys, project, repo, 1, "--expires", "30d").code == 0
    expires = now + 3 * 86400
    write_approval(project, "stranger.asc", signed(signing_key(stranger()),
                                                   Statement(repo.digest, repo.image, expires)))
    write_approval(project, "other-bundle.asc", signed(
        signing_key(repo.holders[2].private, now),
        Statement(b"\x42" * 32, repo.image, expires), created=now))
    write_approval(project, "junk.asc", "hello\n")
    write_approval(project, "notes.txt", "not an approval, and not read\n")
    result = check(capsys, project, repo, *pcr_args(repo.image), "--at", "2029-05-01T00:00:00Z")
    assert result.code == 1
    thirty_days = statement_of((project / default_path(repo, 1)).read_text())
    assert thirty_days is not None
    said = result.err.splitlines()
    counted = f"  holder 0 {repo.holders[0].fingerprint} expires {UNTIL_TEXT}"
    assert said[said.index(counted) - 1].endswith(": 1 of 2 holders — not approved")
    assert said[said.index(counted) + 1:] == [
        ".caution/approvals/0-again.asc: duplicate approval by holder 0",
        f"{default_path(repo, 1)}: expired {format_time(thirty_days.expires)}",
        ".caution/approvals/junk.asc: not an approval (malformed cleartext signed message)",
        ".caution/approvals/other-bundle.asc: approval for another bundle",
        ".caution/approvals/stranger.asc: not signed by a holder of this bundle",
        f"error: PCR set {repo.image.set_id} is not approved (1 of 2 holder approvals)",
    ]


def test_at_moves_the_clock_of_the_check(capsys: Capsys, project: Path, repo: Repo) -> None:
    for k in (0, 1):
        assert approve(capsys, project, repo, k).code == 0
    assert check(capsys, project, repo, *pcr_args(repo.image),
                 "--at", "2030-01-01T23:59:58Z").code == 0
    late = check(capsys, project, repo, *pcr_args(repo.image), "--at", "2030-01-02T01:00:00+01:00")
    assert late.code == 1
    assert f"{default_path(repo, 0)}: expired {UNTIL_TEXT}" in late.err.splitlines()
    bad = check(capsys, project, repo, "--at", "tomorrow")
    assert (bad.code, errors(bad)) == (2, ["error: invalid --at 'tomorrow': expected an RFC "
                                           "3339 time such as 2026-01-01T00:00:00Z"])


def test_json_prints_the_same_result_as_one_object_on_stdout(capsys: Capsys, project: Path,
                                                             repo: Repo) -> None:
    for k in (0, 1):
        assert approve(capsys, project, repo, k).code == 0
    write_approval(project, "junk.asc", "hello\n")
    result = check(capsys, project, repo, "--json", *pcr_args(repo.image),
                   "--at", "2029-01-01T00:00:00Z")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    assert report == {
        "bundle_hash": repo.digest.hex(), "threshold": 2, "at": "2029-01-01T00:00:00Z",
        "sets": [{
            "set_id": repo.image.set_id, "pcr0": repo.image.pcr0.hex(),
            "pcr1": repo.image.pcr1.hex(), "pcr2": repo.image.pcr2.hex(), "count": 2,
            "approved": True,
            "holders": [{"holder": k, "fingerprint": repo.holders[k].fingerprint,
                         "expires": UNTIL_TEXT, "file": default_path(repo, k)} for k in (0, 1)],
        }],
        "discarded": [{"file": ".caution/approvals/junk.asc",
                       "reason": "not an approval (malformed cleartext signed message)"}],
        "checked_set": repo.image.set_id, "approved": True,
    }
    assert "holders —" not in result.err


def test_check_refuses_a_v0_bundle(capsys: Capsys, project: Path, repo: Repo) -> None:
    shutil.copy(CAUTION_V0 / "bundle.json", project / "v0.json")
    result = check(capsys, project, repo, "--bundle", "v0.json")
    assert (result.code, errors(result)) == (1, [
        "error: key forwarding needs a bundle with a threshold (V1 or ImportedV0); v0.json is "
        "a v0 bundle"])
