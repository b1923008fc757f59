"""`caution secret new` (cli.md §3): ask a Keymaker for a quorum and save the bundle.

Everything that can fail locally (options, keyring, eligibility, parameters, PCR policy, trust
root, output target) is checked before the Keymaker is called: a one-shot Keymaker must not be
spent on a local mistake. The response is then checked (keymaker.md §8.3) and, for V1, its proof
verified (§8.2) before anything is written.
"""

from __future__ import annotations

import ipaddress
import os
import sys
import time
from pathlib import Path
from typing import List, Optional
from urllib.parse import urlsplit

import typer

from locksmith.core.bundle.checks import TEST_SECRET_FINGERPRINT
from locksmith.core.bundle.model import BundleV1
from locksmith.core.openpgp.certs import load_certificates
from locksmith.core.openpgp.errors import OpenPGPError
from locksmith.core.openpgp.normalise import NormalisedKeyring, normalise_keyring
from locksmith.personalities.caution import ui
from locksmith.personalities.caution.bundles import (
    ALLOW_DEBUG_OPTION, DEFAULT_BUNDLE, POLICY_OPTION, TEST_SECRET_WARNING, TRUST_ROOT_OPTION,
    UNSAFE_NO_POLICY_OPTION, ProofInputs, ProofOptions, verify_proof,
)
from locksmith.personalities.caution.keymaker_client import (
    QuorumRequest, check_response, post_request,
)
from locksmith.personalities.caution.ui import CliError, UsageError
from locksmith.personalities.files import write_atomic

MAX_HOLDERS = 254
NO_ELIGIBLE_HEADER = ("Keyring has no Keymaker-eligible certificates (each needs signing + "
                      "authentication + storage-encryption subkeys):")
NO_ELIGIBLE = ("keyring contains no Keymaker-eligible public certificates (each certificate "
               "needs signing, authentication, and storage-encryption keys)")
V0_WARNING = ("v0 bundles carry no Keymaker proof; the result is only as trustworthy as the "
              "connection to KEYMAKER_URL")
REPOSITORY_MARKERS = (Path("Procfile"), Path("caution.hcl"), Path(".caution/deployment.json"))


def _label(name: Optional[str], entries: List[str]) -> dict[str, str]:
    label: dict[str, str] = {}
    for entry in entries:
        key, sep, value = entry.partition("=")
        if not sep or not key:
            raise UsageError(f"--label '{entry}' must be KEY=VALUE")
        if key in label:
            raise UsageError(f"--label key '{key}' given more than once")
        label[key] = value
    if name is not None:
        if "name" in label:
            raise UsageError("--name and --label name=... cannot both be given")
        label["name"] = name
    return label


def _warn_if_unauthenticated(url: str, format_: str) -> None:
    parts = urlsplit(url)
    if parts.scheme != "http":
        return
    host = parts.hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        extra = "; with --format v0 nothing else protects the result" if format_ == "v0" else ""
        ui.warn(f"KEYMAKER_URL uses plain http:// to {host}: the transport is unauthenticated"
                f"{extra}")


def _read_keyring(path: Path, now: int) -> NormalisedKeyring:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CliError(f"Failed to read keyring file: {path}", [exc.strerror or str(exc)]) from None
    try:
        keyring = normalise_keyring(data, now)
    except OpenPGPError as exc:
        raise CliError("Failed to parse keyring as OpenPGP public certificates",
                       [str(exc)]) from None
    if keyring.had_secret:
        ui.warn(f"{path} contains secret key material; only the public parts are used")
    return keyring


def _report_eligibility(keyring: NormalisedKeyring) -> None:
    lines = [f"  - {v.display_name} \u2014 missing: {', '.join(v.missing)}"
             for v in keyring.ineligible]
    if not keyring.eligible:
        ui.info(NO_ELIGIBLE_HEADER)
        for line in lines or ["  (no certificates found in keyring)"]:
            ui.info(line)
        raise CliError(NO_ELIGIBLE)
    if lines:
        ui.info(f"Warning: {len(lines)} certificate(s) in the keyring lack required subkeys and "
                "will be excluded from the quorum:")
        for line in lines:
            ui.info(line)


def _parameters(eligible: int, threshold: Optional[int], max_: Optional[int]) -> tuple[int, int]:
    if eligible > MAX_HOLDERS:
        raise CliError("keyring contains more than 254 Keymaker-eligible public certificates")
    if threshold is None and eligible > 1:
        raise UsageError("--threshold is required when the keyring has more than one holder")
    t = threshold if threshold is not None else 1
    m = max_ if max_ is not None else eligible
    if m != eligible:
        raise UsageError(
            f"--max ({m}) must match the number of Keymaker-eligible public certificates in the "
            f"keyring ({eligible}); use --max {eligible}, or pass a keyring with exactly {m} "
            "eligible certificate(s)")
    if not 1 <= t <= m:
        raise UsageError(f"--threshold must be between 1 and --max (got threshold={t}, max={m})")
    return t, m


