"""Receiving the master secret through an inherited pipe (enclave.md §3.3, docs/forwarding.md
§5.1): keyforkd and forwardd are started by locksmithd with `--secret-fd N`, and answer
`READY` on `--ready-fd N` (what `launch.start_daemon` waits for).

The secret crosses the process boundary only this way — never argv, the environment or a file.
Exactly 32 bytes, then EOF: a short read means the sender died, a longer one that something
else is writing to the pipe, and either way the daemon must not start with it. The bytes go
straight into a bytearray the caller wipes; nothing else keeps a copy.
"""

from __future__ import annotations

import os

__all__ = ["READY", "SECRET_LENGTH", "SecretInputError", "read_secret_fd", "signal_ready", "wipe"]

SECRET_LENGTH = 32
READY = b"READY\n"


class SecretInputError(Exception):
    """The secret could not be read: one line naming the descriptor and the reason."""


def wipe(buffer: bytearray) -> None:
    """Overwrite in place (best effort: immutable copies made by libraries cannot be reached)."""
    buffer[:] = bytes(len(buffer))


def read_secret_fd(fd: int) -> bytearray:
    """Exactly 32 bytes, then EOF, read straight into a bytearray; the fd is closed."""
    buffer = bytearray(SECRET_LENGTH + 1)
    got = 0
    try:
        while got < len(buffer):
            count = os.readv(fd, [memoryview(buffer)[got:]])
            if count == 0:
                break
            got += count
    except OSError as exc:
        wipe(buffer)
        raise SecretInputError(f"cannot read the secret from fd {fd}: "
                               f"{exc.strerror or exc}") from None
    finally:
        try:
            os.close(fd)
        except OSError:
            pass
    if got != SECRET_LENGTH:
        wipe(buffer)
        found = "more" if got > SECRET_LENGTH else str(got)
        raise SecretInputError(f"expected exactly {SECRET_LENGTH} secret bytes on fd {fd}, "
                               f"got {found}")
    del buffer[SECRET_LENGTH:]
    return buffer


def signal_ready(fd: int, error: type[Exception]) -> None:
    """Write `READY` and close `fd`; a failure raises `error` (the daemon's startup error) with
    one line naming the descriptor."""
    try:
        os.write(fd, READY)
    except OSError as exc:
        raise error(f"cannot signal readiness on fd {fd}: {exc.strerror or exc}") from None
    finally:
        try:
            os.close(fd)
        except OSError:
            pass
