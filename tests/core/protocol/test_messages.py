"""Message codecs of protocol.md §3: exact output, every parsing rule, only protocol errors."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from locksmith.core.protocol.messages import (
    Accepted, AttestationMessage, NonceMessage, Rejected, RemoteProtocolError, ShareRequest,
    SignedPayload, SubmissionMessage, parse_attestation, parse_nonce, parse_share_request,
    parse_signed_payload, parse_submission, parse_verdict, submission_bundle_hash,
)
from tests.core.protocol_kit import fixture_quorum, generated_quorum

PK = list(range(32))


def _j(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


# --- writers: compact, members in spec order ------------------------------------------------------


def test_writers_emit_compact_json_in_spec_order() -> None:
    assert NonceMessage("000102030405060708090a0b").encode() == \
        b'{"nonce":"000102030405060708090a0b"}'
    assert AttestationMessage(b"\x00\xff").encode() == b'{"attestation":[0,255]}'
    assert SubmissionMessage("P", "S").encode() == b'{"signed_payload":"P","signature":"S"}'
    assert SignedPayload(b"\xab\x01", bytes(PK)).encode() == \
        '{"encrypted_payload":"ab01","public_key":[' + ",".join(map(str, PK)) + "]}"
    assert ShareRequest(bytearray(b"\x01\x02"), 2).encode() == b'{"shard":[1,2],"threshold":2}'
    assert ShareRequest(bytearray(b"\x01"), 1, "ab").encode() == \
        b'{"shard":[1],"threshold":1,"bundle_hash":"ab"}'
    assert Accepted(3).encode() == b'{"Accepted":{"remaining":3}}'
    assert Rejected("Unknown holder").encode() == b'{"Rejected":{"reason":"Unknown holder"}}'


def test_non_ascii_text_is_written_as_utf8() -> None:
    assert Rejected("é").encode() == '{"Rejected":{"reason":"é"}}'.encode()


def test_share_request_wipe_zeroes_the_shard() -> None:
    request = ShareRequest(bytearray(b"\x01\x02\x03"), 2)
    request.wipe()
    assert request.shard == bytearray(3)
    assert "shard" not in repr(request)


def test_submission_bundle_hash_per_generation() -> None:
    assert submission_bundle_hash(fixture_quorum().checked.bundle) is None
    for generation in ("V1", "ImportedV0"):
        digest = submission_bundle_hash(generated_quorum(2, 3, generation).checked.bundle)
        assert digest is not None and len(digest) == 32


# --- message 1 (enclave side) --------------------------------------------------------------------


@pytest.mark.parametrize("nonce", ["x", "000102030405060708090a0b", "é" * 256, "x" * 512])
def test_nonce_of_1_to_512_utf8_bytes_is_accepted(nonce: str) -> None:
    message = parse_nonce(_j({"nonce": nonce}))
    assert message.nonce == nonce and message.nonce_bytes == nonce.encode("utf-8")


@pytest.mark.parametrize("payload", [
    b"", b"null", b"[]", b'"x"', b"{}", b'{"nonce":""}', _j({"nonce": "x" * 513}),
    _j({"nonce": "é" * 256 + "x"}), b'{"nonce":"\\ud800"}', b'{"nonce":"\\udfff x"}',
    b'{"nonce":1}', b'{"nonce":null}', b'{"nonce":["a"]}', b'{"nonce":"a","extra":1}',
    b'{"nonce":"a","nonce":"b"}', b'{"nonce":"a"} x', b"\xff", b'{"nonce":"\xff"}',
])
def test_bad_message_1_is_refused(payload: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        parse_nonce(payload)


def test_error_texts_never_echo_the_input() -> None:
    secret = "SECRETSECRET"
    for payload in (_j({secret: 1}), b'{"%s":1,"%s":2}' % (secret.encode(), secret.encode()),
                    b'{"nonce":"x",' + secret.encode() + b"}"):
        with pytest.raises(RemoteProtocolError) as info:
            parse_nonce(payload)
        assert secret not in str(info.value)


# --- message 3, P and Q (enclave side) -----------------------------------------------------------


def test_message_3_has_exactly_two_string_members() -> None:
    assert parse_submission(b'{"signature":"S","signed_payload":"P"}') == SubmissionMessage("P", "S")
    for payload in [b'{"signed_payload":"P"}', b'{"signed_payload":"P","signature":"S","x":0}',
                    b'{"signed_payload":"P","signature":"S","signature":"S"}',
                    b'{"signed_payload":{},"signature":"S"}', b'{"signed_payload":"P","signature":1}']:
        with pytest.raises(RemoteProtocolError):
            parse_submission(payload)


def test_p_parses_hex_in_either_case() -> None:
    p = parse_signed_payload(json.dumps({"public_key": PK, "encrypted_payload": "ABcd"}))
    assert p == SignedPayload(b"\xab\xcd", bytes(PK))


@pytest.mark.parametrize("value", [
    {"encrypted_payload": "abc", "public_key": PK}, {"encrypted_payload": "zz", "public_key": PK},
    {"encrypted_payload": "ab cd", "public_key": PK}, {"encrypted_payload": 1, "public_key": PK},
    {"encrypted_payload": "ab", "public_key": PK[:31]}, {"encrypted_payload": "ab", "public_key": PK + [0]},
    {"encrypted_payload": "ab", "public_key": [256] + PK[1:]}, {"encrypted_payload": "ab", "public_key": [True, *PK[1:]]},
    {"encrypted_payload": "ab", "public_key": [1.0, *PK[1:]]}, {"encrypted_payload": "ab", "public_key": "00"},
    {"encrypted_payload": "ab"}, {"encrypted_payload": "ab", "public_key": PK, "x": None}, [],
])
def test_bad_p_is_refused(value: object) -> None:
    with pytest.raises(RemoteProtocolError):
        parse_signed_payload(json.dumps(value))


def test_p_with_duplicate_member_is_refused() -> None:
    with pytest.raises(RemoteProtocolError):
        parse_signed_payload('{"encrypted_payload":"ab","public_key":[],"public_key":'
                             + json.dumps(PK) + "}")


@pytest.mark.parametrize("payload,expected", [
    (b'{"shard":[1,2],"threshold":2}', ShareRequest(bytearray(b"\x01\x02"), 2, None)),
    (b'{"shard":[],"threshold":0,"bundle_hash":null}', ShareRequest(bytearray(), 0, None)),
    (b'{"bundle_hash":"zz","threshold":7,"shard":[0]}', ShareRequest(bytearray(b"\x00"), 7, "zz")),
    (b' { "shard" : [ 1 ] , "threshold" : 1 } ', ShareRequest(bytearray(b"\x01"), 1, None)),
])
def test_q_parses_any_shard_length_and_optional_bundle_hash(payload: bytes,
                                                            expected: ShareRequest) -> None:
    assert parse_share_request(payload) == expected


@pytest.mark.parametrize("payload", [
    b'{"shard":[1],"threshold":true}', b'{"shard":[1],"threshold":2.0}',
    b'{"shard":[1],"threshold":1e0}', b'{"shard":[1],"threshold":-1}',
    b'{"shard":[1],"threshold":"2"}', b'{"shard":[256],"threshold":2}',
    b'{"shard":[false],"threshold":2}', b'{"shard":"01","threshold":2}',
    b'{"shard":[1],"threshold":2,"bundle_hash":5}', b'{"shard":[1],"threshold":2,"bundle_hash":[]}',
    b'{"shard":[1],"threshold":2,"extra":null}', b'{"shard":[1],"threshold":2,"threshold":2}',
    b'{"shard":[1]}', b'{"threshold":2}', b"", b"not json", b'{"shard":[1],"threshold":2}}',
])
def test_bad_q_is_refused(payload: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        parse_share_request(payload)


# --- messages 2 and 4 (holder side): unknown members ignored ---------------------------------------


def test_message_2_ignores_unknown_members_at_any_level() -> None:
    payload = b'{"x":{"y":[1,{"z":null}]},"attestation":[1,2],"w":true}'
    assert parse_attestation(payload) == AttestationMessage(b"\x01\x02")


@pytest.mark.parametrize("payload", [
    b"{}", b'{"attestation":[256]}', b'{"attestation":[true]}', b'{"attestation":"AQI="}',
    b'{"attestation":[1],"attestation":[1]}', b'{"attestation":[1],"x":{"a":1,"a":2}}', b"[]",
])
def test_bad_message_2_is_refused(payload: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        parse_attestation(payload)


@pytest.mark.parametrize("payload,expected", [
    (b'{"Accepted":{"remaining":0}}', Accepted(0)),
    (b'{"Accepted":{"remaining":3,"extra":[1]},"note":"x"}', Accepted(3)),
    (b'{"Rejected":{"reason":"Unknown holder"}}', Rejected("Unknown holder")),
    (b'{"Rejected":{"reason":"No matching certificate found for signature\\n- x"}}',
     Rejected("No matching certificate found for signature\n- x")),
])
def test_verdicts_are_read_ignoring_unknown_members(payload: bytes, expected: object) -> None:
    assert parse_verdict(payload) == expected


@pytest.mark.parametrize("payload", [
    b"{}", b'{"Accepted":{"remaining":1},"Rejected":{"reason":"x"}}', b'{"Accepted":{}}',
    b'{"Accepted":1}', b'{"Accepted":{"remaining":-1}}', b'{"Accepted":{"remaining":true}}',
    b'{"Accepted":{"remaining":1.0}}', b'{"Accepted":{"remaining":18446744073709551616}}',
    b'{"Rejected":{"reason":1}}', b'{"Rejected":{}}', b'{"Rejected":"x"}',
    b'{"Accepted":{"remaining":1},"Accepted":{"remaining":1}}', b'"Accepted"', b"", b"\x00",
])
def test_anything_else_is_not_a_verdict(payload: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        parse_verdict(payload)


# --- properties ------------------------------------------------------------------------------------

PARSERS: list[Callable[[bytes], object]] = [
    parse_nonce, parse_submission, parse_share_request, parse_attestation, parse_verdict,
    lambda b: parse_signed_payload(b.decode("utf-8", "replace")),
]
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["nonce", "attestation", "signed_payload", "signature", "shard",
                         "threshold", "bundle_hash", "encrypted_payload", "public_key",
                         "Accepted", "Rejected", "remaining", "reason", "x"]), inner, max_size=4),
    max_leaves=12)


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=200))
def test_parsers_raise_only_protocol_errors_on_arbitrary_bytes(data: bytes) -> None:
    for parse in PARSERS:
        try:
            parse(data)
        except RemoteProtocolError:
            pass


@settings(max_examples=300, deadline=None)
@given(JSON)
def test_parsers_raise_only_protocol_errors_on_arbitrary_json(value: object) -> None:
    data = json.dumps(value).encode()
    for parse in PARSERS:
        try:
            parse(data)
        except RemoteProtocolError:
            pass


@settings(max_examples=100, deadline=None)
@given(st.text(min_size=1, max_size=128).filter(lambda s: len(s.encode("utf-8", "surrogatepass")) <= 512
                                                and not any(0xD800 <= ord(c) <= 0xDFFF for c in s)))
def test_nonce_round_trips(nonce: str) -> None:
    assert parse_nonce(NonceMessage(nonce).encode()).nonce == nonce


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=64), st.integers(min_value=0, max_value=2**64),
       st.none() | st.text(max_size=70).filter(lambda s: not any(0xD800 <= ord(c) <= 0xDFFF for c in s)))
def test_share_request_round_trips(shard: bytes, threshold: int, bundle_hash: str | None) -> None:
    request = ShareRequest(bytearray(shard), threshold, bundle_hash)
    assert parse_share_request(request.encode()) == request


@settings(max_examples=50, deadline=None)
@given(st.binary(max_size=100), st.binary(min_size=32, max_size=32))
def test_signed_payload_round_trips(ciphertext: bytes, public_key: bytes) -> None:
    payload = SignedPayload(ciphertext, public_key)
    assert parse_signed_payload(payload.encode()) == payload


@settings(max_examples=50, deadline=None)
@given(st.integers(min_value=0, max_value=2**64 - 1) | st.text(max_size=40).filter(
    lambda s: not any(0xD800 <= ord(c) <= 0xDFFF for c in s)), st.binary(max_size=100))
def test_verdict_and_attestation_round_trip(value: int | str, document: bytes) -> None:
    verdict = Accepted(value) if isinstance(value, int) else Rejected(value)
    assert parse_verdict(verdict.encode()) == verdict
    assert parse_attestation(AttestationMessage(document).encode()).document == document
