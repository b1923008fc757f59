"""keyforkd as a real process on a real Unix socket (enclave.md §4)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from locksmith.core.keyfork import ipc as keyfork_ipc
from locksmith.core.keyfork import slip10
from locksmith.core.protocol import frame
from locksmith.personalities.keyforkd_server import KeyforkServer, MasterNode
from tests import keyforkd_util as util
from tests.keyforkd_util import PYTHON, X_CHAIN, X_PRIV, Keyforkd


@pytest.fixture
def workdir() -> Iterator[Path]:
    yield from util.short_dir()


@pytest.fixture
def daemon(workdir: Path) -> Iterator[Keyforkd]:
    running = util.start_keyforkd(workdir)
    try:
        yield running
    finally:
        running.stop()


def _keyforkd(*args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PYTHON, "-m", "locksmith", "keyforkd", *args], capture_output=True,
                          text=True, timeout=30, stdin=subprocess.DEVNULL, **kwargs)  # type: ignore[call-overload]


# --- derivations -----------------------------------------------------------------------------


def test_secret_07_gives_the_account_node_with_several_requests_per_connection(
        daemon: Keyforkd) -> None:
    with util.connect(daemon.socket) as sock:
        for _ in range(3):
            response = util.exchange(sock, keyfork_ipc.encode_request("m/7366512'/0'"))
            assert response == {"private_key": bytes.fromhex(X_PRIV),
                                "chain_code": bytes.fromhex(X_CHAIN), "depth": 2}
        deeper = util.exchange(sock, keyfork_ipc.encode_request("m/7366512'/0'/2'"))
        assert deeper is not None and deeper["depth"] == 3
    log = daemon.log()
    assert "derivation m/7366512'/0' (OpenPGP quorum key)" in log
    assert "derivation m/7366512'/0'/2'" in log
    for secret in (X_PRIV, X_CHAIN, "07" * 32):
        assert secret not in log.lower()


def test_by_default_the_quorum_key_is_served_once_and_other_paths_always(workdir: Path) -> None:
    """After boot the application shares keyforkd's uid: it must not derive the quorum key."""
    running = util.start_keyforkd(workdir, quorum_once=True)
    try:
        first = util.derive(running.socket)
        assert first["private_key"] == bytes.fromhex(X_PRIV)
        for path in ("m/7366512'/0'", "m/7366512'/0'/2'"):
            with util.connect(running.socket) as sock:
                refused = util.exchange(sock, keyfork_ipc.encode_request(path))
                assert refused == {"error": keyfork_ipc.QUORUM_ALREADY_SERVED}
                assert util.is_closed(sock)
        for path in ("m/7366512'/1'", "m/44'/0'"):  # the application's own keys
            assert util.derive(running.socket, path)["depth"] == 2
        assert "refused request for m/7366512'/0': the quorum key was already served" \
            in running.log()
    finally:
        running.stop()


@pytest.mark.parametrize(("request_payload", "error"), [
    (b"\xa0", "malformed request"),
    (b"not cbor", "malformed request"),
    (keyfork_ipc.encode_request("m/1'/2'", "secp256k1"), "unsupported algorithm: secp256k1"),
    (keyfork_ipc.encode_request("m/01'/2'"), "invalid derivation path"),
    (keyfork_ipc.encode_request("m/1/2"), "ed25519 derivation requires hardened indices"),
    (keyfork_ipc.encode_request("m"), "derivation path needs at least 2 components, got 0"),
    (keyfork_ipc.encode_request("m/" + "/".join(["0'"] * 256)), "derivation path is too deep"),
])
def test_every_error_is_answered_then_the_connection_closes(
        daemon: Keyforkd, request_payload: bytes, error: str) -> None:
    with util.connect(daemon.socket) as sock:
        assert util.exchange(sock, keyfork_ipc.encode_request("m/1'/2'"))  # a good one first
        assert util.exchange(sock, request_payload) == {"error": error}
        assert util.is_closed(sock)


def test_a_frame_over_64_kib_closes_the_connection_without_reading_it(daemon: Keyforkd) -> None:
    with util.connect(daemon.socket) as sock:
        sock.sendall((32 + 64 * 1024 + 1).to_bytes(4, "big"))
        assert util.is_closed(sock)
    with util.connect(daemon.socket) as sock:  # 64 KiB exactly is a frame (a malformed request)
        assert util.exchange(sock, b"\x00" * (64 * 1024)) == {"error": "malformed request"}


def test_a_bad_checksum_closes_the_connection(daemon: Keyforkd) -> None:
    encoded = bytearray(frame.encode(keyfork_ipc.encode_request("m/1'/2'")))
    encoded[10] ^= 1
    with util.connect(daemon.socket) as sock:
        sock.sendall(encoded)
        assert util.is_closed(sock)


# --- the socket ------------------------------------------------------------------------------


def test_socket_is_mode_0600_and_owned_by_us(daemon: Keyforkd) -> None:
    info = os.lstat(daemon.socket)
    assert stat.S_ISSOCK(info.st_mode)
    assert stat.S_IMODE(info.st_mode) == 0o600
    assert info.st_uid == os.getuid()


