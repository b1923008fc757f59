"""CPU work off the event loop: worker threads fed from two lanes (finding F3).

Everything that costs more than a few microseconds per request runs here, never on the event
loop: in locksmithd identifying a holder's signature, opening a share and the round's recovery
search; in forwardd verifying a requester's attestation and counting its approvals. The loop
only moves bytes, so one peer's work never stalls the others' reads, deadlines or
attestations.

Lanes: `URGENT` jobs always start before `LATER` jobs, so work only an attacker causes (in
locksmithd, the full scan for a signature whose issuer hints name no key) queues behind
itself, never in front of an honest peer. `workers` bounds how many jobs run at once
(locksmithd: 1, since protocol.md §8 processes submissions one at a time anyway and one thread
keeps the round single-threaded; forwardd: 2).

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
    """`await lanes.run(call, lane=URGENT)`: `call()` on a worker thread, lanes in order."""

    def __init__(self, workers: int = 1, *, name: str = "work") -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self._workers = workers
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)
        self._lanes: tuple[collections.deque[_Job[Any]], ...] = (
            collections.deque(), collections.deque())
        self._running = 0
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

    @property
    def running(self) -> int:
        return self._running

    def shutdown(self) -> None:
        """Stop taking jobs and wait for the running ones (state a job uses must not be wiped
        while a worker still uses it)."""
        self._closed = True
        for lane in self._lanes:
            for job in lane:
                job.waiter.cancel()
            lane.clear()
        self._executor.shutdown(wait=True, cancel_futures=True)

    def _next(self) -> None:
        while self._running < self._workers and not self._closed:
            job = self._pop()
            if job is None:
                return
            self._start(job)

    def _pop(self) -> _Job[Any] | None:
        for lane in self._lanes:
            while lane:
                job = lane.popleft()
                if not job.waiter.done():  # else the caller went away before the job started
                    return job
        return None

    def _start(self, job: _Job[Any]) -> None:
        self._running += 1
        running = asyncio.get_running_loop().run_in_executor(self._executor, job.call)

        def finished(done: asyncio.Future[Any]) -> None:
            self._running -= 1
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
