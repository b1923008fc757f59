"""The shard-submission protocol on TCP 49504 (protocol.md), sans-IO, in the style of h11.

One connection carries one submission. Both ends are state machines that are fed bytes and
return events and bytes; the asyncio server and the CLI client only move bytes, keep time and
call the NSM. Read top to bottom:

    holder (HolderSession)                       enclave (EnclaveSession, one per connection)
    send_nonce()                  --- 1 --->     next_event() → NonceReceived(nonce, user_data)
                                                 [I/O: document = nsm.attest(user_data, nonce)]
                                  <--- 2 ---     send_attestation(document)
    next_event() → AttestationReceived
    [I/O: attestation.verify(...)]
    submit(attestation, share, …) --- 3 --->     next_event() → SubmissionReceived
                                                 open_submission(now)        (§7 steps 2–3)
                                                 (or: signed_submission() → identify off
                                                  the loop → finish_submission(holder))
                                                   → ShareSubmitted | ShareRejected
                                                 [I/O, under the round lock:
                                                  round.admit(request, holder)  (§8)]
                                  <--- 4 ---     send_verdict(result.verdict)
    next_event() → Accepted | Rejected | UnexpectedAnswer | ConnectionClosed

`next_event()` returns `NEED_DATA` when it needs bytes (`receive_data(b"")` signals EOF) and
`PAUSED` when it is our side's turn to act. A peer's protocol violation is the event
`ProtocolViolation(reason)` — close without a response; `reason` is a fixed text that is safe
to log — and calling a method in the wrong state is `LocalProtocolError`.

Codecs live in `messages`, holder identification in `holders`, the
collection round in `reconstitution`, the encryption of Q in `transport`. This module imports
no PGPy, typer, httpx or uvicorn: locksmithd's boot path loads it.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, TypeVar

from locksmith.core.openpgp.holder_signature import HolderSignatureError, sign_detached_text
from locksmith.core.openpgp.keys import SecretKey
from locksmith.core.protocol import frame, transport
from locksmith.core.protocol.holders import BundleHolders, IdentifiedHolder
from locksmith.core.protocol.messages import (
    MALFORMED_SHARE_REQUEST, MESSAGE1_CAP, MESSAGE3_CAP, Accepted, AttestationMessage,
    LocalProtocolError, NonceMessage, Rejected, RemoteProtocolError, ShareRequest,
    SignedPayload, SubmissionMessage, Verdict, parse_attestation, parse_nonce,
    parse_share_request, parse_signed_payload, parse_submission, parse_verdict,
    submission_bundle_hash,
)
from locksmith.core.protocol.reconstitution import (
    LOG_REJECTED, AdmitResult, BundleTampered, QuorumReached, ReconstitutionRound,
    RecoveryFailed, ShareAccepted, ShareRejected,
)

if TYPE_CHECKING:
    from locksmith.core.attestation.verify import Attestation

__all__ = [  # everything locksmithd and send-shard need, from one import
    "NEED_DATA", "PAUSED", "Accepted", "AdmitResult", "AttestationReceived", "BundleHolders",
    "BundleTampered", "ConnectionClosed", "EnclaveSession", "HolderSession",
    "LocalProtocolError", "NonceReceived", "ProtocolViolation", "QuorumReached",
    "ReconstitutionRound", "RecoveryFailed", "Rejected", "RemoteProtocolError", "ShareAccepted",
    "ShareRejected", "ShareSubmitted", "SignedSubmission", "Signer", "SubmissionReceived",
    "UnexpectedAnswer", "submission_bundle_hash",
]

LOG_SIGNATURE_FAILED = "holder signature verification failed: {category}"  # enclave.md §3.2
_M = TypeVar("_M")  # a parsed message type (`_next_message`)
NONCE_BYTES = 12  # the CLI's nonce: lowercase hex of 12 CSPRNG bytes (§3, §11 step 4)
_FRAME_OVERHEAD = frame.HEADER + frame.DIGEST

Signer = Callable[[bytes], bytes | str]
"""Makes the armored detached signature over P's bytes (protocol.md §6); a smart card fits."""


class _Sentinel(enum.Enum):
    NEED_DATA = "NEED_DATA"
    PAUSED = "PAUSED"


NEED_DATA: Literal[_Sentinel.NEED_DATA] = _Sentinel.NEED_DATA
PAUSED: Literal[_Sentinel.PAUSED] = _Sentinel.PAUSED


# --- events ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NonceReceived:
    """Message 1 was valid: attest with exactly these `user_data` (S) and `nonce` (§4)."""

    nonce: bytes  # the UTF-8 bytes of the nonce string as received
    user_data: bytes  # this connection's fresh X25519 public key S


@dataclass(frozen=True)
class SubmissionReceived:
    """Message 3 was well-formed: call `open_submission(now)`."""


