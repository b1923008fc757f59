"""The Nitro attestation document model: attestation.md §2, decoded by §3 steps 1–3.

`parse_document` checks structure only (CBOR, COSE header, payload fields, DER certificates); it
says nothing about trust. Verification is `locksmith.core.attestation.verify.verify`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Mapping

import cbor2
from cryptography import x509

from locksmith.core.attestation import cose
from locksmith.core.attestation.errors import (
    MalformedDocumentError,
    UnsupportedAlgorithmError,
    UnsupportedDigestError,
)

MAX_DOCUMENT_SIZE = 64 * 1024
MAX_FIELD_SIZE = 1024
PCR_LEN = 48
MAX_PCRS = 32
DIGEST = "SHA384"
# The AWS payload key order, which the simulated NSM reproduces.
PAYLOAD_KEYS = ("module_id", "digest", "timestamp", "pcrs", "certificate", "cabundle",
                "public_key", "user_data", "nonce")


@dataclass(frozen=True)
class AttestationDocument:
    """A structurally valid, not yet trusted, attestation document."""

    sign1: cose.CoseSign1
    module_id: str
    digest: str
    timestamp: int
    pcrs: Mapping[int, bytes]
    certificate_der: bytes
    certificate: x509.Certificate
    cabundle: tuple[tuple[bytes, x509.Certificate], ...]  # (DER, parsed), document order
    public_key: bytes | None
    user_data: bytes | None
    nonce: bytes | None


def parse_document(data: bytes) -> AttestationDocument:
    """Steps 1–3 of attestation.md §3; raises `MalformedDocumentError` and friends only."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise MalformedDocumentError("document is not bytes")
    data = bytes(data)
    if len(data) > MAX_DOCUMENT_SIZE:
        raise MalformedDocumentError(
            f"document is {len(data)} bytes, more than the {MAX_DOCUMENT_SIZE} allowed")
    try:
        sign1 = cose.decode_sign1(data)
    except cose.CoseError as exc:
        raise MalformedDocumentError(str(exc)) from None
    _check_protected(sign1.protected)
    try:
        payload = cose.loads_strict(sign1.payload)
    except cose.CoseError as exc:
        raise MalformedDocumentError(f"payload: {exc}") from None
    if not isinstance(payload, dict):
        raise MalformedDocumentError("payload: expected a map")
    return _payload_fields(sign1, payload)


def _check_protected(protected: bytes) -> None:
    try:
        header = cose.loads_strict(protected)
    except cose.CoseError as exc:
        raise MalformedDocumentError(f"protected header: {exc}") from None
    if not isinstance(header, dict):
        raise MalformedDocumentError("protected header: expected a map")
    if cose.HEADER_ALG not in header:
        raise MalformedDocumentError("protected header: no algorithm (label 1)")
    alg = header[cose.HEADER_ALG]
    if type(alg) is not int or alg != cose.ALG_ES384:
        raise UnsupportedAlgorithmError(alg)
    if cose.HEADER_CRIT in header:
        raise MalformedDocumentError("protected header: crit (label 2) is not supported")


def _payload_fields(sign1: cose.CoseSign1, payload: dict[Any, Any]) -> AttestationDocument:
    def bad(field: str, problem: str) -> MalformedDocumentError:
        return MalformedDocumentError(f"{field}: {problem}")

    def required(field: str) -> Any:
        if field not in payload:
            raise bad(field, "missing")
        return payload[field]

    module_id = required("module_id")
    if not isinstance(module_id, str) or not module_id:
        raise bad("module_id", "expected a non-empty text string")
    digest = required("digest")
    if not isinstance(digest, str):
        raise bad("digest", "expected a text string")
    timestamp = required("timestamp")
    if type(timestamp) is not int or timestamp <= 0:
        raise bad("timestamp", "expected a positive integer (milliseconds)")
    pcrs = _pcrs(required("pcrs"))
    certificate_der = _bstr(required("certificate"), "certificate", minimum=1)
    raw_bundle = required("cabundle")
    if not isinstance(raw_bundle, list) or not raw_bundle:
        raise bad("cabundle", "expected a non-empty array of certificates")
    bundle_der = [_bstr(c, f"cabundle[{i}]", minimum=1) for i, c in enumerate(raw_bundle)]
    optional = {name: _optional_bstr(payload.get(name), name)
                for name in ("public_key", "user_data", "nonce")}
    if digest != DIGEST:
        raise UnsupportedDigestError(digest)
    certificate = _certificate(certificate_der, "certificate")
    cabundle = tuple((der, _certificate(der, f"cabundle[{i}]")) for i, der in enumerate(bundle_der))
    return AttestationDocument(
        sign1=sign1, module_id=module_id, digest=digest, timestamp=timestamp, pcrs=pcrs,
        certificate_der=certificate_der, certificate=certificate, cabundle=cabundle,
        public_key=optional["public_key"], user_data=optional["user_data"],
        nonce=optional["nonce"])


def _pcrs(value: object) -> Mapping[int, bytes]:
    if not isinstance(value, dict):
        raise MalformedDocumentError("pcrs: expected a map")
    if not 1 <= len(value) <= MAX_PCRS:
        raise MalformedDocumentError(f"pcrs: {len(value)} entries, expected 1..{MAX_PCRS}")
    out: dict[int, bytes] = {}
    for index, digest in value.items():
        if type(index) is not int or not 0 <= index < MAX_PCRS:
            raise MalformedDocumentError(f"pcrs: key {index!r} is not an index 0..{MAX_PCRS - 1}")
        if not isinstance(digest, bytes) or len(digest) != PCR_LEN:
            raise MalformedDocumentError(f"pcrs: PCR{index} is not a {PCR_LEN}-byte string")
        out[index] = digest
    return MappingProxyType(dict(sorted(out.items())))


def _bstr(value: object, field: str, *, minimum: int = 0) -> bytes:
    if not isinstance(value, bytes):
        raise MalformedDocumentError(f"{field}: expected a byte string")
    if not minimum <= len(value) <= MAX_FIELD_SIZE:
        raise MalformedDocumentError(
            f"{field}: {len(value)} bytes, expected {minimum}..{MAX_FIELD_SIZE}")
    return value


def _optional_bstr(value: object, field: str) -> bytes | None:
    return None if value is None else _bstr(value, field)


def _certificate(der: bytes, field: str) -> x509.Certificate:
    """Parse, forcing the parts `cryptography` decodes lazily (names, validity, extensions), so
    that a broken certificate is reported here and not as a crash in the chain walk. The X.509
    parser's own exception types vary (ValueError, InvalidVersion, DuplicateExtension, ...) and
    it warns about RFC 5280 violations it still tolerates; every one of these is a refusal."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            cert = x509.load_der_x509_certificate(der)
            cert.subject, cert.issuer, cert.extensions  # noqa: B018 (evaluated for their errors)
            cert.not_valid_before_utc, cert.not_valid_after_utc, cert.signature_algorithm_oid
            cert.signature, cert.tbs_certificate_bytes
        return cert
    except Exception as exc:  # noqa: BLE001 - mapped to this step's reason (attestation.md §3)
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise MalformedDocumentError(f"{field}: {detail}") from None


def encode_payload(fields: Mapping[str, Any]) -> bytes:
    """The payload as the NSM writes it: an indefinite-length map in `PAYLOAD_KEYS` order (inner
    values definite). Used by the simulated NSM; fields absent from `fields` are omitted."""
    out = bytearray(b"\xbf")
    for key in PAYLOAD_KEYS:
        if key in fields:
            out += cbor2.dumps(key) + cbor2.dumps(fields[key])
    out += b"\xff"
    return bytes(out)
