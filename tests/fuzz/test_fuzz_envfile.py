"""The `.env` parser (locksmith/core/app/envfile.py) under hostile input.

Allowed to escape: `EnvFileError` only. The parser reads the developer's secrets file before
they are encrypted; a crash would lose the exact error text, and a slow path would hang
`caution secret encrypt`.

tests/core/app/test_envfile.py already feeds arbitrary text, bytes and a shell-ish alphabet; this
adds character-level mutations of a realistic file (every quoting form, `export`, comments,
CRLF, a BOM, multi-line values) and large inputs with a time and memory bound.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from locksmith.core.app.envfile import EnvFileError, parse_env
from tests.fuzz.strategies import bounded, fuzz, mutated, only, outcome, text_mutated

ALLOWED = (EnvFileError,)
SAMPLE = (
    "\ufeff# secrets for the example app\r\n"
    "export DATABASE_URL='postgres://u:p@db/app'\n"
    'API_KEY="a\\"b\\\\c\\$d `e`"   # trailing comment\n'
    "MULTI='line one\nline two'\n"
    'DOUBLE="first\\\nsecond"\n'
    "PLAIN=value with spaces\n"
    "EMPTY=\n"
    "HASH=#not a value\n"
    "  INDENTED = spaced \n"
    "BACK=a\\ b\\\n"
    "not an assignment\n"
    "1BAD=x\n"
    "API_KEY=again\n"
)
ALPHABET = "'\"\\#=$` \t\nAZ_az09\r\ufeffé"


def _parse(data: str | bytes) -> None:
    result = only(ALLOWED, parse_env, data, ".env")
    outcome("refused" if result is None else f"{min(len(result.assignments), 3)}+ assignments")
    if result is not None:
        assert all(a.line >= 1 for a in result.assignments)


def test_fuzz_the_sample_parses() -> None:
    result = parse_env(SAMPLE, ".env")
    assert result.as_dict()["API_KEY"] == "again" and result.warnings


@fuzz(deadline_ms=500, scale=4)
@given(st.one_of(text_mutated(SAMPLE, alphabet=ALPHABET, max_edits=6),
                 mutated(SAMPLE.encode("utf-8"), max_edits=6)))
def test_fuzz_mutated_env_files_raise_only_env_file_errors(data: str | bytes) -> None:
    _parse(data)


@fuzz(deadline_ms=500, scale=2)
@given(st.lists(st.sampled_from([
    "A=", "export ", "B='", "'", '"', "\\", "\\\n", "\n", "\r\n", "#", " ", "=", "x", "$",
    "C=\"", "\ufeff", "export\t", "D=\\", "é",
]), max_size=40).map("".join))
def test_fuzz_token_soup_raises_only_env_file_errors(text: str) -> None:
    _parse(text)


def test_fuzz_large_env_files_parse_in_bounded_time_and_memory() -> None:
    """Half a MiB in the shapes that stress a scanner: many lines, one huge quoted value, one
    huge unterminated quote, runs of continuations and escapes, repeated keys. Time is linear
    (about 1 µs per byte here); memory, checked where values are built character by
    character, stays a small multiple of the input."""
    size = 1 << 19
    by_lines = ["A=1\n" * (size // 4), "".join(f"K{i % 1000}=v\n" for i in range(size // 8)),
                "# " + "x" * size, "A=" + "\\\n" * (size // 2) + "x"]
    by_value = ["A='" + "x" * size + "'\n", 'A="' + "\\\\x" * (size // 3),
                'A="' + '\\"' * (size // 2) + '"']
    for text in by_lines:
        bounded(_parse, text, seconds=3.0)
    for text in by_value:
        bounded(_parse, text, seconds=3.0, peak_bytes=32 * size)
