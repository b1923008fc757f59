"""attestation.md §3: the real AWS documents, every refusal reason, the §3 pitfalls, and fuzzing."""

from __future__ import annotations

import re
import time
from datetime import timedelta
from typing import Any

import cbor2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from locksmith.core.attestation import cose
from locksmith.core.attestation import verify as att
from locksmith.core.attestation.pcr_policy import PcrPolicy, PcrSet
from locksmith.core.attestation.verify import (
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
from tests.core.attestation_factory import (
    PCRS,
    T0,
    T0_MS,
    Doc,
    Pki,
    document,
    encode_map,
    fields,
    key,
    make_cert,
    nitro_fixture,
    resign,
)

GOOD = ["debug-2024-09-09.b64", "debug-2024-09-17.b64"]
BAD_SIGNATURE = "bad-signature-2024-07-23.b64"
ALL = GOOD + [BAD_SIGNATURE]
EXPECTED = {  # ../shared/fixtures/nitro/README.md
    "debug-2024-09-09.b64": (1725911352400, "i-0bbf1bfe232b8c2ce-enc0191ba35c9d1b77a"),
    "debug-2024-09-17.b64": (1726606030288, "i-0bbf1bfe232b8c2ce-enc019201afdaee4f17"),
}
P384_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF581A0DB248B0A77AECEC196ACCC52973
ZERO = bytes(48)


@pytest.fixture(scope="module")
def pki() -> Pki:
    return Pki.default()


def now_ms() -> int:
    return int(time.time() * 1000)


def payload_of(doc: bytes) -> dict[str, Any]:
    value = cbor2.loads(cose.decode_sign1(doc).payload)
    assert isinstance(value, dict)
    return value


# --------------------------------------------------------------------------- real documents


@pytest.mark.parametrize("name", GOOD)
def test_real_debug_document_verifies_at_its_own_timestamp_when_debug_is_allowed(name: str) -> None:
    result = att.verify(nitro_fixture(name), allow_debug=True)
    timestamp, module_id = EXPECTED[name]
    assert (result.timestamp, result.module_id, result.digest) == (timestamp, module_id, "SHA384")
    assert [result.pcrs[i] for i in (0, 1, 2)] == [ZERO] * 3 and result.is_debug
    assert result.pcrs[3].hex().startswith("671ca1e328f75015")
    assert result.pcrs[4].hex().startswith("d352cfa31b8dc5f4")
    assert sorted(result.pcrs) == list(range(16))
    assert result.nonce == bytes(19) + b"\x01"
    assert result.public_key == b"dummy"
    assert result.user_data is not None and len(result.user_data) == 68
    assert result.certificate.subject.rfc4514_string().startswith(f"CN={module_id}.")


@pytest.mark.parametrize("name", GOOD)
def test_real_document_is_refused_as_debug_mode_without_allow_debug(name: str) -> None:
    with pytest.raises(DebugEnclaveError, match=r"^debug-mode enclave \(all-zero PCRs\) refused$"):
        att.verify(nitro_fixture(name))


def test_bad_signature_fixture_is_refused_with_signature_reason() -> None:
    with pytest.raises(SignatureInvalidError, match="^attestation signature is invalid$"):
        att.verify(nitro_fixture(BAD_SIGNATURE), allow_debug=True)


@pytest.mark.parametrize("name", ALL)
def test_real_document_verified_now_is_refused_because_a_certificate_expired(name: str) -> None:
    with pytest.raises(CertificateValidityError, match="is not valid at"):
        att.verify(nitro_fixture(name), now_ms=now_ms(), allow_debug=True)


@pytest.mark.parametrize("name", GOOD)
def test_real_document_is_refused_against_a_different_root(name: str, pki: Pki) -> None:
    with pytest.raises(CertificateChainError,
                       match="^certificate chain does not lead to the trusted root$"):
        att.verify(nitro_fixture(name), trust_root=pki.root.anchor, allow_debug=True)


@pytest.mark.parametrize("name", GOOD)
def test_real_document_with_altered_signature_is_refused_with_signature_reason(name: str) -> None:
    raw = bytearray(nitro_fixture(name))
    raw[-1] ^= 0x01  # the signature is the last 96 bytes
    with pytest.raises(SignatureInvalidError):
        att.verify(bytes(raw), allow_debug=True)


@pytest.mark.parametrize("index", [0, 3, 4, 15])
def test_real_document_with_different_expected_pcr_is_refused_with_pcr_reason(index: int) -> None:
    doc = nitro_fixture(GOOD[0])
    actual = att.verify(doc, allow_debug=True).pcrs[index]
    expected = bytes([0xAB]) * 48
    with pytest.raises(PcrMismatchError) as info:
        att.verify(doc, allow_debug=True, pcrs={index: expected})
    assert str(info.value) == f"PCR{index} mismatch (expected {expected.hex()}, got {actual.hex()})"


def test_real_document_passes_with_its_own_pcrs_and_nonce() -> None:
    doc = nitro_fixture(GOOD[0])
    pcrs = dict(att.verify(doc, allow_debug=True).pcrs)
    att.verify(doc, allow_debug=True, pcrs=pcrs, nonce=bytes(19) + b"\x01")


def test_expected_pcr_absent_from_document_is_reported_missing() -> None:
    with pytest.raises(PcrMissingError, match="^PCR20 missing$"):
        att.verify(nitro_fixture(GOOD[0]), allow_debug=True, pcrs={20: ZERO})


def test_real_document_with_wrong_nonce_is_refused() -> None:
    with pytest.raises(NonceMismatchError, match="^nonce did not match$"):
        att.verify(nitro_fixture(GOOD[0]), allow_debug=True, nonce=bytes(20))


def test_real_document_user_data_checks_exact_value_and_length() -> None:
    doc = nitro_fixture(GOOD[0])
    user_data = att.verify(doc, allow_debug=True).user_data
    att.verify(doc, allow_debug=True, user_data=user_data, user_data_length=68)
    with pytest.raises(UserDataMismatchError, match="^user_data did not match$"):
        att.verify(doc, allow_debug=True, user_data=b"other")
    with pytest.raises(UserDataLengthError, match="^user_data is 68 bytes, expected 32$"):
        att.verify(doc, allow_debug=True, user_data_length=32)


def test_leaf_expiry_reason_names_the_leaf_and_gives_rfc3339_times() -> None:
    doc = nitro_fixture(GOOD[0])
    after_leaf = 1725922152000 + 1000  # leaf notAfter 2024-09-09T22:49:12Z, plus one second
    with pytest.raises(CertificateValidityError) as info:
        att.verify(doc, allow_debug=True, at_ms=after_leaf)
    assert str(info.value) == (
        "certificate i-0bbf1bfe232b8c2ce-enc0191ba35c9d1b77a.us-east-1.aws is not valid at "
        "2024-09-09T22:49:13.000Z (valid 2024-09-09T19:49:09Z .. 2024-09-09T22:49:12Z)")
    att.verify(doc, allow_debug=True, at_ms=1725922152000)  # notAfter itself is still valid


def test_flipped_payload_bytes_are_refused_with_a_defined_reason() -> None:
    """Every third byte of the payload (~1500 documents; the fuzz test below adds random ones)."""
    doc = nitro_fixture(GOOD[0])
    sign1 = cose.decode_sign1(doc)
    start = doc.index(sign1.payload)
    reasons: set[type] = set()
    for offset in range(start, start + len(sign1.payload), 3):
        mutated = bytearray(doc)
        mutated[offset] ^= 0x20
        with pytest.raises(AttestationError) as info:
            att.verify(bytes(mutated), allow_debug=True)
        reasons.add(type(info.value))
    assert SignatureInvalidError in reasons and MalformedDocumentError in reasons


def test_packaged_aws_root_is_pinned_and_is_cabundle_0_of_every_real_document() -> None:
    root = att.aws_nitro_root()
    assert root.fingerprint == att.AWS_ROOT_SHA256
    assert root.fingerprint == "641a0321a3e244efe456463195d606317ed7cdcc3c1756e09893f3c68f79bb5b"
    assert root.certificate.subject.rfc4514_string() == "CN=aws.nitro-enclaves,OU=AWS,O=Amazon,C=US"
    assert root.certificate.not_valid_before_utc.isoformat() == "2019-10-28T13:28:05+00:00"
    assert root.certificate.not_valid_after_utc.isoformat() == "2049-10-28T14:28:05+00:00"
    for name in ALL:
        assert payload_of(nitro_fixture(name))["cabundle"][0] == root.der


# --------------------------------------------------------------------------- §3 pitfalls


def test_pitfall_raw_r_s_signature_is_converted_to_der_before_verifying(pki: Pki) -> None:
    payload = b"payload"
    raw = cose.sign_es384(pki.leaf.key, cose.ES384_PROTECTED, payload)
    assert len(raw) == 96
    assert cose.verify_es384(pki.leaf.key.public_key(), cose.ES384_PROTECTED, payload, raw)
    der = pki.leaf.key.sign(cose.sig_structure(cose.ES384_PROTECTED, payload),
                            ec.ECDSA(hashes.SHA384()))
    assert not cose.verify_es384(pki.leaf.key.public_key(), cose.ES384_PROTECTED, payload, der)


def test_pitfall_high_s_signature_of_a_real_document_is_accepted() -> None:
    doc = nitro_fixture("debug-2024-09-17.b64")
    s = int.from_bytes(cose.decode_sign1(doc).signature[48:], "big")
    assert s > P384_N // 2  # the fixture really is high-S
    att.verify(doc, allow_debug=True)


def test_pitfall_low_s_form_of_a_real_signature_is_also_accepted() -> None:
    doc = nitro_fixture("debug-2024-09-17.b64")
    sig = cose.decode_sign1(doc).signature
    flipped = sig[:48] + (P384_N - int.from_bytes(sig[48:], "big")).to_bytes(48, "big")
    att.verify(doc[:-96] + flipped, allow_debug=True)


def test_pitfall_aws_leaf_without_authority_key_identifier_is_accepted() -> None:
    doc = nitro_fixture(GOOD[0])
    leaf = x509.load_der_x509_certificate(payload_of(doc)["certificate"])
    with pytest.raises(x509.ExtensionNotFound):
        leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
    att.verify(doc, allow_debug=True)


@pytest.mark.parametrize("name", GOOD)
def test_pitfall_reversed_cabundle_breaks_the_chain(name: str) -> None:
    doc = nitro_fixture(name)
    payload = payload_of(doc)
    payload["cabundle"] = payload["cabundle"][::-1]
    mutated = resign(doc, cbor2.dumps(payload), key("irrelevant"))
    with pytest.raises(CertificateChainError):
        att.verify(mutated, allow_debug=True)


# --------------------------------------------------------------------------- structure (steps 1–3)


def verify_factory(doc: bytes, pki: Pki, **kwargs: Any) -> att.Attestation:
    return att.verify(doc, trust_root=pki.root.anchor, **kwargs)


@pytest.mark.parametrize("indefinite", [False, True])
@pytest.mark.parametrize("tagged", [False, True])
def test_definite_or_indefinite_payload_tagged_or_untagged_verifies(
        pki: Pki, indefinite: bool, tagged: bool) -> None:
    payload = encode_map(fields(pki), indefinite=indefinite)
    doc = Doc(payload, pki.leaf.key, tagged=tagged).build()
    result = verify_factory(doc, pki, pcrs=PCRS, nonce=b"nonce-0123456789",
                            user_data=b"\x11" * 32, user_data_length=32)
    assert result.timestamp == T0_MS and not result.is_debug


def test_signature_covers_payload_bytes_as_received_not_a_re_encoding(pki: Pki) -> None:
    indefinite = encode_map(fields(pki), indefinite=True)
    definite = encode_map(fields(pki))
    signature = cose.sign_es384(pki.leaf.key, cose.ES384_PROTECTED, definite)
    with pytest.raises(SignatureInvalidError):
        verify_factory(Doc(indefinite, pki.leaf.key, signature=signature).build(), pki)


def test_document_larger_than_64_kib_is_refused_before_parsing() -> None:
    with pytest.raises(MalformedDocumentError, match="65537 bytes"):
        att.verify(b"\x84" + bytes(65536))


@pytest.mark.parametrize("mutate, detail", [
    (lambda d: d.build() + b"\x00", "1 bytes after the COSE_Sign1"),
    (lambda d: b"\xd1" + d.build(), "unexpected CBOR tag 17"),
    (lambda d: b"\xd2\xd2" + d.build(), "unexpected CBOR tag 18"),
    (lambda d: Doc(d.payload, d.signer, extra_items=[b"\x00"]).build(), "5 items, expected 4"),
    (lambda d: d.build()[1:], "expected a COSE_Sign1 array|bytes after"),
    (lambda d: b"\xa0", "expected a COSE_Sign1 array"),
    (lambda d: Doc(d.payload, d.signer, unprotected=b"\x80").build(), "unprotected header"),
    (lambda d: Doc(d.payload, d.signer, unprotected=b"\xa2\x01\x01\x01\x02").build(),
     "Duplicate"),
    (lambda d: Doc(d.payload, d.signer, signature=bytes(95)).build(), "95 bytes, expected 96"),
    (lambda d: Doc(d.payload, d.signer, protected=b"\xa1\x01\x38\x22\x00").build(),
     "protected header: 1 bytes after"),
    (lambda d: Doc(d.payload, d.signer, protected=b"\xa2\x01\x38\x22\x01\x38\x22").build(),
     "protected header: .*Duplicate"),
    (lambda d: Doc(d.payload, d.signer, protected=b"\x80").build(), "protected header: expected a map"),
    (lambda d: Doc(d.payload, d.signer, protected=b"\xa0").build(), "no algorithm"),
    (lambda d: Doc(d.payload, d.signer, protected=b"\xa2\x01\x38\x22\x02\x80").build(), "crit"),
    (lambda d: Doc(d.payload + b"\x00", d.signer).build(), "payload: 1 bytes after"),
    (lambda d: Doc(b"\xc1\x00", d.signer).build(), "payload: unexpected CBOR tag 1"),
    (lambda d: Doc(b"\x80", d.signer).build(), "payload: expected a map"),
])
def test_structural_defect_is_refused_as_malformed(pki: Pki, mutate: Any, detail: str) -> None:
    base = Doc(encode_map(fields(pki)), pki.leaf.key)
    with pytest.raises(MalformedDocumentError) as info:
        verify_factory(mutate(base), pki)
    assert str(info.value).startswith("malformed attestation document: ")
    assert re.search(detail, str(info.value)), str(info.value)


def test_duplicate_payload_key_is_refused(pki: Pki) -> None:
    payload = encode_map(fields(pki))
    duplicated = bytes([payload[0] + 1]) + payload[1:] + cbor2.dumps("nonce") + cbor2.dumps(b"x")
    with pytest.raises(MalformedDocumentError, match="Duplicate"):
        verify_factory(Doc(duplicated, pki.leaf.key).build(), pki)


def test_duplicate_pcr_index_is_refused(pki: Pki) -> None:
    pcrs = b"\xa2" + (cbor2.dumps(0) + cbor2.dumps(ZERO)) * 2
    payload = encode_map(fields(pki, pcrs=...))
    payload = bytes([payload[0] + 1]) + payload[1:] + cbor2.dumps("pcrs") + pcrs
    with pytest.raises(MalformedDocumentError, match="Duplicate"):
        verify_factory(Doc(payload, pki.leaf.key).build(), pki)


def test_unsupported_algorithm_is_named(pki: Pki) -> None:
    doc = Doc(encode_map(fields(pki)), pki.leaf.key, protected=b"\xa1\x01\x26").build()
    with pytest.raises(UnsupportedAlgorithmError,
                       match=r"^unsupported COSE algorithm -7 \(expected ES384\)$"):
        verify_factory(doc, pki)


def test_digest_other_than_sha384_is_refused_with_digest_reason(pki: Pki) -> None:
    with pytest.raises(UnsupportedDigestError, match="^attestation digest is SHA256, expected SHA384$"):
        verify_factory(document(pki, digest="SHA256"), pki)


@pytest.mark.parametrize("override, detail", [
    ({"module_id": ...}, "module_id: missing"),
    ({"module_id": ""}, "module_id: expected a non-empty text string"),
    ({"module_id": b"id"}, "module_id: expected"),
    ({"digest": 384}, "digest: expected a text string"),
    ({"timestamp": 0}, "timestamp: expected a positive integer"),
    ({"timestamp": -5}, "timestamp"),
    ({"timestamp": True}, "timestamp"),
    ({"timestamp": 1.7e12}, "timestamp"),
    ({"pcrs": {}}, "pcrs: 0 entries"),
    ({"pcrs": {i: ZERO for i in range(33)}}, "pcrs: 33 entries"),
    ({"pcrs": {32: ZERO}}, "pcrs: key 32"),
    ({"pcrs": {True: ZERO}}, "pcrs: key True"),
    ({"pcrs": {"0": ZERO}}, "pcrs: key '0'"),
    ({"pcrs": {0: bytes(47)}}, "pcrs: PCR0 is not a 48-byte string"),
    ({"pcrs": [ZERO]}, "pcrs: expected a map"),
    ({"certificate": b""}, "certificate: 0 bytes"),
    ({"certificate": bytes(1025)}, "certificate: 1025 bytes"),
    ({"certificate": b"not der"}, "certificate: "),
    ({"cabundle": []}, "cabundle: expected a non-empty array"),
    ({"cabundle": b"x"}, "cabundle: expected"),
    ({"cabundle": [b"x"] * 2}, r"cabundle\[0\]: "),
    ({"user_data": bytes(1025)}, "user_data: 1025 bytes"),
    ({"nonce": "text"}, "nonce: expected a byte string"),
    ({"public_key": 5}, "public_key: expected a byte string"),
])
def test_payload_field_violation_is_refused_naming_the_field(
        pki: Pki, override: dict[str, Any], detail: str) -> None:
    with pytest.raises(MalformedDocumentError, match=detail):
        verify_factory(document(pki, **override), pki)


def test_unparseable_cabundle_entry_is_named_by_its_index(pki: Pki) -> None:
    with pytest.raises(MalformedDocumentError,
                       match=r"^malformed attestation document: cabundle\[1\]: "):
        verify_factory(document(pki, cabundle=[pki.root.der, b"\x30\x03\x02\x01\x00"]), pki)


@pytest.mark.parametrize("where, patch, detail", [
    ("certificate", (b"\xa0\x03\x02\x01\x02", b"\xa0\x03\x02\x01\x22"), "34 is not a valid X509 version"),
    ("cabundle", (b"\x06\x03\x55\x1d\x0e", b"\x06\x03\x55\x1d\x13"), "Duplicate 2.5.29.19 extension"),
])
def test_certificate_defects_the_parser_finds_lazily_are_reported_as_malformed(
        where: str, patch: tuple[bytes, bytes], detail: str) -> None:
    """Regression (found by fuzzing): `cryptography` parses names and extensions on first use."""
    doc = nitro_fixture(GOOD[0])
    payload = payload_of(doc)
    if where == "certificate":
        payload["certificate"] = payload["certificate"].replace(*patch, 1)
        prefix = "certificate: "
    else:
        payload["cabundle"][1] = payload["cabundle"][1].replace(*patch, 1)
        prefix = "cabundle[1]: "
    with pytest.raises(MalformedDocumentError) as info:
        att.verify(resign(doc, cbor2.dumps(payload), key("x")), allow_debug=True)
    assert str(info.value).startswith("malformed attestation document: " + prefix)
    assert detail in str(info.value)


def test_unknown_payload_keys_are_ignored_and_optional_fields_may_be_absent(pki: Pki) -> None:
    value: dict[Any, Any] = fields(pki, public_key=..., user_data=..., nonce=...)
    value["future_field"] = [1, 2, 3]
    value[7] = "integer key"
    result = verify_factory(Doc(encode_map(value), pki.leaf.key).build(), pki)
    assert (result.public_key, result.user_data, result.nonce) == (None, None, None)
    with pytest.raises(UserDataLengthError, match="^user_data is 0 bytes, expected 32$"):
        verify_factory(Doc(encode_map(value), pki.leaf.key).build(), pki, user_data_length=32)
    with pytest.raises(NonceMismatchError):
        verify_factory(Doc(encode_map(value), pki.leaf.key).build(), pki, nonce=b"")


# --------------------------------------------------------------------------- chain (step 4)


def pki_with(**kinds: Any) -> Pki:
    base = Pki.default()
    root = kinds.get("root", base.root)
    intermediate = kinds.get("intermediate") or make_cert("test intermediate", root, ca=True)
    leaf = kinds.get("leaf") or make_cert("test leaf", intermediate, ca=False)
    return Pki(root, intermediate, leaf)


def test_chain_refusals_follow_chain_order_and_name_the_certificate() -> None:
    root = make_cert("test root", ca=True)
    not_ca = make_cert("flat intermediate", root, ca=False)
    expired_leaf = make_cert("old leaf", not_ca, ca=False, not_after=T0 - timedelta(days=1))
    bad = Pki(root, not_ca, expired_leaf)
    with pytest.raises(CertificateProfileError, match=r"^certificate flat intermediate violates "
                       r"the Nitro certificate profile: a CA certificate lacks basicConstraints"):
        verify_factory(document(bad), bad)


@pytest.mark.parametrize("build, name, detail", [
    (lambda r: pki_with(intermediate=make_cert("i", r, ca=True, basic_constraints=False)),
     "i", "lacks basicConstraints"),
    (lambda r: pki_with(intermediate=make_cert("i", r, ca=True, key_usage="digital_signature")),
     "i", "keyUsage lacks keyCertSign"),
    (lambda r: pki_with(leaf=make_cert("l", Pki.default().intermediate, ca=True)),
     "l", "the signing certificate is a CA"),
    (lambda r: pki_with(leaf=make_cert("l", Pki.default().intermediate, ca=False,
                                       key_usage="other")),
     "l", "keyUsage lacks digitalSignature"),
    (lambda r: pki_with(leaf=make_cert("l", Pki.default().intermediate, ca=False,
                                       own_key=key("p256", ec.SECP256R1()))),
     "l", "public key is not ECDSA P-384"),
    (lambda r: pki_with(intermediate=make_cert("i", r, ca=True, hash_alg=hashes.SHA256())),
     "i", "signed with 1.2.840.10045.4.3.2, expected ecdsa-with-SHA384"),
    (lambda r: pki_with(root=make_cert("pathlen root", ca=True, path_length=0)),
     "pathlen root", "pathLenConstraint 0 exceeded by 1"),
])
def test_certificate_profile_violation_names_the_certificate(build: Any, name: str,
                                                             detail: str) -> None:
    bad = build(Pki.default().root)
    with pytest.raises(CertificateProfileError) as info:
        verify_factory(document(bad), bad)
    assert str(info.value).startswith(f"certificate {name} violates the Nitro certificate profile: ")
    assert detail in str(info.value)


UNKNOWN = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.99999.1"), b"\x05\x00")


@pytest.mark.parametrize("where", ["intermediate", "leaf"])
def test_an_unknown_critical_extension_is_refused(where: str) -> None:
    base = Pki.default()
    if where == "intermediate":
        bad = pki_with(intermediate=make_cert("i", base.root, ca=True, extra=((UNKNOWN, True),)))
    else:
        bad = pki_with(leaf=make_cert("l", base.intermediate, ca=False, extra=((UNKNOWN, True),)))
    with pytest.raises(CertificateProfileError, match="unknown critical extension "
                                                      "1.3.6.1.4.1.99999.1"):
        verify_factory(document(bad), bad)


def test_an_unknown_non_critical_extension_is_ignored() -> None:
    base = Pki.default()
    ok = pki_with(leaf=make_cert("l", base.intermediate, ca=False, extra=((UNKNOWN, False),)))
    verify_factory(document(ok), ok)


def test_intermediate_signed_by_another_key_with_the_trusted_name_breaks_the_chain() -> None:
    base = Pki.default()
    forged = make_cert("test intermediate", base.root, ca=True, signing_key=key("forger"))
    bad = pki_with(intermediate=forged)
    with pytest.raises(CertificateChainError):
        verify_factory(document(bad), bad)


def test_document_root_with_the_anchor_name_but_another_key_is_not_trusted() -> None:
    real = Pki.default()
    fake_root = make_cert("test root", ca=True, own_key=key("fake root"))
    fake = pki_with(root=fake_root)
    with pytest.raises(CertificateChainError):
        att.verify(document(fake), trust_root=real.root.anchor)


def test_cabundle_without_the_anchor_still_chains_from_the_anchor(pki: Pki) -> None:
    verify_factory(document(pki, cabundle=[pki.intermediate.der]), pki)


def test_expired_intermediate_is_named_even_though_the_leaf_is_valid() -> None:
    root = Pki.default().root
    old = make_cert("old intermediate", root, ca=True, not_after=T0 - timedelta(seconds=1))
    bad = pki_with(intermediate=old)
    with pytest.raises(CertificateValidityError, match="^certificate old intermediate is not valid"):
        verify_factory(document(bad), bad)


def test_now_tolerates_300_seconds_of_not_before_lag_but_a_given_time_does_not() -> None:
    fresh = make_cert("fresh leaf", Pki.default().intermediate, ca=False, not_before=T0)
    p = pki_with(leaf=fresh)
    doc = document(p)
    verify_factory(doc, p, now_ms=T0_MS - 300_000)
    with pytest.raises(CertificateValidityError):
        verify_factory(doc, p, now_ms=T0_MS - 300_001)
    with pytest.raises(CertificateValidityError):
        verify_factory(doc, p, at_ms=T0_MS - 1)
    verify_factory(doc, p, at_ms=T0_MS)


def test_now_has_no_tolerance_on_not_after() -> None:
    ending = make_cert("ending leaf", Pki.default().intermediate, ca=False, not_after=T0)
    p = pki_with(leaf=ending)
    verify_factory(document(p), p, now_ms=T0_MS)
    with pytest.raises(CertificateValidityError):
        verify_factory(document(p), p, now_ms=T0_MS + 1)


def test_at_and_now_together_is_a_programming_error(pki: Pki) -> None:
    with pytest.raises(ValueError):
        verify_factory(document(pki), pki, at_ms=T0_MS, now_ms=T0_MS)


def test_time_is_formatted_rfc3339_with_milliseconds_even_out_of_range() -> None:
    assert att.format_ms(1725911352400) == "2024-09-09T19:49:12.400Z"
    assert att.format_ms(10**18) == f"{10**18} ms after the Unix epoch"


# --------------------------------------------------------------------------- steps 6–9 order


def test_debug_check_comes_before_pcr_comparison(pki: Pki) -> None:
    doc = document(pki, pcrs={**PCRS, 0: ZERO, 1: ZERO, 2: ZERO})
    with pytest.raises(DebugEnclaveError):
        verify_factory(doc, pki, pcrs=PCRS)
    with pytest.raises(PcrMismatchError, match="^PCR0 mismatch"):
        verify_factory(doc, pki, pcrs=PCRS, allow_debug=True)


def test_document_with_only_some_zero_pcrs_is_not_debug(pki: Pki) -> None:
    verify_factory(document(pki, pcrs={**PCRS, 0: ZERO, 1: ZERO}), pki)


# --------------------------------------------------------------------------- PCR policy


def policy(*sets: PcrSet) -> PcrPolicy:
    return PcrPolicy(tuple(sets))


def test_policy_accepts_the_first_matching_set_in_order(pki: Pki) -> None:
    other = {0: b"\x09" * 48, 1: PCRS[1], 2: PCRS[2]}
    match = att.verify_with_policy(document(pki), policy(PcrSet(other), PcrSet(PCRS), PcrSet(PCRS)),
                                   trust_root=pki.root.anchor)
    assert match.set_index == 1 and match.attestation.module_id.startswith("i-")


def test_policy_lists_every_set_with_its_reason_when_none_matches(pki: Pki) -> None:
    debug = {0: ZERO, 1: ZERO, 2: ZERO}
    other = {0: b"\x09" * 48, 1: PCRS[1], 2: PCRS[2]}
    expired = PcrSet({i: PCRS[i] for i in range(3)}, expires_at_unix_seconds=T0_MS // 1000)
    with pytest.raises(NoPcrSetMatchedError) as info:
        att.verify_with_policy(document(pki), policy(PcrSet(debug), PcrSet(other), expired),
                               trust_root=pki.root.anchor)
    kinds = [type(e) for _, e in info.value.failures]
    assert kinds == [DebugPcrSetError, PcrMismatchError, PolicyExpiredError]
    message = str(info.value)
    assert message.startswith("no PCR set of the policy matched (3 attempts): set 0: "
                              "debug-mode PCRs are not accepted; set 1: PCR0 mismatch")
    assert message.endswith(f"; set 2: PCR policy expired at Unix second {T0_MS // 1000}")


def test_policy_expiry_is_judged_at_the_document_timestamp_not_the_verification_time(
        pki: Pki) -> None:
    just_valid = PcrSet(PCRS, expires_at_unix_seconds=T0_MS // 1000 + 1)
    att.verify_with_policy(document(pki), policy(just_valid), trust_root=pki.root.anchor,
                           now_ms=T0_MS + 86_000_000)


def test_policy_debug_set_is_used_when_debug_is_allowed() -> None:
    doc = nitro_fixture(GOOD[0])
    debug = PcrSet({0: ZERO, 1: ZERO, 2: ZERO})
    assert att.verify_with_policy(doc, policy(debug), allow_debug=True).set_index == 0
    with pytest.raises(NoPcrSetMatchedError, match="set 0: debug-mode PCRs are not accepted$"):
        att.verify_with_policy(doc, policy(debug))


def test_policy_extra_check_runs_per_set_before_expiry(pki: Pki) -> None:
    def refuse(result: att.Attestation) -> None:
        raise UserDataMismatchError()

    with pytest.raises(NoPcrSetMatchedError, match="set 0: user_data did not match$"):
        att.verify_with_policy(document(pki), policy(PcrSet(PCRS, 1)), trust_root=pki.root.anchor,
                               extra_check=refuse)


def test_policy_reports_a_chain_failure_for_every_set() -> None:
    doc = nitro_fixture(BAD_SIGNATURE)
    with pytest.raises(NoPcrSetMatchedError) as info:
        att.verify_with_policy(doc, policy(PcrSet(PCRS), PcrSet(PCRS)), allow_debug=True)
    assert [str(e) for _, e in info.value.failures] == ["attestation signature is invalid"] * 2


# --------------------------------------------------------------------------- fuzzing

FUZZ = settings(max_examples=150, deadline=2000, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])
REAL = [nitro_fixture(name) for name in ALL]


def only_attestation_errors(data: bytes, **kwargs: Any) -> None:
    try:
        att.verify(data, allow_debug=True, **kwargs)
    except AttestationError:
        pass


@FUZZ
@given(st.binary(max_size=2048))
def test_fuzz_random_bytes_raise_only_attestation_errors(data: bytes) -> None:
    only_attestation_errors(data)
    only_attestation_errors(b"\x84" + data)
    only_attestation_errors(b"\xd2\x84" + data)


@FUZZ
@given(st.sampled_from(REAL), st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)),
                                       min_size=1, max_size=4),
       st.sampled_from(["flip", "insert", "delete", "truncate"]))
