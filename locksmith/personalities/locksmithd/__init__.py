"""The `locksmithd` personality (enclave.md §3; protocol.md §2–§10).

    options.py   argparse + environment fallbacks (usage errors, exit 2)
    startup.py   enclave.md §3.1 in order: core dumps, bundle, proof, usability, NSM, bind
    server.py    the asyncio server around `core.protocol.session` and the reconstitution round
    gate.py      `Limits`; admission to attestation slots (`core.protocol.admission`, F1)
    work.py      the worker thread and its two lanes: CPU work never runs on the loop (F3)
    identify.py  §7 steps 2–3 staged on the lanes: screen, scan if needed, open the share
    logsink.py   one line per event on stderr; rate-limited lines for floods (F7)
    forward_client.py  key forwarding's requester tasks beside the server (docs/forwarding.md §6)
    daemon.py    `main`: wires them together and turns the round's outcome into an exit status
"""

from locksmith.personalities.locksmithd.daemon import main

__all__ = ["main"]
