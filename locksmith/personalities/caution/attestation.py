"""`caution attestation verify | simulate` (cli.md §7.2).

`verify` runs attestation.md §3 on a document file and prints the verified fields; `simulate`
issues a document from the simulated NSM (attestation.md §7) to stdout. Human text goes to
stderr, machine data (`--json`, the document) to stdout.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Optional

import typer

from locksmith.core.attestation import verify as att
from locksmith.core.attestation.nsm import NsmError
from locksmith.core.attestation.pcr_policy import (
    PcrPolicy,
    PcrPolicyError,
    TrustedHashes,
    TrustedHashesError,
    parse_pcr_hex,
)
from locksmith.personalities.caution import ui
from locksmith.personalities.caution.ui import CliError, UsageError

attestation_app = typer.Typer(no_args_is_help=True, add_completion=False, rich_markup_mode=None)

UNDECODABLE = "could not decode attestation document (expected CBOR, hex or base64)"
DEBUG_HINT = "; pass --allow-debug-enclave for development"
MAX_DOC_FILE = 1024 * 1024
_HEX = re.compile(rb"[0-9a-fA-F]*")
_BASE64 = re.compile(rb"[A-Za-z0-9+/]*={0,2}")
_WHITESPACE = re.compile(rb"[ \t\n\r\f\v]+")


# --------------------------------------------------------------------------- helpers


def decode_document_file(data: bytes) -> bytes:
    """cli.md §7.2: raw CBOR if it starts with 0x84 or 0xd2; else, with ASCII whitespace
    removed, hex when every character is a hex digit, else base64 (padding optional)."""
    if data[:1] in (b"\x84", b"\xd2"):
        return data
    text = _WHITESPACE.sub(b"", data)
    if not text:
        raise ValueError(UNDECODABLE)
    if _HEX.fullmatch(text):
        if len(text) % 2:
            raise ValueError(UNDECODABLE)
        return bytes.fromhex(text.decode("ascii"))
    if not _BASE64.fullmatch(text):
        raise ValueError(UNDECODABLE)
    bare = text.rstrip(b"=")
    if len(bare) % 4 == 1 or (text != bare and len(text) % 4):
        raise ValueError(UNDECODABLE)
    try:
        return base64.b64decode(bare + b"=" * (-len(bare) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(UNDECODABLE) from None


def _hex_option(value: Optional[str], option: str) -> Optional[bytes]:
    if value is None:
        return None
    if not re.fullmatch(r"(?:[0-9a-fA-F]{2})*", value):
        raise UsageError(f"invalid {option} value: expected an even number of hex digits")
    return bytes.fromhex(value)


def pcr_options(values: Mapping[int, Optional[str]]) -> dict[int, bytes]:
    """`--pcrN HEX` options (those given) as bytes; bad hex is a usage error naming the option."""
    out: dict[int, bytes] = {}
    for index, value in values.items():
        if value is not None:
            try:
                out[index] = parse_pcr_hex(value)
            except ValueError:
                raise UsageError(
                    f"invalid --pcr{index} value: expected 96 hex digits (48 bytes)") from None
    return out


def _read(path: str, what: str, limit: int = MAX_DOC_FILE) -> bytes:
    try:
        if path == "-":
            data = sys.stdin.buffer.read(limit + 1)
        else:
            with open(path, "rb") as handle:
                data = handle.read(limit + 1)
    except OSError as exc:
        raise CliError(f"cannot read {what} {path}", [exc.strerror or str(exc)]) from None
    if len(data) > limit:
        raise CliError(f"{what} {path} is larger than {limit} bytes")
    return data


DEVELOPMENT_ROOT_HINT = ("this document comes from a simulated (development) NSM: pass "
                         "--trust-root <its NSM directory>/root.pem to trust that root")


def development_root_hint(document: bytes, trust_root_given: bool) -> list[str]:
    """A `caused by` line for a chain failure against the AWS root when the document is signed
    by our simulated NSM, whose root names itself: the fix is one option away."""
    from locksmith.core.attestation.nsm_simulated import ROOT_CN
    if trust_root_given or ROOT_CN.encode("utf-8") not in document:
        return []
    return [DEVELOPMENT_ROOT_HINT]


def load_trust_root(path: Optional[str]) -> Optional[att.TrustAnchor]:
    if path is None:
        return None
    try:
        anchor = att.TrustAnchor.from_pem(_read(path, "trust root"))
    except ValueError as exc:
        raise CliError(f"invalid trust root {path}", [str(exc)]) from None
    ui.warn(f"trusting a development root ({anchor.name}, sha256 {anchor.fingerprint}) "
            "instead of the AWS Nitro root")
    return anchor


def _hex_or_null(value: Optional[bytes]) -> Optional[str]:
    return None if value is None else value.hex()


def verify_json(result: Optional[att.Attestation], reason: Optional[str]) -> str:
    """The stable `--json` object (README): the same keys, in this order, on success and failure."""
    obj: dict[str, Any] = {
        "ok": result is not None,
        "reason": reason,
        "module_id": result.module_id if result else None,
        "timestamp": result.timestamp if result else None,
        "digest": result.digest if result else None,
        "pcrs": {str(i): v.hex() for i, v in result.pcrs.items()} if result else None,
        "user_data": _hex_or_null(result.user_data) if result else None,
        "nonce": _hex_or_null(result.nonce) if result else None,
        "public_key": _hex_or_null(result.public_key) if result else None,
    }
    return json.dumps(obj, separators=(",", ":"))


# --------------------------------------------------------------------------- verify


@attestation_app.command("verify")
def verify_command(
    doc: str = typer.Argument(..., metavar="DOC",
                              help="Document file: raw CBOR, hex or base64 ('-': stdin)."),
    at: Optional[int] = typer.Option(None, "--at", metavar="UNIX_SECONDS",
                                     help="Check certificate validity at this time."),
    now: bool = typer.Option(False, "--now", help="Check certificate validity now."),
    pcr0: Optional[str] = typer.Option(None, "--pcr0", metavar="HEX", help="Expected PCR0."),
    pcr1: Optional[str] = typer.Option(None, "--pcr1", metavar="HEX", help="Expected PCR1."),
    pcr2: Optional[str] = typer.Option(None, "--pcr2", metavar="HEX", help="Expected PCR2."),
    trusted_hashes: Optional[str] = typer.Option(
        None, "--trusted-hashes", metavar="FILE", help="Expected PCR0-2 (trusted_hashes.json)."),
    pcr_policy: Optional[str] = typer.Option(
        None, "--pcr-policy", metavar="FILE", help="Keymaker PCR policy: any set must match."),
    nonce: Optional[str] = typer.Option(None, "--nonce", metavar="HEX", help="Expected nonce."),
    user_data: Optional[str] = typer.Option(None, "--user-data", metavar="HEX",
                                            help="Expected user_data."),
    trust_root: Optional[str] = typer.Option(
        None, "--trust-root", metavar="PEM", help="Trust this root instead of the AWS one."),
    allow_debug_enclave: bool = typer.Option(
        False, "--allow-debug-enclave", help="Accept all-zero PCR0-2 (debug-mode enclaves)."),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON object on stdout."),
) -> None:
    """Verify an AWS Nitro attestation document: signature, certificate chain, PCRs, nonce."""
    # Usage errors (exit 2) first; they print no JSON.
    if at is not None and now:
        raise UsageError("--at and --now cannot be used together")
    if at is not None and at < 0:
        raise UsageError("--at must be a non-negative number of Unix seconds")
    given = {i: v for i, v in ((0, pcr0), (1, pcr1), (2, pcr2)) if v is not None}
    if given and len(given) != 3:
        raise UsageError("--pcr0, --pcr1 and --pcr2 must be given together")
    if sum((bool(given), trusted_hashes is not None, pcr_policy is not None)) > 1:
        raise UsageError("use only one of --pcr0/--pcr1/--pcr2, --trusted-hashes and --pcr-policy")
    expected_pcrs = pcr_options(given) or None
    expected_nonce = _hex_option(nonce, "--nonce")
    expected_user_data = _hex_option(user_data, "--user-data")
    try:
        _verify(doc, at, now, expected_pcrs, trusted_hashes, pcr_policy, expected_nonce,
                expected_user_data, trust_root, allow_debug_enclave, json_out)
    except CliError as exc:
        if json_out and exc.exit_code == 1:
            print(verify_json(None, exc.message.removesuffix(DEBUG_HINT)), flush=True)
        raise


def _verify(doc: str, at: Optional[int], now: bool, pcrs: Optional[dict[int, bytes]],
            trusted_hashes: Optional[str], pcr_policy: Optional[str], nonce: Optional[bytes],
            user_data: Optional[bytes], trust_root: Optional[str], allow_debug: bool,
            json_out: bool) -> None:
    anchor = load_trust_root(trust_root)
    policy: Optional[PcrPolicy] = None
    if trusted_hashes is not None:
        try:
            hashes = TrustedHashes.from_json(_read(trusted_hashes, "trusted hashes"),
                                             source=trusted_hashes)
        except TrustedHashesError as exc:
            raise CliError(str(exc)) from None
        if hashes.verified_at is not None:
            ui.info(f"Using trusted hashes from {hashes.verified_at}")
        pcrs = hashes.pcrs
    if pcr_policy is not None:
        try:
            policy = PcrPolicy.from_json(_read(pcr_policy, "Keymaker PCR policy"))
        except PcrPolicyError as exc:
            raise CliError(exc.message, [exc.detail] if exc.detail else []) from None
    try:
        document = decode_document_file(_read(doc, "attestation document"))
    except ValueError as exc:
        raise CliError(str(exc)) from None
    at_ms = at * 1000 if at is not None else None
    now_ms = int(time.time() * 1000) if now else None
    set_index: Optional[int] = None
    try:
        if policy is not None:
            match = att.verify_with_policy(document, policy, trust_root=anchor, at_ms=at_ms,
                                           now_ms=now_ms, nonce=nonce, user_data=user_data,
                                           allow_debug=allow_debug)
            result, set_index = match.attestation, match.set_index
        else:
            result = att.verify(document, trust_root=anchor, at_ms=at_ms, now_ms=now_ms,
                                pcrs=pcrs, nonce=nonce, user_data=user_data,
                                allow_debug=allow_debug)
    except att.DebugEnclaveError as exc:
        raise CliError(str(exc) + DEBUG_HINT) from None
    except att.AttestationError as exc:
        raise CliError(str(exc)) from None

    if result.is_debug:
        ui.warn("accepted a debug-mode enclave (all-zero PCRs) because of --allow-debug-enclave; "
                "its memory is readable by the host")
    if pcrs is None and policy is None:
        ui.warn("no expected PCRs given; the enclave's code was not checked")
    time_ms = at_ms if at_ms is not None else now_ms if now_ms is not None else result.timestamp
    when = "now" if now else "--at" if at is not None else "the document's timestamp"
    root = anchor if anchor is not None else att.aws_nitro_root()
    checks = ["certificate chain", "signature"]
    if policy is not None:
        checks.append(f"PCR set {set_index} of {pcr_policy}")
    elif pcrs is not None:
        checks.append("PCRs " + ", ".join(str(i) for i in sorted(pcrs)))
    checks += [name for name, v in (("nonce", nonce), ("user_data", user_data)) if v is not None]
    ui.info(f"Attestation verified (module {result.module_id})")
    if json_out:
        print(verify_json(result, None), flush=True)
        return
    rows = [("checked", ", ".join(checks)),
            ("valid at", f"{att.format_ms(time_ms)} ({when})"),
            ("trust root", f"{root.name} (sha256 {root.fingerprint})"),
            ("module_id", result.module_id),
            ("timestamp", f"{result.timestamp} ({att.format_ms(result.timestamp)})"),
            ("digest", result.digest)]
    rows += [(f"PCR{i}", v.hex()) for i, v in result.pcrs.items()]
    rows += [(name, _hex_or_null(value) or "null") for name, value in (
        ("user_data", result.user_data), ("nonce", result.nonce),
        ("public_key", result.public_key))]
    for label, value in rows:
        ui.info(f"  {label + ':':<12} {value}")


# --------------------------------------------------------------------------- simulate


@attestation_app.command("simulate")
def simulate_command(
    nsm_dir: Optional[Path] = typer.Option(
        None, "--nsm-dir", envvar="LOCKSMITH_NSM_DIR", metavar="DIR",
        help="State directory of the simulated NSM (created when absent)."),
    pcr0: Optional[str] = typer.Option(None, "--pcr0", metavar="HEX", help="Report this PCR0."),
    pcr1: Optional[str] = typer.Option(None, "--pcr1", metavar="HEX", help="Report this PCR1."),
    pcr2: Optional[str] = typer.Option(None, "--pcr2", metavar="HEX", help="Report this PCR2."),
    user_data: Optional[str] = typer.Option(None, "--user-data", metavar="HEX",
                                            help="Put these bytes in the user_data field."),
    nonce: Optional[str] = typer.Option(None, "--nonce", metavar="HEX",
                                        help="Put these bytes in the nonce field."),
    public_key: Optional[str] = typer.Option(None, "--public-key", metavar="HEX",
                                             help="Put these bytes in the public_key field."),
) -> None:
    """Write a simulated attestation document (raw CBOR) to stdout, for development."""
    from locksmith.core.attestation.nsm_simulated import SimulatedNsm

    if nsm_dir is None or not str(nsm_dir):
        raise UsageError("--nsm-dir DIR is required (or set LOCKSMITH_NSM_DIR)")
    overrides = pcr_options({0: pcr0, 1: pcr1, 2: pcr2})
    fields = {"user_data": _hex_option(user_data, "--user-data"),
              "nonce": _hex_option(nonce, "--nonce"),
              "public_key": _hex_option(public_key, "--public-key")}
    if sys.stdout.isatty():
        raise CliError("refusing to write a binary document to a terminal; redirect stdout "
                       "(> doc.cbor)")
    ui.warn("using the simulated NSM (development only)")
    try:
        nsm = SimulatedNsm.open(nsm_dir, pcr_overrides=overrides)
        document = nsm.attest(**fields)
    except NsmError as exc:
        raise CliError(f"cannot use the simulated NSM: {exc}") from None
    sys.stdout.buffer.write(document)
    sys.stdout.buffer.flush()
    ui.info(f"Wrote a simulated attestation document ({len(document)} bytes); verify it with "
            f"--trust-root {nsm_dir / 'root.pem'}")
