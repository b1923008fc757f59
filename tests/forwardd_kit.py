"""Helpers for the forwardd tests: a real provider process on 127.0.0.1, a scripted requester.

* `Providers`: starts `python -m locksmith forwardd` exactly as locksmithd does — the secret on
  an inherited pipe, a TCP socket bound on 127.0.0.1:0 (not listening) as `--listen-fd` — with
  stderr to a file; the port is the socket's. At teardown every process is killed, and no log
  may contain the secret (hex, either case, or raw).
* `Requester`: one connection speaking F1–F4 by hand, with its own simulated NSM (the same
  PCRs as the provider, or others: `enclave(sim, pcrs)`), so each step can be bent: another
  bundle or version in F1, a document with another nonce, root, binding or key in F3.
* `approvals(quorum, pcrs, holders)`: approval files signed now by those holders.
* `push(address, texts)`: one A1 (or any payload), the provider's A2 — or None if it closed.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from locksmith.core.attestation import verify as attestation
from locksmith.core.attestation.nsm_simulated import SimulatedNsm
from locksmith.core.forwarding.approval import PcrSet, Statement
from locksmith.core.forwarding.binding import (
    RequesterKey, provider_binding, requester_binding,
)
from locksmith.core.forwarding.messages import (
    ANSWER_CAP, CHALLENGE_CAP, STORED_CAP, Challenge, Forwarded, Hello, Push, Refused, Request,
    Stored, parse_answer, parse_challenge, parse_stored,
)
from locksmith.core.protocol import frame
from locksmith.core.protocol.holders import BundleHolders
from locksmith.personalities.forwardd.server import Forwardd, Limits, Provision
from tests.core.forwarding.approval_kit import signed
from tests.core.protocol_kit import Quorum
from tests.idle_peers import IdlePeers
from tests.locksmithd_kit import LoggedProcess, Sim, clean_env, v1_quorum, write_bundle

T = TypeVar("T")
PYTHON = sys.executable
LISTENING = re.compile(r"forwardd: forwarding provider listening on 127\.0\.0\.1:(\d+) "
                       r"\(bundle ([0-9a-f]{16}), PCR0 ([0-9a-f]{16})\)")
DAY = 86400

# Runs forwardd through the dispatcher, then prints every module the process loaded.
MODULES_BOOTSTRAP = (
    "import sys\n"
    "from locksmith.__main__ import run\n"
    "status = run(['forwardd', *sys.argv[1:]])\n"
    "print('\\n'.join(sorted(sys.modules)))\n"
    "sys.exit(status)\n"
)


def enclave(sim: Sim, pcrs: PcrSet | None = None) -> SimulatedNsm:
    """An enclave of the fleet: the simulated NSM's CA, its own PCRs or `pcrs`."""
    return SimulatedNsm.open(sim.directory, pcr_overrides=None if pcrs is None else
                             pcrs.as_pcrs())


def other_pcrs(tag: int) -> PcrSet:
    return PcrSet(bytes([tag]) * 48, bytes([tag + 1]) * 48, bytes([tag + 2]) * 48)


def approvals(quorum: Quorum, pcrs: PcrSet, holders: Sequence[int], bundle_hash: bytes,
              *, expires_in: int = DAY) -> tuple[str, ...]:
    now = int(time.time())
    statement = Statement(bundle_hash, pcrs, now + expires_in)
    return tuple(signed(quorum.holders[k].signing_key, statement, created=now) for k in holders)


def push(address: tuple[str, int], texts: Sequence[str] = (), *, payload: bytes | None = None,
         after: bytes = b"", timeout: float = 20.0) -> Stored | None:
    """Send A1 with `texts` (or the frame of `payload`, then `after`); the A2, or None when
    the provider closed without one."""
    data = frame.encode(Push(tuple(texts)).encode() if payload is None else payload) + after
    with socket.create_connection(address, timeout=timeout) as sock:
        try:
            sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            return None
        decoder = frame.FrameDecoder()
        while True:
            answer = decoder.next_payload(STORED_CAP)
            if answer is not None:
                return parse_stored(answer)
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, BrokenPipeError):
                chunk = b""
            if not chunk:
                return None
            decoder.feed(chunk)


# --- the provider process --------------------------------------------------------------------


@dataclass(frozen=True)
class Served:
    """What one test module's providers serve: a 2-of-3 V1 quorum, its bundle file and hash."""

    quorum: Quorum
    bundle: Path
    digest: bytes

    @classmethod
    def create(cls, sim: Sim, directory: Path) -> Served:
        bundle, quorum, digest = v1_quorum(sim, 2, 3)
        return cls(quorum, write_bundle(directory, bundle), digest)


