"""v4 signatures: the one place in locksmith that hashes, makes and checks OpenPGP signatures.

Everything that signs or verifies (quorum-key self-signatures, share signatures, the
certificate adapter's validity checks, holders' detached signatures) goes through here, so the
hashing rules of RFC 4880 §5.2.4 exist once. No PGPy: the boot path imports this.

Public API
----------
Hash targets — what a signature covers, and which signature types may cover it:
  * `document(data) -> HashInput`                     types 0x00 binary, 0x01 text (CRLF canon.)
  * `certification(primary, user_id) -> HashInput`    types 0x10..0x13, 0x30 (UID, tag 0xB4)
  * `user_attribute(primary, attribute) -> HashInput` types 0x10..0x13, 0x30 (tag 0xD1)
  * `subkey_binding(primary, subkey) -> HashInput`    types 0x18, 0x19 (back-sig), 0x28
  * `direct_key(primary) -> HashInput`                types 0x1F, 0x20
  `HashInput(kind, data, types)`: `verify`/`create` refuse a signature type outside `types`
  (`BadSignature`), so a document signature can never pass as a binding; the caller still
  tells apart types sharing one target (0x18 binding vs 0x28 revocation). `canonical_text`.
Packets:
  * `Signature.parse(body)`, `.serialize()`, `.packet()`; fields `sig_type`,
    `pubkey_algorithm`, `hash_algorithm`, `hashed_area`/`unhashed_area` (raw wire bytes),
    `hashed`/`unhashed` (parsed `Subpacket`s), `left16`, `material` (MPIs as on the wire),
    `mpis`; accessors `created`, `signature_expiration`, `key_expiration`, `key_flags`,
    `issuer_key_id`, `issuer_fingerprint`, `embedded_signatures`, `revocation_reason`,
    `primary_user_id`, `notations`, `features`, `preferred_symmetric`, `preferred_hash`,
    `preferred_compression`, `exportable`, `unknown_critical(...)`.
  * `OnePassSignature.parse(body)`, `.serialize()`, `.packet()`, `OnePassSignature.for_key(...)`.
  * `Subpacket` (type, body, critical; builders such as `Subpacket.key_flags(0x01)`),
    `Notation`, subpacket type constants, key-flag constants (`FLAG_*`), `REASON_*`.
Making and checking:
  * `create(secret_key, target, sig_type, *, created, hashed=(), unhashed=(),
    hash_algorithm=SHA512) -> Signature` — Ed25519, ECDSA (NIST), RSA.
  * `prepare(public_key, target, sig_type, *, created, ...) -> PreparedSignature` with
    `.digest` and `.finish(mpis) -> Signature` (for a smart card: sign `.digest` elsewhere,
    then pass r, s (EdDSA: the 32-byte R and S; ECDSA: integers) or the RSA signature value;
    `finish` verifies the result before returning it).
  * `verify(public_key, signature, target) -> None`, raising `SignatureError`;
    `verify_digest(public_key, signature, digest)` when the digest is already computed (one
    hash of a submission checked against several candidate keys).
  * `signature_digest(signature, target) -> bytes`, `hash_algorithm_name(id)`.
Errors: `SignatureError` (base) > `MalformedSignature`, `UnsupportedSignature`, `BadSignature`.
Constants: signature types `BINARY`, `TEXT`, `GENERIC_CERTIFICATION` .. `POSITIVE_CERTIFICATION`,
  `SUBKEY_BINDING`, `PRIMARY_KEY_BINDING`, `DIRECT_KEY`, `KEY_REVOCATION`, `SUBKEY_REVOCATION`,
  `CERTIFICATION_REVOCATION`; hashes `MD5`, `SHA1`, `RIPEMD160`, `SHA256`, `SHA384`, `SHA512`,
  `SHA224`.

The packet and subpacket classes live in `sigpackets` and `subpackets` (split for size only);
import everything from here.

Policy is the caller's: this module verifies SHA-1 signatures (formats.md §11 allows them for
old self-signatures) and does not look at times, flags or critical subpackets on its own.
`create` adds creation time and issuer fingerprint (hashed) and issuer key ID (unhashed).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, utils

from locksmith.core.openpgp.errors import OpenPGPError
from locksmith.core.openpgp.keys import ECDSA, EDDSA, RSA_ALGORITHMS, PublicKey, SecretKey, encode_mpi
from locksmith.core.openpgp.sigpackets import *  # noqa: F403 - re-exported on purpose
from locksmith.core.openpgp.sigpackets import (
    BINARY, CERTIFICATION_REVOCATION, DIRECT_KEY, KEY_REVOCATION, MD5, PRIMARY_KEY_BINDING,
    RIPEMD160, SHA1, SHA224, SHA256, SHA384, SHA512, SUBKEY_BINDING, SUBKEY_REVOCATION, TEXT,
    Signature,
)
from locksmith.core.openpgp.subpackets import *  # noqa: F403 - re-exported on purpose
from locksmith.core.openpgp.subpackets import (
    BadSignature, Subpacket, UnsupportedSignature, serialize_area,
)

_HASHES: dict[int, tuple[str, type[hashes.HashAlgorithm]]] = {
    SHA1: ("SHA-1", hashes.SHA1), SHA224: ("SHA-224", hashes.SHA224),
    SHA256: ("SHA-256", hashes.SHA256), SHA384: ("SHA-384", hashes.SHA384),
    SHA512: ("SHA-512", hashes.SHA512),
}
_UNSUPPORTED_HASHES = {MD5: "MD5", RIPEMD160: "RIPEMD-160"}

_CERTIFICATIONS = frozenset({0x10, 0x11, 0x12, 0x13, CERTIFICATION_REVOCATION})


def hash_algorithm_name(algorithm: int) -> str:
    if algorithm in _HASHES:
        return _HASHES[algorithm][0]
    return _UNSUPPORTED_HASHES.get(algorithm, f"hash algorithm {algorithm}")


def _hash(algorithm: int) -> hashes.HashAlgorithm:
    if algorithm not in _HASHES:
        raise UnsupportedSignature(f"unsupported hash algorithm {hash_algorithm_name(algorithm)}")
    return _HASHES[algorithm][1]()


# --- hash targets ------------------------------------------------------------------------


@dataclass(frozen=True)
class HashInput:
    """The bytes a signature covers before its own trailer, and the types allowed over them.

    Binding the allowed types to the target stops type confusion: a document signature can
    never pass as a key binding, and the caller still decides e.g. binding (0x18) vs
    revocation (0x28), which share the same bytes.
    """

    kind: str
    data: bytes = field(repr=False)
    types: frozenset[int]

    def for_type(self, sig_type: int) -> bytes:
        if sig_type not in self.types:
            raise BadSignature(f"a signature of type 0x{sig_type:02x} cannot cover {self.kind}")
        if sig_type == TEXT:
            return canonical_text(self.data)
        return self.data


def canonical_text(data: bytes) -> bytes:
    """RFC 4880 §5.2.1 text mode: every line end becomes CR LF (a bare CR is left alone)."""
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def _key_material(key: PublicKey) -> bytes:
    body = key.body
    return b"\x99" + len(body).to_bytes(2, "big") + body


def document(data: bytes) -> HashInput:
    return HashInput("a document", bytes(data), frozenset({BINARY, TEXT}))


def certification(primary: PublicKey, user_id: bytes | str) -> HashInput:
    uid = user_id.encode("utf-8") if isinstance(user_id, str) else bytes(user_id)
    data = _key_material(primary) + b"\xb4" + len(uid).to_bytes(4, "big") + uid
    return HashInput("a user ID", data, _CERTIFICATIONS)


def user_attribute(primary: PublicKey, attribute: bytes) -> HashInput:
    data = _key_material(primary) + b"\xd1" + len(attribute).to_bytes(4, "big") + attribute
    return HashInput("a user attribute", data, _CERTIFICATIONS)


def subkey_binding(primary: PublicKey, subkey: PublicKey) -> HashInput:
    types = frozenset({SUBKEY_BINDING, PRIMARY_KEY_BINDING, SUBKEY_REVOCATION})
    return HashInput("a subkey", _key_material(primary) + _key_material(subkey), types)


def direct_key(primary: PublicKey) -> HashInput:
    return HashInput("a primary key", _key_material(primary), frozenset({DIRECT_KEY, KEY_REVOCATION}))


# --- making and checking -----------------------------------------------------------------


def signature_digest(signature: Signature, target: HashInput) -> bytes:
    h = hashes.Hash(_hash(signature.hash_algorithm))
    h.update(target.for_type(signature.sig_type))
    h.update(signature.trailer())
    return h.finalize()


def verify(public_key: PublicKey, signature: Signature, target: HashInput) -> None:
    """Check `signature` over `target` with `public_key`; return only if it verifies."""
    verify_digest(public_key, signature, signature_digest(signature, target))


def verify_digest(public_key: PublicKey, signature: Signature, digest: bytes) -> None:
    if signature.left16 != digest[:2]:
        raise BadSignature("signature does not verify (digest prefix mismatch)")
    alg, key_alg = signature.pubkey_algorithm, public_key.algorithm
    if alg != key_alg and not (alg in RSA_ALGORITHMS and key_alg in RSA_ALGORITHMS):
        raise BadSignature("signature algorithm does not match the key")
    mpis = signature.mpis
    try:
        key = public_key.crypto_key()
    except OpenPGPError as exc:
        raise UnsupportedSignature(f"cannot verify with this key: {exc}") from exc
    prehashed = utils.Prehashed(_hash(signature.hash_algorithm))
    try:
        if isinstance(key, ed25519.Ed25519PublicKey):
            r, s = mpis
            if len(r) > 32 or len(s) > 32:
                raise BadSignature("signature does not verify (EdDSA value too long)")
            key.verify(r.rjust(32, b"\x00") + s.rjust(32, b"\x00"), digest)
        elif isinstance(key, ec.EllipticCurvePublicKey) and alg == ECDSA:
            r_int, s_int = (int.from_bytes(v, "big") for v in mpis)
            key.verify(utils.encode_dss_signature(r_int, s_int), digest, ec.ECDSA(prehashed))
        elif isinstance(key, rsa.RSAPublicKey):
            (s_raw,) = mpis
            size = (key.key_size + 7) // 8
            if len(s_raw) > size:
                raise BadSignature("signature does not verify (RSA value too long)")
            key.verify(s_raw.rjust(size, b"\x00"), digest, padding.PKCS1v15(), prehashed)
        else:
            raise UnsupportedSignature("this key cannot make signatures")
    except InvalidSignature as exc:
        raise BadSignature("signature does not verify") from exc


@dataclass(frozen=True)
class PreparedSignature:
    """A signature waiting for its MPIs: sign `digest` (e.g. on a smart card), then `finish`."""

    public_key: PublicKey
    sig_type: int
    hash_algorithm: int
    hashed_area: bytes
    unhashed_area: bytes
    digest: bytes

    def finish(self, mpis: Sequence[int | bytes]) -> Signature:
        """Assemble the packet from r, s (EdDSA/ECDSA) or s (RSA) and check that it verifies."""
        material = b"".join(encode_mpi(v) for v in mpis)
        sig = Signature(self.sig_type, self.public_key.algorithm, self.hash_algorithm,
                        self.hashed_area, self.unhashed_area, self.digest[:2], material)
        verify_digest(self.public_key, sig, self.digest)
        return sig


def prepare(public_key: PublicKey, target: HashInput, sig_type: int, *, created: int,
            hashed: Sequence[Subpacket] = (), unhashed: Sequence[Subpacket] = (),
            hash_algorithm: int = SHA512) -> PreparedSignature:
    """Build the subpacket areas and the digest to sign (`created` because core has no clock)."""
    hashed_area = serialize_area([Subpacket.creation_time(created), *hashed,
                                  Subpacket.issuer_fingerprint(public_key.fingerprint)])
    unhashed_area = serialize_area([Subpacket.issuer_key_id(public_key.key_id), *unhashed])
    draft = Signature(sig_type, public_key.algorithm, hash_algorithm, hashed_area,
                      unhashed_area, b"\x00\x00", b"")
    digest = signature_digest(draft, target)
    return PreparedSignature(public_key, sig_type, hash_algorithm, hashed_area, unhashed_area,
                             digest)


def create(secret_key: SecretKey, target: HashInput, sig_type: int, *, created: int,
           hashed: Sequence[Subpacket] = (), unhashed: Sequence[Subpacket] = (),
           hash_algorithm: int = SHA512) -> Signature:
    """Sign `target` with a software key: Ed25519 (EdDSA), ECDSA on NIST curves, or RSA."""
    prepared = prepare(secret_key.public, target, sig_type, created=created, hashed=hashed,
                       unhashed=unhashed, hash_algorithm=hash_algorithm)
    priv, digest = secret_key.private, prepared.digest
    mpis: list[int | bytes]
    if isinstance(priv, ed25519.Ed25519PrivateKey) and secret_key.public.algorithm == EDDSA:
        raw = priv.sign(digest)
        mpis = [raw[:32], raw[32:]]
    elif isinstance(priv, ec.EllipticCurvePrivateKey) and secret_key.public.algorithm == ECDSA:
        der = priv.sign(digest, ec.ECDSA(utils.Prehashed(_hash(hash_algorithm))))
        mpis = list(utils.decode_dss_signature(der))
    elif isinstance(priv, rsa.RSAPrivateKey) and secret_key.public.algorithm in RSA_ALGORITHMS:
        mpis = [priv.sign(digest, padding.PKCS1v15(), utils.Prehashed(_hash(hash_algorithm)))]
    else:
        raise UnsupportedSignature("this key cannot make signatures")
    return prepared.finish(mpis)
