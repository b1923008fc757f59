"""The asyncio side of admission (finding F1): runs `core.protocol.admission` for the server,
and `Limits`, every number of protocol.md §9 as amended (docs/security.md explains each).

`core.protocol.admission.Admission` decides, this module carries the decisions out: it resolves
the future a waiting connection sleeps on when it is admitted, cancels the task of a connection
that is evicted (remembering why, for the log), and keeps one timer so that a decision that
depends on time — an attestation token accruing, a grace period ending — is taken without any
connection having to do anything.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from locksmith.core.protocol.admission import Admission, Policy

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


@dataclass(eq=False)
class Conn:
    """One accepted connection, as the gate knows it (hashable by identity)."""

    task: asyncio.Task[None]
    peer: str
    admitted: asyncio.Future[None]
    attested_at: float | None = None
    evicted: str | None = field(default=None)  # why, once it was


class Gate:
    def __init__(self, policy: Policy, loop: asyncio.AbstractEventLoop,
                 on_evict: Callable[[Conn], None]) -> None:
        self._loop = loop
        self._admission: Admission[Conn] = Admission(policy, loop.time())
        self._on_evict = on_evict
        self._timer: asyncio.TimerHandle | None = None

    @property
    def admission(self) -> Admission[Conn]:
        return self._admission

    def arrive(self, conn: Conn) -> bool:
        """Rule 1; False: refuse `conn` (close it at once)."""
        arrival = self._admission.arrive(conn, self._loop.time())
        for victim in arrival.evicted:
            self._evict(victim, EVICTED_HELLO)
        return arrival.accepted

    def message1(self, conn: Conn) -> bool:
        done = self._admission.message1(conn)
        self.poll()
        return done

    def attested(self, conn: Conn) -> bool:
        conn.attested_at = self._loop.time()
        done = self._admission.attested(conn, conn.attested_at)
        self.poll()
        return done

    def submitted(self, conn: Conn) -> bool:
        return self._admission.submitted(conn)

    def leave(self, conn: Conn) -> None:
        self._admission.leave(conn)
        self.poll()

    def poll(self) -> None:
        now = self._loop.time()
        decision = self._admission.poll(now)
        for conn in decision.evict:
            idle = now - (conn.attested_at if conn.attested_at is not None else now)
            self._evict(conn, EVICTED_IDLE.format(idle=idle))
        for conn in decision.admit:
            if not conn.admitted.done():
                conn.admitted.set_result(None)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if decision.wake_at is not None:
            # A hair late: asyncio may run a timer up to its clock resolution early.
            self._timer = self._loop.call_at(decision.wake_at + 0.001, self.poll)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _evict(self, conn: Conn, why: str) -> None:
        conn.evicted = why
        conn.task.cancel()
        self._on_evict(conn)
