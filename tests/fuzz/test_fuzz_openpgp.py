"""Armored and binary OpenPGP (locksmith/core/openpgp/) under hostile input.

Allowed to escape, per target:
* `armor.dearmor_all` / `dearmor_one` / `openpgp_binary`: `ArmorError`;
* `packets.parse_packets`: `PacketError`;
* `certs.load_certificates`, then every `validity` question asked of what loaded
  (`eligibility`, `live_keys`, `structural_roles`, `signing_candidates`, `decryption_keys`,
  `valid_user_ids`, `primary_expiration`, `find_holder_conflict`) and `normalise_keyring`:
  `OpenPGPError` (validity itself answers, it does not raise, but it parses signatures lazily);
* `secretkeys.load_secret_keys` and `StoredSecretKey.unlock`: `OpenPGPError` (`SecretKeyError`
  and its subclasses for unlocking);
* `message.decrypt`: `OpenPGPError` (`MessageError`, `DecryptionError` and subclasses);
* `signature.Signature.parse`, its subpacket accessors, `OnePassSignature.parse` and
  `signature.verify`: `OpenPGPError` (`SignatureError` family);
* `holder_signature.parse_holder_signature` / `verify_holder_signature`:
  `HolderSignatureError` only (its text is the protocol's rejection reason).

Material: the reference fixture's Ed25519/Cv25519 holders and quorum key, plus RSA-2048 and
NIST P-256 holders built here (no GnuPG needed), so that every signature and session-key
algorithm the project accepts is reached with mutated MPIs and subpackets.
"""

from __future__ import annotations

import bz2
import functools
import warnings
import zlib

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given
from hypothesis import strategies as st

from locksmith.core.openpgp import armor, packets, quorumkey, validity
from locksmith.core.openpgp import signature as sigmod
from locksmith.core.openpgp.armor import ArmorError
from locksmith.core.openpgp.certbuild import build_certificate
from locksmith.core.openpgp.certs import Certificate, load_certificates
from locksmith.core.openpgp.errors import OpenPGPError, PacketError
from locksmith.core.openpgp.holder_signature import (
    HolderSignatureError, parse_holder_signature, sign_detached_text, verify_holder_signature,
)
from locksmith.core.openpgp.keys import (
    ECDH, ECDSA, OID_P256, RSA_ENCRYPT_SIGN, PublicKey, SecretKey, encode_mpi,
)
from locksmith.core.openpgp.message import MAX_SIZE, DecompressionLimit, decrypt
from locksmith.core.openpgp.normalise import normalise_keyring
from locksmith.core.openpgp.packets import COMPRESSED, encode_packet
from locksmith.core.openpgp.secretkeys import PrivateKeyring, load_secret_keys
from locksmith.core.openpgp.sigpackets import OnePassSignature, Signature
from tests.conftest import CAUTION_V0
from tests.core.protocol_kit import FIXTURE_SECRET, NOW, T0
from tests.fuzz.strategies import (
    armored_packet_mutated, bounded, encode_packet_as, encrypt_raw, fuzz, literal, mutated,
    mutated_from, only, openpgp_any, outcome, packet_mutated, text_mutated,
)

# --- material ---------------------------------------------------------------------------------

ALICE_TSK = armor.dearmor_one((CAUTION_V0 / "alice.private.asc").read_bytes())
BOB_TSK = armor.dearmor_one((CAUTION_V0 / "bob.private.asc").read_bytes())
PRE_IMPORT = (CAUTION_V0 / "pre-import.asc").read_bytes()
QUORUM_KEY = quorumkey.decryption_key(FIXTURE_SECRET)
QUORUM_CERT = armor.dearmor_one(quorumkey.public_certificate(
    quorumkey.quorum_keys(FIXTURE_SECRET), generated=T0))


def _rsa_key(private: rsa.RSAPrivateKey) -> SecretKey:
    numbers = private.public_key().public_numbers()
    body = (b"\x04" + T0.to_bytes(4, "big") + bytes([RSA_ENCRYPT_SIGN]) + encode_mpi(numbers.n)
            + encode_mpi(numbers.e))
    return SecretKey(PublicKey.parse(body), private)


def _p256_key(private: ec.EllipticCurvePrivateKey, algorithm: int) -> SecretKey:
    point = private.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    body = (b"\x04" + T0.to_bytes(4, "big") + bytes([algorithm]) + bytes([len(OID_P256)])
            + OID_P256 + encode_mpi(point) + (b"\x03\x01\x08\x07" if algorithm == ECDH else b""))
    return SecretKey(PublicKey.parse(body), private)


