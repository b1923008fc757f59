"""Who signed a submission: holder identification, protocol.md §7 step 2.

The enclave must bind every share to exactly one holder of the verified bundle before it looks
at the share, so that one holder cannot submit for another and duplicates can be refused per
holder (§8). Two kinds of holder verify differently:

* external OpenPGP holders (formats.md §13.3): a signing key live at the signature's creation
  time S **and** at the enclave's now — `holder_signature.verify_holder_signature`, which also
  owns the three rejection texts and the log categories;
* WebAuthn holders of V1 bundles (formats.md §13.4): the custody service's certificate is judged
  at the bundle's *generation time* G (the Keymaker proof's timestamp): a signing key live at G,
  neither it nor the primary revoked at any time. The signature itself obeys the same shape
  rules (one packet, SHA-256/384/512, creation time) and the same 60 s clock-skew rule.

The outcome table of §7 is over all holders together, so a bundle with both kinds combines the
OpenPGP verdict with the WebAuthn matches here, using the texts from `holder_signature`.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from locksmith.core.bundle import BundleV1, WebAuthnKey
from locksmith.core.bundle_checks import CheckedBundle
from locksmith.core.openpgp import signature as sigmod
from locksmith.core.openpgp import validity
from locksmith.core.openpgp.certs import Certificate
from locksmith.core.openpgp.holder_signature import (
    CLOCK_SKEW_TOLERANCE, LOG_CLOCK_SKEW, LOG_INVALID_SIGNATURE, REJECT_CLOCK_SKEW,
    REJECT_MULTIPLE_HOLDERS, REJECT_NO_HOLDER, HolderSignatureError, parse_holder_signature,
    verify_holder_signature,
)
from locksmith.core.openpgp.keys import PublicKey

__all__ = ["BundleHolders", "HolderSignatureError", "IdentifiedHolder"]

@dataclass(frozen=True)
class IdentifiedHolder:
    index: int  # k: 0-based holder index, share coordinate k + 1
    fingerprint: str  # the holder's primary fingerprint (for log lines)


def _webauthn_signing_keys(cert: Certificate, generation_time: int) -> tuple[PublicKey, ...]:
    """formats.md §13.4: signing keys live at G, with neither them nor the primary revoked ever."""
    if validity.revoked_ever(cert, cert.primary):
        return ()
    return tuple(k.key for k in validity.live_keys(cert, generation_time)
                 if k.flags & sigmod.FLAG_SIGN and not validity.revoked_ever(cert, k.key))


class BundleHolders:
    """The holder list of a verified bundle (formats.md §14), ready to identify signers.

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
        self._webauthn = {i: _webauthn_signing_keys(self._certificates[i], generation_time or 0)
                          for i in sorted(set(webauthn))}
        self._openpgp: tuple[Certificate | None, ...] = tuple(
            None if i in self._webauthn else cert for i, cert in enumerate(self._certificates))

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

    def identify(self, signature: str, data: bytes, now: int) -> IdentifiedHolder:
        """The one holder whose key made `signature` over `data`, or `HolderSignatureError`
        carrying the §7 rejection reason and log category."""
        if not self._webauthn:
            match = verify_holder_signature(signature, data, self._openpgp, now)
            return IdentifiedHolder(match.index, match.certificate.fingerprint)
        sig = parse_holder_signature(signature)  # shape failures: same texts as below
        matches: list[int] = []
        skewed = False
        try:
            matches.append(verify_holder_signature(signature, data, self._openpgp, now).index)
        except HolderSignatureError as exc:
            if exc.reason == REJECT_MULTIPLE_HOLDERS:
                raise
            skewed = exc.reason == REJECT_CLOCK_SKEW
        created = sig.created
        assert created is not None  # parse_holder_signature guarantees it
        for index, keys in self._webauthn.items():
            if any(_verifies(key, sig, data) for key in keys):
                if created > now + CLOCK_SKEW_TOLERANCE:
                    skewed = True
                else:
                    matches.append(index)
        if len(matches) == 1:
            return IdentifiedHolder(matches[0], self._certificates[matches[0]].fingerprint)
        if matches:
            raise HolderSignatureError(REJECT_MULTIPLE_HOLDERS, LOG_INVALID_SIGNATURE)
        if skewed:
            raise HolderSignatureError(REJECT_CLOCK_SKEW, LOG_CLOCK_SKEW)
        raise HolderSignatureError(REJECT_NO_HOLDER, LOG_INVALID_SIGNATURE)


def _verifies(key: PublicKey, sig: sigmod.Signature, data: bytes) -> bool:
    try:
        sigmod.verify(key, sig, sigmod.document(data))
        return True
    except ValueError:  # OpenPGPError, or `cryptography` refusing the key's numbers
        return False
