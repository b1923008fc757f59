"""Canonical CBOR, bundle hash, proof nonce and ImportedV0 content hash (formats.md §6)."""

from __future__ import annotations

import hashlib
from typing import Any

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from locksmith.core.bundle.model import BundleV0, BundleV1Data, ImportedV0, OpenPGPKey, WebAuthnKey
from locksmith.core.canonical_cbor import (
    IMPORTED_V0_TAG,
    NONCE_TAG,
    ByteVector,
    CborValue,
    bundle_hash,
    encode,
    imported_v0_content_hash,
    imported_v0_value,
    proof_nonce,
    v1_data_value,
)

# §6.5 derived example.
DERIVED_DATA = BundleV1Data(
    bundle_id=bytes(range(16)),
    label={"name": "t", "env": "dev"},
    keyring=(OpenPGPKey("C"), WebAuthnKey(credential=("x",), cert="D")),
    threshold=1,
    max=2,
    shardfile="S",
    public_key="P",
)
DERIVED_ENCODING = (
    "a8636d617802656c6162656ca263656e7663646576646e616d656174676b657972696e6782a1674f70656e50"
    "4750a164636572746143a168576562417574686ea2646365727461446a63726564656e7469616c8161786776"
    "657273696f6e6256316962756e646c655f696490000102030405060708090a0b0c0d0e0f6973686172646669"
    "6c656153697468726573686f6c64016a7075626c69635f6b65796150"
)
DERIVED_HASH = "06d02ed499275ff2e47da21709105f7212303ec495d723f7575ef7e07a350134"
DERIVED_NONCE = "c9646eb873b90ad3dd5f6fb627a8dec699cad649d953a2ffd7dfc225865d3332"

# §6.5 real V1 bundle.
REAL_HASH = "d6b963c68ffd0e6403ce69c99c766ac5e079c8151f1adb6d38ab9526a9ea6082"
REAL_NONCE = "8889d1f7694946552973e459897287f4ce554d419672b454f4c8ff1f335e7a1c"
REAL_NONCE_INPUT = (
    "82782c6b65796d616b65722d67656e65726174652d71756f72756d2d6e6563726f70726f6f662d6e6f6e63652d7631"
    "982018d618b9186318c6188f18fd0e18640318ce186918c9189c1876186a18c518e0187918c815181f181a18db"
    "186d183818ab1895182618a918ea18601882"
)

# §6.4 derived ImportedV0 vector.
IMPORTED = ImportedV0(
    original=BundleV0.new(label={}, keyring="K", shardfile="S", public_key="P"),
    threshold=1,
    keyring=(OpenPGPKey("C"),),
)
IMPORTED_ENCODING = (
    "827363617574696f6e2d696d706f727465642d7630a466666f726d61746a496d706f727465645630676b657972"
    "696e6781a1674f70656e504750a164636572746143686f726967696e616ca6656c6162656ca0676b657972696e"
    "67614b69736861726466696c6561536a6e6563726f70726f6f66806a7075626c69635f6b657961506c6b657972"
    "696e675f686173689820188618be189a18551876182d1831186a1830182618c21883186d04184f185f18c7186e"
    "183418da1018e118b4185f18ee18e518f1188b18e718ed18b11877697468726573686f6c6401"
)
IMPORTED_HASH = "4262a41bc9653ada0a00a7528095fc35e232c0d7cc1cd300b1badf777e5807a5"


# --- spec vectors ---------------------------------------------------------------------------


def test_derived_v1_example_encodes_byte_exactly() -> None:
    assert encode(v1_data_value(DERIVED_DATA)).hex() == DERIVED_ENCODING


def test_derived_v1_example_hash_and_nonce() -> None:
    digest = bundle_hash(DERIVED_DATA)
    assert digest.hex() == DERIVED_HASH
    assert proof_nonce(digest).hex() == DERIVED_NONCE


def test_real_v1_bundle_hash_gives_the_spec_nonce_and_nonce_input() -> None:
    digest = bytes.fromhex(REAL_HASH)
    assert encode([NONCE_TAG, ByteVector(digest)]).hex() == REAL_NONCE_INPUT
    assert proof_nonce(digest).hex() == REAL_NONCE


def test_imported_v0_example_encodes_to_the_218_spec_bytes() -> None:
    encoded = encode([IMPORTED_V0_TAG, imported_v0_value(IMPORTED)])
    assert len(encoded) == 218
    assert encoded.hex() == IMPORTED_ENCODING


def test_imported_v0_example_content_hash() -> None:
    assert imported_v0_content_hash(IMPORTED) == IMPORTED_HASH


def test_contract_threshold_fragment_for_threshold_2() -> None:
    data = BundleV1Data(bytes(16), {}, (OpenPGPKey("C"), OpenPGPKey("D")), 2, 2, "S", "P")
    assert "697468726573686f6c6402" in encode(v1_data_value(data)).hex()


def test_contract_webauthn_fragment_with_a_long_cert() -> None:
    # A custody certificate is longer than 255 bytes, so its text header is `79 nnnn`.
    data = BundleV1Data(bytes(16), {}, (WebAuthnKey(("{}",), "c" * 600),), 1, 1, "S", "P")
    assert "a168576562417574686ea2646365727479" in encode(v1_data_value(data)).hex()


# --- structure the vectors rely on ------------------------------------------------------------


