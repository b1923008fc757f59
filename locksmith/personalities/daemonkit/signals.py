"""SIGTERM/SIGINT as an exception outside the event loop, for the enclave daemons.

Why an exception: during startup and hand-over a daemon holds a secret or shares in local
variables; unwinding through `finally` blocks is what wipes them, and a handler that merely set
a flag would let the work run on. asyncio installs its own handlers while the loop runs and puts
back the defaults when it stops, so a daemon traps again after `asyncio.run`.
"""

from __future__ import annotations

import signal
from types import FrameType

__all__ = ["Terminated", "trap_termination"]


class Terminated(BaseException):
    """SIGTERM/SIGINT arrived; `signum` decides the exit status (128 + signum)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _terminate(signum: int, _frame: FrameType | None) -> None:
    raise Terminated(signum)


def trap_termination() -> None:
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _terminate)
