"""Keymaker PCR policy (keymaker.md §8.1) and trusted_hashes.json (cli.md §5.1) parsing."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from locksmith.core.attestation.pcr_policy import (
    POLICY_EMPTY_ERROR,
    POLICY_PARSE_ERROR,
    POLICY_RANGE_ERROR,
    PcrPolicy,
    PcrPolicyError,
    PcrSet,
    TrustedHashes,
    TrustedHashesError,
    is_debug_pcrs,
)

A, B, C = "aa" * 48, "BB" * 48, "0c" * 48
ZERO = "00" * 48


def policy_text(*sets: Any) -> str:
    return json.dumps({"sets": list(sets)})


def a_set(**extra: Any) -> dict[str, Any]:
    return {"pcrs": {"0": A, "1": B, "2": C}, **extra}


def test_policy_with_two_sets_parses_in_order_with_optional_expiry() -> None:
    policy = PcrPolicy.from_json(policy_text(
        a_set(), a_set(expires_at_unix_seconds=None),
        {"pcrs": {"0": A, "1": B, "2": C, "8": ZERO}, "expires_at_unix_seconds": 1767225600}))
    assert [s.expires_at_unix_seconds for s in policy.sets] == [None, None, 1767225600]
    assert policy.sets[0].pcrs == {0: bytes.fromhex(A), 1: bytes.fromhex(B), 2: bytes.fromhex(C)}
    assert sorted(policy.sets[2].pcrs) == [0, 1, 2, 8]
    assert not policy.sets[0].is_debug


def test_policy_accepts_bytes_input() -> None:
    assert len(PcrPolicy.from_json(policy_text(a_set()).encode()).sets) == 1


@pytest.mark.parametrize("text, detail", [
    ('{"sets": [], "extra": 1}', "unknown member 'extra'"),
    (policy_text(a_set(note="x")), "sets[0]: unknown member 'note'"),
    ('{}', "missing member 'sets'"),
    ('{"sets": {}}', "sets: expected an array"),
    ('[]', "policy: expected an object"),
    (policy_text("x"), "sets[0]: expected an object"),
    (policy_text({"expires_at_unix_seconds": None}), "missing member 'pcrs'"),
    (policy_text({"pcrs": []}), "sets[0].pcrs: expected an object"),
    (policy_text({"pcrs": {"0": A, "1": B}}), "PCR2 is required"),
    (policy_text({"pcrs": {"0": A, "1": B, "2": C, "32": A}}), "'32' is not a PCR index"),
    (policy_text({"pcrs": {"0": A, "1": B, "2": C, "01": A}}), "'01' is not a PCR index"),
    (policy_text({"pcrs": {"0": A, "1": B, "2": C, "-1": A}}), "'-1' is not a PCR index"),
    (policy_text({"pcrs": {"0": A[:-2], "1": B, "2": C}}), "sets[0].pcrs.0: expected 96 hex"),
    (policy_text({"pcrs": {"0": A + "00", "1": B, "2": C}}), "expected 96 hex"),
    (policy_text({"pcrs": {"0": "zz" * 48, "1": B, "2": C}}), "expected 96 hex"),
    (policy_text({"pcrs": {"0": 5, "1": B, "2": C}}), "expected 96 hex"),
    (policy_text(a_set(expires_at_unix_seconds=-1)), "expected an unsigned integer or null"),
    (policy_text(a_set(expires_at_unix_seconds=True)), "expected an unsigned integer"),
    (policy_text(a_set(expires_at_unix_seconds=1.5)), "expected an unsigned integer"),
    (policy_text(a_set(expires_at_unix_seconds="1")), "expected an unsigned integer"),
    (policy_text(a_set(expires_at_unix_seconds=2**64)), "expected an unsigned integer"),
    ('{"sets": [], "sets": []}', "duplicate member"),
    ('{"sets": [NaN]}', "NaN"),
    ('{"sets": [', ""),
    (b'{"sets": ["\xff"]}', "UTF-8"),
])
def test_invalid_policy_is_refused_with_the_spec_text_and_a_detail(text: Any, detail: str) -> None:
    with pytest.raises(PcrPolicyError) as info:
        PcrPolicy.from_json(text)
    assert str(info.value) == POLICY_PARSE_ERROR
    assert detail in (info.value.detail or ""), info.value.detail


def test_empty_policy_has_its_own_text() -> None:
    with pytest.raises(PcrPolicyError, match=f"^{POLICY_EMPTY_ERROR}$"):
        PcrPolicy.from_json('{"sets": []}')


def test_expiry_beyond_the_time_range_has_its_own_text() -> None:
    PcrPolicy.from_json(policy_text(a_set(expires_at_unix_seconds=2**63 // 1000)))
    with pytest.raises(PcrPolicyError) as info:
        PcrPolicy.from_json(policy_text(a_set(expires_at_unix_seconds=2**63 // 1000 + 1)))
    assert str(info.value) == POLICY_RANGE_ERROR


def test_all_zero_pcr0_to_2_make_a_debug_set() -> None:
    debug = PcrPolicy.from_json(policy_text({"pcrs": {"0": ZERO, "1": ZERO, "2": ZERO, "3": A}}))
    assert debug.sets[0].is_debug
    assert not is_debug_pcrs({0: bytes(48), 1: bytes(48)})


HEX48 = st.binary(min_size=48, max_size=48)
SETS = st.builds(PcrSet, st.fixed_dictionaries({0: HEX48, 1: HEX48, 2: HEX48},
                                               optional={i: HEX48 for i in range(3, 32)}),
                 st.none() | st.integers(0, 2**63 // 1000))


@settings(max_examples=100, deadline=None)
@given(st.lists(SETS, min_size=1, max_size=4))
def test_policy_json_round_trips(sets: list[PcrSet]) -> None:
    policy = PcrPolicy(tuple(sets))
    assert PcrPolicy.from_json(policy.to_json()) == policy


# --------------------------------------------------------------------------- trusted_hashes.json


def hashes_text(**members: Any) -> str:
    return json.dumps({"pcr0": A, "pcr1": B, "pcr2": C, **members})


def test_trusted_hashes_parse_with_optional_and_unknown_members() -> None:
    parsed = TrustedHashes.from_json(hashes_text(verified_at="2025-01-02T03:04:05Z",
                                                 tls={"anything": [1]}, other=3))
    assert parsed.pcrs == {0: bytes.fromhex(A), 1: bytes.fromhex(B), 2: bytes.fromhex(C)}
    assert parsed.verified_at == "2025-01-02T03:04:05Z"
    assert TrustedHashes.from_json(hashes_text(verified_at=5)).verified_at is None


@pytest.mark.parametrize("text, message", [
    (json.dumps({"pcr1": B, "pcr2": C}), "missing pcr0"),
    (json.dumps({"pcr0": A, "pcr2": C}), "missing pcr1"),
    (hashes_text(pcr2=C[:-2]), "invalid pcr2 hex"),
    (hashes_text(pcr1="zz" * 48), "invalid pcr1 hex"),
    (hashes_text(pcr0=None), "invalid pcr0 hex"),
    ("not json", "Failed to parse hashes.json"),
    ("[]", "Failed to parse hashes.json"),
    ('{"pcr0": "x", "pcr0": "y"}', "Failed to parse hashes.json"),
])
def test_invalid_trusted_hashes_use_the_cli_texts(text: str, message: str) -> None:
    with pytest.raises(TrustedHashesError) as info:
        TrustedHashes.from_json(text, source="hashes.json")
    assert str(info.value) == message


@settings(max_examples=50, deadline=None)
@given(HEX48, HEX48, HEX48)
def test_trusted_hashes_json_round_trips(a: bytes, b: bytes, c: bytes) -> None:
    hashes = TrustedHashes(a, b, c)
    assert TrustedHashes.from_json(hashes.to_json()) == hashes
