"""forwardd's asyncio server: sockets, time and the NSM around the provider's decision
(docs/forwarding.md §5.2–§5.4).

Per connection, in order (the first failure decides):

    F1 or A1 within 10 s of accept → parse; version ≠ 1 or another bundle → F4 Refused
    wait for an attestation slot and token (admission, as on 49504)
    NSM document: nonce Nr, user_data UP(H, Np) → F2
    F3 within 10 s of F2 → on a worker: parse, `provider.judge_request` (F3's approvals and
    the stored ones), seal the secret → F4 Forwarded, or F4 Refused with the decision's
    text; close
    A1 (a push, §5.2a): admission as an F1 → on a worker: judge and store (`pushes.py`) →
    A2; close

Availability follows locksmithd's design for 49504 (docs/security.md F1, F3, F7; the forwarding
section says what differs): a connection that has not sent F1 costs a socket and a task; the
costly steps — an NSM document, an F3 buffer of up to 1 MiB, the checks — are rationed by
`core.protocol.admission` (waiting places, slots, a token bucket) run by `daemonkit.gate`; when
every slot is taken and a peer waits, the connection idle longest after its F2 makes way, never
one inside its grace period. Checks run on `daemonkit.lanes` worker threads, never on the
event loop. Bytes before F2 are a protocol violation: a requester sends F3 only once it has
verified F2.

Logs: every refusal is an audit line `refused forwarding to <peer> (module <id|unverified>):
<reason>`, rate-limited to one per second per reason; every forward is a line of its own, at
once; every push a `stored … approvals` line, rate-limited too. Limit hits and protocol violations are counted (`counts`) and logged as locksmithd logs
its own (one line per second per kind). No line carries the secret or key material.
"""

from __future__ import annotations

import asyncio
import collections
import os
import re
import signal
import socket
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from locksmith.core.attestation.nsm import Nsm
from locksmith.core.attestation.verify import TrustAnchor
from locksmith.core.forwarding.approval import PcrSet
from locksmith.core.forwarding.binding import (
    ForwardingCryptoError, provider_binding, seal_secret,
)
from locksmith.core.forwarding.messages import (
    FIRST_CAP, NONCE_LENGTH, REQUEST_CAP, VERSION, Challenge, Forwarded, Hello, MessageError,
    Push, Refused, parse_first, parse_request,
)
from locksmith.core.forwarding.provider import (
    DIFFERENT_BUNDLE, UNUSABLE_KEY, Allowed, Denied, judge_request, unsupported_version,
)
from locksmith.core.protocol import frame
from locksmith.core.protocol.admission import Phase, Policy
from locksmith.core.protocol.holders import BundleHolders
from locksmith.personalities.daemonkit.deadline import LimitHit, deadline, peer_name
from locksmith.personalities.daemonkit.gate import Conn, Gate
from locksmith.personalities.daemonkit.lanes import WorkLanes
from locksmith.personalities.daemonkit.ratelog import RateLimitedLog, loop_error_line, stderr_line
from locksmith.personalities.forwardd.pushes import Pushes, push_kind, pushes_suffix

__all__ = ["Forwardd", "Limits", "Provision", "audit_forwarded", "log", "refusal_kind"]

PROG = "forwardd"
READ_SIZE = 64 * 1024
GIL_SWITCH_INTERVAL = 0.001  # as locksmithd: the loop stays responsive beside the workers
EVICTED_HELLO = "its F1 was not complete and a new connection needed its place"
EVICTED_IDLE = ("it had not sent F3 {idle:.1f} s after F2 and a requester was waiting for a "
                "slot")
FORWARDED = ("forwarded the secret to {peer} (module {module}, PCR0 {pcr0}…, PCR1 {pcr1}…, "
             "PCR2 {pcr2}…, rule {rule})")
REFUSED = "refused forwarding to {peer} (module {module}): {reason}"
UNVERIFIED = "unverified"


def log(text: str) -> None:
    """`forwardd: <text>` on stderr."""
    stderr_line(PROG, text)


@dataclass(frozen=True)
class Limits:
    """docs/forwarding.md §5.3 (docs/security.md gives the reasons). The daemon always uses the
    defaults; tests may shorten them in-process."""

    waiting: int = 64  # connections before their attestation (F1 not complete, or queued)
    slots: int = 16  # connections holding an attestation (from admission to F4)
    hello: float = 10.0  # seconds from accept until F1 is complete
    queue: float = 20.0  # seconds from F1 until admitted (the requester waits 30 s for F2)
    request: float = 10.0  # seconds from F2 until F3 is complete
    grace: float = 3.0  # seconds after F2 during which a connection is never evicted
    connection: float = 60.0  # seconds from accept until the connection is closed
    attest_rate: float = 20.0  # NSM documents per second, sustained ...
    attest_burst: int = 20  # ... and saved up
    workers: int = 2  # attestation and approval checks at a time
    store: int = 1024  # entries of the approval store (§4.4)

    def policy(self) -> Policy:
        return Policy(slots=self.slots, waiting=self.waiting, grace=self.grace,
                      attest_rate=self.attest_rate, attest_burst=self.attest_burst)


