"""The `.env` parser against every rule and every vector of cli.md §6."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from locksmith.core.app.envfile import EnvAssignment, EnvFileError, EnvParse, is_env_key, parse_env

P = ".env"


def values(text: str | bytes) -> dict[str, str]:
    return parse_env(text, P).as_dict()


def warnings(text: str | bytes) -> tuple[str, ...]:
    return parse_env(text, P).warnings


# --- the spec's vector table, row by row -------------------------------------------------------

SPEC_TABLE = [
    ('export FOO="bar"', "FOO", "bar"),
    ("BAR='baz'", "BAR", "baz"),
    ("EMPTY=", "EMPTY", ""),
    ('INLINE="value # preserved"', "INLINE", "value # preserved"),
    ('PADDED = " spaced " ', "PADDED", " spaced "),
    ('ESCAPED="say \\"hi\\""', "ESCAPED", 'say "hi"'),
    ('COMMENTED="bar" # trailing comment', "COMMENTED", "bar"),
    ("A=foo bar", "A", "foo"),
    ("X=a#b", "X", "a#b"),
    ("X=#c", "X", ""),
    ("Q='it'\"'\"'s'", "Q", "it's"),
    ("S=$HOME", "S", "$HOME"),
    ('K="line1\nline2"', "K", "line1\nline2"),
    ("K='a \n  b'", "K", "a \n  b"),
]


@pytest.mark.parametrize(("source", "key", "value"), SPEC_TABLE, ids=[r[0] for r in SPEC_TABLE])
def test_spec_vector_table_row(source: str, key: str, value: str) -> None:
    assert values(source) == {key: value}


def test_spec_vector_unquoted_value_with_space_warns() -> None:
    assert warnings("A=foo bar") == (
        ".env:1: A: unquoted value stops at the first space; quote it to keep the rest",
    )


@pytest.mark.parametrize(
    ("source", "key", "value"),
    [r for r in SPEC_TABLE if r[0] != "A=foo bar"],
    ids=[r[0] for r in SPEC_TABLE if r[0] != "A=foo bar"],
)
def test_spec_vector_rows_other_than_the_unquoted_space_give_no_warning(
    source: str, key: str, value: str
) -> None:
    assert warnings(source) == ()


def test_spec_vector_bad_key_and_missing_equals_are_skipped_with_warnings() -> None:
    result = parse_env("BAD-KEY=no\nexport MISSING_EQUALS\n", P)
    assert result.assignments == ()
    assert result.warnings == (
        ".env:1: ignored (invalid variable name)",
        ".env:2: ignored (no '=')",
    )


def test_spec_vectors_all_in_one_file() -> None:
    text = "\n".join(row[0] for row in SPEC_TABLE) + "\nBAD-KEY=no\nexport MISSING_EQUALS\n"
    result = parse_env(text, P)
    assert [a.key for a in result.assignments] == [
        "FOO", "BAR", "EMPTY", "INLINE", "PADDED", "ESCAPED", "COMMENTED", "A", "X", "Q", "S", "K",
    ]
    assert result.as_dict()["X"] == ""
    assert result.as_dict()["K"] == "a \n  b"


# --- rule 1: encoding and line ends ------------------------------------------------------------


def test_invalid_utf8_is_an_error_naming_the_path() -> None:
    with pytest.raises(EnvFileError) as info:
        parse_env(b"A=\xff\xfe\n", "conf/.env")
    assert str(info.value) == "conf/.env: not valid UTF-8"


def test_bytes_input_is_decoded_as_utf8() -> None:
    assert values("A=caf\u00e9 \u2603\n".encode()) == {"A": "caf\u00e9"}


def test_leading_bom_is_dropped() -> None:
    assert values(b"\xef\xbb\xbfA=1\n") == {"A": "1"}
    assert values("\ufeffA=1") == {"A": "1"}


def test_crlf_is_treated_as_lf() -> None:
    assert values(b"A=1\r\nB='x\r\ny'\r\nC=\"p\\\r\nq\"\r\n") == {"A": "1", "B": "x\ny", "C": "pq"}


# --- rule 2: skipped lines and raw multi-line values -------------------------------------------


def test_blank_and_comment_lines_are_skipped_even_when_indented() -> None:
    result = parse_env("\n   \n\t# comment\n  # A=1\nB=2\n", P)
    assert result.as_dict() == {"B": "2"}
    assert result.warnings == ()
    assert result.assignments[0].line == 5


def test_indented_assignment_is_read() -> None:
    assert values(" \t A=1") == {"A": "1"}


def test_lines_consumed_by_a_multiline_value_are_not_parsed_as_lines() -> None:
    text = "K='first\nNOT=assigned\n# not a comment\n'\nL=2\n"
    result = parse_env(text, P)
    assert result.as_dict() == {"K": "first\nNOT=assigned\n# not a comment\n", "L": "2"}
    assert result.warnings == ()


def test_line_numbers_count_lines_inside_multiline_values() -> None:
    result = parse_env('A="1\n2\n3"\nno equals here\nB=x\n', P)
    assert result.warnings == (".env:4: ignored (no '=')",)
    assert [(a.key, a.line) for a in result.assignments] == [("A", 1), ("B", 5)]


# --- rule 3: export ----------------------------------------------------------------------------


def test_export_followed_by_tab_is_dropped() -> None:
    assert values("export\t\tFOO=1") == {"FOO": "1"}


def test_export_glued_to_the_name_is_part_of_the_key() -> None:
    assert values("exportFOO=1") == {"exportFOO": "1"}


def test_export_itself_can_be_a_key() -> None:
    assert values("export=1") == {"export": "1"}


# --- rules 4 and 5: '=' and the key ------------------------------------------------------------


def test_line_without_equals_is_ignored_with_warning() -> None:
    assert parse_env("A=1\njust words\n", "x/.env").warnings == ("x/.env:2: ignored (no '=')",)


def test_key_is_stripped_around_the_equals_sign() -> None:
    assert values("SPACED =x") == {"SPACED": "x"}
    assert values("  SPACED\t=  x") == {"SPACED": "x"}


@pytest.mark.parametrize(
    "line", ["BAD-KEY=no", "1A=x", "=x", "A B=x", "\u00c9T\u00c9=x", "A\u0661=x", "K\u212a=x"]
)
def test_invalid_variable_name_is_ignored_with_warning(line: str) -> None:
    result = parse_env(line, P)
    assert result.assignments == ()
    assert result.warnings == (".env:1: ignored (invalid variable name)",)


def test_first_equals_splits_key_and_value() -> None:
    assert values("A=b=c") == {"A": "b=c"}


@pytest.mark.parametrize("name", ["A", "_", "_a1", "abc_DEF_123", "Z9"])
def test_ascii_names_are_env_keys(name: str) -> None:
    assert is_env_key(name)


@pytest.mark.parametrize(
    "name", ["", "1A", "A-B", "A B", "\u00e9", "A\u0661", "\u212a", "A\n", "A\u00b2", "\uff21"]
)
def test_non_ascii_or_malformed_names_are_not_env_keys(name: str) -> None:
    assert not is_env_key(name)


# --- rule 6: the value word --------------------------------------------------------------------


def test_spaces_and_tabs_after_equals_are_skipped() -> None:
    assert values("A= \t 'v'") == {"A": "v"}


def test_single_quotes_keep_everything_literal() -> None:
    assert values("A='$x \\n \"q\" # c \\'") == {"A": '$x \\n "q" # c \\'}


def test_double_quote_backslash_escapes_only_the_five_characters() -> None:
    assert values('A="\\$ \\` \\" \\\\ \\a \\n \\\''+'"') == {"A": "$ ` \" \\ \\a \\n \\'"}


def test_double_quoted_a_backslash_n_b_keeps_the_backslash() -> None:
    assert values('A="a\\nb"') == {"A": "a\\nb"}


def test_double_quote_backslash_newline_is_removed() -> None:
    assert values('A="one \\\ntwo"') == {"A": "one two"}


def test_unquoted_backslash_makes_the_next_character_literal() -> None:
    assert values("A=a\\ b\\'c\\\\") == {"A": "a b'c\\"}


def test_unquoted_backslash_newline_continues_the_word_on_the_next_line() -> None:
    result = parse_env("A=abc\\\ndef ghi\nB=1\n", P)
    assert result.as_dict() == {"A": "abcdef", "B": "1"}
    assert result.warnings == (
        ".env:1: A: unquoted value stops at the first space; quote it to keep the rest",
    )


def test_hash_starting_the_word_is_a_comment_even_after_spaces() -> None:
    assert values("A=   # nothing here") == {"A": ""}
    assert warnings("A=   # nothing here") == ()


def test_hash_after_a_quoted_part_is_literal() -> None:
    assert values('A=""#c') == {"A": "#c"}


def test_quoted_and_unquoted_parts_concatenate() -> None:
    assert values("A=a\"b c\"'d'") == {"A": "ab cd"}


def test_word_ends_at_tab_and_rest_of_line_is_ignored() -> None:
    assert values("A=foo\tbar") == {"A": "foo"}


def test_quoted_value_followed_by_text_is_cut_without_warning() -> None:
    result = parse_env('X="bar" baz', P)
    assert result.as_dict() == {"X": "bar"}
    assert result.warnings == ()


def test_unquoted_value_followed_by_comment_does_not_warn() -> None:
    result = parse_env("A=foo # note", P)
    assert result.as_dict() == {"A": "foo"}
    assert result.warnings == ()


def test_rest_of_line_after_a_multiline_quote_is_ignored() -> None:
    assert values("A='x\ny' trailing\nB=2") == {"A": "x\ny", "B": "2"}


@pytest.mark.parametrize("text", ["$HOME", "$(rm -rf /)", "`id`", "${X:-y}"])
def test_no_expansion_or_substitution(text: str) -> None:
    assert values(f"A={text.replace(' ', chr(92) + ' ')}") == {"A": text}
    assert values(f'A="{text}"') == {"A": text}


def test_trailing_spaces_after_quoted_value_are_not_part_of_it() -> None:
    assert values("A='v'   \n") == {"A": "v"}


# --- rule 7: fatal errors ----------------------------------------------------------------------


def test_unterminated_single_quote_reports_the_line_where_the_value_started() -> None:
    with pytest.raises(EnvFileError) as info:
        parse_env("A=1\nB='open\nmore\n", "p/.env")
    assert str(info.value) == "p/.env:2: unterminated single quote"


def test_unterminated_double_quote_reports_the_line_where_the_value_started() -> None:
    with pytest.raises(EnvFileError) as info:
        parse_env('\n\nC="open\\"\n', P)
    assert str(info.value) == ".env:3: unterminated double quote"


def test_backslash_at_end_of_file_inside_double_quotes_is_unterminated() -> None:
    with pytest.raises(EnvFileError, match=r"^\.env:1: unterminated double quote$"):
        parse_env('A="x\\', P)


def test_trailing_backslash_at_end_of_file_is_dangling() -> None:
    with pytest.raises(EnvFileError) as info:
        parse_env("A=1\nB=abc\\", P)
    assert str(info.value) == ".env:2: dangling backslash"


def test_backslash_newline_at_end_of_file_is_not_dangling() -> None:
    assert values("A=abc\\\n") == {"A": "abc"}


def test_env_file_error_is_a_value_error() -> None:
    assert issubclass(EnvFileError, ValueError)


# --- rule 8: repeated keys ---------------------------------------------------------------------


def test_last_value_wins_in_order_of_first_appearance_with_one_warning() -> None:
    result = parse_env("A=1\nB=2\nA=3\nA=4\n", P)
    assert result.assignments == (EnvAssignment("A", "4", 4), EnvAssignment("B", "2", 2))
    assert result.warnings == (".env: A assigned more than once; using the last value",)


def test_warnings_keep_file_order() -> None:
    result = parse_env("A=1\nnope\nA=2\nB-C=1\n", P)
    assert result.warnings == (
        ".env:2: ignored (no '=')",
        ".env: A assigned more than once; using the last value",
        ".env:4: ignored (invalid variable name)",
    )


def test_values_are_not_shown_in_repr() -> None:
    result = parse_env("TOKEN='hunter2'", P)
    assert "hunter2" not in repr(result)
    assert isinstance(result, EnvParse)


def test_empty_input_has_no_assignments() -> None:
    assert parse_env("", P) == EnvParse(assignments=(), warnings=())
    assert parse_env(b"", P) == EnvParse(assignments=(), warnings=())


# --- properties --------------------------------------------------------------------------------

SHELLISH = st.lists(
    st.sampled_from([*"AB_x1=' \"\\#\n\t\r$`e\ufeff", "export ", "\r\n"])
).map("".join)


@settings(max_examples=300)
@given(st.one_of(st.text(), SHELLISH))
def test_parser_raises_nothing_but_env_file_error_on_any_text(text: str) -> None:
    try:
        parse_env(text, P)
    except EnvFileError:
        pass


@settings(max_examples=200)
@given(st.binary())
def test_parser_raises_nothing_but_env_file_error_on_any_bytes(data: bytes) -> None:
    try:
        parse_env(data, P)
    except EnvFileError:
        pass


@given(st.text().filter(lambda s: "'" not in s and "\r\n" not in s))
def test_single_quoted_value_round_trips_for_any_text_without_a_quote(value: str) -> None:
    result = parse_env(f"KEY='{value}'\nNEXT=1\n", P)
    assert result.as_dict() == {"KEY": value, "NEXT": "1"}


@given(st.text().filter(lambda s: "\r\n" not in s))
def test_double_quoted_value_with_escapes_round_trips_for_any_text(value: str) -> None:
    escaped = "".join("\\" + c if c in '$`"\\' else c for c in value)
    assert parse_env(f'KEY="{escaped}"', P).as_dict() == {"KEY": value}
