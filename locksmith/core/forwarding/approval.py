"""Holder approvals of a PCR set (docs/forwarding.md §4): the statement, the approval file, and
the one counting procedure that forwardd and `caution secret approvals check` both use.

An approval lets an enclave with *other* code (other PCR0/1/2) receive the quorum secret from a
provider. It is worth exactly what an unlock is worth: `threshold` distinct holders of the
bundle must have signed the same statement, naming this bundle and exactly that PCR set, and it
must not have expired. So the statement is a fixed seven-line text with nothing free in it, and
the file is an ordinary OpenPGP cleartext signed message, which GnuPG and Sequoia verify with
the holder's certificate: a holder can check what they sign with the tools they already trust.

    Statement(bundle_hash, PcrSet, expires).text()     the seven lines, LF-separated
    .signed_bytes()                                    the same lines CR LF-joined: what the
                                                       text-mode (0x01) signature hashes
    approval_file(statement, armored signature)        the cleartext signed message (§4.2)
    count_approvals(texts, holders=…, …) -> Tally      §4.3: each text judged alone, first
                                                       failure decides; then one per holder
                                                       per PCR set

Who signed is decided by `BundleHolders.identify`, the same code that identifies a holder's
share on port 49504 (protocol.md §7 step 2): one signature packet, SHA-256/384/512, a signing
key live at the signature's creation time and at `now`, at most 60 s ahead, exactly one holder.
Nothing here reads a clock: `now` is always the caller's.

A file's *name* is never trusted (the provider receives texts, not names); `source` only labels
the result. Every discard reason below is fixed text or a number, never a piece of the input,
so a reason can be logged and shown as is.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from types import MappingProxyType

from locksmith.core.attestation.pcr_policy import PCR_LEN, is_debug_pcrs
from locksmith.core.openpgp import armor, packets
from locksmith.core.openpgp import signature as sigmod
from locksmith.core.openpgp.errors import OpenPGPError
from locksmith.core.openpgp.signature import Signature
from locksmith.core.protocol.holders import BundleHolders

__all__ = [
    "DEBUG_SET", "DUPLICATE", "EXCLUDED", "EXPIRED", "MALFORMED", "MAX_APPROVAL_BYTES",
    "NOT_A_HOLDER", "OTHER_BUNDLE", "PCR_LENGTH", "ApprovalError", "CountedApproval",
    "DiscardedApproval", "PcrSet", "Statement", "Tally", "approval_file", "approval_name",
    "count_approvals", "format_time", "parse_statement", "parse_time", "statement_of",
]

MAX_APPROVAL_BYTES = 16 * 1024  # UTF-8 bytes of one approval file
PCR_LENGTH = PCR_LEN
HASH_LENGTH = 32
LATEST_TIME = 253402300799  # 9999-12-31T23:59:59Z: the last time the statement can write

TITLE = "locksmith forwarding approval v1"
PURPOSE = "release the quorum secret to enclaves measured with these PCRs"
_LINE_NAMES = ("title", "bundle", "pcr0", "pcr1", "pcr2", "expires", "purpose")

# §4.3's discard reasons, in the order of its checks.
MALFORMED = "not an approval (malformed cleartext signed message)"
STATEMENT = "not an approval (statement: {which})"
OTHER_BUNDLE = "approval for another bundle"
NOT_A_HOLDER = "not signed by a holder of this bundle"
EXCLUDED = "holder {k} is excluded"
EXPIRED = "expired {expires}"
DEBUG_SET = "approval of a debug-mode PCR set"
DUPLICATE = "duplicate approval by holder {k}"

_BEGIN_MESSAGE = "-----BEGIN PGP SIGNED MESSAGE-----"
_BEGIN_SIGNATURE = "-----BEGIN PGP SIGNATURE-----"
_END_SIGNATURE = "-----END PGP SIGNATURE-----"
# The `Hash:` header names the signature's hash; protocol.md §6 accepts these three.
_HASH_NAMES = {"SHA256": sigmod.SHA256, "SHA384": sigmod.SHA384, "SHA512": sigmod.SHA512}
_HASH_HEADER = re.compile(r"Hash: ([A-Z0-9]+)")
_TIME = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})Z")
_HEX64 = re.compile(r"bundle: ([0-9a-f]{64})")
_PCR = {i: re.compile(rf"pcr{i}: ([0-9a-f]{{96}})") for i in range(3)}
_EXPIRES = re.compile(r"expires: (.*)")


class ApprovalError(ValueError):
    """An approval text or value that is not what §4 describes; `str()` says which part,
    without quoting it."""


# --- times ----------------------------------------------------------------------------------


def format_time(seconds: int) -> str:
    """Unix seconds → `YYYY-MM-DDTHH:MM:SSZ` (UTC), the statement's `expires` form."""
    if not 0 <= seconds <= LATEST_TIME:
        raise ApprovalError("time out of range (1970 to 9999)")
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> int:
    """`YYYY-MM-DDTHH:MM:SSZ` exactly (a real calendar time, no leap second) → Unix seconds."""
    match = _TIME.fullmatch(text)
    if match is None:
        raise ApprovalError("expected YYYY-MM-DDTHH:MM:SSZ")
    try:
        year, month, day, hour, minute, second = (int(part) for part in match.groups())
        moment = datetime(year, month, day, hour, minute, second, tzinfo=timezone.utc)
    except ValueError:
        raise ApprovalError("not a calendar date and time") from None
    seconds = int(moment.timestamp())
    if seconds < 0:
        raise ApprovalError("time out of range (1970 to 9999)")
    return seconds