def test_v1_data_keys_are_in_canonical_order_and_webauthn_cert_comes_first() -> None:
    decoded = cbor2.loads(encode(v1_data_value(DERIVED_DATA)))
    assert list(decoded) == [
        "max", "label", "keyring", "version", "bundle_id", "shardfile", "threshold", "public_key",
    ]
    assert list(decoded["keyring"][1]["WebAuthn"]) == ["cert", "credential"]
    assert decoded["version"] == "V1"
    assert decoded["bundle_id"] == list(range(16))


def test_imported_v0_keys_are_in_canonical_order_and_format_is_text() -> None:
    _, decoded = cbor2.loads(encode([IMPORTED_V0_TAG, imported_v0_value(IMPORTED)]))
    assert list(decoded) == ["format", "keyring", "original", "threshold"]
    assert decoded["format"] == "ImportedV0"
    assert list(decoded["original"]) == [
        "label", "keyring", "shardfile", "necroproof", "public_key", "keyring_hash",
    ]
    assert decoded["original"]["necroproof"] == []


def test_bundle_hash_ignores_label_insertion_order() -> None:
    other = BundleV1Data(
        DERIVED_DATA.bundle_id, {"env": "dev", "name": "t"}, DERIVED_DATA.keyring, 1, 2, "S", "P"
    )
    assert bundle_hash(other) == bundle_hash(DERIVED_DATA)


def test_bundle_hash_is_sha256_of_the_encoding() -> None:
    assert bundle_hash(DERIVED_DATA) == hashlib.sha256(bytes.fromhex(DERIVED_ENCODING)).digest()


@pytest.mark.parametrize(
    ("number", "expected"),
    [
        (0, "00"), (23, "17"), (24, "1818"), (255, "18ff"), (256, "190100"), (65535, "19ffff"),
        (65536, "1a00010000"), (2**32 - 1, "1affffffff"), (2**32, "1b0000000100000000"),
        (2**64 - 1, "1bffffffffffffffff"),
    ],
)
def test_integers_use_the_shortest_form(number: int, expected: str) -> None:
    assert encode(number).hex() == expected


@pytest.mark.parametrize(
    ("length", "header"), [(0, "60"), (23, "77"), (24, "7818"), (255, "78ff"), (256, "790100")]
)
def test_text_strings_use_the_shortest_length_header(length: int, header: str) -> None:
    assert encode("a" * length).hex() == header + "61" * length


def test_utf8_length_counts_bytes_not_characters() -> None:
    assert encode("é").hex() == "62c3a9"


def test_byte_vectors_are_arrays_of_unsigned_integers() -> None:
    assert encode(ByteVector(b"\x00\x17\x18\xff")).hex() == "8400171818" "18ff"
    assert encode(ByteVector(bytes(24))).hex() == "9818" + "00" * 24


def test_map_keys_sort_by_encoded_length_then_bytes() -> None:
    assert list(cbor2.loads(encode({"bb": 0, "c": 0, "a": 0, "B": 0}))) == ["B", "a", "c", "bb"]


@pytest.mark.parametrize(
    "value", [b"\x00", bytearray(b"\x00"), True, 1.5, None, {1: 2}, {"a": b""}]
)
def test_values_outside_the_model_are_refused(value: Any) -> None:
    with pytest.raises(TypeError):
        encode(value)


@pytest.mark.parametrize("value", [-1, 2**64])
def test_integers_outside_0_to_2_64_are_refused(value: int) -> None:
    with pytest.raises(ValueError):
        encode(value)


@pytest.mark.parametrize("length", [0, 31, 33])
def test_proof_nonce_requires_a_32_byte_hash(length: int) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        proof_nonce(bytes(length))


# --- properties -----------------------------------------------------------------------------

cbor_values: st.SearchStrategy[CborValue] = st.recursive(
    st.integers(0, 2**64 - 1) | st.text() | st.binary(max_size=40).map(ByteVector),
    lambda inner: st.lists(inner, max_size=5)
    | st.dictionaries(st.text(max_size=30), inner, max_size=5),
    max_leaves=30,
)


def _plain(value: CborValue) -> Any:
    """What a generic decoder sees: byte vectors are just lists of integers."""
    if isinstance(value, ByteVector):
        return list(value.data)
    if isinstance(value, dict):
        return {key: _plain(member) for key, member in value.items()}
    if isinstance(value, list):
        return [_plain(element) for element in value]
    return value


def _keys_in_canonical_order(decoded: Any) -> bool:
    if isinstance(decoded, dict):
        keys = [encode(key) for key in decoded]
        ordered = keys == sorted(keys, key=lambda key: (len(key), key))
        return ordered and all(_keys_in_canonical_order(member) for member in decoded.values())
    if isinstance(decoded, list):
        return all(_keys_in_canonical_order(element) for element in decoded)
    return True


@given(cbor_values)
def test_encoding_decodes_to_the_same_value_with_canonical_key_order(value: CborValue) -> None:
    decoded = cbor2.loads(encode(value))
    assert decoded == _plain(value)
    assert _keys_in_canonical_order(decoded)


@given(cbor_values)
def test_encoding_matches_cbor2_length_first_canonical_mode(value: CborValue) -> None:
    assert encode(value) == cbor2.dumps(_plain(value), canonical=True)


@given(st.dictionaries(st.text(max_size=10), st.integers(0, 300), max_size=8), st.randoms())
def test_map_encoding_is_independent_of_insertion_order(mapping: dict[str, int], rng: Any) -> None:
    items = list(mapping.items())
    rng.shuffle(items)
    assert encode(dict(items)) == encode(mapping)
