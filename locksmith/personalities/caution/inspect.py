"""`caution secret inspect` (cli.md §7.1): what a bundle says, and whether it can be trusted.

Unlike `encrypt`, a failed integrity check (v0 `keyring_hash`, V1 proof) is reported next to
everything else and then turns the exit status to 1, so a user can see *what* was tampered with.
Human lines go to stderr; `--json` puts one object on stdout (cli.md §1).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import time
from pathlib import Path
from typing import Any, Optional

import typer

from locksmith.core import strictjson
from locksmith.core.attestation.verify import format_ms
from locksmith.core.bundle.checks import CheckedBundle, check_bundle
from locksmith.core.bundle.model import (
    KEYRING_CHECKSUM_MISMATCH, BundleV0, BundleV1, ImportedV0,
)
from locksmith.core.canonical_cbor import bundle_hash, imported_v0_content_hash, proof_nonce
from locksmith.core.openpgp import validity
from locksmith.core.openpgp.certs import Certificate
from locksmith.personalities.caution import ui
from locksmith.personalities.caution.bundles import (
    ALLOW_DEBUG_OPTION, POLICY_OPTION, TRUST_ROOT_OPTION, ProofOptions, read_bundle,
    verify_proof, warn_if_test_secret,
)
from locksmith.personalities.caution.ui import CliError


def _read_despite_checksum(path: Path) -> CheckedBundle | None:
    """A v0 bundle whose only fault is its keyring_hash, read for display (hash replaced)."""
    try:
        raw = strictjson.loads(path.read_bytes(), duplicates="record")
        if not isinstance(raw, dict) or {"data", "format"} & set(raw):
            return None
        keyring = raw.get("keyring")
        if not isinstance(keyring, str):
            return None
        raw["keyring_hash"] = list(hashlib.sha256(keyring.encode("utf-8")).digest())
        return check_bundle(BundleV0.from_dict(raw))
    except (OSError, ValueError):
        return None


def _holder(cert: Certificate, now: int) -> dict[str, Any]:
    verdict = validity.eligibility(cert, now)
    names = validity.valid_user_ids(cert, now) or [c.text for c in cert.user_ids]
    return {"fingerprint": cert.fingerprint, "user_id": names[0] if names else None,
            "eligible": verdict.eligible, "_why": _why(verdict)}


def _why(verdict: validity.Eligibility) -> str:
    if verdict.eligible:
        return "eligible"
    if verdict.primary is not validity.PrimaryState.LIVE:
        return f"not eligible now (primary key: {verdict.primary.value})"
    return f"not eligible now (missing: {', '.join(verdict.missing)})"


def _expiry(cert: Certificate, now: int) -> str:
    expires = validity.primary_expiration(cert, now)
    if expires is None:
        return "never expires"
    day = datetime.datetime.fromtimestamp(expires, datetime.timezone.utc).date().isoformat()
    return f"expired on {day}" if expires <= now else f"expires {day}"


def inspect(
    bundle: Path = typer.Argument(..., metavar="BUNDLE", help="Quorum bundle (v0, V1, ImportedV0)."),
    keymaker_pcr_policy: Optional[Path] = POLICY_OPTION,
    trust_root: Optional[Path] = TRUST_ROOT_OPTION,
    allow_debug_enclave: bool = ALLOW_DEBUG_OPTION,
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
) -> None:
    """Show a bundle's holders, quorum key and integrity (keyring hash or Keymaker proof)."""
    failures: list[str] = []
    keyring_hash_ok: Optional[bool] = None
    try:
        checked = read_bundle(bundle)
        keyring_hash_ok = True if isinstance(checked.bundle, BundleV0) else None
    except CliError as exc:
        fallback = _read_despite_checksum(bundle) if KEYRING_CHECKSUM_MISMATCH in str(exc) else None
        if fallback is None:
            raise
        checked, keyring_hash_ok = fallback, False
        failures.append(exc.message)
    warn_if_test_secret(checked)
    now = int(time.time())
    report: dict[str, Any] = {
        "generation": checked.generation,
        "label": dict(_label(checked)),
        "threshold": checked.threshold,
        "max": checked.max,
        "holders": [_holder(cert, now) for cert in checked.holders],
        "quorum_fingerprint": checked.quorum_certificate.fingerprint,
        "keyring_hash_ok": keyring_hash_ok,
        "bundle_hash": None,
        "proof_nonce": None,
        "proof_ok": None,
        "attestation_time": None,
    }
    proof_line = None
    if isinstance(checked.bundle, BundleV1):
        digest = bundle_hash(checked.bundle.data)
        report["bundle_hash"], report["proof_nonce"] = digest.hex(), proof_nonce(digest).hex()
        inputs = ProofOptions(keymaker_pcr_policy, trust_root, allow_debug_enclave).load()
        try:
            result = verify_proof(checked.bundle, inputs)
        except CliError as exc:
            report["proof_ok"] = False
            failures.append(exc.message)
            proof_line = f"FAILED: {exc.message}"
        else:
            report["proof_ok"], report["attestation_time"] = True, result.generated_ms
            proof_line = (f"verified (PCR set {result.set_index} of {inputs.policy_path})"
                          if result.set_index is not None else
                          "NOT AUTHENTICATED: signed by a Nitro enclave under the trust root, "
                          "but no PCR policy says which Keymaker code; any enclave could have "
                          "made this bundle")
    elif isinstance(checked.bundle, ImportedV0):
        report["bundle_hash"] = imported_v0_content_hash(checked.bundle)

    if json_out:
        public = dict(report, holders=[{k: v for k, v in h.items() if not k.startswith("_")}
                                       for h in report["holders"]])
        print(json.dumps(public, ensure_ascii=False, separators=(",", ":")), flush=True)
    else:
        _print_report(bundle, checked, report, proof_line, now)
    if failures:
        raise CliError(failures[0], failures[1:])


