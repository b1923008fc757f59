"""Putting holder keys on a virtual OpenPGP card with raw APDUs, and reading its saved state.

Deliberately independent of the project's own card code (only pyscard and the OpenPGP card
specification 3.4), so that a test can use it as the oracle: a card provisioned here is what a
real holder's card looks like after `keytocard`; `CardSession` is a second, simple
implementation of the APDUs the project sends.

What jcecard wants (measured, /work/shared/notes/virtual-card.md): algorithm attributes
(C1/C2/C3) set before an import; key import by PUT DATA odd `00 DB 3F FF` with an extended
header list; Ed25519 secret as is; Cv25519 secret big-endian (byte-reversed, as OpenPGP stores it
and GnuPG sends it); RSA as e (exactly 3 bytes) ‖ p ‖ q (bits/16 bytes each). It computes no
fingerprints or timestamps on import: we write C7–C9 and CE–D0 from the key's public key packet.
Known jcecard bug: a slot that held an RSA key keeps signing with it after an Ed25519 import in
the same bridge process — provision a fresh card per algorithm.

PINs cannot be blocked or retry counters set through APDUs without side effects, and touch
policies (UIF) are not writable on jcecard; `card_state` / `edit_card_state` read and patch
jcecard's `card_state.json` instead, while the card is out of its reader.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric import ed25519, rsa, x25519

from locksmith.core.openpgp import validity
from locksmith.core.openpgp.certs import load_certificates
from locksmith.core.openpgp.keygen import new_cv25519_key, new_ed25519_key
from locksmith.core.openpgp.keys import (
    OID_CURVE25519,
    OID_ED25519,
    RSA_ENCRYPT_SIGN,
    PublicKey,
    SecretKey,
    encode_mpi,
)
from locksmith.core.openpgp.secretkeys import load_secret_keys, match_holder
from locksmith.core.openpgp.subpackets import FLAG_AUTHENTICATE

__all__ = [
    "OPENPGP_AID", "PW1", "PW3", "CardError", "CardSession", "Slot", "algorithm_attributes",
    "card_keys_from_keyring", "card_state", "cv25519_key", "ed25519_key", "edit_card_state",
    "init_card_state", "key_import_data", "provision", "rsa_key", "set_retry_counters",
    "set_uif",
]

REPO = Path(__file__).resolve().parents[2]

OPENPGP_AID = bytes.fromhex("D27600012401")
PW1 = "123456"  # jcecard's (and the specification's) default user PIN
PW3 = "12345678"  # default admin PIN

Slot = Literal["sig", "dec", "aut"]
SLOTS: tuple[Slot, ...] = ("sig", "dec", "aut")
_CRT = {"sig": 0xB6, "dec": 0xB8, "aut": 0xA4}
_ATTRIBUTES_TAG = {"sig": 0xC1, "dec": 0xC2, "aut": 0xC3}
_FINGERPRINT_TAG = {"sig": 0xC7, "dec": 0xC8, "aut": 0xC9}
_TIMESTAMP_TAG = {"sig": 0xCE, "dec": 0xCF, "aut": 0xD0}
_STATE_KEY = {"sig": "key_sig", "dec": "key_dec", "aut": "key_aut"}

SW_OK = 0x9000
SHARING_VIOLATION_WAIT = 5.0  # seconds; a just-stopped scdaemon releases the reader at once


class CardError(RuntimeError):
    """A card command failed; `sw` is the status word (0 for a PC/SC-level failure)."""

    def __init__(self, message: str, sw: int = 0) -> None:
        super().__init__(message)
        self.sw = sw


# --- BER-TLV, as much as the card needs ------------------------------------------------------


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    if n < 0x100:
        return bytes([0x81, n])
    return bytes([0x82]) + n.to_bytes(2, "big")


def _tag(tag: int) -> bytes:
    return tag.to_bytes(2 if tag > 0xFF else 1, "big")


def tlv(tag: int, value: bytes) -> bytes:
    return _tag(tag) + _length(len(value)) + value


def find_tlv(data: bytes, wanted: int) -> bytes | None:
    """The value of the first `wanted` tag, searching constructed DOs recursively."""
    pos = 0
    while pos < len(data):
        tag = data[pos]
        pos += 1
        if tag & 0x1F == 0x1F:  # two-byte tag
            tag = (tag << 8) | data[pos]
            pos += 1
        length = data[pos]
        pos += 1
        if length & 0x80:
            count = length & 0x7F
            length = int.from_bytes(data[pos:pos + count], "big")
            pos += count
        value = data[pos:pos + length]
        pos += length
        if tag == wanted:
            return value
        first = tag >> 8 if tag > 0xFF else tag
        if first & 0x20:  # constructed
            found = find_tlv(value, wanted)
            if found is not None:
                return found
    return None


# --- a PC/SC connection speaking raw APDUs ------------------------------------------------------


def _check_env(env: Mapping[str, str] | None) -> None:
    """PC/SC calls here go through this process's libpcsclite, bound to the socket that
    `CardStack` put in `os.environ`; an `env` naming another pcscd cannot be honoured."""
    if env is None:
        return
    wanted = env.get("PCSCLITE_CSOCK_NAME")
    if wanted is not None and wanted != os.environ.get("PCSCLITE_CSOCK_NAME"):
        raise ValueError(f"this process talks to the pcscd at "
                         f"{os.environ.get('PCSCLITE_CSOCK_NAME')}, not {wanted}")


class CardSession:
    """One PC/SC connection to the card in `reader`, with the OpenPGP application selected.

    Disconnecting powers the card down (SCARD_UNPOWER_CARD), so verified PINs never leak from one
    session into the next (jcecard keeps them across a warm reset).
    """

    def __init__(self, reader: str, *, select: bool = True,
                 env: Mapping[str, str] | None = None) -> None:
        from smartcard import scard

        _check_env(env)
        self._scard = scard
        self.reader = reader
        hresult, self._context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        self._ok(hresult, "SCardEstablishContext")
        self._card: Any = None
        deadline = time.monotonic() + SHARING_VIOLATION_WAIT
        try:
            while True:
                hresult, card, self._protocol = scard.SCardConnect(
                    self._context, reader, scard.SCARD_SHARE_SHARED,
                    scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1)
                if hresult != scard.SCARD_E_SHARING_VIOLATION or time.monotonic() > deadline:
                    break
                time.sleep(0.05)  # bounded: another process is letting go of the reader
            self._ok(hresult, f"SCardConnect({reader})")
            self._card = card
            if select:
                self.select()
        except BaseException:
            self.close()
            raise

    def _ok(self, hresult: int, what: str) -> None:
        if hresult != self._scard.SCARD_S_SUCCESS:
            raise CardError(f"{what}: {self._scard.SCardGetErrorMessage(hresult)}")

    def close(self) -> None:
        if self._card is not None:
            self._scard.SCardDisconnect(self._card, self._scard.SCARD_UNPOWER_CARD)
            self._card = None
        if self._context is not None:
            self._scard.SCardReleaseContext(self._context)
            self._context = None

    def __enter__(self) -> CardSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # raw exchange

    def exchange(self, apdu: bytes) -> tuple[bytes, int]:
        """One command APDU → (response data, SW); follows 61xx (GET RESPONSE) and 6Cxx."""
        hresult, response = self._scard.SCardTransmit(self._card, self._protocol, list(apdu))
        self._ok(hresult, f"SCardTransmit({apdu[:4].hex()})")
        data, sw = bytes(response[:-2]), (response[-2] << 8) | response[-1]
        while sw >> 8 == 0x61:
            hresult, response = self._scard.SCardTransmit(
                self._card, self._protocol, [0x00, 0xC0, 0x00, 0x00, sw & 0xFF])
            self._ok(hresult, "SCardTransmit(GET RESPONSE)")
            data, sw = data + bytes(response[:-2]), (response[-2] << 8) | response[-1]
        if sw >> 8 == 0x6C:
            return self.exchange(apdu[:-1] + bytes([sw & 0xFF]))
        return data, sw

    def command(self, cla: int, ins: int, p1: int, p2: int, data: bytes = b"",
                le: int | None = None, *, what: str = "") -> bytes:
        """Send (with command chaining above 255 data bytes), require 9000, return the data."""
        chunks = [data[i:i + 255] for i in range(0, len(data), 255)] or [b""]
        for index, chunk in enumerate(chunks):
            last = index == len(chunks) - 1
            apdu = bytes([cla | (0 if last else 0x10), ins, p1, p2])
            if chunk:
                apdu += bytes([len(chunk)]) + chunk
            if last and le is not None:
                apdu += bytes([le & 0xFF])
            response, sw = self.exchange(apdu)
            if sw != SW_OK:
                raise CardError(f"{what or apdu[:4].hex()} failed: SW {sw:04X}", sw)
        return response

    # the OpenPGP card commands

    def select(self) -> None:
        self.command(0x00, 0xA4, 0x04, 0x00, OPENPGP_AID, what="SELECT OpenPGP")

    def get_data(self, tag: int) -> bytes:
        return self.command(0x00, 0xCA, tag >> 8, tag & 0xFF, le=0, what=f"GET DATA {tag:04X}")

    def put_data(self, tag: int, data: bytes) -> None:
        self.command(0x00, 0xDA, tag >> 8, tag & 0xFF, data, what=f"PUT DATA {tag:04X}")

    def verify(self, pin: str, reference: int) -> None:
        """VERIFY; `reference` 0x81 (PW1 signing), 0x82 (PW1 other), 0x83 (PW3)."""
        self.command(0x00, 0x20, 0x00, reference, pin.encode(), what=f"VERIFY {reference:02X}")

    def sign(self, data: bytes, pin: str | None = PW1) -> bytes:
        """PSO: COMPUTE DIGITAL SIGNATURE over `data` (EdDSA: the hash; RSA: a DigestInfo)."""
        if pin is not None:
            self.verify(pin, 0x81)
        return self.command(0x00, 0x2A, 0x9E, 0x9A, data, le=0, what="PSO:CDS")

    def decipher(self, data: bytes, pin: str | None = PW1) -> bytes:
        """PSO: DECIPHER of `data` (`A6…` ECDH cipher DO, or `00 ‖ RSA ciphertext`)."""
        if pin is not None:
            self.verify(pin, 0x82)
        return self.command(0x00, 0x2A, 0x80, 0x86, data, le=0, what="PSO:DECIPHER")

    def ecdh(self, ephemeral: bytes, pin: str | None = PW1) -> bytes:
        """X25519 shared secret with the card's decryption key (raw 32-byte `ephemeral`)."""
        return self.decipher(tlv(0xA6, tlv(0x7F49, tlv(0x86, ephemeral))), pin)

    def authenticate(self, data: bytes, pin: str | None = PW1) -> bytes:
        """INTERNAL AUTHENTICATE with the authentication key."""
        if pin is not None:
            self.verify(pin, 0x82)
        return self.command(0x00, 0x88, 0x00, 0x00, data, le=0, what="INTERNAL AUTHENTICATE")

    def application_data(self) -> bytes:
        return self.get_data(0x6E)

    def fingerprints(self) -> dict[Slot, bytes]:
        """The C5 fingerprints, read from the application related data (as a client would)."""
        c5 = find_tlv(self.application_data(), 0xC5)
        if c5 is None or len(c5) != 60:
            raise CardError("no C5 fingerprints in the application related data")
        return {slot: c5[20 * i:20 * i + 20] for i, slot in enumerate(SLOTS)}

    def pw_status(self) -> bytes:
        """C4: PW1 validity, max lengths, and the PW1 / RC / PW3 retry counters (bytes 4–6)."""
        return self.get_data(0xC4)

    def import_key(self, slot: Slot, key: SecretKey) -> None:
        """Algorithm attributes, the key, its fingerprint and creation time (PW3 verified)."""
        self.put_data(_ATTRIBUTES_TAG[slot], algorithm_attributes(key))
        self.command(0x00, 0xDB, 0x3F, 0xFF, key_import_data(slot, key),
                     what=f"key import ({slot})")
        self.put_data(_FINGERPRINT_TAG[slot], key.public.fingerprint)
        self.put_data(_TIMESTAMP_TAG[slot], key.public.created.to_bytes(4, "big"))


