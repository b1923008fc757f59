"""Who gets an attestation slot on TCP 49504, and who is cut to make room (review finding F1).

Sans-IO like `session`: the server reports what happened to each connection (with the time)
and executes the decisions it gets back; no sockets, no clock, no asyncio here. The reasoning is
in docs/security.md ("F1"); in short: nothing before message 3 authenticates a peer, so a peer
with no key can open connections, send message 1 and idle. The reference's answer — 32
connections, the 33rd closed at once, 300 s each — let 32 such peers lock every holder out.
Instead, idle connections are cheap to hold and there is room for many; the costly steps (an
NSM attestation, a message-3 buffer) are rationed; and when room runs out, those who have done
the least, or idled longest after message 2, make way — in a fixed order an attacker cannot
jump.

Phases, and the pool each one counts against:

    HELLO ─msg 1─▶ WAITING ─admit─▶ ATTESTING ─msg 2─▶ AWAITING ─msg 3─▶ SUBMITTED
    └─ `waiting` places ──┘         └─────────────── `slots` ────────────────────┘

1. **Arrival.** A new connection takes a pending place. With none free, the oldest HELLO
   connection (accepted, message 1 not complete: no work done) is cut to make room; only when
   every pending place holds a WAITING connection is the new one refused (closed at once).
2. **Admission.** WAITING connections are admitted strictly in the order their message 1
   completed (FIFO: a peer that reconnects goes to the back), each taking a slot and one
   attestation token (a token bucket: `attest_rate` per second, up to `attest_burst` saved).
   The attestation is the costly step, so only admitted connections get one.
3. **Eviction.** When the head of the queue has a token but every slot is taken, the connection
   that has waited longest for its message 3 is cut — never one whose message 2 went out less
   than `grace` ago, never one whose message 3 is complete (SUBMITTED), never one attesting.
   Without anyone waiting nothing is evicted: a slow holder keeps its connection until the
   server's message-3 deadline (the I/O's, not this module's).

`poll(now)` applies 2 and 3 and says when to call it again (`wake_at`: a token accrues or a
grace period ends). Calling a transition for a connection that was evicted returns False (the
server's task may not have seen its cancellation yet); calling it in the wrong phase is a bug,
`LocalProtocolError`.
"""

from __future__ import annotations

import enum
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

from locksmith.core.protocol.messages import LocalProtocolError

__all__ = ["Admission", "Arrival", "Decision", "Phase", "Policy"]

K = TypeVar("K", bound=Hashable)


class Phase(enum.Enum):
    HELLO = "awaiting message 1"
    WAITING = "waiting for a slot"
    ATTESTING = "attesting"
    AWAITING = "awaiting message 3"
    SUBMITTED = "submitted"


_PENDING = (Phase.HELLO, Phase.WAITING)
_NEXT = {  # the one legal transition out of each phase
    Phase.HELLO: Phase.WAITING, Phase.WAITING: Phase.ATTESTING,
    Phase.ATTESTING: Phase.AWAITING, Phase.AWAITING: Phase.SUBMITTED,
}


@dataclass(frozen=True)
class Policy:
    """Defaults are locksmithd's; docs/security.md gives the reasons for each number."""

    slots: int = 128  # connections holding an attestation (ATTESTING, AWAITING, SUBMITTED)
    waiting: int = 128  # connections before their attestation (HELLO, WAITING)
    grace: float = 10.0  # seconds after message 2 during which a connection is never evicted
    attest_rate: float = 32.0  # attestations per second, sustained ...
    attest_burst: int = 64  # ... and saved up while idle

    def __post_init__(self) -> None:
        if self.slots < 1 or self.waiting < 1 or self.attest_burst < 1:
            raise ValueError("slots, waiting and attest_burst must be at least 1")
        if self.grace < 0 or self.attest_rate <= 0:
            raise ValueError("grace must be >= 0 and attest_rate > 0")


@dataclass(frozen=True)
class Arrival(Generic[K]):
    accepted: bool  # False: close the new connection at once
    evicted: tuple[K, ...] = ()  # HELLO connections to cut to make room for it


@dataclass(frozen=True)
class Decision(Generic[K]):
    admit: tuple[K, ...] = ()  # attest these now (each already holds a slot and a token)
    evict: tuple[K, ...] = ()  # cut these (no longer counted anywhere)
    wake_at: float | None = None  # call `poll` again at this time, if nothing else happens


