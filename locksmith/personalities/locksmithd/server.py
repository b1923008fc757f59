"""locksmithd's asyncio server: sockets, time and the NSM around the sans-IO protocol.

Each connection gets its own `EnclaveSession` (which makes the fresh X25519 key) and, once
admitted, one NSM attestation; every share goes through the one `ReconstitutionRound` behind one
`asyncio.Lock` (protocol.md §8 "strictly sequentially"). This module only moves bytes, keeps
time and decides what happens to the process when the round ends:

* `ShareAccepted` / `ShareRejected` / `RecoveryFailed`: answer, close, keep serving (after a
  fruitless recovery every share is kept; connections in progress carry on);
* `QuorumReached`: close the listener and every other connection without a response, answer
  the last submitter `{"Accepted":{"remaining":0}}`, and return `Unlocked(secret)`;
* `BundleTampered`: the same closing, answer the last submitter, return `Tampered`;
* SIGTERM/SIGINT before that: return `Stopped(signum)`; the round's shares are wiped.
* `deliver(outcome)` from another task on the loop (key forwarding's requester, docs/
  forwarding.md §6 step 7): the same closing, with no submitter to answer; the round's shares
  are wiped. Whichever of a quorum and a delivery comes first wins; the loser is wiped.

Availability (docs/security.md, findings F1, F3, F7). Who may attest and who is cut to make
room is `core.protocol.admission` (run by `gate.Gate`): many idle connections are held, each
attestation takes a rationed token, a waiting holder is admitted in arrival order, and under
pressure the connection idle longest after message 2 makes way. Identification, opening shares
and the round run on one worker thread (`work.WorkLanes`), never on the event loop; events a
peer without a key can cause are logged through `RateLimitedLog`.

Limits (protocol.md §9 as amended, `gate.Limits`): message 1 complete within 10 s of accept; an
attestation slot within 20 s of message 1; message 3 complete within 30 s of message 2; 300 s
per connection; frame lengths and the per-message caps are checked by the session from the
header before the body is read, and reads are 64 KiB at a time into a session whose buffer is
bounded. Accept errors are logged (rate-limited) and the listener keeps serving.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from locksmith.core.attestation.nsm import Nsm
from locksmith.core.openpgp.holder_signature import HolderSignatureError
from locksmith.core.protocol.messages import LocalProtocolError
from locksmith.core.protocol.reconstitution import AdmitResult
from locksmith.core.protocol.session import (
    NEED_DATA, BundleHolders, BundleTampered, ConnectionClosed, EnclaveSession, NonceReceived,
    ProtocolViolation, QuorumReached, ReconstitutionRound, ShareRejected, ShareSubmitted,
    SubmissionReceived,
)
from locksmith.personalities.daemonkit.deadline import LimitHit, deadline, peer_name
from locksmith.personalities.daemonkit.ratelog import loop_error_line
from locksmith.personalities.locksmithd.gate import Conn, Gate, Limits
from locksmith.personalities.locksmithd.identify import open_submission
from locksmith.personalities.locksmithd.logsink import RateLimitedLog, log
from locksmith.personalities.locksmithd.work import WorkLanes

__all__ = ["Limits", "Locksmithd", "Outcome", "Stopped", "Tampered", "Unlocked"]

T = TypeVar("T")
READ_SIZE = 64 * 1024
# The worker thread runs Python code (signature scans, the recovery search) for up to a second
# at a time; CPython lets a thread keep the GIL for 5 ms by default before handing it over, and
# the hand-over convoys, so the loop waited up to ~100 ms behind it (bench/identification.py).
# 1 ms keeps the loop responsive while serving, at a negligible cost in throughput.
GIL_SWITCH_INTERVAL = 0.001
# ProtocolViolation reasons that are size limits of §9 (frame codec and session texts).
_SIZE_LIMIT_REASONS = ("frame body length", "frame payload of", "peer sent more data")


@dataclass(frozen=True)
class Unlocked:
    secret: bytearray = field(repr=False)  # the caller hands it to keyforkd, then wipes it


@dataclass(frozen=True)
class Tampered:
    """The bundle's public key carries a foreign subkey (protocol.md §8 step 5): exit 1."""


@dataclass(frozen=True)
class Stopped:
    signum: int


Outcome = Unlocked | Tampered | Stopped