def test_a_stale_socket_is_replaced(workdir: Path) -> None:
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(workdir / "k.sock"))
    stale.close()  # the file stays, nobody listens
    running = util.start_keyforkd(workdir)
    try:
        assert util.derive(running.socket)["depth"] == 2
        assert f"removed stale socket {running.socket}" in running.log()
    finally:
        running.stop()


def test_a_live_server_means_already_running(daemon: Keyforkd, workdir: Path) -> None:
    result = _keyforkd("--socket", str(daemon.socket), "--unsafe-secret-hex-file",
                       str(workdir / "secret.hex"))
    assert result.returncode == 1
    assert f"keyforkd already running at {daemon.socket}\n" in result.stderr
    assert util.derive(daemon.socket)["depth"] == 2  # the first one is untouched


@pytest.mark.parametrize("kind", ["file", "directory", "symlink"])
def test_anything_but_a_socket_at_the_path_is_refused(workdir: Path, kind: str) -> None:
    target = workdir / "k.sock"
    if kind == "file":
        target.write_text("precious")
    elif kind == "directory":
        target.mkdir()
    else:
        target.symlink_to(workdir / "elsewhere")
    util.write_secret_file(workdir / "secret.hex")
    result = _keyforkd("--socket", str(target), "--unsafe-secret-hex-file",
                       str(workdir / "secret.hex"))
    assert result.returncode == 1
    assert f"{target} exists and is not a socket" in result.stderr
    assert os.path.lexists(target)


def test_xdg_runtime_dir_default_creates_a_private_directory(workdir: Path) -> None:
    env = {"PATH": os.environ["PATH"], "XDG_RUNTIME_DIR": str(workdir), "KEYFORKD_SOCKET_PATH": ""}
    running = util.start_keyforkd(workdir, env=env, pass_socket=False)
    try:
        directory = workdir / "keyforkd"
        assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
        assert util.derive(directory / "keyforkd.sock")["depth"] == 2
    finally:
        running.stop()


