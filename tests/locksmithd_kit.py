"""Helpers for the locksmithd tests: real daemons on 127.0.0.1, a holder client over a socket.

* `Sim`: a simulated NSM directory made once per module — `root.pem` is the trust root the
  client verifies documents with, `trusted_hashes.json` its expected PCRs, and its NSM signs
  the Keymaker proofs of the V1 bundles made here.
* `Daemons`: starts `python -m locksmith locksmithd ... --listen 127.0.0.1:0` (the daemon binds
  an ephemeral port and reports it in its `listening on 127.0.0.1:<port>` line, which is how
  the tests find it), stderr to a file; kills every daemon and every keyforkd it started
  (keyforkd's pid is in locksmithd's last log line) at teardown.
* `Client`: one connection driven by `core.protocol.HolderSession`, verifying the attestation
  as `send-shard` does; `submit_raw` builds message 3 by hand for the cases a well-behaved
  session refuses to produce (tampered ciphertext, a malformed share).
* `HostilePeers`: N keyless peers on one thread that send message 1, read whatever comes and
  idle; a peer whose connection the server cuts reconnects at once (finding F1's attacker).

Holders and bundles come from `tests.core.protocol_kit` (the reference fixture and quorums
from `generate_quorum` over `generate_holder_key` keys).
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
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from locksmith.core.attestation import verify as attestation
from locksmith.core.attestation.nsm_simulated import SimulatedNsm
from locksmith.core.attestation.pcr_policy import TrustedHashes
from locksmith.core.attestation.verify import Attestation, TrustAnchor
from locksmith.core.bundle.model import Bundle, BundleV1
from locksmith.core.canonical_cbor import bundle_hash, proof_nonce
from locksmith.core.openpgp.holder_signature import sign_detached_text
from locksmith.core.openpgp.keys import SecretKey
from locksmith.core.protocol import frame, transport
from locksmith.core.protocol.messages import (
    ShareRequest, SignedPayload, SubmissionMessage, Verdict, parse_verdict,
    submission_bundle_hash,
)
from locksmith.core.protocol.session import (
    NEED_DATA, Accepted, AttestationReceived, BundleHolders, ConnectionClosed, HolderSession,
    ReconstitutionRound, Rejected,
)
from locksmith.personalities.locksmithd.options import ListenAddress
from locksmith.personalities.locksmithd.server import Limits, Locksmithd, Outcome, Unlocked
from locksmith.personalities.locksmithd.startup import bind
from tests.idle_peers import IdlePeers
from tests.core.protocol_kit import Holder, Quorum, generated_quorum
from tests.keyforkd_util import kill_pid, process_gone

T = TypeVar("T")

PYTHON = sys.executable
LISTENING = re.compile(r"locksmithd: listening on 127\.0\.0\.1:(\d+) ")
KEYFORKD_READY = re.compile(r"keyforkd is ready at (\S+) \(pid (\d+)\)")
STRIPPED_ENV = ("LOCKSMITH_BUNDLE", "LOCKSMITH_KEYMAKER_PCR_POLICY", "LOCKSMITHD_LISTEN_ADDR",
                "LOCKSMITH_NSM", "LOCKSMITH_NSM_DIR", "KEYFORKD_SOCKET_PATH", "XDG_RUNTIME_DIR")

# Runs locksmithd through the dispatcher exactly as `python -m locksmith locksmithd` does, then
# prints the names of every module the process loaded (the boot-path import rule).
MODULES_BOOTSTRAP = (
    "import sys\n"
    "from locksmith.__main__ import run\n"
    "status = run(['locksmithd', *sys.argv[1:]])\n"
    "print('\\n'.join(sorted(sys.modules)))\n"
    "sys.exit(status)\n"
)


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in STRIPPED_ENV}
    env.update(extra or {})
    return env


# --- the simulated NSM and bundles -----------------------------------------------------------


@dataclass(frozen=True)
class Sim:
    directory: Path
    nsm: SimulatedNsm
    anchor: TrustAnchor
    pcrs: dict[int, bytes]

    @classmethod
    def create(cls, directory: Path) -> Sim:
        nsm = SimulatedNsm.open(directory)
        anchor = TrustAnchor.from_pem((directory / "root.pem").read_bytes())
        hashes = TrustedHashes.from_json((directory / "trusted_hashes.json").read_bytes())
        return cls(directory, nsm, anchor, hashes.pcrs)

    @property
    def policy(self) -> Path:
        return self.directory / "keymaker-pcr-policy.json"

    @property
    def root(self) -> Path:
        return self.directory / "root.pem"

    def args(self) -> list[str]:
        return ["--nsm", "simulated", "--nsm-dir", str(self.directory)]

    def v1_args(self) -> list[str]:
        return [*self.args(), "--keymaker-pcr-policy", str(self.policy),
                "--trust-root", str(self.root)]

    def proofed(self, quorum: Quorum) -> BundleV1:
        """The quorum's V1 bundle with a real proof from this simulated Keymaker NSM."""
        bundle = quorum.checked.bundle
        assert isinstance(bundle, BundleV1)
        digest = bundle_hash(bundle.data)
        return BundleV1(bundle.data, self.nsm.attest(user_data=digest, nonce=proof_nonce(digest)))


