"""The KDF-DO (tag F9, OpenPGP card 3.4 §4.3.2): PINs the card expects hashed, not raw.

When a card has KDF_ITERSALTED_S2K set, VERIFY must carry the iterated+salted S2K of the PIN;
sending the raw PIN would cost a retry. So `hash_pin` refuses (with a `CardError`) whatever it
cannot hash exactly as GnuPG does (`scd/app-openpgp.c`, `pin2hash_if_kdf`): an unknown
algorithm or hash, or a missing salt, never falls back to the raw PIN.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from locksmith.core.card import tlv
from locksmith.core.card.errors import LocalError, MalformedResponse, UnsupportedFeature

KDF_NONE = 0x00
KDF_ITERSALTED_S2K = 0x03
HASHES = {0x08: "sha256", 0x0A: "sha512"}

# PIN references of VERIFY (P2); the resetting code has none, so it gets the tag of its salt.
PW1_SIGN = 0x81
PW1 = 0x82
PW3 = 0x83
RESETTING_CODE = 0x85
# The largest count RFC 4880's one-octet coding can express (GnuPG writes counts it can code).
# A card asking for more would make every PIN entry hash up to 4 GiB: refused, not obeyed.
MAX_S2K_COUNT = 65011712


@dataclass(frozen=True)
class KdfDo:
    algorithm: int
    hash_algorithm: int | None = None
    iterations: int | None = None  # octets to hash (RFC 4880 §3.7.1.3 count, uncoded)
    salt_pw1: bytes | None = None
    salt_rc: bytes | None = None
    salt_pw3: bytes | None = None
    initial_hash_pw1: bytes | None = None
    initial_hash_pw3: bytes | None = None

    @property
    def enabled(self) -> bool:
        return self.algorithm != KDF_NONE

    @classmethod
    def parse(cls, data: bytes) -> KdfDo:
        """Parse F9 with or without its outer tag.

        An empty DO is taken as "no KDF", as GnuPG does; unknown tags are ignored (later spec
        versions may add some), duplicated ones are refused.
        """
        content = tlv.unwrap(data, 0xF9)
        fields: dict[int, bytes] = {}
        for tag, value in tlv.parse(content):
            if tag in fields:
                raise MalformedResponse(f"KDF-DO repeats tag {tag:02X}")
            fields[tag] = value
        if not fields:
            return cls(KDF_NONE)
        algorithm = _int(fields, 0x81, 1, "KDF algorithm")
        if algorithm is None:
            raise MalformedResponse("KDF-DO lacks its algorithm (tag 81)")
        kdf = cls(
            algorithm=algorithm,
            hash_algorithm=_int(fields, 0x82, 1, "KDF hash algorithm"),
            iterations=_int(fields, 0x83, 4, "KDF iteration count"),
            salt_pw1=fields.get(0x84),
            salt_rc=fields.get(0x85),
            salt_pw3=fields.get(0x86),
            initial_hash_pw1=fields.get(0x87),
            initial_hash_pw3=fields.get(0x88),
        )
        if algorithm == KDF_ITERSALTED_S2K and (
                kdf.hash_algorithm is None or kdf.iterations is None or not kdf.salt_pw1):
            raise MalformedResponse(
                "KDF-DO selects KDF_ITERSALTED_S2K without hash, count and PW1 salt")
        return kdf


def _int(fields: dict[int, bytes], tag: int, size: int, what: str) -> int | None:
    value = fields.get(tag)
    if value is None:
        return None
    if len(value) != size:
        raise MalformedResponse(f"{what} (tag {tag:02X}) is {len(value)} bytes, not {size}")
    return int.from_bytes(value, "big")


def iterated_salted_s2k(hash_name: str, salt: bytes, secret: bytes, count: int) -> bytes:
    """RFC 4880 §3.7.1.3 with one hash context: `count` octets of (salt ‖ secret) repeated.

    One context is enough here because the card takes the full digest (32 or 64 bytes).
    """
    material = salt + secret
    total = max(count, len(material))
    block = material * max(1, 65536 // len(material))
    digest = hashlib.new(hash_name)
    whole, rest = divmod(total, len(block))
    for _ in range(whole):
        digest.update(block)
    digest.update(block[:rest])
    return digest.digest()


def hash_pin(kdf: KdfDo | None, pin: bytes, reference: int) -> bytes:
    """The bytes VERIFY (or RESET RETRY COUNTER) must carry for `pin` on this card."""
    if reference not in (PW1_SIGN, PW1, PW3, RESETTING_CODE):
        raise LocalError(f"unknown PIN reference {reference:#04x}")
    if kdf is None or kdf.algorithm == KDF_NONE:
        return pin
    if kdf.algorithm != KDF_ITERSALTED_S2K:
        raise UnsupportedFeature(f"the card's PIN KDF algorithm {kdf.algorithm:#04x} is not "
                                 f"supported")
    hash_name = HASHES.get(kdf.hash_algorithm or 0)
    if hash_name is None:
        raise UnsupportedFeature(f"the card's PIN KDF hash {kdf.hash_algorithm} is not supported")
    salt = {PW1_SIGN: kdf.salt_pw1, PW1: kdf.salt_pw1, PW3: kdf.salt_pw3,
            RESETTING_CODE: kdf.salt_rc}[reference]
    if not salt or kdf.iterations is None:
        raise MalformedResponse(f"the card's KDF-DO has no salt for PIN reference "
                                f"{reference:#04x}")
    if kdf.iterations > MAX_S2K_COUNT:
        raise UnsupportedFeature(f"the card's PIN KDF count {kdf.iterations} exceeds "
                                 f"{MAX_S2K_COUNT}")
    return iterated_salted_s2k(hash_name, salt, pin, kdf.iterations)