def _exists(path: Path) -> CliError:
    return CliError(f"{path} already exists; pass --force to replace it (the old bundle is "
                    "needed to decrypt secrets encrypted to it)")


def _target(output: Optional[Path], force: bool) -> Optional[Path]:
    """The file to write (step 11), or None for stdout; an existing file needs --force."""
    target = output
    if target is None and any(marker.exists() for marker in REPOSITORY_MARKERS):
        target = DEFAULT_BUNDLE
    if target is not None and not force and (target.exists() or target.is_symlink()):
        raise _exists(target)
    return target


def new(
    keyring: Path = typer.Argument(..., metavar="KEYRING",
                                   help="Armored (one or more blocks) or binary certificates."),
    threshold: Optional[int] = typer.Option(None, "--threshold", metavar="T",
                                            help="Shares needed to unlock (needs --max)."),
    max_: Optional[int] = typer.Option(None, "--max", metavar="M",
                                       help="Number of holders (needs --threshold)."),
    format_: str = typer.Option("v1", "--format", metavar="v1|v0",
                                help="v1 (proofed, default) or v0 for v0-only Keymakers."),
    name: Optional[str] = typer.Option(None, "--name", help="Shorthand for --label name=NAME."),
    labels: Optional[List[str]] = typer.Option(None, "--label", metavar="KEY=VALUE",
                                               help="Bundle label entry (repeatable)."),
    keymaker_pcr_policy: Optional[Path] = POLICY_OPTION,
    unsafe_no_keymaker_policy: bool = UNSAFE_NO_POLICY_OPTION,
    trust_root: Optional[Path] = TRUST_ROOT_OPTION,
    allow_debug_enclave: bool = ALLOW_DEBUG_OPTION,
    output: Optional[Path] = typer.Option(None, "--output", metavar="FILE",
                                          help="Where to save the bundle."),
    force: bool = typer.Option(False, "--force", help="Allow replacing an existing bundle."),
    no_upload: bool = typer.Option(False, "--no-upload",
                                   help="Accepted for compatibility; nothing is uploaded."),
) -> None:
    """Create a quorum with a Keymaker (KEYMAKER_URL) and save the bundle."""
    if format_ not in ("v1", "v0"):
        raise UsageError(f"invalid --format value '{format_}' (expected v1 or v0)")
    if threshold is not None and max_ is None:
        raise UsageError("--threshold requires --max")
    if max_ is not None and threshold is None:
        raise UsageError("--max requires --threshold")
    label = _label(name, list(labels or []))

    url = os.environ.get("KEYMAKER_URL", "")
    if not url:
        raise CliError("KEYMAKER_URL environment variable is required")
    _warn_if_unauthenticated(url, format_)
    normalised = _read_keyring(keyring, int(time.time()))
    _report_eligibility(normalised)
    t, m = _parameters(len(normalised.eligible), threshold, max_)

    proof: Optional[ProofInputs] = None
    if format_ == "v1":
        proof = ProofOptions(keymaker_pcr_policy, trust_root, allow_debug_enclave,
                             unsafe_no_keymaker_policy).load()
    target = _target(output, force)
    ui.info(f"Generating quorum (threshold={t}, max={m})...")
    if format_ == "v1":
        request = QuorumRequest.v1(label, t, m, normalised.v1_entries())
    else:
        request = QuorumRequest.v0(label, t, m, normalised.v0_keyring())
    bundle = check_response(request, post_request(url, request))
    if isinstance(bundle, BundleV1):
        assert proof is not None
        verify_proof(bundle, proof)
    else:
        ui.warn(V0_WARNING)
    if load_certificates(bundle.public_key)[0].fingerprint == TEST_SECRET_FINGERPRINT:
        ui.warn(TEST_SECRET_WARNING)
    _save(bundle.to_json(), target, force)


NOT_A_REPOSITORY_HINT = (
    "A Caution repository has a Procfile, caution.hcl or .caution/deployment.json in the "
    "current directory (or use --workdir). Save this bundle as .caution/quorum-bundle.json there "
    "(e.g. redirect stdout to it), where 'secret encrypt' and 'send-shard' look for it; next "
    "time, --output FILE writes the file directly.")


def _save(text: str, target: Optional[Path], force: bool) -> None:
    if target is None:
        ui.info("Warning: not in a Caution repository, outputting bundle to stdout")
        ui.info(NOT_A_REPOSITORY_HINT)
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
        return
    try:
        write_atomic(target, text.encode("utf-8"), mode=0o644, replace=force)
    except FileExistsError:
        raise _exists(target) from None
    except OSError as exc:
        raise CliError(f"failed to write {target}", [exc.strerror or str(exc)]) from None
    ui.info(f"Saved to: {target}")
