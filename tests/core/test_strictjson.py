"""Strict JSON reading and the pretty/compact writers of formats.md §1."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from locksmith.core.strictjson import (
    DuplicateMemberError,
    JSONObject,
    StrictJSONError,
    check_members,
    dumps_compact,
    dumps_pretty,
    first_duplicate,
    loads,
    read_bytes,
    read_int,
    read_list,
    read_object,
    read_str,
    read_str_list,
    read_str_map,
)

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=25,
)


# --- reading --------------------------------------------------------------------------------


def test_duplicate_member_at_top_level_is_rejected_with_its_name() -> None:
    with pytest.raises(DuplicateMemberError) as info:
        loads('{"a": 1, "b": 2, "a": 1}')
    assert str(info.value) == "duplicate member 'a'"
    assert info.value.name == "a"


def test_duplicate_member_in_a_nested_object_is_rejected() -> None:
    with pytest.raises(DuplicateMemberError, match="duplicate member 'x'"):
        loads('{"outer": [1, {"x": true, "x": true}]}')


def test_recording_mode_keeps_duplicates_for_the_schema_reader() -> None:
    value = loads('{"a": 1, "a": 2, "b": {"c": 1, "c": 1, "c": 1}}', duplicates="record")
    assert isinstance(value, JSONObject)
    assert value.duplicates == ("a",)
    assert value["b"].duplicates == ("c",)
    assert first_duplicate(value["b"]) == "c"


def test_first_duplicate_finds_one_hidden_deep_inside_arrays() -> None:
    value = loads('{"ok": [[{"fine": 1}], [{"d": 1, "d": 2}]]}', duplicates="record")
    assert value.duplicates == ()
    assert first_duplicate(value) == "d"
    assert first_duplicate(loads('{"a": [1, {"b": 2}]}', duplicates="record")) is None


@pytest.mark.parametrize("text", ["NaN", "[Infinity]", '{"a": -Infinity}'])
def test_nan_and_infinity_are_rejected(text: str) -> None:
    with pytest.raises(StrictJSONError, match="is not a JSON number"):
        loads(text)


def test_a_number_that_overflows_a_float_is_rejected() -> None:
    with pytest.raises(StrictJSONError, match="out of range"):
        loads("[1e400]")


def test_an_integer_with_too_many_digits_is_a_strict_json_error() -> None:
    with pytest.raises(StrictJSONError):
        loads("1" * 5000)


@pytest.mark.parametrize(
    "text", ['"\\ud800"', '["a\\udc00b"]', '{"\\udbff": 1}', '"\\ude00\\ud83d"']
)
def test_unpaired_surrogate_escapes_are_rejected(text: str) -> None:
    with pytest.raises(StrictJSONError, match="unpaired surrogate"):
        loads(text)


def test_a_surrogate_pair_escape_is_one_character() -> None:
    assert loads('"\\ud83d\\ude00"') == "\U0001f600"


def test_bytes_must_be_utf8() -> None:
    with pytest.raises(StrictJSONError, match="invalid UTF-8 at byte 2"):
        loads(b'"a\xff"')


def test_bytes_are_never_sniffed_as_utf16() -> None:
    with pytest.raises(StrictJSONError):
        loads('{"a": 1}'.encode("utf-16-le"))


def test_a_byte_order_mark_is_rejected() -> None:
    with pytest.raises(StrictJSONError):
        loads(b"\xef\xbb\xbf{}")


def test_non_ascii_utf8_bytes_are_decoded() -> None:
    assert loads('{"é": "€"}'.encode()) == {"é": "€"}


def test_deep_nesting_is_a_strict_json_error_not_a_recursion_error() -> None:
    with pytest.raises(StrictJSONError):
        loads("[" * 100_000 + "]" * 100_000)


@pytest.mark.parametrize("text", ['"a\x01"', '{"a": 1} x', "", "{'a': 1}", "[1,]", "01"])
def test_text_outside_rfc_8259_is_rejected(text: str) -> None:
    with pytest.raises(StrictJSONError):
        loads(text)


@given(st.text())
def test_arbitrary_text_raises_nothing_but_strict_json_error(text: str) -> None:
    try:
        loads(text)
    except StrictJSONError:
        pass


@given(st.binary())
def test_arbitrary_bytes_raise_nothing_but_strict_json_error(data: bytes) -> None:
    try:
        loads(data, duplicates="record")
    except StrictJSONError:
        pass


@given(json_values, st.data())
def test_mutated_json_raises_nothing_but_strict_json_error(value: Any, data: st.DataObject) -> None:
    text = dumps_compact(value)
    cut = data.draw(st.integers(0, len(text)))
    noise = data.draw(
        st.sampled_from(['"', "{", "}", "[", ",", ":", "\\u", "\\ud800", "1e999", "-", ""])
    )
    try:
        loads(text[:cut] + noise + text[cut + data.draw(st.integers(0, 2)) :])
    except StrictJSONError:
        pass


@given(json_values)
def test_both_writers_round_trip_through_the_strict_reader(value: Any) -> None:
    assert loads(dumps_compact(value)) == value
    assert loads(dumps_pretty(value)) == value
    assert loads(dumps_pretty(value).encode("utf-8")) == value


# --- field helpers --------------------------------------------------------------------------


def test_read_bytes_accepts_integers_0_to_255() -> None:
    assert read_bytes([0, 1, 255], "f") == b"\x00\x01\xff"
    assert read_bytes([], "f") == b""


@pytest.mark.parametrize("element", [True, False, 1.0, "1", -1, 256, None, [1]])
def test_read_bytes_rejects_anything_but_an_integer_0_to_255(element: Any) -> None:
    with pytest.raises(StrictJSONError) as info:
        read_bytes([7, element], "quorum bundle data: bundle_id")
    assert str(info.value) == "quorum bundle data: bundle_id element 1 must be an integer 0..255"


def test_read_bytes_rejects_json_parsed_look_alikes() -> None:
    for text in ("[1.0]", "[1e0]", "[true]", '["1"]'):
        with pytest.raises(StrictJSONError, match="keyring_hash element 0"):
            read_bytes(loads(text), "keyring_hash")


def test_read_bytes_rejects_a_wrong_fixed_length_naming_the_field() -> None:
    with pytest.raises(StrictJSONError) as info:
        read_bytes(list(range(15)), "quorum bundle data: bundle_id", length=16)
    assert str(info.value) == "quorum bundle data: bundle_id must be 16 bytes, got 15"


@pytest.mark.parametrize("value", ["AAEC", b"\x00", {"0": 1}, None, 3])
def test_read_bytes_rejects_a_non_array(value: Any) -> None:
    with pytest.raises(StrictJSONError) as info:
        read_bytes(value, "necroproof")
    assert str(info.value) == "necroproof must be an array of integers 0..255"


@pytest.mark.parametrize("value", [True, 1.0, "1", None])
def test_read_int_rejects_booleans_floats_and_strings(value: Any) -> None:
    with pytest.raises(StrictJSONError) as info:
        read_int(value, "quorum bundle data: threshold")
    assert str(info.value) == "quorum bundle data: threshold must be an integer"


def test_read_int_accepts_a_json_integer() -> None:
    assert read_int(loads("254"), "t") == 254


def test_scalar_and_container_helpers_name_the_field() -> None:
    cases = [
        (lambda: read_str(1, "keyring"), "keyring must be a string"),
        (lambda: read_list({}, "keyring"), "keyring must be an array"),
        (lambda: read_object([], "quorum bundle: data"), "quorum bundle: data must be an object"),
        (lambda: read_str_list("x", "credential"), "credential must be an array of strings"),
        (lambda: read_str_list(["a", 1], "credential"), "credential element 1 must be a string"),
        (lambda: read_str_map([], "label"), "label must be an object of strings"),
        (lambda: read_str_map({"k": 1}, "label"), "label value 'k' must be a string"),
    ]
    for call, message in cases:
        with pytest.raises(StrictJSONError) as info:
            call()
        assert str(info.value) == message


def test_read_str_map_rejects_a_recorded_duplicate() -> None:
    with pytest.raises(StrictJSONError) as info:
        read_str_map(loads('{"k": "a", "k": "a"}', duplicates="record"), "quorum bundle: label")
    assert str(info.value) == "quorum bundle: label has a duplicate member 'k'"


def test_check_members_reports_duplicate_then_unknown_then_missing() -> None:
    obj = loads('{"z": 1, "a": 1, "a": 2}', duplicates="record")
    with pytest.raises(StrictJSONError, match="^ctx: duplicate member 'a'$"):
        check_members(obj, "ctx", ("a", "b"))
    with pytest.raises(StrictJSONError, match="^ctx: unknown member 'z'$"):
        check_members(loads('{"z": 1, "a": 1}'), "ctx", ("a", "b"))
    with pytest.raises(StrictJSONError, match="^ctx: missing member 'b'$"):
        check_members(loads('{"a": 1}'), "ctx", ("a", "b", "c"))
    check_members(loads('{"a": 1, "b": 2, "z": 3}'), "ctx", ("a", "b"), allow_unknown=True)


# --- writing --------------------------------------------------------------------------------


def test_pretty_writer_uses_the_reference_layout() -> None:
    value = {
        "label": {"name": "x"}, "list": [1, [2, 3]], "empty": [], "obj": {}, "t": True, "n": None,
    }
    assert dumps_pretty(value) == (
        "{\n"
        '  "label": {\n'
        '    "name": "x"\n'
        "  },\n"
        '  "list": [\n'
        "    1,\n"
        "    [\n"
        "      2,\n"
        "      3\n"
        "    ]\n"
        "  ],\n"
        '  "empty": [],\n'
        '  "obj": {},\n'
        '  "t": true,\n'
        '  "n": null\n'
        "}"
    )


def test_pretty_writer_has_no_trailing_newline_or_trailing_spaces() -> None:
    text = dumps_pretty({"a": [1, 2], "b": {"c": "d"}})
    assert not text.endswith("\n")
    assert all(line == line.rstrip() for line in text.split("\n"))


def test_writers_escape_exactly_like_serde_json() -> None:
    # serde_json escapes `"`, `\`, the five short C0 forms and other C0 controls as lowercase
    # \u00xx; everything else (including `/`, DEL, U+2028 and non-ASCII) is written raw.
    value = '"\\/\b\f\n\r\t\x00\x1f\x7f é€\u2028\U0001f600'
    expected = '"\\"\\\\/\\b\\f\\n\\r\\t\\u0000\\u001f\x7f é€\u2028\U0001f600"'
    assert dumps_pretty(value) == expected
    assert dumps_compact(value) == expected


def test_compact_writer_has_no_whitespace() -> None:
    value = {"a": 1, "b": [1, 2], "c": {"d": "e f"}}
    assert dumps_compact(value) == '{"a":1,"b":[1,2],"c":{"d":"e f"}}'


def test_writers_keep_the_callers_member_order() -> None:
    assert dumps_compact({"z": 1, "a": 2}) == '{"z":1,"a":2}'


def test_writers_refuse_nan() -> None:
    with pytest.raises(ValueError):
        dumps_compact(float("nan"))


def test_pretty_writer_matches_json_dumps_with_indent_2() -> None:
    value = {"k": ["a", {"b": []}], "é": "\n"}
    assert dumps_pretty(value) == json.dumps(value, indent=2, ensure_ascii=False)
