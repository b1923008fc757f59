"""The asyncio side of admission (finding F1) for 49504, and `Limits`, every number of
protocol.md §9 as amended (docs/security.md explains each).

`core.protocol.admission.Admission` decides; `personalities/daemonkit/gate.py` (shared with
forwardd) carries the decisions out: it resolves the future a waiting connection sleeps on when
it is admitted, cancels the task of a connection that is evicted (remembering why, for the log),
and keeps one timer so that a decision that depends on time — an attestation token accruing, a
grace period ending — is taken without any connection having to do anything. This module adds
locksmithd's numbers and eviction texts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from locksmith.core.protocol.admission import Policy
from locksmith.personalities.daemonkit import gate
from locksmith.personalities.daemonkit.gate import Conn

__all__ = ["Conn", "Gate", "Limits"]

EVICTED_HELLO = "its message 1 was not complete and a new connection needed its place"
EVICTED_IDLE = ("it had not sent message 3 {idle:.1f} s after message 2 and a holder was "
                "waiting for a slot")


@dataclass(frozen=True)
class Limits:
    """protocol.md §9 as amended (docs/security.md F1). The daemon always uses the defaults;
    tests may shorten them in-process."""

    slots: int = 128  # connections holding an attestation (from admission to the verdict)
    waiting: int = 128  # connections before their attestation
    first_message: float = 10.0  # seconds from accept until message 1 is complete
    queue: float = 20.0  # seconds from message 1 until admitted (message 2 on its way)
    submission: float = 30.0  # seconds from message 2 until message 3 is complete
    grace: float = 10.0  # seconds after message 2 during which a connection is never evicted
    attest_rate: float = 32.0  # NSM attestations per second, sustained
    attest_burst: int = 64  # ... and saved up
    connection: float = 300.0  # seconds from accept until the connection is closed
    final_answer: float = 10.0  # writing message 4 after the round ended (secret in memory)

    def policy(self) -> Policy:
        return Policy(slots=self.slots, waiting=self.waiting, grace=self.grace,
                      attest_rate=self.attest_rate, attest_burst=self.attest_burst)


class Gate(gate.Gate):
    """`daemonkit.gate.Gate` with locksmithd's eviction texts."""

    def __init__(self, policy: Policy, loop: asyncio.AbstractEventLoop,
                 on_evict: Callable[[Conn], None]) -> None:
        super().__init__(policy, loop, on_evict, evicted_hello=EVICTED_HELLO,
                         evicted_idle=EVICTED_IDLE)
