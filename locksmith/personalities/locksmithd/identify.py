"""protocol.md §7 steps 2–3 for one submission, staged on the work lanes (finding F3).

    urgent lane   screen: one digest of P, the prefix, the keys the issuer names
    later lane    scan: every other holder key of the signature's algorithm (only if needed)
    urgent lane   open the share: X25519, AES-GCM, Q (or answer step 2's refusal)

The event loop only hands the session's bytes over and awaits: nothing here runs on it. The
outcome is the one `EnclaveSession.open_submission` gives in a single call; the staging only
decides *when* each part runs, so that signatures without usable issuer hints (which honest
clients never send) cannot delay a holder's screening.
"""

from __future__ import annotations

from locksmith.core.openpgp.holder_signature import HolderSignatureError
from locksmith.core.protocol.holders import BundleHolders, IdentifiedHolder, Screening
from locksmith.core.protocol.session import EnclaveSession, ShareRejected, ShareSubmitted
from locksmith.personalities.locksmithd.work import LATER, URGENT, WorkLanes

__all__ = ["open_submission"]


async def open_submission(session: EnclaveSession, holders: BundleHolders, work: WorkLanes,
                          now: int) -> tuple[ShareSubmitted | ShareRejected,
                                             IdentifiedHolder | HolderSignatureError]:
    """The session's answer to step 3 and what step 2 found (a holder, or the refusal)."""
    signed = session.signed_submission()

    def screen() -> Screening:
        return holders.screen(signed.signature, signed.data, now)

    screening = await work.run(screen, lane=URGENT)
    found = screening.outcome
    if found is None:
        def scan() -> IdentifiedHolder | HolderSignatureError:
            try:
                return holders.scan(screening)
            except HolderSignatureError as exc:
                return exc
        found = await work.run(scan, lane=LATER)
    decided: IdentifiedHolder | HolderSignatureError = found
    opened = await work.run(lambda: session.finish_submission(decided), lane=URGENT)
    return opened, decided
