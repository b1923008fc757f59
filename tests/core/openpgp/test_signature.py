"""v4 signatures: hashing rules, create/verify for every supported key type, subpackets, parsing."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, utils
from hypothesis import given, settings
from hypothesis import strategies as st

from locksmith.core.openpgp import signature as sig
from locksmith.core.openpgp.certs import Certificate, load_certificates
from locksmith.core.openpgp.errors import OpenPGPError
from locksmith.core.openpgp.keys import (
    ECDSA, OID_P256, OID_P384, OID_P521, PublicKey, SecretKey, encode_mpi,
)
from locksmith.core.openpgp.signature import Subpacket
from tests.core.openpgp.openpgp_testkit import parse_signatures, self_signature_checks

NOW = 1_700_000_000


def _ed25519_key(seed: bytes = b"\x11" * 32) -> SecretKey:
    private = ed25519.Ed25519PrivateKey.from_private_bytes(seed)
    return SecretKey(PublicKey.ed25519(private.public_key().public_bytes_raw(), 1), private)


def _ecdsa_key(curve: ec.EllipticCurve, oid: bytes) -> SecretKey:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    private = ec.generate_private_key(curve)
    point = private.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    body = b"\x04" + (1).to_bytes(4, "big") + bytes([ECDSA, len(oid)]) + oid + encode_mpi(point)
    return SecretKey(PublicKey.parse(body), private)


def _rsa_key(private: rsa.RSAPrivateKey) -> SecretKey:
    numbers = private.public_key().public_numbers()
    body = b"\x04" + (1).to_bytes(4, "big") + b"\x01" + encode_mpi(numbers.n) + encode_mpi(numbers.e)
    return SecretKey(PublicKey.parse(body), private)


@pytest.fixture(scope="module")
def rsa_key() -> SecretKey:
    return _rsa_key(rsa.generate_private_key(65537, 2048))


@pytest.fixture(scope="module")
def all_keys(rsa_key: SecretKey) -> list[SecretKey]:
    return [_ed25519_key(), _ecdsa_key(ec.SECP256R1(), OID_P256),
            _ecdsa_key(ec.SECP384R1(), OID_P384), _ecdsa_key(ec.SECP521R1(), OID_P521), rsa_key]


# --- the fixture holders ---------------------------------------------------------------------


def _fixture(caution_v0: Path, name: str) -> Certificate:
    return load_certificates((caution_v0 / f"{name}.private.asc").read_bytes())[0]


@pytest.mark.parametrize("name", ["alice", "bob"])
def test_every_self_signature_and_back_signature_of_the_fixture_keys_verifies(caution_v0, name):
    checks = list(self_signature_checks(_fixture(caution_v0, name)))
    types = sorted(s.sig_type for _, s, _ in checks)
    # direct-key, positive certification, three subkey bindings, two embedded back-signatures
    assert types == [0x13, 0x18, 0x18, 0x18, 0x19, 0x19, 0x1F]
    for signer, signature, target in checks:
        sig.verify(signer, signature, target)


def test_fixture_signatures_serialize_back_to_their_wire_bytes(caution_v0):
    cert = _fixture(caution_v0, "alice")
    for _, signature, _ in self_signature_checks(cert):
        assert sig.Signature.parse(signature.serialize()) == signature
        assert sig.Signature.parse(signature.serialize()).serialize() == signature.serialize()


def test_fixture_subpacket_accessors_read_what_sequoia_wrote(caution_v0):
    cert = _fixture(caution_v0, "alice")
    (certification,) = parse_signatures(cert.user_ids[0].signatures)
    assert certification.created == 1_700_000_000
    assert certification.key_flags == sig.FLAG_CERTIFY
    assert certification.issuer_fingerprint == cert.primary.fingerprint
    assert certification.issuer_key_id == cert.primary.key_id
    (salt,) = certification.notations
    assert salt.name == "salt@notations.sequoia-pgp.org" and not salt.critical
    assert certification.unknown_critical() == ()
    flags = sorted(parse_signatures(s.signatures)[0].key_flags or 0 for s in cert.subkeys)
    assert flags == [0x02, 0x08, 0x20]


def test_a_flipped_byte_anywhere_that_is_signed_makes_verification_fail(caution_v0):
    cert = _fixture(caution_v0, "bob")
    primary = cert.primary
    uid = cert.user_ids[0].packet.body
    (certification,) = parse_signatures(cert.user_ids[0].signatures)
    bad_uid = bytes([uid[0] ^ 1]) + uid[1:]
    with pytest.raises(sig.BadSignature):
        sig.verify(primary, certification, sig.certification(primary, bad_uid))
    body = bytearray(certification.serialize())
    body[-5] ^= 0x01  # inside the s MPI
    with pytest.raises(sig.BadSignature):
        sig.verify(primary, sig.Signature.parse(bytes(body)), sig.certification(primary, uid))
    body = bytearray(certification.serialize())
    body[8] ^= 0x01  # inside the hashed creation-time subpacket
    with pytest.raises(sig.BadSignature):
        sig.verify(primary, sig.Signature.parse(bytes(body)), sig.certification(primary, uid))


def test_a_signature_checked_with_the_wrong_key_does_not_verify(caution_v0):
    alice, bob = _fixture(caution_v0, "alice"), _fixture(caution_v0, "bob")
    uid = alice.user_ids[0].packet.body
    (certification,) = parse_signatures(alice.user_ids[0].signatures)
    with pytest.raises(sig.BadSignature):
        sig.verify(bob.primary, certification, sig.certification(alice.primary, uid))


# --- creating --------------------------------------------------------------------------------


@pytest.mark.parametrize("hash_algorithm", [sig.SHA1, sig.SHA224, sig.SHA256, sig.SHA384, sig.SHA512])
def test_created_signatures_verify_for_every_key_type_and_hash(all_keys, hash_algorithm):
    target = sig.document(b"the document")
    for key in all_keys:
        made = sig.create(key, target, sig.BINARY, created=NOW, hash_algorithm=hash_algorithm)
        sig.verify(key.public, sig.Signature.parse(made.serialize()), target)
        with pytest.raises(sig.BadSignature):
            sig.verify(key.public, made, sig.document(b"another document"))


def test_created_signatures_carry_time_and_issuer_and_the_callers_subpackets():
    key = _ed25519_key()
    made = sig.create(key, sig.document(b"x"), sig.BINARY, created=NOW,
                      hashed=[Subpacket.notation("a@example.org", b"v", human_readable=True)])
    assert made.created == NOW
    assert made.hash_algorithm == sig.SHA512
    assert made.issuer_fingerprint == key.public.fingerprint
    assert [sp.type for sp in made.hashed] == [sig.CREATION_TIME, sig.NOTATION, sig.ISSUER_FINGERPRINT]
    assert [sp.type for sp in made.unhashed] == [sig.ISSUER_KEY_ID]
    assert made.issuer_key_id == key.public.key_id
    (notation,) = made.notations
    assert (notation.name, notation.value, notation.human_readable) == ("a@example.org", b"v", True)


def test_prepare_then_finish_lets_an_external_signer_sign_the_digest(all_keys):
    target = sig.direct_key(all_keys[0].public)
    for key in all_keys:
        prepared = sig.prepare(key.public, target, sig.DIRECT_KEY, created=NOW)
        priv = key.private
        mpis: list[int | bytes]
        if isinstance(priv, ed25519.Ed25519PrivateKey):  # a card returns R ‖ S
            raw = priv.sign(prepared.digest)
            mpis = [raw[:32], raw[32:]]
        elif isinstance(priv, ec.EllipticCurvePrivateKey):
            der = priv.sign(prepared.digest, ec.ECDSA(utils.Prehashed(hashes.SHA512())))
            mpis = list(utils.decode_dss_signature(der))
        else:
            assert isinstance(priv, rsa.RSAPrivateKey)
            mpis = [priv.sign(prepared.digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA512()))]
        made = prepared.finish(mpis)
        assert made.left16 == prepared.digest[:2]
        sig.verify(key.public, made, target)


def test_finish_refuses_a_signature_value_that_does_not_verify():
    key = _ed25519_key()
    prepared = sig.prepare(key.public, sig.document(b"x"), sig.BINARY, created=NOW)
    with pytest.raises(sig.BadSignature):
        prepared.finish([b"\x01" * 32, b"\x02" * 32])


def test_eddsa_values_with_leading_zero_bytes_are_written_short_and_verified_left_padded():
    key = _ed25519_key(b"\x22" * 32)
    for i in range(4000):
        made = sig.create(key, sig.document(i.to_bytes(4, "big")), sig.BINARY, created=NOW)
        r, s = made.mpis
        if len(r) < 32 or len(s) < 32:
            break
    else:  # pragma: no cover - probability about 2**-23
        pytest.fail("no short EdDSA value found")
    sig.verify(key.public, sig.Signature.parse(made.serialize()), sig.document(i.to_bytes(4, "big")))


def test_a_wrong_digest_prefix_is_rejected_before_any_public_key_operation():
    key = _ed25519_key()
    made = sig.create(key, sig.document(b"x"), sig.BINARY, created=NOW)
    tampered = sig.Signature.parse(made.serialize()[: -len(made.material) - 2]
                                   + bytes([made.left16[0] ^ 0xFF, made.left16[1]]) + made.material)
    with pytest.raises(sig.BadSignature, match="digest prefix"):
        sig.verify(key.public, tampered, sig.document(b"x"))


def test_a_document_signature_cannot_pass_as_a_key_binding():
    key = _ed25519_key()
    target = sig.subkey_binding(key.public, key.public)
    made = sig.create(key, sig.document(target.data), sig.BINARY, created=NOW)
    with pytest.raises(sig.BadSignature, match="cannot cover a subkey"):
        sig.verify(key.public, made, target)
    with pytest.raises(sig.BadSignature):
        sig.create(key, target, sig.POSITIVE_CERTIFICATION, created=NOW)


def test_text_signatures_hash_line_ends_as_crlf():
    key = _ed25519_key()
    made = sig.create(key, sig.document(b"one\ntwo\r\nthree\n"), sig.TEXT, created=NOW)
    sig.verify(key.public, made, sig.document(b"one\r\ntwo\r\nthree\r\n"))
    sig.verify(key.public, made, sig.document(b"one\ntwo\nthree\n"))
    with pytest.raises(sig.BadSignature):
        sig.verify(key.public, made, sig.document(b"one two three\n"))
    assert sig.canonical_text(b"a\rb\n") == b"a\rb\r\n"


def test_md5_and_ripemd160_signatures_are_unsupported():
    key = _ed25519_key()
    for algorithm in (sig.MD5, sig.RIPEMD160):
        with pytest.raises(sig.UnsupportedSignature, match="unsupported hash"):
            sig.create(key, sig.document(b"x"), sig.BINARY, created=NOW, hash_algorithm=algorithm)
    assert sig.hash_algorithm_name(sig.RIPEMD160) == "RIPEMD-160"


def test_a_key_that_cannot_sign_is_refused():
    from cryptography.hazmat.primitives.asymmetric import x25519

    private = x25519.X25519PrivateKey.generate()
    key = SecretKey(PublicKey.cv25519(private.public_key().public_bytes_raw(), 1), private)
    with pytest.raises(sig.UnsupportedSignature):
        sig.create(key, sig.document(b"x"), sig.BINARY, created=NOW)


# --- packets and subpackets ------------------------------------------------------------------


def test_subpacket_accessors_read_what_the_builders_write():
    key = _ed25519_key()
    made = sig.create(key, sig.direct_key(key.public), sig.KEY_REVOCATION, created=NOW, hashed=[
        Subpacket.key_expiration(99), Subpacket.signature_expiration(7),
        Subpacket.key_flags(0x0C | 0x0400), Subpacket.primary_user_id(),
        Subpacket.preferred_symmetric(9, 7), Subpacket.preferred_hash(10, 8),
        Subpacket.preferred_compression(0), Subpacket.features(sig.FEATURE_MDC),
        Subpacket.revocation_reason(sig.REASON_RETIRED, "gone"),
        Subpacket.notation("organization-id@caution.co", b"o", critical=True),
        Subpacket(100, b"\x00", critical=True),
    ])
    assert made.key_expiration == 99 and made.signature_expiration == 7
    assert made.key_flags == 0x040C
    assert made.primary_user_id
    assert made.preferred_symmetric == (9, 7) and made.preferred_hash == (10, 8)
    assert made.preferred_compression == (0,) and made.features == b"\x01"
    assert made.revocation_reason == (sig.REASON_RETIRED, "gone")
    assert made.exportable
    assert made.notations[0].critical
    assert made.unknown_critical() == ("critical notation 'organization-id@caution.co'",
                                       "critical subpacket 100")
    assert made.unknown_critical(known_notations=frozenset({"organization-id@caution.co"})) == (
        "critical subpacket 100",)
    sig.verify(key.public, made, sig.direct_key(key.public))


def test_absent_or_zero_expirations_mean_never():
    key = _ed25519_key()
    made = sig.create(key, sig.document(b""), sig.BINARY, created=NOW,
                      hashed=[Subpacket.key_expiration(0)])
    assert made.key_expiration is None and made.signature_expiration is None
    assert made.key_flags is None and made.revocation_reason is None


def test_accessors_ignore_unhashed_subpackets_except_issuer_and_embedded_signatures():
    key = _ed25519_key()
    back = sig.create(key, sig.document(b"b"), sig.BINARY, created=NOW)
    made = sig.create(key, sig.document(b""), sig.BINARY, created=NOW, unhashed=[
        Subpacket.key_flags(0x01), Subpacket.embedded_signature(back.serialize())])
    assert made.key_flags is None
    assert made.embedded_signatures == (back,)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 127), st.binary(max_size=9000), st.booleans()),
                max_size=4))
def test_subpacket_areas_round_trip(items):
    subpackets = tuple(Subpacket(t, b, c) for t, b, c in items)
    area = sig.serialize_area(list(subpackets)) if sum(len(b) for _, b, _ in items) < 60000 else None
    if area is not None:
        assert sig.parse_area(area) == subpackets


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_parsing_arbitrary_bytes_raises_only_openpgp_errors(data):
    for parse in (sig.Signature.parse, sig.OnePassSignature.parse):
        try:
            parsed = parse(data)
        except OpenPGPError:
            continue
        assert parsed.serialize() == data


def test_one_pass_signature_round_trips_and_names_its_key():
    key = _ed25519_key()
    ops = sig.OnePassSignature.for_key(key.public)
    assert ops.serialize() == bytes([3, 0x00, 10, 22]) + key.public.key_id + b"\x01"
    assert sig.OnePassSignature.parse(ops.serialize()) == ops
    with pytest.raises(sig.UnsupportedSignature):
        sig.OnePassSignature.parse(b"\x06" + ops.serialize()[1:])


def test_v3_and_v6_signatures_are_unsupported_not_malformed():
    for version in (3, 5, 6):
        with pytest.raises(sig.UnsupportedSignature, match=f"version {version}"):
            sig.Signature.parse(bytes([version]) + b"\x00" * 40)
