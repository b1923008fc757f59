"""`caution secret send-shard` against a real `locksmithd` process (protocol.md §11 end to end).

Both programs run as processes, as holders and enclaves do: locksmithd with the simulated NSM
on an ephemeral 127.0.0.1 port, each holder's CLI with its own private keyring. When the quorum
is reached locksmithd starts keyforkd; every process started here is killed at teardown (the
keyforkd pid is taken from locksmithd's `keyforkd is ready … (pid N)` line).
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from locksmith.core.attestation.nsm_simulated import SimulatedNsm
from tests.conftest import CAUTION_V0
from tests.keyforkd_util import kill_pid, short_dir

LISTENING = re.compile(r"listening on 127\.0\.0\.1:(\d+) ")
KEYFORKD_PID = re.compile(r"keyforkd is ready at .* \(pid (\d+)\)")
START_TIMEOUT = 60.0

pytestmark = pytest.mark.slow  # three processes per test


@dataclass
class Daemon:
    process: subprocess.Popen[str]
    socket: Path
    lines: list[str] = field(default_factory=list)
    port: int = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def log(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, pattern: re.Pattern[str], timeout: float = START_TIMEOUT) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if match := pattern.search(line):
                    return match
            if self.process.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.05)
        raise AssertionError(f"locksmithd never logged {pattern.pattern!r}:\n{self.log()}")

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line.rstrip("\n"))

    def start_reader(self) -> None:
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()


@pytest.fixture
def nsm_dir(tmp_path: Path) -> Path:
    SimulatedNsm.open(tmp_path / "nsm")
    return tmp_path / "nsm"


@pytest.fixture
def sockets() -> Iterator[Path]:
    yield from short_dir()


@pytest.fixture
def locksmithd(nsm_dir: Path, sockets: Path) -> Iterator[Daemon]:
    keyforkd_socket = sockets / "keyforkd.sock"
    process = subprocess.Popen(
        [sys.executable, "-m", "locksmith", "locksmithd", "--bundle",
         str(CAUTION_V0 / "bundle.json"), "--listen", "127.0.0.1:0", "--nsm", "simulated",
         "--nsm-dir", str(nsm_dir), "--keyforkd-socket", str(keyforkd_socket)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    daemon = Daemon(process, keyforkd_socket)
    daemon.start_reader()
    try:
        daemon.port = int(daemon.wait_for(LISTENING).group(1))
        yield daemon
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)
        for line in daemon.lines:
            if match := KEYFORKD_PID.search(line):
                kill_pid(int(match.group(1)))


def send(daemon: Daemon, nsm_dir: Path, holder: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "locksmith", "caution", "secret", "send-shard",
         "--address", daemon.address, "--bundle", str(CAUTION_V0 / "bundle.json"),
         "--keyring", str(CAUTION_V0 / f"{holder}.private.asc"),
         "--trusted-hashes", str(nsm_dir / "trusted_hashes.json"),
         "--trust-root", str(nsm_dir / "root.pem"), *extra],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)


def progress(result: subprocess.CompletedProcess[str]) -> list[str]:
    """stderr without the warnings (test secret, development root)."""
    return [line for line in result.stderr.splitlines() if not line.startswith("warning: ")]


def test_alice_and_bob_unlock_the_fixture_bundle(locksmithd: Daemon, nsm_dir: Path) -> None:
    alice = send(locksmithd, nsm_dir, "alice")
    assert alice.returncode == 0, alice.stderr + locksmithd.log()
    assert alice.stdout == ""
    lines = progress(alice)
    assert lines[0] == f"Sending shard to enclave at {locksmithd.address}..."
    assert re.fullmatch(r"Enclave attestation verified \(module locksmith-sim-[0-9a-f]{8}\)",
                        lines[1])
    assert lines[2:] == ["Shard sent, waiting for the enclave's answer",
                         "Shard accepted, 1 remaining shards until reconstitution"]

    bob = send(locksmithd, nsm_dir, "bob")
    assert bob.returncode == 0, bob.stderr + locksmithd.log()
    assert progress(bob)[-1] == "Shard accepted, 0 remaining shards until reconstitution"
    locksmithd.wait_for(KEYFORKD_PID)
    assert locksmithd.process.wait(30) == 0
    assert locksmithd.socket.exists()


def test_a_second_shard_from_the_same_holder_is_rejected(locksmithd: Daemon,
                                                         nsm_dir: Path) -> None:
    assert send(locksmithd, nsm_dir, "alice").returncode == 0
    again = send(locksmithd, nsm_dir, "alice")
    assert again.returncode == 1
    assert progress(again)[-1] == ("error: Shard rejected by enclave: Holder already contributed "
                                   "a share")


def test_an_enclave_with_other_pcrs_gets_nothing(locksmithd: Daemon, nsm_dir: Path,
                                                 tmp_path: Path) -> None:
    other = tmp_path / "other"
    SimulatedNsm.open(other)
    result = send(locksmithd, nsm_dir, "alice", "--trusted-hashes",
                  str(other / "trusted_hashes.json"))
    assert result.returncode == 1
    assert progress(result)[-1].startswith("error: Enclave attestation rejected: PCR0 mismatch")
    # the enclave still counts Alice as not having contributed: her real submission is accepted
    assert progress(send(locksmithd, nsm_dir, "alice"))[-1] == (
        "Shard accepted, 1 remaining shards until reconstitution")
