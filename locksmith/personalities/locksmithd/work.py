"""locksmithd's CPU work off the event loop: one worker thread fed from two lanes (finding F3).

Everything that costs more than a few microseconds per submission runs here, never on the event
loop: identifying the signer (one hash of P of up to 256 KiB, then signature checks), opening
the share (X25519, AES-GCM), and the round's recovery search (which can take a second, see
`core.reconstitution`). The loop only moves bytes, so one peer's submission never stalls the
others' reads, deadlines or attestations.

Why one thread: protocol.md §8 processes submissions strictly one at a time anyway, the GIL
leaves little to gain from more, and one thread keeps the round single-threaded.

Why two lanes: `URGENT` jobs (screening a submission: the issuer's key only; opening shares;
the round) always run before `LATER` jobs (a full scan over every holder key, needed only for
signatures whose issuer hints name no key that verifies — honest clients always name theirs).
A flood of such signatures queues behind itself, never in front of a holder.

The queue is bounded by the caller: each connection has at most one job outstanding, and
connections are bounded by the admission pools. A job whose caller was cancelled before it
started is skipped; one that already runs completes, and its result goes to `discard` (so a
recovered secret nobody will read is still wiped).
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

__all__ = ["LATER", "URGENT", "WorkLanes"]

URGENT = 0
LATER = 1
T = TypeVar("T")


@dataclass
class _Job(Generic[T]):
    waiter: asyncio.Future[T]
    call: Callable[[], T]
    discard: Callable[[T], None] | None


class WorkLanes:
    """`await lanes.run(call, lane=URGENT)`: `call()` on the worker thread, lanes in order."""

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="work")
        self._lanes: tuple[collections.deque[_Job[Any]], ...] = (
            collections.deque(), collections.deque())
        self._busy = False
        self._closed = False

    async def run(self, call: Callable[[], T], *, lane: int = URGENT,
                  discard: Callable[[T], None] | None = None) -> T:
        if self._closed:
            raise RuntimeError("the work lanes are shut down")
        waiter: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._lanes[lane].append(_Job(waiter, call, discard))
        self._next()
        return await waiter

    @property
    def pending(self) -> int:
        return sum(len(lane) for lane in self._lanes)

    def shutdown(self) -> None:
        """Stop taking jobs and wait for the running one (the round must not be wiped while a
        worker still uses it)."""
        self._closed = True
        for lane in self._lanes:
            for job in lane:
                job.waiter.cancel()
            lane.clear()
        self._executor.shutdown(wait=True, cancel_futures=True)

    def _next(self) -> None:
        if self._busy or self._closed:
            return
        for lane in self._lanes:
            while lane:
                job = lane.popleft()
                if job.waiter.done():  # the caller went away before the job started
                    continue
                self._start(job)
                return

    def _start(self, job: _Job[Any]) -> None:
        self._busy = True
        running = asyncio.get_running_loop().run_in_executor(self._executor, job.call)

        def finished(done: asyncio.Future[Any]) -> None:
            self._busy = False
            if done.cancelled():
                job.waiter.cancel()
            elif (error := done.exception()) is not None:
                if not job.waiter.done():
                    job.waiter.set_exception(error)
            elif job.waiter.done():
                if job.discard is not None:
                    job.discard(done.result())
            else:
                job.waiter.set_result(done.result())
            self._next()

        running.add_done_callback(finished)