@dataclass(frozen=True)
class SignedSubmission:
    """Message 3's signature and the bytes it must cover (P as UTF-8), for identification."""

    signature: str = field(repr=False)
    data: bytes = field(repr=False)


@dataclass(frozen=True)
class ShareSubmitted:
    """§7 steps 2–3 passed: hand `(request, holder)` to the round, then send its verdict."""

    holder: int
    fingerprint: str
    request: ShareRequest = field(repr=False)


@dataclass(frozen=True)
class AttestationReceived:
    """Message 2: verify `document` with `nonce` (the ASCII bytes of our nonce string)."""

    document: bytes = field(repr=False)
    nonce: bytes


@dataclass(frozen=True)
class UnexpectedAnswer:
    """Message 4 that is neither exactly one `Accepted` nor exactly one `Rejected`."""

    reason: str


@dataclass(frozen=True)
class ConnectionClosed:
    """The peer closed the connection before the message we were waiting for was complete."""


@dataclass(frozen=True)
class ProtocolViolation:
    """The peer broke the protocol: close without a response. `reason` is safe to log."""

    reason: str


class _State(enum.Enum):
    SEND_NONCE = "send nonce"  # holder only
    AWAIT_NONCE = "await nonce"
    ATTESTING = "attesting"
    AWAIT_ATTESTATION = "await attestation"
    READY_TO_SUBMIT = "ready to submit"
    AWAIT_SUBMISSION = "await submission"
    VERIFYING = "verifying"
    AWAIT_VERDICT = "await verdict"
    DONE = "done"
    CLOSED = "closed"


class _Framed:
    """Frame input shared by both ends: a decoder, EOF, and a bound on what is buffered."""

    def __init__(self, state: _State) -> None:
        self._state = state
        self._decoder = frame.FrameDecoder()
        self._eof = False
        self._overflow = False

    @property
    def state(self) -> str:
        return self._state.value

    @property
    def overflowed(self) -> bool:
        """The peer sent more than the protocol allows; the next event will say so."""
        return self._overflow

    def _buffer_limit(self) -> int:
        raise NotImplementedError

    def _ignoring_input(self) -> bool:
        return self._state in (_State.DONE, _State.CLOSED)

    def receive_data(self, data: bytes) -> None:
        """Bytes read from the peer; `b""` means the peer closed its side."""
        if self._ignoring_input():
            return
        if not data:
            self._eof = True
            return
        if self._overflow or self._decoder.buffered + len(data) > self._buffer_limit():
            # More than a well-behaved peer can have in flight: keep memory bounded, cut off.
            self._overflow = True
            return
        self._decoder.feed(data)

    def _next_payload(self, cap: int | None) -> bytes | ProtocolViolation | ConnectionClosed | None:
        if self._overflow:
            return self._close(ProtocolViolation("peer sent more data than the protocol allows"))
        try:
            payload = self._decoder.next_payload(cap)
        except frame.FrameError as exc:  # texts name only lengths, never content
            return self._close(ProtocolViolation(str(exc)))
        if payload is None and self._eof:
            return self._close(ConnectionClosed())
        return payload

    def _next_message(self, cap: int | None, parse: Callable[[bytes], _M]
                      ) -> _M | Literal[_Sentinel.NEED_DATA] | ProtocolViolation | ConnectionClosed:
        """The next complete message parsed by `parse`; a peer's mistake closes the session."""
        payload = self._next_payload(cap)
        if not isinstance(payload, bytes):
            return NEED_DATA if payload is None else payload
        try:
            return parse(payload)
        except RemoteProtocolError as exc:
            return self._close(ProtocolViolation(str(exc)))

    def _close(self, event: ProtocolViolation | ConnectionClosed) -> ProtocolViolation | ConnectionClosed:
        self._state = _State.CLOSED
        return event

    def _expect(self, *states: _State) -> None:
        if self._state not in states:
            raise LocalProtocolError(f"not allowed in state '{self._state.value}'")


# --- the enclave's end -------------------------------------------------------------------------

EnclaveEvent = (NonceReceived | SubmissionReceived | ConnectionClosed | ProtocolViolation
                | Literal[_Sentinel.NEED_DATA, _Sentinel.PAUSED])