# --- the values ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PcrSet:
    """PCR0, PCR1 and PCR2 of an enclave image: what an approval names and a provider compares."""

    pcr0: bytes
    pcr1: bytes
    pcr2: bytes

    def __post_init__(self) -> None:
        for index, value in enumerate((self.pcr0, self.pcr1, self.pcr2)):
            if not isinstance(value, bytes) or len(value) != PCR_LENGTH:
                raise ApprovalError(f"PCR{index} must be {PCR_LENGTH} bytes")

    @classmethod
    def from_pcrs(cls, pcrs: Mapping[int, bytes]) -> PcrSet:
        """PCR0–2 of an attestation's (or a trusted-hashes file's) `pcrs` map."""
        missing = [i for i in range(3) if i not in pcrs]
        if missing:
            raise ApprovalError(f"PCR{missing[0]} is missing")
        return cls(bytes(pcrs[0]), bytes(pcrs[1]), bytes(pcrs[2]))

    @property
    def set_id(self) -> str:
        """First 16 hex digits of SHA-256(pcr0 ‖ pcr1 ‖ pcr2): the name in files and logs."""
        return hashlib.sha256(self.pcr0 + self.pcr1 + self.pcr2).hexdigest()[:16]

    @property
    def is_debug(self) -> bool:
        """All three zero: a debug-mode enclave, which no approval can admit."""
        return is_debug_pcrs(self.as_pcrs())

    def as_pcrs(self) -> dict[int, bytes]:
        return {0: self.pcr0, 1: self.pcr1, 2: self.pcr2}

    def __repr__(self) -> str:
        return f"PcrSet({self.set_id}: pcr0 {self.pcr0.hex()[:16]}…)"


@dataclass(frozen=True)
class Statement:
    """What a holder signs (§4.1): this bundle, exactly these PCRs, until `expires`."""

    bundle_hash: bytes
    pcrs: PcrSet
    expires: int  # Unix seconds, UTC, whole seconds

    def __post_init__(self) -> None:
        if not isinstance(self.bundle_hash, bytes) or len(self.bundle_hash) != HASH_LENGTH:
            raise ApprovalError(f"the bundle hash must be {HASH_LENGTH} bytes")
        format_time(self.expires)  # in range, or ApprovalError

    def text(self) -> str:
        return "\n".join((
            TITLE,
            f"bundle: {self.bundle_hash.hex()}",
            f"pcr0: {self.pcrs.pcr0.hex()}",
            f"pcr1: {self.pcrs.pcr1.hex()}",
            f"pcr2: {self.pcrs.pcr2.hex()}",
            f"expires: {format_time(self.expires)}",
            f"purpose: {PURPOSE}",
        ))

    def signed_bytes(self) -> bytes:
        """The canonical text (RFC 4880 §5.2.1: CR LF line ends) a 0x01 signature hashes."""
        return self.text().replace("\n", "\r\n").encode("ascii")


def parse_statement(text: str) -> Statement:
    """The exact seven lines of §4.1, or `ApprovalError` whose text is the §4.3 check 2 reason."""
    lines = text.split("\n")
    if len(lines) != len(_LINE_NAMES):
        raise ApprovalError(STATEMENT.format(
            which=f"{len(lines)} lines, expected {len(_LINE_NAMES)}"))

    def bad(index: int) -> ApprovalError:
        return ApprovalError(STATEMENT.format(which=f"{_LINE_NAMES[index]} line"))

    if lines[0] != TITLE:
        raise bad(0)
    bundle = _HEX64.fullmatch(lines[1])
    if bundle is None:
        raise bad(1)
    values = []
    for index in range(3):
        match = _PCR[index].fullmatch(lines[2 + index])
        if match is None:
            raise bad(2 + index)
        values.append(bytes.fromhex(match.group(1)))
    expires = _EXPIRES.fullmatch(lines[5])
    try:
        seconds = parse_time(expires.group(1)) if expires else None
    except ApprovalError:
        seconds = None
    if seconds is None:
        raise bad(5)
    if lines[6] != f"purpose: {PURPOSE}":
        raise bad(6)
    return Statement(bytes.fromhex(bundle.group(1)), PcrSet(*values), seconds)