def _wipe_unread(result: AdmitResult) -> None:
    """A round result whose connection is gone: nobody will hand its secret on."""
    if isinstance(result, QuorumReached):
        result.secret[:] = bytes(len(result.secret))


class Locksmithd:
    """One collection: `await Locksmithd(...).serve(listener)` → `Outcome`."""

    def __init__(self, *, holders: BundleHolders, round: ReconstitutionRound, nsm: Nsm,
                 limits: Limits = Limits(), handle_signals: bool = True,
                 clock: Callable[[], float] = time.time) -> None:
        self._holders = holders
        self._round = round
        self._nsm = nsm
        self._limits = limits
        self._handle_signals = handle_signals
        self._clock = clock
        self._lock = asyncio.Lock()
        self._rlog = RateLimitedLog()
        # One NSM request at a time, off the event loop: the ioctl blocks, and the simulated
        # NSM's leaf renewal is not meant for concurrent callers.
        self._nsm_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nsm")
        self._work = WorkLanes()
        self._gate: Gate | None = None
        self._active: set[asyncio.Task[Any]] = set()
        self._server: asyncio.Server | None = None
        self._done: asyncio.Future[Outcome] | None = None

    # --- lifetime ------------------------------------------------------------------------------

    async def serve(self, listener: socket.socket,
                    companion: Callable[[], Coroutine[Any, Any, None]] | None = None) -> Outcome:
        """Serve until the round ends. `companion()` runs beside the listener from the moment
        it serves until `serve` returns (key forwarding's requester tasks, which may end the
        collection with `deliver`); it is cancelled then."""
        loop = asyncio.get_running_loop()
        self._done = loop.create_future()
        self._gate = Gate(self._limits.policy(), loop, self._evicted)
        loop.set_exception_handler(self._loop_exception)
        signals = (signal.SIGTERM, signal.SIGINT) if self._handle_signals else ()
        for signum in signals:
            loop.add_signal_handler(signum, self.stop, signum)
        switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(GIL_SWITCH_INTERVAL)
        companion_task: asyncio.Task[None] | None = None
        try:
            self._server = await asyncio.start_server(self._connection, sock=listener)
            if companion is not None:
                companion_task = asyncio.create_task(companion())
            outcome = await self._done
        finally:
            if companion_task is not None:
                companion_task.cancel()
                await asyncio.gather(companion_task, return_exceptions=True)
            sys.setswitchinterval(switch_interval)
            for signum in signals:
                loop.remove_signal_handler(signum)
            self._close_listener()
            await self._drop_connections(keep=None)
            self._gate.close()
            self._work.shutdown()  # waits for a running job: the round is wiped after it
            self._nsm_executor.shutdown(wait=False, cancel_futures=True)
            self._rlog.flush()
        if not self._round.finished:  # stopped, or a secret delivered from elsewhere
            self._round.wipe()
        return outcome

    def stop(self, signum: int = signal.SIGTERM) -> None:
        """End the collection before the quorum (SIGTERM/SIGINT): `serve` returns `Stopped`."""
        if self._done is not None and not self._done.done():
            self._close_listener()
            self._done.set_result(Stopped(signum))

    def deliver(self, outcome: Unlocked | Tampered) -> bool:
        """End the collection with a secret (or a verdict on the bundle) that came another
        way: `serve` returns `outcome`, the listener and every holder connection are closed
        without a response (protocol.md §10). False when the collection already ended; the
        caller then wipes its secret."""
        if self._done is None or self._done.done():
            return False
        self._close_listener()
        self._done.set_result(outcome)
        return True

    async def with_nsm(self, call: Callable[[Nsm], T]) -> T:
        """`call(nsm)` on the one NSM thread, which other tasks on the loop share with the
        holders' attestations (one NSM request at a time)."""
        nsm = self._nsm
        return await asyncio.get_running_loop().run_in_executor(self._nsm_executor,
                                                                lambda: call(nsm))

    def _close_listener(self) -> None:
        if self._server is not None:
            self._server.close()

    async def _drop_connections(self, keep: asyncio.Task[Any] | None) -> None:
        """Close every other connection without a response (protocol.md §10)."""
        others = [task for task in self._active if task is not keep]
        for task in others:
            task.cancel()
        if others:
            await asyncio.wait(others, timeout=5.0)

    def _loop_exception(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        self._rlog.hit(*loop_error_line(context))

    def _evicted(self, conn: Conn) -> None:
        self._rlog.hit(*conn.eviction_line())

    # --- one connection ------------------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None and self._gate is not None
        if self._done is None or self._done.done():
            writer.transport.abort()
            return
        conn = Conn(task, peer_name(writer), asyncio.get_running_loop().create_future())
        if not self._gate.arrive(conn):
            writer.transport.abort()  # every waiting place holds a peer that sent message 1
            self._rlog.hit("limit:connections",
                           f"limit hit: {self._limits.waiting} connections waiting for a slot; "
                           f"closed a new connection from {conn.peer} at once")
            return
        self._active.add(task)
        submitted: list[ShareSubmitted] = []
        try:
            await self._converse(conn, reader, writer, submitted)
        except asyncio.CancelledError:
            # Evicted (logged by the gate), or the round ended or the daemon is stopping:
            # closed without a response (§10). Not re-raised: this task is the top of its
            # stack, and asyncio's stream glue would report a cancelled handler as unhandled.
            pass
        except LimitHit as hit:
            self._rlog.hit(hit.kind, f"limit hit: {hit.text}; closed the connection from "
                           f"{conn.peer}")
        except (ConnectionError, OSError) as exc:
            self._rlog.hit("io", f"connection from {conn.peer} failed: {exc.strerror or exc}")
        except LocalProtocolError as exc:  # a bug on our side; close, keep serving
            self._rlog.hit("internal", f"internal error on the connection from {conn.peer}: "
                           f"{exc}")
        finally:
            self._active.discard(task)
            self._gate.leave(conn)
            for item in submitted:
                item.request.wipe()  # the round keeps its own copy
            if not writer.is_closing():
                writer.transport.abort()

    async def _converse(self, conn: Conn, reader: asyncio.StreamReader,
                        writer: asyncio.StreamWriter, submitted: list[ShareSubmitted]) -> None:
        loop = asyncio.get_running_loop()
        gate, limits = self._gate, self._limits
        assert gate is not None
        start = loop.time()
        session = EnclaveSession(self._holders)
        async with deadline(start + limits.connection, "limit:connection",
                             f"connection open for {limits.connection:g} s"):
            async with deadline(start + limits.first_message, "limit:first-message",
                                 f"no complete message 1 within {limits.first_message:g} s"):
                event = await self._next_event(session, reader)
            if not isinstance(event, NonceReceived):
                self._closed_early(event, conn.peer, "message 1")
                return
            if not gate.message1(conn):
                return
            async with deadline(loop.time() + limits.queue, "limit:queue",
                                 f"no attestation slot within {limits.queue:g} s"):
                if not await self._admitted(conn, session, reader):
                    return
            if not await self._attest(session, writer, event, conn.peer):
                return
            if not gate.attested(conn):
                return
            async with deadline(loop.time() + limits.submission, "limit:submission",
                                 f"no complete message 3 within {limits.submission:g} s of "
                                 "message 2"):
                event = await self._next_event(session, reader)
            if not isinstance(event, SubmissionReceived):
                self._closed_early(event, conn.peer, "message 3")
                return
            if not gate.submitted(conn):
                return
            opened = await self._open(session)  # §7 steps 2–3, off the event loop
            if isinstance(opened, ShareRejected):
                await self._answer(writer, session.send_verdict(opened.verdict))
                return
            submitted.append(opened)
            async with self._lock:  # §8: one submission at a time
                if self._round.finished or self._done is None or self._done.done():
                    return  # the round ended while we waited: closed without a response (§10)
                result = await self._work.run(
                    lambda: self._round.admit(opened.request, opened.holder),
                    discard=_wipe_unread)
                if isinstance(result, ShareRejected):
                    self._holder_refused(opened.holder, result)
                else:
                    self._log_lines(result.log)
                verdict = session.send_verdict(result.verdict)
                if isinstance(result, QuorumReached):
                    await self._end_round(writer, verdict, Unlocked(result.secret))
                    return
                if isinstance(result, BundleTampered):
                    await self._end_round(writer, verdict, Tampered())
                    return
            await self._answer(writer, verdict)

    async def _admitted(self, conn: Conn, session: EnclaveSession,
                        reader: asyncio.StreamReader) -> bool:
        """Wait for the gate's admission while watching the peer: one that closes while it
        waits gives up its place instead of costing an attestation later. Early bytes go to
        the session (bounded), which judges them once message 2 is out."""
        read: asyncio.Future[bytes] = asyncio.ensure_future(reader.read(READ_SIZE))
        try:
            while True:
                waiters: set[asyncio.Future[Any]] = {conn.admitted, read}
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
                if read.done():
                    data = read.result()
                    session.receive_data(data)
                    if not data:
                        self._rlog.hit("closed", f"connection from {conn.peer} closed while "
                                       "waiting for a slot")
                        return False
                    if session.overflowed:  # more than message 3 before message 2
                        self._rlog.hit("limit:size", "limit hit: peer sent more data than the "
                                       f"protocol allows; closed the connection from {conn.peer}")
                        return False
                    read = asyncio.ensure_future(reader.read(READ_SIZE))
                if conn.admitted.done():
                    return True
        finally:
            if not read.done():
                read.cancel()

    async def _attest(self, session: EnclaveSession, writer: asyncio.StreamWriter,
                      event: NonceReceived, peer: str) -> bool:
        """Message 2 (§4); on NSM failure the connection is closed without a response."""
        loop = asyncio.get_running_loop()
        nsm = self._nsm
        try:
            document = await loop.run_in_executor(
                self._nsm_executor,
                lambda: nsm.attest(user_data=event.user_data, nonce=event.nonce))
            answer = session.send_attestation(document)
        except Exception as exc:  # NsmError, or anything the NSM stack raises
            self._rlog.hit("nsm", f"NSM attestation failed: {exc}; closed the connection from "
                           f"{peer} without a response")
            return False
        writer.write(answer)
        await writer.drain()
        return True

    async def _open(self, session: EnclaveSession) -> ShareSubmitted | ShareRejected:
        """§7 steps 2–3 off the event loop (identify.py). Identification failures are what
        anyone can cause: rate-limited log (F7)."""
        opened, found = await open_submission(session, self._holders, self._work,
                                              int(self._clock()))
        if isinstance(opened, ShareRejected):
            if isinstance(found, HolderSignatureError):
                for line in opened.log:
                    self._rlog.hit(f"signature:{found.category}", line)
            else:
                self._holder_refused(found.index, opened)
        return opened

    def _holder_refused(self, holder: int, refused: ShareRejected) -> None:
        """An identified holder's refusal: one line per second per holder and reason, so a
        holder whose key resubmits in a loop cannot flood the console either; first-time
        events (every honest holder's) are written at once."""
        for i, line in enumerate(refused.log):
            self._rlog.hit(f"holder:{holder}:{refused.verdict.reason}:{i}", line)

    async def _next_event(self, session: EnclaveSession, reader: asyncio.StreamReader) -> object:
        while True:
            event = session.next_event()
            if event is not NEED_DATA:
                return event
            session.receive_data(await reader.read(READ_SIZE))

    async def _answer(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        """Message 4, then close (§3). Whatever the client sends afterwards is ignored."""
        writer.write(data)
        await writer.drain()
        writer.close()

    async def _end_round(self, writer: asyncio.StreamWriter, verdict: bytes,
                         outcome: Unlocked | Tampered) -> None:
        """The round is over: nobody else is answered, the last submitter is (§8, §10)."""
        assert self._done is not None
        self._close_listener()
        await self._drop_connections(keep=asyncio.current_task())
        try:
            async with asyncio.timeout(self._limits.final_answer):
                await self._answer(writer, verdict)
                await writer.wait_closed()
        except (TimeoutError, ConnectionError, OSError):
            log("could not deliver the last verdict; the round has ended regardless")
        finally:
            if not self._done.done():
                self._done.set_result(outcome)
            elif isinstance(outcome, Unlocked):  # a signal won the race: nobody gets it
                outcome.secret[:] = bytes(len(outcome.secret))

    def _closed_early(self, event: object, peer: str, waiting_for: str) -> None:
        if isinstance(event, ProtocolViolation):
            if event.reason.startswith(_SIZE_LIMIT_REASONS):
                kind, prefix = "limit:size", "limit hit: "
            else:
                kind, prefix = "protocol", "protocol violation: "
            self._rlog.hit(kind, f"{prefix}{event.reason}; closed the connection from {peer} "
                           "without a response")
        elif isinstance(event, ConnectionClosed):
            self._rlog.hit("closed", f"connection from {peer} closed before {waiting_for} "
                           "was complete")

    @staticmethod
    def _log_lines(lines: tuple[str, ...]) -> None:
        for line in lines:
            log(line)
