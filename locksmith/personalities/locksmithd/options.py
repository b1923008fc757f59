"""locksmithd's options and their environment fallbacks (enclave.md §3), resolved once.

Resolution is pure: `parse_options(argv, env)` returns an `Options` or raises `UsageError`
(exit 2) and touches no file, device or socket, so every usage error is reported before
anything is read or bound. An empty environment variable counts as unset; an empty option
value is a usage error (it can only be a mistake in a unit file or script).

`--exclude-holder FPR` (repeatable; env `LOCKSMITHD_EXCLUDE_HOLDERS`, fingerprints separated by
commas or white space; the options replace the variable) lets an operator shut out a holder
whose signing key is known to be misused (docs/security.md F2). Here it is only checked to be a
v4 fingerprint (40 hex digits, spaces allowed inside, any case); startup checks it names a
holder of the bundle.

Key forwarding (docs/forwarding.md §2.1), off unless asked for: `--forward-listen HOST[:PORT]`
(env `LOCKSMITHD_FORWARD_LISTEN`) serves the secret to peers after the unlock; `--forward-from
HOST[:PORT]` (repeatable, at most 16; env `LOCKSMITHD_FORWARD_FROM`, separated by commas or white
space, replaced by the options) asks providers while 49504 is served; `--approvals DIR` (env
`LOCKSMITH_APPROVALS_DIR`) holds the approvals a requester presents. A forwarding address
without a port uses 49505; the shard port is refused for it, so that the two services can never
be mistaken for each other.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from locksmith.core.attestation.nsm import NsmChoice, NsmUsageError, resolve_nsm
from locksmith.core.keyfork import ipc as keyfork_ipc
from locksmith.personalities.argparsing import add_version

__all__ = [
    "APPROVALS_ENV", "EXCLUDE_ENV", "FORWARD_FROM_ENV", "FORWARD_LISTEN_ENV", "ListenAddress",
    "MAX_PROVIDERS", "Options", "UsageError", "parse_fingerprint", "parse_forwarding_address",
    "parse_listen", "parse_options", "usage",
]

DEFAULT_BUNDLE = "/etc/caution/bundle.json"
DEFAULT_POLICY = "/etc/caution/keymaker-pcr-policy.json"
DEFAULT_LISTEN = "0.0.0.0:49504"
DEFAULT_APPROVALS = "/etc/caution/approvals"
SHARD_PORT = 49504
FORWARD_PORT = 49505  # docs/forwarding.md §2.1 (reserved range 49500–49600, cli.md §8)
MAX_PROVIDERS = 16

_PORT = re.compile(r"[0-9]{1,5}")
_FINGERPRINT = re.compile(r"[0-9A-F]{40}")
EXCLUDE_ENV = "LOCKSMITHD_EXCLUDE_HOLDERS"
FORWARD_LISTEN_ENV = "LOCKSMITHD_FORWARD_LISTEN"
FORWARD_FROM_ENV = "LOCKSMITHD_FORWARD_FROM"
APPROVALS_ENV = "LOCKSMITH_APPROVALS_DIR"


class UsageError(ValueError):
    """A bad option or option combination: one line, exit 2."""


@dataclass(frozen=True)
class ListenAddress:
    host: str  # without brackets
    port: int  # 0: an ephemeral port, reported in the `listening on` line

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_listen(text: str) -> ListenAddress:
    """`HOST:PORT` or `[IPv6]:PORT`; a bare IPv6 address needs the brackets (which colon would
    start the port otherwise?)."""
    error = UsageError(f"invalid listen address {text!r}: expected HOST:PORT or [IPV6]:PORT")
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        if not sep or not host or "]" in host:
            raise error
    else:
        host, sep, port = text.rpartition(":")
        if not sep or not host or ":" in host:
            raise error
    if not _PORT.fullmatch(port) or int(port) > 65535:
        raise error
    return ListenAddress(host, int(port))


def parse_forwarding_address(text: str, *, connect: bool) -> ListenAddress:
    """`HOST[:PORT]` or `[IPv6][:PORT]`; without a port, 49505. `connect`: an address to
    connect to (`--forward-from`), where port 0 means nothing."""
    error = UsageError(f"invalid forwarding address {text!r}: expected HOST[:PORT] or "
                       "[IPV6][:PORT]")
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not host or "[" in host:
            raise error
        if rest == "":
            port = str(FORWARD_PORT)
        elif rest.startswith(":"):
            port = rest[1:]
        else:
            raise error
    elif ":" in text:
        host, _, port = text.rpartition(":")
        if not host or ":" in host:  # a bare IPv6 address needs its brackets
            raise error
    else:
        host, port = text, str(FORWARD_PORT)
    if not host or any(c.isspace() for c in host) or "," in host:
        raise error
    if not _PORT.fullmatch(port) or int(port) > 65535 or (connect and int(port) == 0):
        raise error
    return ListenAddress(host, int(port))


def _forward_listen(text: str | None, listen: ListenAddress) -> ListenAddress | None:
    """`--forward-listen` must not be the shard port: 49504 itself, or the port `--listen`
    serves on an overlapping address."""
    if not text:
        return None
    address = parse_forwarding_address(text, connect=False)
    wildcard = ("0.0.0.0", "::")
    overlaps = (address.host == listen.host or address.host in wildcard
                or listen.host in wildcard)
    if address.port == SHARD_PORT or (address.port != 0 and address.port == listen.port
                                      and overlaps):
        raise UsageError(f"--forward-listen must not use the shard port {address.port}")
    return address


def _forward_from(options: Sequence[str] | None,
                  env: Mapping[str, str]) -> tuple[ListenAddress, ...]:
    if options:
        texts = list(options)
    else:
        texts = [t for t in re.split(r"[,\s]+", env.get(FORWARD_FROM_ENV, "")) if t]
    out: list[ListenAddress] = []
    for text in texts:
        address = parse_forwarding_address(text, connect=True)
        if address not in out:
            out.append(address)
    if len(out) > MAX_PROVIDERS:
        raise UsageError(f"at most {MAX_PROVIDERS} forwarding providers")
    return tuple(out)


def parse_fingerprint(text: str) -> str:
    """A v4 fingerprint as the bundle's holders carry it: 40 uppercase hex digits."""
    value = "".join(text.split()).upper()
    if not _FINGERPRINT.fullmatch(value):
        raise UsageError(f"invalid holder fingerprint {text!r}: expected 40 hex digits")
    return value


