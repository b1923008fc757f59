"""locksmithd's CPU work off the event loop: one worker thread fed from two lanes (finding F3).

Everything that costs more than a few microseconds per submission runs there, never on the
event loop: identifying the signer (one hash of P of up to 256 KiB, then signature checks),
opening the share (X25519, AES-GCM), and the round's recovery search (which can take a second,
see `core.protocol.reconstitution`).

Why one thread: protocol.md §8 processes submissions strictly one at a time anyway, the GIL
leaves little to gain from more, and one thread keeps the round single-threaded.

Why two lanes: `URGENT` jobs (screening a submission: the issuer's key only; opening shares;
the round) always run before `LATER` jobs (a full scan over every holder key, needed only for
signatures whose issuer hints name no key that verifies — honest clients always name theirs).
A flood of such signatures queues behind itself, never in front of a holder.

The mechanism is shared with forwardd: `personalities/daemonkit/lanes.py`.
"""

from __future__ import annotations

from locksmith.personalities.daemonkit import lanes
from locksmith.personalities.daemonkit.lanes import LATER, URGENT

__all__ = ["LATER", "URGENT", "WorkLanes"]


class WorkLanes(lanes.WorkLanes):
    """`await lanes.run(call, lane=URGENT)`: `call()` on the one worker thread, lanes in order."""

    def __init__(self) -> None:
        super().__init__(1, name="work")