@contextmanager
def card_session(reader: str, **kwargs: Any) -> Iterator[CardSession]:
    session = CardSession(reader, **kwargs)
    try:
        yield session
    finally:
        session.close()


# --- key material ----------------------------------------------------------------------------------


def algorithm_attributes(key: SecretKey) -> bytes:
    """C1/C2/C3 value for `key`: EdDSA/Ed25519, ECDH/Cv25519 or RSA with a 17-bit exponent."""
    private = key.private
    if isinstance(private, ed25519.Ed25519PrivateKey):
        return bytes([0x16]) + OID_ED25519
    if isinstance(private, x25519.X25519PrivateKey):
        return bytes([0x12]) + OID_CURVE25519
    if isinstance(private, rsa.RSAPrivateKey):
        return bytes([0x01]) + private.key_size.to_bytes(2, "big") + bytes([0x00, 0x11, 0x00])
    raise ValueError(f"jcecard holds only Ed25519, Cv25519 and RSA keys, not {type(private)}")


def key_import_data(slot: Slot, key: SecretKey) -> bytes:
    """The extended header list `4D { CRT, 7F48 template, 5F48 key data }` for PUT DATA odd."""
    private = key.private
    if isinstance(private, ed25519.Ed25519PrivateKey):
        parts = [(0x92, private.private_bytes_raw())]
    elif isinstance(private, x25519.X25519PrivateKey):
        scalar = bytearray(private.private_bytes_raw())  # clamped as OpenPGP stores it
        scalar[0] &= 0xF8
        scalar[31] = (scalar[31] & 0x7F) | 0x40
        parts = [(0x92, bytes(scalar[::-1]))]
    elif isinstance(private, rsa.RSAPrivateKey):
        numbers = private.private_numbers()
        half = private.key_size // 16
        if numbers.public_numbers.e >= 1 << 24:
            raise ValueError("the card format wants e in exactly 3 bytes")
        parts = [(0x91, numbers.public_numbers.e.to_bytes(3, "big")),
                 (0x92, numbers.p.to_bytes(half, "big")), (0x93, numbers.q.to_bytes(half, "big"))]
    else:
        raise ValueError(f"jcecard holds only Ed25519, Cv25519 and RSA keys, not {type(private)}")
    template = b"".join(_tag(tag) + _length(len(value)) for tag, value in parts)
    body = bytes([_CRT[slot], 0x00]) + tlv(0x7F48, template) + tlv(
        0x5F48, b"".join(value for _, value in parts))
    return tlv(0x4D, body)