def _excluded(options: Sequence[str] | None, env: Mapping[str, str]) -> tuple[str, ...]:
    if options:
        texts = list(options)
    else:
        texts = [t for t in re.split(r"[,\s]+", env.get(EXCLUDE_ENV, "")) if t]
    out: list[str] = []
    for text in texts:
        fpr = parse_fingerprint(text)
        if fpr not in out:
            out.append(fpr)
    return tuple(out)


@dataclass(frozen=True)
class Options:
    bundle: str
    policy: str
    listen: ListenAddress
    nsm: NsmChoice
    trust_root: str | None
    allow_debug_enclave: bool
    keyforkd_socket: keyfork_ipc.SocketLocation
    exclude_holders: tuple[str, ...] = ()  # primary fingerprints, uppercase hex
    forward_listen: ListenAddress | None = None  # provider: serve the secret here after unlock
    forward_from: tuple[ListenAddress, ...] = ()  # requester: ask these providers
    approvals: str = DEFAULT_APPROVALS  # requester: the approvals it presents

    @property
    def forwarding(self) -> bool:
        """Either role of key forwarding is enabled."""
        return self.forward_listen is not None or bool(self.forward_from)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="locksmithd", description="Collect the holders' shares on TCP 49504, recover the "
        "master secret and hand it to keyforkd.")
    add_version(parser)
    parser.add_argument("--bundle", metavar="FILE",
                        help=f"quorum bundle (env LOCKSMITH_BUNDLE, default {DEFAULT_BUNDLE})")
    parser.add_argument("--keymaker-pcr-policy", metavar="FILE",
                        help="Keymaker PCR policy, required for V1 bundles (env "
                        f"LOCKSMITH_KEYMAKER_PCR_POLICY, default {DEFAULT_POLICY})")
    parser.add_argument("--listen", metavar="HOST:PORT",
                        help=f"address to serve (env LOCKSMITHD_LISTEN_ADDR, default "
                        f"{DEFAULT_LISTEN}; [IPV6]:PORT; port 0 picks a free port)")
    parser.add_argument("--nsm", metavar="device|simulated",
                        help="NSM to attest with (env LOCKSMITH_NSM, default device)")
    parser.add_argument("--nsm-dir", metavar="DIR",
                        help="simulated NSM directory (env LOCKSMITH_NSM_DIR)")
    parser.add_argument("--trust-root", metavar="PEM",
                        help="development only: trust root for a V1 proof from a simulated "
                        "Keymaker (default: the AWS Nitro root)")
    parser.add_argument("--allow-debug-enclave", action="store_true",
                        help="accept all-zero (debug) PCR sets in the Keymaker policy")
    parser.add_argument("--keyforkd-socket", metavar="PATH",
                        help="keyforkd socket (env KEYFORKD_SOCKET_PATH, then "
                        "$XDG_RUNTIME_DIR/keyforkd/keyforkd.sock, then /keyforkd.sock)")
    parser.add_argument("--exclude-holder", metavar="FPR", action="append",
                        help="refuse every submission from the holder with this primary "
                        "fingerprint (repeatable; env LOCKSMITHD_EXCLUDE_HOLDERS, separated by "
                        "commas or spaces)")
    parser.add_argument("--forward-listen", metavar="HOST[:PORT]",
                        help="after the unlock, serve the secret to attested peers on this "
                        f"address (env {FORWARD_LISTEN_ENV}; default off; port "
                        f"{FORWARD_PORT} when omitted)")
    parser.add_argument("--forward-from", metavar="HOST[:PORT]", action="append",
                        help="also ask this unlocked enclave for the secret while serving the "
                        f"holders (repeatable, at most {MAX_PROVIDERS}; env {FORWARD_FROM_ENV}, "
                        f"separated by commas or spaces; port {FORWARD_PORT} when omitted)")
    parser.add_argument("--approvals", metavar="DIR",
                        help="holder approvals to present to a provider (env "
                        f"{APPROVALS_ENV}, default {DEFAULT_APPROVALS})")
    return parser


