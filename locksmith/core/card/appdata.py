"""The OpenPGP application's data objects (card spec 3.4 §4.4), parsed strictly.

Everything a card says arrives here as bytes and leaves as a frozen dataclass or a
`MalformedResponse`; no parser raises anything else, whatever the card sends. Where cards in
the field send more than the spec lists (80-byte C5 with an attestation-key fingerprint, longer
C0/C4 in later versions), the extra bytes are ignored; where they send less, the object is
refused.
"""

from __future__ import annotations

from dataclasses import dataclass

from locksmith.core.card import tlv
from locksmith.core.card.errors import MalformedResponse
from locksmith.core.card.kdf import KdfDo

OPENPGP_AID_PREFIX = bytes.fromhex("D27600012401")

# Registered manufacturer ids, as GnuPG's `get_manufacturer` (scd/app-openpgp.c) names them.
MANUFACTURERS: dict[int, str] = {
    0x0001: "PPC Card Systems", 0x0002: "Prism", 0x0003: "OpenFortress", 0x0004: "Wewid",
    0x0005: "ZeitControl", 0x0006: "Yubico", 0x0007: "OpenKMS", 0x0008: "LogoEmail",
    0x0009: "Fidesmo", 0x000A: "VivoKey", 0x000B: "Feitian Technologies",
    0x000D: "Dangerous Things", 0x000E: "Excelsecu", 0x000F: "Nitrokey", 0x002A: "Magrathea",
    0x0042: "GnuPG e.V.", 0x1337: "Warsaw Hackerspace", 0x2342: "warpzone",
    0x4354: "Confidential Technologies", 0x63AF: "Trustica", 0xBA53: "c-base e.V.",
    0xBD0E: "Paranoidlabs", 0xF1D0: "CanoKeys", 0xF517: "FSIJ", 0xF5EC: "F-Secure",
    0x0000: "test card", 0xFFFF: "test card",
}

ALGO_RSA = 0x01
ALGO_ECDH = 0x12
ALGO_ECDSA = 0x13
ALGO_EDDSA = 0x16

CURVES: dict[bytes, str] = {
    bytes.fromhex("2b06010401da470f01"): "ed25519",
    bytes.fromhex("2b6570"): "ed25519",  # RFC 8410 id-Ed25519
    bytes.fromhex("2b060104019755010501"): "cv25519",
    bytes.fromhex("2b656e"): "cv25519",  # RFC 8410 id-X25519
    bytes.fromhex("2b6571"): "ed448",
    bytes.fromhex("2b656f"): "x448",
    bytes.fromhex("2a8648ce3d030107"): "nistp256",
    bytes.fromhex("2b81040022"): "nistp384",
    bytes.fromhex("2b81040023"): "nistp521",
    bytes.fromhex("2b8104000a"): "secp256k1",
    bytes.fromhex("2b2403030208010107"): "brainpoolP256r1",
    bytes.fromhex("2b240303020801010b"): "brainpoolP384r1",
    bytes.fromhex("2b240303020801010d"): "brainpoolP512r1",
}


def _need(data: bytes, tag: int, what: str) -> bytes:
    value = tlv.find(data, tag)
    if value is None:
        raise MalformedResponse(f"application data lacks {tag:02X} ({what})")
    return value


@dataclass(frozen=True)
class Aid:
    """`D2 76 00 01 24 01 | version(2) | manufacturer(2) | serial(4) | RFU(2)`."""

    raw: bytes
    version: tuple[int, int]
    manufacturer: int
    serial: bytes

    @classmethod
    def parse(cls, raw: bytes) -> Aid:
        if len(raw) != 16 or not raw.startswith(OPENPGP_AID_PREFIX):
            raise MalformedResponse(f"not an OpenPGP application AID: {raw.hex().upper()}")
        return cls(bytes(raw), (raw[6], raw[7]), int.from_bytes(raw[8:10], "big"),
                   bytes(raw[10:14]))

    @property
    def hex(self) -> str:
        return self.raw.hex().upper()

    @property
    def serial_hex(self) -> str:
        return self.serial.hex().upper()

    @property
    def manufacturer_name(self) -> str | None:
        return MANUFACTURERS.get(self.manufacturer)