@dataclass(frozen=True)
class Provision:
    """What forwardd serves and to whom: everything startup established."""

    secret: bytearray = field(repr=False)  # 32 bytes, checked against the bundle; wiped at exit
    bundle_hash: bytes
    own_pcrs: PcrSet
    holders: BundleHolders
    threshold: int
    anchor: TrustAnchor  # the peer trust anchor (§2.1)
    excluded: tuple[int, ...] = ()


class _Closed(Exception):
    """The peer went away: logged as such, nothing to answer."""


def _printable(text: str) -> str:
    """Escape anything that could move a terminal's cursor (F8), e.g. in a module id."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii")
                   for c in text)


def refusal_kind(reason: str) -> str:
    """The reason without its values (versions, counts, verifier details): one rate limit per
    kind of refusal, from a fixed set of texts, so a peer cannot make new kinds."""
    match = re.match(r"[^:(0-9]*", reason)
    return "refused:" + (match.group().strip() if match else "")


def refusals_suffix(count: int) -> str:
    return "" if count == 1 else f" ({count - 1} similar refusals suppressed)"


def audit_forwarded(peer: str, allowed: Allowed) -> str:
    pcrs = allowed.pcrs
    return FORWARDED.format(peer=peer, module=_printable(allowed.module_id),
                            pcr0=pcrs.pcr0.hex()[:16], pcr1=pcrs.pcr1.hex()[:16],
                            pcr2=pcrs.pcr2.hex()[:16], rule=allowed.rule)


_Judged = MessageError | Denied | tuple[Allowed, Forwarded]


class Forwardd:
    """`await Forwardd(...).serve(listener)` serves until `stop(signum)`; returns the signum."""

    def __init__(self, provision: Provision, *, nsm: Nsm, limits: Limits = Limits(),
                 write: Callable[[str], None] = log, clock: Callable[[], float] = time.time,
                 random: Callable[[int], bytes] = os.urandom,
                 handle_signals: bool = True) -> None:
        self._p = provision
        self._nsm = nsm
        self._limits = limits
        self._write = write
        self._clock = clock
        self._random = random
        self._handle_signals = handle_signals
        self._rlog = RateLimitedLog(write)
        self._refusals = RateLimitedLog(write, suffix=refusals_suffix)
        self._pushlog = RateLimitedLog(write, suffix=pushes_suffix)
        self.pushes = Pushes(holders=provision.holders, bundle_hash=provision.bundle_hash,
                             threshold=provision.threshold, excluded=provision.excluded,
                             clock=clock, capacity=limits.store)
        # One NSM request at a time, off the event loop (as locksmithd).
        self._nsm_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nsm")
        self._work = WorkLanes(limits.workers, name="verify")
        self._gate: Gate | None = None
        self._active: set[asyncio.Task[Any]] = set()
        self._server: asyncio.Server | None = None
        self._done: asyncio.Future[int] | None = None
        self.counts: collections.Counter[str] = collections.Counter()  # events by kind

    # --- lifetime ------------------------------------------------------------------------------

    async def serve(self, listener: socket.socket) -> int:
        loop = asyncio.get_running_loop()
        self._done = loop.create_future()
        self._gate = Gate(self._limits.policy(), loop, self._evicted,
                          evicted_hello=EVICTED_HELLO, evicted_idle=EVICTED_IDLE)
        loop.set_exception_handler(self._loop_exception)
        signals = (signal.SIGTERM, signal.SIGINT) if self._handle_signals else ()
        for signum in signals:
            loop.add_signal_handler(signum, self.stop, signum)
        switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(GIL_SWITCH_INTERVAL)
        try:
            self._server = await asyncio.start_server(self._connection, sock=listener)
            return await self._done
        finally:
            sys.setswitchinterval(switch_interval)
            for signum in signals:
                loop.remove_signal_handler(signum)
            if self._server is not None:
                self._server.close()
            tasks = list(self._active)
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.wait(tasks, timeout=5.0)
            self._gate.close()
            self._work.shutdown()
            self._nsm_executor.shutdown(wait=False, cancel_futures=True)
            self._rlog.flush()
            self._refusals.flush()
            self._pushlog.flush()

    def stop(self, signum: int = signal.SIGTERM) -> None:
        if self._done is not None and not self._done.done():
            if self._server is not None:
                self._server.close()
            self._done.set_result(signum)

    def phases(self) -> dict[Phase, int]:
        """How many connections are in each admission phase (tests, diagnostics)."""
        return self._gate.admission.counts() if self._gate is not None else {}

    def _loop_exception(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        self._hit(*loop_error_line(context))

    def _hit(self, kind: str, text: str) -> None:
        self.counts[kind] += 1
        self._rlog.hit(kind, text)

    def _evicted(self, conn: Conn) -> None:
        self._hit(*conn.eviction_line())

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
            writer.transport.abort()  # every waiting place holds a peer that sent F1
            self._hit("limit:connections", f"limit hit: {self._limits.waiting} connections "
                      f"waiting for a slot; closed a new connection from {conn.peer} at once")
            return
        self._active.add(task)
        try:
            await self._converse(conn, reader, writer)
        except asyncio.CancelledError:
            pass  # evicted (logged by the gate) or stopping: closed without a response
        except LimitHit as hit:
            self._hit(hit.kind, f"{hit.text}; closed the connection from {conn.peer}")
        except _Closed as closed:
            self._hit("closed", f"connection from {conn.peer} closed {closed}")
        except (ConnectionError, OSError) as exc:
            self._hit("io", f"connection from {conn.peer} failed: {exc.strerror or exc}")
        finally:
            self._active.discard(task)
            self._gate.leave(conn)
            if not writer.is_closing():
                writer.transport.abort()

    async def _converse(self, conn: Conn, reader: asyncio.StreamReader,
                        writer: asyncio.StreamWriter) -> None:
        limits = self._limits
        start = asyncio.get_running_loop().time()
        decoder = frame.FrameDecoder()
        async with deadline(start + limits.connection, "limit:connection",
                            f"limit hit: connection open for {limits.connection:g} s"):
            async with deadline(start + limits.hello, "limit:hello",
                                f"limit hit: no complete F1 or A1 within {limits.hello:g} s"):
                payload = await self._frame(reader, decoder, FIRST_CAP, "F1 or A1")
            try:
                first = parse_first(payload)
            except MessageError as exc:
                raise LimitHit("protocol", f"protocol violation: {exc}") from None
            if isinstance(first, Push):
                await self._push(conn, first, decoder, reader, writer)
                return
            await self._request(conn, first, decoder, reader, writer)

    async def _request(self, conn: Conn, hello: Hello, decoder: frame.FrameDecoder,
                       reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """§5.2 steps 1 (after parsing) to 8: the requester's exchange."""
        loop = asyncio.get_running_loop()
        gate, limits = self._gate, self._limits
        assert gate is not None
        if decoder.buffered:
            raise LimitHit("protocol", "protocol violation: data after F1 before F2")
        if hello.version != VERSION:
            await self._refuse(writer, conn.peer, unsupported_version(hello.version))
            return
        if hello.bundle_hash != self._p.bundle_hash:
            await self._refuse(writer, conn.peer, DIFFERENT_BUNDLE)
            return
        if not gate.message1(conn):
            return
        async with deadline(loop.time() + limits.queue, "limit:queue",
                            f"limit hit: no attestation slot within {limits.queue:g} s"):
            await self._admitted(conn, reader, "F1 before F2")
        provider_nonce = self._random(NONCE_LENGTH)
        document = await self._attest(hello.nonce, provider_nonce, conn.peer)
        if document is None:
            return
        await self._send(writer, Challenge(provider_nonce, document).encode())
        if not gate.attested(conn):
            return
        async with deadline(loop.time() + limits.request, "limit:request",
                            f"limit hit: no complete F3 within {limits.request:g} s of F2"):
            payload = await self._frame(reader, decoder, REQUEST_CAP, "F3")
        if not gate.submitted(conn):
            return
        judged = await self._work.run(
            lambda: self._judge(payload, hello.nonce, provider_nonce))
        if isinstance(judged, MessageError):
            raise LimitHit("protocol", f"protocol violation: {judged}")
        if isinstance(judged, Denied):
            module = UNVERIFIED if judged.module_id is None else judged.module_id
            await self._refuse(writer, conn.peer, judged.reason, module)
            return
        allowed, answer = judged
        await self._send(writer, answer.encode())
        self._write(audit_forwarded(conn.peer, allowed))
        writer.close()

    async def _push(self, conn: Conn, push: Push, decoder: frame.FrameDecoder,
                    reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """§5.2a: admitted as an F1 is, judged and stored on a worker, answered with A2. The
        slot is held only while the push is judged (ATTESTING is never evicted)."""
        gate, limits = self._gate, self._limits
        assert gate is not None
        if decoder.buffered:
            raise LimitHit("protocol", "protocol violation: data after A1")
        if not gate.message1(conn):
            return
        loop = asyncio.get_running_loop()
        async with deadline(loop.time() + limits.queue, "limit:queue",
                            f"limit hit: no slot for a push within {limits.queue:g} s"):
            await self._admitted(conn, reader, "A1")
        outcome = await self._work.run(lambda: self.pushes.receive(push))
        await self._send(writer, outcome.answer.encode())
        self._pushlog.hit(push_kind(outcome), self.pushes.line(conn.peer, outcome))
        writer.close()

    def _judge(self, payload: bytes, requester_nonce: bytes, provider_nonce: bytes) -> _Judged:
        """§5.2 steps 3 (parse) to 8 (seal), on a worker thread."""
        try:
            request = parse_request(payload)
        except MessageError as exc:
            return exc
        p = self._p
        now_ms = int(self._clock() * 1000)
        decision = judge_request(request, anchor=p.anchor, now_ms=now_ms,
                                 provider_nonce=provider_nonce, bundle_hash=p.bundle_hash,
                                 own_pcrs=p.own_pcrs, holders=p.holders,
                                 threshold=p.threshold, excluded=p.excluded,
                                 stored=lambda pcrs: self.pushes.texts_for(pcrs, now_ms // 1000))
        if isinstance(decision, Denied):
            return decision
        try:
            public, sealed = seal_secret(p.secret, decision.requester_public,
                                         bundle_hash=p.bundle_hash,
                                         requester_nonce=requester_nonce,
                                         provider_nonce=provider_nonce)
        except ForwardingCryptoError:
            return Denied(UNUSABLE_KEY, decision.module_id, decision.pcrs)
        return decision, Forwarded(public, sealed)

    async def _frame(self, reader: asyncio.StreamReader, decoder: frame.FrameDecoder, cap: int,
                     what: str) -> bytes:
        """The next frame's payload; the length is checked from the header before the body is
        read, and no byte past the frame is read."""
        while True:
            try:
                payload = decoder.next_payload(cap)
                if payload is not None:
                    return payload
                needed = decoder.needed(cap)
            except frame.FrameTooLarge as exc:
                raise LimitHit("limit:size", f"limit hit: {what}: {exc}") from None
            except frame.FrameError as exc:
                raise LimitHit("protocol", f"protocol violation: {what}: {exc}") from None
            data = await reader.read(min(READ_SIZE, needed))
            if not data:
                raise _Closed(f"before {what} was complete")
            decoder.feed(data)

    async def _admitted(self, conn: Conn, reader: asyncio.StreamReader, after: str) -> None:
        """Wait for the gate while watching the peer: one that closes gives up its place at
        once instead of costing a document later; one that sends anything after its first
        frame (`after`: F1 before F2, or A1) broke the protocol."""
        read: asyncio.Future[bytes] = asyncio.ensure_future(reader.read(1))
        try:
            waiters: set[asyncio.Future[Any]] = {conn.admitted, read}
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            if read.done():
                if read.result():
                    raise LimitHit("protocol", f"protocol violation: data after {after}")
                raise _Closed("while waiting for a slot")
        finally:
            if not read.done():
                read.cancel()

    async def _attest(self, requester_nonce: bytes, provider_nonce: bytes,
                      peer: str) -> bytes | None:
        """§5.2 step 2; an NSM failure closes the connection without a response."""
        nsm = self._nsm
        user_data = provider_binding(self._p.bundle_hash, provider_nonce)
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self._nsm_executor,
                lambda: nsm.attest(user_data=user_data, nonce=requester_nonce))
        except Exception as exc:  # NsmError, or anything the NSM stack raises
            self._hit("nsm", f"NSM attestation failed: {exc}; closed the connection from "
                      f"{peer} without a response")
            return None

    async def _send(self, writer: asyncio.StreamWriter, payload: bytes) -> None:
        writer.write(frame.encode(payload))
        await writer.drain()

    async def _refuse(self, writer: asyncio.StreamWriter, peer: str, reason: str,
                      module: str = UNVERIFIED) -> None:
        """F4 `Refused`, the audit line (rate-limited per kind of reason), close."""
        self.counts["refused"] += 1
        self._refusals.hit(refusal_kind(reason),
                           REFUSED.format(peer=peer, module=_printable(module), reason=reason))
        await self._send(writer, Refused(reason).encode())
        writer.close()
