"""The CLI's Keymaker client (cli.md §3 steps 9–10, keymaker.md §8.3).

The response of a Keymaker is untrusted input: before the proof is even looked at, it must echo
the request exactly, carry a quorum certificate of the Keymaker's fixed shape and a shardfile
with one message per holder plus the metadata. Each failed check has its own text, so a user can
tell a misbehaving Keymaker from a broken connection.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from locksmith.core import strictjson
from locksmith.core.bundle import shardfile
from locksmith.core.bundle.checks import check_bundle
from locksmith.core.bundle.model import (
    KEYRING_CHECKSUM_MISMATCH, V0_NECROPROOF_NOT_EMPTY, BundleError, BundleV0, BundleV1,
    OpenPGPKey,
)
from locksmith.core.openpgp import validity
from locksmith.core.openpgp.certs import load_certificates
from locksmith.core.openpgp.errors import OpenPGPError
from locksmith.core.openpgp.keys import ECDH, EDDSA, OID_CURVE25519, OID_ED25519
from locksmith.core.openpgp.quorumkey import KEY_CREATION_TIME
from locksmith.core.openpgp.signature import FLAG_ENCRYPT_COMMUNICATIONS, FLAG_ENCRYPT_STORAGE
from locksmith.personalities.caution.ui import CliError

CONNECT_TIMEOUT = 30.0
READ_TIMEOUT = 120.0
BODY_EXCERPT = 500
V0_HINT = "(if this Keymaker only speaks the v0 API, retry with --format v0)"
PARSE_FAILED = "Failed to parse Keymaker response"
INVALID = "Keymaker response is invalid: {check}"
MISMATCH = "Keymaker response does not match the request ({member})"
NOT_QUORUM_CERT = "public_key is not a Keymaker quorum certificate"


@dataclass(frozen=True)
class QuorumRequest:
    """What `secret new` asks for: `v1_entries` for V1, `v0_keyring` for v0 (formats.md §12)."""

    format: str  # "v1" or "v0"
    label: Mapping[str, str]
    threshold: int
    max: int
    v1_entries: tuple[str, ...] = ()
    v0_keyring: str = ""
    bundle_id: bytes = b""

    @classmethod
    def v1(cls, label: Mapping[str, str], threshold: int, max_: int,
           entries: Sequence[str]) -> QuorumRequest:
        """`bundle_id`: 16 CSPRNG bytes with the UUIDv4 version and variant bits (cli.md §3)."""
        return cls("v1", dict(label), threshold, max_, tuple(entries),
                   bundle_id=uuid.uuid4().bytes)

    @classmethod
    def v0(cls, label: Mapping[str, str], threshold: int, max_: int,
           keyring: str) -> QuorumRequest:
        return cls("v0", dict(label), threshold, max_, v0_keyring=keyring)

    def body(self) -> bytes:
        value: dict[str, Any]
        if self.format == "v1":
            value = {"version": "V1", "bundle_id": list(self.bundle_id), "label": dict(self.label),
                     "keyring": [OpenPGPKey(cert).to_dict() for cert in self.v1_entries],
                     "threshold": self.threshold, "max": self.max}
        else:  # the reference CLI's member order
            value = {"keyring": self.v0_keyring, "label": dict(self.label), "max": self.max,
                     "threshold": self.threshold}
        return strictjson.dumps_compact(value).encode("utf-8")


def excerpt(body: bytes) -> str:
    """cli.md §3 step 9: UTF-8 with U+FFFD, first 500 characters, controls as `\\xNN`."""
    text = body.decode("utf-8", errors="replace")[:BODY_EXCERPT]
    return "".join(f"\\x{ord(c):02x}" if ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F else c
                   for c in text)


def post_request(base_url: str, request: QuorumRequest,
                 transport: httpx.BaseTransport | None = None) -> bytes:
    """POST to `<KEYMAKER_URL>/generate_quorum`; the 2xx body, or the spec's errors."""
    url = base_url.rstrip("/") + "/generate_quorum"
    timeout = httpx.Timeout(READ_TIMEOUT, connect=CONNECT_TIMEOUT)
    try:
        with httpx.Client(timeout=timeout, transport=transport) as client:
            response = client.post(url, content=request.body(),
                                   headers={"Content-Type": "application/json"})
    except httpx.HTTPError as exc:
        raise CliError("Failed to connect to Keymaker service",
                       [f"{url}: {str(exc) or type(exc).__name__}",
                        "is KEYMAKER_URL right, and is the Keymaker running?"])
    if not 200 <= response.status_code < 300:
        message = (f"Keymaker error ({response.status_code} {response.reason_phrase}): "
                   f"{excerpt(response.content)}")
        if request.format == "v1" and response.status_code in (400, 415, 422):
            message += " " + V0_HINT
        raise CliError(message)
    return response.content


