"""`send-shard` with a smart card (cli.md §5.3): choose the card, ask the PIN once, open the
holder's share on the card and keep the card ready to sign message 3.

Order matters, as on the key-file path: everything that needs a person (PIN, touch for the
decryption) happens before any connection to the enclave. The PIN is verified for decryption
(PW1 0x82) and for signing (PW1 0x81) right after it is typed, then dropped; the card keeps both
verifications until it is reset, which `pcsc.Connection.close` does. Only the signature itself
waits until the enclave's key is known.
"""

from __future__ import annotations

import getpass
import os
import stat
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from locksmith.core.bundle import shardfile
from locksmith.core.bundle.checks import CheckedBundle
from locksmith.core.bundle.own_share import CheckedShare, open_own_share
from locksmith.core.card import signing
from locksmith.core.card.appdata import Uif
from locksmith.core.card.errors import CardError, PinBlocked, WrongData, WrongPin
from locksmith.core.card.holders import CardHolder, match_card
from locksmith.core.card.kdf import PW1, PW1_SIGN
from locksmith.core.card.session import ecdh_cipher_do, normalise_shared_secret, rsa_cipher
from locksmith.core.openpgp.errors import DecryptionError, OpenPGPError
from locksmith.core.openpgp.holder_signature import armor_signature, prepare_detached_text
from locksmith.core.openpgp.keys import ECDH, DelegatedKey, PublicKey
from locksmith.core.openpgp.secretkeys import normalise_fingerprint
from locksmith.personalities.caution import ui
from locksmith.personalities.caution.card.pcsc import Context, PcscError
from locksmith.personalities.caution.card.survey import EmptyReader, SeenCard, survey
from locksmith.personalities.caution.holder_keyring import NOT_A_HOLDER, openpgp_holders
from locksmith.personalities.caution.ui import CliError

MIN_PIN = 6
MAX_LOCAL_REFUSALS = 3
MAX_PIN_FILE = 4096
TOUCH = "Touch your card to confirm"
NO_CARD_MATCHES = "No card matches a holder of this bundle"
NO_READER = "no smart-card reader found"
PIN_BLOCKED = "PIN blocked on card {aid}"
PIN_LENGTH = "Invalid PIN length: provided {n} < expected {m}"
TOO_MANY_ATTEMPTS = "too many failed attempts"
PIN_FILE_READABLE = "{file} must not be readable by group or others"
PIN_FILE_COUNTER = "PIN retry counter is {n}; refusing to try a PIN from a file"


@dataclass
class CardSession:
    """The chosen card, its holder, the opened share and the signer for message 3."""

    seen: SeenCard
    holder: CardHolder
    share: CheckedShare
    sign: Callable[[bytes], bytes]


@contextmanager
def card_errors(seen: SeenCard) -> Iterator[None]:
    """Card and PC/SC failures as one CLI error line naming the card and its reader."""
    try:
        yield
    except (CardError, PcscError) as exc:
        raise CliError(f"{seen.label}: {exc}") from None


def describe(seen: SeenCard | EmptyReader) -> str:
    """One line per card or reader for lists (reader, AID/serial, fingerprints)."""
    if isinstance(seen, EmptyReader):
        return f"reader '{seen.reader}': {seen.reason}"
    data = seen.data
    parts = [f"reader '{seen.reader}': card {seen.aid} (serial {data.aid.serial_hex})"]
    for role, fpr in (("signature", data.signature_fingerprint),
                      ("decryption", data.decryption_fingerprint)):
        parts.append(f"{role} {fpr.hex().upper() if fpr else 'empty'}")
    return ", ".join(parts)


def choose(cards: Sequence[SeenCard | EmptyReader], checked: CheckedBundle, wanted: str | None,
           now: int) -> tuple[SeenCard, CardHolder]:
    """The first card (reader order) that matches a holder; the others are listed."""
    holders = openpgp_holders(checked)
    if wanted is not None and wanted not in {h.fingerprint for h in holders if h is not None}:
        raise CliError(NOT_A_HOLDER.format(fpr=wanted))
    if not cards:
        raise CliError(NO_READER)
    for item in cards:
        if isinstance(item, SeenCard):
            match = match_card(holders, item.data.signature_fingerprint,
                               item.data.decryption_fingerprint, now, wanted)
            if match is not None:
                for other in cards:
                    if other is not item:
                        ui.verbose(f"not used: {describe(other)}")
                return item, match
    raise CliError(NO_CARD_MATCHES, [describe(item) for item in cards])


# --- the PIN -------------------------------------------------------------------------------


def _retries(seen: SeenCard) -> int:
    return seen.card.pw_status().pw1_retries


def _verify_both(seen: SeenCard, pin: bytearray) -> None:
    """PW1 for decryption, then for signing: one PIN, both operations (cli.md §5.3)."""
    seen.card.verify_pin(PW1, bytes(pin))
    seen.card.verify_pin(PW1_SIGN, bytes(pin))


def read_pin_file(path: Path) -> bytearray:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        raise CliError(f"cannot read PIN file {path}", [exc.strerror or str(exc)]) from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise CliError(f"PIN file {path} is not a regular file")
        if mode & (stat.S_IRGRP | stat.S_IROTH):
            raise CliError(PIN_FILE_READABLE.format(file=path))
        data = bytearray(os.read(fd, MAX_PIN_FILE + 1))
    finally:
        os.close(fd)
    try:
        if len(data) > MAX_PIN_FILE:
            raise CliError(f"PIN file {path} is larger than {MAX_PIN_FILE} bytes")
        end = len(data)
        for terminator in (b"\n", b"\r"):
            found = data.find(terminator)
            if 0 <= found < end:
                end = found
        return bytearray(data[:end])
    finally:
        data[:] = bytes(len(data))


