"""The OpenPGP-level rules of a quorum bundle (formats.md §2–§4, §7.3, §14), on top of `model`.

`model` checks what JSON can show; this module parses the certificates and the shardfile and
answers the questions every consumer asks next: who are the holders, in which order, what is
the threshold (if the generation records one), and which certificate is the quorum key. A
`CheckedBundle` exists only for a bundle that passed every check, so consumers (`encrypt`,
`send-shard`, `inspect`, locksmithd) cannot forget one.
"""

from __future__ import annotations

from dataclasses import dataclass

from locksmith.core.bundle import shardfile
from locksmith.core.bundle.model import (
    LEGACY, LEGACY_INCONSISTENT, Bundle, BundleError, BundleV0, BundleV1, ImportedV0,
)
from locksmith.core.openpgp import validity
from locksmith.core.openpgp.certs import Certificate, load_certificates
from locksmith.core.openpgp.errors import OpenPGPError
from locksmith.core.openpgp.signature import FLAG_ENCRYPT_STORAGE, FLAG_SIGN

TEST_SECRET_FINGERPRINT = "15B0E570536A4B00A90151DB726E3FCA18892D05"

KEYRING_UNPARSABLE = "quorum bundle: keyring is not a list of OpenPGP certificates"
PUBLIC_KEY_NOT_ONE = "quorum bundle: public_key must contain exactly one certificate"
HOLDER_UNPARSABLE = "keyring entry {index}: cert is not exactly one OpenPGP certificate"
V1_SHARD_COUNT = "quorum bundle data: shardfile has {shares} shares but max is {max}"
V0_HOLDER_ORDER = ("cannot determine the holder order of this v0 bundle (keyring has {certs} "
                   "certificates, shardfile has {shares} shares)")

LEGACY_SECRET_PACKETS = LEGACY + "expected public certificates without secret packets"
LEGACY_ONE_QUORUM_CERT = LEGACY + "expected one quorum public certificate"
LEGACY_ONE_CERT = LEGACY + "expected one certificate per holder"
LEGACY_HOLDER_DIFFERS = LEGACY + "imported holder differs from the original keyring"
LEGACY_DUPLICATE = LEGACY + "duplicate holder or private certificate"
LEGACY_KEYS = LEGACY + "holder needs structurally valid signing and storage decryption keys"
LEGACY_SHARED = LEGACY + "holders must not share signing or encryption key material"


@dataclass(frozen=True)
class CheckedBundle:
    bundle: Bundle
    holders: tuple[Certificate, ...]  # holder order: index k ↔ share x = k + 1
    threshold: int | None  # None for v0: each share's metadata says (protocol.md §8)
    quorum_certificate: Certificate

    @property
    def generation(self) -> str:
        if isinstance(self.bundle, BundleV0):
            return "v0"
        return "V1" if isinstance(self.bundle, BundleV1) else "ImportedV0"

    @property
    def max(self) -> int:
        return len(self.holders)

    @property
    def uses_public_test_secret(self) -> bool:
        """The quorum key derives from the published secret 07×32 (README §5 #34)."""
        return self.quorum_certificate.fingerprint == TEST_SECRET_FINGERPRINT


def check_bundle(bundle: Bundle) -> CheckedBundle:
    if isinstance(bundle, BundleV0):
        return _check_v0(bundle)
    if isinstance(bundle, BundleV1):
        return _check_v1(bundle)
    return _check_imported(bundle)


def _certs(text: str, error: str) -> list[Certificate]:
    try:
        return load_certificates(text)
    except OpenPGPError as exc:
        raise BundleError(error) from exc


def _one_cert(text: str, error: str) -> Certificate:
    certs = _certs(text, error)
    if len(certs) != 1:
        raise BundleError(error)
    return certs[0]


def _shares(text: str, prefix: str = "") -> int:
    try:
        return shardfile.message_count(text) - 1
    except shardfile.ShardfileError as exc:
        raise BundleError(prefix + str(exc)) from exc


def _check_v0(bundle: BundleV0) -> CheckedBundle:
    certs = _certs(bundle.keyring, KEYRING_UNPARSABLE)
    quorum = _one_cert(bundle.public_key, PUBLIC_KEY_NOT_ONE)
    shares = _shares(bundle.shardfile)
    return CheckedBundle(bundle, v0_holders(certs, shares), None, quorum)


def v0_holders(certs: list[Certificate], shares: int) -> tuple[Certificate, ...]:
    """formats.md §14: the keyring itself, else the reference Keymaker's keep rule."""
    if len(certs) == shares:
        return tuple(certs)
    kept = [c for c in certs
            if {"authentication", "storage-encryption"} <= validity.structural_roles(c)]
    if len(kept) == shares:
        return tuple(kept)
    raise BundleError(V0_HOLDER_ORDER.format(certs=len(certs), shares=shares))


def _check_v1(bundle: BundleV1) -> CheckedBundle:
    holders = tuple(_one_cert(text, HOLDER_UNPARSABLE.format(index=i))
                    for i, text in enumerate(bundle.holder_certs))
    quorum = _one_cert(bundle.public_key, PUBLIC_KEY_NOT_ONE)
    shares = _shares(bundle.shardfile)
    if shares != bundle.max:
        raise BundleError(V1_SHARD_COUNT.format(shares=shares, max=bundle.max))
    return CheckedBundle(bundle, holders, bundle.threshold, quorum)


def _check_imported(bundle: ImportedV0) -> CheckedBundle:
    """The ImportedV0 table of formats.md §4, in its order."""
    original = bundle.original
    originals = _certs(original.keyring, LEGACY_SECRET_PACKETS)
    if any(c.has_secret for c in originals):
        raise BundleError(LEGACY_SECRET_PACKETS)
    quorum = _one_cert(original.public_key, LEGACY_ONE_QUORUM_CERT)
    shares = _shares(original.shardfile, LEGACY)
    holders = tuple(_one_cert(text, LEGACY_ONE_CERT) for text in bundle.holder_certs)
    if any(h not in originals for h in holders):
        raise BundleError(LEGACY_HOLDER_DIFFERS)
    if shares != len(holders):
        raise BundleError(LEGACY_INCONSISTENT)
    if len({h.fingerprint for h in holders}) != len(holders) or any(h.has_secret for h in holders):
        raise BundleError(LEGACY_DUPLICATE)
    seen: set[tuple[object, ...]] = set()
    for holder in holders:
        signing = validity.structural_keys(holder, FLAG_SIGN)
        storage = validity.structural_keys(holder, FLAG_ENCRYPT_STORAGE)
        if not signing or not storage:
            raise BundleError(LEGACY_KEYS)
        mine = {validity.key_material_id(k) for k in signing + storage}
        if mine & seen:
            raise BundleError(LEGACY_SHARED)
        seen |= mine
    return CheckedBundle(bundle, holders, bundle.threshold, quorum)
