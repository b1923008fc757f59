"""`caution secret keygen` (cli.md §2): an unencrypted development holder key pair."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from locksmith.core.openpgp import validity
from locksmith.core.openpgp.certs import load_certificates
from locksmith.core.openpgp.keygen import generate_holder_key
from locksmith.personalities.caution import ui
from locksmith.personalities.caution.ui import CliError
from locksmith.personalities.files import write_atomic

WARNING = (
    "the private keyring is written UNENCRYPTED: anyone who can read it can submit this "
    "holder's shard. Use it only for development, demos and short-lived test environments, "
    "never for production holders. Do not commit or share *.private.asc files. Production "
    "holders should keep their keys on an OpenPGP smart card (for example derived offline with "
    "Keyfork, https://git.distrust.co/public/keyfork)."
)


def default_private_path(public: Path) -> Path:
    """`alice.asc` → `alice.private.asc`; `alice` → `alice.private` (cli.md §2)."""
    name = public.name
    stem, dot, ext = name.rpartition(".")
    private = f"{stem}.private.{ext}" if dot and stem else f"{name}.private"
    return public.with_name(private)


def _exists(path: Path) -> CliError:
    return CliError(f"{path} already exists; pass --force to overwrite it")


def keygen(
    output: Path = typer.Argument(..., help="Armored public keyring to write."),
    name: str = typer.Option(..., "--name", help="Holder name for the User ID."),
    email: str = typer.Option(..., "--email", help="Holder email for the User ID."),
    private_keyring: Optional[Path] = typer.Option(
        None, "--private-keyring", help="Private keyring path (default: OUTPUT with .private)."),
    force: bool = typer.Option(False, "--force", help="Allow replacing existing files."),
    shoot_self_in_foot: bool = typer.Option(
        False, "--shoot-self-in-foot", help="Acknowledge that the private key is unencrypted."),
) -> None:
    """Write an UNENCRYPTED Keymaker-compatible key pair (development only)."""
    if not shoot_self_in_foot:
        raise CliError("Refusing to generate an unencrypted private keyring without "
                       "--shoot-self-in-foot.", after=["", "warning: " + WARNING])
    name, email = name.strip(), email.strip()
    if not name:
        raise CliError("--name must not be empty")
    if not email:
        raise CliError("--email must not be empty")
    if any(c in field for field in (name, email) for c in "\n\r<>"):
        raise CliError("--name and --email must not contain newlines or angle brackets")
    if "@" not in email:
        raise CliError("--email must be an email address")
    private = private_keyring if private_keyring is not None else default_private_path(output)
    if output.resolve() == private.resolve():
        raise CliError("public and private keyring paths must be different")
    if not force:
        for path in (output, private):
            if path.exists() or path.is_symlink():
                raise _exists(path)

    ui.info(f"Generating OpenPGP key for {name} <{email}>...")
    now = int(time.time())
    key = generate_holder_key(name, email, now=now)
    eligible = sum(validity.eligibility(c, now).eligible
                   for c in load_certificates(key.public_armored))
    if eligible != 1:
        raise CliError(f"generated keyring should contain exactly one eligible certificate, "
                       f"found {eligible}")

    _write(output, key.public_armored, 0o644, force)
    ui.info(f"Wrote public keyring to {output}")
    ui.info(f"Fingerprint: {key.fingerprint}")
    try:
        _write(private, key.private_armored, 0o600, force)
    except CliError:
        output.unlink(missing_ok=True)
        raise
    ui.info(f"Wrote private keyring to {private}")
    ui.warn(WARNING)
    ui.info(f"Use the private keyring with: caution secret send-shard --keyring {private}")


def _write(path: Path, text: str, mode: int, force: bool) -> None:
    try:
        write_atomic(path, text.encode("ascii"), mode=mode, replace=force)
    except FileExistsError:
        raise _exists(path) from None
    except OSError as exc:
        raise CliError(f"failed to write {path}", [exc.strerror or str(exc)]) from exc
