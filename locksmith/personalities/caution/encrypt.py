"""`caution secret encrypt` (cli.md §4): `.env` values → `.caution/secrets/NAME.asc`.

The raw parsed value is encrypted, nothing added or removed (README §5 #1): quoting for a shell
happens once, in the enclave, where the shell is.
"""

from __future__ import annotations

import datetime
import time
from pathlib import Path
from typing import List, Optional

import typer

from locksmith.core.app.envfile import EnvFileError, is_env_key, parse_env
from locksmith.core.app.shellquote import ENV_STRING_LIMIT, RESERVED_NAME, reserved_name
from locksmith.core.openpgp import message, validity
from locksmith.core.openpgp.armor import armor
from locksmith.personalities.caution import ui
from locksmith.personalities.caution.bundles import (
    ALLOW_DEBUG_OPTION, DEFAULT_BUNDLE, POLICY_OPTION, TRUST_ROOT_OPTION, UNSAFE_NO_POLICY_OPTION,
    ProofOptions, load_bundle, require_bundle_file,
)
from locksmith.personalities.caution.ui import CliError
from locksmith.personalities.files import write_atomic


def encrypt(
    keys: Optional[List[str]] = typer.Argument(None, metavar="[KEY]...",
                                               help="Keys to encrypt (default: all)."),
    env_file: Path = typer.Option(Path(".env"), "--env-file", help="The .env file to read."),
    bundle: Path = typer.Option(DEFAULT_BUNDLE, "--bundle", help="Quorum bundle."),
    secrets_dir: Path = typer.Option(Path(".caution/secrets"), "--secrets-dir",
                                     help="Where NAME.asc files are written."),
    keymaker_pcr_policy: Optional[Path] = POLICY_OPTION,
    unsafe_no_keymaker_policy: bool = UNSAFE_NO_POLICY_OPTION,
    trust_root: Optional[Path] = TRUST_ROOT_OPTION,
    allow_debug_enclave: bool = ALLOW_DEBUG_OPTION,
) -> None:
    """Encrypt .env values to the quorum certificate."""
    requested = list(keys or [])
    for key in requested:
        if not is_env_key(key):
            raise CliError(f"Invalid env key: {key}")
    if not env_file.is_file():
        raise CliError(f"Missing env file: {env_file}")
    require_bundle_file(bundle)
    try:
        raw = env_file.read_bytes()
    except OSError as exc:
        raise CliError(f"Failed to read env file {env_file}", [exc.strerror or str(exc)]) from exc
    try:
        parsed = parse_env(raw, str(env_file))
    except EnvFileError as exc:
        raise CliError(str(exc)) from exc
    for warning in parsed.warnings:
        ui.warn(warning)
    values = {a.key: a.value for a in parsed.assignments}
    missing = sorted(set(requested) - set(values))
    if missing:
        raise CliError(f"Env key(s) not found in {env_file}: {', '.join(missing)}")

    checked = load_bundle(bundle, ProofOptions(keymaker_pcr_policy, trust_root,
                                               allow_debug_enclave, unsafe_no_keymaker_policy))
    quorum = checked.quorum_certificate
    recipients = validity.decryption_keys(quorum)
    if not recipients:
        raise CliError("Recipient public key has no suitable encryption subkey")
    expired = validity.primary_expiration(quorum, int(time.time()))
    if expired is not None and expired <= time.time():
        day = datetime.datetime.fromtimestamp(expired, datetime.timezone.utc).date().isoformat()
        ui.warn(f"quorum certificate expired on {day}; encrypting anyway (the enclave does not "
                "check quorum key expiry)")

    try:
        secrets_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
    except OSError as exc:
        raise CliError(f"Failed to create {secrets_dir}", [exc.strerror or str(exc)]) from exc

    wanted = set(requested)
    selected = [a for a in parsed.assignments if not wanted or a.key in wanted]
    for assignment in selected:  # refuse before anything is written
        key, value = assignment.key, assignment.value
        if reserved_name(key):
            raise CliError(f"{key}: {RESERVED_NAME}; the enclave would refuse it, so rename it")
        if "\x00" in value:
            raise CliError(f"{key}: value contains a NUL character")
        if len(key.encode()) + 1 + len(value.encode("utf-8")) >= ENV_STRING_LIMIT:
            raise CliError(f"{key}: value too large for a process environment")
    count = 0
    for assignment in selected:
        key, value = assignment.key, assignment.value
        if value == "":
            ui.info(f"skipping empty value for {key}")
            continue
        target = secrets_dir / f"{key}.asc"
        text = armor("MESSAGE", message.encrypt(value.encode("utf-8"), recipients))
        try:
            write_atomic(target, text.encode("ascii"), mode=0o644, replace=True)
        except OSError as exc:
            raise CliError(f"failed to write {target}", [exc.strerror or str(exc)]) from exc
        ui.info(f"encrypted {key} -> {target}")
        count += 1
    ui.info(f"encrypted {count} secret(s)")