def unlock_with_pin_file(seen: SeenCard, path: Path) -> None:
    """One attempt, never when it could be the last one (cli.md §5.3)."""
    pin = read_pin_file(path)
    try:
        retries = _retries(seen)
        if retries == 0:
            raise CliError(PIN_BLOCKED.format(aid=seen.aid))
        if retries <= 1:
            raise CliError(PIN_FILE_COUNTER.format(n=retries))
        if len(pin) < MIN_PIN:
            raise CliError(PIN_LENGTH.format(n=len(pin), m=MIN_PIN))
        try:
            _verify_both(seen, pin)
        except PinBlocked:
            raise CliError(PIN_BLOCKED.format(aid=seen.aid)) from None
    finally:
        pin[:] = bytes(len(pin))


def _prompt(seen: SeenCard, retries: int) -> bytearray:
    name = f" ({seen.cardholder})" if seen.cardholder else ""
    if retries == 1:
        ui.warn("one PIN attempt left: a wrong PIN now blocks the card")
    try:
        typed = getpass.getpass(f"Unlock card {seen.aid}{name}\n"
                                f"Remaining PIN entry attempts: {retries}\n\nPIN: ")
    except EOFError:
        raise CliError(f"no PIN given for card {seen.aid}") from None
    return bytearray(typed.encode("utf-8"))


def unlock_interactively(seen: SeenCard) -> None:
    """Prompt until the card accepts the PIN, it blocks, or three PINs were too short."""
    refused_locally = 0
    while True:
        retries = _retries(seen)
        if retries == 0:
            raise CliError(PIN_BLOCKED.format(aid=seen.aid))
        pin = _prompt(seen, retries)
        try:
            if len(pin) < MIN_PIN:
                ui.info(PIN_LENGTH.format(n=len(pin), m=MIN_PIN))
                refused_locally += 1
                if refused_locally >= MAX_LOCAL_REFUSALS:
                    raise CliError(TOO_MANY_ATTEMPTS)
                continue
            try:
                _verify_both(seen, pin)
                return
            except WrongPin as exc:
                ui.info(f"Wrong PIN for card {seen.aid} ({exc.retries} attempts left)")
            except PinBlocked:
                raise CliError(PIN_BLOCKED.format(aid=seen.aid)) from None
        finally:
            pin[:] = bytes(len(pin))


# --- the card's two private operations -----------------------------------------------------


class CardDecryption:
    """`KeyOperations` on the card's decryption slot (PSO: DECIPHER)."""

    def __init__(self, seen: SeenCard, key: PublicKey, touch: bool) -> None:
        self._seen, self._key, self._touch = seen, key, touch

    def _decipher(self, data: bytes) -> bytes:
        if self._touch:
            ui.info(TOUCH)
        try:
            return self._seen.card.decipher(data)
        except WrongData as exc:  # the card's "this does not decrypt with me"
            raise DecryptionError("selected key cannot decrypt this message") from exc

    def agree(self, ephemeral: bytes) -> bytes:
        assert self._key.algorithm == ECDH and self._key.oid is not None
        result = self._decipher(ecdh_cipher_do(ephemeral))
        return normalise_shared_secret(result, self._key.oid)

    def decrypt_rsa(self, ciphertext: bytes) -> bytes:
        return self._decipher(rsa_cipher(ciphertext))


def card_signer(seen: SeenCard, key: PublicKey, touch: bool,
                clock: Callable[[], float] = time.time) -> Callable[[bytes], bytes]:
    """The `Signer` of message 3: signature P prepared here, its private step on the card."""

    def sign(data: bytes) -> bytes:
        prepared = prepare_detached_text(key, data, int(clock()))
        with card_errors(seen):
            payload = signing.signature_input(key, prepared)
            if touch:
                ui.info(TOUCH)
            raw = seen.card.sign(payload)
            try:
                finished = prepared.finish(signing.signature_values(key, raw))
            except OpenPGPError:
                raise CliError(f"{seen.label}: the card's signature does not verify with the "
                               f"holder's signing key {key.fingerprint_hex}") from None
        return armor_signature(finished)

    return sign


def _touch(uif: Uif | None) -> bool:
    return uif is not None and uif.requires_touch


def open_card_share(seen: SeenCard, holder: CardHolder, checked: CheckedBundle) -> CheckedShare:
    key = DelegatedKey(holder.decryption_key,
                       CardDecryption(seen, holder.decryption_key, _touch(seen.data.uif_decryption)))
    with card_errors(seen):
        try:
            share = open_own_share(checked, holder.index, [key])
        except shardfile.ShardfileError as exc:
            raise CliError(str(exc)) from None
    for warning in share.warnings:
        ui.warn(warning)
    return share


def unlock_card_holder(context: Context, checked: CheckedBundle, holder: str | None,
                       pin_file: Path | None, now: int) -> CardSession:
    """cli.md §5.2 step 3 with a smart card; the card stays connected inside `context`."""
    wanted = normalise_fingerprint(holder) if holder is not None else None
    try:
        cards = survey(context)
    except PcscError as exc:
        raise CliError(str(exc)) from None
    seen, match = choose(cards, checked, wanted, now)
    ui.info(f"Using {seen.label} for holder {match.certificate.fingerprint}")
    with card_errors(seen):
        if pin_file is not None:
            unlock_with_pin_file(seen, pin_file)
        else:
            unlock_interactively(seen)
    share = open_card_share(seen, match, checked)
    signer = card_signer(seen, match.signing_key, _touch(seen.data.uif_signature))
    return CardSession(seen, match, share, signer)
