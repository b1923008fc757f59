"""A daemon's log: one line per event on stderr, and rate-limited lines for floods.

Every line is `<program>: <text>` (enclave.md §3.2). Texts are built by the callers from fixed
phrases, counts, holder indices and fingerprints, never from shares, signatures or keys.

Events a peer can trigger at will — limit hits, protocol violations, accept errors, refusals —
go through `RateLimitedLog`: at most one line per second per kind, and the events suppressed
in between are counted in the next line, so an attacker cannot flood the console while an
operator still sees that something happened and how often.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["INTERVAL", "RateLimitedLog", "events_suffix", "loop_error_line", "stderr_line"]

INTERVAL = 1.0  # seconds between two lines of one kind (enclave.md §3.2)


def stderr_line(program: str, text: str) -> None:
    """One line on stderr; a closed or broken stderr must not take the daemon down."""
    try:
        sys.stderr.write(f"{program}: {text}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def events_suffix(count: int) -> str:
    """locksmithd's wording: `count` events (the reported one included) since the last line."""
    return "" if count == 1 else f" ({count} events of this kind since the last report)"


def loop_error_line(context: dict[str, object]) -> tuple[str, str]:
    """Kind and line for what asyncio hands a loop's exception handler. asyncio reports
    accept() failures there (and pauses accepting on EMFILE/ENFILE by itself); anything else is
    a bug worth one bounded line, never a traceback flood."""
    message = str(context.get("message", "unexpected event loop error"))
    exc = context.get("exception")
    detail = f": {type(exc).__name__}: {exc}" if exc is not None else ""
    if "accept" in message:
        return "accept", f"accept error{detail}; the listener keeps serving"
    return "internal", f"internal error: {message}{detail}"[:512]


@dataclass
class _Kind:
    last: float = -INTERVAL  # monotonic time of the last line written
    pending: int = 0  # events since that line, not yet reported
    latest: str = ""  # the text of the newest of them
    timer: asyncio.TimerHandle | None = None


class RateLimitedLog:
    """`hit(kind, text)`: the first event of a quiet kind is logged at once; later ones within a
    second are counted and reported together one second after the previous line, as the newest
    text followed by `suffix(count)`, e.g.
    `<newest text> (3 events of this kind since the last report)`."""

    def __init__(self, write: Callable[[str], None],
                 clock: Callable[[], float] = time.monotonic,
                 suffix: Callable[[int], str] = events_suffix) -> None:
        self._write = write
        self._clock = clock
        self._suffix = suffix
        self._kinds: dict[str, _Kind] = {}

    def hit(self, kind: str, text: str) -> None:
        state = self._kinds.setdefault(kind, _Kind())
        now = self._clock()
        if state.pending == 0 and now - state.last >= INTERVAL:
            state.last = now
            self._write(text)
            return
        state.pending += 1
        state.latest = text
        if state.timer is None:
            delay = max(0.0, state.last + INTERVAL - now)
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # outside the event loop: report at once
                self._flush(state)
                return
            state.timer = loop.call_later(delay, self._flush, state)

    def flush(self) -> None:
        """Report every pending count now (shutdown)."""
        for state in self._kinds.values():
            if state.timer is not None:
                state.timer.cancel()
            self._flush(state)

    def _flush(self, state: _Kind) -> None:
        state.timer = None
        if state.pending == 0:
            return
        count, state.pending = state.pending, 0
        state.last = self._clock()
        self._write(state.latest + self._suffix(count))