def write_bundle(directory: Path, bundle: Bundle | str, name: str = "bundle.json") -> Path:
    path = directory / name
    path.write_text(bundle if isinstance(bundle, str) else bundle.to_json())
    return path


def v1_quorum(sim: Sim, t: int, n: int) -> tuple[BundleV1, Quorum, bytes]:
    """A proofed V1 bundle, its holders and the bundle hash they send."""
    quorum = generated_quorum(t, n, "V1")
    bundle = sim.proofed(quorum)
    digest = submission_bundle_hash(bundle)
    assert digest is not None
    return bundle, quorum, digest


# --- daemons ---------------------------------------------------------------------------------


@dataclass
class LoggedProcess:
    """A daemon a test started: the process, its stderr log and stdout files, its 127.0.0.1
    port (locksmithd here, forwardd in forwardd_kit)."""

    process: subprocess.Popen[bytes]
    log_path: Path
    stdout_path: Path
    port: int = 0

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def wait_for_log(self, pattern: str, timeout: float = 10.0) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = re.search(pattern, self.log())
            if match:
                return match
            time.sleep(0.02)
        raise AssertionError(f"no log line matching {pattern!r}:\n{self.log()}")


@dataclass
class Daemon(LoggedProcess):
    def wait(self, timeout: float = 45.0) -> int:
        return self.process.wait(timeout=timeout)

    def keyforkd(self) -> tuple[str, int] | None:
        match = KEYFORKD_READY.search(self.log())
        return (match.group(1), int(match.group(2))) if match else None