@functools.cache
def rsa_holder() -> tuple[bytes, SecretKey, SecretKey]:
    """An RSA-2048 holder TSK: certify+sign+authenticate primary, storage-encryption subkey
    (made once)."""
    primary = _rsa_key(rsa.generate_private_key(65537, 2048))
    storage = _rsa_key(rsa.generate_private_key(65537, 2048))
    tsk = build_certificate(primary, "RSA fuzz <rsa@example.org>",
                            [(storage, sigmod.FLAG_ENCRYPT_STORAGE)], signed_at=T0,
                            primary_flags=sigmod.FLAG_CERTIFY | sigmod.FLAG_SIGN
                            | sigmod.FLAG_AUTHENTICATE, secret=True)
    return tsk, primary, storage


@functools.cache
def p256_holder() -> tuple[bytes, SecretKey, SecretKey]:
    """A NIST P-256 holder TSK: ECDSA certify primary, ECDSA signing and authentication and
    ECDH storage subkeys."""
    primary = _p256_key(ec.generate_private_key(ec.SECP256R1()), ECDSA)
    signing = _p256_key(ec.generate_private_key(ec.SECP256R1()), ECDSA)
    auth = _p256_key(ec.generate_private_key(ec.SECP256R1()), ECDSA)
    storage = _p256_key(ec.generate_private_key(ec.SECP256R1()), ECDH)
    tsk = build_certificate(primary, "P256 fuzz <p256@example.org>",
                            [(signing, sigmod.FLAG_SIGN), (storage, sigmod.FLAG_ENCRYPT_STORAGE),
                             (auth, sigmod.FLAG_AUTHENTICATE)],
                            signed_at=T0, secret=True)
    return tsk, signing, storage


def _public(tsk: bytes) -> bytes:
    return b"".join(c.public().serialize() for c in load_certificates(tsk))


def _tsks() -> list[bytes]:
    return [ALICE_TSK, BOB_TSK, rsa_holder()[0], p256_holder()[0]]


def _publics() -> list[bytes]:
    return [_public(t) for t in _tsks()] + [QUORUM_CERT]


# --- armor and packet framing -----------------------------------------------------------------

ARMORED = [(CAUTION_V0 / name).read_text() for name in ("alice.private.asc", "pre-import.asc")]
ARMOR_HEADERS = ("-----BEGIN PGP MESSAGE-----\nVersion: x\nComment: y\n\n"
                 + ARMORED[1].split("\n\n", 1)[1])


@fuzz(deadline_ms=1000, scale=2)
@given(st.one_of(
    st.sampled_from(ARMORED + [ARMOR_HEADERS]).flatmap(
        lambda text: text_mutated(text, alphabet="=-+/ABCGINPQXZabcz019:\n")),
    st.text(max_size=300),
    st.binary(max_size=300),
    st.lists(st.sampled_from(["-----BEGIN PGP MESSAGE-----", "-----END PGP MESSAGE-----",
                              "-----BEGIN PGP SIGNATURE-----", "=", "=AAAA", "=abcd", "A: b",
                              "", "AAAA", "wcBMA", "\r", "====", "é"]),
             max_size=12).map("\n".join),
))
def test_fuzz_armor_raises_only_armor_errors(text: str | bytes) -> None:
    blocks = only((ArmorError,), armor.dearmor_all, text)
    only((ArmorError,), armor.dearmor_one, text, "MESSAGE")
    raw = text if isinstance(text, bytes) else text.encode("utf-8")
    only((ArmorError,), armor.openpgp_binary, raw)
    for block in blocks or []:  # what came out re-armors to something that reads back
        assert armor.dearmor_one(armor.armor(block.kind, block.data)) == block.data


@fuzz(deadline_ms=1000, scale=2)
@given(st.one_of(st.deferred(lambda: mutated_from(_tsks() + [QUORUM_CERT])),
                 st.binary(max_size=300),
                 st.lists(st.tuples(st.integers(0, 63), st.binary(max_size=40), st.integers(0, 5)),
                          max_size=5).map(lambda ps: b"".join(
                              encode_packet_as(tag, body, style) for tag, body, style in ps))))
