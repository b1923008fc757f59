"""locksmithd's startup (enclave.md §3.1): everything that can refuse happens before the bind.

The steps run in the spec's order and each failure is a `StartupError` whose message is the
spec's text (exit 1). The port is bound last, so a daemon that cannot serve a bundle, cannot
verify its proof or cannot attest never appears on the network: holders are never asked to
submit shares to a daemon that could not use them.

    disable core dumps → read bundle → recognise + validate → per generation (V1: policy +
    proof) → usability (+ `--exclude-holder`, + key forwarding needs a threshold) → open NSM →
    (forwarding: the peer trust anchor; requester: own PCRs and approvals) → bind → bind the
    forwarding address without listening → `listening on …`

Key forwarding's address is bound at startup but not listened on (docs/forwarding.md §5.1): a
busy port stops the boot before any holder acts, and nobody is served there until forwardd
takes the socket over after the unlock.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from locksmith.core.bundle.checks import CheckedBundle
from locksmith.core.bundle.model import BundleV0
from locksmith.core.forwarding.messages import MAX_APPROVAL_BYTES
# The steps forwardd shares live in a neutral module (docs/forwarding.md §5.1); they are
# re-exported here under their old names for locksmithd's modules and tests.
from locksmith.personalities.daemonkit.deadline import socket_name
from locksmith.personalities.enclave_startup import (
    LOG_DEBUG_ALLOWED, LOG_DEV_ROOT, LOG_EXCLUDED, LOG_IMPORTED, LOG_TEST_SECRET, LOG_V0, LOG_V1,
    StartupError, check_usable, excluded_holders, harden, load_bundle, open_nsm,
    verify_bundle_generation,
)
from locksmith.personalities.enclave_startup import os_reason as _os_reason
from locksmith.personalities.locksmithd.options import ListenAddress, Options

__all__ = [
    "LOG_DEBUG_ALLOWED", "LOG_DEV_ROOT", "LOG_EXCLUDED", "LOG_IMPORTED", "LOG_TEST_SECRET",
    "LOG_V0", "LOG_V1", "Loaded", "StartupError", "bind", "bind_forwarding", "check_forwarding",
    "check_usable", "excluded_holders", "harden", "listening_line",
    "load_bundle", "open_nsm", "prepare", "read_approvals", "verify_generation",
]

LOG_FORWARDING_V0 = ("key forwarding needs a bundle with a threshold (V1 or ImportedV0); {path} "
                     "is a v0 bundle")
LOG_APPROVALS = "{n} approval file(s) read from {dir}"
LOG_APPROVAL_SKIPPED = "approval {path} skipped: {reason}"
LISTEN_BACKLOG = 128


@dataclass(frozen=True)
class Loaded:
    checked: CheckedBundle
    generation_time: int | None  # V1: the proof's timestamp in seconds (WebAuthn holders)
    excluded: tuple[int, ...] = ()  # holder indices refused by `--exclude-holder`


def check_forwarding(checked: CheckedBundle, options: Options) -> None:
    """Key forwarding (either role) needs a bundle with a threshold (docs/forwarding.md §2.1):
    a v0 bundle records none, so neither an approval count nor the requester's check has one."""
    if options.forwarding and isinstance(checked.bundle, BundleV0):
        raise StartupError(LOG_FORWARDING_V0.format(path=options.bundle))


def verify_generation(checked: CheckedBundle, options: Options,
                      say: Callable[[str], None]) -> int | None:
    """Step 3: V1 needs its policy and a verified proof; the legacy generations are logged as
    what they are. Returns the V1 generation time in seconds (None otherwise)."""
    return verify_bundle_generation(checked, policy=options.policy,
                                    trust_root=options.trust_root,
                                    allow_debug=options.allow_debug_enclave, say=say)


def bind(address: ListenAddress) -> socket.socket:
    """Step 6: a listening, non-blocking socket (handed to asyncio)."""
    listener = _bound(address)
    try:
        listener.listen(LISTEN_BACKLOG)
    except OSError as exc:
        listener.close()
        raise StartupError(f"cannot listen on {address}: {_os_reason(exc)}") from None
    listener.setblocking(False)
    return listener


def bind_forwarding(address: ListenAddress) -> socket.socket:
    """Bound, not listening, blocking: forwardd inherits it and calls `listen()` itself. Until
    then a peer's connection attempt is refused, which a requester retries."""
    return _bound(address)


def _bound(address: ListenAddress) -> socket.socket:
    try:
        infos = socket.getaddrinfo(address.host, address.port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE | socket.AI_NUMERICSERV)
    except socket.gaierror as exc:
        raise StartupError(f"cannot listen on {address}: {exc.strerror or exc}") from None
    family, kind, proto, _, sockaddr = infos[0]
    bound = socket.socket(family, kind, proto)
    try:
        bound.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        bound.bind(sockaddr)
    except OSError as exc:
        bound.close()
        raise StartupError(f"cannot listen on {address}: {_os_reason(exc)}") from None
    return bound


def read_approvals(directory: str, say: Callable[[str], None]) -> tuple[tuple[str, str], ...]:
    """(file name, text) of every `*.asc` of at most 16 KiB in `directory`, read once (§6
    step 5). A missing directory holds none; anything unreadable is skipped with a line, since
    approvals only ever widen who may receive the secret and the holders can still unlock."""
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return ()
    except OSError as exc:
        say(LOG_APPROVAL_SKIPPED.format(path=directory, reason=_os_reason(exc)))
        return ()
    found: list[tuple[str, str]] = []
    for name in names:
        path = Path(directory, name)
        if not name.endswith(".asc"):
            if not path.is_dir():
                say(LOG_APPROVAL_SKIPPED.format(path=path, reason="not an .asc file"))
            continue
        try:
            with open(path, "rb") as handle:
                raw = handle.read(MAX_APPROVAL_BYTES + 1)
        except OSError as exc:
            say(LOG_APPROVAL_SKIPPED.format(path=path, reason=_os_reason(exc)))
            continue
        if len(raw) > MAX_APPROVAL_BYTES:
            say(LOG_APPROVAL_SKIPPED.format(path=path,
                                            reason=f"larger than {MAX_APPROVAL_BYTES} bytes"))
            continue
        try:
            found.append((name, raw.decode("utf-8")))
        except UnicodeDecodeError:
            say(LOG_APPROVAL_SKIPPED.format(path=path, reason="not UTF-8 text"))
    say(LOG_APPROVALS.format(n=len(found), dir=directory))
    return tuple(found)


def listening_line(listener: socket.socket, checked: CheckedBundle) -> str:
    """`listening on <addr> (<generation> bundle, threshold <t or "per share set"> of <n>)`,
    with the address actually bound (so `--listen HOST:0` reports its port)."""
    threshold = "per share set" if checked.threshold is None else str(checked.threshold)
    return (f"listening on {socket_name(listener)} ({checked.generation} bundle, "
            f"threshold {threshold} of {len(checked.holders)})")


def prepare(options: Options, say: Callable[[str], None]) -> Loaded:
    """Steps 1–4 (the NSM and the binds are opened by the caller, which owns their lifetime)."""
    harden()
    checked = load_bundle(options.bundle)
    generation_time = verify_generation(checked, options, say)
    check_usable(checked, options.bundle)
    excluded = excluded_holders(checked, options.exclude_holders, options.bundle)
    check_forwarding(checked, options)
    for k in excluded:
        say(LOG_EXCLUDED.format(k=k, fpr=checked.holders[k].fingerprint))
    if checked.uses_public_test_secret:
        say(LOG_TEST_SECRET)
    return Loaded(checked, generation_time, excluded)