@dataclass
class Daemons:
    """Starts daemons in `directory`; `cleanup()` leaves no process behind."""

    directory: Path
    started: list[Daemon] = field(default_factory=list)

    def spawn(self, args: Sequence[str], *, bootstrap: bool = False,
              env: Mapping[str, str] | None = None) -> Daemon:
        n = len(self.started)
        log_path = self.directory / f"locksmithd-{n}.log"
        stdout_path = self.directory / f"locksmithd-{n}.out"
        entry = ["-c", MODULES_BOOTSTRAP] if bootstrap else ["-m", "locksmith", "locksmithd"]
        with open(log_path, "wb") as err, open(stdout_path, "wb") as out:
            process = subprocess.Popen([PYTHON, *entry, *args], stdin=subprocess.DEVNULL,
                                       stdout=out, stderr=err, cwd=self.directory,
                                       env=clean_env(env))
        daemon = Daemon(process, log_path, stdout_path)
        self.started.append(daemon)
        return daemon

    def start(self, args: Sequence[str], *, bootstrap: bool = False,
              env: Mapping[str, str] | None = None, timeout: float = 30.0) -> Daemon:
        """A daemon listening on an ephemeral port of 127.0.0.1."""
        daemon = self.spawn([*args, "--listen", "127.0.0.1:0"], bootstrap=bootstrap, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = LISTENING.search(daemon.log())
            if match:
                daemon.port = int(match.group(1))
                return daemon
            if daemon.process.poll() is not None:
                break
            time.sleep(0.02)
        raise AssertionError(f"locksmithd did not start listening:\n{daemon.log()}")

    def run(self, args: Sequence[str], timeout: float = 30.0) -> tuple[int, str]:
        """A daemon expected to exit during startup: its status and log."""
        daemon = self.spawn(args)
        return daemon.wait(timeout), daemon.log()

    def cleanup(self) -> None:
        for daemon in self.started:
            if daemon.process.poll() is None:
                daemon.process.send_signal(signal.SIGKILL)
            daemon.process.wait(timeout=10)
            ready = daemon.keyforkd()
            if ready is not None:
                kill_pid(ready[1])
                assert process_gone(ready[1]), f"keyforkd {ready[1]} is still running"


def daemons_in(directory: Path) -> Iterator[Daemons]:
    """Body of a fixture."""
    pool = Daemons(directory)
    try:
        yield pool
    finally:
        pool.cleanup()


# --- the holder client -----------------------------------------------------------------------


class Client:
    """One connection to locksmithd, as `caution secret send-shard` makes it."""

    def __init__(self, address: tuple[str, int], sim: Sim, *, timeout: float = 20.0) -> None:
        self.sim = sim
        self.sock = socket.create_connection(address, timeout=timeout)
        self.session = HolderSession()
        self.attestation: Attestation | None = None

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _recv(self) -> bytes:
        try:
            return self.sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            return b""

    def _event(self) -> object:
        while True:
            event = self.session.next_event()
            if event is not NEED_DATA:
                return event
            self.session.receive_data(self._recv())

    def attest(self) -> Attestation:
        """Messages 1 and 2; the document is verified like send-shard does (§11 step 5)."""
        if not self.try_attest():
            raise AssertionError("the server closed the connection before message 2")
        assert self.attestation is not None
        return self.attestation

    def try_attest(self) -> bool:
        """`attest`, but False when the server closes the connection instead of answering."""
        try:
            self.sock.sendall(self.session.send_nonce())
        except (ConnectionResetError, BrokenPipeError):
            return False
        event = self._event()
        if isinstance(event, ConnectionClosed):
            return False
        assert isinstance(event, AttestationReceived), event
        self.attestation = attestation.verify(
            event.document, trust_root=self.sim.anchor, pcrs=self.sim.pcrs, nonce=event.nonce,
            user_data_length=32, now_ms=int(time.time() * 1000))
        return True

    def submit(self, holder: Holder, *, threshold: int, bundle_hash: bytes | None,
               share: bytes | None = None, key: SecretKey | None = None,
               signed_at: int | None = None) -> Verdict | None:
        """Message 3 through `HolderSession.submit`; message 4, or None if closed unanswered."""
        if self.attestation is None:
            self.attest()
        assert self.attestation is not None
        data = self.session.submit(
            self.attestation, share=holder.share if share is None else share,
            threshold=threshold, bundle_hash=bundle_hash,
            sign=holder.signing_key if key is None else key,
            signed_at=int(time.time()) if signed_at is None else signed_at)
        self.sock.sendall(data)
        event = self._event()
        if isinstance(event, ConnectionClosed):
            return None
        assert isinstance(event, (Accepted, Rejected)), event
        return event

    def submit_raw(self, q: bytes, key: SecretKey, *, tamper: bool = False) -> Verdict | None:
        """Message 3 built by hand: Q sealed to the attested key (optionally with one
        ciphertext bit flipped after sealing), P signed by `key`."""
        if self.attestation is None:
            self.attest()
        assert self.attestation is not None and self.attestation.user_data is not None
        sealed = transport.seal(self.attestation.user_data, q)
        ciphertext = bytearray(sealed.ciphertext)
        if tamper:
            ciphertext[0] ^= 0x01
        payload = SignedPayload(bytes(ciphertext), sealed.client_public).encode()
        armored = sign_detached_text(key, payload.encode("utf-8"), int(time.time()))
        self.sock.sendall(frame.encode(SubmissionMessage(payload, armored.decode("ascii"))
                                       .encode()))
        return self.read_raw_verdict()

    def read_raw_verdict(self) -> Verdict | None:
        decoder = frame.FrameDecoder()
        while True:
            payload = decoder.next_payload()
            if payload is not None:
                return parse_verdict(payload)
            data = self._recv()
            if not data:
                return None
            decoder.feed(data)

    def closed_within(self, seconds: float) -> float | None:
        """Seconds until the server closed the connection (EOF or reset), None if it did not
        within `seconds`. Whatever the server sends first is discarded."""
        start = time.monotonic()
        self.sock.settimeout(seconds)
        try:
            while True:
                if not self._recv():
                    return time.monotonic() - start
        except TimeoutError:
            return None


def share_request(shard: Sequence[int] | bytes, threshold: int, bundle_hash: bytes | None) -> bytes:
    return ShareRequest(bytearray(shard), threshold,
                        None if bundle_hash is None else bundle_hash.hex()).encode()



# --- keyless peers holding connections (finding F1) --------------------------------------------


class HostilePeers(IdlePeers):
    """Idle peers of 49504: each sends message 1 and idles after message 2."""

    def __init__(self, address: tuple[str, int], count: int) -> None:
        super().__init__(address, count, opening=lambda: HolderSession().send_nonce())


def serve_in_process(sim: Sim, limits: Limits, body: Callable[[tuple[str, int]], T], *,
                     until_unlocked: bool = False) -> tuple[T, Outcome]:
    """Serve the fixture bundle in this process with `limits` while `body(address)` runs in a
    thread; then stop (a no-op if the quorum was reached) and return both results.

    `until_unlocked`: the body completes the quorum, so give the server up to 10 s to finish
    the round by itself first; stopping at once could win the race on a loaded machine and
    turn `Unlocked` into `Stopped`."""
    from tests.core.protocol_kit import fixture_quorum
    quorum = fixture_quorum()

    async def scenario() -> tuple[T, Outcome]:
        listener = bind(ListenAddress("127.0.0.1", 0))
        server = Locksmithd(holders=BundleHolders.from_bundle(quorum.checked),
                            round=ReconstitutionRound.from_bundle(quorum.checked), nsm=sim.nsm,
                            limits=limits, handle_signals=False)
        serving = asyncio.create_task(server.serve(listener))
        try:
            result = await asyncio.to_thread(body, listener.getsockname()[:2])
            if until_unlocked:
                await asyncio.wait({serving}, timeout=10.0)
        finally:
            server.stop()
        outcome = await serving
        if isinstance(outcome, Unlocked):
            outcome.secret[:] = bytes(32)
        return result, outcome

    return asyncio.run(scenario())