@dataclass
class Provider(LoggedProcess):
    secret: bytes = field(default=b"", repr=False)

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signum)
        return self.process.wait(timeout=timeout)


@dataclass
class Providers:
    directory: Path
    started: list[Provider] = field(default_factory=list)

    def spawn(self, sim: Sim, bundle: Path, secret: bytes, *, extra: Sequence[str] = (),
              bootstrap: bool = False, nsm_dir: Path | None = None,
              options: Sequence[str] | None = None) -> Provider:
        """forwardd with `secret` on its pipe and a bound 127.0.0.1:0 socket; `options`
        replaces every option after the two descriptors."""
        n = len(self.started)
        log_path = self.directory / f"forwardd-{n}.log"
        stdout_path = self.directory / f"forwardd-{n}.out"
        bound = socket.socket()
        bound.bind(("127.0.0.1", 0))
        port = bound.getsockname()[1]
        read, write = os.pipe()
        os.write(write, secret)
        os.close(write)
        if options is None:
            options = ["--bundle", str(bundle), "--keymaker-pcr-policy", str(sim.policy),
                       "--nsm", "simulated", "--nsm-dir", str(nsm_dir or sim.directory),
                       "--trust-root", str(sim.root), *extra]
        entry = ["-c", MODULES_BOOTSTRAP] if bootstrap else ["-m", "locksmith", "forwardd"]
        argv = [PYTHON, *entry, "--secret-fd", str(read), "--listen-fd", str(bound.fileno()),
                *options]
        try:
            with open(log_path, "wb") as err, open(stdout_path, "wb") as out:
                process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                           stderr=err, pass_fds=(read, bound.fileno()),
                                           env=clean_env())
        finally:
            os.close(read)
            bound.close()
        provider = Provider(process, log_path, stdout_path, port, secret)
        self.started.append(provider)
        return provider

    def start(self, sim: Sim, bundle: Path, secret: bytes, *, extra: Sequence[str] = (),
              bootstrap: bool = False, timeout: float = 30.0) -> Provider:
        """A provider that logged its `listening` line."""
        provider = self.spawn(sim, bundle, secret, extra=extra, bootstrap=bootstrap)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if LISTENING.search(provider.log()):
                return provider
            if provider.process.poll() is not None:
                break
            time.sleep(0.02)
        raise AssertionError(f"forwardd did not start listening:\n{provider.log()}")

    def run(self, sim: Sim, bundle: Path, secret: bytes, *, extra: Sequence[str] = (),
            nsm_dir: Path | None = None,
            options: Sequence[str] | None = None) -> tuple[int, str]:
        """A provider expected to exit during startup: its status and log."""
        provider = self.spawn(sim, bundle, secret, extra=extra, nsm_dir=nsm_dir,
                              options=options)
        return provider.process.wait(timeout=30), provider.log()

    def cleanup(self) -> None:
        for provider in self.started:
            if provider.process.poll() is None:
                provider.process.kill()
            provider.process.wait(timeout=10)
            log = provider.log_path.read_bytes()
            for form in (provider.secret.hex().encode(), provider.secret.hex().upper().encode(),
                         provider.secret):
                assert len(form) < 16 or form not in log, "forwardd wrote the secret to its log"


def providers_in(directory: Path) -> Iterator[Providers]:
    pool = Providers(directory)
    try:
        yield pool
    finally:
        pool.cleanup()


# --- the scripted requester ------------------------------------------------------------------