@dataclass(frozen=True)
class AlgorithmAttributes:
    """C1/C2/C3: RSA `01 n-bits(2) e-bits(2) [format]`, or an ECC algorithm id and curve OID."""

    raw: bytes
    algorithm: int
    rsa_bits: int | None = None
    rsa_e_bits: int | None = None
    rsa_format: int | None = None
    oid: bytes | None = None
    import_format: int | None = None  # ECC: the optional trailing FF ("with public key")

    @classmethod
    def parse(cls, raw: bytes) -> AlgorithmAttributes:
        raw = bytes(raw)
        if not raw:
            raise MalformedResponse("empty algorithm attributes")
        algorithm = raw[0]
        if algorithm == ALGO_RSA:
            if len(raw) not in (5, 6):
                raise MalformedResponse(f"RSA algorithm attributes of {len(raw)} bytes")
            return cls(raw, algorithm, int.from_bytes(raw[1:3], "big"),
                       int.from_bytes(raw[3:5], "big"), raw[5] if len(raw) == 6 else None)
        if algorithm in (ALGO_ECDH, ALGO_ECDSA, ALGO_EDDSA):
            oid, import_format = raw[1:], None
            # A DER OID never ends in a byte with bit 8 set, so a trailing FF is the import
            # format; a trailing 00 could end an OID, so it is only stripped off a known curve.
            if oid[-1:] == b"\xff" or (oid[-1:] == b"\x00" and oid[:-1] in CURVES):
                oid, import_format = oid[:-1], oid[-1]
            if not oid:
                raise MalformedResponse("ECC algorithm attributes without a curve OID")
            return cls(raw, algorithm, oid=oid, import_format=import_format)
        return cls(raw, algorithm)

    @property
    def curve(self) -> str | None:
        return CURVES.get(self.oid) if self.oid is not None else None

    @property
    def name(self) -> str:
        if self.algorithm == ALGO_RSA:
            return f"rsa{self.rsa_bits}"
        if self.oid is not None:
            return self.curve or f"ecc({self.oid.hex()})"
        return f"algorithm {self.algorithm}"


@dataclass(frozen=True)
class PwStatus:
    """C4: PW1 signature policy, maximum PIN lengths, and the three retry counters."""

    pw1_valid_for_multiple_signatures: bool
    pw1_max_length: int
    rc_max_length: int
    pw3_max_length: int
    pw1_retries: int
    rc_retries: int
    pw3_retries: int
    pw1_pin_block_format_2: bool = False
    pw3_pin_block_format_2: bool = False

    @classmethod
    def parse(cls, raw: bytes) -> PwStatus:
        if len(raw) < 7:
            raise MalformedResponse(f"PW status bytes are {len(raw)} bytes, expected 7")
        return cls(raw[0] != 0, raw[1] & 0x7F, raw[2], raw[3] & 0x7F, raw[4], raw[5], raw[6],
                   bool(raw[1] & 0x80), bool(raw[3] & 0x80))


@dataclass(frozen=True)
class ExtendedCapabilities:
    """C0. Bytes 6–9 changed meaning in version 3 (maximum lengths moved to DO 7F66)."""

    raw: bytes
    secure_messaging: bool
    get_challenge: bool
    key_import: bool
    pw_status_changeable: bool
    private_dos: bool
    algorithm_attributes_changeable: bool
    aes: bool
    kdf_supported: bool
    sm_algorithm: int
    max_challenge: int
    max_cardholder_certificate: int
    max_special_do: int | None = None  # version 3+
    pin_block_2_format: bool | None = None  # version 3+
    mse_for_key_refs: bool | None = None  # version 3+
    legacy_max_command_data: int | None = None  # version 2
    legacy_max_response_data: int | None = None  # version 2

    @classmethod
    def parse(cls, raw: bytes, version: tuple[int, int] = (3, 4)) -> ExtendedCapabilities:
        raw = bytes(raw)
        if len(raw) < 10:
            raise MalformedResponse(f"extended capabilities are {len(raw)} bytes, expected 10")
        flags = raw[0]
        legacy = version[0] < 3
        tail_6, tail_8 = int.from_bytes(raw[6:8], "big"), int.from_bytes(raw[8:10], "big")
        return cls(
            raw=raw, secure_messaging=bool(flags & 0x80), get_challenge=bool(flags & 0x40),
            key_import=bool(flags & 0x20), pw_status_changeable=bool(flags & 0x10),
            private_dos=bool(flags & 0x08), algorithm_attributes_changeable=bool(flags & 0x04),
            aes=bool(flags & 0x02), kdf_supported=bool(flags & 0x01), sm_algorithm=raw[1],
            max_challenge=int.from_bytes(raw[2:4], "big"),
            max_cardholder_certificate=int.from_bytes(raw[4:6], "big"),
            max_special_do=None if legacy else tail_6,
            pin_block_2_format=None if legacy else raw[8] != 0,
            mse_for_key_refs=None if legacy else raw[9] != 0,
            legacy_max_command_data=tail_6 if legacy else None,
            legacy_max_response_data=tail_8 if legacy else None,
        )


