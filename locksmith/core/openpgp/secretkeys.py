"""Secret keys from a holder's private keyring (formats.md §11; cli.md §5.2 step 3).

Protection is detected by our own parser of the secret part of each key packet, so that the
exact refusal texts of §11 come from one place and a keyring holding one unusable key still
yields the others. Unprotected keys become `keys.SecretKey` without PGPy. Passphrase-protected
keys (S2K usage 254, iterated+salted S2K) are unlocked with PGPy, imported lazily inside
`unlock` only: it implements the S2K, CFB and SHA-1 check correctly and nothing on the boot path
ever needs it. PGPy is handed a single key packet, never a whole certificate, so its own
certificate handling plays no part.

Holder matching (§5.2 step 3) judges liveness against the *bundle's* copy of the holder's
certificate, because that is what the enclave checks the signature against (protocol.md §7).
"""

from __future__ import annotations

import enum
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

from locksmith.core.openpgp import validity
from locksmith.core.openpgp.certs import Certificate, load_certificates, split_secret_part
from locksmith.core.openpgp.errors import OpenPGPError
from locksmith.core.openpgp.keys import PublicKey, SecretKey, private_key_from_mpis
from locksmith.core.openpgp.packets import Packet

__all__ = [
    "ARGON2_AEAD_REFUSAL", "OTHER_PROTECTION_REFUSAL", "HolderKeys", "PassphraseRequired",
    "PrivateKeyring", "Protection", "SecretKeyError", "StoredSecretKey",
    "UnsupportedProtection", "WrongPassphrase", "load_secret_keys", "match_holder",
    "normalise_fingerprint",
]

ARGON2_AEAD_REFUSAL = ("unsupported secret-key protection (Argon2/AEAD); "
                       "re-export the key with iterated+salted S2K")
OTHER_PROTECTION_REFUSAL = ("unsupported secret-key protection; "
                            "re-export the key with iterated+salted S2K")

_USAGE_NONE, _USAGE_AEAD, _USAGE_SHA1, _USAGE_CHECKSUM = 0, 253, 254, 255
_S2K_ITERATED_SALTED, _S2K_ARGON2 = 3, 4
_AES = frozenset({7, 8, 9})  # AES-128/192/256: the only ciphers formats.md §11 accepts


class SecretKeyError(OpenPGPError):
    pass


class UnsupportedProtection(SecretKeyError):
    """The key is protected in a way this project refuses; the message is the §11 text."""


class PassphraseRequired(SecretKeyError):
    pass


class WrongPassphrase(SecretKeyError):
    """The passphrase does not unlock the key; the CLI re-prompts (cli.md §5.2 step 3)."""


class Protection(enum.Enum):
    NONE = "none"
    ITERATED_SALTED = "iterated+salted S2K"
    UNSUPPORTED = "unsupported"


def _protection(secret: bytes) -> tuple[Protection, str | None]:
    if not secret:
        raise SecretKeyError("secret key packet has no secret part")
    usage = secret[0]
    if usage == _USAGE_NONE:
        return Protection.NONE, None
    if usage == _USAGE_AEAD:
        return Protection.UNSUPPORTED, ARGON2_AEAD_REFUSAL
    if usage in (_USAGE_SHA1, _USAGE_CHECKSUM):
        if len(secret) < 3:
            raise SecretKeyError("truncated secret-key protection")
        if secret[2] == _S2K_ARGON2:
            return Protection.UNSUPPORTED, ARGON2_AEAD_REFUSAL
        if usage == _USAGE_SHA1 and secret[2] == _S2K_ITERATED_SALTED and secret[1] in _AES:
            return Protection.ITERATED_SALTED, None
    return Protection.UNSUPPORTED, OTHER_PROTECTION_REFUSAL


