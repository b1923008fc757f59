"""Test-only builders: a throwaway P-384 PKI and hand-made Nitro-format documents.

The real fixtures cover the happy path and AWS's quirks; these builders cover everything a real
document cannot show (a wrong algorithm, duplicate keys, a CA flag missing, ...) with signatures
that are valid, so each test reaches exactly the step it is about.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import cbor2
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from locksmith.core.attestation import cose
from locksmith.core.attestation.verify import TrustAnchor
from tests.conftest import NITRO

T0_MS = 1_700_000_000_000  # 2023-11-14T22:13:20Z: "now" of the factory documents
T0 = datetime.fromtimestamp(T0_MS / 1000, tz=timezone.utc)
PCRS = {i: bytes([i + 1]) * 48 for i in range(16)}
_KEYS: dict[str, ec.EllipticCurvePrivateKey] = {}


def nitro_fixture(name: str) -> bytes:
    """A real document from ../shared/fixtures/nitro. The published files are one base64 line,
    but `debug-2024-09-17.b64` carries trailing text copied from the upstream Rust test
    (`.expect("decode cbor document failed");`), so only the first token is the document."""
    token = (NITRO / name).read_text().split()[0]
    return base64.b64decode(token, validate=True)


def key(name: str, curve: ec.EllipticCurve | None = None) -> ec.EllipticCurvePrivateKey:
    """Deterministic per-name keys, cached so the tests stay fast."""
    cache_name = f"{name}/{(curve or ec.SECP384R1()).name}"
    if cache_name not in _KEYS:
        _KEYS[cache_name] = ec.generate_private_key(curve or ec.SECP384R1())
    return _KEYS[cache_name]


@dataclass
class Cert:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    @property
    def anchor(self) -> TrustAnchor:
        return TrustAnchor.from_der(self.der)


def make_cert(cn: str, issuer: Cert | None = None, *, ca: bool,
              signing_key: ec.EllipticCurvePrivateKey | None = None,
              own_key: ec.EllipticCurvePrivateKey | None = None,
              path_length: int | None = None, basic_constraints: bool = True,
              key_usage: str | None = "default", not_before: datetime | None = None,
              not_after: datetime | None = None,
              hash_alg: hashes.SHA256 | hashes.SHA384 | None = None,
              extra: tuple[tuple[x509.ExtensionType, bool], ...] = ()) -> Cert:
    own = own_key or key(cn)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    builder = (x509.CertificateBuilder()
               .subject_name(name)
               .issuer_name(issuer.cert.subject if issuer else name)
               .public_key(own.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(not_before or T0 - timedelta(days=1))
               .not_valid_after(not_after or T0 + timedelta(days=1)))
    if basic_constraints:
        builder = builder.add_extension(x509.BasicConstraints(ca=ca, path_length=path_length),
                                        critical=True)
    if key_usage is not None:
        sign = key_usage == "default" and not ca or key_usage == "digital_signature"
        cert_sign = key_usage == "default" and ca or key_usage == "key_cert_sign"
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=sign, content_commitment=False, key_encipherment=key_usage == "other",
            data_encipherment=False, key_agreement=False, key_cert_sign=cert_sign,
            crl_sign=cert_sign, encipher_only=False, decipher_only=False), critical=True)
    for extension, critical in extra:
        builder = builder.add_extension(extension, critical=critical)
    signer = signing_key or (issuer.key if issuer else own)
    return Cert(builder.sign(signer, hash_alg or hashes.SHA384()), own)


@dataclass
class Pki:
    root: Cert
    intermediate: Cert
    leaf: Cert

    @classmethod
    def default(cls) -> Pki:
        root = make_cert("test root", ca=True)
        intermediate = make_cert("test intermediate", root, ca=True)
        leaf = make_cert("test leaf", intermediate, ca=False)
        return cls(root, intermediate, leaf)


def fields(pki: Pki, **overrides: Any) -> dict[str, Any]:
    """Payload fields in the AWS key order; override or (with value `...`) drop any of them."""
    out: dict[str, Any] = {
        "module_id": "i-0123456789abcdef0-enc0123456789abcdef",
        "digest": "SHA384",
        "timestamp": T0_MS,
        "pcrs": dict(PCRS),
        "certificate": pki.leaf.der,
        "cabundle": [pki.root.der, pki.intermediate.der],
        "public_key": None,
        "user_data": b"\x11" * 32,
        "nonce": b"nonce-0123456789",
    }
    for name, value in overrides.items():
        if value is ...:
            out.pop(name, None)
        else:
            out[name] = value
    return out


def encode_map(value: dict[Any, Any], *, indefinite: bool = False) -> bytes:
    if not indefinite:
        return bytes(cbor2.dumps(value))
    return b"\xbf" + b"".join(cbor2.dumps(k) + cbor2.dumps(v) for k, v in value.items()) + b"\xff"


def bstr(data: bytes) -> bytes:
    return bytes(cbor2.dumps(data))


@dataclass
class Doc:
    """Raw pieces of a COSE_Sign1; `build()` signs unless `signature` is given."""

    payload: bytes
    signer: ec.EllipticCurvePrivateKey
    protected: bytes = cose.ES384_PROTECTED
    unprotected: bytes = b"\xa0"
    signature: bytes | None = None
    tagged: bool = False
    trailer: bytes = b""
    extra_items: list[bytes] = field(default_factory=list)

    def build(self) -> bytes:
        sig = self.signature
        if sig is None:
            sig = cose.sign_es384(self.signer, self.protected, self.payload)
        items = [bstr(self.protected), self.unprotected, bstr(self.payload), bstr(sig)]
        items += self.extra_items
        body = bytes([0x80 | len(items)]) + b"".join(items)
        return (b"\xd2" if self.tagged else b"") + body + self.trailer


def document(pki: Pki, *, indefinite: bool = False, **overrides: Any) -> bytes:
    """A valid factory document (verify with `trust_root=pki.root.anchor`, at T0)."""
    payload = encode_map(fields(pki, **overrides), indefinite=indefinite)
    return Doc(payload, pki.leaf.key).build()


def resign(original: bytes, payload: bytes, signer: ec.EllipticCurvePrivateKey) -> bytes:
    """Replace the payload of an untagged document and sign it with `signer`."""
    decoded = cose.decode_sign1(original)
    return Doc(payload, signer, protected=decoded.protected).build()