class Requester:
    """One connection: `hello()` sends F1 and reads F2 (or F4); `request()` sends F3 and reads
    F4; `exchange()` does both and opens the secret."""

    def __init__(self, address: tuple[str, int], sim: Sim, bundle_hash: bytes, *,
                 nsm: SimulatedNsm | None = None, timeout: float = 20.0) -> None:
        self.sim = sim
        self.bundle_hash = bundle_hash
        self.nsm = nsm or sim.nsm
        self.sock = socket.create_connection(address, timeout=timeout)
        self.decoder = frame.FrameDecoder()
        self.nonce = os.urandom(32)
        self.key = RequesterKey.generate()
        self.challenge: Challenge | None = None
        self.provider: attestation.Attestation | None = None

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Requester:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def send(self, payload: bytes) -> None:
        self.sock.sendall(frame.encode(payload))

    def receive(self, cap: int) -> bytes | None:
        """The next frame's payload, or None when the provider closed first."""
        while True:
            payload = self.decoder.next_payload(cap)
            if payload is not None:
                return payload
            try:
                data = self.sock.recv(65536)
            except (ConnectionResetError, BrokenPipeError):
                data = b""
            if not data:
                return None
            self.decoder.feed(data)

    def hello(self, *, version: int = 1, bundle_hash: bytes | None = None) -> Challenge | Refused | None:
        """F1; the F2 (verified as a requester must, §6 step 4), a Refused, or None."""
        self.send(Hello(version, bundle_hash or self.bundle_hash, self.nonce).encode())
        payload = self.receive(max(CHALLENGE_CAP, ANSWER_CAP))
        if payload is None:
            return None
        if payload.startswith(b'{"Refused"'):
            answer = parse_answer(payload)
            assert isinstance(answer, Refused)
            return answer
        self.challenge = parse_challenge(payload)
        self.provider = attestation.verify(
            self.challenge.attestation, trust_root=self.sim.anchor, nonce=self.nonce,
            user_data=provider_binding(self.bundle_hash, self.challenge.nonce),
            now_ms=int(time.time() * 1000))
        return self.challenge

    def document(self, *, nonce: bytes | None = None, user_data: bytes | None = None,
                 public_key: bytes | None = None, nsm: SimulatedNsm | None = None,
                 keyless: bool = False) -> bytes:
        """Dr as an honest requester makes it, with any field replaced."""
        assert self.challenge is not None
        return (nsm or self.nsm).attest(
            nonce=self.challenge.nonce if nonce is None else nonce,
            user_data=requester_binding(self.bundle_hash) if user_data is None else user_data,
            public_key=None if keyless else (public_key or self.key.public_bytes()))

    def request(self, approvals: Sequence[str] = (), *,
                document: bytes | None = None) -> Forwarded | Refused | None:
        self.send(Request(document or self.document(), tuple(approvals)).encode())
        payload = self.receive(ANSWER_CAP)
        return None if payload is None else parse_answer(payload)

    def open(self, answer: Forwarded) -> bytearray:
        assert self.challenge is not None
        return self.key.open_secret(answer.public_key, answer.encrypted_secret,
                                    bundle_hash=self.bundle_hash, requester_nonce=self.nonce,
                                    provider_nonce=self.challenge.nonce)

    def exchange(self, approvals: Sequence[str] = ()) -> tuple[Forwarded | Refused | None,
                                                               bytearray | None]:
        challenge = self.hello()
        if not isinstance(challenge, Challenge):
            return challenge, None
        answer = self.request(approvals)
        return answer, self.open(answer) if isinstance(answer, Forwarded) else None

    def closed_within(self, seconds: float) -> float | None:
        """Seconds until the provider closed the connection, None if it did not."""
        start = time.monotonic()
        self.sock.settimeout(seconds)
        try:
            while True:
                try:
                    if not self.sock.recv(65536):
                        return time.monotonic() - start
                except (ConnectionResetError, BrokenPipeError):
                    return time.monotonic() - start
        except TimeoutError:
            return None


def pcr_set(pcrs: Mapping[int, bytes]) -> PcrSet:
    return PcrSet.from_pcrs(pcrs)


# --- hostile peers (the F1 finding, on 49505) ------------------------------------------------


class IdleRequesters(IdlePeers):
    """Idle peers of the forwarding port: each sends a valid F1 (`hello=True`) or nothing."""

    def __init__(self, address: tuple[str, int], bundle_hash: bytes, count: int, *,
                 hello: bool = True, reconnect: bool = True) -> None:
        def opening() -> bytes:
            if not hello:
                return b""
            return frame.encode(Hello(1, bundle_hash, os.urandom(32)).encode())
        super().__init__(address, count, opening=opening, reconnect=reconnect)


# --- forwardd in this process (deadlines shortened) ------------------------------------------


def serve_in_process(sim: Sim, quorum: Quorum, bundle_hash: bytes, limits: Limits,
                     body: Callable[[tuple[str, int], Forwardd], T]
                     ) -> tuple[T, list[str], Counter[str]]:
    """Serve `quorum`'s secret in this process with `limits` while `body(address, server)`
    runs in a thread (`server.phases()` tells where the connections are); then stop. Returns
    the body's result, the log lines and the server's counts."""
    assert quorum.threshold is not None
    provision = Provision(bytearray(quorum.secret), bundle_hash, PcrSet.from_pcrs(sim.pcrs),
                          BundleHolders.from_bundle(quorum.checked), quorum.threshold,
                          sim.anchor)
    lines: list[str] = []

    async def scenario() -> tuple[T, Counter[str]]:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(128)
        listener.setblocking(False)
        server = Forwardd(provision, nsm=sim.nsm, limits=limits, write=lines.append,
                          handle_signals=False)
        serving = asyncio.create_task(server.serve(listener))
        try:
            result = await asyncio.to_thread(body, listener.getsockname()[:2], server)
        finally:
            server.stop()
            await serving
        return result, server.counts

    result, counts = asyncio.run(scenario())
    return result, lines, counts
