"""Quorum bundle models: recognition, strict reading, exact texts, byte-exact writing."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from locksmith.core.bundle.model import (
    Bundle,
    BundleError,
    BundleV0,
    BundleV1,
    BundleV1Data,
    ImportedV0,
    OpenPGPKey,
    WebAuthnKey,
    bundle_from_dict,
    parse_bundle,
)
from locksmith.core.strictjson import dumps_compact, dumps_pretty, loads

CHECKSUM = "keyring checksum mismatch; restore the original bundle (no repair override)"


@pytest.fixture
def fixture_text(caution_v0: Path) -> str:
    return (caution_v0 / "bundle.json").read_bytes().decode("utf-8")


def v0_dict(**changes: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "label": {"name": "n"},
        "keyring": "K",
        "keyring_hash": list(hashlib.sha256(b"K").digest()),
        "shardfile": "S",
        "public_key": "P",
        "necroproof": [],
    }
    obj.update(changes)
    return obj


def v1_dict(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "version": "V1",
        "bundle_id": list(range(16)),
        "label": {},
        "keyring": [
            {"OpenPGP": {"cert": "A"}},
            {"WebAuthn": {"credential": ["c"], "cert": "B"}},
            {"OpenPGP": {"cert": "C"}},
        ],
        "threshold": 2,
        "max": 3,
        "shardfile": "S",
        "public_key": "P",
    }
    data.update(changes)
    return {"data": data, "necroproof": [1, 2, 3]}


def imported_dict(**changes: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "format": "ImportedV0",
        "original": v0_dict(),
        "threshold": 1,
        "keyring": [{"OpenPGP": {"cert": "A"}}, {"OpenPGP": {"cert": "B"}}],
    }
    obj.update(changes)
    return obj


def error_of(text: str) -> str:
    with pytest.raises(BundleError) as info:
        parse_bundle(text)
    return str(info.value)


def error_of_obj(obj: Any) -> str:
    return error_of(json.dumps(obj))


# --- the reference fixture ------------------------------------------------------------------


def test_reference_fixture_is_recognised_as_v0(fixture_text: str) -> None:
    bundle = parse_bundle(fixture_text)
    assert isinstance(bundle, BundleV0)
    assert dict(bundle.label) == {"name": "Frozen V0 test fixture"}
    assert bundle.keyring.startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n")
    assert bundle.shardfile.startswith("-----BEGIN PGP MESSAGE-----\n\n")
    # The quorum certificate carries armor headers (`Comment: 15B0 E570 …`); kept verbatim.
    assert bundle.public_key.startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----\nComment: 15B0 E570")


def test_reference_fixture_keyring_hash_verifies(fixture_text: str) -> None:
    bundle = BundleV0.from_json(fixture_text)
    assert bundle.keyring_hash == hashlib.sha256(bundle.keyring.encode("utf-8")).digest()


def test_reference_fixture_is_reproduced_byte_exactly(caution_v0: Path) -> None:
    raw = (caution_v0 / "bundle.json").read_bytes()
    assert parse_bundle(raw).to_json().encode("utf-8") == raw


def test_reference_fixture_is_pretty_style_without_trailing_newline(fixture_text: str) -> None:
    text = fixture_text
    assert not text.endswith("\n")
    assert dumps_pretty(json.loads(text)) == text


def test_reference_fixture_round_trips_inside_an_imported_v0(fixture_text: str) -> None:
    original = BundleV0.from_json(fixture_text)
    imported = ImportedV0(original, 2, (OpenPGPKey("A"), OpenPGPKey("B")))
    assert parse_bundle(imported.to_json()) == imported
    assert json.loads(imported.to_json())["original"] == json.loads(fixture_text)


def test_tampered_fixture_keyring_is_refused_with_the_reference_text(fixture_text: str) -> None:
    obj = json.loads(fixture_text)
    obj["keyring"] = obj["keyring"].replace("xjMEZVPx", "xjMEZVPy", 1)
    assert error_of_obj(obj) == CHECKSUM


# --- recognition (§5) -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "text", ["", "not json", "[]", '"x"', "null", '{"a": NaN}', '{"a": "\\ud800"}']
)
def test_text_that_is_not_a_json_object_is_unparsable(text: str) -> None:
    assert error_of(text) == "could not parse quorum bundle JSON"


def test_invalid_utf8_is_unparsable() -> None:
    with pytest.raises(BundleError, match="^could not parse quorum bundle JSON$"):
        parse_bundle(b'{"shardfile": "\xff"}')


@pytest.mark.parametrize("fmt", ["ImportedV1", "importedv0", 1, None, ["ImportedV0"]])
def test_a_format_other_than_imported_v0_is_unsupported(fmt: Any) -> None:
    assert error_of_obj(imported_dict(format=fmt)) == "unsupported bundle format"


def test_format_takes_precedence_over_data_and_shardfile() -> None:
    assert error_of_obj({**v1_dict(), **v0_dict(), "format": "x"}) == "unsupported bundle format"


@pytest.mark.parametrize("obj", [{}, {"label": {}, "keyring": "K"}, {"Data": {}}])
def test_an_object_without_format_data_or_shardfile_is_unrecognised(obj: Any) -> None:
    assert error_of_obj(obj) == "unrecognised quorum bundle (expected v0, V1 or ImportedV0)"


def test_each_generation_is_recognised() -> None:
    assert isinstance(parse_bundle(json.dumps(v0_dict())), BundleV0)
    assert isinstance(parse_bundle(json.dumps(v1_dict())), BundleV1)
    assert isinstance(parse_bundle(json.dumps(imported_dict())), ImportedV0)


def test_a_v1_bundle_with_v0_members_never_falls_back_to_v0() -> None:
    assert error_of_obj({**v0_dict(), "data": {}}) == "quorum bundle: unknown member 'label'"


def test_an_invalid_imported_v0_never_falls_back_to_its_original() -> None:
    obj = {**v0_dict(), "format": "ImportedV0"}
    assert error_of_obj(obj) == "quorum bundle: unknown member 'label'"


def test_generation_classes_do_not_accept_another_generation() -> None:
    with pytest.raises(BundleError, match="^quorum bundle: unknown member 'data'$"):
        BundleV0.from_json(json.dumps(v1_dict()))
    with pytest.raises(BundleError, match="^quorum bundle: unknown member 'label'$"):
        BundleV1.from_json(json.dumps(v0_dict()))
    with pytest.raises(BundleError, match="^unsupported bundle format$"):
        ImportedV0.from_json(json.dumps(imported_dict(format="V0")))
    with pytest.raises(BundleError, match="^could not parse quorum bundle JSON$"):
        BundleV1.from_json("[]")


# --- v0 (§2) --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["label", "keyring", "keyring_hash", "shardfile", "public_key", "necroproof"]
)
def test_every_v0_member_is_required(name: str) -> None:
    obj = v0_dict()
    del obj[name]
    if name == "shardfile":  # without it the text is no longer recognised as v0
        assert error_of_obj(obj) == "unrecognised quorum bundle (expected v0, V1 or ImportedV0)"
        with pytest.raises(BundleError, match="^quorum bundle: missing member 'shardfile'$"):
            BundleV0.from_json(json.dumps(obj))
    else:
        assert error_of_obj(obj) == f"quorum bundle: missing member '{name}'"


def test_unknown_member_in_v0_bundle_is_rejected() -> None:
    assert error_of_obj(v0_dict(extra=1)) == "quorum bundle: unknown member 'extra'"


def test_duplicate_member_in_v0_bundle_is_rejected() -> None:
    text = json.dumps(v0_dict())[:-1] + ', "shardfile": "S"}'
    assert error_of(text) == "quorum bundle: duplicate member 'shardfile'"


def test_duplicate_label_name_is_rejected() -> None:
    text = json.dumps(v0_dict()).replace('"name": "n"', '"name": "n", "name": "m"')
    assert error_of(text) == "quorum bundle: label has a duplicate member 'name'"


def test_v0_keyring_hash_mismatch_uses_the_reference_text() -> None:
    assert error_of_obj(v0_dict(keyring="K2")) == CHECKSUM


def test_v0_keyring_hash_has_a_fixed_length_of_32() -> None:
    obj = v0_dict(keyring_hash=list(hashlib.sha256(b"K").digest())[:31])
    assert error_of_obj(obj) == "quorum bundle: keyring_hash must be 32 bytes, got 31"


@pytest.mark.parametrize("element", [True, 1.0, "1", 256, -1])
def test_v0_keyring_hash_elements_must_be_integers_0_to_255(element: Any) -> None:
    digest = list(hashlib.sha256(b"K").digest())
    digest[5] = element
    assert error_of_obj(v0_dict(keyring_hash=digest)) == (
        "quorum bundle: keyring_hash element 5 must be an integer 0..255"
    )


def test_v0_necroproof_must_be_empty() -> None:
    assert error_of_obj(v0_dict(necroproof=[0])) == (
        "quorum bundle: v0 necroproof must be an empty array"
    )


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("keyring", ["K"], "quorum bundle: keyring must be a string"),
        ("shardfile", None, "quorum bundle: shardfile must be a string"),
        ("public_key", 1, "quorum bundle: public_key must be a string"),
        ("label", {"a": 1}, "quorum bundle: label value 'a' must be a string"),
        ("label", [], "quorum bundle: label must be an object of strings"),
        ("necroproof", {}, "quorum bundle: necroproof must be an array of integers 0..255"),
    ],
)
def test_v0_member_types_are_checked_naming_the_member(name: str, value: Any, message: str) -> None:
    assert error_of_obj(v0_dict(**{name: value})) == message


def test_keymaker_response_mode_ignores_unknown_v0_members() -> None:
    bundle = BundleV0.from_json(json.dumps(v0_dict(extra={"nested": [1]})), allow_unknown=True)
    assert bundle == BundleV0.from_json(json.dumps(v0_dict()))


def test_keymaker_response_mode_still_rejects_duplicates_in_ignored_members() -> None:
    text = json.dumps(v0_dict(extra=[{"a": 1}])).replace('"a": 1', '"a": 1, "a": 2')
    with pytest.raises(BundleError, match="^quorum bundle: extra has a duplicate member 'a'$"):
        BundleV0.from_json(text, allow_unknown=True)
    text = json.dumps(v0_dict())[:-1] + ', "keyring": "K"}'
    with pytest.raises(BundleError, match="^quorum bundle: duplicate member 'keyring'$"):
        BundleV0.from_json(text, allow_unknown=True)


def test_v0_serialisation_member_order() -> None:
    bundle = BundleV0.new({"a": "b"}, "K", "S", "P")
    assert list(json.loads(bundle.to_json())) == [
        "label", "keyring", "keyring_hash", "shardfile", "public_key", "necroproof",
    ]
    assert json.loads(bundle.to_json())["necroproof"] == []


def test_v0_constructor_refuses_a_wrong_keyring_hash() -> None:
    with pytest.raises(BundleError, match="^keyring checksum mismatch"):
        BundleV0({}, "K", bytes(32), "S", "P")


# --- V1 (§3) --------------------------------------------------------------------------------


def test_v1_bundle_exposes_holders_threshold_and_max() -> None:
    bundle = parse_bundle(json.dumps(v1_dict()))
    assert isinstance(bundle, BundleV1)
    assert bundle.holder_certs == ("A", "B", "C")
    assert (bundle.threshold, bundle.max, bundle.shardfile, bundle.public_key) == (2, 3, "S", "P")
    assert bundle.data.keyring[1] == WebAuthnKey(("c",), "B")
    assert bundle.necroproof == b"\x01\x02\x03"


@pytest.mark.parametrize("name", ["data", "necroproof"])
def test_every_v1_top_level_member_is_required(name: str) -> None:
    obj = v1_dict()
    del obj[name]
    if name == "data":  # without it the text is no longer recognised as V1
        assert error_of_obj(obj) == "unrecognised quorum bundle (expected v0, V1 or ImportedV0)"
        with pytest.raises(BundleError, match="^quorum bundle: missing member 'data'$"):
            BundleV1.from_json(json.dumps(obj))
    else:
        assert error_of_obj(obj) == "quorum bundle: missing member 'necroproof'"


@pytest.mark.parametrize(
    "name",
    ["version", "bundle_id", "label", "keyring", "threshold", "max", "shardfile", "public_key"],
)
def test_every_v1_data_member_is_required(name: str) -> None:
    obj = v1_dict()
    del obj["data"][name]
    assert error_of_obj(obj) == f"quorum bundle data: missing member '{name}'"


def test_historical_v1_without_threshold_and_max_names_the_missing_member() -> None:
    obj = v1_dict()
    del obj["data"]["threshold"], obj["data"]["max"]
    assert error_of_obj(obj) == "quorum bundle data: missing member 'threshold'"


def test_unknown_member_in_v1_top_level_and_data_is_rejected() -> None:
    assert error_of_obj({**v1_dict(), "x": 1}) == "quorum bundle: unknown member 'x'"
    assert error_of_obj(v1_dict(x=1)) == "quorum bundle data: unknown member 'x'"


def test_duplicate_member_in_bundle_data_is_rejected() -> None:
    text = json.dumps(v1_dict()).replace('"max": 3', '"max": 3, "max": 3')
    assert error_of(text) == "quorum bundle data: duplicate member 'max'"


def test_duplicate_member_in_v1_top_level_is_rejected() -> None:
    text = json.dumps(v1_dict())[:-1] + ', "necroproof": [1]}'
    assert error_of(text) == "quorum bundle: duplicate member 'necroproof'"


@pytest.mark.parametrize("version", ["V2", "v1", 1, None])
def test_v1_version_must_be_the_string_v1(version: Any) -> None:
    assert error_of_obj(v1_dict(version=version)) == 'quorum bundle data: version must be "V1"'


@pytest.mark.parametrize("length", [0, 15, 17])
def test_v1_bundle_id_must_be_16_bytes(length: int) -> None:
    assert error_of_obj(v1_dict(bundle_id=[1] * length)) == (
        f"quorum bundle data: bundle_id must be 16 bytes, got {length}"
    )


@pytest.mark.parametrize(
    ("threshold", "maximum", "holders"),
    [(0, 1, 1), (2, 1, 1), (1, 2, 1), (1, 0, 0), (1, 255, 255), (-1, 1, 1)],
)
def test_inconsistent_threshold_max_and_keyring_are_rejected(
    threshold: int, maximum: int, holders: int
) -> None:
    keyring = [{"OpenPGP": {"cert": str(i)}} for i in range(holders)]
    obj = v1_dict(threshold=threshold, max=maximum, keyring=keyring)
    assert error_of_obj(obj) == (
        f"quorum bundle data: threshold {threshold}, max {maximum} and {holders} keyring entries "
        "are inconsistent"
    )


@pytest.mark.parametrize(("name", "value"), [("threshold", True), ("max", 2.0), ("threshold", "1")])
def test_v1_threshold_and_max_must_be_json_integers(name: str, value: Any) -> None:
    message = f"quorum bundle data: {name} must be an integer"
    assert error_of_obj(v1_dict(**{name: value})) == message


def test_empty_v1_necroproof_uses_the_reference_text() -> None:
    obj = v1_dict()
    obj["necroproof"] = []
    assert error_of_obj(obj) == "keymaker quorum bundle does not include a necroproof"


def test_v1_data_that_is_not_an_object_is_named() -> None:
    assert error_of_obj({"data": [], "necroproof": [1]}) == "quorum bundle: data must be an object"


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"OpenPGP": {"cert": "C", "x": 1}}, "keyring entry 2 OpenPGP: unknown member 'x'"),
        ({"OpenPGP": {}}, "keyring entry 2 OpenPGP: missing member 'cert'"),
        ({"WebAuthn": {"cert": "C"}}, "keyring entry 2 WebAuthn: missing member 'credential'"),
        (
            {"WebAuthn": {"credential": [], "cert": "C", "y": 0}},
            "keyring entry 2 WebAuthn: unknown member 'y'",
        ),
        ({"Pgp": {"cert": "C"}}, "keyring entry 2: unknown member 'Pgp'"),
        ({}, "keyring entry 2: expected exactly one member, OpenPGP or WebAuthn"),
        ({"OpenPGP": {"cert": "C"}, "WebAuthn": {"credential": [], "cert": "C"}},
         "keyring entry 2: expected exactly one member, OpenPGP or WebAuthn"),
        ("C", "keyring entry 2 must be an object"),
        ({"OpenPGP": "C"}, "keyring entry 2 OpenPGP must be an object"),
        ({"OpenPGP": {"cert": 1}}, "keyring entry 2 OpenPGP: cert must be a string"),
        (
            {"WebAuthn": {"credential": "c", "cert": "C"}},
            "keyring entry 2 WebAuthn: credential must be an array of strings",
        ),
        (
            {"WebAuthn": {"credential": ["c", 1], "cert": "C"}},
            "keyring entry 2 WebAuthn: credential element 1 must be a string",
        ),
    ],
)
def test_keyring_entry_errors_name_the_holder_index_and_variant(entry: Any, message: str) -> None:
    obj = v1_dict()
    obj["data"]["keyring"][2] = entry
    assert error_of_obj(obj) == message


def test_duplicate_variant_in_a_keyring_entry_is_rejected() -> None:
    text = json.dumps(v1_dict()).replace(
        '{"OpenPGP": {"cert": "A"}}', '{"OpenPGP": {"cert": "A"}, "OpenPGP": {"cert": "A"}}'
    )
    assert error_of(text) == "keyring entry 0: duplicate member 'OpenPGP'"


def test_duplicate_member_inside_a_keyring_variant_is_rejected() -> None:
    text = json.dumps(v1_dict()).replace('"cert": "B"', '"cert": "B", "cert": "B"')
    assert error_of(text) == "keyring entry 1 WebAuthn: duplicate member 'cert'"


def test_v1_keyring_must_be_an_array() -> None:
    assert error_of_obj(v1_dict(keyring={})) == "quorum bundle data: keyring must be an array"


def test_v1_serialisation_member_order() -> None:
    obj = json.loads(parse_bundle(json.dumps(v1_dict())).to_json())
    assert list(obj) == ["data", "necroproof"]
    assert list(obj["data"]) == [
        "version", "bundle_id", "label", "keyring", "threshold", "max", "shardfile", "public_key",
    ]
    assert list(obj["data"]["keyring"][1]["WebAuthn"]) == ["credential", "cert"]


def test_v1_members_written_in_any_order_read_the_same() -> None:
    obj = v1_dict()
    shuffled = {"necroproof": obj["necroproof"], "data": dict(reversed(list(obj["data"].items())))}
    assert parse_bundle(json.dumps(shuffled)) == parse_bundle(json.dumps(obj))


def test_v1_constructors_enforce_the_invariants() -> None:
    data = BundleV1Data(bytes(16), {}, (OpenPGPKey("A"),), 1, 1, "S", "P")
    with pytest.raises(BundleError, match="^keymaker quorum bundle does not include a necroproof$"):
        BundleV1(data, b"")
    with pytest.raises(BundleError, match="bundle_id must be 16 bytes, got 4"):
        dataclasses.replace(data, bundle_id=bytes(4))
    with pytest.raises(BundleError, match="inconsistent"):
        dataclasses.replace(data, threshold=2)


# --- ImportedV0 (§4) ------------------------------------------------------------------------


def test_imported_v0_exposes_holders_threshold_and_max() -> None:
    bundle = parse_bundle(json.dumps(imported_dict(threshold=2)))
    assert isinstance(bundle, ImportedV0)
    assert bundle.holder_certs == ("A", "B")
    assert (bundle.threshold, bundle.max, bundle.shardfile, bundle.public_key) == (2, 2, "S", "P")
    assert bundle.original.keyring == "K"


@pytest.mark.parametrize("name", ["original", "threshold", "keyring"])
def test_every_imported_v0_member_is_required(name: str) -> None:
    obj = imported_dict()
    del obj[name]
    assert error_of_obj(obj) == f"quorum bundle: missing member '{name}'"


def test_unknown_and_duplicate_imported_v0_members_are_rejected() -> None:
    assert error_of_obj(imported_dict(x=1)) == "quorum bundle: unknown member 'x'"
    text = json.dumps(imported_dict())[:-1] + ', "threshold": 1}'
    assert error_of(text) == "quorum bundle: duplicate member 'threshold'"


def test_imported_v0_original_member_errors_are_not_prefixed() -> None:
    original = v0_dict()
    del original["keyring_hash"]
    assert error_of_obj(imported_dict(original=original)) == (
        "quorum bundle original: missing member 'keyring_hash'"
    )
    assert error_of_obj(imported_dict(original=v0_dict(x=1))) == (
        "quorum bundle original: unknown member 'x'"
    )
    text = json.dumps(imported_dict()).replace(
        '"public_key": "P"', '"public_key": "P", "public_key": "P"'
    )
    assert error_of(text) == "quorum bundle original: duplicate member 'public_key'"


def test_imported_v0_original_with_a_necroproof_is_refused() -> None:
    assert error_of_obj(imported_dict(original=v0_dict(necroproof=[1]))) == (
        "legacy bundle: expected historical V0 with an empty necroproof"
    )


def test_imported_v0_original_keyring_hash_mismatch_is_prefixed() -> None:
    obj = imported_dict(original=v0_dict(keyring="X"))
    assert error_of_obj(obj) == "legacy bundle: " + CHECKSUM


def test_imported_v0_accepts_only_openpgp_holders() -> None:
    keyring = [{"OpenPGP": {"cert": "A"}}, {"WebAuthn": {"credential": [], "cert": "B"}}]
    assert error_of_obj(imported_dict(keyring=keyring)) == (
        "legacy bundle: ImportedV0 supports only external PGP holders"
    )


@pytest.mark.parametrize(("threshold", "holders"), [(0, 2), (3, 2), (1, 0), (-1, 1), (1, 255)])
def test_imported_v0_threshold_outside_1_to_holders_is_refused(
    threshold: int, holders: int
) -> None:
    keyring = [{"OpenPGP": {"cert": str(i)}} for i in range(holders)]
    assert error_of_obj(imported_dict(threshold=threshold, keyring=keyring)) == (
        "legacy bundle: threshold, holder count or shard count is inconsistent"
    )


def test_imported_v0_keyring_entry_errors_are_not_prefixed() -> None:
    keyring = [{"OpenPGP": {"cert": "A"}}, {"OpenPGP": {"cert": "B", "x": 1}}]
    message = "keyring entry 1 OpenPGP: unknown member 'x'"
    assert error_of_obj(imported_dict(keyring=keyring)) == message


def test_imported_v0_threshold_must_be_an_integer() -> None:
    message = "quorum bundle: threshold must be an integer"
    assert error_of_obj(imported_dict(threshold="1")) == message


def test_imported_v0_serialisation_member_order() -> None:
    obj = json.loads(parse_bundle(json.dumps(imported_dict())).to_json())
    assert list(obj) == ["format", "original", "threshold", "keyring"]
    assert list(obj["original"]) == [
        "label", "keyring", "keyring_hash", "shardfile", "public_key", "necroproof",
    ]


def test_imported_v0_constructor_refuses_webauthn_holders() -> None:
    original = BundleV0.new({}, "K", "S", "P")
    with pytest.raises(BundleError, match="only external PGP holders"):
        ImportedV0(original, 1, (WebAuthnKey((), "A"),))  # type: ignore[arg-type]


# --- models ---------------------------------------------------------------------------------


def test_models_are_immutable() -> None:
    bundle = BundleV0.new({"a": "b"}, "K", "S", "P")
    with pytest.raises(dataclasses.FrozenInstanceError):
        bundle.keyring = "X"  # type: ignore[misc]
    with pytest.raises(TypeError):
        bundle.label["a"] = "c"  # type: ignore[index]


def test_bundle_from_dict_accepts_an_already_parsed_object() -> None:
    assert bundle_from_dict(loads(json.dumps(v1_dict()))) == parse_bundle(json.dumps(v1_dict()))


# --- properties -----------------------------------------------------------------------------

texts = st.text(max_size=40)
labels = st.dictionaries(st.text(max_size=10), texts, max_size=3)
openpgp_keys = st.builds(OpenPGPKey, texts)
webauthn_keys = st.builds(WebAuthnKey, st.lists(texts, max_size=3).map(tuple), texts)


@st.composite
def v0_bundles(draw: st.DrawFn) -> BundleV0:
    return BundleV0.new(draw(labels), draw(texts), draw(texts), draw(texts))


@st.composite
def v1_bundles(draw: st.DrawFn) -> BundleV1:
    keyring = tuple(draw(st.lists(openpgp_keys | webauthn_keys, min_size=1, max_size=5)))
    data = BundleV1Data(
        bundle_id=draw(st.binary(min_size=16, max_size=16)),
        label=draw(labels),
        keyring=keyring,
        threshold=draw(st.integers(1, len(keyring))),
        max=len(keyring),
        shardfile=draw(texts),
        public_key=draw(texts),
    )
    return BundleV1(data, draw(st.binary(min_size=1, max_size=64)))


@st.composite
def imported_bundles(draw: st.DrawFn) -> ImportedV0:
    keyring = tuple(draw(st.lists(openpgp_keys, min_size=1, max_size=5)))
    return ImportedV0(draw(v0_bundles()), draw(st.integers(1, len(keyring))), keyring)


any_bundle = v0_bundles() | v1_bundles() | imported_bundles()


@given(any_bundle)
def test_every_generation_round_trips_through_pretty_json(bundle: Bundle) -> None:
    text = bundle.to_json()
    again = parse_bundle(text)
    assert again == bundle
    assert again.to_json() == text
    assert type(bundle).from_json(text.encode("utf-8")) == bundle


@given(any_bundle)
def test_every_generation_round_trips_through_compact_json(bundle: Bundle) -> None:
    assert bundle_from_dict(loads(dumps_compact(bundle.to_dict()))) == bundle


@given(st.text())
def test_arbitrary_text_raises_nothing_but_bundle_error(text: str) -> None:
    try:
        parse_bundle(text)
    except BundleError:
        pass


finite_floats = st.floats(allow_nan=False, allow_infinity=False)
json_leaves = st.none() | st.booleans() | st.integers(-300, 300) | finite_floats | texts
json_values = st.recursive(
    json_leaves,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=10,
)


def _replace_somewhere(value: Any, replacement: Any, path: list[int]) -> Any:
    """Replace one node of a JSON value, chosen by successive indices, with `replacement`."""
    if not path or not isinstance(value, (dict, list)) or not value:
        return replacement
    if isinstance(value, dict):
        key = list(value)[path[0] % len(value)]
        return {**value, key: _replace_somewhere(value[key], replacement, path[1:])}
    index = path[0] % len(value)
    replaced = _replace_somewhere(value[index], replacement, path[1:])
    return [*value[:index], replaced, *value[index + 1 :]]


@given(any_bundle, json_values, st.lists(st.integers(0, 20), max_size=6))
def test_corrupted_bundles_raise_nothing_but_bundle_error(
    bundle: Bundle, junk: Any, path: list[int]
) -> None:
    corrupted = _replace_somewhere(bundle.to_dict(), junk, path)
    try:
        parse_bundle(dumps_compact(corrupted))
    except BundleError:
        pass