def usage() -> str:
    return _parser().format_usage()


def parse_options(argv: Sequence[str], env: Mapping[str, str]) -> Options:
    """Raises `UsageError` for our checks; argparse's own errors (unknown option, missing
    value) and `--help` raise `SystemExit` with status 2 and 0 after printing, as usual."""
    args = _parser().parse_args(list(argv))
    for name in ("bundle", "keymaker_pcr_policy", "listen", "nsm", "nsm_dir", "trust_root",
                 "keyforkd_socket", "forward_listen", "approvals"):
        if getattr(args, name) == "":
            raise UsageError(f"--{name.replace('_', '-')} must not be empty")
    try:
        nsm = resolve_nsm(args.nsm, args.nsm_dir, env)
    except NsmUsageError as exc:
        raise UsageError(str(exc)) from None
    if any(text == "" for text in args.forward_from or ()):
        raise UsageError("--forward-from must not be empty")
    listen = parse_listen(args.listen or env.get("LOCKSMITHD_LISTEN_ADDR") or DEFAULT_LISTEN)
    return Options(
        bundle=args.bundle or env.get("LOCKSMITH_BUNDLE") or DEFAULT_BUNDLE,
        policy=args.keymaker_pcr_policy or env.get("LOCKSMITH_KEYMAKER_PCR_POLICY")
        or DEFAULT_POLICY,
        listen=listen,
        nsm=nsm,
        trust_root=args.trust_root,
        allow_debug_enclave=args.allow_debug_enclave,
        keyforkd_socket=keyfork_ipc.resolve_socket_location(args.keyforkd_socket, env),
        exclude_holders=_excluded(args.exclude_holder, env),
        forward_listen=_forward_listen(args.forward_listen or env.get(FORWARD_LISTEN_ENV),
                                       listen),
        forward_from=_forward_from(args.forward_from, env),
        approvals=args.approvals or env.get(APPROVALS_ENV) or DEFAULT_APPROVALS,
    )
