"""The reconstitution round of locksmithd (protocol.md §8): a small trusted set of shares.

Shares enter only through `ReconstitutionRound.admit(request, holder)`, which applies checks
1–6 in the spec's order and answers each failure with its text; a rejection never consumes a
slot. When a share set reaches its threshold, the recovered-key check runs before the last
submitter is answered:

    recover (formats.md §8) → derive the quorum primary key (§9) → compare its fingerprint with
    the bundle's `public_key` primary → every subkey of `public_key` must be a derived one

with three distinct outcomes: `QuorumReached` (the 32-byte secret), `RecoveryFailed` (new
round; v0: only that share set is discarded) and `BundleTampered` (fatal: a foreign subkey
means the bundle was altered after generation; resubmitting cannot fix it).

Generations: V1 and ImportedV0 have a fixed threshold and a bundle hash. v0 bundles record no
threshold, so the round keeps one share set per *claimed* threshold (README §5 #31): one holder
claiming a wrong threshold lands in a set of its own, whose failure discards that set alone and
never blocks the honest holders' set. Checks 3–6 apply across all sets: one share per holder.

The round is not thread-safe by design: the server runs `admit` under one lock (§8 "strictly
sequentially"). Results carry the verdict for message 4 and the log lines (enclave.md §3.2) as
data; nothing here prints, and no log line contains a share or a key.

Wiping (best effort): stored shares live in bytearrays that are zeroed when a set is discarded,
the round ends, or `wipe()` is called (SIGTERM). The secret is returned in a bytearray the
caller wipes after handing it to keyforkd. Intermediate values made by `shamir.combine` and the
key derivation are immutable `bytes` and cannot be overwritten from Python.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from locksmith.core import shamir
from locksmith.core.bundle_checks import CheckedBundle
from locksmith.core.openpgp.certs import Certificate
from locksmith.core.openpgp.quorumkey import QuorumKeys, quorum_keys
from locksmith.core.protocol_messages import (
    Accepted, LocalProtocolError, Rejected, ShareRequest, submission_bundle_hash,
)

__all__ = [
    "AdmitResult", "BundleTampered", "QuorumReached", "ReconstitutionRound", "RecoveryFailed",
    "ShareAccepted", "ShareRejected",
]

SHARE_LENGTH = 33  # coordinate x + 32 bytes of y (formats.md §8)
SECRET_LENGTH = 32

REJECT_OTHER_BUNDLE = "Share was dealt from a different bundle"  # check 1
REJECT_THRESHOLD = "Threshold does not match the verified bundle"  # check 2
REJECT_UNKNOWN_HOLDER = "Unknown holder"  # check 3
REJECT_MALFORMED_SHARE = "Malformed share: expected a nonzero coordinate and 32 bytes"  # check 4
REJECT_COORDINATE = "Share coordinate does not match the holder's bundle position"  # check 5
REJECT_DUPLICATE = "Holder already contributed a share"  # check 6
REJECT_MISMATCH = "Recovered secret does not match the bundle public key"
REJECT_FOREIGN_SUBKEY = "Bundle quorum key carries a subkey not derived from the secret"

LOG_REJECTED = "rejected submission: {reason}"
LOG_ACCEPTED = "accepted share from holder {k} ({fpr}); {n} remaining"
LOG_ACCEPTED_V0 = "accepted share from holder {k} ({fpr}) for threshold {t}; {n} remaining"
LOG_NO_BUNDLE_HASH = ("share request from holder {k} ({fpr}) carries no bundle_hash "
                      "(older client); bundle check skipped")
LOG_QUORUM = "quorum reached: the recovered secret matches the bundle public key"
LOG_MISMATCH = "recovered secret did not match the bundle; every holder must resubmit"
LOG_MISMATCH_V0 = ("recovered secret did not match the bundle; holders of the threshold {t} "
                   "share set must resubmit")
LOG_CONTRIBUTORS = "failed recovery used shares from: {contributors}"
LOG_FOREIGN_SUBKEY = "bundle public key carries a subkey not derived from the recovered secret"

_HASH_HEX = re.compile(r"[0-9a-fA-F]{64}")


# --- results -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ShareRejected:
    """A check failed; nothing was stored."""

    verdict: Rejected
    log: tuple[str, ...]


@dataclass(frozen=True)
class ShareAccepted:
    """Stored in the set of `threshold`; `verdict.remaining` > 0 more shares complete it."""

    verdict: Accepted
    threshold: int
    log: tuple[str, ...]


@dataclass(frozen=True)
class QuorumReached:
    """The round is over: answer the last submitter, close the listener, start keyforkd with
    `secret`, then wipe it (`secret[:] = bytes(32)`)."""

    verdict: Accepted
    secret: bytearray = field(repr=False)
    log: tuple[str, ...]


@dataclass(frozen=True)
class RecoveryFailed:
    """Recovery error or primary mismatch: the set's shares are wiped; V1/ImportedV0 start a
    new round (every holder resubmits), v0 discards only the set of `threshold`."""

    verdict: Rejected
    threshold: int
    contributors: tuple[int, ...]  # holder indices, in holder order
    log: tuple[str, ...]


@dataclass(frozen=True)
class BundleTampered:
    """Fatal: answer the last submitter, close every other connection unanswered, exit 1."""

    verdict: Rejected
    log: tuple[str, ...]


AdmitResult = ShareRejected | ShareAccepted | QuorumReached | RecoveryFailed | BundleTampered


def _wipe(buffer: bytearray) -> None:
    buffer[:] = bytes(len(buffer))


# --- the round ---------------------------------------------------------------------------------


class ReconstitutionRound:
    """Collection state for one bundle; survives restarts (§8 step 4) until the quorum is
    reached, the bundle is found tampered, or `wipe()` ends it."""

    def __init__(self, *, holders: Sequence[str], public_key: Certificate,
                 threshold: int | None, bundle_hash: bytes | None) -> None:
        """`holders`: primary fingerprints in holder order; `threshold` None for v0 (one set
        per claimed threshold); `bundle_hash` None when the generation has none (v0)."""
        if threshold is not None and not 1 <= threshold <= len(holders):
            raise ValueError("threshold must be 1..holder count")
        self._fingerprints = tuple(holders)
        self._public_key = public_key
        self._threshold = threshold
        self._bundle_hash = bundle_hash
        self._sets: dict[int, dict[int, bytearray]] = {}  # threshold → holder → share
        self._finished = False
        self.restarts = 0  # number of failed recoveries that restarted the round (V1)

    @classmethod
    def from_bundle(cls, checked: CheckedBundle) -> ReconstitutionRound:
        return cls(holders=[cert.fingerprint for cert in checked.holders],
                   public_key=checked.quorum_certificate, threshold=checked.threshold,
                   bundle_hash=submission_bundle_hash(checked.bundle))

    @property
    def finished(self) -> bool:
        return self._finished

    def remaining(self, threshold: int | None = None) -> int:
        """Shares still missing in the set of `threshold` (default: the bundle's)."""
        t = self._threshold if threshold is None else threshold
        if t is None:
            raise LocalProtocolError("a v0 round has one set per claimed threshold: name it")
        return t - len(self._sets.get(t, {}))

    def admit(self, request: ShareRequest, holder: int) -> AdmitResult:
        """§8 for one submission (Q, k) from an identified holder k; copies the share."""
        if self._finished:
            raise LocalProtocolError("the reconstitution round is over")
        log: list[str] = []
        reason = self._check(request, holder, log)
        if reason is not None:
            return ShareRejected(Rejected(reason), (*log, LOG_REJECTED.format(reason=reason)))
        t = request.threshold
        shares = self._sets.setdefault(t, {})
        shares[holder] = bytearray(request.shard)
        remaining = t - len(shares)
        if self._threshold is None:
            line = LOG_ACCEPTED_V0.format(k=holder, fpr=self._fingerprints[holder], t=t,
                                          n=remaining)
        else:
            line = LOG_ACCEPTED.format(k=holder, fpr=self._fingerprints[holder], n=remaining)
        if remaining > 0:
            return ShareAccepted(Accepted(remaining), t, (*log, line))
        return self._complete(t, log, line)

    def wipe(self) -> None:
        """Discard every share and end the round (shutdown before the quorum)."""
        for t in list(self._sets):
            self._discard(t)
        self._finished = True

    # --- checks 1–6, in order ----------------------------------------------------------------

    def _check(self, request: ShareRequest, holder: int, log: list[str]) -> str | None:
        known = 0 <= holder < len(self._fingerprints)
        if self._bundle_hash is not None:
            if request.bundle_hash is None:
                if known:
                    log.append(LOG_NO_BUNDLE_HASH.format(k=holder,
                                                         fpr=self._fingerprints[holder]))
            elif not self._same_bundle(request.bundle_hash):
                return REJECT_OTHER_BUNDLE
        if self._threshold is not None:
            if request.threshold != self._threshold:
                return REJECT_THRESHOLD
        elif not 1 <= request.threshold <= len(self._fingerprints):
            return REJECT_THRESHOLD
        if not known:
            return REJECT_UNKNOWN_HOLDER
        shard = request.shard
        if len(shard) != SHARE_LENGTH or shard[0] == 0:
            return REJECT_MALFORMED_SHARE
        if shard[0] != holder + 1:
            return REJECT_COORDINATE
        if any(holder in shares for shares in self._sets.values()):
            return REJECT_DUPLICATE
        return None

    def _same_bundle(self, claimed: str) -> bool:
        """Compared as bytes; anything but 64 hex digits (either case) counts as different."""
        assert self._bundle_hash is not None
        if not _HASH_HEX.fullmatch(claimed):
            return False
        return hmac.compare_digest(bytes.fromhex(claimed), self._bundle_hash)

    # --- the recovered-key check (§8 steps 1–5) ----------------------------------------------

    def _complete(self, t: int, log: list[str], accepted_line: str) -> AdmitResult:
        contributors = tuple(sorted(self._sets[t]))
        secret = self._recover(t)
        keys = None if secret is None else quorum_keys(bytes(secret))
        if secret is None or keys is None or not self._primary_matches(keys):
            if secret is not None:
                _wipe(secret)
            return self._failed(t, contributors, log)
        if not self._subkeys_derived(keys):
            _wipe(secret)
            self.wipe()
            return BundleTampered(Rejected(REJECT_FOREIGN_SUBKEY), (*log, LOG_FOREIGN_SUBKEY))
        self.wipe()
        return QuorumReached(Accepted(0), secret, (*log, accepted_line, LOG_QUORUM))

    def _recover(self, t: int) -> bytearray | None:
        """Step 1: combine the set's shares (formats.md §8); the result must be 32 bytes."""
        shares = self._sets[t]
        try:
            secret = bytearray(shamir.combine([bytes(shares[k]) for k in sorted(shares)], t))
        except shamir.ShamirError:
            return None
        if len(secret) != SECRET_LENGTH:
            _wipe(secret)
            return None
        return secret

    def _primary_matches(self, keys: QuorumKeys) -> bool:
        """Step 2: component 0's v4 fingerprint against the bundle's primary (signatures and
        expiry of `public_key` are ignored)."""
        return hmac.compare_digest(keys.primary.public.fingerprint,
                                   self._public_key.primary.fingerprint)

    def _subkeys_derived(self, keys: QuorumKeys) -> bool:
        """Step 5: every subkey packet of `public_key`, bound or not, is 1', 2' or 3'."""
        derived = {k.public.fingerprint for k in (keys.sign, keys.encrypt, keys.authenticate)}
        return all(sub.key.fingerprint in derived for sub in self._public_key.subkeys)

    def _failed(self, t: int, contributors: tuple[int, ...], log: list[str]) -> RecoveryFailed:
        used = ", ".join(f"{k} ({self._fingerprints[k]})" for k in contributors)
        if self._threshold is None:
            self._discard(t)
            headline = LOG_MISMATCH_V0.format(t=t)
        else:
            for other in list(self._sets):
                self._discard(other)
            self.restarts += 1
            headline = LOG_MISMATCH
        return RecoveryFailed(Rejected(REJECT_MISMATCH), t, contributors,
                              (*log, headline, LOG_CONTRIBUTORS.format(contributors=used)))

    def _discard(self, t: int) -> None:
        for share in self._sets.pop(t, {}).values():
            _wipe(share)
