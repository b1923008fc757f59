"""The `forwardd` personality: the key-forwarding provider (docs/forwarding.md §5).

An internal personality, like keyforkd: locksmithd starts it after the unlock when
`--forward-listen` is set, with the secret on an inherited pipe and the socket it bound at
startup. It is reached by its first argument (`locksmith forwardd …`); no symlink names it.

    options.py   the command line locksmithd passes (usage errors, exit 2)
    daemon.py    `main`: startup in the order of §5.1, then serve until stopped
    server.py    the asyncio server around `core.forwarding.provider` (§5.2–§5.4)
    pushes.py    the approval store pushed to it (A1/A2, §4.4), its lock and its log line
"""

from locksmith.personalities.forwardd.daemon import main

__all__ = ["main"]
