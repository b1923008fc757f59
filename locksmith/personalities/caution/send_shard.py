"""`caution secret send-shard` (cli.md §5): release this holder's share to an attested enclave.

The steps run in the order of cli.md §5.2 / protocol.md §11, and every local step comes before
the connection: bundle (and V1 proof) → expected PCRs and trust root → holder, passphrase and
share → connect, verify the live attestation, submit, wait for the verdict (`shard_client`).
A holder who mistyped something learns it before the enclave is contacted, and the enclave's
deadlines never run while a person types.

The only implicit trust anchor is the AWS Nitro root; `--trust-root` replaces it for both the
Keymaker proof and the live document, and debug (all-zero PCR) enclaves need
`--allow-debug-enclave` for both (README §5 #16–#18).
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from pathlib import Path
from typing import Optional

import typer

from locksmith.core.attestation.pcr_policy import TrustedHashes, TrustedHashesError, is_debug_pcrs
from locksmith.core.attestation.verify import TrustAnchor
from locksmith.core.bundle.model import BundleV1
from locksmith.core.openpgp.keys import SecretKey
from locksmith.core.protocol.session import Signer, submission_bundle_hash
from locksmith.personalities.caution import ui
from locksmith.personalities.caution.attestation import load_trust_root, pcr_options
from locksmith.personalities.caution.bundles import (
    DEFAULT_BUNDLE, POLICY_OPTION, ProofOptions, load_bundle,
)
from locksmith.personalities.caution.holder_keyring import unlock_holder
from locksmith.personalities.caution.shard_client import (
    DEFAULT_VERDICT_TIMEOUT, Address, Expectations, Submission, parse_address, send_share,
)
from locksmith.personalities.caution.ui import CliError, UsageError

DEFAULT_TRUSTED_HASHES = Path(".caution/trusted_hashes.json")
NO_PCRS = ("No trusted PCR values: pass --pcr0/--pcr1/--pcr2 or create "
           ".caution/trusted_hashes.json")
DEBUG_PCRS = ("the expected PCRs are all zero (a debug-mode enclave); pass "
              "--allow-debug-enclave for development")
MAX_TRUST_FILE = 1024 * 1024


def send_shard(
    address: str = typer.Option(..., "--address", metavar="HOST[:PORT]",
                                help="The enclave: host, host:port or [v6addr]:port (port 49504)."),
    bundle: Path = typer.Option(DEFAULT_BUNDLE, "--bundle", metavar="PATH",
                                help="Quorum bundle (v0, V1 or ImportedV0)."),
    keyring: Optional[Path] = typer.Option(
        None, "--keyring", metavar="PRIVATE",
        help="Private keyring file; without it a smart card is used."),
    holder: Optional[str] = typer.Option(
        None, "--holder", metavar="FINGERPRINT",
        help="The holder to send for when several match (default: the first in bundle order)."),
    trusted_hashes: Optional[Path] = typer.Option(
        None, "--trusted-hashes", metavar="FILE",
        help="Expected PCR0-2, optionally PCR3/4/8 (default .caution/trusted_hashes.json)."),
    pcr0: Optional[str] = typer.Option(None, "--pcr0", metavar="HEX", help="Expected PCR0."),
    pcr1: Optional[str] = typer.Option(None, "--pcr1", metavar="HEX", help="Expected PCR1."),
    pcr2: Optional[str] = typer.Option(None, "--pcr2", metavar="HEX", help="Expected PCR2."),
    pcr3: Optional[str] = typer.Option(
        None, "--pcr3", metavar="HEX", help="Also pin PCR3 (the parent instance's IAM role)."),
    pcr4: Optional[str] = typer.Option(
        None, "--pcr4", metavar="HEX", help="Also pin PCR4 (the parent instance ID)."),
    pcr8: Optional[str] = typer.Option(
        None, "--pcr8", metavar="HEX", help="Also pin PCR8 (the image's signing certificate)."),
    trust_root: Optional[Path] = typer.Option(
        None, "--trust-root", metavar="PEM",
        help="Trust this root instead of the AWS Nitro root (simulated NSM only), for the "
             "enclave and the Keymaker proof."),
    allow_debug_enclave: bool = typer.Option(
        False, "--allow-debug-enclave",
        help="Accept all-zero PCR0-2 (debug enclaves), for the enclave and the Keymaker proof."),
    keymaker_pcr_policy: Optional[Path] = POLICY_OPTION,
    pin_file: Optional[Path] = typer.Option(
        None, "--pin-file", metavar="FILE", help="Smart-card PIN from the first line of FILE."),
    timeout: int = typer.Option(DEFAULT_VERDICT_TIMEOUT, "--timeout", metavar="SECONDS", min=1,
                                help="How long to wait for the enclave's verdict."),
) -> None:
    """Send this holder's shard to a running locksmithd."""
    target = _address(address)
    option_pcrs = pcr_triple_options(pcr0, pcr1, pcr2)
    pcr_options({3: pcr3, 4: pcr4, 8: pcr8})  # bad hex is a usage error before anything else

    # 1. the bundle, and for V1 its Keymaker proof (the proof options also print the
    #    development-root warning when --trust-root is given)
    checked = load_bundle(bundle, ProofOptions(keymaker_pcr_policy, trust_root,
                                               allow_debug_enclave))
    # 2. expected PCRs and the trust root for the live document; --pcr3/4/8 add to (or
    #    override) whatever the source says
    pcrs = {**(option_pcrs or read_trusted_hashes(trusted_hashes)),
            **pcr_options({3: pcr3, 4: pcr4, 8: pcr8})}
    if is_debug_pcrs(pcrs) and not allow_debug_enclave:
        raise CliError(DEBUG_PCRS)
    anchor = _trust_root(trust_root, warned=isinstance(checked.bundle, BundleV1))
    # 3. holder, keys and share, before connecting; a card stays connected (and its PIN
    #    verified) until the exchange is over, then is reset
    sign: Signer | SecretKey
    with ExitStack() as stack:
        if keyring is None:
            from locksmith.personalities.caution.card.holder import unlock_card_holder
            from locksmith.personalities.caution.card.pcsc import open_context
            context = stack.enter_context(open_context())
            card = unlock_card_holder(context, checked, holder, pin_file, int(time.time()))
            share, sign = card.share, card.sign
        else:
            if pin_file is not None:
                ui.warn("--pin-file is used only with a smart card; ignored with --keyring")
            unlocked = unlock_holder(checked, keyring, holder, int(time.time()))
            share, sign = unlocked.share, unlocked.sign
        # 4–8. the enclave
        try:
            submission = Submission(share, submission_bundle_hash(checked.bundle), sign)
            remaining = send_share(target, submission,
                                   Expectations(pcrs, anchor, allow_debug_enclave),
                                   verdict_timeout=timeout)
        finally:
            share.wipe()
    ui.info(f"Shard accepted, {remaining} remaining shards until reconstitution")


