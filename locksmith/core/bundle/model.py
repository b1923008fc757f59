"""Quorum bundles of the three generations (formats.md §2–§5) as immutable typed values.

A bundle is read from a repository or baked into an enclave image and decides who may unlock
the master secret, so reading is strict: every object rejects unknown and duplicate members
and names the object (formats.md §1), byte strings must really be arrays of 0..255, and the
generation is recognised once (§5) and never retried as another generation after a failure.
Constructors re-check each generation's invariants, so a value of these types always satisfies
the structural rules and `to_json` output is always a valid bundle.

Only the rules that need no OpenPGP parsing live here. The certificate, keyring, shardfile and
holder-derivation checks (§2–§4, §14) belong to `checks`, which works from the raw
armored texts exposed here (`keyring`, `public_key`, `shardfile`, `holder_certs`) and from
`threshold`/`max` where the generation records them.

Errors are `BundleError` whose message is the spec's text, to be printed as
`invalid quorum bundle <path>: <text>` (enclave.md §3.1, cli.md).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, ClassVar

from locksmith.core.bundle.keys import (
    BundleError,
    KeyEntry,
    OpenPGPKey,
    WebAuthnKey,
    key_entry_from_dict,
    keyring_from_list,
    reading,
)
from locksmith.core.strictjson import (
    StrictJSONError,
    check_members,
    dumps_pretty,
    first_duplicate,
    loads,
    read_bytes,
    read_int,
    read_object,
    read_str,
    read_str_map,
)

__all__ = [
    "Bundle",
    "BundleError",
    "BundleV0",
    "BundleV1",
    "BundleV1Data",
    "ImportedV0",
    "KeyEntry",
    "OpenPGPKey",
    "WebAuthnKey",
    "bundle_from_dict",
    "key_entry_from_dict",
    "parse_bundle",
]

MAX_HOLDERS = 254
KEYRING_CHECKSUM_MISMATCH = (
    "keyring checksum mismatch; restore the original bundle (no repair override)"
)
NO_NECROPROOF = "keymaker quorum bundle does not include a necroproof"
LEGACY = "legacy bundle: "
UNPARSABLE = "could not parse quorum bundle JSON"
UNSUPPORTED_FORMAT = "unsupported bundle format"
UNRECOGNISED = "unrecognised quorum bundle (expected v0, V1 or ImportedV0)"
V0_NECROPROOF_NOT_EMPTY = "quorum bundle: v0 necroproof must be an empty array"
LEGACY_NECROPROOF_NOT_EMPTY = LEGACY + "expected historical V0 with an empty necroproof"
LEGACY_NOT_OPENPGP = LEGACY + "ImportedV0 supports only external PGP holders"
LEGACY_INCONSISTENT = LEGACY + "threshold, holder count or shard count is inconsistent"

_V0_MEMBERS = ("label", "keyring", "keyring_hash", "shardfile", "public_key", "necroproof")
_V1_MEMBERS = ("data", "necroproof")
_V1_DATA_MEMBERS = (
    "version", "bundle_id", "label", "keyring", "threshold", "max", "shardfile", "public_key",
)
_IMPORTED_MEMBERS = ("format", "original", "threshold", "keyring")


def _frozen_label(label: Mapping[str, str]) -> Mapping[str, str]:
    return MappingProxyType(dict(label))


def _load_object(text: str | bytes) -> Mapping[str, Any]:
    try:
        value = loads(text, duplicates="record")
    except StrictJSONError:
        raise BundleError(UNPARSABLE) from None
    if not isinstance(value, dict):
        raise BundleError(UNPARSABLE)
    return value


# --- v0 --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BundleV0:
    """The reference Keymaker's unproofed bundle (§2); `necroproof` is always empty."""

    label: Mapping[str, str]
    keyring: str
    keyring_hash: bytes
    shardfile: str
    public_key: str

    generation: ClassVar[str] = "v0"

    def __post_init__(self) -> None:
        object.__setattr__(self, "label", _frozen_label(self.label))
        object.__setattr__(self, "keyring_hash", bytes(self.keyring_hash))
        if hashlib.sha256(self.keyring.encode("utf-8")).digest() != self.keyring_hash:
            raise BundleError(KEYRING_CHECKSUM_MISMATCH)

    @classmethod
    def new(
        cls, label: Mapping[str, str], keyring: str, shardfile: str, public_key: str
    ) -> BundleV0:
        """A bundle whose `keyring_hash` is computed, as a Keymaker writes one."""
        digest = hashlib.sha256(keyring.encode("utf-8")).digest()
        return cls(label, keyring, digest, shardfile, public_key)

    @classmethod
    def from_dict(cls, value: Any, *, allow_unknown: bool = False) -> BundleV0:
        """`allow_unknown` only for Keymaker HTTP responses (§2); files are always strict."""
        return _v0_from_dict(value, "quorum bundle", allow_unknown=allow_unknown, legacy=False)

    @classmethod
    def from_json(cls, text: str | bytes, *, allow_unknown: bool = False) -> BundleV0:
        return cls.from_dict(_load_object(text), allow_unknown=allow_unknown)

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": dict(self.label),
            "keyring": self.keyring,
            "keyring_hash": list(self.keyring_hash),
            "shardfile": self.shardfile,
            "public_key": self.public_key,
            "necroproof": [],
        }

    def to_json(self) -> str:
        return dumps_pretty(self.to_dict())


