"""Keymaker's configuration (keymaker.md §1): options over environment, and the start-up refusals.

Resolution is pure (`resolve(argv, env)`), so every refusal is tested without binding a socket
or touching a device. Options win over environment variables; an empty variable counts as unset.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from locksmith.core.attestation.nsm import DEVICE_PATH, NsmChoice, NsmUsageError, resolve_nsm
from locksmith.core.openpgp import quorumkey
from locksmith.personalities.argparsing import add_version

DEFAULT_LISTEN = "0.0.0.0:8080"
DEFAULT_MAX_BODY = 4 * 1024 * 1024
NO_DEVICE = ("NSM device /dev/nsm not found; use --nsm simulated for development or --nsm none "
             "to serve v0 only")
BYPASS_VARIABLES = ("SHOOT_SELF_IN_FOOT", "INSECURE_HARDWARE_ALLOWED")
E2E_VARIABLE = "CAUTION_UNSAFE_KEY_SERVICE_E2E"
IFF_UP = 0x1
IFF_LOOPBACK = 0x8


class UsageError(ValueError):
    """A bad option or variable value (exit 2)."""


class StartupError(RuntimeError):
    """A configuration Keymaker refuses to run with (exit 1)."""


@dataclass(frozen=True)
class Settings:
    host: str
    port: int
    nsm: NsmChoice
    one_shot: bool
    max_body: int
    expire: int
    unsafe_fixed_entropy: bool  # CAUTION_UNSAFE_KEY_SERVICE_E2E=1 with the simulated NSM only


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _parser() -> _Parser:
    parser = _Parser(prog="keymaker", description="Keymaker: quorum generation over HTTP.")
    add_version(parser)
    parser.add_argument("--listen", metavar="HOST:PORT",
                        help=f"listen address (env KEYMAKER_LISTEN_ADDR, default {DEFAULT_LISTEN})")
    parser.add_argument("--nsm", choices=("device", "simulated", "none"),
                        help="attestation source for V1 proofs (env LOCKSMITH_NSM, default device)")
    parser.add_argument("--nsm-dir", metavar="DIR",
                        help="simulated NSM state directory (env LOCKSMITH_NSM_DIR)")
    parser.add_argument("--one-shot", action="store_true", default=None,
                        help="one generation at a time; exit after the first success "
                             "(env KEYMAKER_ONE_SHOT=1)")
    parser.add_argument("--max-body", metavar="BYTES",
                        help=f"request body limit (env KEYMAKER_MAX_BODY_BYTES, default "
                             f"{DEFAULT_MAX_BODY})")
    return parser


def parse_listen(text: str) -> tuple[str, int]:
    """`HOST:PORT`, `[v6]:PORT`; port 0 asks the kernel for a free port (tests)."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or not port_text.isdigit() or int(port_text) > 65535:
        raise UsageError(f"invalid listen address {text!r} (expected HOST:PORT)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port_text)


def _env(env: Mapping[str, str], name: str) -> str | None:
    return env.get(name) or None


def resolve(argv: Sequence[str], env: Mapping[str, str]) -> Settings:
    """Options and environment to settings; raises UsageError or StartupError."""
    args = _parser().parse_args(list(argv))
    host, port = parse_listen(args.listen or _env(env, "KEYMAKER_LISTEN_ADDR") or DEFAULT_LISTEN)
    try:
        nsm = resolve_nsm(args.nsm, args.nsm_dir, env, allow_none=True)
    except NsmUsageError as exc:
        raise UsageError(str(exc)) from None
    one_shot = args.one_shot
    if one_shot is None:
        flag = _env(env, "KEYMAKER_ONE_SHOT") or "0"
        if flag not in ("0", "1"):
            raise UsageError(f"invalid KEYMAKER_ONE_SHOT value {flag!r} (expected 1 or 0)")
        one_shot = flag == "1"
    max_text = args.max_body or _env(env, "KEYMAKER_MAX_BODY_BYTES")
    max_body = DEFAULT_MAX_BODY
    if max_text is not None:
        if not max_text.isdigit() or int(max_text) == 0:
            raise UsageError(f"invalid body limit {max_text!r} (expected a positive number "
                             "of bytes)")
        max_body = int(max_text)
    expire_text = env.get("KEYFORK_OPENPGP_EXPIRE") or "42y"
    try:
        expire = quorumkey.parse_expire(expire_text)
    except quorumkey.QuorumKeyError as exc:
        raise StartupError(f"invalid KEYFORK_OPENPGP_EXPIRE: {exc}") from None
    unsafe = nsm.kind == "simulated" and env.get(E2E_VARIABLE) == "1"
    return Settings(host, port, nsm, one_shot, max_body, expire, unsafe)


def non_loopback_interfaces_up(sys_class_net: Path = Path("/sys/class/net")) -> list[str]:
    """Names of interfaces that are up and not loopback, from the kernel's sysfs flags."""
    try:
        names = sorted(os.listdir(sys_class_net))
    except OSError as exc:
        raise StartupError(f"cannot list network interfaces in {sys_class_net}: "
                           f"{exc.strerror or exc}") from None
    up = []
    for name in names:
        try:
            flags = int((sys_class_net / name / "flags").read_text().strip(), 16)
        except (OSError, ValueError):
            up.append(name)  # unknown state counts as up: the guard fails closed
            continue
        if flags & IFF_UP and not flags & IFF_LOOPBACK:
            up.append(name)
    return up


def check_environment(settings: Settings, env: Mapping[str, str], *,
                      device_path: str = DEVICE_PATH,
                      sys_class_net: Path = Path("/sys/class/net")) -> list[str]:
    """The start-up refusals of keymaker.md §1 that look at the machine; returns warnings."""
    kind = settings.nsm.kind
    if kind != "device":
        return [f"network guard skipped (--nsm {kind}); do not run this configuration in "
                "production"]
    if not os.path.exists(device_path):
        raise StartupError(NO_DEVICE)
    if any(env.get(name) == "1" for name in BYPASS_VARIABLES):
        return ["network guard bypassed by SHOOT_SELF_IN_FOOT/INSECURE_HARDWARE_ALLOWED"]
    up = non_loopback_interfaces_up(sys_class_net)
    if up:
        raise StartupError(
            f"refusing to start: non-loopback network interface(s) up: {', '.join(up)} (a Nitro "
            "enclave has none; set SHOOT_SELF_IN_FOOT=1 or INSECURE_HARDWARE_ALLOWED=1 to "
            "override)")
    return []
