"""forwardd's approval store as the server uses it (docs/forwarding.md §4.4, §5.2a, §5.4).

`core.forwarding.store` decides what is kept; this adds what a process needs around it: the
clock, a lock (pushes are judged and F3s counted on two worker threads at once), and the log
line of a push. Judging — the signature checks — happens outside the lock, so a push never
holds up another connection's count for longer than a few dictionary operations.

Every method here runs on a worker thread (`WorkLanes`), never on the event loop; only
`line` (text building) runs on the loop.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from locksmith.core.forwarding.approval import PcrSet
from locksmith.core.forwarding.messages import Push
from locksmith.core.forwarding.store import CAPACITY, ApprovalStore, PushOutcome, judge_push
from locksmith.core.protocol.holders import BundleHolders

__all__ = ["PUSHED", "Pushes", "push_kind", "pushes_suffix"]

PUSHED = "stored {n} approvals from {peer} (PCR sets {sets}); {m} discarded"


def push_kind(outcome: PushOutcome) -> str:
    """Two rate limits (§5.4): pushes that stored something, and pushes that stored nothing —
    so a flood of junk pushes cannot hide the line of one that counted."""
    return "push:stored" if outcome.answer.stored else "push:none"


def pushes_suffix(count: int) -> str:
    return "" if count == 1 else f" ({count - 1} similar pushes suppressed)"


class Pushes:
    """The store, its lock and the provider's judging inputs."""

    def __init__(self, *, holders: BundleHolders, bundle_hash: bytes, threshold: int,
                 excluded: tuple[int, ...], clock: Callable[[], float],
                 capacity: int = CAPACITY) -> None:
        self._holders = holders
        self._bundle_hash = bundle_hash
        self._threshold = threshold
        self._excluded = excluded
        self._clock = clock
        self._store = ApprovalStore(capacity)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._store)

    def receive(self, push: Push) -> PushOutcome:
        """§4.4 steps 2–3: judge (outside the lock), then keep what counts."""
        now = int(self._clock())
        tally = judge_push(push, holders=self._holders, bundle_hash=self._bundle_hash,
                           threshold=self._threshold, now=now, excluded=self._excluded)
        with self._lock:
            return self._store.add(push, tally, now)

    def texts_for(self, pcrs: PcrSet, now: int) -> tuple[str, ...]:
        """The stored texts of `pcrs` (expired entries dropped first), for §5.2 step 7."""
        with self._lock:
            return self._store.texts_for(pcrs, now)

    @staticmethod
    def line(peer: str, outcome: PushOutcome) -> str:
        answer = outcome.answer
        return PUSHED.format(n=answer.stored, peer=peer, sets=", ".join(outcome.sets) or "none",
                             m=len(answer.discarded))
