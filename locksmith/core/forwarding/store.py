"""The provider's approval store (docs/forwarding.md §4.4): approvals pushed in A1, kept so that
a requester of the approved image needs none of its own.

    judge_push(push, holders=…, …) -> Tally      §4.3 over A1's texts, sources "0", "1", …
    store.add(push, tally, now) -> PushOutcome     keep what counts; A2 and the log's set ids
    store.texts_for(pcrs, now) -> texts           what §5.2 step 7 counts beside F3's

An approval is self-authenticating, so the store trusts nothing about how a text arrived — and
nothing about it once stored either: it only decides what to *keep*. Every use of a stored
text goes through `count_approvals` again, at that moment's `now` (an approval that expired,
or whose holder key is no longer live, stops counting without the store having to know).

One entry per (holder, PCR set), holding the text: a later expiry replaces the held entry, the
same expiry keeps it (a repeated push changes nothing and still reports the text stored), an
earlier one is discarded as §4.3's duplicate. Entries past their expiry are dropped whenever
the store is used. `capacity` bounds new entries (`approval store is full`); replacing one is
always possible. Only texts that count can take an entry, so only the holders' signatures can
fill the store.

Sans-IO and single-threaded like the rest of `core/`: forwardd serialises access with a lock
(`personalities/forwardd/pushes.py`) and judges outside it.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

from locksmith.core.forwarding.approval import DUPLICATE, PcrSet, Tally, count_approvals
from locksmith.core.forwarding.messages import Discarded, Push, Stored
from locksmith.core.protocol.holders import BundleHolders

__all__ = ["CAPACITY", "STORE_FULL", "ApprovalStore", "PushOutcome", "judge_push"]

CAPACITY = 1024  # entries (holder, PCR set)
STORE_FULL = "approval store is full"


def judge_push(push: Push, *, holders: BundleHolders, bundle_hash: bytes, threshold: int,
               now: int, excluded: Collection[int] = ()) -> Tally:
    """§4.4 step 2: §4.3 over A1's texts as one input; each source is the text's index."""
    return count_approvals([(str(i), text) for i, text in enumerate(push.approvals)],
                           holders=holders, bundle_hash=bundle_hash, threshold=threshold,
                           now=now, excluded=excluded)


@dataclass(frozen=True)
class PushOutcome:
    answer: Stored  # A2
    sets: tuple[str, ...]  # set ids of the PCR sets of the texts stored, ascending


@dataclass
class _Entry:
    expires: int
    text: str = field(repr=False)


class ApprovalStore:
    def __init__(self, capacity: int = CAPACITY) -> None:
        if capacity < 1:
            raise ValueError("the approval store holds at least one entry")
        self._capacity = capacity
        self._entries: dict[tuple[int, PcrSet], _Entry] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def prune(self, now: int) -> None:
        """Drop the entries whose `expires` is not after `now` (§4.3 check 5)."""
        for key in [k for k, entry in self._entries.items() if entry.expires <= now]:
            del self._entries[key]

    def add(self, push: Push, tally: Tally, now: int) -> PushOutcome:
        """§4.4 step 3 for the `tally` of `judge_push(push)`: keep what counts, in A1's order."""
        self.prune(now)
        discarded = [(int(d.source), d.reason) for d in tally.discarded]
        counted = sorted((int(c.source), pcrs, c) for pcrs, approvals in tally.counted.items()
                         for c in approvals)
        stored: list[int] = []
        sets: set[str] = set()
        for index, pcrs, approval in counted:
            key = (approval.holder, pcrs)
            held = self._entries.get(key)
            if held is None and len(self._entries) >= self._capacity:
                discarded.append((index, STORE_FULL))
                continue
            if held is not None and held.expires > approval.expires:
                discarded.append((index, DUPLICATE.format(k=approval.holder)))
                continue
            if held is None or held.expires < approval.expires:
                self._entries[key] = _Entry(approval.expires, push.approvals[index])
            stored.append(index)
            sets.add(pcrs.set_id)
        answer = Stored(len(stored), tuple(Discarded(i, reason) for i, reason in
                                           sorted(discarded)))
        return PushOutcome(answer, tuple(sorted(sets)))

    def texts_for(self, pcrs: PcrSet, now: int) -> tuple[str, ...]:
        """The held texts approving `pcrs`, by holder index (for §5.2 step 7)."""
        self.prune(now)
        return tuple(entry.text for (_, held), entry in sorted(
            self._entries.items(), key=lambda item: item[0][0]) if held == pcrs)