class Admission(Generic[K]):
    """The pools and the queue of one listener; `K` is whatever names a connection."""

    def __init__(self, policy: Policy, now: float) -> None:
        self.policy = policy
        self._phase: dict[K, Phase] = {}
        self._hello: dict[K, None] = {}  # insertion order = arrival order
        self._queue: dict[K, None] = {}  # insertion order = order message 1 completed
        self._awaiting: dict[K, float] = {}  # → when message 2 went out (insertion order too)
        self._attested = 0  # ATTESTING + AWAITING + SUBMITTED
        self._tokens = float(policy.attest_burst)
        self._refilled = now

    # --- what the server reports -------------------------------------------------------------

    def arrive(self, key: K, now: float) -> Arrival[K]:
        """Rule 1 for a connection just accepted."""
        if key in self._phase:
            raise LocalProtocolError("connection already known")
        evicted: tuple[K, ...] = ()
        if len(self._hello) + len(self._queue) >= self.policy.waiting:
            if not self._hello:
                return Arrival(False)
            oldest = next(iter(self._hello))
            self._forget(oldest)
            evicted = (oldest,)
        self._phase[key] = Phase.HELLO
        self._hello[key] = None
        return Arrival(True, evicted)

    def message1(self, key: K) -> bool:
        """HELLO → WAITING: message 1 is complete; the connection joins the queue."""
        if not self._advance(key, Phase.HELLO):
            return False
        del self._hello[key]
        self._queue[key] = None
        return True

    def attested(self, key: K, now: float) -> bool:
        """ATTESTING → AWAITING: message 2 went out at `now`; the grace period starts."""
        if not self._advance(key, Phase.ATTESTING):
            return False
        self._awaiting[key] = now
        return True

    def submitted(self, key: K) -> bool:
        """AWAITING → SUBMITTED: message 3 is complete; never evicted from here on."""
        if not self._advance(key, Phase.AWAITING):
            return False
        del self._awaiting[key]
        return True

    def leave(self, key: K) -> None:
        """The connection ended, however it ended (a no-op if it was evicted)."""
        if key in self._phase:
            self._forget(key)

    # --- what the server executes ------------------------------------------------------------

    def poll(self, now: float) -> Decision[K]:
        """Rules 2 and 3: admit from the head of the queue while tokens and slots allow,
        evicting the longest-idle awaiting connection past its grace when slots do not."""
        self._refill(now)
        admit: list[K] = []
        evict: list[K] = []
        wake_at: float | None = None
        while self._queue:
            if self._tokens < 1:
                wake_at = now + (1 - self._tokens) / self.policy.attest_rate
                break
            if self._attested >= self.policy.slots:
                victim = next(iter(self._awaiting), None)
                if victim is None:
                    break  # every slot is attesting or submitted: they end by themselves
                free_at = self._awaiting[victim] + self.policy.grace
                if free_at > now:
                    wake_at = free_at
                    break
                self._forget(victim)
                evict.append(victim)
                continue
            head = next(iter(self._queue))
            del self._queue[head]
            self._phase[head] = Phase.ATTESTING
            self._attested += 1
            self._tokens -= 1
            admit.append(head)
        return Decision(tuple(admit), tuple(evict), wake_at)

    # --- introspection (logs, tests) ---------------------------------------------------------

    def phase(self, key: K) -> Phase | None:
        return self._phase.get(key)

    def counts(self) -> dict[Phase, int]:
        counts = dict.fromkeys(Phase, 0)
        for phase in self._phase.values():
            counts[phase] += 1
        return counts

    @property
    def queued(self) -> int:
        return len(self._queue)

    # --- internals ---------------------------------------------------------------------------

    def _advance(self, key: K, expected: Phase) -> bool:
        phase = self._phase.get(key)
        if phase is None:
            return False  # evicted: the caller stops
        if phase is not expected:
            raise LocalProtocolError(f"connection is {phase.value}, not {expected.value}")
        self._phase[key] = _NEXT[expected]
        return True

    def _forget(self, key: K) -> None:
        phase = self._phase.pop(key)
        self._hello.pop(key, None)
        self._queue.pop(key, None)
        self._awaiting.pop(key, None)
        if phase not in _PENDING:
            self._attested -= 1

    def _refill(self, now: float) -> None:
        elapsed = max(0.0, now - self._refilled)
        self._refilled = now
        self._tokens = min(float(self.policy.attest_burst),
                           self._tokens + elapsed * self.policy.attest_rate)
