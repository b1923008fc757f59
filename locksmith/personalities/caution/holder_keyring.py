"""`send-shard --keyring`: choose the holder, unlock its keys and open its share (cli.md §5.2
step 3), all before any connection is opened (protocol.md §11, README §5 #17).

A passphrase is asked on the terminal without echo (`getpass`), at most three times per key.
A passphrase that unlocked one key is tried first on the holder's next protected key, so a
holder whose subkeys share one passphrase (GnuPG's export) types it once. Decryption keys are
unlocked one at a time, only until the share opens, so a holder is never asked to unlock a key
that is not needed.
"""

from __future__ import annotations

import getpass
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from locksmith.core.bundle import own_share, shardfile
from locksmith.core.bundle.checks import CheckedBundle
from locksmith.core.bundle.model import BundleV1, WebAuthnKey
from locksmith.core.openpgp.certs import Certificate
from locksmith.core.openpgp.errors import OpenPGPError
from locksmith.core.openpgp.keys import SecretKey
from locksmith.core.openpgp.secretkeys import (
    HolderKeys, PrivateKeyring, SecretKeyError, StoredSecretKey, WrongPassphrase,
    load_secret_keys, match_holder, normalise_fingerprint,
)
from locksmith.personalities.caution import ui
from locksmith.personalities.caution.ui import CliError

PROMPT = "Unlock private key ({fpr})\n\nPassword: "
MAX_ATTEMPTS = 3
TOO_MANY_ATTEMPTS = "too many failed attempts"
NO_HOLDER = "no holder of this bundle has both signing and decryption secret keys in {file}"
NOT_A_HOLDER = "--holder {fpr} is not a holder of this bundle"
NO_SECRET_KEYS = ("{file} holds no secret keys (a public certificate?); pass the holder's "
                  "private keyring, e.g. the .private.asc file of 'caution secret keygen', or "
                  "leave out --keyring to use a smart card")
MAX_KEYRING_FILE = 16 * 1024 * 1024


@dataclass(frozen=True)
class UnlockedHolder:
    """Everything message 3 needs from the holder: its checked share and its signing key."""

    fingerprint: str
    share: own_share.CheckedShare
    sign: SecretKey


def read_keyring(path: Path) -> PrivateKeyring:
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_KEYRING_FILE + 1)
    except OSError as exc:
        raise CliError(f"Failed to read keyring file: {path}", [exc.strerror or str(exc)]) from None
    if len(data) > MAX_KEYRING_FILE:
        raise CliError(f"keyring file {path} is larger than {MAX_KEYRING_FILE} bytes")
    try:
        return load_secret_keys(data)
    except OpenPGPError as exc:
        raise CliError(f"Failed to parse {path} as an OpenPGP private keyring", [str(exc)]) from None


def openpgp_holders(checked: CheckedBundle) -> list[Certificate | None]:
    """The bundle's holders, with None for WebAuthn entries (no holder-side flow, formats.md
    §13.4): a software key never stands in for them."""
    holders: list[Certificate | None] = list(checked.holders)
    if isinstance(checked.bundle, BundleV1):
        for index, entry in enumerate(checked.bundle.data.keyring):
            if isinstance(entry, WebAuthnKey):
                holders[index] = None
    return holders


def select_holder(checked: CheckedBundle, keyring: PrivateKeyring, path: Path,
                  holder: str | None, now: int) -> HolderKeys:
    if not keyring.keys:
        raise CliError(NO_SECRET_KEYS.format(file=path))
    holders = openpgp_holders(checked)
    if holder is not None:
        wanted = normalise_fingerprint(holder)
        if wanted not in {h.fingerprint for h in holders if h is not None}:
            raise CliError(NOT_A_HOLDER.format(fpr=wanted))
    match = match_holder(keyring, holders, now, holder)
    if match is None:
        raise CliError(NO_HOLDER.format(file=path))
    return match


class Unlocker:
    """Unlocks stored keys, prompting on the terminal when a key is protected."""

    def __init__(self) -> None:
        self._known: list[str] = []  # passphrases that worked in this run (str: not wipeable)

    def unlock(self, key: StoredSecretKey) -> SecretKey:
        try:
            if not key.needs_passphrase:
                return key.unlock()
            for passphrase in self._known:
                try:
                    return key.unlock(passphrase)
                except WrongPassphrase:
                    continue
            return self._prompted(key)
        except SecretKeyError as exc:  # unsupported protection, corrupt key: texts name no secret
            raise CliError(str(exc)) from None

    def _prompted(self, key: StoredSecretKey) -> SecretKey:
        for _ in range(MAX_ATTEMPTS):
            try:
                passphrase = getpass.getpass(PROMPT.format(fpr=key.fingerprint))
            except EOFError:
                raise CliError(f"no passphrase given for key {key.fingerprint}") from None
            try:
                unlocked = key.unlock(passphrase)
            except WrongPassphrase:
                ui.warn(f"wrong passphrase for key {key.fingerprint}")
                continue
            self._known.append(passphrase)
            return unlocked
        raise CliError(TOO_MANY_ATTEMPTS)

    def forget(self) -> None:
        self._known.clear()


def _usable_first(keys: Sequence[StoredSecretKey]) -> list[StoredSecretKey]:
    """Keys this project can unlock before refused ones (a refused key raises its §11 text
    only when nothing else is left)."""
    return sorted(keys, key=lambda k: k.refusal is not None)


def open_share(checked: CheckedBundle, match: HolderKeys, unlocker: Unlocker) -> own_share.CheckedShare:
    """Unlock decryption keys one by one until the share opens (formats.md §7.4)."""
    unlocked: list[SecretKey] = []
    candidates = _usable_first(match.decryption)
    for position, stored in enumerate(candidates):
        unlocked.append(unlocker.unlock(stored))
        try:
            return own_share.open_own_share(checked, match.index, unlocked)
        except shardfile.ShardfileError as exc:
            if str(exc) == shardfile.CANNOT_DECRYPT and position + 1 < len(candidates):
                continue
            raise CliError(str(exc)) from None
    raise CliError(shardfile.CANNOT_DECRYPT)  # unreachable: a match has a decryption key


def unlock_holder(checked: CheckedBundle, path: Path, holder: str | None,
                  now: int) -> UnlockedHolder:
    """cli.md §5.2 step 3 with a software keyring."""
    match = select_holder(checked, read_keyring(path), path, holder, now)
    ui.verbose(f"holder {match.index} ({match.certificate.fingerprint}) selected from {path}")
    unlocker = Unlocker()
    try:
        share = open_share(checked, match, unlocker)
        try:
            signing = unlocker.unlock(_usable_first(match.signing)[0])
        except BaseException:
            share.wipe()
            raise
    finally:
        unlocker.forget()
    for warning in share.warnings:
        ui.warn(warning)
    return UnlockedHolder(match.certificate.fingerprint, share, signing)
