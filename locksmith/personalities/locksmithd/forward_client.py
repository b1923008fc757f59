"""locksmithd as a key-forwarding requester (docs/forwarding.md §6): ask providers for the secret
while the holders are served on 49504; the first of {quorum, forwarded secret} wins.

One task per provider address runs beside the 49504 listener (`Locksmithd.serve`'s companion):

    connect (5 s) → F1 {version, H, Nr} → F2 (30 s) → check Dp (`core.forwarding.requester`)
    → own attestation Dr (nonce Np, public_key R, user_data UR(H)) on the shared NSM thread
    → F3 {Dr, approvals} → F4 (30 s) → Forwarded: open + recovered-key check → `deliver`

A failure is logged and retried after 1, 2, 4, 8, then every 15 s; a `Refused` is retried
every 15 s (approvals change only by a push to the provider or a redeploy, neither of which
the requester sees). A provider whose secret fails the recovered-key check is not asked again
during this boot; one whose secret reveals a foreign subkey in the bundle ends the boot
(exit 1), as the round would. A matching secret ends the
collection through `Locksmithd.deliver`: the listener and every holder connection close
without a response and the round's shares are wiped; if the holders won first, the secret is
wiped here. The server's end cancels every task.

The checks run on a worker thread of their own (certificate chains, X25519, key derivation),
never on the event loop the holders are served from. Every line is built from fixed phrases,
addresses, module ids and PCR prefixes, never from the secret or key material; lines a provider
can cause at will go through `RateLimitedLog`.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from locksmith.core.attestation.verify import TrustAnchor
from locksmith.core.forwarding.binding import RequesterKey, requester_binding
from locksmith.core.forwarding.messages import (
    ANSWER_CAP, CHALLENGE_CAP, VERSION, Challenge, Forwarded, Hello, MessageError, Refused,
    Request, parse_answer, parse_challenge,
)
from locksmith.core.forwarding.requester import (
    BundleAltered, ProviderRejected, ProviderVerified, ReceivedSecret, SecretMismatch,
    SecretReceived, SecretUnreadable, check_provider, receive_secret,
)
from locksmith.core.openpgp.certs import Certificate
from locksmith.core.protocol import frame
from locksmith.personalities.locksmithd.logsink import RateLimitedLog, log
from locksmith.personalities.locksmithd.options import ListenAddress
from locksmith.personalities.locksmithd.server import Locksmithd, Tampered, Unlocked

__all__ = ["ForwardClient", "Requester", "Timing"]

T = TypeVar("T")

MAX_REASON = 300  # characters of a provider's refusal text that reach the log
LOG_FAILED = "forwarding from {addr} failed: {reason}; retrying in {delay:g} s"
LOG_PROVIDER_REJECTED = "forwarding from {addr} refused the provider: {reason}"
LOG_REFUSED = "forwarding from {addr} refused: {reason}"
LOG_UNREADABLE = "forwarding from {addr} sent an unreadable secret"
LOG_MISMATCH = ("forwarding from {addr} (module {module}) served a secret that does not match "
                "the bundle; ignoring this provider")
LOG_ALTERED = ("forwarding from {addr} (module {module}): bundle public key carries a subkey "
               "not derived from the received secret")
LOG_RECEIVED = ("received the secret from {addr} (module {module}, PCR0 {pcr0}…, PCR1 {pcr1}…, "
                "PCR2 {pcr2}…)")
LOG_ASKING = ("asking {n} forwarding provider(s) for the secret: {addrs} ({approvals} "
              "approval(s) to present)")


@dataclass(frozen=True)
class Requester:
    """What the requester tasks need, resolved at startup."""

    providers: tuple[ListenAddress, ...]
    bundle_hash: bytes  # H
    public_key: Certificate  # the bundle's quorum key: the recovered-key check's reference
    anchor: TrustAnchor  # the peer trust anchor (§2.1)
    approvals: tuple[str, ...]  # already chosen by `approvals_to_present`


@dataclass(frozen=True)
class Timing:
    """§6's numbers (tests shorten them)."""

    connect: float = 5.0
    answer: float = 30.0  # F2 and F4 each
    backoff: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 15.0)  # the last one repeats
    after_refusal: float = 15.0


class _Retry(Exception):
    """This attempt is over; log `line` (rate-limited under `kind`) and try again later."""

    def __init__(self, kind: str, line: str, *, refused: bool = False,
                 with_delay: bool = False) -> None:
        super().__init__(line)
        self.kind = kind
        self.line = line
        self.refused = refused
        self.with_delay = with_delay  # the line ends in `retrying in <s> s`


