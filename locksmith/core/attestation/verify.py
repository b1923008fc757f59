"""Verification of AWS Nitro attestation documents (attestation.md §3), as composable checks.

    verify(document, trust_root=..., now_ms=... | at_ms=..., pcrs=..., nonce=..., ...) -> Attestation
    verify_with_policy(document, policy, ...) -> PolicyMatch

Steps 1–3 (structure) are `document.parse_document`, step 4 (chain) is
`chain.verify_chain`; this module adds the signature (5) and the expectations (6–9) and
returns a typed result. The first failing step raises its `AttestationError` subclass, whose
message is the normative reason text. Time is always a parameter: the current time is passed in
by the caller (`now_ms`), never read here. The only default trust anchor is the pinned AWS root.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from locksmith.core.attestation import cose
from locksmith.core.attestation.chain import (
    AWS_ROOT_SHA256,
    NOW_NOT_BEFORE_TOLERANCE_MS,
    TrustAnchor,
    aws_nitro_root,
    certificate_name,
    format_ms,
    verify_chain,
)
from locksmith.core.attestation.document import AttestationDocument, parse_document
from locksmith.core.attestation.errors import (
    AttestationError,
    CertificateChainError,
    CertificateProfileError,
    CertificateValidityError,
    DebugEnclaveError,
    DebugPcrSetError,
    MalformedDocumentError,
    NoPcrSetMatchedError,
    NonceMismatchError,
    PcrMismatchError,
    PcrMissingError,
    PolicyExpiredError,
    SignatureInvalidError,
    UnsupportedAlgorithmError,
    UnsupportedDigestError,
    UserDataLengthError,
    UserDataMismatchError,
)
from locksmith.core.attestation.pcr_policy import PcrPolicy, is_debug_pcrs

__all__ = [
    "AWS_ROOT_SHA256", "Attestation", "AttestationDocument", "AttestationError",
    "CertificateChainError", "CertificateProfileError", "CertificateValidityError",
    "DebugEnclaveError", "DebugPcrSetError", "MalformedDocumentError", "NoPcrSetMatchedError",
    "NonceMismatchError", "PcrMismatchError", "PcrMissingError", "PolicyExpiredError",
    "PolicyMatch", "SignatureInvalidError", "TrustAnchor", "UnsupportedAlgorithmError",
    "UnsupportedDigestError", "UserDataLengthError", "UserDataMismatchError", "aws_nitro_root",
    "certificate_name", "format_ms", "parse_document", "verify", "verify_with_policy",
]


@dataclass(frozen=True)
class Attestation:
    """A verified document: every field below was covered by a signature chaining to the anchor."""

    module_id: str
    timestamp: int  # ms since the Unix epoch
    digest: str
    pcrs: Mapping[int, bytes]
    public_key: bytes | None
    user_data: bytes | None
    nonce: bytes | None
    certificate: x509.Certificate  # the leaf that signed the document

    @property
    def is_debug(self) -> bool:
        """PCR0, PCR1 and PCR2 all zero: a debug-mode enclave, whose memory the host can read."""
        return is_debug_pcrs(self.pcrs)


@dataclass(frozen=True)
class PolicyMatch:
    attestation: Attestation
    set_index: int


def verify(document: bytes, *, trust_root: TrustAnchor | None = None,
           at_ms: int | None = None, now_ms: int | None = None,
           pcrs: Mapping[int, bytes] | None = None, nonce: bytes | None = None,
           user_data: bytes | None = None, user_data_length: int | None = None,
           allow_debug: bool = False) -> Attestation:
    """Run attestation.md §3 steps 1–9 on `document` and return the verified fields.

    Time T: `at_ms` (a given time), `now_ms` (the current time, with the 300 s `notBefore`
    tolerance) or, when neither is given, the document's own timestamp. `trust_root` defaults to
    the AWS Nitro Enclaves Root-G1. `pcrs`, `nonce`, `user_data` (exact) and `user_data_length`
    are each checked only when given; debug-mode (all-zero PCR0–2) documents are refused unless
    `allow_debug`.
    """
    authentic = _authenticate(document, trust_root, at_ms, now_ms)
    return _check_expectations(authentic, pcrs=pcrs, nonce=nonce, user_data=user_data,
                               user_data_length=user_data_length, allow_debug=allow_debug)


def verify_with_policy(document: bytes, policy: PcrPolicy, *,
                       trust_root: TrustAnchor | None = None, at_ms: int | None = None,
                       now_ms: int | None = None, nonce: bytes | None = None,
                       user_data: bytes | None = None, user_data_length: int | None = None,
                       allow_debug: bool = False,
                       extra_check: Callable[[Attestation], None] | None = None) -> PolicyMatch:
    """Accept the document if any set of `policy` does, with keymaker.md §8.2 semantics.

    Sets are tried in order. A debug set (all-zero PCR0–2) is skipped with
    `debug-mode PCRs are not accepted` unless `allow_debug`. For the others the document is
    verified as by `verify` with that set's PCRs, then `extra_check` (e.g. the Keymaker's
    user_data = bundle hash; it raises an `AttestationError` to refuse) runs, then the set's
    expiry is checked against the document's own timestamp. The first set that passes wins;
    if none does, `NoPcrSetMatchedError` lists every set's reason.
    """
    authentic: AttestationDocument | AttestationError | None = None
    failures: list[tuple[int, AttestationError]] = []
    for index, pcr_set in enumerate(policy.sets):
        try:
            if pcr_set.is_debug and not allow_debug:
                raise DebugPcrSetError()
            if authentic is None:  # steps 1–5 do not depend on the set: run them once
                try:
                    authentic = _authenticate(document, trust_root, at_ms, now_ms)
                except AttestationError as exc:
                    authentic = exc
            if isinstance(authentic, AttestationError):
                raise authentic
            result = _check_expectations(authentic, pcrs=pcr_set.pcrs, nonce=nonce,
                                         user_data=user_data, user_data_length=user_data_length,
                                         allow_debug=allow_debug)
            if extra_check is not None:
                extra_check(result)
            expires = pcr_set.expires_at_unix_seconds
            if expires is not None and not result.timestamp < expires * 1000:
                raise PolicyExpiredError(expires)
        except AttestationError as exc:
            failures.append((index, exc))
            continue
        return PolicyMatch(result, index)
    raise NoPcrSetMatchedError(failures)


def _authenticate(document: bytes, trust_root: TrustAnchor | None, at_ms: int | None,
                  now_ms: int | None) -> AttestationDocument:
    """Steps 1–5: structure, chain to the anchor at time T, COSE signature."""
    if at_ms is not None and now_ms is not None:
        raise ValueError("give at most one of at_ms and now_ms")
    anchor = trust_root if trust_root is not None else aws_nitro_root()
    doc = parse_document(document)
    if now_ms is not None:
        t, tolerance = now_ms, NOW_NOT_BEFORE_TOLERANCE_MS
    else:
        t, tolerance = (at_ms if at_ms is not None else doc.timestamp), 0
    verify_chain(anchor, doc.cabundle, doc.certificate, at_ms=t, not_before_tolerance_ms=tolerance)
    leaf_key = doc.certificate.public_key()
    assert isinstance(leaf_key, ec.EllipticCurvePublicKey)  # P-384, checked by verify_chain
    if not cose.verify_es384(leaf_key, doc.sign1.protected, doc.sign1.payload,
                             doc.sign1.signature):
        raise SignatureInvalidError()
    return doc


def _check_expectations(doc: AttestationDocument, *, pcrs: Mapping[int, bytes] | None,
                        nonce: bytes | None, user_data: bytes | None,
                        user_data_length: int | None, allow_debug: bool) -> Attestation:
    """Steps 6–10 on an authenticated document."""
    if is_debug_pcrs(doc.pcrs) and not allow_debug:
        raise DebugEnclaveError()
    for index in sorted(pcrs or {}):
        assert pcrs is not None
        if index not in doc.pcrs:
            raise PcrMissingError(index)
        if doc.pcrs[index] != pcrs[index]:
            raise PcrMismatchError(index, pcrs[index], doc.pcrs[index])
    if nonce is not None and doc.nonce != nonce:
        raise NonceMismatchError()
    if user_data is not None and doc.user_data != user_data:
        raise UserDataMismatchError()
    if user_data_length is not None:
        got = len(doc.user_data) if doc.user_data is not None else 0
        if got != user_data_length:
            raise UserDataLengthError(got, user_data_length)
    return Attestation(module_id=doc.module_id, timestamp=doc.timestamp, digest=doc.digest,
                       pcrs=doc.pcrs, public_key=doc.public_key, user_data=doc.user_data,
                       nonce=doc.nonce, certificate=doc.certificate)