def test_fuzz_packet_framing_raises_only_packet_errors(data: bytes) -> None:
    found = only((PacketError,), packets.parse_packets, data)
    for packet in found or []:
        assert 0 < packet.tag < 64


# --- certificates and what is asked of them ---------------------------------------------------


def _question(certs: list[Certificate]) -> None:
    """Everything the CLI, Keymaker and locksmithd ask of a loaded certificate."""
    for cert in certs:
        for at in (T0 - 1, NOW, 2**32 - 1):
            validity.eligibility(cert, at)
            validity.live_keys(cert, at)
            validity.primary_expiration(cert, at)
            validity.valid_user_ids(cert, at)
            validity.storage_encryption_keys(cert, at)
        validity.structural_roles(cert)
        validity.signing_candidates(cert, NOW, NOW)
        validity.decryption_keys(cert)
        for key in cert.keys():
            validity.revoked_ever(cert, key)
            validity.key_material_id(key)
        cert.armored()
        assert cert.public() == load_certificates(cert.public().serialize())[0]
    validity.find_holder_conflict(certs, NOW)


def _certificates(data: bytes | str) -> None:
    certs = only((OpenPGPError,), load_certificates, data)
    if certs is None:
        outcome("refused")
        return
    outcome(f"{len(certs)} certificates")
    _question(certs)
    only((OpenPGPError,), normalise_keyring, data, NOW)


@fuzz(deadline_ms=3000, scale=3)
@given(st.deferred(lambda: st.sampled_from(_publics()).flatmap(
    lambda cert: openpgp_any(cert, "PUBLIC KEY BLOCK"))))
def test_fuzz_mutated_certificates_raise_only_openpgp_errors(data: bytes) -> None:
    _certificates(data)


@fuzz(deadline_ms=3000, scale=2)
@given(st.deferred(lambda: st.lists(st.sampled_from(_publics()), min_size=2, max_size=4).map(
    b"".join).flatmap(packet_mutated)))
def test_fuzz_mutated_keyrings_raise_only_openpgp_errors(data: bytes) -> None:
    """Several certificates in one stream: packets moved between them, duplicated keys."""
    _certificates(data)


# --- secret keys ------------------------------------------------------------------------------


def _unlock_all(ring: PrivateKeyring, passphrase: str | None = None) -> None:
    for stored in ring.keys:
        key = only((OpenPGPError,), stored.unlock, passphrase)
        outcome("unlocked" if key is not None else "refused to unlock")


@fuzz(deadline_ms=3000, scale=2)
@given(st.deferred(lambda: st.sampled_from(_tsks()).flatmap(
    lambda tsk: openpgp_any(tsk, "PRIVATE KEY BLOCK"))))
def test_fuzz_mutated_secret_keys_raise_only_openpgp_errors(data: bytes) -> None:
    ring = only((OpenPGPError,), load_secret_keys, data)
    if ring is not None:
        _unlock_all(ring)


def _rsa_secret_packet(p: int, q: int, d: int, e: int = 65537) -> bytes:
    """An unprotected RSA secret key packet whose (n = p*q, e) public part is consistent with
    the claimed p and q: the cheap checks pass, so `cryptography` gets the numbers."""
    n = p * q
    public = (b"\x04" + T0.to_bytes(4, "big") + bytes([RSA_ENCRYPT_SIGN]) + encode_mpi(n)
              + encode_mpi(e))
    mpis = encode_mpi(d) + encode_mpi(p) + encode_mpi(q) + encode_mpi(1)
    checksum = (sum(mpis) & 0xFFFF).to_bytes(2, "big")
    return encode_packet(packets.SECRET_KEY, public + b"\x00" + mpis + checksum)


@fuzz(deadline_ms=2000)
@given(st.integers(1, 2**2048), st.integers(1, 2**2048), st.integers(0, 2**2048),
       st.sampled_from([3, 65537, 2**32 - 1]))
def test_fuzz_inconsistent_rsa_secret_numbers_raise_only_openpgp_errors(p: int, q: int, d: int,
                                                                       e: int) -> None:
    ring = load_secret_keys(_rsa_secret_packet(p, q, d, e))
    _unlock_all(ring)


@pytest.mark.parametrize("p, q", [(1, 1), (1, 3 * 5 * 7 * 11), (2**61 - 1, 1)])
def test_fuzz_rsa_secret_key_with_a_unit_prime_raises_only_openpgp_errors(p: int, q: int) -> None:
    _unlock_all(load_secret_keys(_rsa_secret_packet(p, q, d=0)))