class _Stop(Exception):
    """Stop asking this provider (it served a wrong secret, or the collection is over)."""


def _os_reason(exc: OSError) -> str:
    """The system's text for the error (asyncio's connect errors carry their own wording,
    `Connect call failed (...)`, in `strerror`)."""
    return os.strerror(exc.errno) if exc.errno else str(exc)


def _wipe_unread(job: Future[ReceivedSecret]) -> None:
    """A secret opened for a task that was cancelled meanwhile is wiped, not dropped."""
    if not job.cancelled() and job.exception() is None:
        result = job.result()
        if isinstance(result, SecretReceived):
            result.secret[:] = bytes(len(result.secret))


def _quoted(reason: str) -> str:
    """A provider's refusal text as one bounded log line: it comes from the peer, so control
    characters (a line break could forge a log line) are escaped and the length is capped."""
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in reason)
    return text if len(text) <= MAX_REASON else text[:MAX_REASON] + "…"


def _hex16(value: bytes) -> str:
    return value.hex()[:16]


class ForwardClient:
    """`await ForwardClient(requester, server).run()` — runs until cancelled or every provider
    was given up; ends the collection through `server.deliver` at most once."""

    def __init__(self, requester: Requester, server: Locksmithd, *, timing: Timing = Timing(),
                 clock: Callable[[], float] = time.time,
                 random: Callable[[int], bytes] = os.urandom) -> None:
        self._req = requester
        self._server = server
        self._timing = timing
        self._clock = clock
        self._random = random
        self._rlog = RateLimitedLog()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="forward")

    async def run(self) -> None:
        req = self._req
        log(LOG_ASKING.format(n=len(req.providers),
                              addrs=", ".join(str(a) for a in req.providers),
                              approvals=len(req.approvals)))
        try:
            await asyncio.gather(*(self._ask(address) for address in req.providers))
        finally:
            self._rlog.flush()
            self._executor.shutdown(wait=False, cancel_futures=True)

    # --- one provider ----------------------------------------------------------------------

    async def _ask(self, address: ListenAddress) -> None:
        failures = 0
        while True:
            try:
                await self._exchange(address)
                return  # delivered, or the collection ended: nothing more to ask
            except _Stop:
                return
            except _Retry as caught:
                retry = caught
            except Exception as exc:  # a bug here must not silently end the requester
                retry = _Retry("internal", f"internal error: {type(exc).__name__}: {exc}"[:300],
                               with_delay=True)
            if retry.refused:
                delay = self._timing.after_refusal
            else:
                backoff = self._timing.backoff
                delay = backoff[min(failures, len(backoff) - 1)]
                failures += 1
            line = retry.line
            if retry.with_delay:
                line = LOG_FAILED.format(addr=address, reason=retry.line, delay=delay)
            self._rlog.hit(f"{address}:{retry.kind}", line)
            await asyncio.sleep(delay)

    async def _exchange(self, address: ListenAddress) -> None:
        """One connection, F1 to F4. Raises `_Retry` or `_Stop`; returns after a delivery."""
        timing = self._timing
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(address.host, address.port), timing.connect)
        except TimeoutError:
            raise _Retry("connect", f"no connection within {timing.connect:g} s",
                         with_delay=True) from None
        except OSError as exc:
            raise _Retry("connect", _os_reason(exc), with_delay=True) from None
        try:
            return await self._converse(address, reader, writer)
        except OSError as exc:
            raise _Retry("io", _os_reason(exc), with_delay=True) from None
        except MessageError as exc:  # fixed texts, never a piece of the input
            raise _Retry("message", str(exc), with_delay=True) from None
        finally:
            writer.transport.abort()

    async def _converse(self, address: ListenAddress, reader: asyncio.StreamReader,
                        writer: asyncio.StreamWriter) -> None:
        req = self._req
        requester_nonce = self._random(32)
        writer.write(frame.encode(Hello(VERSION, req.bundle_hash, requester_nonce).encode()))
        await writer.drain()
        challenge = self._challenge_or_refusal(address,
                                               await self._read(reader, CHALLENGE_CAP, "F2"))
        now_ms = int(self._clock() * 1000)
        try:
            provider = await self._off_loop(lambda: check_provider(
                challenge, anchor=req.anchor, now_ms=now_ms, requester_nonce=requester_nonce,
                bundle_hash=req.bundle_hash))
        except ProviderRejected as exc:
            raise _Retry("provider", LOG_PROVIDER_REJECTED.format(addr=address,
                                                                  reason=exc)) from None
        key = RequesterKey.generate()
        document = await self._attest(challenge, key)
        writer.write(frame.encode(Request(document, req.approvals).encode()))
        await writer.drain()
        answer = parse_answer(await self._read(reader, ANSWER_CAP, "F4"))
        if isinstance(answer, Refused):
            reason = _quoted(answer.reason)
            raise _Retry(f"refused:{reason}", LOG_REFUSED.format(addr=address, reason=reason),
                         refused=True)
        self._receive(address, provider,
                      await self._open(key, answer, requester_nonce, challenge.nonce))

    @staticmethod
    def _challenge_or_refusal(address: ListenAddress, payload: bytes) -> Challenge:
        """F2, or an early F4 `Refused` (§5.2 step 1: another version or bundle)."""
        try:
            return parse_challenge(payload)
        except MessageError as not_f2:
            try:
                answer = parse_answer(payload)
            except MessageError:
                raise not_f2 from None
            if isinstance(answer, Forwarded):
                raise MessageError("F2 expected, got an F4 Forwarded") from None
            reason = _quoted(answer.reason)
            raise _Retry(f"refused:{reason}", LOG_REFUSED.format(addr=address, reason=reason),
                         refused=True) from None

    async def _attest(self, challenge: Challenge, key: RequesterKey) -> bytes:
        user_data = requester_binding(self._req.bundle_hash)
        public = key.public_bytes()
        try:
            return await self._server.with_nsm(
                lambda nsm: nsm.attest(user_data=user_data, nonce=challenge.nonce,
                                       public_key=public))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # NsmError, or anything the NSM stack raises
            raise _Retry("nsm", f"NSM attestation failed: {exc}", with_delay=True) from None

    async def _open(self, key: RequesterKey, answer: Forwarded, requester_nonce: bytes,
                    provider_nonce: bytes) -> ReceivedSecret:
        req = self._req
        job = self._executor.submit(lambda: receive_secret(
            key, answer, bundle_hash=req.bundle_hash, requester_nonce=requester_nonce,
            provider_nonce=provider_nonce, public_key=req.public_key))
        try:
            return await asyncio.wrap_future(job)
        except asyncio.CancelledError:  # the round ended meanwhile: nobody will use it
            job.add_done_callback(_wipe_unread)
            raise

    def _receive(self, address: ListenAddress, provider: ProviderVerified,
                 result: ReceivedSecret) -> None:
        """Step 7's outcomes; returns only after the secret was handed over (or wiped)."""
        if isinstance(result, SecretUnreadable):
            raise _Retry("unreadable", LOG_UNREADABLE.format(addr=address))
        if isinstance(result, SecretMismatch):
            log(LOG_MISMATCH.format(addr=address, module=_quoted(provider.module_id)))
            raise _Stop()
        if isinstance(result, BundleAltered):
            log(LOG_ALTERED.format(addr=address, module=_quoted(provider.module_id)))
            self._server.deliver(Tampered())
            raise _Stop()
        secret = result.secret
        if not self._server.deliver(Unlocked(secret)):  # the holders were first
            secret[:] = bytes(len(secret))
            raise _Stop()
        pcrs = provider.pcrs
        log(LOG_RECEIVED.format(addr=address, module=_quoted(provider.module_id),
                                pcr0=_hex16(pcrs.pcr0), pcr1=_hex16(pcrs.pcr1),
                                pcr2=_hex16(pcrs.pcr2)))

    # --- bytes and threads -----------------------------------------------------------------

    async def _read(self, reader: asyncio.StreamReader, cap: int, what: str) -> bytes:
        """One frame within the answer timeout, its length checked from the header first."""
        timing = self._timing
        try:
            async with asyncio.timeout(timing.answer):
                header = await reader.readexactly(frame.HEADER)
                length = int.from_bytes(header, "big")
                frame.check_length(length, cap)
                body = await reader.readexactly(length)
        except TimeoutError:
            raise _Retry("timeout", f"no {what} within {timing.answer:g} s",
                         with_delay=True) from None
        except asyncio.IncompleteReadError:
            raise _Retry("closed", f"the provider closed the connection before {what}",
                         with_delay=True) from None
        except frame.FrameError as exc:
            raise _Retry("frame", f"{what}: {exc}", with_delay=True) from None
        decoder = frame.FrameDecoder()
        decoder.feed(header + body)
        try:
            payload = decoder.next_payload(cap)
        except frame.FrameError as exc:
            raise _Retry("frame", f"{what}: {exc}", with_delay=True) from None
        assert payload is not None
        return payload

    async def _off_loop(self, call: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