def _label(checked: CheckedBundle) -> Any:
    bundle = checked.bundle
    return bundle.original.label if isinstance(bundle, ImportedV0) else (
        bundle.data.label if isinstance(bundle, BundleV1) else bundle.label)


def _print_report(path: Path, checked: CheckedBundle, report: dict[str, Any],
                  proof_line: Optional[str], now: int) -> None:
    label = ", ".join(f"{k}={v}" for k, v in report["label"].items()) or "(none)"
    threshold = report["threshold"]
    quorum = (f"{threshold} of {report['max']}" if threshold is not None else
              f"unknown (a v0 bundle does not record it) of {report['max']}")
    rows = [("Bundle", str(path)), ("Generation", report["generation"]), ("Label", label),
            ("Threshold", quorum), ("Holders", str(len(report["holders"])))]
    for label_, value in rows:
        ui.info(f"{label_ + ':':<14}{value}")
    for index, holder in enumerate(report["holders"], start=1):
        ui.info(f"  {index}. {holder['fingerprint']}  {holder['user_id'] or '(no user ID)'}  "
                f"{holder['_why']}")
    quorum_cert = checked.quorum_certificate
    rows = [("Quorum key", f"{quorum_cert.fingerprint} ({_expiry(quorum_cert, now)})")]
    if report["keyring_hash_ok"] is not None:
        rows.append(("keyring_hash", "OK" if report["keyring_hash_ok"] else "MISMATCH"))
    if proof_line is not None:
        rows.append(("Proof", proof_line))
        if report["attestation_time"] is not None:
            ms = report["attestation_time"]
            rows.append(("Generated", f"{format_ms(ms)} ({ms} ms)"))
    if isinstance(checked.bundle, BundleV1):
        rows += [("Bundle hash", report["bundle_hash"]), ("Proof nonce", report["proof_nonce"])]
    elif isinstance(checked.bundle, ImportedV0):
        rows.append(("Content hash", report["bundle_hash"]))
    for label_, value in rows:
        ui.info(f"{label_ + ':':<14}{value}")
