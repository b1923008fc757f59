"""A small in-test enclave for `send-shard`: a threaded server on 127.0.0.1 that drives the real
`EnclaveSession` and `ReconstitutionRound` with documents from the real simulated NSM.

It records what reached it per connection (message 1, message 3, the claimed threshold and
bundle hash), so tests can assert at the server that a refusing client sent nothing. A few
`Behaviour`s make it misbehave the ways a holder must survive: a document for another nonce, a
short `user_data`, no verdict, an answer that is no verdict, silence.
"""

from __future__ import annotations

import enum
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from locksmith.core.attestation.nsm import Nsm
from locksmith.core.bundle.checks import CheckedBundle
from locksmith.core.protocol import frame
from locksmith.core.protocol.session import (
    NEED_DATA, BundleHolders, EnclaveSession, NonceReceived, ReconstitutionRound, ShareRejected,
    SubmissionReceived,
)


class Behaviour(enum.Enum):
    HONEST = "honest"
    WRONG_NONCE = "wrong nonce"  # attests a different nonce than the holder sent
    SHORT_USER_DATA = "short user_data"  # a 16-byte key instead of 32
    NO_VERDICT = "no verdict"  # closes after message 3
    UNEXPECTED = "unexpected"  # answers with something that is neither Accepted nor Rejected
    SILENT = "silent"  # never answers message 3


@dataclass
class Seen:
    """What one connection delivered to the enclave."""

    nonce: bytes | None = None
    submitted: bool = False  # message 3 arrived
    holder: int | None = None
    threshold: int | None = None
    bundle_hash: str | None = None


@dataclass
class FakeEnclave:
    checked: CheckedBundle
    nsm: Nsm
    behaviour: Behaviour = Behaviour.HONEST
    port: int = 0
    seen: list[Seen] = field(default_factory=list)
    _listener: socket.socket | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.round = ReconstitutionRound.from_bundle(self.checked)
        self.holders = BundleHolders.from_bundle(self.checked)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def submissions(self) -> int:
        return sum(s.submitted for s in self.seen)

    def start(self) -> None:
        listener = socket.create_server(("127.0.0.1", 0))
        listener.settimeout(0.2)
        self._listener, self.port = listener, listener.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
        if self._listener is not None:
            self._listener.close()

    def _serve(self) -> None:
        assert self._listener is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return
            seen = Seen()
            self.seen.append(seen)
            threading.Thread(target=self._handle, args=(conn, seen), daemon=True).start()

    def _handle(self, conn: socket.socket, seen: Seen) -> None:
        session = EnclaveSession(self.holders)
        with conn:
            conn.settimeout(30)
            while not self._stop.is_set():
                event = session.next_event()
                if event is NEED_DATA:
                    try:
                        session.receive_data(conn.recv(65536))
                    except OSError:
                        return
                elif isinstance(event, NonceReceived):
                    seen.nonce = event.nonce
                    conn.sendall(session.send_attestation(self._document(event)))
                elif isinstance(event, SubmissionReceived):
                    seen.submitted = True
                    self._answer(conn, session, seen)
                    return
                else:  # ConnectionClosed, ProtocolViolation
                    return

    def _document(self, event: NonceReceived) -> bytes:
        nonce, user_data = event.nonce, event.user_data
        if self.behaviour is Behaviour.WRONG_NONCE:
            nonce = b"0" * len(nonce)
        if self.behaviour is Behaviour.SHORT_USER_DATA:
            user_data = user_data[:16]
        return self.nsm.attest(user_data=user_data, nonce=nonce)

    def _answer(self, conn: socket.socket, session: EnclaveSession, seen: Seen) -> None:
        if self.behaviour is Behaviour.NO_VERDICT:
            return
        if self.behaviour is Behaviour.SILENT:
            try:
                while not self._stop.is_set() and conn.recv(1):
                    pass
            except OSError:
                pass
            return
        if self.behaviour is Behaviour.UNEXPECTED:
            conn.sendall(frame.encode(b'{"Accepted":{"remaining":1},"Rejected":{"reason":"x"}}'))
            return
        opened = session.open_submission(int(time.time()))
        if isinstance(opened, ShareRejected):
            conn.sendall(session.send_verdict(opened.verdict))
            return
        seen.holder = opened.holder
        seen.threshold = opened.request.threshold
        seen.bundle_hash = opened.request.bundle_hash
        with self._lock:  # protocol.md §8: one submission at a time
            result = self.round.admit(opened.request, opened.holder)
        conn.sendall(session.send_verdict(result.verdict))


@contextmanager
def running(checked: CheckedBundle, nsm: Nsm,
            behaviour: Behaviour = Behaviour.HONEST) -> Iterator[FakeEnclave]:
    enclave = FakeEnclave(checked, nsm, behaviour)
    enclave.start()
    try:
        yield enclave
    finally:
        enclave.stop()