def _v0_from_dict(value: Any, context: str, *, allow_unknown: bool, legacy: bool) -> BundleV0:
    with reading():
        obj = read_object(value, context)
        check_members(obj, context, _V0_MEMBERS, allow_unknown=allow_unknown)
        for name, member in obj.items():
            # Ignored members must not be a hiding place for duplicates (§1).
            duplicate = None if name in _V0_MEMBERS else first_duplicate(member)
            if duplicate is not None:
                raise BundleError(f"{context}: {name} has a duplicate member '{duplicate}'")
        label = read_str_map(obj["label"], f"{context}: label")
        keyring = read_str(obj["keyring"], f"{context}: keyring")
        keyring_hash = read_bytes(obj["keyring_hash"], f"{context}: keyring_hash", length=32)
        shardfile = read_str(obj["shardfile"], f"{context}: shardfile")
        public_key = read_str(obj["public_key"], f"{context}: public_key")
        necroproof = read_bytes(obj["necroproof"], f"{context}: necroproof")
    if necroproof:
        raise BundleError(LEGACY_NECROPROOF_NOT_EMPTY if legacy else V0_NECROPROOF_NOT_EMPTY)
    try:
        return BundleV0(label, keyring, keyring_hash, shardfile, public_key)
    except BundleError as exc:
        if legacy:
            raise BundleError(LEGACY + str(exc)) from None
        raise


# --- V1 --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BundleV1Data:
    """The proofed part of a V1 bundle; its canonical CBOR hash is what the necroproof signs."""

    bundle_id: bytes
    label: Mapping[str, str]
    keyring: tuple[KeyEntry, ...]
    threshold: int
    max: int
    shardfile: str
    public_key: str

    version: ClassVar[str] = "V1"

    def __post_init__(self) -> None:
        object.__setattr__(self, "label", _frozen_label(self.label))
        object.__setattr__(self, "keyring", tuple(self.keyring))
        object.__setattr__(self, "bundle_id", bytes(self.bundle_id))
        if len(self.bundle_id) != 16:
            raise BundleError(
                f"quorum bundle data: bundle_id must be 16 bytes, got {len(self.bundle_id)}"
            )
        holders = len(self.keyring)
        if not (1 <= self.threshold <= self.max <= MAX_HOLDERS and self.max == holders):
            raise BundleError(
                f"quorum bundle data: threshold {self.threshold}, max {self.max} and "
                f"{holders} keyring entries are inconsistent"
            )

    @property
    def holder_certs(self) -> tuple[str, ...]:
        return tuple(entry.cert for entry in self.keyring)

    @classmethod
    def from_dict(cls, value: Any) -> BundleV1Data:
        context = "quorum bundle data"
        with reading():
            obj = read_object(value, "quorum bundle: data")
            check_members(obj, context, _V1_DATA_MEMBERS)
            if obj["version"] != cls.version:
                raise BundleError(f'{context}: version must be "{cls.version}"')
            bundle_id = read_bytes(obj["bundle_id"], f"{context}: bundle_id", length=16)
            label = read_str_map(obj["label"], f"{context}: label")
            keyring = keyring_from_list(obj["keyring"], f"{context}: keyring")
            threshold = read_int(obj["threshold"], f"{context}: threshold")
            maximum = read_int(obj["max"], f"{context}: max")
            shardfile = read_str(obj["shardfile"], f"{context}: shardfile")
            public_key = read_str(obj["public_key"], f"{context}: public_key")
        return cls(bundle_id, label, keyring, threshold, maximum, shardfile, public_key)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "bundle_id": list(self.bundle_id),
            "label": dict(self.label),
            "keyring": [entry.to_dict() for entry in self.keyring],
            "threshold": self.threshold,
            "max": self.max,
            "shardfile": self.shardfile,
            "public_key": self.public_key,
        }


