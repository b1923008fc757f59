"""The provider's decision on one F3 (docs/forwarding.md §5.2 steps 4–7), sans-IO.

    verify Dr (anchor, nonce Np, debug refused)  → Denied "Requester attestation rejected: …"
    user_data = UR(H)                            → Denied "… bound to a different bundle"
    public_key = 32 bytes                        → Denied "… carries no X25519 key"
    PCR0/1/2 = own                               → Allowed "same-pcrs"
    else ≥ threshold holders approved that set   → Allowed "approved by holders k, k, …"
      (F3's approvals and the stored ones of that set, counted together)
    else                                         → Denied "Requester PCRs are not approved (n of t …)"

The first failing check decides, and each refusal text is produced here and nowhere else.
`judge_request` reads no clock and no socket: the caller passes its time (`now_ms`, also the
approvals' `now`, in whole seconds) and runs this in a worker thread, since a document costs a
chain walk and every approval a signature check. Approvals are counted only when the PCRs
differ: a same-image requester never pays for them, and neither does the provider. The stored
approvals (pushed in A1, §4.4) come from `stored`, asked only then and only for the
requester's PCR set, and are judged again with F3's as one input: a holder counts once per set
whichever way its approval came, and a stored text is worth no more than it is worth now.

`Allowed` carries what step 8 needs (the requester's X25519 key) and the audit line's facts;
`Denied` carries what the audit line can say about the requester — the module id and PCRs once
its document verified, None before. Encrypting the secret (step 8) is `binding.seal_secret`,
whose refusal of a small-order key the caller answers with `UNUSABLE_KEY`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field

from locksmith.core.attestation.verify import AttestationError, TrustAnchor, verify
from locksmith.core.forwarding.approval import PcrSet, count_approvals
from locksmith.core.forwarding.binding import requester_binding
from locksmith.core.forwarding.messages import Request
from locksmith.core.protocol.holders import BundleHolders

__all__ = [
    "DIFFERENT_BUNDLE", "NO_KEY", "REQUESTER_BOUND_ELSEWHERE", "RULE_SAME_PCRS",
    "UNUSABLE_KEY", "Allowed", "Denied", "judge_request", "unsupported_version",
]

# §5.2 step 1 (answered before any attestation, by the server) and step 8 (after sealing).
DIFFERENT_BUNDLE = "Requester runs a different bundle"
UNUSABLE_KEY = "Requester attestation carries an unusable X25519 key"
# Steps 4–7.
ATTESTATION_REJECTED = "Requester attestation rejected: {reason}"
REQUESTER_BOUND_ELSEWHERE = "Requester attestation is bound to a different bundle"
NO_KEY = "Requester attestation carries no X25519 key"
NOT_APPROVED = "Requester PCRs are not approved ({n} of {t} holder approvals)"
RULE_SAME_PCRS = "same-pcrs"
RULE_APPROVED = "approved by holders {holders}"
KEY_LENGTH = 32


def unsupported_version(version: int) -> str:
    """§5.2 step 1: the refusal of an F1 whose `version` is not 1."""
    return f"unsupported forwarding version {version} (this provider speaks 1)"


@dataclass(frozen=True)
class Allowed:
    rule: str  # "same-pcrs" or "approved by holders 0, 2"
    module_id: str
    pcrs: PcrSet
    requester_public: bytes = field(repr=False)  # R, 32 bytes: what the secret is sealed to


@dataclass(frozen=True)
class Denied:
    reason: str  # the F4 `Refused` text
    module_id: str | None  # None: the document did not verify ("unverified" in the audit)
    pcrs: PcrSet | None


def judge_request(request: Request, *, anchor: TrustAnchor, now_ms: int, provider_nonce: bytes,
                  bundle_hash: bytes, own_pcrs: PcrSet, holders: BundleHolders, threshold: int,
                  excluded: Collection[int] = (),
                  stored: Callable[[PcrSet], Sequence[str]] = lambda _: ()) -> Allowed | Denied:
    """§5.2 steps 4–7 for the F3 `request` of the exchange whose F2 carried `provider_nonce`;
    `stored(pcrs)`: the provider's stored approval texts of that PCR set."""
    try:
        attested = verify(request.attestation, trust_root=anchor, now_ms=now_ms,
                          nonce=provider_nonce, allow_debug=False)
    except AttestationError as exc:
        return Denied(ATTESTATION_REJECTED.format(reason=exc), None, None)
    missing = [i for i in (0, 1, 2) if i not in attested.pcrs]
    if missing:  # attestation.md §3 step 7's text, as if the PCRs had been expected
        return Denied(ATTESTATION_REJECTED.format(reason=f"PCR{missing[0]} missing"), None,
                      None)
    module_id, pcrs = attested.module_id, PcrSet.from_pcrs(attested.pcrs)
    if attested.user_data != requester_binding(bundle_hash):
        return Denied(REQUESTER_BOUND_ELSEWHERE, module_id, pcrs)
    public = attested.public_key
    if public is None or len(public) != KEY_LENGTH:
        return Denied(NO_KEY, module_id, pcrs)
    if pcrs == own_pcrs:
        return Allowed(RULE_SAME_PCRS, module_id, pcrs, public)
    sources = [(f"approvals[{i}]", text) for i, text in enumerate(request.approvals)]
    sources += [(f"stored[{i}]", text) for i, text in enumerate(stored(pcrs))]
    tally = count_approvals(sources, holders=holders, bundle_hash=bundle_hash,
                            threshold=threshold, now=now_ms // 1000, excluded=excluded)
    if tally.approves(pcrs):
        approvers = ", ".join(str(k) for k in sorted(tally.holders_for(pcrs)))
        return Allowed(RULE_APPROVED.format(holders=approvers), module_id, pcrs, public)
    return Denied(NOT_APPROVED.format(n=len(tally.holders_for(pcrs)), t=threshold), module_id,
                  pcrs)
