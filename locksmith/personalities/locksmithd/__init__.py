"""The `locksmithd` personality (enclave.md §3; protocol.md §2–§10).

    options.py   argparse + environment fallbacks (usage errors, exit 2)
    startup.py   enclave.md §3.1 in order: core dumps, bundle, proof, usability, NSM, bind
    server.py    the asyncio server around `core.protocol` and the reconstitution round
    logsink.py   one line per event on stderr; rate-limited lines for floods
    daemon.py    `main`: wires them together and turns the round's outcome into an exit status
"""

from locksmith.personalities.locksmithd.daemon import main

__all__ = ["main"]
