"""What an enclave needs to face forwarding peers (docs/forwarding.md §2.1, §5.1, §6): the root
their attestations must chain to, and its own PCR0/1/2.

Both roles verify the other enclave's document, and neither may be told by configuration what
to trust: with the real NSM that is the AWS Nitro root only; with the simulated NSM it is that
NSM directory's own `root.pem` — every simulated enclave of a development fleet shares the
directory's CA, and nothing else can sign for it. No option or environment variable adds a
root (attestation.md §4); `--trust-root` is about the Keymaker proof and has no say here.

The simulated root is announced with a warning line, because a development fleet's documents
prove nothing about real hardware. Reading `root.pem` is I/O, hence a personality module shared
by locksmithd (requester) and forwardd (provider). Call it after the NSM was opened: opening
the simulated NSM creates the directory's CA when it is missing.
"""

from __future__ import annotations

from collections.abc import Callable

from locksmith.core.attestation.nsm import Nsm, NsmChoice, NsmError
from locksmith.core.attestation.verify import TrustAnchor, aws_nitro_root
from locksmith.core.forwarding.approval import PcrSet
from locksmith.personalities.enclave_startup import StartupError

__all__ = ["ForwardingTrustError", "forwarding_anchor", "own_pcrs", "peer_trust_anchor"]

SIMULATED_ROOT_WARNING = ("warning: forwarding trusts the simulated NSM root ({name}, sha256 "
                          "{fingerprint})")


class ForwardingTrustError(Exception):
    """The simulated NSM's root cannot be read: one line naming the file (exit 1)."""


def peer_trust_anchor(choice: NsmChoice) -> tuple[TrustAnchor, str | None]:
    """(anchor, warning line or None) for verifying a forwarding peer's documents."""
    if choice.kind != "simulated":
        return aws_nitro_root(), None
    assert choice.directory is not None  # `resolve_nsm` requires it for "simulated"
    path = choice.directory / "root.pem"
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ForwardingTrustError(f"cannot read the simulated NSM root {path}: "
                                   f"{exc.strerror or exc}") from None
    try:
        anchor = TrustAnchor.from_pem(raw)
    except ValueError as exc:
        raise ForwardingTrustError(f"invalid simulated NSM root {path}: {exc}") from None
    return anchor, SIMULATED_ROOT_WARNING.format(name=anchor.name,
                                                 fingerprint=anchor.fingerprint)


def forwarding_anchor(choice: NsmChoice, say: Callable[[str], None]) -> TrustAnchor:
    """`peer_trust_anchor` at startup: the simulated root announced through `say`, an unreadable
    one a `StartupError` (exit 1) in locksmithd and forwardd alike."""
    try:
        anchor, warning = peer_trust_anchor(choice)
    except ForwardingTrustError as exc:
        raise StartupError(str(exc)) from None
    if warning is not None:
        say(warning)
    return anchor


def own_pcrs(nsm: Nsm) -> PcrSet:
    """This enclave's PCR0/1/2, from the NSM itself (DescribePCR): what a provider compares a
    requester with, and the set a requester's approvals must name."""
    try:
        return PcrSet(*(nsm.describe_pcr(i).data for i in (0, 1, 2)))
    except (NsmError, ValueError) as exc:
        raise StartupError(f"cannot read this enclave's PCRs from the NSM: {exc}") from None
