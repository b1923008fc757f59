"""The OpenPGP card application over an injected `Transmit`: select, read, verify, sign, decrypt.

The session learns the card from `application_data()` and then chooses the APDU form itself:
extended lengths only when a command or its answer needs them and the card offers them (some
readers pass only short APDUs), otherwise short APDUs with command chaining, which is also the
form used before the card is known. It also learns whether PINs must be hashed (KDF-DO), and
`verify_pin` reads that first if it has not been read: a raw PIN sent to a KDF card is a spent
retry.
"""

from __future__ import annotations

from dataclasses import replace

from locksmith.core.card import apdu, tlv
from locksmith.core.card.apdu import Command, Transmit
from locksmith.core.card.appdata import (
    OPENPGP_AID_PREFIX,
    ApplicationData,
    PwStatus,
    Uif,
    parse_cardholder_name,
)
from locksmith.core.card.errors import (
    DataNotFound,
    IncorrectParameters,
    LocalError,
    MalformedResponse,
    NotSupported,
    PinBlocked,
    SecurityStatusNotSatisfied,
    UnsupportedFeature,
    WrongData,
    WrongPin,
)
from locksmith.core.card.kdf import PW1, PW1_SIGN, PW3, KdfDo, hash_pin

__all__ = [
    "PW1",
    "PW1_SIGN",
    "PW3",
    "OpenPGPCard",
    "digest_info",
    "ecdh_cipher_do",
    "normalise_shared_secret",
    "rsa_cipher",
]

INS_SELECT = 0xA4
INS_GET_DATA = 0xCA
INS_VERIFY = 0x20
INS_PSO = 0x2A
PSO_CDS = (0x9E, 0x9A)
PSO_DECIPHER = (0x80, 0x86)
_NO_UIF = (DataNotFound, NotSupported, WrongData, IncorrectParameters)


class OpenPGPCard:
    def __init__(self, send: Transmit) -> None:
        self._send = send
        self._data: ApplicationData | None = None

    @property
    def data(self) -> ApplicationData | None:
        """What `application_data()` last read, or None before it ran."""
        return self._data

    def _transmit(self, command: Command, response_size: int = 0) -> bytes:
        caps = self._data.capabilities if self._data is not None else None
        if caps is not None and caps.extended_lengths and (
                len(command.data) > apdu.SHORT_MAX_DATA or response_size > 256):
            if command.le == 0 and caps.max_response_length:
                command = replace(command, le=min(caps.max_response_length, 65536))
            return apdu.transmit(self._send, command, extended=True,
                                 max_command_data=caps.max_command_length)
        return apdu.transmit(self._send, command, extended=False)

    def select(self) -> None:
        """SELECT by the AID prefix, without Le (the form measured to work on a virtual card)."""
        self._transmit(Command(0x00, INS_SELECT, 0x04, 0x00, OPENPGP_AID_PREFIX))
        self._data = None

    def get_data(self, tag: int) -> bytes:
        if not 0 < tag <= 0xFFFF:
            raise LocalError(f"GET DATA tag {tag:#x} is not 1 or 2 bytes")
        return self._transmit(Command(0x00, INS_GET_DATA, tag >> 8, tag & 0xFF, le=0))

    def application_data(self) -> ApplicationData:
        """DO 6E, completed with F9 and D6–D8 read on their own when 6E leaves them out.

        A card that says it supports the KDF-DO but cannot return it fails here rather than
        being treated as KDF-less, which could spend a PIN retry on a raw PIN.
        """
        data = ApplicationData.parse(self.get_data(0x6E))
        if data.kdf is None and data.extended_capabilities.kdf_supported:
            try:
                data = replace(data, kdf=KdfDo.parse(self.get_data(0xF9)))
            except DataNotFound:
                pass
        data = replace(data, uif_signature=data.uif_signature or self._uif(0xD6),
                       uif_decryption=data.uif_decryption or self._uif(0xD7),
                       uif_authentication=data.uif_authentication or self._uif(0xD8))
        self._data = data
        return data

    def _uif(self, tag: int) -> Uif | None:
        """A UIF DO read on its own; cards without touch support answer with various errors."""
        try:
            return Uif.parse(self.get_data(tag))
        except _NO_UIF:
            return None

    def cardholder_name(self) -> str | None:
        try:
            return parse_cardholder_name(self.get_data(0x65))
        except DataNotFound:
            return None

    def pw_status(self) -> PwStatus:
        return PwStatus.parse(self.get_data(0xC4))

    def verify_pin(self, reference: int, pin: bytes) -> None:
        """VERIFY PW1 (0x81 signing, 0x82 decryption) or PW3 (0x83); WrongPin / PinBlocked.

        A refusal that leaves no attempt (63C0) is reported as `PinBlocked`: it is.

        Cards that answer a wrong PIN with 6982 instead of 63Cx (Gnuk does) are asked for the
        retry counter, so the caller always gets `WrongPin.retries` or `PinBlocked`.
        """
        if reference not in (PW1_SIGN, PW1, PW3):
            raise LocalError(f"unknown PIN reference {reference:#04x}")
        if not pin:
            raise LocalError("an empty PIN would only query the verification status")
        data = self._data if self._data is not None else self.application_data()
        secret = hash_pin(data.kdf, pin, reference)
        try:
            self._transmit(Command(0x00, INS_VERIFY, 0x00, reference, secret))
        except WrongPin as exc:
            if exc.retries == 0:
                raise PinBlocked(exc.sw) from None
            raise
        except SecurityStatusNotSatisfied as exc:
            status = self.pw_status()
            retries = status.pw3_retries if reference == PW3 else status.pw1_retries
            raise (PinBlocked(exc.sw) if retries == 0 else WrongPin(exc.sw, retries)) from None

    def sign(self, data: bytes) -> bytes:
        """PSO: COMPUTE DIGITAL SIGNATURE over `data` (a digest, or an RSA DigestInfo)."""
        size = 0
        if self._data is not None and self._data.signature_attributes.rsa_bits:
            size = (self._data.signature_attributes.rsa_bits + 7) // 8
        result = self._transmit(Command(0x00, INS_PSO, *PSO_CDS, data, le=0), size)
        if not result:
            raise MalformedResponse("the card returned an empty signature")
        return result

    def decipher(self, data: bytes) -> bytes:
        """PSO: DECIPHER of a cipher DO (`ecdh_cipher_do`) or an RSA cryptogram (`rsa_cipher`)."""
        result = self._transmit(Command(0x00, INS_PSO, *PSO_DECIPHER, data, le=0))
        if not result:
            raise MalformedResponse("the card returned an empty decryption result")
        return result


