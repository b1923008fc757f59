"""How locksmithd starts keyforkd as its own process (enclave.md §3.3, §4.1; README §5 #11).

keyforkd is started by the one launcher for our own daemons (`personalities.launch`): the
secret through an inherited pipe (`--secret-fd`), `READY` on a second pipe once its socket is
bound with mode 0600 (`--ready-fd`), so "started" means "serving"; a new session, stdin and
stdout /dev/null, stderr inherited; the same interpreter and program, never a shell.

Public API: `start_keyforkd(secret, socket_path, *, timeout=30.0, command=None) -> int` (pid),
`keyforkd_command(argv0=None) -> list[str]`, `KeyforkdStartError`.
"""

from __future__ import annotations

from collections.abc import Sequence

from locksmith.personalities.launch import DaemonStartError, own_command, start_daemon

__all__ = ["KeyforkdStartError", "keyforkd_command", "start_keyforkd"]


class KeyforkdStartError(DaemonStartError):
    """`keyforkd did not start: <reason>`; the child has been killed and reaped."""

    def __init__(self, reason: str) -> None:
        super().__init__("keyforkd", reason)


def keyforkd_command(argv0: str | None = None) -> list[str]:
    """`[python, <zipapp>, "keyforkd"]` inside a zipapp, else `[python, "-m", "locksmith", ...]`
    (`launch.own_command`)."""
    return own_command("keyforkd", argv0)


def start_keyforkd(secret: bytes | bytearray, socket_path: str, *, timeout: float = 30.0,
                   command: Sequence[str] | None = None) -> int:
    """Start keyforkd serving `secret` at `socket_path`; its pid once it signalled readiness.

    Raises `KeyforkdStartError` (after killing the child) when it cannot be started, exits, or
    is not ready within `timeout` seconds. `command` replaces `keyforkd_command()` (tests).
    The caller still owns and wipes `secret`; this function keeps no copy of it.
    """
    try:
        return start_daemon(command or keyforkd_command(), secret, program="keyforkd",
                            label="keyforkd", args=("--socket", socket_path),
                            ready_timeout=timeout)
    except DaemonStartError as exc:
        raise KeyforkdStartError(exc.reason) from None
