"""locksmithd's asyncio server: sockets, time and the NSM around the sans-IO protocol.

Each connection gets its own `EnclaveSession` (which makes the fresh X25519 key) and one NSM
attestation; every share goes through the one `ReconstitutionRound` behind one `asyncio.Lock`
(protocol.md §8 "strictly sequentially"). This module only moves bytes, keeps time and decides
what happens to the process when the round ends:

* `ShareAccepted` / `ShareRejected` / `RecoveryFailed`: answer, close, keep serving (after a
  failed recovery the round has restarted itself; connections in progress continue into it);
* `QuorumReached`: close the listener and every other connection without a response, answer
  the last submitter `{"Accepted":{"remaining":0}}`, and return `Unlocked(secret)`;
* `BundleTampered`: the same closing, answer the last submitter, return `Tampered`;
* SIGTERM/SIGINT before that: return `Stopped(signum)`; the round's shares are wiped.

Limits (protocol.md §9, `Limits`): 32 concurrent connections — the 33rd is accepted and closed
at once; message 1 complete within 10 s of accept; 300 s per connection; frame lengths and the
per-message caps are checked by the session from the header before the body is read, and reads
are 64 KiB at a time into a session whose buffer is bounded. Accept errors are logged
(rate-limited) by asyncio's exception handler hook and the listener keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from locksmith.core.nsm import Nsm
from locksmith.core.protocol import (
    NEED_DATA, BundleHolders, BundleTampered, ConnectionClosed, EnclaveSession, NonceReceived,
    ProtocolViolation, QuorumReached, ReconstitutionRound, ShareRejected, ShareSubmitted,
    SubmissionReceived,
)
from locksmith.core.protocol_messages import LocalProtocolError
from locksmith.personalities.locksmithd.logsink import RateLimitedLog, log

__all__ = ["Limits", "Locksmithd", "Outcome", "Stopped", "Tampered", "Unlocked"]

READ_SIZE = 64 * 1024
# ProtocolViolation reasons that are size limits of §9 (frame codec and session texts).
_SIZE_LIMIT_REASONS = ("frame body length", "frame payload of", "peer sent more data")


@dataclass(frozen=True)
class Limits:
    """protocol.md §9. The daemon always uses the defaults; tests may shorten them in-process."""

    connections: int = 32
    first_message: float = 10.0  # seconds from accept until message 1 is complete
    connection: float = 300.0  # seconds from accept until the connection is closed
    final_answer: float = 10.0  # writing message 4 after the round ended (secret in memory)


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


class _LimitHit(Exception):
    def __init__(self, kind: str, text: str) -> None:
        super().__init__(text)
        self.kind = kind
        self.text = text


@contextlib.asynccontextmanager
async def _deadline(when: float, kind: str, text: str) -> AsyncIterator[None]:
    """`asyncio.timeout_at` whose expiry names the limit that was hit. Nested deadlines work:
    an outer expiry passes through an inner one as a cancellation."""
    try:
        async with asyncio.timeout_at(when):
            yield
    except TimeoutError:
        raise _LimitHit(kind, text) from None


def _peer(writer: asyncio.StreamWriter) -> str:
    peer = writer.get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2:
        host, port = peer[0], peer[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return "unknown peer"


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
        self._active: set[asyncio.Task[Any]] = set()
        self._server: asyncio.Server | None = None
        self._done: asyncio.Future[Outcome] | None = None

    # --- lifetime ------------------------------------------------------------------------------

    async def serve(self, listener: socket.socket) -> Outcome:
        loop = asyncio.get_running_loop()
        self._done = loop.create_future()
        loop.set_exception_handler(self._loop_exception)
        signals = (signal.SIGTERM, signal.SIGINT) if self._handle_signals else ()
        for signum in signals:
            loop.add_signal_handler(signum, self.stop, signum)
        try:
            self._server = await asyncio.start_server(self._connection, sock=listener)
            outcome = await self._done
        finally:
            for signum in signals:
                loop.remove_signal_handler(signum)
            self._close_listener()
            await self._drop_connections(keep=None)
            self._nsm_executor.shutdown(wait=False, cancel_futures=True)
            self._rlog.flush()
        if not isinstance(outcome, Unlocked):
            self._round.wipe()
        return outcome

    def stop(self, signum: int = signal.SIGTERM) -> None:
        """End the collection before the quorum (SIGTERM/SIGINT): `serve` returns `Stopped`."""
        if self._done is not None and not self._done.done():
            self._close_listener()
            self._done.set_result(Stopped(signum))

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
        """asyncio reports accept() failures here (and pauses accepting on EMFILE/ENFILE by
        itself); anything else is a bug worth one bounded line, never a traceback flood."""
        message = str(context.get("message", "unexpected event loop error"))
        exc = context.get("exception")
        detail = f": {type(exc).__name__}: {exc}" if exc is not None else ""
        if "accept" in message:
            self._rlog.hit("accept", f"accept error{detail}; the listener keeps serving")
        else:
            self._rlog.hit("internal", f"internal error: {message}{detail}"[:512])

    # --- one connection ------------------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if self._done is None or self._done.done():
            writer.transport.abort()
            return
        if len(self._active) >= self._limits.connections:
            writer.transport.abort()  # accepted and closed at once: no queueing (§9)
            self._rlog.hit("limit:connections",
                           f"limit hit: {self._limits.connections} connections open; closed a "
                           f"new connection from {_peer(writer)} at once")
            return
        self._active.add(task)
        peer = _peer(writer)
        submitted: list[ShareSubmitted] = []
        try:
            await self._converse(reader, writer, peer, submitted)
        except asyncio.CancelledError:
            # The round ended or the daemon is stopping: closed without a response (§10).
            # Not re-raised: this task is the top of its stack, and asyncio's stream glue
            # would report a cancelled handler as an unhandled exception.
            pass
        except _LimitHit as hit:
            self._rlog.hit(hit.kind, f"limit hit: {hit.text}; closed the connection from {peer}")
        except (ConnectionError, OSError) as exc:
            self._rlog.hit("io", f"connection from {peer} failed: {exc.strerror or exc}")
        except LocalProtocolError as exc:  # a bug on our side; close, keep serving
            self._rlog.hit("internal", f"internal error on the connection from {peer}: {exc}")
        finally:
            self._active.discard(task)
            for item in submitted:
                item.request.wipe()  # the round keeps its own copy
            if not writer.is_closing():
                writer.transport.abort()

    async def _converse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                        peer: str, submitted: list[ShareSubmitted]) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        limits = self._limits
        session = EnclaveSession(self._holders)
        async with _deadline(start + limits.connection, "limit:connection",
                             f"connection open for {limits.connection:g} s"):
            async with _deadline(start + limits.first_message, "limit:first-message",
                                 f"no complete message 1 within {limits.first_message:g} s"):
                event = await self._next_event(session, reader)
            if not isinstance(event, NonceReceived):
                self._closed_early(event, peer, "message 1")
                return
            if not await self._attest(session, writer, event, peer):
                return
            event = await self._next_event(session, reader)
            if not isinstance(event, SubmissionReceived):
                self._closed_early(event, peer, "message 3")
                return
            opened = session.open_submission(int(self._clock()))  # §7 steps 2–3
            if isinstance(opened, ShareRejected):
                self._log_lines(opened.log)
                await self._answer(writer, session.send_verdict(opened.verdict))
                return
            submitted.append(opened)
            async with self._lock:  # §8: one submission at a time
                if self._round.finished or self._done is None or self._done.done():
                    return  # the round ended while we waited: closed without a response (§10)
                result = self._round.admit(opened.request, opened.holder)
                self._log_lines(result.log)
                verdict = session.send_verdict(result.verdict)
                if isinstance(result, QuorumReached):
                    await self._end_round(writer, verdict, Unlocked(result.secret))
                    return
                if isinstance(result, BundleTampered):
                    await self._end_round(writer, verdict, Tampered())
                    return
            await self._answer(writer, verdict)

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
