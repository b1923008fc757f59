"""locksmithd's log: one line per event on stderr, and rate-limited lines for floods.

Every line is `locksmithd: <text>` (enclave.md §3.2). Texts are built by the callers from fixed
phrases, counts, holder indices and fingerprints, never from shares, signatures or keys.

Events a peer can trigger at will without being a holder — limit hits, protocol violations,
accept errors — go through `RateLimitedLog`: at most one line per second per kind, and the
events suppressed in between are counted in the next line, so an attacker cannot flood the
console while an operator still sees that something happened and how often. The mechanism is
shared with forwardd (`personalities/daemonkit/ratelog.py`); this module fixes locksmithd's
program name and wording.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from locksmith.personalities.daemonkit import ratelog
from locksmith.personalities.daemonkit.ratelog import INTERVAL

__all__ = ["INTERVAL", "PROG", "RateLimitedLog", "log"]

PROG = "locksmithd"


def log(text: str) -> None:
    """One line on stderr; a closed or broken stderr must not take the daemon down."""
    ratelog.stderr_line(PROG, text)


class RateLimitedLog(ratelog.RateLimitedLog):
    """`hit(kind, text)`: the first event of a quiet kind is logged at once; later ones within a
    second are counted and reported together one second after the previous line, e.g.
    `<newest text> (3 events of this kind since the last report)`."""

    def __init__(self, write: Callable[[str], None] = log,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(write, clock)
