"""`locksmithd`: serve TCP 49504 until the quorum is reached, then hand the secret to keyforkd.

    options (exit 2) → startup §3.1 (exit 1, nothing bound) → serve (server.py) → outcome:
      Unlocked  → start keyforkd with the secret (exit 1: it did not start), then forwardd when
                  `--forward-listen` is set (its failure is only logged), wipe it, exit 0
      Tampered  → exit 1 (the bundle's public key carries a foreign subkey)
      Stopped   → SIGTERM/SIGINT: shares wiped, exit 143/130

Key forwarding (docs/forwarding.md): with `--forward-from`, the requester tasks
(forward_client.py) run beside the 49504 server and a secret they receive ends the collection
like a quorum; with `--forward-listen`, the address is bound at startup and handed to forwardd
after keyforkd is ready. Without either, nothing of key forwarding is even imported.

Boot-path rule (README §2): nothing here, nor anything it imports, loads typer, click, httpx,
uvicorn, starlette or PGPy; `tests/test_locksmithd.py` checks `sys.modules` after an unlock.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from locksmith.core.attestation.nsm import Nsm
from locksmith.core.keyfork.ipc import SocketLocation
from locksmith.core.protocol.messages import submission_bundle_hash
from locksmith.core.protocol.session import BundleHolders, ReconstitutionRound
from locksmith.personalities.daemonkit.deadline import socket_name
from locksmith.personalities.daemonkit.signals import Terminated, trap_termination
from locksmith.personalities.keyforkd_launch import KeyforkdStartError, start_keyforkd
from locksmith.personalities.launch import DaemonStartError, own_command, start_daemon
from locksmith.personalities.locksmithd.logsink import log
from locksmith.personalities.locksmithd.options import (
    Options, UsageError, parse_options, usage,
)
from locksmith.personalities.locksmithd.server import (
    Locksmithd, Outcome, Stopped, Tampered, Unlocked,
)
from locksmith.personalities.locksmithd.startup import (
    Loaded, StartupError, bind, bind_forwarding, listening_line, open_nsm,
    prepare, read_approvals,
)

__all__ = ["main"]

KEYFORKD_READY_TIMEOUT = 30.0  # enclave.md §3.3 step 2


def _stopped(signum: int) -> int:
    log(f"stopped by {signal.Signals(signum).name}; every share held was wiped")
    return 128 + signum


def _wipe(buffer: bytearray) -> None:
    buffer[:] = bytes(len(buffer))


def _hand_over(secret: bytearray, location: SocketLocation) -> int:
    """enclave.md §3.3: keyforkd gets the secret through a pipe (the caller wipes ours)."""
    try:
        # keyforkd creates $XDG_RUNTIME_DIR/keyforkd/ itself when the path is that default
        # (enclave.md §3), also when it arrives explicitly with --socket as here.
        log(f"starting keyforkd at {location.path}")
        pid = start_keyforkd(secret, location.path, timeout=KEYFORKD_READY_TIMEOUT)
    except KeyforkdStartError as exc:
        log(str(exc))  # `keyforkd did not start: <reason>`
        return 1
    log(f"keyforkd is ready at {location.path} (pid {pid})")
    return 0


def forwardd_arguments(options: Options, listen_fd: int) -> list[str]:
    """forwardd's own options (docs/forwarding.md §5.1), locksmithd's meanings kept; the
    launcher adds `--secret-fd`."""
    args = ["--listen-fd", str(listen_fd), "--bundle", options.bundle,
            "--keymaker-pcr-policy", options.policy, "--nsm", options.nsm.kind]
    if options.nsm.directory is not None:
        args += ["--nsm-dir", str(options.nsm.directory)]
    if options.trust_root is not None:
        args += ["--trust-root", options.trust_root]
    if options.allow_debug_enclave:
        args.append("--allow-debug-enclave")
    for fpr in options.exclude_holders:
        args += ["--exclude-holder", fpr]
    return args


def _start_provider(secret: bytearray, bound: socket.socket, options: Options) -> None:
    """§5.1: forwardd takes the bound socket and the secret, and is not waited for: the
    application's start does not depend on it, so a failure is only logged."""
    address = socket_name(bound)
    try:
        pid = start_daemon(own_command("forwardd"), secret, program="forwardd",
                           label="forwarding provider",
                           args=forwardd_arguments(options, bound.fileno()),
                           pass_fds=(bound.fileno(),))
    except DaemonStartError as exc:
        log(str(exc))  # `forwarding provider did not start: <reason>`
        return
    log(f"forwarding provider started on {address} (forwardd, pid {pid})")


