"""The one launcher for our own daemons (personalities/launch.py): the secret on an inherited
pipe, further descriptors under their own numbers, a new session, no waiting unless asked —
and how locksmithd starts forwardd with it (docs/forwarding.md §5.1). keyforkd's use, with its
readiness pipe, is tests/test_keyforkd_launch.py."""

from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path

import pytest

from locksmith.personalities.launch import DaemonStartError, own_command, start_daemon
from locksmith.personalities.locksmithd.daemon import forwardd_arguments
from locksmith.personalities.locksmithd.options import parse_options
from tests.keyforkd_util import process_gone

SECRET = bytes(range(32))

# Reports what it was given: the secret, the socket's address, its session; then idles.
CHILD = (
    "import os, socket, sys, time\n"
    "args = sys.argv[1:]\n"
    "secret = os.read(int(args[args.index('--secret-fd') + 1]), 64)\n"
    "eof = os.read(int(args[args.index('--secret-fd') + 1]), 1) == b''\n"
    "sock = socket.socket(fileno=int(args[args.index('--listen-fd') + 1]))\n"
    "with open(args[args.index('--out') + 1], 'w') as out:\n"
    "    out.write(f'{secret.hex()} {eof} {sock.getsockname()[1]} {os.getsid(0) == os.getpid()}')\n"
    "time.sleep(30)\n"
)


def test_a_daemon_gets_the_secret_then_eof_and_its_socket_in_a_session_of_its_own(
        tmp_path: Path) -> None:
    out = tmp_path / "out"
    with socket.socket() as bound:
        bound.bind(("127.0.0.1", 0))
        fd = bound.fileno()
        pid = start_daemon([sys.executable, "-c", CHILD], SECRET, program="child",
                           label="the child", args=["--listen-fd", str(fd), "--out", str(out)],
                           pass_fds=(fd,))
        try:
            deadline = time.monotonic() + 20
            while not out.exists() or not out.read_text():
                assert time.monotonic() < deadline, "the child reported nothing"
                time.sleep(0.02)
            assert out.read_text() == f"{SECRET.hex()} True {bound.getsockname()[1]} True"
            argv = Path(f"/proc/{pid}/cmdline").read_bytes()
            assert SECRET not in argv and SECRET.hex().encode() not in argv
        finally:
            os.kill(pid, 9)
            assert process_gone(pid)


def test_an_unexecutable_daemon_is_reported_with_its_label() -> None:
    with pytest.raises(DaemonStartError) as raised:
        start_daemon(["/nonexistent/forwardd"], SECRET, program="forwardd",
                     label="forwarding provider")
    assert str(raised.value).startswith("forwarding provider did not start: cannot execute "
                                        "/nonexistent/forwardd: ")


def test_a_daemon_that_dies_at_once_cannot_take_the_secret_or_is_simply_gone() -> None:
    # Without a readiness pipe the launcher does not wait: the caller learns only what the
    # pipe tells it, and a daemon that exits at once is not an error of the launch.
    try:
        pid = start_daemon([sys.executable, "-c", "pass"], SECRET, program="x", label="x")
    except DaemonStartError as exc:  # it exited before the secret was written
        assert str(exc).startswith("x did not start: cannot pass the secret: ")
    else:
        assert process_gone(pid)


def test_locksmithd_starts_forwardd_with_its_own_meanings_of_the_options() -> None:
    fpr = "AB" * 20
    options = parse_options(["--bundle", "/b.json", "--keymaker-pcr-policy", "/p.json",
                             "--nsm", "simulated", "--nsm-dir", "/nsm", "--trust-root",
                             "/root.pem", "--allow-debug-enclave", "--exclude-holder", fpr,
                             "--forward-listen", "0.0.0.0"], {})
    assert forwardd_arguments(options, 7) == [
        "--listen-fd", "7", "--bundle", "/b.json", "--keymaker-pcr-policy", "/p.json",
        "--nsm", "simulated", "--nsm-dir", "/nsm", "--trust-root", "/root.pem",
        "--allow-debug-enclave", "--exclude-holder", fpr]
    plain = parse_options(["--forward-listen", "0.0.0.0"], {})
    assert forwardd_arguments(plain, 3) == [
        "--listen-fd", "3", "--bundle", "/etc/caution/bundle.json", "--keymaker-pcr-policy",
        "/etc/caution/keymaker-pcr-policy.json", "--nsm", "device"]
    assert own_command("forwardd", "-c")[-1] == "forwardd"
