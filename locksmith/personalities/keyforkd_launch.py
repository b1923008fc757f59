"""How locksmithd starts keyforkd as its own process (enclave.md §3.3, §4.1; README §5 #11).

The secret crosses the process boundary only through an anonymous pipe inherited as
`--secret-fd`, never argv, the environment or a file. keyforkd says `READY` on a second pipe
once its socket is bound with mode 0600, so "started" means "serving", not "forked". It runs in
a new session so that it outlives locksmithd and the boot script. The program is the same
interpreter running the same program: the zipapp by its real path (`/usr/bin/locksmith`, not a
personality symlink, so the first argument selects the personality), or `-m locksmith` when
locksmith runs from an installed package or source tree. Never through a shell. stdin and
stdout are /dev/null (keyforkd writes nothing there, and an inherited stdout pipe would keep a
reader waiting for EOF as long as the daemon lives); stderr is inherited for its log lines.

Public API: `start_keyforkd(secret, socket_path, *, timeout=30.0, command=None) -> int` (pid),
`keyforkd_command(argv0=None) -> list[str]`, `KeyforkdStartError`.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Sequence

__all__ = ["KeyforkdStartError", "keyforkd_command", "start_keyforkd"]

READY = b"READY\n"

# Started daemons are deliberately never waited for; holding their Popen objects keeps Python
# from warning about (or reaping) a process that is meant to outlive the caller.
_STARTED: list[subprocess.Popen[bytes]] = []


class KeyforkdStartError(RuntimeError):
    """`keyforkd did not start: <reason>`; the child has been killed and reaped."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"keyforkd did not start: {reason}")
        self.reason = reason


def keyforkd_command(argv0: str | None = None) -> list[str]:
    """`[python, <zipapp>, "keyforkd"]` inside a zipapp, else `[python, "-m", "locksmith", ...]`.

    A zipapp is recognised by `argv[0]` (what shiv itself uses to find its archive) resolving to
    a zip file; a console script, `python -m locksmith` and a test runner all fall back to the
    importable package.
    """
    candidate = sys.argv[0] if argv0 is None else argv0
    if candidate:
        real = os.path.realpath(candidate)
        if os.path.isfile(real) and zipfile.is_zipfile(real):
            return [sys.executable, real, "keyforkd"]
    return [sys.executable, "-m", "locksmith", "keyforkd"]


def _exit_reason(status: int) -> str:
    if status < 0:
        return f"keyforkd was killed by signal {signal.Signals(-status).name}"
    return f"keyforkd exited with status {status}"


def _kill(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGKILL)  # its own session: take any children too
        except OSError:
            process.kill()
    process.wait()


def _await_ready(process: subprocess.Popen[bytes], ready: int, timeout: float) -> None:
    """Read `READY\\n` from the pipe within `timeout`; EOF means keyforkd gave up."""
    deadline = time.monotonic() + timeout
    received = b""
    while received != READY:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise KeyforkdStartError(f"no readiness signal within {timeout:g} s")
        readable, _, _ = select.select([ready], [], [], remaining)
        if not readable:
            continue
        chunk = os.read(ready, 64)
        if not chunk:
            try:
                status = process.wait(timeout=max(0.0, min(2.0, deadline - time.monotonic())))
            except subprocess.TimeoutExpired:
                raise KeyforkdStartError("keyforkd closed its readiness pipe without "
                                         "signalling") from None
            raise KeyforkdStartError(_exit_reason(status))
        received += chunk
        if not READY.startswith(received):
            raise KeyforkdStartError("unexpected readiness message")


def start_keyforkd(secret: bytes | bytearray, socket_path: str, *, timeout: float = 30.0,
                   command: Sequence[str] | None = None) -> int:
    """Start keyforkd serving `secret` at `socket_path`; its pid once it signalled readiness.

    Raises `KeyforkdStartError` (after killing the child) when it cannot be started, exits, or
    is not ready within `timeout` seconds. `command` replaces `keyforkd_command()` (tests).
    The caller still owns and wipes `secret`; this function keeps no copy of it.
    """
    if len(secret) != 32:
        raise ValueError("the master secret must be 32 bytes")
    secret_read, secret_write = os.pipe()
    ready_read, ready_write = os.pipe()
    argv = [*(command or keyforkd_command()), "--socket", socket_path,
            "--secret-fd", str(secret_read), "--ready-fd", str(ready_write)]
    try:
        try:
            process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=None,
                pass_fds=(secret_read, ready_write), start_new_session=True, close_fds=True)
        except OSError as exc:
            raise KeyforkdStartError(f"cannot execute {argv[0]}: "
                                     f"{exc.strerror or exc}") from None
        finally:
            os.close(secret_read)
            os.close(ready_write)
        try:
            try:
                os.write(secret_write, secret)  # 32 bytes: fits any pipe buffer at once
            except OSError as exc:
                raise KeyforkdStartError(f"cannot pass the secret: {exc.strerror or exc}") \
                    from None
            finally:
                os.close(secret_write)
                secret_write = -1
            _await_ready(process, ready_read, timeout)
        except BaseException:
            _kill(process)
            raise
    finally:
        if secret_write >= 0:
            os.close(secret_write)
        os.close(ready_read)
    _STARTED.append(process)
    return process.pid