# --- the file --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Cleartext:
    """A cleartext signed message taken apart: the signed text and its one signature."""

    text: str  # the statement as it appears (dash-escaping undone), LF-separated
    signature: Signature = field(repr=False)
    packet: bytes = field(repr=False)  # the signature packet, for re-armoring


def _signature_packet(block: str) -> tuple[Signature, bytes]:
    """The one text-mode v4 signature packet of an armored `PGP SIGNATURE` block."""
    blocks = armor.dearmor_all(block)
    if len(blocks) != 1 or blocks[0].kind != "SIGNATURE":
        raise ApprovalError(MALFORMED)
    found = packets.parse_packets(blocks[0].data)
    if len(found) != 1 or found[0].tag != packets.SIGNATURE:
        raise ApprovalError(MALFORMED)
    sig = Signature.parse(found[0].body)
    if sig.sig_type != sigmod.TEXT:
        raise ApprovalError(MALFORMED)
    return sig, packets.encode_packet(packets.SIGNATURE, found[0].body)


def _frame(text: str) -> _Cleartext:
    """§4.3 check 1: the RFC 4880 §7 frame with at most one `Hash:` header, agreeing with the
    signature's hash; a statement; one signature block with one signature packet; ≤ 16 KiB.
    Line ends may be LF or CR LF (a checkout on Windows)."""
    try:
        if len(text.encode("utf-8")) > MAX_APPROVAL_BYTES:
            raise ApprovalError(MALFORMED)
    except UnicodeEncodeError:  # a lone surrogate, e.g. from JSON
        raise ApprovalError(MALFORMED) from None
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    if lines[0].rstrip(" \t") != _BEGIN_MESSAGE:
        raise ApprovalError(MALFORMED)
    pos, named = 1, None
    while pos < len(lines) and lines[pos] != "":
        header = _HASH_HEADER.fullmatch(lines[pos].rstrip(" \t"))
        if header is None or named is not None or header.group(1) not in _HASH_NAMES:
            raise ApprovalError(MALFORMED)
        named = _HASH_NAMES[header.group(1)]
        pos += 1
    body: list[str] = []
    pos += 1
    while pos < len(lines) and lines[pos].rstrip(" \t") != _BEGIN_SIGNATURE:
        line = lines[pos]
        if line.startswith("- "):
            line = line[2:]  # dash-escaped (§4.1 never needs it, but RFC 4880 allows it)
        elif line.startswith("-"):
            raise ApprovalError(MALFORMED)
        body.append(line)
        pos += 1
    end = next((i for i in range(pos, len(lines)) if lines[i].rstrip(" \t") == _END_SIGNATURE),
               None)
    if not body or end is None or any(line.strip() for line in lines[end + 1:]):
        raise ApprovalError(MALFORMED)
    try:
        sig, packet = _signature_packet("\n".join(lines[pos:end + 1]) + "\n")
    except OpenPGPError:
        raise ApprovalError(MALFORMED) from None
    if named is not None and named != sig.hash_algorithm:
        raise ApprovalError(MALFORMED)
    return _Cleartext("\n".join(body), sig, packet)


def approval_file(statement: Statement, armored_signature: str) -> str:
    """The approval file (§4.2): `Hash:` header naming the signature's hash, the statement, and
    the signature re-armored without headers. The signature must be one text-mode (0x01)
    signature packet with SHA-256, SHA-384 or SHA-512; whether it verifies is not checked
    here (`count_approvals` does that)."""
    try:
        sig, packet = _signature_packet(armored_signature)
    except (OpenPGPError, ApprovalError):
        raise ApprovalError("not one armored text-mode signature packet") from None
    names = {algorithm: name for name, algorithm in _HASH_NAMES.items()}
    if sig.hash_algorithm not in names:
        raise ApprovalError("the signature's hash must be SHA-256, SHA-384 or SHA-512")
    return (f"{_BEGIN_MESSAGE}\nHash: {names[sig.hash_algorithm]}\n\n{statement.text()}\n"
            + armor.armor("SIGNATURE", packet))


def approval_name(fingerprint: str, pcrs: PcrSet) -> str:
    """`<holder primary FPR>-<set id>.asc`: the file name of §4.2 (a convenience only)."""
    return f"{fingerprint}-{pcrs.set_id}.asc"