def _finish(outcome: Outcome, location: SocketLocation, options: Options,
            forward: socket.socket | None) -> int:
    if isinstance(outcome, Stopped):
        return _stopped(outcome.signum)
    if isinstance(outcome, Tampered):
        log("exiting: the bundle was altered after generation; restore the original bundle")
        return 1
    assert isinstance(outcome, Unlocked)
    log("listener closed; every other connection was closed without a response")
    try:
        status = _hand_over(outcome.secret, location)
        if status == 0 and forward is not None:
            _start_provider(outcome.secret, forward, options)
    finally:
        _wipe(outcome.secret)
    if status == 0:
        log("the secret was wiped here; exiting")
    return status


Companion = Callable[[], Coroutine[Any, Any, None]]


def _requester(options: Options, loaded: Loaded, nsm: Nsm,
               server: Locksmithd) -> Companion | None:
    """§6: the requester tasks, or None without `--forward-from`. Imported only when asked
    for, so that an image without key forwarding boots exactly as before."""
    if not options.forward_from:
        return None
    from locksmith.core.forwarding.requester import approvals_to_present
    from locksmith.personalities.forwarding_trust import forwarding_anchor, own_pcrs
    from locksmith.personalities.locksmithd.forward_client import ForwardClient, Requester

    anchor = forwarding_anchor(options.nsm, log)
    bundle_hash = submission_bundle_hash(loaded.checked.bundle)
    assert bundle_hash is not None  # startup refused a v0 bundle
    texts = [text for _, text in read_approvals(options.approvals, log)]
    chosen = approvals_to_present(texts, bundle_hash=bundle_hash,
                                  own_pcrs=own_pcrs(nsm))
    requester = Requester(providers=options.forward_from, bundle_hash=bundle_hash,
                          public_key=loaded.checked.quorum_certificate, anchor=anchor,
                          approvals=chosen)
    return ForwardClient(requester, server).run


def main(argv: list[str]) -> int:
    try:
        options = parse_options(argv, os.environ)
    except SystemExit as exc:  # argparse: usage errors (2) and --help (0), already printed
        return exc.code if isinstance(exc.code, int) else 2
    except UsageError as exc:
        sys.stderr.write(usage())
        log(f"error: {exc}")
        return 2
    trap_termination()
    nsm: Nsm | None = None
    round_: ReconstitutionRound | None = None
    listener = None
    forward: socket.socket | None = None
    try:
        if options.nsm.warning is not None:
            log(f"warning: {options.nsm.warning}")
        loaded = prepare(options, log)
        holders = BundleHolders.from_bundle(loaded.checked,
                                            generation_time=loaded.generation_time)
        round_ = ReconstitutionRound.from_bundle(loaded.checked, excluded=loaded.excluded)
        nsm = open_nsm(options.nsm)
        server = Locksmithd(holders=holders, round=round_, nsm=nsm)
        companion = _requester(options, loaded, nsm, server)
        listener = bind(options.listen)
        if options.forward_listen is not None:
            forward = bind_forwarding(options.forward_listen)
        log(listening_line(listener, loaded.checked))
        if forward is not None:
            log(f"forwarding address {socket_name(forward)} reserved: forwardd serves it "
                "after the unlock")
        outcome = asyncio.run(server.serve(listener, companion))
        trap_termination()  # asyncio restored the defaults when it removed its handlers
        return _finish(outcome, options.keyforkd_socket, options, forward)
    except StartupError as exc:
        log(str(exc))
        return 1
    except Terminated as exc:
        return _stopped(exc.signum)
    except KeyboardInterrupt:  # SIGINT in the instant between asyncio's handler and ours
        return _stopped(signal.SIGINT)
    finally:
        if round_ is not None and not round_.finished:
            round_.wipe()
        if listener is not None:
            listener.close()
        if forward is not None:
            forward.close()
        if nsm is not None:
            nsm.close()