@dataclass(frozen=True)
class CardCapabilities:
    """What the transport may use: chaining and extended lengths (historical bytes, compact-TLV
    `73`), and the maximum APDU lengths (DO 7F66, or C0 bytes 6–9 before version 3)."""

    command_chaining: bool = False
    extended_lengths: bool = False
    max_command_length: int | None = None
    max_response_length: int | None = None


def parse_historical_bytes(historical: bytes) -> tuple[bool, bool]:
    """(command chaining, extended lengths) from compact-TLV `73` (ISO 7816-4 §8.1.1.2.7).

    Category 00 ends with three status bytes; category 80 is compact-TLV throughout; any other
    category carries no capabilities we can read, which means neither feature.
    """
    if not historical or historical[0] not in (0x00, 0x80):
        return False, False
    if historical[0] == 0x00:
        if len(historical) < 4:
            raise MalformedResponse("historical bytes of category 00 lack the status bytes")
        objects = historical[1:-3]
    else:
        objects = historical[1:]
    at = 0
    while at < len(objects):
        tag, length = objects[at] >> 4, objects[at] & 0x0F
        value = objects[at + 1:at + 1 + length]
        if len(value) != length:
            raise MalformedResponse("truncated compact-TLV object in the historical bytes")
        if tag == 0x7 and length == 3:
            return bool(value[2] & 0x80), bool(value[2] & 0x40)
        at += 1 + length
    return False, False


def parse_extended_length_info(data: bytes) -> tuple[int, int]:
    """7F66: `02 02 xxxx 02 02 yyyy`, the maximum command and response APDU lengths."""
    objects = tlv.parse(tlv.unwrap(data, 0x7F66))
    if len(objects) != 2 or any(tag != 0x02 or not 1 <= len(v) <= 4 for tag, v in objects):
        raise MalformedResponse("extended length information is not two short integers")
    return int.from_bytes(objects[0][1], "big"), int.from_bytes(objects[1][1], "big")


UIF_MODES = {0: "off", 1: "on", 2: "fixed", 3: "cached", 4: "cached-fixed"}


@dataclass(frozen=True)
class Uif:
    """D6/D7/D8 user interaction flag: whether a key operation waits for a button press."""

    mode: int
    features: int  # 0x20: a button is available

    @classmethod
    def parse(cls, raw: bytes) -> Uif:
        if len(raw) != 2:
            raise MalformedResponse(f"user interaction flag of {len(raw)} bytes, expected 2")
        return cls(raw[0], raw[1])

    @property
    def requires_touch(self) -> bool:
        return self.mode != 0

    @property
    def name(self) -> str:
        return UIF_MODES.get(self.mode, f"mode {self.mode}")


def fingerprint_hex(fingerprint: bytes) -> str:
    return fingerprint.hex().upper()


def _slots(raw: bytes, size: int, what: str) -> list[bytes | None]:
    """Three fixed-size entries; all zero means "no key". Empty means none at all."""
    if not raw:
        return [None, None, None]
    if len(raw) < 3 * size:
        raise MalformedResponse(f"{what} are {len(raw)} bytes, expected {3 * size}")
    entries = [raw[i * size:(i + 1) * size] for i in range(3)]
    return [bytes(e) if any(e) else None for e in entries]


