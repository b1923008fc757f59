"""The requester's decisions in key forwarding (docs/forwarding.md §6 steps 4, 5 and 7), sans IO.

locksmithd's requester task (`personalities/locksmithd/forward_client.py`) moves the bytes,
keeps the time and asks its NSM; every judgement about what a provider sent is made here:

    F2 → `check_provider`      is Dp a fresh, non-debug Nitro document for this exchange and
                               this bundle?  (step 4; else `ProviderRejected`, retry later)
    F3 ← `approvals_to_present`  the approval files worth sending: those naming this bundle and
                               this enclave's own PCR set (step 5; the provider judges them)
    F4 → `receive_secret`      open C, then the recovered-key check of protocol.md §8 steps 2
                               and 5 (step 7): only a secret whose derived quorum key is the
                               bundle's is ever used, so a lying provider cannot plant one

Nothing here trusts the provider: a verified Dp proves which code answers (its PCRs are logged),
not that its secret is right — that is `receive_secret`'s job.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from dataclasses import dataclass, field

from locksmith.core.attestation.verify import AttestationError, TrustAnchor, verify
from locksmith.core.forwarding.approval import ApprovalError, PcrSet, statement_of
from locksmith.core.forwarding.binding import (
    ForwardingCryptoError, RequesterKey, provider_binding,
)
from locksmith.core.forwarding.messages import MAX_APPROVALS, Challenge, Forwarded
from locksmith.core.openpgp.certs import Certificate
from locksmith.core.protocol.reconstitution import KeyCheck, check_recovered_key

__all__ = [
    "BundleAltered", "ProviderRejected", "ProviderVerified", "ReceivedSecret", "SecretMismatch",
    "SecretReceived", "SecretUnreadable", "approvals_to_present", "check_provider",
    "receive_secret",
]

REJECT_ATTESTATION = "Provider attestation rejected: {reason}"
REJECT_BINDING = "Provider attestation is bound to a different bundle"


@dataclass(frozen=True)
class ProviderVerified:
    """Dp verified: the module that answers, and the code it runs (for the log)."""

    module_id: str
    pcrs: PcrSet


class ProviderRejected(ValueError):
    """Step 4 failed; `str()` is the reason logged as
    `forwarding from <addr> refused the provider: <reason>`."""


def check_provider(challenge: Challenge, *, anchor: TrustAnchor, now_ms: int,
                   requester_nonce: bytes, bundle_hash: bytes) -> ProviderVerified:
    """Step 4: Dp verified at `now_ms` against the peer anchor (§2.1), with nonce Nr, debug
    refused, no expected PCRs (the provider's code may differ from ours: it proves the secret
    it sends by the recovered-key check, not by its PCRs), and `user_data` = UP(H, Np)."""
    try:
        attestation = verify(challenge.attestation, trust_root=anchor, now_ms=now_ms,
                             nonce=requester_nonce, allow_debug=False)
    except AttestationError as exc:
        raise ProviderRejected(REJECT_ATTESTATION.format(reason=exc)) from None
    expected = provider_binding(bundle_hash, challenge.nonce)
    if attestation.user_data is None or not hmac.compare_digest(attestation.user_data, expected):
        raise ProviderRejected(REJECT_BINDING)
    try:
        pcrs = PcrSet.from_pcrs(attestation.pcrs)
    except ApprovalError as exc:  # PCR0–2 missing or not SHA-384 sized
        raise ProviderRejected(REJECT_ATTESTATION.format(reason=exc)) from None
    return ProviderVerified(attestation.module_id, pcrs)


def approvals_to_present(texts: Sequence[str], *, bundle_hash: bytes,
                         own_pcrs: PcrSet) -> tuple[str, ...]:
    """Step 5's pre-filter: the texts whose statement (read without checking the signature —
    the provider does that) names this bundle and exactly this PCR set; each once, in the
    given order, at most 254 (F3's limit). Sending the others would only cost the provider
    signature checks and tell it about unrelated approvals."""
    chosen: list[str] = []
    for text in texts:
        statement = statement_of(text)
        if statement is None or text in chosen:
            continue
        if statement.bundle_hash == bundle_hash and statement.pcrs == own_pcrs:
            chosen.append(text)
            if len(chosen) == MAX_APPROVALS:
                break
    return tuple(chosen)


# --- step 7: the secret ----------------------------------------------------------------------


@dataclass(frozen=True)
class SecretReceived:
    """The secret matches the bundle: end the round with it (the caller wipes it after use)."""

    secret: bytearray = field(repr=False)


@dataclass(frozen=True)
class SecretUnreadable:
    """C does not open under this exchange's key and aad (or is not 32 bytes): retry later."""


@dataclass(frozen=True)
class SecretMismatch:
    """The derived primary is not the bundle's: this provider serves a wrong secret and is not
    asked again during this boot. The candidate was wiped."""


@dataclass(frozen=True)
class BundleAltered:
    """The primary matches but the bundle's key carries a foreign subkey (protocol.md §8 step
    5): the bundle was altered; boot stops (exit 1). The candidate was wiped."""


ReceivedSecret = SecretReceived | SecretUnreadable | SecretMismatch | BundleAltered


def receive_secret(key: RequesterKey, answer: Forwarded, *, bundle_hash: bytes,
                   requester_nonce: bytes, provider_nonce: bytes,
                   public_key: Certificate) -> ReceivedSecret:
    """Step 7: open C with r and E, then the recovered-key check against the bundle's
    `public_key` (the same check the reconstitution round runs)."""
    try:
        secret = key.open_secret(answer.public_key, answer.encrypted_secret,
                                 bundle_hash=bundle_hash, requester_nonce=requester_nonce,
                                 provider_nonce=provider_nonce)
    except ForwardingCryptoError:
        return SecretUnreadable()
    verdict = check_recovered_key(secret, public_key)
    if verdict is KeyCheck.MATCH:
        return SecretReceived(secret)
    secret[:] = bytes(len(secret))
    return SecretMismatch() if verdict is KeyCheck.MISMATCH else BundleAltered()
