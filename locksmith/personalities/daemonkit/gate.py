"""The asyncio side of admission (finding F1): runs `core.protocol.admission` for a server.

`core.protocol.admission.Admission` decides, this module carries the decisions out: it resolves
the future a waiting connection sleeps on when it is admitted, cancels the task of a connection
that is evicted (remembering why, for the log), and keeps one timer so that a decision that
depends on time — an attestation token accruing, a grace period ending — is taken without any
connection having to do anything.

The eviction texts are the server's own (they name its messages): `evicted_hello` for a
connection cut before its first message was complete, `evicted_idle` (formatted with `idle`,
the seconds since its attestation went out) for one cut while the server waited for its answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from locksmith.core.protocol.admission import Admission, Policy

__all__ = ["Conn", "Gate"]


@dataclass(eq=False)
class Conn:
    """One accepted connection, as the gate knows it (hashable by identity)."""

    task: asyncio.Task[None]
    peer: str
    admitted: asyncio.Future[None]
    attested_at: float | None = None
    evicted: str | None = field(default=None)  # why, once it was

    def eviction_line(self) -> tuple[str, str]:
        """The rate-limited log's kind and line for this connection's eviction."""
        kind = "evict:idle" if self.attested_at is not None else "evict:hello"
        return kind, f"evicted the connection from {self.peer}: {self.evicted}"


class Gate:
    def __init__(self, policy: Policy, loop: asyncio.AbstractEventLoop,
                 on_evict: Callable[[Conn], None], *, evicted_hello: str,
                 evicted_idle: str) -> None:
        self._loop = loop
        self._admission: Admission[Conn] = Admission(policy, loop.time())
        self._on_evict = on_evict
        self._evicted_hello = evicted_hello
        self._evicted_idle = evicted_idle
        self._timer: asyncio.TimerHandle | None = None

    @property
    def admission(self) -> Admission[Conn]:
        return self._admission

    def arrive(self, conn: Conn) -> bool:
        """Rule 1; False: refuse `conn` (close it at once)."""
        arrival = self._admission.arrive(conn, self._loop.time())
        for victim in arrival.evicted:
            self._evict(victim, self._evicted_hello)
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
            self._evict(conn, self._evicted_idle.format(idle=idle))
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