def _times(raw: bytes | None) -> list[int | None]:
    if raw is None:
        return [None, None, None]
    return [int.from_bytes(t, "big") if t else None
            for t in _slots(raw, 4, "key generation times")]


def _uif(data: bytes, tag: int) -> Uif | None:
    value = tlv.find(data, tag)
    return Uif.parse(value) if value is not None else None


@dataclass(frozen=True)
class ApplicationData:
    """GET DATA 6E, with or without the outer 6E tag (cards differ)."""

    aid: Aid
    capabilities: CardCapabilities
    extended_capabilities: ExtendedCapabilities
    signature_attributes: AlgorithmAttributes
    decryption_attributes: AlgorithmAttributes
    authentication_attributes: AlgorithmAttributes
    pw_status: PwStatus
    signature_fingerprint: bytes | None
    decryption_fingerprint: bytes | None
    authentication_fingerprint: bytes | None
    signature_generated: int | None = None  # seconds since the epoch (CD)
    decryption_generated: int | None = None
    authentication_generated: int | None = None
    uif_signature: Uif | None = None
    uif_decryption: Uif | None = None
    uif_authentication: Uif | None = None
    kdf: KdfDo | None = None

    @classmethod
    def parse(cls, data: bytes) -> ApplicationData:
        body = tlv.unwrap(data, 0x6E)
        aid = Aid.parse(_need(body, 0x4F, "application identifier"))
        extended = ExtendedCapabilities.parse(_need(body, 0xC0, "extended capabilities"),
                                              aid.version)
        historical = tlv.find(body, 0x5F52)
        chaining, extended_lengths = parse_historical_bytes(historical or b"")
        length_info = tlv.find(body, 0x7F66)
        max_command: int | None
        max_response: int | None
        if length_info is not None:
            max_command, max_response = parse_extended_length_info(length_info)
        else:
            max_command = extended.legacy_max_command_data or None
            max_response = extended.legacy_max_response_data or None
        fingerprints = _slots(_need(body, 0xC5, "fingerprints"), 20, "fingerprints")
        times = _times(tlv.find(body, 0xCD))
        kdf = tlv.find(body, 0xF9)
        return cls(
            aid=aid,
            capabilities=CardCapabilities(chaining, extended_lengths, max_command, max_response),
            extended_capabilities=extended,
            signature_attributes=AlgorithmAttributes.parse(
                _need(body, 0xC1, "signature key attributes")),
            decryption_attributes=AlgorithmAttributes.parse(
                _need(body, 0xC2, "decryption key attributes")),
            authentication_attributes=AlgorithmAttributes.parse(
                _need(body, 0xC3, "authentication key attributes")),
            pw_status=PwStatus.parse(_need(body, 0xC4, "PW status bytes")),
            signature_fingerprint=fingerprints[0],
            decryption_fingerprint=fingerprints[1],
            authentication_fingerprint=fingerprints[2],
            signature_generated=times[0],
            decryption_generated=times[1],
            authentication_generated=times[2],
            uif_signature=_uif(body, 0xD6),
            uif_decryption=_uif(body, 0xD7),
            uif_authentication=_uif(body, 0xD8),
            kdf=KdfDo.parse(kdf) if kdf is not None else None,
        )


def parse_cardholder_name(data: bytes) -> str | None:
    """The name from DO 65 (tag 5B), ISO 8859-1, `Surname<<Given<Names` → `Given Names Surname`.

    The name ends up in a terminal prompt, so control characters (C0 and C1, which include the
    8-bit CSI) become `?`: a card must not be able to send escape sequences to the terminal.
    """
    raw = tlv.find(data, 0x5B)
    if raw is None:
        return None
    text = "".join(c if c.isprintable() else "?" for c in raw.decode("latin-1"))
    surname, separator, given = text.partition("<<")
    parts = [given, surname] if separator else [text]
    return " ".join(" ".join(parts).replace("<", " ").split()) or None
