"""Helpers for tests that run a real keyforkd on a real Unix socket.

Sockets live in short directories under /tmp (a Unix socket path is limited to 107 bytes, which
pytest's `tmp_path` can exceed). Every process started here is killed by its fixture.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import cbor2

from locksmith.core.keyfork import ipc as keyfork_ipc
from locksmith.core.protocol import frame

PYTHON = sys.executable
SECRET_07 = b"\x07" * 32
X_PRIV = "7eb0d92a15f1898a47f5190ee3dd5d4a214031eb7eb94f86cc42d969b9c3fc42"
X_CHAIN = "39fa90d84212c4f2f3bb6af7468b672dca054beba631c51320321a0392a6920b"


def short_dir() -> Iterator[Path]:
    """A fresh directory with a short path; removed afterwards (body of a fixture)."""
    path = Path(tempfile.mkdtemp(prefix="ks", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def write_secret_file(path: Path, secret: bytes = SECRET_07, mode: int = 0o600) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "w") as handle:
        handle.write(secret.hex() + "\n")
    os.chmod(path, mode)
    return path


@dataclass
class Keyforkd:
    process: subprocess.Popen[bytes]
    socket: Path
    stderr: Path

    def log(self) -> str:
        return self.stderr.read_text()

    def stop(self, signum: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signum)
            try:
                return self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.process.wait()


def start_keyforkd(directory: Path, *, secret_file: Path | None = None,
                   extra: Sequence[str] = (), env: Mapping[str, str] | None = None,
                   socket_path: Path | None = None, pass_socket: bool = True,
                   wait: bool = True, quorum_once: bool = False) -> Keyforkd:
    """`python -m locksmith keyforkd --unsafe-secret-hex-file ...`, ready when returned.

    `socket_path` defaults to `directory/k.sock`, passed with `--socket` unless `pass_socket`
    is false (then the daemon resolves its own path from `env`). Test daemons serve the quorum
    key to every request (one daemon serves a module's tests) unless `quorum_once`.
    """
    if secret_file is None:
        secret_file = directory / "secret.hex"
        if not secret_file.exists():
            write_secret_file(secret_file)
    sock = socket_path or directory / "k.sock"
    stderr = directory / f"keyforkd-{time.monotonic_ns()}.log"
    ready_read, ready_write = os.pipe()
    args = [PYTHON, "-m", "locksmith", "keyforkd", "--unsafe-secret-hex-file", str(secret_file),
            "--ready-fd", str(ready_write), *extra]
    if not quorum_once:
        args.append("--unsafe-serve-quorum-key-repeatedly")
    if pass_socket:
        args += ["--socket", str(sock)]
    with open(stderr, "wb") as err:
        process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=err, pass_fds=(ready_write,),
                                   env=dict(env) if env is not None else None)
    os.close(ready_write)
    daemon = Keyforkd(process, sock, stderr)
    try:
        if wait:
            with os.fdopen(ready_read, "rb") as ready:
                signal_line = ready.read()
            if signal_line != b"READY\n":
                daemon.stop()
                raise AssertionError(f"keyforkd did not signal readiness:\n{daemon.log()}")
        else:
            os.close(ready_read)
    except BaseException:
        daemon.stop()
        raise
    return daemon


def connect(path: Path | str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(str(path))
    return sock


def receive(sock: socket.socket) -> bytes | None:
    """The next response payload, or None if the server closed the connection."""
    decoder = frame.FrameDecoder()
    while True:
        payload = decoder.next_payload()
        if payload is not None:
            return payload
        data = sock.recv(65536)
        if not data:
            return None
        decoder.feed(data)


def exchange(sock: socket.socket, payload: bytes) -> dict[str, object] | None:
    sock.sendall(frame.encode(payload))
    response = receive(sock)
    return None if response is None else dict(cbor2.loads(response))


def derive(path: Path | str, derivation: str = keyfork_ipc.ACCOUNT_PATH) -> dict[str, object]:
    with connect(path) as sock:
        result = exchange(sock, keyfork_ipc.encode_request(derivation))
    assert result is not None
    return result


def is_closed(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True


def process_gone(pid: int, timeout: float = 10.0) -> bool:
    """True once `pid` no longer runs (a zombie counts as gone: we may not be its parent)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        try:
            with open(f"/proc/{pid}/stat") as handle:
                state = handle.read().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.02)
    return False


def kill_pid(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    if not process_gone(pid, 5):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process_gone(pid, 5)
