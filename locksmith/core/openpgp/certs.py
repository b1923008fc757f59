"""Transferable keys (RFC 4880 §11.1, §11.2) grouped from a keyring: holders' certificates.

Why our own grouping instead of PGPy's: every later check (formats.md §13 liveness, §12
normalisation, §4 "same packets" comparison, §14 holder derivation) must see the exact wire
bytes of each packet, and signatures must be hashed by `signature.py`, the one hashing
implementation that also signs. PGPy rebuilds packets from its parsed fields and judges
validity by its own rules, so using it here would give two hashers and two opinions. PGPy
keeps the jobs it does well: an independent oracle in tests, and unlocking passphrase-protected
secret keys (`secretkeys.py`).

Nothing here judges validity: signatures are kept as raw packets and parsed lazily by
`validity.py`, so a certificate with one malformed signature still loads (that signature simply
never counts), exactly as GnuPG and Sequoia treat it. What does fail loading is framing, key
packets this project cannot represent (v3/v6 → `unsupported key version`, formats.md §11) and a
packet stream that is not a sequence of transferable keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from locksmith.core.openpgp import armor, packets
from locksmith.core.openpgp.errors import OpenPGPError
from locksmith.core.openpgp.keys import PublicKey, read_mpi
from locksmith.core.openpgp.packets import Packet

__all__ = [
    "Certificate", "CertificateError", "Component", "Subkey", "load_certificates",
    "split_secret_part", "is_gnu_stub",
]

_SKIPPED = (packets.MARKER, packets.TRUST, packets.PADDING)
_KEY_TAGS = (packets.PUBLIC_KEY, packets.SECRET_KEY)
_SUBKEY_TAGS = (packets.PUBLIC_SUBKEY, packets.SECRET_SUBKEY)
_USER_TAGS = (packets.USER_ID, packets.USER_ATTRIBUTE)
_PUBLIC_FORM = {packets.SECRET_KEY: packets.PUBLIC_KEY,
                packets.SECRET_SUBKEY: packets.PUBLIC_SUBKEY}

# Public-key field layouts of algorithms `keys.PublicKey` keeps opaque; needed only to find where
# the secret part of a secret key packet starts (GnuPG stubs of such keys count as no secret).
_OPAQUE_MPI_COUNT = {16: 3, 17: 4, 20: 3}  # Elgamal (p, g, y), DSA (p, q, g, y)
_NATIVE_KEY_LENGTH = {25: 32, 26: 56, 27: 32, 28: 57}  # RFC 9580 X25519, X448, Ed25519, Ed448


class CertificateError(OpenPGPError):
    """The packet stream is not a sequence of transferable public or secret keys."""


@dataclass(frozen=True)
class Component:
    """A User ID or User Attribute packet and the signatures that follow it."""

    packet: Packet
    signatures: tuple[Packet, ...]

    @property
    def is_user_id(self) -> bool:
        return self.packet.tag == packets.USER_ID

    @property
    def text(self) -> str:
        """The User ID as text (invalid UTF-8 replaced, never an error: it is display only)."""
        return self.packet.body.decode("utf-8", errors="replace")


@dataclass(frozen=True)
class Subkey:
    key: PublicKey
    packet: Packet  # public form (tag 14)
    signatures: tuple[Packet, ...]


@dataclass(frozen=True, eq=False)
class Certificate:
    """One transferable key, held in its public form plus the raw secret packets it came with.

    `secret_packets` maps a key fingerprint to its original secret key packet (tag 5 or 7) for
    every key that carried real secret material; GnuPG stubs (S2K 101) are left out because they
    hold none (formats.md §11). Equality is "same packets": the canonical public packets and the
    secret packets, ignoring header encodings and trust/marker/padding packets.
    """

    primary: PublicKey
    primary_packet: Packet  # public form (tag 6)
    direct_signatures: tuple[Packet, ...]
    components: tuple[Component, ...]  # User IDs and User Attributes, in input order
    subkeys: tuple[Subkey, ...]
    secret_packets: dict[bytes, Packet] = field(default_factory=dict)

    @property
    def fingerprint(self) -> str:
        return self.primary.fingerprint_hex

    @property
    def user_ids(self) -> tuple[Component, ...]:
        return tuple(c for c in self.components if c.is_user_id)

    @property
    def has_secret(self) -> bool:
        return bool(self.secret_packets)

    def keys(self) -> tuple[PublicKey, ...]:
        """Primary first, then subkeys in order."""
        return (self.primary,) + tuple(s.key for s in self.subkeys)

    @property
    def packets(self) -> tuple[Packet, ...]:
        """The canonical public packet sequence (no secret material, no trust packets)."""
        out: list[Packet] = [self.primary_packet, *self.direct_signatures]
        for comp in self.components:
            out += [comp.packet, *comp.signatures]
        for sub in self.subkeys:
            out += [sub.packet, *sub.signatures]
        return tuple(out)

    def serialize(self) -> bytes:
        """Binary public certificate, new-format headers (the metadata layout of §7.2)."""
        return b"".join(p.serialize() for p in self.packets)

    def armored(self) -> str:
        return armor.armor("PUBLIC KEY BLOCK", self.serialize())

    def public(self) -> "Certificate":
        """The same certificate without secret material (formats.md §12 step 2)."""
        return Certificate(self.primary, self.primary_packet, self.direct_signatures,
                           self.components, self.subkeys, {})

    def _identity(self) -> tuple[object, ...]:
        secrets = tuple(sorted((k, p.tag, p.body) for k, p in self.secret_packets.items()))
        return (tuple((p.tag, p.body) for p in self.packets), secrets)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Certificate):
            return NotImplemented
        return self._identity() == other._identity()

    def __hash__(self) -> int:
        return hash(self._identity())

    def __repr__(self) -> str:
        secret = ", secret" if self.has_secret else ""
        return f"Certificate({self.fingerprint}{secret})"


def load_certificates(data: bytes | str) -> list[Certificate]:
    """Every certificate in `data` (armored, any number of blocks, or binary), in order.

    Empty input gives an empty list; the caller decides whether that is an error (cli.md §3
    step 5 reports it as "no certificates found").
    """
    try:
        raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    except UnicodeEncodeError as exc:  # a lone surrogate, e.g. from a JSON string
        raise CertificateError("keyring text is not valid Unicode") from exc
    certs: list[Certificate] = []
    for blob in armor.openpgp_binary(raw):
        certs += _group(packets.parse_packets(blob))
    return certs


# Signatures one certificate may carry. Fresh holder keys have a handful; the cap bounds the
# verification work a hostile certificate (or a Keymaker request full of them) can cause.
MAX_SIGNATURES = 1024


class _Builder:
    """Accumulates one transferable key while its packets stream past."""

    def __init__(self, packet: Packet) -> None:
        self.primary, self.primary_packet = _key_packet(packet)
        self.direct: list[Packet] = []
        self.components: list[tuple[Packet, list[Packet]]] = []
        self.subkeys: list[tuple[PublicKey, Packet, list[Packet]]] = []
        self.secrets: dict[bytes, Packet] = {}
        self._current: list[Packet] = self.direct
        self._signatures = 0
        self._note_secret(packet, self.primary)

    def add(self, packet: Packet) -> None:
        if packet.tag == packets.SIGNATURE:
            self._signatures += 1
            if self._signatures > MAX_SIGNATURES:
                raise CertificateError(f"certificate {self.primary.fingerprint_hex} carries more "
                                       f"than {MAX_SIGNATURES} signatures")
            self._current.append(packet)
        elif packet.tag in _USER_TAGS:
            self.components.append((packet, []))
            self._current = self.components[-1][1]
        elif packet.tag in _SUBKEY_TAGS:
            key, public_packet = _key_packet(packet)
            self.subkeys.append((key, public_packet, []))
            self._current = self.subkeys[-1][2]
            self._note_secret(packet, key)
        else:
            raise CertificateError(f"unexpected packet (tag {packet.tag}) inside a certificate")

    def _note_secret(self, packet: Packet, key: PublicKey) -> None:
        if packet.tag in _PUBLIC_FORM and not is_gnu_stub(split_secret_part(packet.body, key)):
            self.secrets[key.fingerprint] = packet

    def build(self) -> Certificate:
        return Certificate(
            self.primary, self.primary_packet, tuple(self.direct),
            tuple(Component(p, tuple(sigs)) for p, sigs in self.components),
            tuple(Subkey(k, p, tuple(sigs)) for k, p, sigs in self.subkeys),
            dict(self.secrets),
        )


def _group(stream: list[Packet]) -> list[Certificate]:
    certs: list[Certificate] = []
    builder: _Builder | None = None
    for packet in stream:
        if packet.tag in _SKIPPED:
            continue
        if packet.tag in _KEY_TAGS:
            if builder is not None:
                certs.append(builder.build())
            builder = _Builder(packet)
        elif builder is None:
            raise CertificateError(
                f"expected a primary key packet, found packet tag {packet.tag}")
        else:
            builder.add(packet)
    if builder is not None:
        certs.append(builder.build())
    return certs


def _key_packet(packet: Packet) -> tuple[PublicKey, Packet]:
    """Parse a (public or secret) key packet; return the key and its public-form packet."""
    public = packet
    if packet.tag in _PUBLIC_FORM:
        key, _ = PublicKey.parse_prefix(packet.body)
        public = Packet(_PUBLIC_FORM[packet.tag], packet.body[: _public_length(packet.body, key)])
    if len(public.body) > 0xFFFF:  # a v4 fingerprint hashes a two-octet length
        raise CertificateError("public key packet too large")
    return PublicKey.parse(public.body), public


def _is_opaque(key: PublicKey) -> bool:
    return key.oid is None and key.rsa_n is None


def _public_length(body: bytes, key: PublicKey) -> int:
    """Length of the public part of a secret key packet body."""
    if not _is_opaque(key):
        return 6 + len(key.material)
    if key.algorithm in _NATIVE_KEY_LENGTH:
        end = 6 + _NATIVE_KEY_LENGTH[key.algorithm]
        if end > len(body):
            raise CertificateError("truncated secret key packet")
        return end
    if key.algorithm not in _OPAQUE_MPI_COUNT:
        raise CertificateError(
            f"secret key packet with unsupported public-key algorithm {key.algorithm}")
    pos = 6
    for _ in range(_OPAQUE_MPI_COUNT[key.algorithm]):
        _, pos = read_mpi(body, pos)
    return pos


def split_secret_part(body: bytes, key: PublicKey) -> bytes:
    """The secret part (from the S2K usage octet on) of a secret key packet body."""
    return body[_public_length(body, key):]


def is_gnu_stub(secret_part: bytes) -> bool:
    """GnuPG's "no secret here" extension: usage 253–255, cipher, S2K type 101, "GNU"."""
    if len(secret_part) < 2:
        return False
    usage = secret_part[0]
    if usage in (254, 255):
        spec = secret_part[2:]
    elif usage == 253:
        spec = secret_part[3:]
    else:
        return False
    return len(spec) >= 6 and spec[0] == 101 and spec[2:5] == b"GNU"
