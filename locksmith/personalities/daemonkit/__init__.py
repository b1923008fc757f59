"""Pieces the enclave's TCP daemons share: locksmithd on 49504 and forwardd on 49505.

    ratelog.py   one line per event on stderr, and `RateLimitedLog` for floods (F7)
    lanes.py     `WorkLanes`: CPU work on worker threads, never on the event loop (F3)
    gate.py      `Gate`: runs `core.protocol.admission` on the event loop (F1)
    deadline.py  deadlines that name the limit they enforce, and a peer's printable address

Each daemon keeps its own numbers and texts; these modules carry only the mechanism, so a
hardening found for one port applies to the other.
"""
