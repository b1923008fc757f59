"""Trust anchors and the certificate-chain walk of attestation.md §3 step 4 and §4.

`cryptography`'s own X.509 verifier rejects the AWS leaf (no authorityKeyIdentifier), so the walk
is written out: from the anchor down to the leaf, each certificate is checked for issuer name and
signature by its parent, the Nitro profile (ECDSA P-384 / SHA-384, CA flags, key usage,
pathLenConstraint) and validity at time T, and the first failure is reported.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from importlib import resources
from typing import Sequence

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtensionOID, NameOID, SignatureAlgorithmOID

from locksmith.core.attestation.errors import (
    CertificateChainError,
    CertificateProfileError,
    CertificateValidityError,
)

AWS_ROOT_RESOURCE = "data/aws-nitro-enclaves-root-g1.pem"
AWS_ROOT_SHA256 = "641a0321a3e244efe456463195d606317ed7cdcc3c1756e09893f3c68f79bb5b"
NOW_NOT_BEFORE_TOLERANCE_MS = 300_000  # attestation.md §3 step 4: holder clocks that lag
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


@dataclass(frozen=True)
class TrustAnchor:
    """A certificate the verifier trusts by configuration, never because a document carries it."""

    certificate: x509.Certificate
    der: bytes

    @property
    def fingerprint(self) -> str:
        """Lowercase hex SHA-256 of the DER encoding."""
        return hashlib.sha256(self.der).hexdigest()

    @property
    def name(self) -> str:
        return certificate_name(self.certificate)

    @classmethod
    def from_der(cls, der: bytes) -> TrustAnchor:
        return cls(x509.load_der_x509_certificate(der), bytes(der))

    @classmethod
    def from_pem(cls, pem: bytes) -> TrustAnchor:
        """Exactly one PEM certificate (a `--trust-root` file); ValueError otherwise."""
        try:
            certs = x509.load_pem_x509_certificates(pem)
        except ValueError:
            raise ValueError("not a PEM certificate") from None
        if len(certs) != 1:
            raise ValueError(f"expected exactly one certificate, found {len(certs)}")
        return cls(certs[0], certs[0].public_bytes(Encoding.DER))


@functools.lru_cache(maxsize=1)
def aws_nitro_root() -> TrustAnchor:
    """The AWS Nitro Enclaves Root-G1 shipped as package data, pinned by its SHA-256."""
    pem = resources.files("locksmith").joinpath(AWS_ROOT_RESOURCE).read_bytes()
    anchor = TrustAnchor.from_pem(pem)
    if anchor.fingerprint != AWS_ROOT_SHA256:
        raise RuntimeError(f"packaged AWS Nitro root has SHA-256 {anchor.fingerprint}, "
                           f"expected {AWS_ROOT_SHA256}: the installation is corrupt")
    return anchor


def certificate_name(cert: x509.Certificate) -> str:
    """The subject commonName, else the whole subject in RFC 4514 form."""
    try:
        cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        if cns:
            value = cns[0].value
            return value if isinstance(value, str) else value.hex()
        return cert.subject.rfc4514_string()
    except ValueError:
        return "<unparseable subject>"


def format_ms(ms: int) -> str:
    """RFC 3339 UTC with milliseconds, e.g. `2024-09-09T19:49:12.400Z`."""
    try:
        moment = _EPOCH + timedelta(milliseconds=ms)
    except OverflowError:
        return f"{ms} ms after the Unix epoch"
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _format_seconds(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _unix_seconds(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(seconds=1)


def verify_chain(anchor: TrustAnchor, cabundle: Sequence[tuple[bytes, x509.Certificate]],
                 leaf: x509.Certificate, *, at_ms: int, not_before_tolerance_ms: int = 0) -> None:
    """Step 4. `cabundle` is (DER, parsed) in document order, root first; entries equal to the
    anchor are skipped, the rest followed by `leaf` must chain from the anchor.

    Certificates are checked in chain order, each for issuer and signature by its parent, then
    profile, then validity. The anchor's own profile and validity are checked right after the
    first certificate is found to be issued by it: a document from another PKI is "certificate
    chain does not lead to the trusted root" even when the anchor is not valid at T (e.g. the
    simulated root, created today, against a 2024 AWS document; attestation.md §8)."""
    path = [anchor.certificate] + [cert for der, cert in cabundle if der != anchor.der] + [leaf]
    last = len(path) - 1
    for i in range(1, len(path)):
        _check_issued_by(path[i], path[i - 1])
        if i == 1:
            _check_certificate(path[0], at_ms, not_before_tolerance_ms, is_leaf=False,
                               intermediates_below=last - 1)
        _check_certificate(path[i], at_ms, not_before_tolerance_ms, is_leaf=i == last,
                           intermediates_below=max(last - i - 1, 0))


def _check_certificate(cert: x509.Certificate, at_ms: int, tolerance_ms: int, *, is_leaf: bool,
                       intermediates_below: int) -> None:
    name = certificate_name(cert)
    _check_profile(cert, name, is_leaf=is_leaf, intermediates_below=intermediates_below)
    _check_validity(cert, name, at_ms, tolerance_ms)


def _check_issued_by(cert: x509.Certificate, parent: x509.Certificate) -> None:
    if cert.issuer != parent.subject:
        raise CertificateChainError()
    if cert.signature_algorithm_oid != SignatureAlgorithmOID.ECDSA_WITH_SHA384:
        raise CertificateProfileError(
            certificate_name(cert), f"signed with {cert.signature_algorithm_oid.dotted_string}, "
                                    "expected ecdsa-with-SHA384")
    try:  # parents below the anchor were checked to be P-384 before their children
        parent_key = parent.public_key()
    except Exception:  # noqa: BLE001 - an anchor key we cannot use cannot have signed anything
        raise CertificateChainError() from None
    if not isinstance(parent_key, ec.EllipticCurvePublicKey):
        raise CertificateChainError()
    try:
        parent_key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(hashes.SHA384()))
    except (InvalidSignature, ValueError):
        raise CertificateChainError() from None


# The extensions this profile reads: any other one marked critical is a refusal.
_PROCESSED_EXTENSIONS = frozenset({ExtensionOID.BASIC_CONSTRAINTS, ExtensionOID.KEY_USAGE})


def _check_profile(cert: x509.Certificate, name: str, *, is_leaf: bool,
                   intermediates_below: int) -> None:
    def violation(detail: str) -> CertificateProfileError:
        return CertificateProfileError(name, detail)

    try:
        key = cert.public_key()
    except Exception as exc:  # noqa: BLE001 - any key the parser cannot load is unusable here
        raise violation(f"unusable public key ({_first_line(exc)})") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP384R1):
        raise violation("public key is not ECDSA P-384")
    try:
        extensions = cert.extensions
    except ValueError as exc:
        raise violation(f"cannot parse extensions ({_first_line(exc)})") from None
    for extension in extensions:
        # RFC 5280 §4.2: a critical extension the verifier does not process must be refused
        # (it may restrict the certificate in a way we would otherwise ignore).
        if extension.critical and extension.oid not in _PROCESSED_EXTENSIONS:
            raise violation(f"unknown critical extension {extension.oid.dotted_string}")
    try:
        constraints: x509.BasicConstraints | None = (
            extensions.get_extension_for_class(x509.BasicConstraints).value)
    except x509.ExtensionNotFound:
        constraints = None
    try:
        usage: x509.KeyUsage | None = extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        usage = None
    if is_leaf:
        if constraints is not None and constraints.ca:
            raise violation("the signing certificate is a CA")
        if usage is not None and not usage.digital_signature:
            raise violation("keyUsage lacks digitalSignature")
        return
    if constraints is None or not constraints.ca:
        raise violation("a CA certificate lacks basicConstraints CA=true")
    if usage is not None and not usage.key_cert_sign:
        raise violation("keyUsage lacks keyCertSign")
    if constraints.path_length is not None and intermediates_below > constraints.path_length:
        raise violation(f"pathLenConstraint {constraints.path_length} exceeded by "
                        f"{intermediates_below} intermediate certificates below it")


def _check_validity(cert: x509.Certificate, name: str, at_ms: int, tolerance_ms: int) -> None:
    not_before, not_after = cert.not_valid_before_utc, cert.not_valid_after_utc
    if not (_unix_seconds(not_before) * 1000 - tolerance_ms <= at_ms
            <= _unix_seconds(not_after) * 1000):
        raise CertificateValidityError(name, format_ms(at_ms), _format_seconds(not_before),
                                       _format_seconds(not_after))


def _first_line(exc: BaseException) -> str:
    text = str(exc)
    return text.splitlines()[0] if text else type(exc).__name__
