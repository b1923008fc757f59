"""Strict JSON (locksmith/core/strictjson.py), the two PCR files read through it (PCR policies
and trusted_hashes.json, locksmith/core/attestation/pcr_policy.py), and the canonical CBOR writer
(locksmith/core/canonical_cbor.py) that hashes what they and the bundle readers produce.

Allowed to escape:
* `strictjson.loads` and the `read_*` / `check_members` helpers: `StrictJSONError`
  (`DuplicateMemberError` included);
* `PcrPolicy.from_json`: `PcrPolicyError`; `TrustedHashes.from_json`: `TrustedHashesError`;
* `canonical_cbor.encode`: nothing for a value of its model (what the readers produce);
  `TypeError`/`ValueError` only for values outside it (bool, bytes, negative or 64-bit
  overflowing integers, non-string keys), which are caller bugs the encoder refuses by design.

tests/core/test_strictjson.py already feeds arbitrary text, bytes and cut-and-noised JSON;
this adds structure-aware mutations of real documents (duplicate members, deep nesting, numbers
no float or 4300-digit int can hold, lone surrogate escapes) to the readers built on it.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from locksmith.core import canonical_cbor, strictjson
from locksmith.core.attestation.pcr_policy import (
    PcrPolicy, PcrPolicyError, PcrSet, TrustedHashes, TrustedHashesError,
)
from locksmith.core.canonical_cbor import ByteVector
from tests.fuzz.strategies import bounded, deep, dump_tree, fuzz, json_any, json_junk, only

POLICY = PcrPolicy((PcrSet({0: b"\x01" * 48, 1: b"\x02" * 48, 2: b"\x03" * 48, 8: b"\x04" * 48},
                           1_900_000_000),
                    PcrSet({0: bytes(48), 1: bytes(48), 2: bytes(48)}, None))).to_json()
HASHES = ('{"pcr0":"' + "ab" * 48 + '","pcr1":"' + "CD" * 48 + '","pcr2":"' + "01" * 48
          + '","pcr3":"' + "ef" * 48 + '","verified_at":"2025-01-02T03:04:05Z"}')
DOCUMENTS = [POLICY, HASHES, '{"a":[1,2,{"b":null}],"c":"\\u00e9","d":-0.5}']


@fuzz(deadline_ms=1000, scale=3)
@given(st.sampled_from(DOCUMENTS).flatmap(json_any), st.booleans())
def test_fuzz_strict_json_raises_only_strict_json_errors(text: str | bytes, record: bool) -> None:
    value = only((strictjson.StrictJSONError,), strictjson.loads, text,
                 duplicates="record" if record else "reject")
    if value is None:
        return
    strictjson.first_duplicate(value)
    for reader in (strictjson.read_object, strictjson.read_list, strictjson.read_str,
                   strictjson.read_int, strictjson.read_bytes, strictjson.read_str_list,
                   strictjson.read_str_map):
        only((strictjson.StrictJSONError,), reader, value, "field")
    if isinstance(value, dict):
        only((strictjson.StrictJSONError,), strictjson.check_members, value, "object",
             ("a", "sets"))
    # What parsed writes back and parses again to the same value (no lone surrogates, no NaN).
    assert strictjson.loads(strictjson.dumps_compact(value)) == value


@fuzz(deadline_ms=1000, scale=3)
@given(json_any(POLICY))
def test_fuzz_pcr_policies_raise_only_pcr_policy_errors(text: str | bytes) -> None:
    policy = only((PcrPolicyError,), PcrPolicy.from_json, text)
    if policy is not None:
        assert PcrPolicy.from_json(policy.to_json()) == policy


@fuzz(deadline_ms=1000, scale=3)
@given(json_any(HASHES))
def test_fuzz_trusted_hashes_raise_only_trusted_hashes_errors(text: str | bytes) -> None:
    hashes = only((TrustedHashesError,), TrustedHashes.from_json, text)
    if hashes is not None:
        assert set(hashes.pcrs) <= {0, 1, 2, 3, 4, 8}


@pytest.mark.parametrize("depth", [1000, 100_000])
def test_fuzz_deep_nesting_is_refused_by_every_json_reader_in_bounded_time(depth: int) -> None:
    for opener, closer in (("[", "]"), ('{"sets":', "}")):
        bounded(_read_all, dump_tree(deep(depth, opener, closer)), seconds=2.0)


def _read_all(text: str) -> None:
    only((strictjson.StrictJSONError,), strictjson.loads, text)
    only((PcrPolicyError,), PcrPolicy.from_json, text)
    only((TrustedHashesError,), TrustedHashes.from_json, text)


def test_fuzz_huge_numbers_are_refused_or_kept_exactly() -> None:
    """Digit strings past Python's int limit and exponents past a float's: refused, not
    raised as ValueError from deep inside `json`."""
    for number in ("1" * 4300, "1" * 4301, "1" * 100_000, "1e400", "-1e400", "1e-400",
                   "0." + "0" * 5000 + "1"):
        bounded(_read_all, f'{{"pcr0":{number}}}', seconds=2.0)
        bounded(_read_all, f'{{"sets":[{{"pcrs":{{}},"expires_at_unix_seconds":{number}}}]}}',
                seconds=2.0)


# --- canonical CBOR ---------------------------------------------------------------------------

in_model: st.SearchStrategy[Any] = st.recursive(
    st.integers(0, 2**64 - 1) | st.text(max_size=20)
    | st.binary(max_size=40).map(ByteVector),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=16,
)


@fuzz(deadline_ms=500, scale=3)
@given(in_model)
def test_fuzz_canonical_cbor_encodes_every_value_of_its_model(value: Any) -> None:
    encoded = canonical_cbor.encode(value)
    assert encoded and canonical_cbor.encode(value) == encoded


@fuzz(deadline_ms=500, scale=3)
@given(json_junk.map(lambda v: v if not hasattr(v, "members") else dict(v.members))
       | st.integers() | st.binary(max_size=8) | st.booleans() | st.floats()
       | st.dictionaries(st.integers(), st.integers(), min_size=1, max_size=2))
def test_fuzz_canonical_cbor_refuses_values_outside_its_model_with_type_or_value_errors(
        value: Any) -> None:
    only((TypeError, ValueError), canonical_cbor.encode, value)