def _in_child(action: Callable[[], bytes]) -> tuple[bytes, int]:
    """Run `action` in a forked child (it may drop privileges for good) and return what it
    reported and its exit status; an exception in the child is reported as its repr."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(read_end)
            os.write(write_end, action())
            code = 0
        except BaseException as exc:
            os.write(write_end, repr(exc).encode())
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        outcome = pipe.read()
    _, status = os.waitpid(pid, 0)
    return outcome, os.WEXITSTATUS(status)


def test_another_uid_is_disconnected_without_an_answer(daemon: Keyforkd, workdir: Path) -> None:
    # Let `nobody` reach the socket at all, so that the peer-credential check is what stops it.
    os.chmod(workdir, 0o755)
    os.chmod(daemon.socket, 0o666)
    request = frame.encode(keyfork_ipc.encode_request("m/7366512'/0'"))

    def as_nobody() -> bytes:  # connect, report what came back
        os.setgid(65534)
        os.setuid(65534)
        with util.connect(daemon.socket) as sock:
            try:
                sock.sendall(request)
                got = sock.recv(4096)
            except (ConnectionResetError, BrokenPipeError):
                got = b""  # closed with our request unread
        return b"EOF" if got == b"" else b"DATA"

    outcome, status = _in_child(as_nobody)
    assert outcome == b"EOF"
    assert status == 0
    assert "rejected connection from uid 65534" in daemon.log()
    assert util.derive(daemon.socket)["depth"] == 2  # root is still served


def test_at_most_16_connections_at_once(daemon: Keyforkd) -> None:
    held = [util.connect(daemon.socket) for _ in range(16)]
    try:
        for sock in held:  # make sure each one has been accepted and admitted
            assert util.exchange(sock, keyfork_ipc.encode_request("m/1'/2'"))
        with util.connect(daemon.socket) as extra:
            assert util.is_closed(extra)
        assert "connection limit reached (16)" in daemon.log()
        held.pop().close()
        deadline = time.monotonic() + 5
        while True:  # the slot frees once the server has seen the close
            with util.connect(daemon.socket) as again:
                response = util.exchange(again, keyfork_ipc.encode_request("m/1'/2'"))
            if response is not None or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert response is not None and response["depth"] == 2
    finally:
        for sock in held:
            sock.close()


def test_a_request_must_arrive_within_the_timeout(workdir: Path) -> None:
    """In process, with the 10 s limit shortened; the daemon uses the same class."""
    path = str(workdir / "t.sock")
    lines: list[str] = []

    async def scenario() -> tuple[bytes, bytes]:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(path)
        listener.listen()
        listener.setblocking(False)
        stop = asyncio.Event()
        server = KeyforkServer(MasterNode(slip10.master_key(bytes(64))), lines.append,
                               request_timeout=0.3)
        task = asyncio.create_task(server.serve(listener, stop))
        reader, writer = await asyncio.open_unix_connection(path)
        good = frame.encode(keyfork_ipc.encode_request("m/1'/2'"))
        writer.write(good)
        first = await asyncio.wait_for(reader.read(4096), 5)
        writer.write(good[:10])  # half a request, then silence
        second = await asyncio.wait_for(reader.read(4096), 5)
        writer.close()
        stop.set()
        await task
        return first, second

    first, second = asyncio.run(scenario())
    assert first and second == b""
    assert "no complete request within 0.3 s; closing connection" in lines
    assert KeyforkServer(MasterNode(slip10.master_key(bytes(64))), print)._request_timeout == 10.0


# --- lifecycle -------------------------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_removes_the_socket_and_exits_0(workdir: Path, signum: int) -> None:
    running = util.start_keyforkd(workdir)
    with util.connect(running.socket) as idle:  # an open connection must not block shutdown
        assert running.stop(signum) == 0
        assert util.is_closed(idle)
    assert not os.path.lexists(running.socket)
    assert f"stopping ({signal.Signals(signum).name})" in running.log()


def test_keyforkd_imports_no_cli_or_http_library() -> None:
    probe = ("import sys, locksmith.__main__, locksmith.personalities.keyforkd\n"
             "print(' '.join(sorted(sys.modules)))")
    modules = subprocess.run([PYTHON, "-c", probe], capture_output=True, text=True, check=True,
                             timeout=30).stdout.split()
    roots = {m.split(".")[0] for m in modules}
    assert not roots & {"pgpy", "typer", "httpx", "uvicorn", "click", "starlette", "cbor2"}
    assert not [m for m in modules if m.startswith("locksmith.core.openpgp")]


def test_core_dumps_are_disabled(daemon: Keyforkd) -> None:
    limits = Path(f"/proc/{daemon.process.pid}/limits").read_text()
    line = next(x for x in limits.splitlines() if x.startswith("Max core file size"))
    assert line.split()[4:6] == ["0", "0"]


# --- the secret ------------------------------------------------------------------------------


def test_exactly_one_secret_source_is_required(workdir: Path) -> None:
    hex_file = util.write_secret_file(workdir / "secret.hex")
    none = _keyforkd("--socket", str(workdir / "k.sock"))
    assert none.returncode == 2 and "one of the arguments" in none.stderr
    both = _keyforkd("--socket", str(workdir / "k.sock"), "--secret-fd", "0",
                     "--unsafe-secret-hex-file", str(hex_file))
    assert both.returncode == 2 and "not allowed with" in both.stderr
    assert not os.path.lexists(workdir / "k.sock")


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o620, 0o602, 0o644])
def test_a_secret_file_open_to_group_or_others_is_refused(workdir: Path, mode: int) -> None:
    hex_file = util.write_secret_file(workdir / "secret.hex", mode=mode)
    result = _keyforkd("--socket", str(workdir / "k.sock"), "--unsafe-secret-hex-file",
                       str(hex_file))
    assert result.returncode == 1
    assert "WARNING: --unsafe-secret-hex-file is for development and tests only" in result.stderr
    assert f"refusing {hex_file}: it is readable or writable by group or others" \
        in result.stderr
    assert not os.path.lexists(workdir / "k.sock")


@pytest.mark.parametrize("content", ["07" * 31 + "\n", "07" * 32 + "\n\n", "zz" * 32,
                                     "07" * 33, " " + "07" * 32])
def test_a_secret_file_must_hold_64_hex_digits(workdir: Path, content: str) -> None:
    hex_file = workdir / "secret.hex"
    hex_file.write_text(content)
    hex_file.chmod(0o600)
    result = _keyforkd("--socket", str(workdir / "k.sock"), "--unsafe-secret-hex-file",
                       str(hex_file))
    assert result.returncode == 1
    assert "must hold exactly 64 hex digits" in result.stderr
    assert "07" * 16 not in result.stderr


@pytest.mark.parametrize(("data", "reason"), [
    (b"\x07" * 31, "got 31"), (b"\x07" * 33, "got more"), (b"", "got 0"),
])
def test_secret_fd_takes_exactly_32_bytes_then_eof(workdir: Path, data: bytes,
                                                   reason: str) -> None:
    read_end, write_end = os.pipe()
    os.write(write_end, data)
    os.close(write_end)
    try:
        result = _keyforkd("--socket", str(workdir / "k.sock"), "--secret-fd", str(read_end),
                           pass_fds=(read_end,))
    finally:
        os.close(read_end)
    assert result.returncode == 1
    assert f"expected exactly 32 secret bytes on fd {read_end}, {reason}" in result.stderr
    assert not os.path.lexists(workdir / "k.sock")


def test_peer_uid_reads_uid_t_as_unsigned() -> None:
    # uid_t is unsigned: a uid of 2^31 or more must not come back negative (it would never
    # equal keyforkd's own uid, so such a keyforkd would refuse its own clients).
    from locksmith.personalities.keyforkd_server import peer_uid
    big = 2**31 + 5

    def with_big_uid() -> bytes:  # read our own credentials off a socketpair
        os.setuid(big)
        a, _ = socket.socketpair()
        return str(peer_uid(a)).encode()

    outcome, _ = _in_child(with_big_uid)
    assert outcome == str(big).encode()
