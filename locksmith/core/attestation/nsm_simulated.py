"""The simulated NSM (attestation.md §7): development only, trusted only via `--trust-root`.

It keeps a P-384 CA in a directory (root → intermediate, private keys mode 0600) and, per
process, a leaf key and certificate that live 3 hours like a real Nitro leaf (re-issued when less
than 10 minutes remain; kept in memory only, so no signing key of a "running enclave" outlives
it). Documents are exactly the AWS format: untagged COSE_Sign1, protected `a1013822`,
indefinite-length payload map in the AWS key order, 16 PCRs, `cabundle` = [root, intermediate].
Requests arrive as NSM API CBOR through `_call`, like the device's.

The directory is the I/O edge: it is created with mode 0700, files are written atomically
(O_EXCL temporary file, fsync, link) under an flock, and existing files are reused.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, Iterator, Mapping

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from locksmith.core.attestation import cose, nsm
from locksmith.core.attestation.document import encode_payload
from locksmith.core.attestation.pcr_policy import PCR_LEN, PcrPolicy, PcrSet, TrustedHashes

ROOT_CN = "locksmith simulated NSM root (development only)"
INTERMEDIATE_CN = "locksmith simulated NSM intermediate (development only)"
ROOT_LIFETIME = timedelta(days=365 * 30)
INTERMEDIATE_LIFETIME = timedelta(days=365 * 5)
LEAF_LIFETIME = timedelta(hours=3)
LEAF_RENEW_BEFORE = timedelta(minutes=10)
BACKDATE = timedelta(seconds=60)
PCR_COUNT = 16
RANDOM_SIZE = 256


@dataclass(frozen=True)
class _Issuer:
    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def der(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.DER)


class SimulatedNsm(nsm.Nsm):
    kind = "simulated"

    def __init__(self, root: _Issuer, intermediate: _Issuer, pcrs: Mapping[int, bytes],
                 clock: Callable[[], float] = time.time) -> None:
        self._root = root
        self._intermediate = intermediate
        self._pcrs = {i: pcrs.get(i, bytes(PCR_LEN)) for i in range(PCR_COUNT)}
        self._clock = clock
        self._leaf: _Issuer | None = None

    @classmethod
    def open(cls, directory: str | os.PathLike[str], *, clock: Callable[[], float] = time.time,
             pcr_overrides: Mapping[int, bytes] | None = None) -> SimulatedNsm:
        """Load (creating what is missing) the CA and trusted hashes in `directory`.

        `pcr_overrides` replaces PCRs for this instance only (`caution attestation simulate`).
        Raises NsmError with a one-line reason."""
        path = Path(directory)
        try:
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
            with _locked(path):
                now = _utc(clock())
                root = _load_or_create(path, "root", now, None)
                intermediate = _load_or_create(path, "intermediate", now, root)
                hashes_ = _load_or_create_hashes(path)
        except OSError as exc:
            raise nsm.NsmError(f"simulated NSM directory {path}: {exc.strerror or exc}") from None
        except ValueError as exc:
            raise nsm.NsmError(f"simulated NSM directory {path}: {exc}") from None
        pcrs = dict(hashes_.pcrs)
        pcrs.update(pcr_overrides or {})
        return cls(root, intermediate, pcrs, clock)

    @property
    def root_certificate(self) -> x509.Certificate:
        return self._root.certificate

    def _call(self, request: bytes) -> bytes:
        try:
            decoded = nsm.decode_request(request)
            response: nsm.Response
            if isinstance(decoded, nsm.GetRandomRequest):
                response = nsm.GetRandomResponse(os.urandom(RANDOM_SIZE))
            elif isinstance(decoded, nsm.DescribePcrRequest):
                data = self._pcrs.get(decoded.index, bytes(PCR_LEN))
                response = nsm.DescribePcrResponse(decoded.index < PCR_COUNT, data)
            else:
                response = nsm.AttestationResponse(self._document(decoded))
        except nsm.NsmError as exc:
            return nsm.encode_response(exc)
        return nsm.encode_response(response)

    def _document(self, request: nsm.AttestationRequest) -> bytes:
        now = self._clock()
        leaf = self._current_leaf(_utc(now))
        fields = {
            "module_id": _common_name(leaf.certificate),
            "digest": "SHA384",
            "timestamp": int(now * 1000),
            "pcrs": dict(self._pcrs),
            "certificate": leaf.der,
            "cabundle": [self._root.der, self._intermediate.der],
            "public_key": request.public_key,
            "user_data": request.user_data,
            "nonce": request.nonce,
        }
        payload = encode_payload(fields)
        signature = cose.sign_es384(leaf.key, cose.ES384_PROTECTED, payload)
        return cose.encode_sign1(cose.ES384_PROTECTED, payload, signature)

    def _current_leaf(self, now: datetime) -> _Issuer:
        leaf = self._leaf
        if leaf is None or leaf.certificate.not_valid_after_utc - now < LEAF_RENEW_BEFORE:
            key = ec.generate_private_key(ec.SECP384R1())
            name = f"locksmith-sim-{secrets.token_hex(4)}"
            cert = _certificate(name, key, self._intermediate, now, LEAF_LIFETIME, ca=False)
            leaf = self._leaf = _Issuer(cert, key)
        return leaf


# --------------------------------------------------------------------------- the CA directory


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=timezone.utc)


def _common_name(cert: x509.Certificate) -> str:
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def _certificate(cn: str, key: ec.EllipticCurvePrivateKey, issuer: _Issuer | None,
                 now: datetime, lifetime: timedelta, *, ca: bool,
                 path_length: int | None = None) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    signer_key = issuer.key if issuer else key
    public = key.public_key()
    builder = (x509.CertificateBuilder()
               .subject_name(subject)
               .issuer_name(issuer.certificate.subject if issuer else subject)
               .public_key(public)
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - BACKDATE)
               .not_valid_after(now - BACKDATE + lifetime)
               .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length), critical=True)
               .add_extension(x509.KeyUsage(
                   digital_signature=not ca, content_commitment=False, key_encipherment=False,
                   data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
                   encipher_only=False, decipher_only=False), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False))
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False)
    return builder.sign(signer_key, hashes.SHA384())


def _load_or_create(path: Path, stem: str, now: datetime, issuer: _Issuer | None) -> _Issuer:
    """`<stem>.pem` + `<stem>.key`: reuse when both exist and fit together, else create them.

    An intermediate that no longer outlives a fresh leaf is re-issued."""
    cert_path, key_path = path / f"{stem}.pem", path / f"{stem}.key"
    if cert_path.exists() or key_path.exists():
        if not (cert_path.exists() and key_path.exists()):
            raise ValueError(f"{stem}.pem and {stem}.key must both exist or both be absent")
        existing = _load_pair(cert_path, key_path, stem)
        if issuer is not None:
            _check_issued(existing.certificate, issuer, stem)
            if existing.certificate.not_valid_after_utc < now + LEAF_LIFETIME:
                return _create_pair(path, stem, now, issuer, replace=True)
        return existing
    return _create_pair(path, stem, now, issuer, replace=False)


def _load_pair(cert_path: Path, key_path: Path, stem: str) -> _Issuer:
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP384R1):
        raise ValueError(f"{stem}.key is not a P-384 private key")
    if key.public_key() != cert.public_key():
        raise ValueError(f"{stem}.key does not belong to {stem}.pem")
    return _Issuer(cert, key)


def _check_issued(cert: x509.Certificate, issuer: _Issuer, stem: str) -> None:
    try:
        cert.verify_directly_issued_by(issuer.certificate)
    except (ValueError, TypeError, InvalidSignature):
        raise ValueError(f"{stem}.pem is not issued by root.pem") from None


def _create_pair(path: Path, stem: str, now: datetime, issuer: _Issuer | None, *,
                 replace: bool) -> _Issuer:
    key = ec.generate_private_key(ec.SECP384R1())
    if issuer is None:
        cert = _certificate(ROOT_CN, key, None, now, ROOT_LIFETIME, ca=True, path_length=1)
    else:
        cert = _certificate(INTERMEDIATE_CN, key, issuer, now, INTERMEDIATE_LIFETIME, ca=True,
                            path_length=0)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    _write(path / f"{stem}.key", key_pem, 0o600, replace)
    _write(path / f"{stem}.pem", cert.public_bytes(serialization.Encoding.PEM), 0o644, replace)
    return _Issuer(cert, key)


def _load_or_create_hashes(path: Path) -> TrustedHashes:
    hashes_path = path / "trusted_hashes.json"
    if hashes_path.exists():
        return TrustedHashes.from_json(hashes_path.read_bytes(), source=str(hashes_path))
    values = [_random_pcr() for _ in range(3)]
    trusted = TrustedHashes(values[0], values[1], values[2])
    _write(hashes_path, trusted.to_json().encode(), 0o644, False)
    policy_path = path / "keymaker-pcr-policy.json"
    if not policy_path.exists():
        policy = PcrPolicy((PcrSet(trusted.pcrs, None),))
        _write(policy_path, (policy.to_json() + "\n").encode(), 0o644, False)
    return trusted


def _random_pcr() -> bytes:
    while True:
        value = os.urandom(PCR_LEN)
        if any(value):
            return value


def _write(target: Path, data: bytes, mode: int, replace: bool) -> None:
    """Atomic write: O_EXCL temporary file in the same directory, fsync, link (or replace)."""
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        if replace:
            os.replace(tmp, target)
        else:
            os.link(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    dir_fd = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Serialise initialisation between processes sharing the directory."""
    fd = os.open(path / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
