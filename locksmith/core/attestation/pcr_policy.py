"""Expected-PCR sources: the Keymaker PCR policy (keymaker.md §8.1) and `trusted_hashes.json`
(cli.md §5.1). Pure parsing from text or bytes; the caller reads the file and names it.

A `PcrPolicy` is "any of its sets"; a `PcrSet` is "all of its PCRs", with an optional expiry.
Evaluating a document against a policy is `locksmith.core.attestation.verify.verify_with_policy`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Mapping

from locksmith.core import strictjson

PCR_LEN = 48
MAX_PCR_INDEX = 31
DEBUG_PCR_INDICES = (0, 1, 2)
_MAX_EXPIRY = 2**63 // 1000  # keymaker.md §8.1 "unspecified: reject values above 2^63/1000"
_U64_MAX = 2**64 - 1
_HEX96 = re.compile(r"[0-9a-fA-F]{96}")
_INDEX = re.compile(r"0|[1-9][0-9]?")

POLICY_PARSE_ERROR = "could not parse Keymaker PCR policy JSON"
POLICY_EMPTY_ERROR = "keymaker PCR policy did not contain any PCR sets"
POLICY_RANGE_ERROR = "expires_at_unix_seconds is outside the supported SystemTime range"


class PcrPolicyError(ValueError):
    """An invalid policy file. `str()` is the keymaker.md §8.1 text; `detail` says where."""

    def __init__(self, message: str, detail: str | None = None) -> None:
        self.message = message
        self.detail = detail
        super().__init__(message)


class TrustedHashesError(ValueError):
    """An invalid trusted_hashes.json; `str()` is the cli.md §5.1 text."""


def is_debug_pcrs(pcrs: Mapping[int, bytes]) -> bool:
    """PCR0, PCR1 and PCR2 all present and all zero: what a Nitro debug-mode enclave reports."""
    zero = bytes(PCR_LEN)
    return all(pcrs.get(i) == zero for i in DEBUG_PCR_INDICES)


def parse_pcr_hex(text: object) -> bytes:
    """96 hex digits, either case → 48 bytes; anything else raises ValueError."""
    if not isinstance(text, str) or not _HEX96.fullmatch(text):
        raise ValueError("expected 96 hex digits (48 bytes)")
    return bytes.fromhex(text)


@dataclass(frozen=True)
class PcrSet:
    pcrs: Mapping[int, bytes]
    expires_at_unix_seconds: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "pcrs", MappingProxyType(dict(sorted(self.pcrs.items()))))

    @property
    def is_debug(self) -> bool:
        return is_debug_pcrs(self.pcrs)

    def to_dict(self) -> dict[str, Any]:
        return {"pcrs": {str(i): v.hex() for i, v in self.pcrs.items()},
                "expires_at_unix_seconds": self.expires_at_unix_seconds}


@dataclass(frozen=True)
class PcrPolicy:
    sets: tuple[PcrSet, ...]

    @classmethod
    def from_json(cls, text: str | bytes) -> PcrPolicy:
        root = _load_json(text, lambda detail: PcrPolicyError(POLICY_PARSE_ERROR, detail))
        _members(root, "policy", required={"sets"}, optional=set())
        raw_sets = root["sets"]
        if not isinstance(raw_sets, list):
            raise PcrPolicyError(POLICY_PARSE_ERROR, "sets: expected an array")
        sets = tuple(_parse_set(raw, f"sets[{i}]") for i, raw in enumerate(raw_sets))
        if not sets:
            raise PcrPolicyError(POLICY_EMPTY_ERROR)
        return cls(sets)

    def to_json(self) -> str:
        return json.dumps({"sets": [s.to_dict() for s in self.sets]}, separators=(",", ":"))


def _parse_set(raw: object, where: str) -> PcrSet:
    _members(raw, where, required={"pcrs"}, optional={"expires_at_unix_seconds"})
    assert isinstance(raw, dict)
    raw_pcrs = raw["pcrs"]
    if not isinstance(raw_pcrs, dict):
        raise PcrPolicyError(POLICY_PARSE_ERROR, f"{where}.pcrs: expected an object")
    pcrs: dict[int, bytes] = {}
    for key, value in raw_pcrs.items():
        if not _INDEX.fullmatch(key) or int(key) > MAX_PCR_INDEX:
            raise PcrPolicyError(POLICY_PARSE_ERROR,
                                 f"{where}.pcrs: {key!r} is not a PCR index 0..{MAX_PCR_INDEX}")
        try:
            pcrs[int(key)] = parse_pcr_hex(value)
        except ValueError as exc:
            raise PcrPolicyError(POLICY_PARSE_ERROR, f"{where}.pcrs.{key}: {exc}") from None
    for required in DEBUG_PCR_INDICES:
        if required not in pcrs:
            raise PcrPolicyError(POLICY_PARSE_ERROR, f"{where}.pcrs: PCR{required} is required")
    expires = raw.get("expires_at_unix_seconds")
    if expires is not None:
        if type(expires) is not int or not 0 <= expires <= _U64_MAX:
            raise PcrPolicyError(POLICY_PARSE_ERROR,
                                 f"{where}.expires_at_unix_seconds: expected an unsigned integer or null")
        if expires > _MAX_EXPIRY:
            raise PcrPolicyError(POLICY_RANGE_ERROR, f"{where}: {expires}")
    return PcrSet(pcrs, expires)


# Optional pins beyond the image (PCR0-2): PCR3 the parent instance's IAM role, PCR4 the parent
# instance ID, PCR8 the enclave image's signing certificate. PCR0-2 alone say "this code", not
# "in our account": the same image run by anyone else attests just as well.
OPTIONAL_PCR_INDICES = (3, 4, 8)


@dataclass(frozen=True)
class TrustedHashes:
    """`.caution/trusted_hashes.json`: the expected PCR0/1/2 of the enclave image, and
    optionally PCR3/4/8 (`OPTIONAL_PCR_INDICES`)."""

    pcr0: bytes
    pcr1: bytes
    pcr2: bytes
    verified_at: str | None = None
    optional: Mapping[int, bytes] = field(default_factory=dict)

    @property
    def pcrs(self) -> dict[int, bytes]:
        return {0: self.pcr0, 1: self.pcr1, 2: self.pcr2, **self.optional}

    @classmethod
    def from_json(cls, text: str | bytes, *, source: str = ".caution/trusted_hashes.json") -> TrustedHashes:
        root = _load_json(text, lambda detail: TrustedHashesError(f"Failed to parse {source}"))
        if not isinstance(root, dict):
            raise TrustedHashesError(f"Failed to parse {source}")
        values: list[bytes] = []
        for i in DEBUG_PCR_INDICES:
            name = f"pcr{i}"
            if name not in root:
                raise TrustedHashesError(f"missing {name}")
            try:
                values.append(parse_pcr_hex(root[name]))
            except ValueError:
                raise TrustedHashesError(f"invalid {name} hex") from None
        optional: dict[int, bytes] = {}
        for i in OPTIONAL_PCR_INDICES:
            name = f"pcr{i}"
            if root.get(name) is not None:
                try:
                    optional[i] = parse_pcr_hex(root[name])
                except ValueError:
                    raise TrustedHashesError(f"invalid {name} hex") from None
        verified_at = root.get("verified_at")
        return cls(values[0], values[1], values[2],
                   verified_at if isinstance(verified_at, str) else None, optional)

    def to_json(self) -> str:
        """The form the simulated NSM writes (members pcr0, pcr1, pcr2; lowercase hex)."""
        return json.dumps({"pcr0": self.pcr0.hex(), "pcr1": self.pcr1.hex(),
                           "pcr2": self.pcr2.hex()}, indent=2) + "\n"


# --------------------------------------------------------------------------- strict JSON


def _load_json(text: str | bytes, error: Callable[[str], Exception]) -> Any:
    """Strict JSON (UTF-8 only, no duplicate members, no NaN/Infinity); `error(detail)` builds
    the exception to raise."""
    try:
        return strictjson.loads(text)
    except strictjson.StrictJSONError as exc:
        raise error(str(exc)) from None


def _members(value: object, where: str, *, required: set[str], optional: set[str]) -> None:
    if not isinstance(value, dict):
        raise PcrPolicyError(POLICY_PARSE_ERROR, f"{where}: expected an object")
    for key in value:
        if key not in required and key not in optional:
            raise PcrPolicyError(POLICY_PARSE_ERROR, f"{where}: unknown member {key!r}")
    for key in sorted(required):
        if key not in value:
            raise PcrPolicyError(POLICY_PARSE_ERROR, f"{where}: missing member {key!r}")
