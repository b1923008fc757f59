"""`locksmithd`: serve TCP 49504 until the quorum is reached, then hand the secret to keyforkd.

    options (exit 2) → startup §3.1 (exit 1, nothing bound) → serve (server.py) → outcome:
      Unlocked  → start keyforkd with the secret, wipe it, exit 0 (or 1: keyforkd did not start)
      Tampered  → exit 1 (the bundle's public key carries a foreign subkey)
      Stopped   → SIGTERM/SIGINT: shares wiped, exit 143/130

Boot-path rule (README §2): nothing here, nor anything it imports, loads typer, click, httpx,
uvicorn, starlette or PGPy; `tests/test_locksmithd.py` checks `sys.modules` after an unlock.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from types import FrameType

from locksmith.core.attestation.nsm import Nsm
from locksmith.core.keyfork.ipc import SocketLocation
from locksmith.core.protocol.session import BundleHolders, ReconstitutionRound
from locksmith.personalities.keyforkd_launch import KeyforkdStartError, start_keyforkd
from locksmith.personalities.locksmithd.logsink import log
from locksmith.personalities.locksmithd.options import UsageError, parse_options, usage
from locksmith.personalities.locksmithd.server import (
    Locksmithd, Outcome, Stopped, Tampered, Unlocked,
)
from locksmith.personalities.locksmithd.startup import (
    StartupError, bind, listening_line, open_nsm, prepare,
)

__all__ = ["main"]

KEYFORKD_READY_TIMEOUT = 30.0  # enclave.md §3.3 step 2


class _Terminated(BaseException):
    """SIGTERM/SIGINT outside the event loop (startup, keyforkd start): unwind and wipe."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _terminate(signum: int, _frame: FrameType | None) -> None:
    raise _Terminated(signum)


def _trap_signals() -> None:
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _terminate)


def _stopped(signum: int) -> int:
    log(f"stopped by {signal.Signals(signum).name}; every share held was wiped")
    return 128 + signum


def _wipe(buffer: bytearray) -> None:
    buffer[:] = bytes(len(buffer))


def _hand_over(secret: bytearray, location: SocketLocation) -> int:
    """enclave.md §3.3: keyforkd gets the secret through a pipe; we wipe ours either way."""
    try:
        # keyforkd creates $XDG_RUNTIME_DIR/keyforkd/ itself when the path is that default
        # (enclave.md §3), also when it arrives explicitly with --socket as here.
        log(f"starting keyforkd at {location.path}")
        pid = start_keyforkd(secret, location.path, timeout=KEYFORKD_READY_TIMEOUT)
    except KeyforkdStartError as exc:
        log(str(exc))  # `keyforkd did not start: <reason>`
        return 1
    finally:
        _wipe(secret)
    log(f"keyforkd is ready at {location.path} (pid {pid}); the secret was wiped here; exiting")
    return 0


def _finish(outcome: Outcome, location: SocketLocation) -> int:
    if isinstance(outcome, Stopped):
        return _stopped(outcome.signum)
    if isinstance(outcome, Tampered):
        log("exiting: the bundle was altered after generation; restore the original bundle")
        return 1
    assert isinstance(outcome, Unlocked)
    log("listener closed; every other connection was closed without a response")
    return _hand_over(outcome.secret, location)


def main(argv: list[str]) -> int:
    try:
        options = parse_options(argv, os.environ)
    except SystemExit as exc:  # argparse: usage errors (2) and --help (0), already printed
        return exc.code if isinstance(exc.code, int) else 2
    except UsageError as exc:
        sys.stderr.write(usage())
        log(f"error: {exc}")
        return 2
    _trap_signals()
    nsm: Nsm | None = None
    round_: ReconstitutionRound | None = None
    listener = None
    try:
        if options.nsm.warning is not None:
            log(f"warning: {options.nsm.warning}")
        loaded = prepare(options, log)
        holders = BundleHolders.from_bundle(loaded.checked,
                                            generation_time=loaded.generation_time)
        round_ = ReconstitutionRound.from_bundle(loaded.checked, excluded=loaded.excluded)
        nsm = open_nsm(options.nsm)
        listener = bind(options.listen)
        log(listening_line(listener, loaded.checked))
        server = Locksmithd(holders=holders, round=round_, nsm=nsm)
        outcome = asyncio.run(server.serve(listener))
        _trap_signals()  # asyncio restored the defaults when it removed its handlers
        return _finish(outcome, options.keyforkd_socket)
    except StartupError as exc:
        log(str(exc))
        return 1
    except _Terminated as exc:
        return _stopped(exc.signum)
    except KeyboardInterrupt:  # SIGINT in the instant between asyncio's handler and ours
        return _stopped(signal.SIGINT)
    finally:
        if round_ is not None and not round_.finished:
            round_.wipe()
        if listener is not None:
            listener.close()
        if nsm is not None:
            nsm.close()
