"""Strict CBOR decoding and COSE_Sign1 / ES384 (locksmith.core.attestation.cose)."""

from __future__ import annotations

import math
import time
from typing import Any

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from locksmith.core.attestation import cose
from locksmith.core.attestation.cose import CoseError, loads_strict

SCALARS = (st.none() | st.booleans() | st.integers(-(2**64), 2**64 - 1)
           | st.floats(allow_nan=False) | st.binary(max_size=40) | st.text(max_size=20))
KEYS = st.integers(-(2**64), 2**64 - 1) | st.text(max_size=10) | st.binary(max_size=10)
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=5)
                      | st.dictionaries(KEYS, inner, max_size=5), max_leaves=20)


def same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


@settings(max_examples=300, deadline=None)
@given(VALUES, st.booleans())
def test_strict_decoder_round_trips_tag_free_cbor_definite_or_indefinite(value: Any,
                                                                          indefinite: bool) -> None:
    encoded = cbor2.dumps(value, indefinite_containers=indefinite)
    assert same(loads_strict(encoded), value)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_strict_decoder_raises_only_cose_error_on_random_bytes(data: bytes) -> None:
    try:
        loads_strict(data)
    except CoseError:
        pass


@pytest.mark.parametrize("hex_input, detail", [
    ("0101", "1 bytes after"),
    ("c24101", "unexpected CBOR tag 2"),
    ("81d81c00", "unexpected CBOR tag 28"),
    ("d28101", "unexpected CBOR tag 18"),
    ("1c", "reserved"),
    ("ff", "unexpected CBOR break"),
    ("5f4101" + "6161" + "ff", "invalid chunk"),
    ("5f5f4101ffff", "invalid chunk"),
    ("f800", "badly encoded CBOR simple value"),
    ("1f", "indefinite-length integer"),
    ("bf01ff", "map with a key but no value"),
    ("a2010201" "03", "Duplicate"),
    ("81a2010201" "03", "Duplicate"),
    ("bf01020103ff", "Duplicate"),
    ("9bffffffffffffffff", "truncated"),
    ("5bffffffffffffffff", "truncated"),
    ("bb7fffffffffffffff", "truncated"),
    ("", "truncated"),
    ("6261", "truncated"),
    ("62ffff", "decod"),
])
def test_strict_decoder_refuses_with_a_one_line_reason(hex_input: str, detail: str) -> None:
    with pytest.raises(CoseError) as info:
        loads_strict(bytes.fromhex(hex_input))
    assert detail in str(info.value) and "\n" not in str(info.value)


def test_nesting_deeper_than_the_limit_is_refused_quickly() -> None:
    assert loads_strict(b"\x81" * cose.MAX_DEPTH + b"\x00") is not None
    started = time.monotonic()
    with pytest.raises(CoseError, match="nesting"):
        loads_strict(b"\x81" * 100_000 + b"\x00")
    assert time.monotonic() - started < 1


def test_huge_declared_lengths_fail_without_allocating() -> None:
    started = time.monotonic()
    for head in ("9b", "bb", "5b", "7b"):
        with pytest.raises(CoseError):
            loads_strict(bytes.fromhex(head + "7fffffffffffffff") + bytes(1000))
    assert time.monotonic() - started < 1


def test_sign1_tagged_and_untagged_decode_the_same() -> None:
    body = cose.encode_sign1(cose.ES384_PROTECTED, b"payload", bytes(96))
    tagged = cose.encode_sign1(cose.ES384_PROTECTED, b"payload", bytes(96), tagged=True)
    assert tagged == b"\xd2" + body
    a, b = cose.decode_sign1(body), cose.decode_sign1(tagged)
    assert (a.protected, a.payload, a.tagged, b.tagged) == (cose.ES384_PROTECTED, b"payload",
                                                            False, True)
    assert (b.protected, b.payload, b.signature) == (a.protected, a.payload, a.signature)


def test_sig_structure_is_the_rfc_9052_signature1_array() -> None:
    expected = (bytes.fromhex("84") + b"\x6aSignature1" + b"\x44" + cose.ES384_PROTECTED
                + b"\x40" + b"\x43abc")
    assert cose.sig_structure(cose.ES384_PROTECTED, b"abc") == expected


def test_es384_round_trip_and_tamper_detection() -> None:
    private = ec.generate_private_key(ec.SECP384R1())
    signature = cose.sign_es384(private, cose.ES384_PROTECTED, b"payload")
    public = private.public_key()
    assert cose.verify_es384(public, cose.ES384_PROTECTED, b"payload", signature)
    assert not cose.verify_es384(public, cose.ES384_PROTECTED, b"payload!", signature)
    assert not cose.verify_es384(public, b"\xa1\x01\x26", b"payload", signature)
    assert not cose.verify_es384(public, cose.ES384_PROTECTED, b"payload", signature[:-1])
    assert not cose.verify_es384(public, cose.ES384_PROTECTED, b"payload", bytes(96))
