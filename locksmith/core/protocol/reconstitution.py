"""The reconstitution round of locksmithd (protocol.md §8): a small trusted set of shares.

Shares enter only through `ReconstitutionRound.admit(request, holder)`, which applies checks
1–6 in the spec's order and answers each failure with its text; a rejection never consumes a
slot. Once a share set holds at least its threshold t of shares, the recovered-key check runs
before the submitter is answered:

    recover (formats.md §8) → derive the quorum primary key (§9) → compare its fingerprint with
    the bundle's `public_key` primary → every subkey of `public_key` must be a derived one

Robust recovery (protocol.md §8 "Amended"; review finding F2). A holder with a valid signing key
can send a wrong share, and before the amendment one such share failed every recovery it was
part of and wiped every share, after which its holder got in first again. Now:

* **Shares are kept.** A recovery that fails wipes only its candidate secret; every share stays
  until the round ends, and the round never restarts.
* **Other subsets are tried.** When a share arrives and the set holds m ≥ t shares, the t-subsets
  through the new share are tried (`share_search.new_subsets`), at most `search_cap` of them
  (default 256) per arriving share; every older subset was tried when its newest share arrived.
  So t honest shares unlock whatever the other holders sent, as long as the subsets through the
  last honest share, C(m−1, t−1) with m − 1 = t − 1 + (wrong shares held), fit the cap: any
  quorum of up to 11 holders; one wrong share for any t ≤ 254 (C(t, t−1) = t); two for t ≤ 22.
  The worst case is `search_cap` recoveries per arriving share, ~3 ms each for small t and ~7 ms
  at t = 128 (Lagrange over 128 points in Python), and each holder arrives once per round.
* **One share per holder, first come.** Check 6 answers every resubmission
  `Holder already contributed a share`, before and after any failed recovery, so no answer tells
  a holder whether a recovery failed. A holder cannot replace its share: an honest holder never
  needs to (its share is right and is kept), and a replaceable share would let one signing key
  make the round search again on every submission.
* A fruitless search answers `{"Accepted":{"remaining":1}}`: the share is stored, and at least
  one more share is needed. `Recovered secret does not match the bundle public key` is kept
  below for the record but is no longer sent.
* On success every stored share is checked against the recovered polynomial; a share off it is
  wrong, and its holder is named in the log as the likely culprit (such a share was in every
  failed subset tried with it and in none that matched).

Operators may also exclude holders (`excluded`, locksmithd's `--exclude-holder`): their
submissions fail check 3 (`Unknown holder`) and are never stored.

Generations: V1 and ImportedV0 have a fixed threshold and a bundle hash. v0 bundles record no
threshold, so the round keeps one share set per *claimed* threshold (README §5 #31), each
searched as above; a holder claiming a wrong threshold stays in a set that never matches and
never blocks the honest holders' set. Checks 3–6 apply across all sets: one share per holder.

The round is not thread-safe by design: the server runs `admit` under one lock (§8 "strictly
sequentially"), in a worker thread because a search can take a second. Results carry the
verdict for message 4 and the log lines (enclave.md §3.2) as data; nothing here prints, and no
log line contains a share or a key.

Wiping (best effort): stored shares live in bytearrays that are zeroed when the round ends or
`wipe()` is called (SIGTERM); a candidate secret that fails the check is zeroed at once. The
secret is returned in a bytearray the caller wipes after handing it to keyforkd. Intermediate
values made by `shamir.combine` and the key derivation are immutable `bytes` and cannot be
overwritten from Python.
"""

from __future__ import annotations

import enum
import hmac
import itertools
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from locksmith.core import shamir
from locksmith.core.bundle.checks import CheckedBundle
from locksmith.core.openpgp.certs import Certificate
from locksmith.core.openpgp.quorumkey import QuorumKeys, quorum_keys
from locksmith.core.protocol.messages import (
    Accepted, LocalProtocolError, Rejected, ShareRequest, submission_bundle_hash,
)
from locksmith.core.protocol.share_search import new_subset_count, new_subsets, off_polynomial

__all__ = [
    "AdmitResult", "BundleTampered", "KeyCheck", "QuorumReached", "ReconstitutionRound", "RecoveryFailed", "SEARCH_CAP",
    "ShareAccepted", "ShareRejected", "check_recovered_key", "primary_matches",
    "subkeys_derived",
]

SHARE_LENGTH = 33  # coordinate x + 32 bytes of y (formats.md §8)
SECRET_LENGTH = 32
SEARCH_CAP = 256  # t-subsets tried per arriving share (see the module docstring)

REJECT_OTHER_BUNDLE = "Share was dealt from a different bundle"  # check 1
REJECT_THRESHOLD = "Threshold does not match the verified bundle"  # check 2
REJECT_UNKNOWN_HOLDER = "Unknown holder"  # check 3 (also: excluded by the operator)
REJECT_MALFORMED_SHARE = "Malformed share: expected a nonzero coordinate and 32 bytes"  # check 4
REJECT_COORDINATE = "Share coordinate does not match the holder's bundle position"  # check 5
REJECT_DUPLICATE = "Holder already contributed a share"  # check 6
REJECT_MISMATCH = "Recovered secret does not match the bundle public key"  # not sent (above)
REJECT_FOREIGN_SUBKEY = "Bundle quorum key carries a subkey not derived from the secret"

