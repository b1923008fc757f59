"""Loading a quorum bundle for a CLI command: one path, the same messages everywhere.

    load_bundle(path, proof_options) -> CheckedBundle       (encrypt, send-shard)
      = read_bundle(path)                                   (parse + formats.md checks)
      + verify_proof(bundle, proof_options.load())           (V1 only, keymaker.md §8.2)

`inspect` uses the two halves separately so that it can report a failed proof instead of stopping.
The proof inputs (`--keymaker-pcr-policy`, default `.caution/keymaker-pcr-policy.json` if it
exists; `--trust-root`; `--allow-debug-enclave`, cli.md §1) are loaded only when a V1 bundle
needs them, so a v0 bundle is never refused over a policy file it does not use.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import typer

from locksmith.core.attestation.pcr_policy import PcrPolicy, PcrPolicyError
from locksmith.core.attestation.verify import CertificateChainError, TrustAnchor, format_ms
from locksmith.core.bundle.checks import CheckedBundle, check_bundle
from locksmith.core.bundle.keymaker_proof import (
    NO_POLICY_WARNING, KeymakerProofError, ProofResult, verify_keymaker_proof,
)
from locksmith.core.bundle.model import BundleError, BundleV1, parse_bundle
from locksmith.personalities.caution import ui
from locksmith.personalities.caution.attestation import development_root_hint, load_trust_root
from locksmith.personalities.caution.ui import CliError

DEFAULT_BUNDLE = Path(".caution/quorum-bundle.json")
DEFAULT_POLICY = Path(".caution/keymaker-pcr-policy.json")
TEST_SECRET_WARNING = ("this bundle's quorum key comes from the public test secret; anything "
                       "encrypted to it can be read by anyone")
MAX_POLICY_FILE = 1024 * 1024
CHAIN_FAILURE = str(CertificateChainError())  # within a proof error's text, which wraps it

# The three proof options of cli.md §1, declared once for every command that verifies a proof.
POLICY_OPTION: Optional[Path] = typer.Option(
    None, "--keymaker-pcr-policy", metavar="FILE",
    help="Keymaker PCR policy for V1 proofs (default .caution/keymaker-pcr-policy.json if it "
         "exists).")
TRUST_ROOT_OPTION: Optional[Path] = typer.Option(
    None, "--trust-root", metavar="PEM",
    help="Trust this root instead of the AWS Nitro root (simulated-NSM Keymakers).")
ALLOW_DEBUG_OPTION: bool = typer.Option(
    False, "--allow-debug-enclave", help="Accept a debug-mode Keymaker (all-zero PCR0-2).")
# For the commands that encrypt to a bundle or create one: an unchecked proof means any Nitro
# enclave (any code, same AWS root) could have made the bundle and would receive the secrets.
UNSAFE_NO_POLICY_OPTION: bool = typer.Option(
    False, "--unsafe-no-keymaker-policy",
    help="UNSAFE: accept a Keymaker attestation that no PCR policy checked (any Nitro enclave "
         "could have made the bundle).")
NO_POLICY_REFUSAL = (
    "no Keymaker PCR policy: the bundle's Keymaker attestation would be checked against the "
    "trust root only, so any Nitro enclave could have made it; pass --keymaker-pcr-policy FILE "
    "(or commit .caution/keymaker-pcr-policy.json), or --unsafe-no-keymaker-policy to accept "
    "that risk")


@dataclass(frozen=True)
class ProofInputs:
    policy: PcrPolicy | None
    policy_path: Path | None
    trust_root: TrustAnchor | None  # None: the AWS Nitro root
    allow_debug: bool


@dataclass(frozen=True)
class ProofOptions:
    """The options as given; `load()` reads and checks the files (and warns for a dev root)."""

    policy: Path | None = None
    trust_root: Path | None = None
    allow_debug: bool = False
    # None: the command may verify without a policy (with the spec's warning); False: a policy
    # is required; True: the user accepted the risk with --unsafe-no-keymaker-policy.
    unsafe_no_policy: bool | None = None

    def load(self) -> ProofInputs:
        policy_path = self.policy
        if policy_path is None and os.path.lexists(DEFAULT_POLICY):  # "if it exists" (§1)
            policy_path = DEFAULT_POLICY
        if policy_path is None and self.unsafe_no_policy is False:
            raise CliError(NO_POLICY_REFUSAL)
        policy = load_policy(policy_path) if policy_path is not None else None
        anchor = load_trust_root(str(self.trust_root)) if self.trust_root is not None else None
        return ProofInputs(policy, policy_path, anchor, self.allow_debug)


def load_policy(path: Path) -> PcrPolicy:
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_POLICY_FILE + 1)
    except OSError as exc:
        raise CliError(f"cannot read Keymaker PCR policy {path}",
                       [exc.strerror or str(exc)]) from None
    try:
        return PcrPolicy.from_json(data)
    except PcrPolicyError as exc:
        detail = f"{path}: {exc.detail}" if exc.detail else str(path)
        raise CliError(exc.message, [detail]) from None


def require_bundle_file(path: Path) -> None:
    """The bundle path names a file; a directory (often `.caution`) is said to be one."""
    if path.is_dir():
        example = path / "quorum-bundle.json" if path.name == ".caution" else DEFAULT_BUNDLE
        raise CliError(f"quorum bundle {path} is a directory; name the bundle file (e.g. "
                       f"{example})")
    if not path.is_file():
        raise CliError(f"quorum bundle not found: {path}")


def read_bundle(path: Path) -> CheckedBundle:
    """Read, parse and check a bundle (cli.md §4 step 5), or fail with the spec's messages."""
    require_bundle_file(path)
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise CliError(f"quorum bundle not found: {path}", [exc.strerror or str(exc)]) from exc
    try:
        return check_bundle(parse_bundle(text))
    except BundleError as exc:
        raise CliError(f"invalid quorum bundle {path}: {exc}") from exc


def verify_proof(bundle: BundleV1, inputs: ProofInputs) -> ProofResult:
    """keymaker.md §8.2; prints the success line or the no-policy warning (cli.md §1, §3 10)."""
    try:
        result = verify_keymaker_proof(bundle, inputs.policy, trust_root=inputs.trust_root,
                                       allow_debug=inputs.allow_debug)
    except KeymakerProofError as exc:
        hint = (development_root_hint(bundle.necroproof, inputs.trust_root is not None)
                if CHAIN_FAILURE in str(exc) else [])
        raise CliError(str(exc), hint) from None
    if result.set_index is None:
        ui.warn(NO_POLICY_WARNING)
    else:
        ui.info(f"Keymaker proof verified (PCR set {result.set_index}, generated "
                f"{format_ms(result.generated_ms)})")
    if result.attestation.is_debug:
        ui.warn("the Keymaker proof comes from a debug-mode enclave (all-zero PCRs), accepted "
                "because of --allow-debug-enclave")
    return result


def load_bundle(path: Path, proof: ProofOptions = ProofOptions()) -> CheckedBundle:
    """A bundle that passed every check, V1 proof included; nothing of a failing one is used."""
    checked = read_bundle(path)
    if isinstance(checked.bundle, BundleV1):
        verify_proof(checked.bundle, proof.load())
    warn_if_test_secret(checked)
    return checked


def warn_if_test_secret(checked: CheckedBundle) -> None:
    if checked.uses_public_test_secret:
        ui.warn(TEST_SECRET_WARNING)