@dataclass(frozen=True)
class StoredSecretKey:
    """One key with secret material, as stored: possibly still locked."""

    public: PublicKey
    primary_fingerprint: str
    packet: Packet  # the original secret key or subkey packet
    protection: Protection
    refusal: str | None  # the §11 refusal text when `protection` is UNSUPPORTED

    @property
    def fingerprint(self) -> str:
        return self.public.fingerprint_hex

    @property
    def needs_passphrase(self) -> bool:
        return self.protection is Protection.ITERATED_SALTED

    def unlock(self, passphrase: str | bytes | None = None) -> SecretKey:
        """The usable key. `WrongPassphrase` lets the caller ask again."""
        if self.refusal is not None:
            raise UnsupportedProtection(self.refusal)
        secret = split_secret_part(self.packet.body, self.public)
        if self.protection is Protection.NONE:
            mpis, checksum = secret[1:-2], secret[-2:]
            if len(secret) < 3 or (sum(mpis) & 0xFFFF).to_bytes(2, "big") != checksum:
                raise SecretKeyError(f"secret key {self.fingerprint} is corrupt (checksum)")
        elif passphrase is None:
            raise PassphraseRequired(f"secret key {self.fingerprint} is passphrase-protected")
        else:
            mpis = self._pgpy_unlock(passphrase)
        try:
            return SecretKey(self.public, private_key_from_mpis(self.public, mpis))
        except OpenPGPError:
            raise
        except ValueError as exc:  # `cryptography` refusing inconsistent numbers
            raise SecretKeyError(f"secret key {self.fingerprint} is invalid") from exc

    def _pgpy_unlock(self, passphrase: str | bytes) -> bytes:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PGPy's cryptography deprecation warnings
            from pgpy.errors import PGPDecryptionError
            from pgpy.packet import Packet as PGPyPacket

            try:
                pgpy_key = PGPyPacket(bytearray(self.packet.serialize()))
            except Exception as exc:  # PGPy raises assorted types on input it cannot parse
                raise SecretKeyError(f"cannot parse protected key {self.fingerprint}") from exc
            try:
                pgpy_key.unprotect(passphrase)
            except PGPDecryptionError as exc:
                raise WrongPassphrase(f"wrong passphrase for key {self.fingerprint}") from exc
            except Exception as exc:
                raise SecretKeyError(f"cannot unlock key {self.fingerprint}: {exc}") from exc
            material = pgpy_key.keymaterial
            return b"".join(bytes(getattr(material, name).to_mpibytes())
                            for name in material.__privfields__)


@dataclass(frozen=True)
class PrivateKeyring:
    certificates: tuple[Certificate, ...]  # as loaded, secret packets included
    keys: tuple[StoredSecretKey, ...]  # every key with real secret material, in file order

    def for_primary(self, fingerprint: str) -> list[StoredSecretKey]:
        wanted = normalise_fingerprint(fingerprint)
        return [k for k in self.keys if k.primary_fingerprint == wanted]


def load_secret_keys(data: bytes | str) -> PrivateKeyring:
    """All secret keys of a private keyring (armored, any number of blocks, or binary).

    Protection problems are recorded per key, not raised, so that a key the holder does not
    need cannot block the one it does; `unlock` raises the §11 refusal for a refused key.
    """
    certs = load_certificates(data)
    keys: list[StoredSecretKey] = []
    for cert in certs:
        for key in cert.keys():
            packet = cert.secret_packets.get(key.fingerprint)
            if packet is None:
                continue
            protection, refusal = _protection(split_secret_part(packet.body, key))
            keys.append(StoredSecretKey(key, cert.fingerprint, packet, protection, refusal))
    return PrivateKeyring(tuple(certs), tuple(keys))


def normalise_fingerprint(text: str) -> str:
    """Fingerprint input "with or without spaces, any case" (formats.md §1) → display form."""
    return "".join(text.split()).upper()


@dataclass(frozen=True)
class HolderKeys:
    index: int  # holder index in the bundle (0-based)
    certificate: Certificate  # the bundle's copy
    signing: tuple[StoredSecretKey, ...]  # secret keys for signing candidates at now
    decryption: tuple[StoredSecretKey, ...]  # secret keys for §13.5 decryption keys


def match_holder(keyring: PrivateKeyring, holders: Sequence[Certificate | None], now: int,
                 holder: str | None = None) -> HolderKeys | None:
    """The first holder (bundle order) whose keys the keyring can sign and decrypt with.

    A holder matches when the keyring has its primary fingerprint with secret material for a
    signing key live now (and so usable for a signature made now, §13.3) and for a decryption
    key (§13.5). `holder` (the `--holder` option) restricts the choice to that fingerprint.
    `None` entries (holders that are not OpenPGP certificates) never match.
    """
    wanted = normalise_fingerprint(holder) if holder is not None else None
    for index, cert in enumerate(holders):
        if cert is None or (wanted is not None and cert.fingerprint != wanted):
            continue
        mine = {k.public.fingerprint: k for k in keyring.for_primary(cert.fingerprint)}
        if not mine:
            continue
        signing = [mine[k.fingerprint] for k in validity.signing_candidates(cert, now, now)
                   if k.fingerprint in mine]
        decryption = [mine[k.fingerprint]
                      for k in validity.decryption_keys(cert, among=set(mine))]
        if signing and decryption:
            return HolderKeys(index, cert, tuple(signing), tuple(decryption))
    return None