LOG_REJECTED = "rejected submission: {reason}"
LOG_EXCLUDED = "submission from holder {k} ({fpr}), excluded by the operator"
LOG_ACCEPTED = "accepted share from holder {k} ({fpr}); {n} remaining"
LOG_ACCEPTED_V0 = "accepted share from holder {k} ({fpr}) for threshold {t}; {n} remaining"
LOG_NO_BUNDLE_HASH = ("share request from holder {k} ({fpr}) carries no bundle_hash "
                      "(older client); bundle check skipped")
LOG_QUORUM = "quorum reached: the recovered secret matches the bundle public key"
LOG_RECOVERED_FROM = "the matching recovery used shares from: {contributors}"
LOG_SEARCH_FAILED = ("no {t} of the {m} shares held{v0} recover the bundle's secret ({tried} of "
                     "{total} combinations with holder {k}'s share tried); every share is kept")
LOG_CONTRIBUTORS = "failed recovery used shares from: {contributors}"
LOG_CULPRIT = ("likely culprit: holder {k} ({fpr}) sent a share that is not on the recovered "
               "polynomial (in every failed combination tried with it, in none that matched)")
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
    culprits: tuple[int, ...] = ()  # holders whose stored share is off the recovered polynomial


@dataclass(frozen=True)
class RecoveryFailed:
    """Stored, but no subset tried matched the bundle: every share is kept and the submitter
    is told `remaining: 1` (at least one more share is needed)."""

    verdict: Accepted
    threshold: int
    contributors: tuple[int, ...]  # holders with a share in the set, in holder order
    tried: int  # subsets through the new share that were tried ...
    candidates: int  # ... out of this many
    log: tuple[str, ...]


@dataclass(frozen=True)
class BundleTampered:
    """Fatal: answer the last submitter, close every other connection unanswered, exit 1."""

    verdict: Rejected
    log: tuple[str, ...]


AdmitResult = ShareRejected | ShareAccepted | QuorumReached | RecoveryFailed | BundleTampered


def _wipe(buffer: bytearray) -> None:
    buffer[:] = bytes(len(buffer))


# --- the recovered-key check (§8 steps 2 and 5), also for a forwarded secret -----------------

class KeyCheck(enum.Enum):
    MATCH = "match"
    MISMATCH = "mismatch"  # step 2: the derived primary is not the bundle's
    FOREIGN_SUBKEY = "foreign subkey"  # step 5: the bundle was altered after generation


def primary_matches(keys: QuorumKeys, public_key: Certificate) -> bool:
    """Step 2: component 0's v4 fingerprint against the bundle's primary (signatures and
    expiry of `public_key` are ignored)."""
    return hmac.compare_digest(keys.primary.public.fingerprint, public_key.primary.fingerprint)


def subkeys_derived(keys: QuorumKeys, public_key: Certificate) -> bool:
    """Step 5: every subkey packet of `public_key`, bound or not, is 1', 2' or 3'."""
    derived = {k.public.fingerprint for k in (keys.sign, keys.encrypt, keys.authenticate)}
    return all(sub.key.fingerprint in derived for sub in public_key.subkeys)


def check_recovered_key(secret: bytes | bytearray, public_key: Certificate) -> KeyCheck:
    """Steps 2 and 5 together on a 32-byte candidate secret — the round's check, and the one
    a secret received from another enclave must pass (docs/forwarding.md §5.1, §6 step 7)."""
    if len(secret) != SECRET_LENGTH:
        return KeyCheck.MISMATCH
    keys = quorum_keys(bytes(secret))
    if not primary_matches(keys, public_key):
        return KeyCheck.MISMATCH
    return KeyCheck.MATCH if subkeys_derived(keys, public_key) else KeyCheck.FOREIGN_SUBKEY


# --- the round ---------------------------------------------------------------------------------