def _load(body: bytes) -> dict[str, Any]:
    try:
        value = strictjson.loads(body, duplicates="record")
    except strictjson.StrictJSONError as exc:
        raise CliError(PARSE_FAILED, [str(exc)]) from None
    if not isinstance(value, dict):
        raise CliError(PARSE_FAILED, ["the response is not a JSON object"])
    return value


def _parse_v0(request: QuorumRequest, raw: dict[str, Any]) -> BundleV0:
    try:
        return BundleV0.from_dict(raw, allow_unknown=True)
    except BundleError as exc:
        if str(exc) == KEYRING_CHECKSUM_MISMATCH:
            if raw.get("keyring") != request.v0_keyring:
                raise CliError(MISMATCH.format(member="keyring")) from None
            raise CliError(INVALID.format(check="keyring_hash does not match keyring")) from None
        if str(exc) == V0_NECROPROOF_NOT_EMPTY:
            raise CliError(INVALID.format(check="necroproof is not empty")) from None
        raise CliError(PARSE_FAILED, [str(exc)]) from None


def _echo_v0(request: QuorumRequest, bundle: BundleV0) -> None:
    if dict(bundle.label) != dict(request.label):
        raise CliError(MISMATCH.format(member="label"))
    if bundle.keyring != request.v0_keyring:
        raise CliError(MISMATCH.format(member="keyring"))


def _echo_v1(request: QuorumRequest, bundle: BundleV1) -> None:
    data = bundle.data
    echoes = (("bundle_id", data.bundle_id == request.bundle_id),
              ("label", dict(data.label) == dict(request.label)),
              ("keyring", data.keyring == tuple(OpenPGPKey(c) for c in request.v1_entries)),
              ("threshold", data.threshold == request.threshold),
              ("max", data.max == request.max))
    for member, ok in echoes:
        if not ok:
            raise CliError(MISMATCH.format(member=member))


def _check_quorum_certificate(text: str) -> None:
    """Ed25519 primary and a Curve25519 encryption subkey, both created at time 1 (§9.3)."""
    try:
        certs = load_certificates(text)
    except OpenPGPError:
        certs = []
    if len(certs) != 1:
        raise CliError(INVALID.format(check=NOT_QUORUM_CERT))
    cert = certs[0]
    primary = cert.primary
    encryption = validity.structural_keys(cert, FLAG_ENCRYPT_STORAGE | FLAG_ENCRYPT_COMMUNICATIONS)
    if not (primary.algorithm == EDDSA and primary.oid == OID_ED25519
            and primary.created == KEY_CREATION_TIME
            and any(k.algorithm == ECDH and k.oid == OID_CURVE25519
                    and k.created == KEY_CREATION_TIME
                    for k in encryption)):
        raise CliError(INVALID.format(check=NOT_QUORUM_CERT))


def _check_messages(text: str, holders: int) -> None:
    try:
        count = shardfile.message_count(text)
    except shardfile.ShardfileError as exc:
        raise CliError(INVALID.format(check=f"shardfile: {exc}")) from None
    if count != holders + 1:
        raise CliError(INVALID.format(check=f"shardfile has {count} messages, expected "
                                            f"{holders + 1}"))


def check_response(request: QuorumRequest, body: bytes) -> BundleV0 | BundleV1:
    """keymaker.md §8.3 (the proof itself is verified by the caller, §8.2)."""
    raw = _load(body)
    bundle: BundleV0 | BundleV1
    if request.format == "v0":
        bundle = _parse_v0(request, raw)
        _echo_v0(request, bundle)
        holders = len(load_certificates(request.v0_keyring))
    else:
        try:
            bundle = BundleV1.from_dict(raw)
        except BundleError as exc:
            raise CliError(PARSE_FAILED, [str(exc)]) from None
        _echo_v1(request, bundle)
        holders = request.max
    _check_quorum_certificate(bundle.public_key)
    _check_messages(bundle.shardfile, holders)
    try:
        check_bundle(bundle)
    except BundleError as exc:
        raise CliError(INVALID.format(check=str(exc))) from None
    return bundle
