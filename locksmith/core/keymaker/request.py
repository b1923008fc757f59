"""Keymaker's request and response bodies (keymaker.md §3–§5, §7), bytes in and bytes out.

The HTTP layer only moves bytes: everything that decides *which* answer a body gets (400 for
JSON, duplicates and version; 422 for shape; 400 for validation) and *what* a success looks like
(v0 bundle, Proofed V1) lives here, pure and testable without a server. A refusal is one
exception type, `Refusal(status, errors)`, whose `errors` list is the response body's `errors`
array verbatim. Nothing here draws entropy or talks to an NSM: the service does that between
`validate` and `v0_response`/`v1_data`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from locksmith.core import strictjson
from locksmith.core.bundle.model import BundleV0, BundleV1Data, KeyEntry, OpenPGPKey, WebAuthnKey
from locksmith.core.keymaker import quorum
from locksmith.core.openpgp.certs import Certificate

__all__ = [
    "BUSY", "Refusal", "V0Request", "V1Request", "error_body", "parse_request", "sorted_label",
    "v0_response", "v1_data", "v1_response", "validate",
]

INVALID_JSON = "invalid JSON body"
NOT_AN_OBJECT = "request body must be a JSON object"
UNSUPPORTED_VERSION = "version: unsupported request version"
COULD_NOT_PARSE = "could not parse request"
COULD_NOT_GENERATE = "could not generate quorum"
BUSY = "keymaker is busy"
NO_NSM = "proofed (V1) bundles need an NSM; this Keymaker runs with --nsm none"
NOT_FOUND = "not found"
METHOD_NOT_ALLOWED = "method not allowed"
WRONG_CONTENT_TYPE = "expected Content-Type: application/json"
TOO_LARGE = "request body too large (limit {limit} bytes)"

_V0_MEMBERS = ("label", "threshold", "max", "keyring")
_V1_MEMBERS = ("version", "bundle_id", "label", "keyring", "threshold", "max")


class Refusal(Exception):
    """A non-2xx answer: HTTP `status` and the `errors` array of keymaker.md §7."""

    def __init__(self, status: int, errors: Sequence[str]) -> None:
        super().__init__("; ".join(errors))
        self.status = status
        self.errors = list(errors)


@dataclass(frozen=True)
class V0Request:
    label: Mapping[str, str]
    keyring: str
    threshold: int
    max: int

    version: ClassVar[str] = "v0"


@dataclass(frozen=True)
class V1Request:
    bundle_id: bytes
    label: Mapping[str, str]
    keyring: tuple[KeyEntry, ...]
    threshold: int
    max: int

    version: ClassVar[str] = "V1"


Request = V0Request | V1Request


def error_body(errors: Sequence[str]) -> bytes:
    return strictjson.dumps_compact({"errors": list(errors)}).encode("utf-8")


# --- parsing (§3) ------------------------------------------------------------------------------


def _shape(path: str, problem: str) -> Refusal:
    return Refusal(422, [COULD_NOT_PARSE, f"{path}: {problem}"])


def _members(obj: Mapping[str, Any], path: str, names: Sequence[str], *, strict: bool) -> None:
    if strict:
        for name in obj:
            if name not in names:
                raise _shape(path, f"unknown member '{name}'")
    for name in names:
        if name not in obj:
            raise _shape(path, f"missing member '{name}'")


def _object(value: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise _shape(path, "expected an object")
    return value


def _string(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise _shape(path, "expected a string")
    return value


def _u8(value: Any, path: str) -> int:
    if type(value) is not int or not 0 <= value <= 255:
        raise _shape(path, "expected an integer 0..255")
    return value


def _label(value: Any, path: str = "label") -> dict[str, str]:
    obj = _object(value, path)
    for name, element in obj.items():
        _string(element, f"{path}.{name}")
    return dict(obj)


def _bytes(value: Any, path: str, length: int) -> bytes:
    if not isinstance(value, list) or len(value) != length:
        raise _shape(path, f"expected an array of {length} integers 0..255")
    return bytes(_u8(element, f"{path}[{i}]") for i, element in enumerate(value))


def _key(value: Any, path: str) -> KeyEntry:
    entry = _object(value, path)
    for name in entry:
        if name not in ("OpenPGP", "WebAuthn"):
            raise _shape(path, f"unknown member '{name}'")
    if len(entry) != 1:
        raise _shape(path, "expected exactly one member, OpenPGP or WebAuthn")
    ((variant, body),) = entry.items()
    inner = f"{path}.{variant}"
    fields = _object(body, inner)
    if variant == "OpenPGP":
        _members(fields, inner, ("cert",), strict=True)
        return OpenPGPKey(_string(fields["cert"], f"{inner}.cert"))
    _members(fields, inner, ("credential", "cert"), strict=True)
    credential = fields["credential"]
    if not isinstance(credential, list):
        raise _shape(f"{inner}.credential", "expected an array of strings")
    return WebAuthnKey(tuple(_string(c, f"{inner}.credential[{i}]")
                             for i, c in enumerate(credential)),
                       _string(fields["cert"], f"{inner}.cert"))


def parse_request(body: bytes) -> Request:
    """keymaker.md §3 from the JSON step on: 400 for JSON/duplicates/non-object/version, 422 for
    shape. v0 ignores unknown members (the reference CLI may send more); V1 rejects them."""
    try:
        value = strictjson.loads(body)
    except strictjson.DuplicateMemberError as exc:
        raise Refusal(400, [str(exc)]) from None
    except strictjson.StrictJSONError as exc:
        raise Refusal(400, [INVALID_JSON, str(exc)]) from None
    if not isinstance(value, dict):
        raise Refusal(400, [NOT_AN_OBJECT])
    if "version" in value:
        if value["version"] != V1Request.version:
            raise Refusal(400, [UNSUPPORTED_VERSION])
        _members(value, "request", _V1_MEMBERS, strict=True)
        keyring = value["keyring"]
        if not isinstance(keyring, list):
            raise _shape("keyring", "expected an array")
        return V1Request(
            bundle_id=_bytes(value["bundle_id"], "bundle_id", 16),
            label=_label(value["label"]),
            keyring=tuple(_key(entry, f"keyring[{i}]") for i, entry in enumerate(keyring)),
            threshold=_u8(value["threshold"], "threshold"),
            max=_u8(value["max"], "max"),
        )
    _members(value, "request", _V0_MEMBERS, strict=False)
    return V0Request(label=_label(value["label"]), keyring=_string(value["keyring"], "keyring"),
                     threshold=_u8(value["threshold"], "threshold"),
                     max=_u8(value["max"], "max"))


# --- validation (§4) ---------------------------------------------------------------------------


def validate(request: Request, *, now: int) -> list[Certificate]:
    """The holders in order, or `Refusal(400, ["could not generate quorum", <reasons>...])`."""
    try:
        if isinstance(request, V0Request):
            return quorum.validate_v0_keyring(request.keyring, request.threshold, request.max,
                                              now=now)
        return quorum.validate_v1_keyring([entry.cert for entry in request.keyring],
                                          request.threshold, request.max, now=now)
    except quorum.QuorumRequestError as exc:
        raise Refusal(400, [COULD_NOT_GENERATE, *exc.reasons]) from None


# --- responses (§5) ----------------------------------------------------------------------------


def sorted_label(label: Mapping[str, str]) -> dict[str, str]:
    """Label members sorted bytewise by name (UTF-8), as the reference writes its map."""
    return dict(sorted(label.items(), key=lambda item: item[0].encode("utf-8")))


def v0_response(request: V0Request, generated: quorum.Quorum) -> bytes:
    """The v0 bundle, `label` and `keyring` echoed, compact (§5 step 4)."""
    bundle = BundleV0.new(label=sorted_label(request.label), keyring=request.keyring,
                          shardfile=generated.shardfile, public_key=generated.public_key)
    return strictjson.dumps_compact(bundle.to_dict()).encode("utf-8")


def v1_data(request: V1Request, generated: quorum.Quorum) -> BundleV1Data:
    """`data` of the Proofed V1 bundle: the request echoed (keyring strings byte-identical)."""
    return BundleV1Data(bundle_id=request.bundle_id, label=sorted_label(request.label),
                        keyring=request.keyring, threshold=request.threshold, max=request.max,
                        shardfile=generated.shardfile, public_key=generated.public_key)


def v1_response(data: BundleV1Data, document: bytes) -> bytes:
    return strictjson.dumps_compact(
        {"data": data.to_dict(), "necroproof": list(document)}).encode("utf-8")
