"""`caution procfile check [PROCFILE] [--containerfile FILE]` (cli.md §7.3, §8).

The checks themselves are `locksmith.core.app.procfile`; this module reads the files and reports.
Every finding is printed (`error: …`, `warning: …` on stderr) before the exit status, so one run
shows everything to fix. The Containerfile is read only when Locksmith is enabled, because only
then does the image have to carry the bundle and secrets. The bundle is read to learn whether it
is V1 (whose image also needs the Keymaker PCR policy) and given the structural and public test
secret checks every command that loads one applies (cli.md §1), but its Keymaker proof is not
verified: a bundle that cannot be read or checked is a warning, as the Procfile check is still
useful without it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Optional

import typer

from locksmith.core.app.procfile import (
    Finding, ProcfileError, check_containerfile, check_procfile, parse_procfile,
)
from locksmith.core.bundle.checks import check_bundle
from locksmith.core.bundle.model import BundleError, BundleV1, parse_bundle
from locksmith.personalities.caution import ui
from locksmith.personalities.caution.bundles import DEFAULT_BUNDLE, TEST_SECRET_WARNING
from locksmith.personalities.caution.ui import CliError

procfile_app = typer.Typer(no_args_is_help=True, add_completion=False, rich_markup_mode=None)

CONTAINERFILE_NAMES = (Path("Containerfile"), Path("Dockerfile"))
MAX_TEXT_FILE = 1024 * 1024  # a Procfile or Containerfile is a few hundred bytes
MAX_BUNDLE_FILE = 16 * 1024 * 1024  # 254 holders' certificates fit with room to spare
NO_CONTAINERFILE = ("no Containerfile or Dockerfile found; the image's ADD lines for the quorum "
                    "bundle and secrets were not checked")


class Unreadable(Exception):
    """A file that cannot be used; the message is complete and names the file."""


def read_file(path: Path, kind: str, limit: int) -> bytes:
    """A regular file's bytes, at most `limit` of them (a FIFO or device would block or flood)."""
    try:
        with open(path, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                raise Unreadable(f"cannot read {kind} {path}: not a regular file")
            data = handle.read(limit + 1)
    except FileNotFoundError:
        raise Unreadable(f"{kind} not found: {path}") from None
    except OSError as exc:
        raise Unreadable(f"cannot read {kind} {path}: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise Unreadable(f"{kind} {path} is larger than {limit // (1024 * 1024)} MiB")
    return data


def read_text(path: Path, kind: str) -> str:
    data = read_file(path, kind, MAX_TEXT_FILE)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise Unreadable(f"{kind} {path} is not valid UTF-8 (line {line})") from None


def _bundle_findings(findings: list[Finding]) -> bool:
    """Whether `.caution/quorum-bundle.json` is V1, adding warnings for a bundle that cannot be
    read, fails the structural checks (locksmithd would refuse it) or uses the public test secret
    (it is about to be deployed)."""
    if not os.path.lexists(DEFAULT_BUNDLE):
        return False
    try:
        bundle = parse_bundle(read_file(DEFAULT_BUNDLE, "quorum bundle", MAX_BUNDLE_FILE))
    except (Unreadable, BundleError) as exc:
        findings.append(Finding.warning(
            f"could not read the quorum bundle {DEFAULT_BUNDLE} ({exc}); whether the image also "
            "needs the Keymaker PCR policy (V1 bundles) was not checked"))
        return False
    ui.verbose(f"{DEFAULT_BUNDLE} is a {bundle.generation} bundle")
    try:
        if check_bundle(bundle).uses_public_test_secret:
            findings.append(Finding.warning(TEST_SECRET_WARNING))
    except BundleError as exc:
        findings.append(Finding.warning(f"invalid quorum bundle {DEFAULT_BUNDLE}: {exc}"))
    return isinstance(bundle, BundleV1)


def _containerfile_findings(given: Path | None, v1_bundle: bool) -> list[Finding]:
    path = given
    if path is None:
        path = next((name for name in CONTAINERFILE_NAMES if os.path.lexists(name)), None)
        if path is None:
            return [Finding.warning(NO_CONTAINERFILE)]
    ui.verbose(f"checking the ADD and COPY lines of {path}")
    try:
        text = read_text(path, "Containerfile")
    except Unreadable as exc:
        return [Finding.error(str(exc))]
    return list(check_containerfile(text, str(path), v1_bundle=v1_bundle))


def _report(findings: list[Finding]) -> None:
    for finding in findings:
        if finding.severity == "error":
            ui.print_error(CliError(finding.message))
        else:
            ui.warn(finding.message)


@procfile_app.command("check")
def check(
    procfile: Path = typer.Argument(Path("Procfile"), metavar="PROCFILE",
                                    help="The Procfile to check."),
    containerfile: Optional[Path] = typer.Option(
        None, "--containerfile", metavar="FILE",
        help="The image's build file (default: Containerfile, else Dockerfile)."),
) -> None:
    """Check a Procfile (ports, http_port, binary, locksmith) and, when locksmith is enabled,
    that the Containerfile installs the quorum bundle, secrets and Keymaker PCR policy."""
    try:
        parsed = parse_procfile(read_text(procfile, "Procfile"))
    except Unreadable as exc:
        raise CliError(str(exc)) from None
    except ProcfileError as exc:
        raise CliError(f"invalid Procfile {procfile}: {exc}") from None
    findings = list(check_procfile(parsed))
    if parsed.locksmith_enabled:
        v1_bundle = _bundle_findings(findings)
        findings += _containerfile_findings(containerfile, v1_bundle)
    _report(findings)
    if any(finding.severity == "error" for finding in findings):
        raise typer.Exit(1)
    if not findings:
        enabled = "enabled" if parsed.locksmith_enabled else "not enabled"
        ui.info(f"{procfile} OK (locksmith {enabled})")
