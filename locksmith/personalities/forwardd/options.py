"""forwardd's command line (docs/forwarding.md §5.1), resolved once.

forwardd is started by locksmithd, never by hand in an image, so it reads no environment:
everything arrives as an option, exactly as locksmithd resolved it (`--exclude-holder` and
`--allow-debug-enclave` with their locksmithd meanings). Both descriptors are inherited:
`--secret-fd` a pipe carrying the 32-byte secret then EOF, `--listen-fd` a TCP socket that
locksmithd bound at startup and forwardd listens on. Resolution is pure: `parse_options`
returns `Options` or raises `UsageError` (exit 2) before anything is read.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from dataclasses import dataclass

from locksmith.core.attestation.nsm import NsmChoice, NsmUsageError, resolve_nsm
from locksmith.personalities.argparsing import add_version

__all__ = ["Options", "UsageError", "parse_options", "usage"]

_FINGERPRINT = re.compile(r"[0-9A-F]{40}")


class UsageError(ValueError):
    """A bad option or option combination: one line, exit 2."""


@dataclass(frozen=True)
class Options:
    secret_fd: int
    listen_fd: int
    bundle: str
    policy: str
    nsm: NsmChoice
    trust_root: str | None = None
    allow_debug_enclave: bool = False
    exclude_holders: tuple[str, ...] = ()  # primary fingerprints, uppercase hex
    ready_fd: int | None = None


def _fd(text: str) -> int:
    if not text.isascii() or not text.isdigit():
        raise argparse.ArgumentTypeError(f"not a file descriptor number: {text!r}")
    return int(text)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="forwardd", description="Serve the master secret to attested enclaves of the same "
        "image, or of an image the bundle's holders approved. Started by locksmithd after the "
        "unlock when key forwarding is enabled.")
    add_version(parser)
    parser.add_argument("--secret-fd", metavar="N", type=_fd, required=True,
                        help="read exactly 32 raw bytes from inherited fd N, then EOF")
    parser.add_argument("--listen-fd", metavar="N", type=_fd, required=True,
                        help="inherited TCP socket, bound by locksmithd, to listen on")
    parser.add_argument("--bundle", metavar="FILE", required=True, help="quorum bundle")
    parser.add_argument("--keymaker-pcr-policy", metavar="FILE", required=True,
                        help="Keymaker PCR policy (read for V1 bundles)")
    parser.add_argument("--nsm", metavar="device|simulated", required=True,
                        help="NSM to attest with")
    parser.add_argument("--nsm-dir", metavar="DIR", help="simulated NSM directory")
    parser.add_argument("--trust-root", metavar="PEM",
                        help="development only: trust root for a V1 proof from a simulated "
                        "Keymaker (default: the AWS Nitro root)")
    parser.add_argument("--allow-debug-enclave", action="store_true",
                        help="accept all-zero (debug) PCR sets in the Keymaker policy")
    parser.add_argument("--exclude-holder", metavar="FPR", action="append", default=[],
                        help="ignore approvals by the holder with this primary fingerprint "
                        "(repeatable)")
    parser.add_argument("--ready-fd", metavar="N", type=_fd,
                        help="write READY and close fd N once serving")
    return parser


def usage() -> str:
    return _parser().format_usage()


def parse_options(argv: Sequence[str]) -> Options:
    """Raises `UsageError` for our checks; argparse's own errors and `--help` raise
    `SystemExit` with status 2 and 0 after printing, as usual."""
    args = _parser().parse_args(list(argv))
    for name in ("bundle", "keymaker_pcr_policy", "nsm", "nsm_dir", "trust_root"):
        if getattr(args, name) == "":
            raise UsageError(f"--{name.replace('_', '-')} must not be empty")
    try:
        nsm = resolve_nsm(args.nsm, args.nsm_dir, {})
    except NsmUsageError as exc:
        raise UsageError(str(exc)) from None
    excluded: list[str] = []
    for text in args.exclude_holder:
        fpr = "".join(text.split()).upper()
        if not _FINGERPRINT.fullmatch(fpr):
            raise UsageError(f"invalid holder fingerprint {text!r}: expected 40 hex digits")
        if fpr not in excluded:
            excluded.append(fpr)
    return Options(secret_fd=args.secret_fd, listen_fd=args.listen_fd, bundle=args.bundle,
                   policy=args.keymaker_pcr_policy, nsm=nsm, trust_root=args.trust_root,
                   allow_debug_enclave=args.allow_debug_enclave,
                   exclude_holders=tuple(excluded), ready_fd=args.ready_fd)
