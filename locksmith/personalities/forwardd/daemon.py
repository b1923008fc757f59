"""`forwardd`: serve the master secret to attested peers until stopped (docs/forwarding.md §5.1).

    options (exit 2) → disable core dumps → the secret from --secret-fd → the bundle as
    locksmithd loads it (V1 proof verified) → the secret must be the bundle's (recovered-key
    check) → NSM: own PCR0/1/2 → the peer trust anchor → listen() on --listen-fd →
    `forwarding provider listening on …` → serve (server.py) until SIGTERM/SIGINT (143/130)

Every refusal before serving is one line and exit 1, with nothing served. The secret is wiped
on every way out (best effort: Python cannot reach copies made inside libraries).

Boot-path rule (README §2): like locksmithd, nothing here imports typer, click, httpx, uvicorn,
starlette or PGPy.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import sys

from locksmith.core.attestation.nsm import Nsm
from locksmith.core.bundle.checks import CheckedBundle
from locksmith.core.protocol.holders import BundleHolders
from locksmith.core.protocol.messages import submission_bundle_hash
from locksmith.core.protocol.reconstitution import KeyCheck, check_recovered_key
from locksmith.personalities.daemonkit.deadline import socket_name
from locksmith.personalities.daemonkit.signals import Terminated, trap_termination
from locksmith.personalities.enclave_startup import (
    LOG_TEST_SECRET, StartupError, check_usable, excluded_holders, harden, load_bundle, open_nsm,
    os_reason, verify_bundle_generation,
)
from locksmith.personalities.forwardd.options import Options, UsageError, parse_options, usage
from locksmith.personalities.forwardd.server import Forwardd, Provision, log
from locksmith.personalities.forwarding_trust import forwarding_anchor, own_pcrs
from locksmith.personalities.secret_fd import (
    SecretInputError, read_secret_fd, signal_ready, wipe,
)

__all__ = ["main"]

LISTEN_BACKLOG = 128
V0_REFUSED = ("key forwarding needs a bundle with a threshold (V1 or ImportedV0); {path} is a "
              "v0 bundle")
LOG_EXCLUDED = "ignoring approvals by holder {k} ({fpr}) at the operator's request"
LISTENING = "forwarding provider listening on {addr} (bundle {bundle}, PCR0 {pcr0})"


def _stopped(signum: int) -> int:
    log(f"stopped by {signal.Signals(signum).name}; the secret was wiped")
    return 128 + signum


def take_listener(fd: int) -> socket.socket:
    """The TCP socket locksmithd bound (not listening yet), now listening and non-blocking."""
    try:
        listener = socket.socket(fileno=fd)
    except OSError as exc:
        raise StartupError(f"cannot use --listen-fd {fd}: {os_reason(exc)}") from None
    try:
        if listener.type != socket.SOCK_STREAM or listener.family not in (
                socket.AF_INET, socket.AF_INET6):
            raise StartupError(f"cannot use --listen-fd {fd}: not a TCP socket")
        listener.listen(LISTEN_BACKLOG)
    except OSError as exc:
        listener.close()
        raise StartupError(f"cannot listen on --listen-fd {fd}: {os_reason(exc)}") from None
    except StartupError:
        listener.close()
        raise
    listener.setblocking(False)
    return listener


def _bundle(options: Options) -> tuple[CheckedBundle, BundleHolders, tuple[int, ...]]:
    checked = load_bundle(options.bundle)
    generation_time = verify_bundle_generation(
        checked, policy=options.policy, trust_root=options.trust_root,
        allow_debug=options.allow_debug_enclave, say=log)
    check_usable(checked, options.bundle)
    if checked.threshold is None:
        raise StartupError(V0_REFUSED.format(path=options.bundle))
    excluded = excluded_holders(checked, options.exclude_holders, options.bundle)
    for k in excluded:
        log(LOG_EXCLUDED.format(k=k, fpr=checked.holders[k].fingerprint))
    if checked.uses_public_test_secret:
        log(LOG_TEST_SECRET)
    holders = BundleHolders.from_bundle(checked, generation_time=generation_time)
    return checked, holders, excluded


def main(argv: list[str]) -> int:
    try:
        options = parse_options(argv)
    except SystemExit as exc:  # argparse: usage errors (2) and --help (0), already printed
        return exc.code if isinstance(exc.code, int) else 2
    except UsageError as exc:
        sys.stderr.write(usage())
        log(f"error: {exc}")
        return 2
    trap_termination()
    secret = bytearray()
    nsm: Nsm | None = None
    listener: socket.socket | None = None
    try:
        if options.nsm.warning is not None:
            log(f"warning: {options.nsm.warning}")
        harden()
        try:
            secret = read_secret_fd(options.secret_fd)
        except SecretInputError as exc:
            raise StartupError(f"cannot read the secret: {exc}") from None
        checked, holders, excluded = _bundle(options)
        if check_recovered_key(secret, checked.quorum_certificate) is not KeyCheck.MATCH:
            raise StartupError("the secret does not match the bundle")
        nsm = open_nsm(options.nsm)
        pcrs = own_pcrs(nsm)
        anchor = forwarding_anchor(options.nsm, log)
        bundle_hash = submission_bundle_hash(checked.bundle)
        assert bundle_hash is not None and checked.threshold is not None  # not v0 (above)
        listener = take_listener(options.listen_fd)
        log(LISTENING.format(addr=socket_name(listener), bundle=bundle_hash.hex()[:16],
                             pcr0=pcrs.pcr0.hex()[:16]))
        if options.ready_fd is not None:
            signal_ready(options.ready_fd, StartupError)
        provision = Provision(secret, bundle_hash, pcrs, holders, checked.threshold, anchor,
                              excluded)
        signum = asyncio.run(Forwardd(provision, nsm=nsm).serve(listener))
        trap_termination()  # asyncio restored the defaults when it removed its handlers
        return _stopped(signum)
    except StartupError as exc:
        log(str(exc))
        return 1
    except Terminated as exc:
        return _stopped(exc.signum)
    except KeyboardInterrupt:  # SIGINT in the instant between asyncio's handler and ours
        return _stopped(signal.SIGINT)
    finally:
        wipe(secret)
        if listener is not None:
            listener.close()
        if nsm is not None:
            nsm.close()