@functools.cache
def _protected_alice() -> bytes:
    """Alice's TSK protected with passphrase "pw" by PGPy (iterated+salted S2K, AES-256)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgpy
        from pgpy.constants import HashAlgorithm, SymmetricKeyAlgorithm
        key, _ = pgpy.PGPKey.from_blob(armor.armor("PRIVATE KEY BLOCK", ALICE_TSK))
        key.protect("pw", SymmetricKeyAlgorithm.AES256, HashAlgorithm.SHA256)
        return armor.dearmor_one(str(key))


@fuzz(deadline_ms=8000, scale=0.05)
@given(st.deferred(lambda: packet_mutated(_protected_alice(), max_edits=1)))
def test_fuzz_mutated_protected_secret_keys_raise_only_openpgp_errors(data: bytes) -> None:
    """Passphrase-protected keys go through PGPy, which raises assorted types on input it
    cannot parse; `unlock` must turn every one into a `SecretKeyError`. Few examples: each
    unlock runs PGPy's S2K (about 0.2 s per key)."""
    ring = only((OpenPGPError,), load_secret_keys, data)
    if ring is not None:
        _unlock_all(ring, "pw")


# --- encrypted messages -----------------------------------------------------------------------


def _decrypt(data: bytes, keys: list[SecretKey] | None = None) -> None:
    result = only((OpenPGPError,), decrypt, data, keys if keys is not None else [QUORUM_KEY])
    outcome("decrypted" if result is not None else "refused")
    if result is not None:  # signatures are parsed on access: their own errors only
        only((OpenPGPError,), lambda: result.signatures)
        only((OpenPGPError,), lambda: result.one_pass_signatures)


@fuzz(deadline_ms=2000, scale=2)
@given(openpgp_any(armor.dearmor_one(PRE_IMPORT), "MESSAGE"))
def test_fuzz_mutated_messages_raise_only_openpgp_errors(data: bytes) -> None:
    _decrypt(data)


LITERAL_INNER = literal(b"encrypted before V0 import")
COMPRESSED_INNER = [encode_packet(COMPRESSED, bytes([algorithm]) + packed)
                    for algorithm, packed in ((0, LITERAL_INNER),
                                              (1, zlib.compress(LITERAL_INNER)[2:-4]),
                                              (2, zlib.compress(LITERAL_INNER)),
                                              (3, bz2.compress(LITERAL_INNER)))]


@fuzz(deadline_ms=2000, scale=3)
@given(st.one_of(
    packet_mutated(LITERAL_INNER + LITERAL_INNER),
    st.sampled_from(COMPRESSED_INNER).flatmap(packet_mutated),
    st.sampled_from(COMPRESSED_INNER).flatmap(mutated),
    st.binary(max_size=200),
))
def test_fuzz_inner_packets_behind_a_valid_mdc_raise_only_openpgp_errors(inner: bytes) -> None:
    """Decrypted content an attacker controls completely (anyone can encrypt to the quorum
    certificate): literal, compressed (ZIP, ZLIB, BZip2, stored), signatures, junk."""
    _decrypt(encrypt_raw(inner, QUORUM_KEY.public))


@fuzz(deadline_ms=3000, scale=2)
@given(st.deferred(lambda: st.sampled_from([
    (encrypt_raw(LITERAL_INNER, rsa_holder()[2].public), "rsa"),
    (encrypt_raw(LITERAL_INNER, p256_holder()[2].public), "p256"),
]).flatmap(lambda pair: packet_mutated(pair[0]).map(lambda data: (data, pair[1])))))
def test_fuzz_rsa_and_nist_session_keys_raise_only_openpgp_errors(case: tuple[bytes, str]) -> None:
    """PKESK fields for RSA (an MPI the size of the modulus) and NIST ECDH (an uncompressed
    point, a wrapped key): off-curve points, oversized values, cut wrapping."""
    data, which = case
    key = rsa_holder()[2] if which == "rsa" else p256_holder()[2]
    _decrypt(data, [key])


