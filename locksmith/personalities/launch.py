"""Start our own program as a daemon holding the secret (enclave.md §3.3, §4.1; README §5 #11;
docs/forwarding.md §5.1): keyforkd after the quorum, and forwardd when key forwarding is on.

The secret crosses the process boundary only through an anonymous pipe inherited as
`--secret-fd`, never argv, the environment or a file; the daemon reads 32 bytes then EOF. A
daemon may also be handed a readiness pipe (`--ready-fd`: "started" then means "serving", not
"forked" — keyforkd says `READY`) and other descriptors (forwardd's bound socket). It runs in a
new session so that it outlives locksmithd and the boot script. The program is the same
interpreter running the same program: the zipapp by its real path (`/usr/bin/locksmith`, not a
personality symlink, so the first argument selects the personality), or `-m locksmith` when
locksmith runs from an installed package or source tree. Never through a shell. stdin and
stdout are /dev/null (an inherited stdout pipe would keep a reader waiting for EOF as long as
the daemon lives); stderr is inherited for its log lines.

Public API: `own_command(personality, argv0=None) -> list[str]`,
`start_daemon(command, secret, *, program, label, args=(), pass_fds=(), ready_timeout=None)
-> int`
(pid), `DaemonStartError`.
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

from locksmith.personalities.secret_fd import READY

__all__ = ["DaemonStartError", "READY", "own_command", "start_daemon"]


# Started daemons are deliberately never waited for; holding their Popen objects keeps Python
# from warning about (or reaping) a process that is meant to outlive the caller.
_STARTED: list[subprocess.Popen[bytes]] = []


class DaemonStartError(RuntimeError):
    """`<label> did not start: <reason>`; the child has been killed and reaped."""

    def __init__(self, label: str, reason: str) -> None:
        super().__init__(f"{label} did not start: {reason}")
        self.label = label
        self.reason = reason


def own_command(personality: str, argv0: str | None = None) -> list[str]:
    """`[python, <zipapp>, personality]` inside a zipapp, else `[python, "-m", "locksmith", ...]`.

    A zipapp is recognised by `argv[0]` (what shiv itself uses to find its archive) resolving to
    a zip file; a console script, `python -m locksmith` and a test runner all fall back to the
    importable package.
    """
    candidate = sys.argv[0] if argv0 is None else argv0
    if candidate:
        real = os.path.realpath(candidate)
        if os.path.isfile(real) and zipfile.is_zipfile(real):
            # Started the fast way (shipping/launcher.py), start it the same way: the same
            # interpreter and program, without re-reading the archive (issue 11: keyforkd's
            # start is on the boot's critical path).
            launcher = sys.modules.get("_locksmith_launcher")
            start_command = getattr(launcher, "start_command", None)
            fast = start_command(real, personality) if callable(start_command) else None
            return fast or [sys.executable, real, personality]
    return [sys.executable, "-m", "locksmith", personality]


def _exit_reason(program: str, status: int) -> str:
    if status < 0:
        return f"{program} was killed by signal {signal.Signals(-status).name}"
    return f"{program} exited with status {status}"


def _kill(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGKILL)  # its own session: take any children too
        except OSError:
            process.kill()
    process.wait()


def _await_ready(process: subprocess.Popen[bytes], ready: int, timeout: float, label: str,
                 program: str) -> None:
    """Read `READY\\n` from the pipe within `timeout`; EOF means the daemon gave up."""
    deadline = time.monotonic() + timeout
    received = b""
    while received != READY:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise DaemonStartError(label, f"no readiness signal within {timeout:g} s")
        readable, _, _ = select.select([ready], [], [], remaining)
        if not readable:
            continue
        chunk = os.read(ready, 64)
        if not chunk:
            try:
                status = process.wait(timeout=max(0.0, min(2.0, deadline - time.monotonic())))
            except subprocess.TimeoutExpired:
                raise DaemonStartError(label, f"{program} closed its readiness pipe without "
                                       "signalling") from None
            raise DaemonStartError(label, _exit_reason(program, status))
        received += chunk
        if not READY.startswith(received):
            raise DaemonStartError(label, "unexpected readiness message")


def start_daemon(command: Sequence[str], secret: bytes | bytearray, *, program: str,
                 label: str, args: Sequence[str] = (), pass_fds: Sequence[int] = (),
                 ready_timeout: float | None = None) -> int:
    """Run `command --secret-fd N [--ready-fd M] *args` with the 32-byte `secret` on the pipe;
    its pid once started (with `ready_timeout`: once it signalled readiness).

    `program` names the daemon in exit reasons, `label` in the error's first words.
    `pass_fds` are further descriptors the child inherits under the same numbers (`args` name
    them). Raises `DaemonStartError` (after killing the child) when it cannot be executed, does
    not take the secret, or — with a readiness pipe — exits or is not ready in time. The caller
    still owns and wipes `secret`; this function keeps no copy of it.
    """
    if len(secret) != 32:
        raise ValueError("the master secret must be 32 bytes")
    secret_read, secret_write = os.pipe()
    ready_read, ready_write = os.pipe() if ready_timeout is not None else (-1, -1)
    argv = [*command, *args, "--secret-fd", str(secret_read)]
    inherited = [secret_read, *pass_fds]
    if ready_timeout is not None:
        argv += ["--ready-fd", str(ready_write)]
        inherited.append(ready_write)
    try:
        try:
            process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=None,
                pass_fds=inherited, start_new_session=True, close_fds=True)
        except OSError as exc:
            raise DaemonStartError(label, f"cannot execute {argv[0]}: "
                                   f"{exc.strerror or exc}") from None
        finally:
            os.close(secret_read)
            if ready_write >= 0:
                os.close(ready_write)
        try:
            try:
                os.write(secret_write, secret)  # 32 bytes: fits any pipe buffer at once
            except OSError as exc:
                raise DaemonStartError(label, f"cannot pass the secret: "
                                       f"{exc.strerror or exc}") from None
            finally:
                os.close(secret_write)
                secret_write = -1
            if ready_timeout is not None:
                _await_ready(process, ready_read, ready_timeout, label, program)
        except BaseException:
            _kill(process)
            raise
    finally:
        if secret_write >= 0:
            os.close(secret_write)
        if ready_read >= 0:
            os.close(ready_read)
    _STARTED.append(process)
    return process.pid
