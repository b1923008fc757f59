"""The startup steps every enclave daemon that holds or serves the secret shares (enclave.md
§3.1): hardening, the bundle, its proof, its usability, `--exclude-holder`, the NSM.

locksmithd (`locksmithd/startup.py`, which adds the bind and the order of §3.1) and forwardd
(docs/forwarding.md §5.1: "loads the bundle as locksmithd does") run the same steps with the
same texts, so a bundle that one daemon refuses the other refuses for the same reason. Each
failure is a `StartupError` whose message is the spec's text (exit 1).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

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

__all__ = [
    "LOG_DEBUG_ALLOWED", "LOG_DEV_ROOT", "LOG_EXCLUDED", "LOG_IMPORTED", "LOG_TEST_SECRET",
    "LOG_V0", "LOG_V1", "StartupError", "check_usable", "excluded_holders", "harden",
    "load_bundle", "open_nsm", "os_reason", "verify_bundle_generation",
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


class StartupError(Exception):
    """A refusal of §3.1: print the message, exit 1, bind nothing."""


def _read(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


def os_reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def harden() -> None:
    """Before any share or secret can exist in memory."""
    try:
        disable_core_dumps()
    except OSError as exc:
        raise StartupError(f"cannot disable core dumps: {os_reason(exc)}") from None


def load_bundle(path: str) -> CheckedBundle:
    """Read, recognise (formats.md §5) and validate (§1–§4, §14) the bundle."""
    try:
        text = _read(path)
    except OSError as exc:
        raise StartupError(f"cannot read quorum bundle {path}: {os_reason(exc)}") from None
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
        raise StartupError(f"cannot read Keymaker PCR policy {path}: {os_reason(exc)}") \
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
        raise StartupError(f"cannot read trust root {path}: {os_reason(exc)}") from None
    try:
        return TrustAnchor.from_pem(raw)
    except ValueError as exc:
        raise StartupError(f"invalid trust root {path}: {exc}") from None


def verify_bundle_generation(checked: CheckedBundle, *, policy: str, trust_root: str | None,
                             allow_debug: bool, say: Callable[[str], None]) -> int | None:
    """V1 needs its policy and a verified proof; the legacy generations are logged as what
    they are. Returns the V1 generation time in seconds (None otherwise)."""
    bundle = checked.bundle
    if isinstance(bundle, BundleV1):
        pcr_policy = _policy(policy)
        anchor = None
        if trust_root is not None:
            anchor = _trust_root(trust_root)
            say(LOG_DEV_ROOT.format(path=trust_root))
        if allow_debug:
            say(LOG_DEBUG_ALLOWED)
        try:
            result = verify_keymaker_proof(bundle, pcr_policy, trust_root=anchor,
                                           allow_debug=allow_debug)
        except KeymakerProofError as exc:
            raise StartupError(str(exc)) from None
        say(LOG_V1.format(index=result.set_index, time=format_ms(result.generated_ms)))
        return result.generated_ms // 1000
    say(LOG_IMPORTED if isinstance(bundle, ImportedV0) else LOG_V0)
    return None


def check_usable(checked: CheckedBundle, path: str) -> None:
    """Certificates and `public_key` were parsed by `check_bundle` (a `CheckedBundle` holds
    parsed certificates only), so what is left is the arithmetic of the quorum."""
    bundle = checked.bundle
    if checked.threshold is None or isinstance(bundle, BundleV0):
        return  # v0: no threshold; the shardfile bounds the holder count
    t, m, n = checked.threshold, bundle.max, len(checked.holders)
    if not (1 <= t <= m <= MAX_HOLDERS and m == n):
        raise StartupError(f"invalid quorum bundle {path}: threshold {t}, max {m} and {n} "
                           f"holders are inconsistent")


def excluded_holders(checked: CheckedBundle, fingerprints: Sequence[str],
                     path: str) -> tuple[int, ...]:
    """`--exclude-holder`: every fingerprint must name a holder of the bundle (a typo must not
    silently exclude nobody), and with a fixed threshold at least that many holders must
    remain (otherwise the daemon could never unlock)."""
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
    """The device or the simulated NSM (never "none" for the enclave daemons)."""
    try:
        nsm = nsm_device.open_nsm(choice)
    except NsmError as exc:
        raise StartupError(f"cannot open the NSM ({choice.kind}): {exc}") from None
    assert nsm is not None  # the enclave daemons never resolve to "none"
    return nsm
