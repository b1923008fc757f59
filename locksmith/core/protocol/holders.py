"""Who signed a submission: holder identification, protocol.md §7 step 2.

The enclave must bind every share to exactly one holder of the verified bundle before it looks
at the share, so that one holder cannot submit for another and duplicates can be refused per
holder (§8). Two kinds of holder verify differently:

* external OpenPGP holders (formats.md §13.3): a signing key live at the signature's creation
  time S **and** at the enclave's now (`validity.signing_candidates`);
* WebAuthn holders of V1 bundles (formats.md §13.4): the custody service's certificate is judged
  at the bundle's *generation time* G (the Keymaker proof's timestamp): a signing key live at G,
  neither it nor the primary revoked at any time. Their candidate keys are fixed at startup.

Both obey the same shape rules (one packet, SHA-256/384/512, creation time) and the same 60 s
clock-skew rule, and the outcome table of §7 is over all holders together.

Cost (review finding F3). Message 3 arrives before anything authenticates its sender, and P may
be 256 KiB, so identification is built to cost the same for 3 holders or 254:

    screen (cheap, always)                        scan (only when screening cannot decide)
    parse the one signature packet                every indexed key of the signature's
    digest once: canonicalise P, hash, trailer      algorithm not tried yet, against the
    2-byte prefix wrong → no holder, done           same digest
    keys named by the issuer key ID/fingerprint
      → verified against the digest

A key is verified at most once per submission, whichever holders carry it, and liveness
(`signing_candidates`) is evaluated only for holders whose key verified. Work per submission is
therefore one hash of at most 256 KiB plus at most one signature check per signing-capable key
of the bundle (the scan; `key_count`), and usually one (the issuer's). The server runs the
screen first and the scan in a lower-priority lane, off the event loop: honest clients (this
project's and the reference's) always name their issuer, so a flood of signatures without
usable issuer hints cannot delay them.

Equivalence with the plain reading of §7 (`holder_signature.verify_holder_signature`, which
tries every candidate key of every holder): identical outcomes, with one exception that needs a
forgery — when a key the issuer names verifies, the screen decides without checking the other
holders' keys, so a *different* key verifying the same signature for a second holder (which
would be "multiple holders") is not looked for. A signature verifying under two independent
public keys is not something anyone can produce for keys fixed in a bundle beforehand.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field

from locksmith.core.bundle.checks import CheckedBundle
from locksmith.core.bundle.model import BundleV1, WebAuthnKey
from locksmith.core.openpgp import signature as sigmod
from locksmith.core.openpgp import validity
from locksmith.core.openpgp.certs import Certificate
from locksmith.core.openpgp.holder_signature import (
    CLOCK_SKEW_TOLERANCE, LOG_CLOCK_SKEW, LOG_INVALID_SIGNATURE, REJECT_CLOCK_SKEW,
    REJECT_MULTIPLE_HOLDERS, REJECT_NO_HOLDER, HolderSignatureError, issuer_hints,
    parse_holder_signature, same_algorithm, signed_digest, verifies_digest,
)
from locksmith.core.openpgp.keys import ECDSA, EDDSA, RSA_ALGORITHMS, PublicKey
from locksmith.core.openpgp.signature import Signature

__all__ = ["BundleHolders", "HolderSignatureError", "IdentifiedHolder", "Screening"]

_SIGNING_ALGORITHMS = frozenset({EDDSA, ECDSA, *RSA_ALGORITHMS})


@dataclass(frozen=True)
class IdentifiedHolder:
    index: int  # k: 0-based holder index, share coordinate k + 1
    fingerprint: str  # the holder's primary fingerprint (for log lines)


@dataclass(frozen=True)
class _Key:
    holder: int
    key: PublicKey


@dataclass(frozen=True)
class Screening:
    """A submission after the cheap stage: either decided (`outcome`), or waiting for `scan`."""

    outcome: IdentifiedHolder | HolderSignatureError | None
    signature: Signature | None = field(default=None, repr=False)
    digest: bytes | None = field(default=None, repr=False)
    tried: frozenset[bytes] = frozenset()  # fingerprints already checked against the digest
    now: int = 0

    @property
    def needs_scan(self) -> bool:
        return self.outcome is None


def _webauthn_signing_keys(cert: Certificate, generation_time: int) -> tuple[PublicKey, ...]:
    """formats.md §13.4: signing keys live at G, with neither them nor the primary revoked ever."""
    if validity.revoked_ever(cert, cert.primary):
        return ()
    return tuple(k.key for k in validity.live_keys(cert, generation_time)
                 if k.flags & sigmod.FLAG_SIGN and not validity.revoked_ever(cert, k.key))


def _keys_of(cert: Certificate) -> Iterable[PublicKey]:
    """Every key of `cert` that could make a signature; which of them are candidates at (S, now)
    is decided per submission, and only for keys that verified."""
    for key in (cert.primary, *(sub.key for sub in cert.subkeys)):
        if key.supported and key.algorithm in _SIGNING_ALGORITHMS:
            yield key


class BundleHolders:
    """The holder list of a verified bundle (formats.md §14), indexed to identify signers.

    `webauthn` are the indices of WebAuthn entries; they need `generation_time` (seconds: the
    V1 proof's attestation timestamp // 1000), and their candidate keys are fixed at
    construction because G does not change.
    """

    def __init__(self, certificates: Sequence[Certificate], *, webauthn: Collection[int] = (),
                 generation_time: int | None = None) -> None:
        self._certificates = tuple(certificates)
        if any(not 0 <= i < len(self._certificates) for i in webauthn):
            raise ValueError("WebAuthn holder index out of range")
        if webauthn and generation_time is None:
            raise ValueError("WebAuthn holders need the bundle's generation time")
        self._webauthn = {i: frozenset(k.fingerprint for k in _webauthn_signing_keys(
            self._certificates[i], generation_time or 0)) for i in sorted(set(webauthn))}
        keys: list[_Key] = []
        for index, cert in enumerate(self._certificates):
            seen: set[bytes] = set()
            for key in _keys_of(cert):
                allowed = self._webauthn.get(index)
                if key.fingerprint in seen or (allowed is not None
                                               and key.fingerprint not in allowed):
                    continue
                seen.add(key.fingerprint)
                keys.append(_Key(index, key))
        self._keys = tuple(keys)
        self._by_fingerprint: dict[bytes, list[_Key]] = {}
        self._by_key_id: dict[bytes, list[_Key]] = {}
        for ref in self._keys:
            self._by_fingerprint.setdefault(ref.key.fingerprint, []).append(ref)
            self._by_key_id.setdefault(ref.key.key_id, []).append(ref)

    @classmethod
    def from_bundle(cls, checked: CheckedBundle, *,
                    generation_time: int | None = None) -> BundleHolders:
        webauthn: list[int] = []
        if isinstance(checked.bundle, BundleV1):
            webauthn = [i for i, entry in enumerate(checked.bundle.data.keyring)
                        if isinstance(entry, WebAuthnKey)]
        return cls(checked.holders, webauthn=webauthn, generation_time=generation_time)

    def __len__(self) -> int:
        return len(self._certificates)

    @property
    def fingerprints(self) -> tuple[str, ...]:
        return tuple(cert.fingerprint for cert in self._certificates)

    @property
    def key_count(self) -> int:
        """Signature checks a full scan may need at most (the per-submission work bound)."""
        return len(self._keys)

    # --- identification ----------------------------------------------------------------------

    def identify(self, signature: str, data: bytes, now: int) -> IdentifiedHolder:
        """The one holder whose key made `signature` over `data`, or `HolderSignatureError`
        carrying the §7 rejection reason and log category (screen, then scan if needed)."""
        return self.scan(self.screen(signature, data, now))

    def screen(self, signature: str, data: bytes, now: int) -> Screening:
        """The cheap stage: shape, one digest, the prefix, and the keys the issuer names."""
        try:
            sig = parse_holder_signature(signature)  # shape failures: their own texts
        except HolderSignatureError as exc:
            return Screening(exc)
        digest = signed_digest(sig, data)
        if digest is None:  # no key can verify it: the common fate of garbage
            return Screening(HolderSignatureError(REJECT_NO_HOLDER, LOG_INVALID_SIGNATURE))
        named = self._named(sig)
        outcome = self._decide(sig, digest, named, now) if named else None
        return Screening(outcome, sig, digest, frozenset(r.key.fingerprint for r in named), now)

    def scan(self, screening: Screening) -> IdentifiedHolder:
        """The full stage: every indexed key of the signature's algorithm not tried yet."""
        outcome = screening.outcome
        if outcome is None:
            sig, digest = screening.signature, screening.digest
            assert sig is not None and digest is not None
            rest = [ref for ref in self._keys if same_algorithm(sig, ref.key)
                    and ref.key.fingerprint not in screening.tried]
            outcome = self._decide(sig, digest, rest, screening.now)
        if outcome is None:
            raise HolderSignatureError(REJECT_NO_HOLDER, LOG_INVALID_SIGNATURE)
        if isinstance(outcome, HolderSignatureError):
            raise outcome
        return outcome

    def _named(self, sig: Signature) -> list[_Key]:
        key_ids, fingerprints = issuer_hints(sig)
        found: dict[tuple[int, bytes], _Key] = {}
        for ref in [*(r for f in fingerprints for r in self._by_fingerprint.get(f, ())),
                    *(r for k in key_ids for r in self._by_key_id.get(k, ()))]:
            if same_algorithm(sig, ref.key):
                found.setdefault((ref.holder, ref.key.fingerprint), ref)
        return list(found.values())

    def _decide(self, sig: Signature, digest: bytes, keys: Sequence[_Key],
                now: int) -> IdentifiedHolder | HolderSignatureError | None:
        """§7's outcome over `keys`; None when none of them verifies for its holder."""
        created = sig.created
        assert created is not None  # parse_holder_signature guarantees it
        verified: dict[bytes, bool] = {}  # one check per distinct key
        matches: set[int] = set()
        skewed = False
        for ref in keys:
            fpr = ref.key.fingerprint
            if fpr not in verified:
                verified[fpr] = verifies_digest(ref.key, sig, digest)
            if not verified[fpr] or not self._candidate(ref, created, now):
                continue
            if created > now + CLOCK_SKEW_TOLERANCE:
                skewed = True
            else:
                matches.add(ref.holder)
        if len(matches) == 1:
            (index,) = matches
            return IdentifiedHolder(index, self._certificates[index].fingerprint)
        if matches:
            return HolderSignatureError(REJECT_MULTIPLE_HOLDERS, LOG_INVALID_SIGNATURE)
        if skewed:
            return HolderSignatureError(REJECT_CLOCK_SKEW, LOG_CLOCK_SKEW)
        return None

    def _candidate(self, ref: _Key, created: int, now: int) -> bool:
        """formats.md §13.3 (OpenPGP: live at S and now) or §13.4 (WebAuthn: fixed at G)."""
        if ref.holder in self._webauthn:
            return ref.key.fingerprint in self._webauthn[ref.holder]
        cert = self._certificates[ref.holder]
        return any(k.fingerprint == ref.key.fingerprint
                   for k in validity.signing_candidates(cert, created, now))
