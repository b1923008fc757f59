"""The holder's side of one 49504 connection (protocol.md §11 steps 4–8) over a blocking socket.

The protocol itself is `core.protocol.HolderSession`; this module only moves bytes, keeps the
three deadlines (connect 10 s, attestation 30 s, verdict `--timeout`) and verifies the document
with the current time. Everything that can fail locally was done before `send_share` is called,
so a slow passphrase or PIN never meets the server's deadlines.

Nothing is sent after message 1 unless the document verified: every refusal closes the socket
with message 3 unsent. Texts that come from the enclave (`module_id`, a rejection reason) reach
the terminal only through `ui`, which escapes control characters: a hostile peer cannot write
to the terminal.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Mapping

from locksmith.core.attestation import verify as attestation
from locksmith.core.attestation.verify import (
    AttestationError, CertificateChainError, DebugEnclaveError, TrustAnchor,
)
from locksmith.core.bundle.own_share import CheckedShare
from locksmith.core.openpgp.keys import SecretKey
from locksmith.core.protocol.session import (
    NEED_DATA, Accepted, AttestationReceived, ConnectionClosed, HolderEvent, HolderSession,
    ProtocolViolation, Rejected, RemoteProtocolError, Signer, UnexpectedAnswer,
)
from locksmith.core.protocol.transport import KEY_LENGTH
from locksmith.personalities.caution import ui
from locksmith.personalities.caution.attestation import development_root_hint
from locksmith.personalities.caution.ui import CliError

DEFAULT_PORT = 49504
CONNECT_TIMEOUT = 10  # seconds, fixed (cli.md §5)
ATTESTATION_TIMEOUT = 30  # seconds, fixed
DEFAULT_VERDICT_TIMEOUT = 120

DEBUG_HINT = "; pass --allow-debug-enclave for development"
NO_VERDICT = "the enclave closed the connection without a verdict; the shard was not accepted"
UNEXPECTED = "unexpected answer from the enclave"
VERDICT_TIMEOUT = ("no answer from the enclave within {seconds} s; the shard may or may not "
                   "have been counted")
NO_ATTESTATION = "no attestation from the enclave within {seconds} s; nothing was sent"
CLOSED_BEFORE_ATTESTATION = ("the enclave closed the connection before sending its "
                             "attestation; nothing was sent")
NOT_THE_PROTOCOL = ("{address} did not speak the shard protocol; is it the enclave's locksmithd "
                    "port (49504)? Nothing was sent")
HTTP_ANSWER = "it answered like an HTTP server"
_RECV = 65536


@dataclass(frozen=True)
class Address:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_address(text: str) -> Address:
    """`host`, `host:port`, `[v6]`, `[v6]:port`; a bare IPv6 literal is all host. ValueError
    says what is wrong."""
    host, port = text, ""
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or (text[end + 1:] and not text[end + 1:].startswith(":")):
            raise ValueError("expected [IPV6]:PORT")
        host, port = text[1:end], text[end + 2:]
        if text[end + 1:] == ":":
            raise ValueError("missing port after ':'")
    elif text.count(":") == 1:
        host, port = text.split(":")
        if not port:
            raise ValueError("missing port after ':'")
    if not host or any(c.isspace() for c in host):
        raise ValueError("missing or invalid host")
    if not port:
        return Address(host, DEFAULT_PORT)
    if not port.isascii() or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"invalid port '{port}' (expected 1..65535)")
    return Address(host, int(port))


@dataclass(frozen=True)
class Expectations:
    """What the live document must show (attestation.md §3 with the holder's inputs)."""

    pcrs: Mapping[int, bytes]
    trust_root: TrustAnchor | None  # None: the AWS Nitro root
    allow_debug: bool


@dataclass(frozen=True)
class Submission:
    share: CheckedShare = field(repr=False)
    bundle_hash: bytes | None  # None for v0 bundles: omitted from Q
    sign: Signer | SecretKey = field(repr=False)


class _Timeout(Exception):
    pass


class _Connection:
    """A connected socket and the session it feeds, with one deadline at a time."""

    def __init__(self, sock: socket.socket, session: HolderSession) -> None:
        self.sock = sock
        self.session = session
        self.first_bytes = b""  # what the peer said first: tells an HTTP server from an enclave

    def send(self, data: bytes, seconds: float) -> None:
        self.sock.settimeout(seconds)
        self.sock.sendall(data)

    def next_event(self, seconds: float) -> HolderEvent:
        deadline = time.monotonic() + seconds
        while (event := self.session.next_event()) is NEED_DATA:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _Timeout()
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(_RECV)
            except (socket.timeout, TimeoutError):
                raise _Timeout() from None
            except OSError:  # reset by the peer: as good as closed
                data = b""
            if len(self.first_bytes) < 8:
                self.first_bytes += data[:8 - len(self.first_bytes)]
            self.session.receive_data(data)
        return event


def _reason(exc: OSError) -> str:
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "timed out"
    return exc.strerror or str(exc)  # e.g. "Connection refused", "Name or service not known"


def _verify(event: AttestationReceived, expect: Expectations,
            clock: Callable[[], float]) -> attestation.Attestation:
    """§11 step 5: at the current time, our nonce, the expected PCRs, a 32-byte user_data."""
    try:
        verified = attestation.verify(
            event.document, trust_root=expect.trust_root, now_ms=int(clock() * 1000),
            pcrs=expect.pcrs, nonce=event.nonce, user_data_length=KEY_LENGTH,
            allow_debug=expect.allow_debug)
    except AttestationError as exc:
        hint = DEBUG_HINT if isinstance(exc, DebugEnclaveError) else ""
        causes = (development_root_hint(event.document, expect.trust_root is not None)
                  if isinstance(exc, CertificateChainError) else [])
        raise CliError(f"Enclave attestation rejected: {exc.reason}{hint}", causes) from None
    return verified


def send_share(address: Address, submission: Submission, expect: Expectations, *,
               verdict_timeout: int = DEFAULT_VERDICT_TIMEOUT,
               clock: Callable[[], float] = time.time) -> int:
    """Steps 4–8; returns `remaining` of an `Accepted` verdict, raises `CliError` otherwise."""
    ui.info(f"Sending shard to enclave at {address}...")
    try:
        sock = socket.create_connection((address.host, address.port), timeout=CONNECT_TIMEOUT)
    except OSError as exc:
        raise CliError(f"Failed to connect to {address}: {_reason(exc)}") from None
    with sock:
        conn = _Connection(sock, HolderSession())
        try:
            return _exchange(conn, address, submission, expect, verdict_timeout, clock)
        except OSError as exc:  # a send failed: the connection is gone
            raise CliError(f"connection to {address} failed: {_reason(exc)}") from None


def _exchange(conn: _Connection, address: Address, submission: Submission,
              expect: Expectations, verdict_timeout: int, clock: Callable[[], float]) -> int:
    started = time.monotonic()
    conn.send(conn.session.send_nonce(), ATTESTATION_TIMEOUT)
    try:
        event = conn.next_event(ATTESTATION_TIMEOUT - (time.monotonic() - started))
    except _Timeout:
        raise CliError(NO_ATTESTATION.format(seconds=ATTESTATION_TIMEOUT)) from None
    if isinstance(event, ConnectionClosed):
        raise CliError(CLOSED_BEFORE_ATTESTATION)
    if isinstance(event, ProtocolViolation):  # message 2 is not a frame we can read
        http = [HTTP_ANSWER] if conn.first_bytes.startswith(b"HTTP/") else []
        raise CliError(NOT_THE_PROTOCOL.format(address=address), [*http, event.reason])
    assert isinstance(event, AttestationReceived), event
    verified = _verify(event, expect, clock)
    if verified.is_debug:
        ui.warn("the enclave is a debug-mode enclave (all-zero PCRs), accepted because of "
                "--allow-debug-enclave")
    ui.info(f"Enclave attestation verified (module {verified.module_id})")

    try:
        message3 = conn.session.submit(
            verified, share=submission.share.share, threshold=submission.share.threshold,
            bundle_hash=submission.bundle_hash, sign=submission.sign, signed_at=int(clock()))
    except RemoteProtocolError as exc:  # e.g. a low-order enclave key: nothing was sent
        raise CliError(f"Enclave attestation rejected: {exc}") from None
    conn.send(message3, ATTESTATION_TIMEOUT)
    ui.info("Shard sent, waiting for the enclave's answer")

    try:
        verdict = conn.next_event(verdict_timeout)
    except _Timeout:
        raise CliError(VERDICT_TIMEOUT.format(seconds=verdict_timeout)) from None
    if isinstance(verdict, Accepted):
        return verdict.remaining
    if isinstance(verdict, Rejected):
        raise CliError(f"Shard rejected by enclave: {verdict.reason}")
    if isinstance(verdict, UnexpectedAnswer):
        ui.verbose(f"answer not understood: {verdict.reason}")
        raise CliError(UNEXPECTED)
    raise CliError(NO_VERDICT)
