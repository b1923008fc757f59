"""Loading a quorum bundle for a CLI command: one path, the same messages everywhere."""

from __future__ import annotations

from pathlib import Path

from locksmith.core.bundle import BundleError, BundleV1, parse_bundle
from locksmith.core.bundle_checks import CheckedBundle, check_bundle
from locksmith.personalities.caution import ui
from locksmith.personalities.caution.ui import CliError

DEFAULT_BUNDLE = Path(".caution/quorum-bundle.json")
TEST_SECRET_WARNING = ("this bundle's quorum key comes from the public test secret; anything "
                       "encrypted to it can be read by anyone")


def load_bundle(path: Path) -> CheckedBundle:
    """Read, parse and check a bundle (cli.md §4 step 5), or fail with the spec's messages."""
    if not path.is_file():
        raise CliError(f"quorum bundle not found: {path}")
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise CliError(f"quorum bundle not found: {path}", [exc.strerror or str(exc)]) from exc
    try:
        checked = check_bundle(parse_bundle(text))
    except BundleError as exc:
        raise CliError(f"invalid quorum bundle {path}: {exc}") from exc
    if isinstance(checked.bundle, BundleV1):
        # A V1 bundle is only usable once its Keymaker proof is verified (keymaker.md §8),
        # which this version does not implement yet: refuse rather than trust it unchecked.
        raise CliError(f"{path} is a V1 (proofed) bundle; verifying its Keymaker proof is not "
                       "implemented in this version, so it cannot be used yet")
    warn_if_test_secret(checked)
    return checked


def warn_if_test_secret(checked: CheckedBundle) -> None:
    if checked.uses_public_test_secret:
        ui.warn(TEST_SECRET_WARNING)