# --- builders ------------------------------------------------------------------------------

_DIGEST_INFO = {
    "sha256": bytes.fromhex("3031300d060960864801650304020105000420"),
    "sha384": bytes.fromhex("3041300d060960864801650304020205000430"),
    "sha512": bytes.fromhex("3051300d060960864801650304020305000440"),
}


def digest_info(hash_name: str, digest: bytes) -> bytes:
    """PKCS#1 v1.5 DigestInfo (RFC 8017 §9.2), what an RSA card signs; `SHA-256` or `sha256`."""
    key = hash_name.lower().replace("-", "")
    prefix = _DIGEST_INFO.get(key)
    if prefix is None:
        raise LocalError(f"no DigestInfo for hash {hash_name}")
    if len(digest) != prefix[-1]:
        raise LocalError(f"a {hash_name} digest is {prefix[-1]} bytes, not {len(digest)}")
    return prefix + digest


def ecdh_cipher_do(public: bytes) -> bytes:
    """`A6 { 7F49 { 86 <ephemeral public key> } }` for PSO: DECIPHER with an ECDH key.

    Curve25519 takes the native 32-byte key: an OpenPGP-encoded point (`40 ‖ 32 bytes`) has
    its prefix dropped here, since the card would reject it (cli.md §5.3). NIST points are
    passed as `04 ‖ x ‖ y`.
    """
    if len(public) == 33 and public[0] == 0x40:
        public = public[1:]
    if not public:
        raise LocalError("empty ephemeral public key")
    return tlv.encode(0xA6, tlv.encode(0x7F49, tlv.encode(0x86, public)))


def rsa_cipher(ciphertext: bytes, modulus_bits: int | None = None) -> bytes:
    """`00 ‖ ciphertext`; with `modulus_bits`, first restored to the modulus length.

    OpenPGP MPIs drop leading zero bytes, but the card wants a cryptogram as long as its
    modulus (GnuPG's `fixuplen`).
    """
    if modulus_bits is not None:
        size = (modulus_bits + 7) // 8
        if len(ciphertext) > size:
            raise LocalError(f"RSA ciphertext of {len(ciphertext)} bytes for a {size}-byte key")
        ciphertext = ciphertext.rjust(size, b"\x00")
    return b"\x00" + ciphertext


_X_SIZES = {
    bytes.fromhex("2a8648ce3d030107"): 32,  # NIST P-256
    bytes.fromhex("2b81040022"): 48,  # NIST P-384
    bytes.fromhex("2b81040023"): 66,  # NIST P-521
    bytes.fromhex("2b8104000a"): 32,  # secp256k1
    bytes.fromhex("2b2403030208010107"): 32,  # brainpoolP256r1
    bytes.fromhex("2b240303020801010b"): 48,  # brainpoolP384r1
    bytes.fromhex("2b240303020801010d"): 64,  # brainpoolP512r1
}
_MONTGOMERY = {
    bytes.fromhex("2b060104019755010501"): 32,  # Curve25519 (OpenPGP)
    bytes.fromhex("2b656e"): 32,  # X25519 (RFC 8410)
    bytes.fromhex("2b656f"): 56,  # X448
}


def normalise_shared_secret(result: bytes, curve_oid: bytes) -> bytes:
    """The ECDH shared secret as RFC 6637 uses it, whichever form the card answered in.

    Curve25519: the 32 raw bytes, or `40 ‖ 32 bytes`. Weierstrass curves: x, or `04 ‖ x ‖ y`.
    """
    if curve_oid in _MONTGOMERY:
        size = _MONTGOMERY[curve_oid]
        if len(result) == size:
            return result
        if len(result) == size + 1 and result[0] == 0x40:
            return result[1:]
    elif curve_oid in _X_SIZES:
        size = _X_SIZES[curve_oid]
        if len(result) == size:
            return result
        if len(result) == 1 + 2 * size and result[0] == 0x04:
            return result[1:1 + size]
    else:
        raise UnsupportedFeature(f"ECDH on curve {curve_oid.hex()} is not supported")
    raise MalformedResponse(f"the card's ECDH result of {len(result)} bytes does not fit "
                            f"curve {curve_oid.hex()}")