class EnclaveSession(_Framed):
    """locksmithd's side of one connection (protocol.md §2–§7). Time limits are the I/O's."""

    def __init__(self, holders: BundleHolders, *,
                 random: transport.RandomSource | None = None) -> None:
        super().__init__(_State.AWAIT_NONCE)
        self._holders = holders
        self._random = random
        self._key: transport.EnclaveKey | None = None
        self._submission: SubmissionMessage | None = None
        self._pending: ShareRequest | None = None

    def _buffer_limit(self) -> int:
        limit = _FRAME_OVERHEAD + MESSAGE3_CAP
        return limit + _FRAME_OVERHEAD + MESSAGE1_CAP if self._state is _State.AWAIT_NONCE else limit

    def _ignoring_input(self) -> bool:
        """Anything a client sends after message 3 is ignored (§9)."""
        return self._state not in (_State.AWAIT_NONCE, _State.ATTESTING, _State.AWAIT_SUBMISSION)

    def next_event(self) -> EnclaveEvent:
        if self._state is _State.AWAIT_NONCE:
            return self._read_nonce()
        if self._state is _State.AWAIT_SUBMISSION:
            return self._read_submission()
        if self._state in (_State.ATTESTING, _State.VERIFYING, _State.AWAIT_VERDICT):
            return PAUSED
        raise LocalProtocolError(f"the session is {self._state.value}")

    def _read_nonce(self) -> EnclaveEvent:
        message = self._next_message(MESSAGE1_CAP, parse_nonce)
        if not isinstance(message, NonceMessage):
            return message
        self._key = transport.EnclaveKey.generate(self._random)  # fresh per connection (§4 1)
        self._state = _State.ATTESTING
        return NonceReceived(message.nonce_bytes, self._key.public_bytes)

    def send_attestation(self, document: bytes) -> bytes:
        """Message 2 with the NSM document (on NSM failure just close: no response, §4)."""
        self._expect(_State.ATTESTING)
        try:
            data = frame.encode(AttestationMessage(bytes(document)).encode())
        except frame.FrameTooLarge as exc:
            raise LocalProtocolError(str(exc)) from None
        self._state = _State.AWAIT_SUBMISSION
        return data

    def _read_submission(self) -> EnclaveEvent:
        message = self._next_message(MESSAGE3_CAP, parse_submission)  # §7 step 1
        if not isinstance(message, SubmissionMessage):
            return message
        self._submission = message
        self._state = _State.VERIFYING
        return SubmissionReceived()

    def open_submission(self, now: int) -> ShareSubmitted | ShareRejected:
        """§7 steps 2 and 3 at the enclave's time `now` (Unix seconds). Either result is then
        answered with `send_verdict`: a `ShareSubmitted` with the round's verdict, a
        `ShareRejected` directly. (A server that stages identification — screen, then scan
        off its event loop, holders — uses `signed_submission` and
        `finish_submission` instead; the outcome is the same.)"""
        signed = self.signed_submission()
        try:  # step 2: exactly one holder (texts and log categories: holder_signature)
            identified: IdentifiedHolder | HolderSignatureError = self._holders.identify(
                signed.signature, signed.data, now)
        except HolderSignatureError as exc:
            identified = exc
        return self.finish_submission(identified)

    def signed_submission(self) -> SignedSubmission:
        """What §7 step 2 identifies: the armored signature and the exact bytes of P."""
        self._expect(_State.VERIFYING)
        submission = self._submission
        assert submission is not None
        return SignedSubmission(submission.signature, submission.signed_payload.encode("utf-8"))

    def finish_submission(self, identified: IdentifiedHolder | HolderSignatureError
                          ) -> ShareSubmitted | ShareRejected:
        """§7 step 3 for the holder step 2 found (or step 2's refusal, answered as is)."""
        self._expect(_State.VERIFYING)
        submission, key = self._submission, self._key
        assert submission is not None and key is not None
        self._submission = None
        self._state = _State.AWAIT_VERDICT
        if isinstance(identified, HolderSignatureError):
            return ShareRejected(Rejected(identified.reason),
                                 (LOG_SIGNATURE_FAILED.format(category=identified.category),))
        try:  # step 3: P, X25519 + HKDF + AES-GCM, Q
            payload = parse_signed_payload(submission.signed_payload)
            request = parse_share_request(key.open(payload.public_key, payload.encrypted_payload))
        except (RemoteProtocolError, transport.TransportError):
            return ShareRejected(Rejected(MALFORMED_SHARE_REQUEST),
                                 (LOG_REJECTED.format(reason=MALFORMED_SHARE_REQUEST),))
        self._pending = request
        return ShareSubmitted(identified.index, identified.fingerprint, request)

    def send_verdict(self, verdict: Verdict) -> bytes:
        """Message 4; afterwards the server closes the connection (§3). Wipes the share."""
        self._expect(_State.AWAIT_VERDICT)
        if self._pending is not None:
            self._pending.wipe()
            self._pending = None
        self._state = _State.DONE
        return frame.encode(verdict.encode())


# --- the holder's end --------------------------------------------------------------------------

HolderEvent = (AttestationReceived | Accepted | Rejected | UnexpectedAnswer | ConnectionClosed
               | ProtocolViolation | Literal[_Sentinel.NEED_DATA, _Sentinel.PAUSED])