def test_fuzz_mutated_real_documents_raise_only_attestation_errors(
        doc: bytes, edits: list[tuple[int, int]], how: str) -> None:
    mutated = bytearray(doc)
    for position, value in edits:
        at = position % len(mutated)
        if how == "flip":
            mutated[at] ^= value or 1
        elif how == "insert":
            mutated.insert(at, value)
        elif how == "delete":
            del mutated[at]
        else:
            del mutated[at:]
            break
    if bytes(mutated) == doc:
        return
    with pytest.raises(AttestationError):
        att.verify(bytes(mutated), allow_debug=True)


CBOR_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**64), 2**64 - 1) | st.floats()
    | st.binary(max_size=64) | st.text(max_size=16),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.integers(-3, 40) | st.text(max_size=12), children, max_size=4),
    max_leaves=12)
FIELD_NAMES = ["module_id", "digest", "timestamp", "pcrs", "certificate", "cabundle",
               "public_key", "user_data", "nonce"]


@FUZZ
@given(st.sampled_from(REAL[:2]), st.sampled_from(FIELD_NAMES), CBOR_VALUES)
def test_fuzz_payload_fields_replaced_by_random_cbor_raise_only_attestation_errors(
        doc: bytes, name: str, value: Any) -> None:
    payload = payload_of(doc)
    payload[name] = value
    only_attestation_errors(resign(doc, cbor2.dumps(payload), key("fuzz")))


@FUZZ
@given(CBOR_VALUES, CBOR_VALUES)
def test_fuzz_random_cose_members_raise_only_attestation_errors(first: Any, second: Any) -> None:
    only_attestation_errors(cbor2.dumps([first, {}, cbor2.dumps(second), bytes(96)]))
    only_attestation_errors(cbor2.dumps([cose.ES384_PROTECTED, first, b"\xa0", second]))
    only_attestation_errors(cbor2.dumps(first))