def test_fuzz_decompression_bombs_stop_at_the_limit_in_bounded_memory() -> None:
    """64 MiB of zeros compressed to a few kilobytes, in each algorithm: refused once the
    1 MiB limit is passed, without ever holding the 64 MiB."""
    big = literal(bytes(64 << 20))
    for algorithm, packed in ((1, zlib.compress(big, 9)[2:-4]), (2, zlib.compress(big, 9)),
                              (3, bz2.compress(big, 9))):
        message = encrypt_raw(encode_packet(COMPRESSED, bytes([algorithm]) + packed),
                              QUORUM_KEY.public)
        refused = bounded(_refuses_bomb, message, seconds=5.0, peak_bytes=16 * MAX_SIZE)
        assert refused, f"compression {algorithm}: the bomb was not refused"


def _refuses_bomb(message: bytes) -> bool:
    try:
        decrypt(message, [QUORUM_KEY])
    except DecompressionLimit:
        return True
    return False


# --- signatures -------------------------------------------------------------------------------

SIGNED = b'{"encrypted_payload":"00","public_key":[1]}'


@functools.cache
def _signatures() -> list[tuple[bytes, PublicKey]]:
    """Detached text signatures by each signing algorithm, with the key that verifies them."""
    alice = load_secret_keys(ALICE_TSK).keys[1].unlock()
    out = []
    for key in (alice, rsa_holder()[1], p256_holder()[1]):
        armored = sign_detached_text(key, SIGNED, NOW)
        out.append((armor.dearmor_one(armored), key.public))
    return out


def _read_signature(body: bytes) -> None:
    sig = only((OpenPGPError,), Signature.parse, body)
    if sig is None:
        return
    for accessor in ("created", "signature_expiration", "key_expiration", "key_flags",
                     "issuer_key_id", "issuer_fingerprint", "embedded_signatures",
                     "revocation_reason", "primary_user_id", "notations", "features",
                     "preferred_symmetric", "preferred_hash", "preferred_compression",
                     "exportable", "mpis"):
        only((OpenPGPError,), getattr, sig, accessor)
    only((OpenPGPError,), sig.unknown_critical)
    sig.serialize()


@fuzz(deadline_ms=1000, scale=3)
@given(st.one_of(
    st.deferred(lambda: mutated_from([packets.parse_packets(s)[0].body
                                      for s, _ in _signatures()])),
    st.binary(max_size=200),
))
def test_fuzz_signature_packets_raise_only_openpgp_errors(body: bytes) -> None:
    _read_signature(body)
    only((OpenPGPError,), OnePassSignature.parse, body)


@fuzz(deadline_ms=2000, scale=3)
@given(st.deferred(lambda: st.sampled_from([s for s, _ in _signatures()]).flatmap(
    lambda sig: st.one_of(packet_mutated(sig), mutated(sig)))))
def test_fuzz_mutated_signatures_verify_or_raise_only_openpgp_errors(data: bytes) -> None:
    """Every parsed packet is checked against every signing key: wrong algorithm, wrong hash,
    MPIs too long or cut, a digest prefix that happens to match."""
    try:
        stream = packets.parse_packets(data)
    except PacketError:
        return
    keys = {k.fingerprint: k for _, k in _signatures()}.values()
    for packet in stream:
        sig = only((OpenPGPError,), Signature.parse, packet.body)
        if sig is not None:
            for key in keys:
                only((OpenPGPError,), sigmod.verify, key, sig, sigmod.document(SIGNED))


@functools.cache
def _holder_certs() -> list[Certificate]:
    return [c.public() for t in _tsks() for c in load_certificates(t)]


@fuzz(deadline_ms=3000, scale=3)
@given(st.deferred(lambda: st.one_of(
    st.sampled_from([armor.armor("SIGNATURE", s) for s, _ in _signatures()]).flatmap(
        lambda text: st.one_of(armored_packet_mutated(text, "SIGNATURE"),
                               text_mutated(text, alphabet="=-+/AZaz09\n"))),
    st.text(max_size=200),
)), st.sampled_from([NOW, 0, 2**32 - 1, 2**63]))
def test_fuzz_holder_signatures_raise_only_holder_signature_errors(signature: str,
                                                                   now: int) -> None:
    """The enclave's reading of message 3's signature (protocol.md §6–§7)."""
    holders: list[Certificate | None] = [*_holder_certs(), None]
    only((HolderSignatureError,), parse_holder_signature, signature)
    match = only((HolderSignatureError,), verify_holder_signature, signature, SIGNED, holders,
                 now)
    outcome("matched a holder" if match is not None else "rejected")