class ReconstitutionRound:
    """Collection state for one bundle, until the quorum is reached, the bundle is found
    tampered, or `wipe()` ends it."""

    def __init__(self, *, holders: Sequence[str], public_key: Certificate,
                 threshold: int | None, bundle_hash: bytes | None,
                 excluded: Collection[int] = (), search_cap: int = SEARCH_CAP) -> None:
        """`holders`: primary fingerprints in holder order; `threshold` None for v0 (one set
        per claimed threshold); `bundle_hash` None when the generation has none (v0);
        `excluded`: holder indices whose submissions are refused."""
        if threshold is not None and not 1 <= threshold <= len(holders):
            raise ValueError("threshold must be 1..holder count")
        if any(not 0 <= k < len(holders) for k in excluded):
            raise ValueError("excluded holder index out of range")
        if search_cap < 1:
            raise ValueError("search_cap must be at least 1")
        self._fingerprints = tuple(holders)
        self._public_key = public_key
        self._threshold = threshold
        self._bundle_hash = bundle_hash
        self._excluded = frozenset(excluded)
        self._cap = search_cap
        self._sets: dict[int, dict[int, bytearray]] = {}  # threshold → holder → share
        self._finished = False

    @classmethod
    def from_bundle(cls, checked: CheckedBundle, *,
                    excluded: Collection[int] = ()) -> ReconstitutionRound:
        return cls(holders=[cert.fingerprint for cert in checked.holders],
                   public_key=checked.quorum_certificate, threshold=checked.threshold,
                   bundle_hash=submission_bundle_hash(checked.bundle), excluded=excluded)

    @property
    def finished(self) -> bool:
        return self._finished

    def remaining(self, threshold: int | None = None) -> int:
        """Shares still needed in the set of `threshold` (default: the bundle's): t − held,
        and at least 1 while the round runs (held shares may include wrong ones)."""
        t = self._threshold if threshold is None else threshold
        if t is None:
            raise LocalProtocolError("a v0 round has one set per claimed threshold: name it")
        return max(t - len(self._sets.get(t, {})), 1)

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
        if len(shares) < t:
            remaining = t - len(shares)
            return ShareAccepted(Accepted(remaining), t,
                                 (*log, self._accepted_line(holder, t, remaining)))
        return self._search(t, holder, log)

    def wipe(self) -> None:
        """Discard every share and end the round (quorum, tampering, or shutdown)."""
        for shares in self._sets.values():
            for share in shares.values():
                _wipe(share)
        self._sets.clear()
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
        if holder in self._excluded:
            log.append(LOG_EXCLUDED.format(k=holder, fpr=self._fingerprints[holder]))
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

    def _accepted_line(self, holder: int, t: int, remaining: int) -> str:
        fpr = self._fingerprints[holder]
        if self._threshold is None:
            return LOG_ACCEPTED_V0.format(k=holder, fpr=fpr, t=t, n=remaining)
        return LOG_ACCEPTED.format(k=holder, fpr=fpr, n=remaining)

    def _holders_text(self, holders: Sequence[int]) -> str:
        return ", ".join(f"{k} ({self._fingerprints[k]})" for k in holders)

    # --- the recovered-key check over subsets (§8 steps 1–5, amended) ------------------------

    def _search(self, t: int, newest: int, log: list[str]) -> AdmitResult:
        shares = self._sets[t]
        others = [k for k in sorted(shares) if k != newest]
        candidates = new_subset_count(len(others), t)
        tried = 0
        for subset in itertools.islice(new_subsets(newest, others, t), self._cap):
            tried += 1
            secret = self._recover(shares, subset, t)
            keys = None if secret is None else quorum_keys(bytes(secret))
            if secret is None or keys is None or not self._primary_matches(keys):
                if secret is not None:
                    _wipe(secret)
                continue
            return self._matched(t, newest, subset, secret, keys, log)
        contributors = tuple(sorted(shares))
        v0 = "" if self._threshold is not None else f" for threshold {t}"
        lines = (self._accepted_line(newest, t, 1),
                 LOG_SEARCH_FAILED.format(t=t, m=len(shares), v0=v0, tried=tried,
                                          total=candidates, k=newest),
                 LOG_CONTRIBUTORS.format(contributors=self._holders_text(contributors)))
        return RecoveryFailed(Accepted(1), t, contributors, tried, candidates, (*log, *lines))

    @staticmethod
    def _recover(shares: dict[int, bytearray], subset: Sequence[int],
                 t: int) -> bytearray | None:
        """Step 1 for one subset (formats.md §8); the result must be 32 bytes."""
        try:
            secret = bytearray(shamir.combine([bytes(shares[k]) for k in subset], t))
        except shamir.ShamirError:
            return None
        if len(secret) != SECRET_LENGTH:
            _wipe(secret)
            return None
        return secret

    def _matched(self, t: int, newest: int, subset: Sequence[int], secret: bytearray,
                 keys: QuorumKeys, log: list[str]) -> QuorumReached | BundleTampered:
        """Primary matched: step 5, then name the wrong shares, then end the round."""
        if not self._subkeys_derived(keys):
            _wipe(secret)
            self.wipe()
            return BundleTampered(Rejected(REJECT_FOREIGN_SUBKEY), (*log, LOG_FOREIGN_SUBKEY))
        held = {k: share for shares in self._sets.values() for k, share in shares.items()}
        culprits = tuple(off_polynomial([held[k] for k in subset], held))
        lines = [self._accepted_line(newest, t, 0), LOG_QUORUM]
        if len(held) > t:
            lines.append(LOG_RECOVERED_FROM.format(contributors=self._holders_text(subset)))
        lines += [LOG_CULPRIT.format(k=k, fpr=self._fingerprints[k]) for k in culprits]
        held.clear()
        self.wipe()
        return QuorumReached(Accepted(0), secret, (*log, *lines), culprits)

    def _primary_matches(self, keys: QuorumKeys) -> bool:
        return primary_matches(keys, self._public_key)

    def _subkeys_derived(self, keys: QuorumKeys) -> bool:
        return subkeys_derived(keys, self._public_key)