@dataclass(frozen=True)
class BundleV1:
    """A Keymaker V1 bundle: `data` plus the Nitro attestation document over its hash (§3)."""

    data: BundleV1Data
    necroproof: bytes

    generation: ClassVar[str] = "V1"

    def __post_init__(self) -> None:
        object.__setattr__(self, "necroproof", bytes(self.necroproof))
        if not self.necroproof:
            raise BundleError(NO_NECROPROOF)

    @property
    def threshold(self) -> int:
        return self.data.threshold

    @property
    def max(self) -> int:
        return self.data.max

    @property
    def shardfile(self) -> str:
        return self.data.shardfile

    @property
    def public_key(self) -> str:
        return self.data.public_key

    @property
    def holder_certs(self) -> tuple[str, ...]:
        return self.data.holder_certs

    @classmethod
    def from_dict(cls, value: Any) -> BundleV1:
        with reading():
            obj = read_object(value, "quorum bundle")
            check_members(obj, "quorum bundle", _V1_MEMBERS)
        data = BundleV1Data.from_dict(obj["data"])
        with reading():
            necroproof = read_bytes(obj["necroproof"], "quorum bundle: necroproof")
        return cls(data, necroproof)

    @classmethod
    def from_json(cls, text: str | bytes) -> BundleV1:
        return cls.from_dict(_load_object(text))

    def to_dict(self) -> dict[str, Any]:
        return {"data": self.data.to_dict(), "necroproof": list(self.necroproof)}

    def to_json(self) -> str:
        return dumps_pretty(self.to_dict())


# --- ImportedV0 ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportedV0:
    """The reference's `import-legacy` wrapper: an unmodified v0 bundle plus its holder list."""

    original: BundleV0
    threshold: int
    keyring: tuple[OpenPGPKey, ...]

    generation: ClassVar[str] = "ImportedV0"
    format: ClassVar[str] = "ImportedV0"

    def __post_init__(self) -> None:
        keyring: Sequence[KeyEntry] = self.keyring
        object.__setattr__(self, "keyring", tuple(keyring))
        if not all(isinstance(entry, OpenPGPKey) for entry in keyring):
            raise BundleError(LEGACY_NOT_OPENPGP)
        if not 1 <= self.threshold <= len(keyring) <= MAX_HOLDERS:
            raise BundleError(LEGACY_INCONSISTENT)

    @property
    def max(self) -> int:
        return len(self.keyring)

    @property
    def shardfile(self) -> str:
        return self.original.shardfile

    @property
    def public_key(self) -> str:
        return self.original.public_key

    @property
    def holder_certs(self) -> tuple[str, ...]:
        return tuple(entry.cert for entry in self.keyring)

    @classmethod
    def from_dict(cls, value: Any) -> ImportedV0:
        with reading():
            obj = read_object(value, "quorum bundle")
        if "format" in obj and obj["format"] != cls.format:
            raise BundleError(UNSUPPORTED_FORMAT)
        with reading():
            check_members(obj, "quorum bundle", _IMPORTED_MEMBERS)
        original = _v0_from_dict(
            obj["original"], "quorum bundle original", allow_unknown=False, legacy=True
        )
        with reading():
            threshold = read_int(obj["threshold"], "quorum bundle: threshold")
        keyring = keyring_from_list(obj["keyring"], "quorum bundle: keyring")
        holders = tuple(entry for entry in keyring if isinstance(entry, OpenPGPKey))
        if len(holders) != len(keyring):
            raise BundleError(LEGACY_NOT_OPENPGP)
        return cls(original, threshold, holders)

    @classmethod
    def from_json(cls, text: str | bytes) -> ImportedV0:
        return cls.from_dict(_load_object(text))

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "original": self.original.to_dict(),
            "threshold": self.threshold,
            "keyring": [entry.to_dict() for entry in self.keyring],
        }

    def to_json(self) -> str:
        return dumps_pretty(self.to_dict())


# --- recognition (§5) ------------------------------------------------------------------------

Bundle = BundleV0 | BundleV1 | ImportedV0


def bundle_from_dict(value: Mapping[str, Any]) -> Bundle:
    """Pick the generation from the members present, then apply only that generation's rules."""
    if "format" in value:
        if value["format"] != ImportedV0.format:
            raise BundleError(UNSUPPORTED_FORMAT)
        return ImportedV0.from_dict(value)
    if "data" in value:
        return BundleV1.from_dict(value)
    if "shardfile" in value:
        return BundleV0.from_dict(value)
    raise BundleError(UNRECOGNISED)


def parse_bundle(text: str | bytes) -> Bundle:
    return bundle_from_dict(_load_object(text))