def _address(text: str) -> Address:
    try:
        return parse_address(text)
    except ValueError as exc:
        raise UsageError(f"invalid --address '{text}': {exc}") from None


def pcr_triple_options(*values: Optional[str]) -> dict[int, bytes] | None:
    """`--pcr0 --pcr1 --pcr2` as one set: all three (bytes), or none (None); else usage error."""
    given = [v is not None for v in values]
    if not any(given):
        return None
    if not all(given):
        raise UsageError("--pcr0, --pcr1 and --pcr2 must be given together")
    return pcr_options(dict(enumerate(values)))


def read_trusted_hashes(path: Optional[Path]) -> dict[int, bytes]:
    """cli.md §5.1: the given file, else the default one, else no source at all."""
    source = path if path is not None else DEFAULT_TRUSTED_HASHES
    if path is None and not source.is_file():
        raise CliError(NO_PCRS)
    try:
        with open(source, "rb") as handle:
            data = handle.read(MAX_TRUST_FILE + 1)
    except OSError as exc:
        raise CliError(f"Failed to read {source}", [exc.strerror or str(exc)]) from None
    try:
        hashes = TrustedHashes.from_json(data, source=str(source))
    except TrustedHashesError as exc:
        raise CliError(str(exc)) from None
    if hashes.verified_at is not None:
        ui.info(f"Using trusted hashes from {hashes.verified_at}")
    return hashes.pcrs


def _trust_root(path: Optional[Path], *, warned: bool) -> TrustAnchor | None:
    """The anchor for the live document. For a V1 bundle the proof options already loaded
    the same file and printed the development-root warning; it is not printed twice."""
    if path is None:
        return None
    if not warned:
        return load_trust_root(str(path))
    try:
        with open(path, "rb") as handle:
            return TrustAnchor.from_pem(handle.read(MAX_TRUST_FILE + 1))
    except (OSError, ValueError) as exc:  # the proof step read it a moment ago
        raise CliError(f"invalid trust root {path}", [str(exc)]) from None