def statement_of(text: str) -> Statement | None:
    """The statement of an approval text, signature *not* checked (None when the text fails
    §4.3 checks 1–2): enough for a requester to choose which approvals to present."""
    try:
        return parse_statement(_frame(text).text)
    except ApprovalError:
        return None


# --- counting (§4.3) -------------------------------------------------------------------------


@dataclass(frozen=True)
class CountedApproval:
    holder: int  # k, the holder's 0-based index in the bundle
    fingerprint: str  # the holder's primary fingerprint
    expires: int  # Unix seconds
    source: str  # the caller's label for the text (a file name); never trusted


@dataclass(frozen=True)
class DiscardedApproval:
    source: str
    reason: str  # one of §4.3's texts


@dataclass(frozen=True)
class Tally:
    """The result of §4.3 for one set of texts: who counts for which PCR set, and what not."""

    threshold: int
    counted: Mapping[PcrSet, tuple[CountedApproval, ...]]  # by set id; holders ascending
    discarded: tuple[DiscardedApproval, ...]  # in input order

    def holders_for(self, pcrs: PcrSet) -> tuple[int, ...]:
        """The distinct holders (ascending) whose approval of exactly `pcrs` counts."""
        return tuple(c.holder for c in self.counted.get(pcrs, ()))

    def approves(self, pcrs: PcrSet) -> bool:
        return len(self.holders_for(pcrs)) >= self.threshold


@dataclass(frozen=True)
class _Survivor:
    pcrs: PcrSet
    approval: CountedApproval


def _judge(source: str, text: str, holders: BundleHolders, bundle_hash: bytes, now: int,
           excluded: Collection[int]) -> _Survivor | DiscardedApproval:
    """Checks 1–6 on one text; the first failure decides."""
    try:
        frame = _frame(text)  # 1
        statement = parse_statement(frame.text)  # 2
    except ApprovalError as exc:
        return DiscardedApproval(source, str(exc))
    if statement.bundle_hash != bundle_hash:  # 3
        return DiscardedApproval(source, OTHER_BUNDLE)
    try:  # 4 (protocol.md §7 step 2 over the canonical text)
        holder = holders.identify(armor.armor("SIGNATURE", frame.packet),
                                  frame.text.replace("\n", "\r\n").encode("utf-8"), now)
    except OpenPGPError:  # HolderSignatureError: none, several, or ahead of the clock
        return DiscardedApproval(source, NOT_A_HOLDER)
    if holder.index in excluded:  # 4a
        return DiscardedApproval(source, EXCLUDED.format(k=holder.index))
    if statement.expires <= now:  # 5
        return DiscardedApproval(source, EXPIRED.format(expires=format_time(statement.expires)))
    if statement.pcrs.is_debug:  # 6
        return DiscardedApproval(source, DEBUG_SET)
    return _Survivor(statement.pcrs, CountedApproval(holder.index, holder.fingerprint,
                                                     statement.expires, source))


def count_approvals(approvals: Sequence[tuple[str, str]], *, holders: BundleHolders,
                    bundle_hash: bytes, threshold: int, now: int,
                    excluded: Collection[int] = ()) -> Tally:
    """§4.3 over `(source, text)` pairs. Within a PCR set a holder counts once: of two approvals
    by one holder the earlier-expiring one is discarded (`duplicate approval by holder <k>`);
    of two expiring together, the later one in input order."""
    if threshold < 1:
        raise ValueError("a threshold is at least 1 (v0 bundles cannot use approvals)")
    kept: dict[PcrSet, dict[int, tuple[int, CountedApproval]]] = {}
    discarded: list[tuple[int, DiscardedApproval]] = []
    for order, (source, text) in enumerate(approvals):
        judged = _judge(source, text, holders, bundle_hash, now, excluded)
        if isinstance(judged, DiscardedApproval):
            discarded.append((order, judged))
            continue
        by_holder = kept.setdefault(judged.pcrs, {})
        new = judged.approval
        old = by_holder.get(new.holder)
        if old is None:
            by_holder[new.holder] = (order, new)
            continue
        if new.expires > old[1].expires:
            by_holder[new.holder] = (order, new)
            loser_order, loser = old
        else:
            loser_order, loser = order, new
        discarded.append((loser_order, DiscardedApproval(
            loser.source, DUPLICATE.format(k=loser.holder))))
    counted = {pcrs: tuple(kept[pcrs][k][1] for k in sorted(kept[pcrs]))
               for pcrs in sorted(kept, key=lambda p: p.set_id)}
    return Tally(threshold, MappingProxyType(counted),
                 tuple(d for _, d in sorted(discarded, key=lambda item: item[0])))