class HolderSession(_Framed):
    """`caution secret send-shard`'s side (protocol.md §11 steps 4–8). Everything that can fail
    locally (bundle, share, key unlock) is done by the caller before `send_nonce`."""

    def __init__(self, *, nonce: str | None = None,
                 random: transport.RandomSource | None = None) -> None:
        super().__init__(_State.SEND_NONCE)
        self._random = random
        draw = random if random is not None else os.urandom
        self.nonce = nonce if nonce is not None else bytes(draw(NONCE_BYTES)).hex()

    @property
    def nonce_bytes(self) -> bytes:
        """What the attestation's `nonce` must equal: the string's bytes (ASCII for hex)."""
        return self.nonce.encode("utf-8")

    def _buffer_limit(self) -> int:
        frames = 2 if self._state in (_State.SEND_NONCE, _State.AWAIT_ATTESTATION) else 1
        return frames * (frame.HEADER + frame.MAX_LENGTH)

    def send_nonce(self) -> bytes:
        """Message 1."""
        self._expect(_State.SEND_NONCE)
        self._state = _State.AWAIT_ATTESTATION
        return frame.encode(NonceMessage(self.nonce).encode())

    def next_event(self) -> HolderEvent:
        if self._state is _State.AWAIT_ATTESTATION:
            message = self._next_message(None, parse_attestation)
            if not isinstance(message, AttestationMessage):
                return message
            self._state = _State.READY_TO_SUBMIT
            return AttestationReceived(message.document, self.nonce_bytes)
        if self._state is _State.AWAIT_VERDICT:
            return self._read_verdict()
        if self._state in (_State.SEND_NONCE, _State.READY_TO_SUBMIT):
            return PAUSED
        raise LocalProtocolError(f"the session is {self._state.value}")

    def _read_verdict(self) -> HolderEvent:
        payload = self._next_payload(None)
        if isinstance(payload, ProtocolViolation):  # a broken frame is still an answer
            return UnexpectedAnswer(payload.reason)
        if not isinstance(payload, bytes):
            return NEED_DATA if payload is None else payload
        self._state = _State.DONE
        try:
            return parse_verdict(payload)
        except RemoteProtocolError as exc:
            return UnexpectedAnswer(str(exc))

    def submit(self, attestation: Attestation, *, share: bytes | bytearray, threshold: int,
               bundle_hash: bytes | None, sign: Signer | SecretKey,
               signed_at: int | None = None) -> bytes:
        """Message 3 (§11 step 6): Q sealed to the attested key S, P signed by the holder.

        `attestation` must be the result of verifying this session's document with
        `nonce_bytes` (checked again here). `bundle_hash` is None for v0 bundles (omitted from
        Q). `sign` is a `Signer` (e.g. a smart card) or a software `SecretKey`, which then needs
        `signed_at` (Unix seconds: core has no clock).
        """
        self._expect(_State.READY_TO_SUBMIT)
        if attestation.nonce != self.nonce_bytes:
            raise LocalProtocolError("the attestation was not verified with this session's nonce")
        enclave_public = attestation.user_data
        if enclave_public is None or len(enclave_public) != transport.KEY_LENGTH:
            raise LocalProtocolError("the attestation's user_data is not a 32-byte key")
        if len(share) != 33 or share[0] == 0:
            raise LocalProtocolError("a share is 33 bytes with a nonzero coordinate")
        if threshold < 1:
            raise LocalProtocolError("the threshold must be at least 1")
        request = ShareRequest(bytearray(share), threshold,
                               None if bundle_hash is None else bytes(bundle_hash).hex())
        try:
            sealed = transport.seal(enclave_public, request.encode(), random=self._random)
        except transport.TransportError as exc:
            raise RemoteProtocolError("the enclave's public key is unusable") from exc
        finally:
            request.wipe()
        signed_payload = SignedPayload(sealed.ciphertext, sealed.client_public).encode()
        armored = self._sign(sign, signed_payload.encode("utf-8"), signed_at)
        payload = SubmissionMessage(signed_payload, armored).encode()
        if len(payload) > MESSAGE3_CAP:
            raise LocalProtocolError(f"message 3 exceeds {MESSAGE3_CAP} bytes")
        self._state = _State.AWAIT_VERDICT
        return frame.encode(payload)

    @staticmethod
    def _sign(sign: Signer | SecretKey, data: bytes, signed_at: int | None) -> str:
        if isinstance(sign, SecretKey):
            if signed_at is None:
                raise LocalProtocolError("signing with a SecretKey needs signed_at")
            armored: bytes | str = sign_detached_text(sign, data, signed_at)
        else:
            armored = sign(data)
        return armored.decode("ascii") if isinstance(armored, bytes) else armored