def ed25519_key(created: int | None = None) -> SecretKey:
    return new_ed25519_key(int(time.time()) if created is None else created)


def cv25519_key(created: int | None = None) -> SecretKey:
    return new_cv25519_key(int(time.time()) if created is None else created)


def rsa_key(bits: int = 2048, created: int | None = None) -> SecretKey:
    """A fresh RSA key (e = 65537) as an OpenPGP RSA (encrypt or sign) key."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    numbers = private.public_key().public_numbers()
    public = PublicKey(int(time.time()) if created is None else created, RSA_ENCRYPT_SIGN,
                       encode_mpi(numbers.n) + encode_mpi(numbers.e),
                       rsa_n=numbers.n, rsa_e=numbers.e)
    return SecretKey(public, private)


def card_keys_from_keyring(private_keyring: bytes | str, certificate: bytes | str, *,
                           passphrase: str | None = None, now: int | None = None,
                           ) -> tuple[SecretKey, SecretKey, SecretKey | None]:
    """(signing, decryption, authentication) keys of the holder `certificate` from its private
    keyring (e.g. `caution secret keygen`'s): what a holder would move to a card.

    Chosen as the project chooses them for that holder (`match_holder`): a signing-capable key
    live now (subkeys before the primary, as `keytocard` users do) and a storage-decryption key;
    the authentication key is the first key flagged for authentication, if any.
    """
    now = int(time.time()) if now is None else now
    keyring = load_secret_keys(private_keyring)
    [cert] = load_certificates(certificate)
    match = match_holder(keyring, [cert], now)
    if match is None:
        raise ValueError(f"the keyring has no usable signing and decryption keys of "
                         f"{cert.fingerprint}")
    signing = sorted(match.signing, key=lambda k: k.fingerprint == cert.fingerprint)[0]
    mine = {k.public.fingerprint: k for k in keyring.for_primary(cert.fingerprint)}
    auth = [mine[k.fingerprint] for k in validity.structural_keys(cert, FLAG_AUTHENTICATE)
            if k.fingerprint in mine]
    auth.sort(key=lambda k: k.fingerprint == cert.fingerprint)
    return (signing.unlock(passphrase), match.decryption[0].unlock(passphrase),
            auth[0].unlock(passphrase) if auth else None)


# --- provisioning -----------------------------------------------------------------------------------


def provision(reader: str, *, signing: SecretKey, decryption: SecretKey,
              authentication: SecretKey | None = None, cardholder: str | None = None,
              admin_pin: str = PW3, env: Mapping[str, str] | None = None) -> None:
    """Put the keys on the card in `reader` as `keytocard` would, in one admin session.

    `cardholder` is written as given: the card format is `Surname<<Given` (ISO/IEC 7501-1).
    `env` may be a `CardStack.env`; it must name the pcscd this process already talks to.
    """
    keys: list[tuple[Slot, SecretKey]] = [("sig", signing), ("dec", decryption)]
    if authentication is not None:
        keys.append(("aut", authentication))
    with card_session(reader, env=env) as card:
        card.verify(admin_pin, 0x83)
        for slot, key in keys:  # all attributes first: the card refuses keys of another type
            card.put_data(_ATTRIBUTES_TAG[slot], algorithm_attributes(key))
        for slot, key in keys:
            card.import_key(slot, key)
        if cardholder is not None:
            card.put_data(0x5B, cardholder.encode("latin-1"))


# --- jcecard's saved state ----------------------------------------------------------------------------


def _state_file(storage: Path) -> Path:
    return Path(storage) / "card_state.json"


def _bridge_running(storage: Path) -> int | None:
    try:
        pid = int((Path(storage) / "bridge.pid").read_text())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return pid


def init_card_state(storage: Path) -> None:
    """Write a fresh card's state (as jcecard makes it) without inserting the card.

    In a subprocess: importing jcecard reconfigures the root logger of the importing process.
    """
    subprocess.run([sys.executable, "-m", "tests.cardkit.bridge", "--storage", str(storage),
                    "--init-only"], cwd=REPO, check=True, timeout=60,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def card_state(storage: Path) -> dict[str, Any]:
    """jcecard's `card_state.json` (layout: jcecard/card_data.py `CardState.to_dict`):
    `pin_data.{pw1,pw3,rc}_retry_counter`, `key_sig|key_dec|key_aut.{uif, fingerprint (base64),
    generation_time, algorithm, private_key_data}`, `cardholder.name`, `signature_counter`, …"""
    state: dict[str, Any] = json.loads(_state_file(storage).read_text())
    return state


def edit_card_state(storage: Path, edit: Callable[[dict[str, Any]], dict[str, Any] | None],
                    ) -> dict[str, Any]:
    """Patch the saved state of a card that is out of its reader; returns the new state.

    jcecard rewrites the whole file from memory after every change, so an edit made while its
    bridge runs would be lost (refused here). `edit` changes the dict in place or returns a new
    one. Use `VirtualCard.removed()` to take an inserted card out for the edit.
    """
    pid = _bridge_running(storage)
    if pid is not None:
        raise RuntimeError(f"the bridge (pid {pid}) of {storage} is running: remove the card "
                           "first")
    path = _state_file(storage)
    if not path.exists():
        init_card_state(storage)
    state = card_state(storage)
    result = edit(state)
    new = state if result is None else result
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(new, indent=2))
    os.replace(tmp, path)
    return new


def set_uif(storage: Path, slot: Slot, mode: int) -> None:
    """User interaction flag (touch policy) of a slot: 0 off, 1 on, 2 permanent. jcecard reports
    it (GET DATA D6/D7/D8) but never waits for a touch."""
    edit_card_state(storage, lambda s: s[_STATE_KEY[slot]].update(uif=mode))


def set_retry_counters(storage: Path, *, pw1: int | None = None, pw3: int | None = None,
                       rc: int | None = None) -> None:
    """Retry counters as the card will report them in C4 (0 = blocked)."""
    values = {f"{name}_retry_counter": value
              for name, value in (("pw1", pw1), ("pw3", pw3), ("rc", rc)) if value is not None}
    edit_card_state(storage, lambda s: s["pin_data"].update(values))
