"""locksmithd's startup (enclave.md §3.1): everything that can refuse happens before the bind.

The steps run in the spec's order and each failure is a `StartupError` whose message is the
spec's text (exit 1). The port is bound last, so a daemon that cannot serve a bundle, cannot
verify its proof or cannot attest never appears on the network: holders are never asked to
submit shares to a daemon that could not use them.

    disable core dumps → read bundle → recognise + validate → per generation (V1: policy +
    proof) → usability (+ `--exclude-holder`) → open NSM → bind → `listening on …`
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from locksmith.core.attestation.nsm import Nsm, NsmChoice, NsmError
from locksmith.core.attestation.pcr_policy import PcrPolicy, PcrPolicyError
from locksmith.core.attestation.verify import TrustAnchor, format_ms
from locksmith.core.bundle.checks import CheckedBundle, check_bundle
from locksmith.core.bundle.keymaker_proof import KeymakerProofError, verify_keymaker_proof
from locksmith.core.bundle.model import (
    MAX_HOLDERS, BundleError, BundleV0, BundleV1, ImportedV0, parse_bundle,
)
from locksmith.personalities import nsm_device
from locksmith.personalities.hardening import disable_core_dumps
from locksmith.personalities.locksmithd.options import ListenAddress, Options

__all__ = [
    "Loaded", "StartupError", "bind", "check_usable", "excluded_holders", "harden",
    "listening_line", "load_bundle", "open_nsm", "prepare", "verify_generation",
]

LOG_V1 = "V1 bundle verified (PCR set {index}, generated {time})"
LOG_IMPORTED = ("Legacy V0 — no Keymaker generation proof; using image-baked recovery "
                "metadata")
LOG_V0 = ("v0 bundle — no Keymaker generation proof; shares are grouped by their claimed "
          "threshold")
LOG_DEV_ROOT = ("warning: the Keymaker proof is verified against the development trust root "
                "{path}, not the AWS Nitro root")
LOG_DEBUG_ALLOWED = ("warning: --allow-debug-enclave: debug-mode (all-zero) Keymaker PCR sets "
                     "are accepted")
LOG_TEST_SECRET = ("warning: this bundle's quorum key derives from the PUBLIC test secret "
                   "07x32; anything encrypted to it is readable by anyone")
LOG_EXCLUDED = "excluding holder {k} ({fpr}) at the operator's request: its submissions are refused"
LISTEN_BACKLOG = 128


class StartupError(Exception):
    """A refusal of §3.1: print the message, exit 1, bind nothing."""


@dataclass(frozen=True)
class Loaded:
    checked: CheckedBundle
    generation_time: int | None  # V1: the proof's timestamp in seconds (WebAuthn holders)
    excluded: tuple[int, ...] = ()  # holder indices refused by `--exclude-holder`


def _read(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


def _os_reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def harden() -> None:
    """Step 1: before any share can exist in memory."""
    try:
        disable_core_dumps()
    except OSError as exc:
        raise StartupError(f"cannot disable core dumps: {_os_reason(exc)}") from None


def load_bundle(path: str) -> CheckedBundle:
    """Step 2: read, recognise (formats.md §5) and validate (§1–§4, §14) the bundle."""
    try:
        text = _read(path)
    except OSError as exc:
        raise StartupError(f"cannot read quorum bundle {path}: {_os_reason(exc)}") from None
    try:
        return check_bundle(parse_bundle(text))
    except BundleError as exc:
        raise StartupError(f"invalid quorum bundle {path}: {exc}") from None


def _policy(path: str) -> PcrPolicy:
    try:
        raw = _read(path)
    except FileNotFoundError:
        raise StartupError(f"Keymaker PCR policy is required for V1 bundles: {path}") from None
    except OSError as exc:
        raise StartupError(f"cannot read Keymaker PCR policy {path}: {_os_reason(exc)}") \
            from None
    try:
        return PcrPolicy.from_json(raw)
    except PcrPolicyError as exc:
        where = f" ({path}: {exc.detail})" if exc.detail else f" ({path})"
        raise StartupError(f"{exc.message}{where}") from None


def _trust_root(path: str) -> TrustAnchor:
    try:
        raw = _read(path)
    except OSError as exc:
        raise StartupError(f"cannot read trust root {path}: {_os_reason(exc)}") from None
    try:
        return TrustAnchor.from_pem(raw)
    except ValueError as exc:
        raise StartupError(f"invalid trust root {path}: {exc}") from None


def verify_generation(checked: CheckedBundle, options: Options,
                      say: Callable[[str], None]) -> int | None:
    """Step 3: V1 needs its policy and a verified proof; the legacy generations are logged as
    what they are. Returns the V1 generation time in seconds (None otherwise)."""
    bundle = checked.bundle
    if isinstance(bundle, BundleV1):
        policy = _policy(options.policy)
        anchor = None
        if options.trust_root is not None:
            anchor = _trust_root(options.trust_root)
            say(LOG_DEV_ROOT.format(path=options.trust_root))
        if options.allow_debug_enclave:
            say(LOG_DEBUG_ALLOWED)
        try:
            result = verify_keymaker_proof(bundle, policy, trust_root=anchor,
                                           allow_debug=options.allow_debug_enclave)
        except KeymakerProofError as exc:
            raise StartupError(str(exc)) from None
        say(LOG_V1.format(index=result.set_index, time=format_ms(result.generated_ms)))
        return result.generated_ms // 1000
    say(LOG_IMPORTED if isinstance(bundle, ImportedV0) else LOG_V0)
    return None


def check_usable(checked: CheckedBundle, path: str) -> None:
    """Step 4. Certificates and `public_key` were parsed by `check_bundle` (a `CheckedBundle`
    holds parsed certificates only), so what is left is the arithmetic of the quorum."""
    bundle = checked.bundle
    if checked.threshold is None or isinstance(bundle, BundleV0):
        return  # v0: no threshold; the shardfile bounds the holder count
    t, m, n = checked.threshold, bundle.max, len(checked.holders)
    if not (1 <= t <= m <= MAX_HOLDERS and m == n):
        raise StartupError(f"invalid quorum bundle {path}: threshold {t}, max {m} and {n} "
                           f"holders are inconsistent")


def excluded_holders(checked: CheckedBundle, fingerprints: Sequence[str],
                     path: str) -> tuple[int, ...]:
    """Step 4, `--exclude-holder`: every fingerprint must name a holder of the bundle (a typo
    must not silently exclude nobody), and with a fixed threshold at least that many holders
    must remain (otherwise the daemon could never unlock)."""
    positions: dict[str, list[int]] = {}
    for index, cert in enumerate(checked.holders):
        positions.setdefault(cert.fingerprint.upper(), []).append(index)
    excluded: set[int] = set()
    for fpr in fingerprints:
        if fpr not in positions:
            raise StartupError(f"--exclude-holder {fpr}: no holder of the quorum bundle {path} "
                               "has this fingerprint")
        excluded.update(positions[fpr])
    t, n = checked.threshold, len(checked.holders)
    if t is not None and n - len(excluded) < t:
        raise StartupError(f"--exclude-holder: excluding {len(excluded)} of {n} holders leaves "
                           f"fewer than the threshold {t}")
    return tuple(sorted(excluded))


def open_nsm(choice: NsmChoice) -> Nsm:
    """Step 5."""
    try:
        nsm = nsm_device.open_nsm(choice)
    except NsmError as exc:
        raise StartupError(f"cannot open the NSM ({choice.kind}): {exc}") from None
    assert nsm is not None  # locksmithd never resolves to "none"
    return nsm


def bind(address: ListenAddress) -> socket.socket:
    """Step 6: a listening, non-blocking socket (handed to asyncio)."""
    try:
        infos = socket.getaddrinfo(address.host, address.port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE | socket.AI_NUMERICSERV)
    except socket.gaierror as exc:
        raise StartupError(f"cannot listen on {address}: {exc.strerror or exc}") from None
    family, kind, proto, _, sockaddr = infos[0]
    listener = socket.socket(family, kind, proto)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(sockaddr)
        listener.listen(LISTEN_BACKLOG)
    except OSError as exc:
        listener.close()
        raise StartupError(f"cannot listen on {address}: {_os_reason(exc)}") from None
    listener.setblocking(False)
    return listener


def listening_line(listener: socket.socket, checked: CheckedBundle) -> str:
    """`listening on <addr> (<generation> bundle, threshold <t or "per share set"> of <n>)`,
    with the address actually bound (so `--listen HOST:0` reports its port)."""
    host, port = listener.getsockname()[:2]
    threshold = "per share set" if checked.threshold is None else str(checked.threshold)
    return (f"listening on {ListenAddress(host, port)} ({checked.generation} bundle, "
            f"threshold {threshold} of {len(checked.holders)})")


def prepare(options: Options, say: Callable[[str], None]) -> Loaded:
    """Steps 1–4 (the NSM and the bind are opened by the caller, which owns their lifetime)."""
    harden()
    checked = load_bundle(options.bundle)
    generation_time = verify_generation(checked, options, say)
    check_usable(checked, options.bundle)
    excluded = excluded_holders(checked, options.exclude_holders, options.bundle)
    for k in excluded:
        say(LOG_EXCLUDED.format(k=k, fpr=checked.holders[k].fingerprint))
    if checked.uses_public_test_secret:
        say(LOG_TEST_SECRET)
    return Loaded(checked, generation_time, excluded)
