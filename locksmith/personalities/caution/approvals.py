"""`caution secret approve` and `caution secret approvals check` (docs/forwarding.md §7);
`approvals push` is its own module (`approvals_push`), registered on `approvals_app` below.

A holder approves an enclave image (its PCR0/1/2) so that an unlocked enclave of the fleet may
forward the quorum secret to enclaves running it. The approval is a statement naming the bundle,
the three PCRs and an expiry, signed the way `send-shard` signs message 3 (text mode, SHA-512)
with the holder's key file or smart card, and written as a cleartext signed message that GnuPG
and Sequoia can check by hand. `approvals check` runs the very procedure a provider runs
(`core.forwarding.approval.count_approvals`), so what it reports is what forwardd will decide.

As in `send-shard`, every check of the inputs comes before the passphrase or PIN is asked, and
the output file is looked at before the card is touched: a holder never spends a PIN attempt or
a touch on an approval that cannot be written. The file just made is counted once more before
it is written, so a key that would not count (e.g. not live) fails here, not in the fleet.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

import typer

from locksmith.core.bundle.checks import CheckedBundle
from locksmith.core.bundle.model import BundleV0, BundleV1
from locksmith.core.card.holders import CardHolder
from locksmith.core.forwarding.approval import (
    LATEST_TIME, MALFORMED, MAX_APPROVAL_BYTES, ApprovalError, DiscardedApproval, PcrSet,
    Statement, Tally, approval_file, approval_name, count_approvals, format_time, parse_time,
)
from locksmith.core.openpgp import validity
from locksmith.core.openpgp.holder_signature import sign_detached_text
from locksmith.core.openpgp.secretkeys import StoredSecretKey, normalise_fingerprint
from locksmith.core.protocol.holders import BundleHolders
from locksmith.core.protocol.messages import submission_bundle_hash
from locksmith.personalities.caution import ui
from locksmith.personalities.caution.bundles import (
    ALLOW_DEBUG_OPTION, DEFAULT_BUNDLE, POLICY_OPTION, TRUST_ROOT_OPTION, ProofOptions,
    read_bundle, verify_proof, warn_if_test_secret,
)
from locksmith.personalities.caution.holder_keyring import (
    NO_SECRET_KEYS, NOT_A_HOLDER, Unlocker, openpgp_holders, read_keyring,
)
from locksmith.personalities.caution.send_shard import pcr_triple_options, read_trusted_hashes
from locksmith.personalities.caution.ui import CliError, UsageError
from locksmith.personalities.files import write_atomic

if TYPE_CHECKING:
    from locksmith.personalities.caution.card.survey import SeenCard

DEFAULT_DIR = Path(".caution/approvals")
DEFAULT_EXPIRES = "90d"
DAY = 86400
V0_REFUSAL = ("key forwarding needs a bundle with a threshold (V1 or ImportedV0); {path} is a "
              "v0 bundle")
DEBUG_REFUSAL = "refusing to approve a debug-mode (all-zero) PCR set"
PAST = "--expires is in the past"
BAD_EXPIRES = ("invalid --expires '{text}': expected YYYY-MM-DD, YYYY-MM-DDTHH:MM:SSZ or a "
               "number of days such as 90d")
BAD_AT = "invalid --at '{text}': expected an RFC 3339 time such as 2026-01-01T00:00:00Z"
NO_KEY = "no key in {file} belongs to a holder of this bundle"
EXISTS = "{path} already exists; pass --force to replace it"
NOT_APPROVED = "PCR set {set_id} is not approved ({n} of {t} holder approvals)"
_DAYS = re.compile(r"([0-9]{1,7})d")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_RFC3339 = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?"
                      r"([Zz]|[+-][0-9]{2}:[0-9]{2})")

approvals_app = typer.Typer(no_args_is_help=True, add_completion=False, rich_markup_mode=None,
                            help="Holder approvals of enclave images for key forwarding.")

_PCR_HELP = "{n} of the enclave image (96 hex digits); give all three or none."


def _pcr_option(n: int) -> Any:
    return typer.Option(None, f"--pcr{n}", metavar="HEX", help=_PCR_HELP.format(n=f"PCR{n}"))


# --- shared inputs ---------------------------------------------------------------------------


def forwarding_bundle(path: Path, proof: ProofOptions) -> tuple[CheckedBundle, bytes,
                                                                 BundleHolders]:
    """The bundle as `send-shard` loads it (V1 proof verified), refused when it has no
    threshold; with its hash and its holders indexed for identification."""
    checked = read_bundle(path)
    if isinstance(checked.bundle, BundleV0):
        raise CliError(V0_REFUSAL.format(path=path))
    generation_time = None
    if isinstance(checked.bundle, BundleV1):
        generation_time = verify_proof(checked.bundle, proof.load()).generated_ms // 1000
    warn_if_test_secret(checked)
    digest = submission_bundle_hash(checked.bundle)
    assert digest is not None and checked.threshold is not None
    return checked, digest, BundleHolders.from_bundle(checked, generation_time=generation_time)


def _pcr_set(values: Sequence[Optional[str]], trusted_hashes: Optional[Path], *,
             default: bool) -> PcrSet | None:
    """`--pcr0/1/2`, else `--trusted-hashes` (or, with `default`, the default file)."""
    pcrs = pcr_triple_options(*values)
    if pcrs is None and (trusted_hashes is not None or default):
        pcrs = read_trusted_hashes(trusted_hashes)
    return None if pcrs is None else PcrSet.from_pcrs(pcrs)


def parse_expires(text: str, now: int) -> int:
    """`YYYY-MM-DD` (end of that day, UTC), `YYYY-MM-DDTHH:MM:SSZ` or `<n>d` from `now`."""
    try:
        days = _DAYS.fullmatch(text)
        if days is not None:
            seconds = now + int(days.group(1)) * DAY
        elif _DATE.fullmatch(text):
            seconds = parse_time(f"{text}T23:59:59Z")
        else:
            seconds = parse_time(text)
    except ApprovalError:
        raise UsageError(BAD_EXPIRES.format(text=text)) from None
    if seconds > LATEST_TIME:
        raise UsageError(BAD_EXPIRES.format(text=text))
    if seconds <= now:
        raise CliError(PAST)
    return seconds


def parse_at(text: str) -> int:
    """An RFC 3339 time with its offset → Unix seconds (fractions dropped)."""
    if not _RFC3339.fullmatch(text):
        raise UsageError(BAD_AT.format(text=text))
    try:
        moment = datetime.fromisoformat(text.upper())
        seconds = int(moment.timestamp())
        format_time(seconds)  # within 1970..9999
    except (ValueError, OverflowError):
        raise UsageError(BAD_AT.format(text=text)) from None
    return seconds


# --- approve ---------------------------------------------------------------------------------


def _keyring_holder(checked: CheckedBundle, path: Path, wanted: str | None,
                    now: int) -> tuple[int, str, list[StoredSecretKey]]:
    """The first holder (or `wanted`) for whom the keyring has a signing key live now."""
    keyring = read_keyring(path)
    if not keyring.keys:
        raise CliError(NO_SECRET_KEYS.format(file=path))
    for index, cert in enumerate(openpgp_holders(checked)):
        if cert is None or (wanted is not None and cert.fingerprint != wanted):
            continue
        mine = {k.public.fingerprint: k for k in keyring.for_primary(cert.fingerprint)}
        signing = [mine[k.fingerprint] for k in validity.signing_candidates(cert, now, now)
                   if k.fingerprint in mine]
        if signing:
            return index, cert.fingerprint, sorted(signing, key=lambda k: k.refusal is not None)
    raise CliError(NO_KEY.format(file=path))


@dataclass(frozen=True)
class _Card:
    """The card that signs, and whose holder it is; the PIN is asked only by `signer`."""

    seen: SeenCard
    holder: CardHolder

    def signer(self, pin_file: Optional[Path]) -> Callable[[bytes], bytes]:
        from locksmith.personalities.caution.card.holder import (
            card_errors, card_signer, unlock_interactively, unlock_with_pin_file,
        )
        with card_errors(self.seen):
            if pin_file is not None:
                unlock_with_pin_file(self.seen, pin_file)
            else:
                unlock_interactively(self.seen)
        uif = self.seen.data.uif_signature
        return card_signer(self.seen, self.holder.signing_key,
                           uif is not None and uif.requires_touch)


def _card_holder(checked: CheckedBundle, wanted: str | None, now: int,
                 stack: ExitStack) -> _Card:
    """The first card (reader order) whose signature key is a live signing key of a holder
    (or of `wanted`); only signing is needed, so the decryption slot is not looked at."""
    from locksmith.core.card.holders import match_signing_card
    from locksmith.personalities.caution.card.holder import NO_CARD_MATCHES, NO_READER, describe
    from locksmith.personalities.caution.card.pcsc import PcscError, open_context
    from locksmith.personalities.caution.card.survey import SeenCard, survey

    context = stack.enter_context(open_context())
    try:
        cards = survey(context)
    except PcscError as exc:
        raise CliError(str(exc)) from None
    if not cards:
        raise CliError(NO_READER)
    holders = openpgp_holders(checked)
    for seen in cards:
        if isinstance(seen, SeenCard):
            match = match_signing_card(holders, seen.data.signature_fingerprint, now, wanted)
            if match is not None:
                ui.info(f"Using {seen.label} for holder {match.certificate.fingerprint}")
                return _Card(seen, match)
    raise CliError(NO_CARD_MATCHES, [describe(item) for item in cards])


def approve(
    pcr0: Optional[str] = _pcr_option(0),
    pcr1: Optional[str] = _pcr_option(1),
    pcr2: Optional[str] = _pcr_option(2),
    trusted_hashes: Optional[Path] = typer.Option(
        None, "--trusted-hashes", metavar="FILE",
        help="Take PCR0-2 from this file (default .caution/trusted_hashes.json)."),
    expires: str = typer.Option(
        DEFAULT_EXPIRES, "--expires", metavar="DATE|DAYSd",
        help="Until when: YYYY-MM-DD (end of that day, UTC), YYYY-MM-DDTHH:MM:SSZ, or a number "
             "of days from now such as 30d."),
    bundle: Path = typer.Option(DEFAULT_BUNDLE, "--bundle", metavar="PATH",
                                help="Quorum bundle (V1 or ImportedV0)."),
    keyring: Optional[Path] = typer.Option(
        None, "--keyring", metavar="PRIVATE",
        help="Private keyring file; without it a smart card signs."),
    holder: Optional[str] = typer.Option(
        None, "--holder", metavar="FINGERPRINT",
        help="The holder to approve as when several match (default: the first in bundle order)."),
    pin_file: Optional[Path] = typer.Option(
        None, "--pin-file", metavar="FILE", help="Smart-card PIN from the first line of FILE."),
    output: Optional[Path] = typer.Option(
        None, "--output", metavar="FILE",
        help="Where to write the approval (default .caution/approvals/<FPR>-<set id>.asc)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing approval file."),
    keymaker_pcr_policy: Optional[Path] = POLICY_OPTION,
    trust_root: Optional[Path] = TRUST_ROOT_OPTION,
    allow_debug_enclave: bool = ALLOW_DEBUG_OPTION,
) -> None:
    """Sign an approval that lets enclaves with these PCRs receive the quorum secret."""
    now = int(time.time())
    wanted = normalise_fingerprint(holder) if holder is not None else None
    pcr_triple_options(pcr0, pcr1, pcr2)  # bad hex is a usage error before anything else
    until = parse_expires(expires, now)
    pcrs = _pcr_set((pcr0, pcr1, pcr2), trusted_hashes, default=True)
    assert pcrs is not None
    if pcrs.is_debug:
        raise CliError(DEBUG_REFUSAL)
    checked, digest, holders = forwarding_bundle(
        bundle, ProofOptions(keymaker_pcr_policy, trust_root, allow_debug_enclave))
    if wanted is not None and wanted not in {h.fingerprint for h in openpgp_holders(checked)
                                             if h is not None}:
        raise CliError(NOT_A_HOLDER.format(fpr=wanted))
    statement = Statement(digest, pcrs, until)

    with ExitStack() as stack:
        # 1. who signs, and where the file goes: before any passphrase, PIN or touch
        if keyring is None:
            card = _card_holder(checked, wanted, now, stack)
            index, fingerprint = card.holder.index, card.holder.certificate.fingerprint
        else:
            if pin_file is not None:
                ui.warn("--pin-file is used only with a smart card; ignored with --keyring")
            index, fingerprint, keys = _keyring_holder(checked, keyring, wanted, now)
        path = output if output is not None else DEFAULT_DIR / approval_name(fingerprint, pcrs)
        if not force and os.path.lexists(path):
            raise CliError(EXISTS.format(path=path))
        # 2. sign
        if keyring is None:
            armored = card.signer(pin_file)(statement.signed_bytes())
        else:
            unlocker = Unlocker()
            try:
                key = unlocker.unlock(keys[0])
            finally:
                unlocker.forget()
            armored = sign_detached_text(key, statement.signed_bytes(), int(time.time()))
    text = approval_file(statement, armored.decode("ascii"))

    # 3. the provider's own procedure on the result, then publish
    assert checked.threshold is not None  # forwarding_bundle refused v0
    tally = count_approvals([(str(path), text)], holders=holders, bundle_hash=digest,
                            threshold=checked.threshold, now=int(time.time()))
    if tally.discarded:
        raise CliError(f"the approval just made would not count: {tally.discarded[0].reason}")
    try:
        write_atomic(path, text.encode("ascii"), mode=0o644, replace=force)
    except FileExistsError:
        raise CliError(EXISTS.format(path=path)) from None
    except OSError as exc:
        raise CliError(f"cannot write {path}", [exc.strerror or str(exc)]) from None
    ui.info(f"Approval by holder {index} ({fingerprint}) of PCR set {pcrs.set_id} written to "
            f"{path}, expires {format_time(until)}")


# --- approvals check -------------------------------------------------------------------------


def read_approvals(directory: Path) -> tuple[list[tuple[str, str]], list[DiscardedApproval]]:
    """Every `*.asc` in `directory` (name order) as text; unreadable ones are discarded here."""
    try:
        names = sorted(e.name for e in os.scandir(directory)
                       if e.name.endswith(".asc") and e.is_file())
    except FileNotFoundError:
        return [], []
    except OSError as exc:
        raise CliError(f"cannot read approvals directory {directory}",
                       [exc.strerror or str(exc)]) from None
    texts: list[tuple[str, str]] = []
    unread: list[DiscardedApproval] = []
    for name in names:
        source = str(directory / name)
        try:
            with open(directory / name, "rb") as handle:
                data = handle.read(MAX_APPROVAL_BYTES + 1)
        except OSError as exc:
            unread.append(DiscardedApproval(source, f"cannot read: {exc.strerror or exc}"))
            continue
        try:
            if len(data) > MAX_APPROVAL_BYTES:
                raise UnicodeError("too large")
            texts.append((source, data.decode("utf-8")))
        except UnicodeError:
            unread.append(DiscardedApproval(source, MALFORMED))
    return texts, unread


def _report(tally: Tally, sets: Sequence[PcrSet], discarded: Sequence[DiscardedApproval],
            digest: bytes, at: int, wanted: PcrSet | None) -> dict[str, Any]:
    def entry(pcrs: PcrSet) -> dict[str, Any]:
        counted = tally.counted.get(pcrs, ())
        return {"set_id": pcrs.set_id, "pcr0": pcrs.pcr0.hex(), "pcr1": pcrs.pcr1.hex(),
                "pcr2": pcrs.pcr2.hex(), "count": len(counted), "approved": tally.approves(pcrs),
                "holders": [{"holder": c.holder, "fingerprint": c.fingerprint,
                             "expires": format_time(c.expires), "file": c.source}
                            for c in counted]}

    return {"bundle_hash": digest.hex(), "threshold": tally.threshold, "at": format_time(at),
            "sets": [entry(p) for p in sets],
            "discarded": [{"file": d.source, "reason": d.reason} for d in discarded],
            "checked_set": wanted.set_id if wanted is not None else None,
            "approved": tally.approves(wanted) if wanted is not None else None}


def _print_report(report: dict[str, Any], directory: Path, files: int) -> None:
    if not files:
        ui.info(f"No approval files in {directory}")
    for entry in report["sets"]:
        verdict = "approved" if entry["approved"] else "not approved"
        ui.info(f"PCR set {entry['set_id']} (pcr0 {entry['pcr0'][:16]}…): {entry['count']} of "
                f"{report['threshold']} holders — {verdict}")
        for counted in entry["holders"]:
            ui.info(f"  holder {counted['holder']} {counted['fingerprint']} expires "
                    f"{counted['expires']}")
    for discarded in report["discarded"]:
        ui.info(f"{discarded['file']}: {discarded['reason']}")


@approvals_app.command("check")
def check(
    bundle: Path = typer.Option(DEFAULT_BUNDLE, "--bundle", metavar="PATH",
                                help="Quorum bundle (V1 or ImportedV0)."),
    directory: Path = typer.Option(DEFAULT_DIR, "--dir", metavar="DIR",
                                   help="Directory of approval files (*.asc)."),
    pcr0: Optional[str] = _pcr_option(0),
    pcr1: Optional[str] = _pcr_option(1),
    pcr2: Optional[str] = _pcr_option(2),
    trusted_hashes: Optional[Path] = typer.Option(
        None, "--trusted-hashes", metavar="FILE",
        help="Check the PCR0-2 of this file; exit 1 unless they are approved."),
    at: Optional[str] = typer.Option(
        None, "--at", metavar="RFC3339",
        help="Judge at this time instead of now, e.g. 2026-01-01T00:00:00Z."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON on stdout."),
    keymaker_pcr_policy: Optional[Path] = POLICY_OPTION,
    trust_root: Optional[Path] = TRUST_ROOT_OPTION,
    allow_debug_enclave: bool = ALLOW_DEBUG_OPTION,
) -> None:
    """Count the approvals as a forwarding provider would: which images are approved."""
    pcr_triple_options(pcr0, pcr1, pcr2)
    now = parse_at(at) if at is not None else int(time.time())
    wanted = _pcr_set((pcr0, pcr1, pcr2), trusted_hashes, default=False)
    checked, digest, holders = forwarding_bundle(
        bundle, ProofOptions(keymaker_pcr_policy, trust_root, allow_debug_enclave))
    assert checked.threshold is not None
    texts, unread = read_approvals(directory)
    tally = count_approvals(texts, holders=holders, bundle_hash=digest,
                            threshold=checked.threshold, now=now)
    discarded = sorted([*tally.discarded, *unread], key=lambda d: d.source)
    sets = sorted({*tally.counted, *([wanted] if wanted is not None else [])},
                  key=lambda p: p.set_id)
    report = _report(tally, sets, discarded, digest, now, wanted)
    if as_json:
        print(json.dumps(report, ensure_ascii=False, separators=(",", ":")), flush=True)
    else:
        _print_report(report, directory, len(texts) + len(unread))
    if wanted is not None and not tally.approves(wanted):
        raise CliError(NOT_APPROVED.format(set_id=wanted.set_id,
                                           n=len(tally.holders_for(wanted)),
                                           t=tally.threshold))


# `approvals push` registers itself on `approvals_app`; it needs the helpers above, so it is
# imported last (the module is complete by then).
from locksmith.personalities.caution import approvals_push as _push  # noqa: E402,F401
