"""locksmith-oneshot's export lines (enclave.md §5 steps 4, 6, 8), checked against dash itself."""

from __future__ import annotations

import os
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from locksmith.core.app.shellquote import (
    ENV_STRING_LIMIT, ExportError, check_name, check_value, quote, render_exports,
    reserved_name,
)

SH = "/bin/sh"  # dash on Debian: the shell the boot script runs under


def _eval_in_sh(exports: bytes, name: str) -> bytes:
    """What `eval "$exports"` gives a POSIX shell for $name (and that the export reaches env)."""
    script = 'eval "$exports"; printf %s "$' + name + '"; printf "\\0"; printenv ' + name
    result = subprocess.run([SH, "-c", script], env={"exports": os.fsdecode(exports),
                                                      "PATH": "/usr/bin:/bin"},
                            capture_output=True, check=True)
    shell_value, _, env_value = result.stdout.partition(b"\0")
    # printenv appends a newline
    assert env_value == shell_value + b"\n", "the variable is not exported with the same value"
    return shell_value


@pytest.mark.parametrize(("value", "line"), [
    ("it's", "export X='it'\\''s'\n"),
    ("", "export X=''\n"),
    ("$(id)", "export X='$(id)'\n"),
    ("line1\nline2", "export X='line1\nline2'\n"),
])
def test_spec_examples(value: str, line: str) -> None:
    assert render_exports({"X": value}) == line.encode()


def test_quote_leaves_every_other_character_literal() -> None:
    assert quote("a\\b`c`$HOME\"#!*?[x] ~") == "'a\\b`c`$HOME\"#!*?[x] ~'"


def test_exports_are_sorted_bytewise_in_one_block() -> None:
    out = render_exports({"b": "1", "B": "2", "_a": "3", "A_1": "4", "A": "5"})
    assert out == b"export A='5'\nexport A_1='4'\nexport B='2'\nexport _a='3'\nexport b='1'\n"


@pytest.mark.parametrize("name", ["PATH", "IFS", "ENV", "BASH_ENV", "LD_PRELOAD", "LD_AUDIT",
                                  "PYTHONPATH", "PYTHONHOME", "BASH_FUNC_x", "SHELLOPTS", "PS4"])
def test_names_that_change_the_boot_shell_loader_or_runtime_are_reserved(name: str) -> None:
    with pytest.raises(ExportError, match="^reserved name: "):
        check_name(name)


@pytest.mark.parametrize("name", ["Path", "path", "PATHS", "MY_PATH", "LD", "PYTHO", "LDAP_URL",
                                  "ENVIRONMENT", "DATABASE_URL", "exports"])
def test_ordinary_names_that_resemble_reserved_ones_are_allowed(name: str) -> None:
    check_name(name)


@pytest.mark.parametrize("name", ["A.B", ".hidden", "1X", "", "A-B", "É", "A B", "x\n"])
def test_invalid_names(name: str) -> None:
    with pytest.raises(ExportError, match="^not a valid shell variable name$"):
        check_name(name)
    with pytest.raises(ExportError):
        render_exports({name: "v"})


def test_value_checks_in_order() -> None:
    with pytest.raises(ExportError, match="^value is not valid UTF-8$"):
        check_value("X", b"\xff\x00")
    with pytest.raises(ExportError, match="^value contains a NUL character$"):
        check_value("X", b"a\x00b")
    limit = ENV_STRING_LIMIT - len("X") - 1
    assert check_value("X", b"a" * (limit - 1)) == "a" * (limit - 1)
    with pytest.raises(ExportError, match="^value too large for a process environment$"):
        check_value("X", b"a" * limit)
    # the limit counts bytes, not characters
    with pytest.raises(ExportError, match="too large"):
        check_value("X", "é".encode() * (limit // 2 + 1))


def test_values_are_not_trimmed() -> None:
    assert check_value("X", b"  padded \n") == "  padded \n"


TRICKY = [
    "it's \"quoted\" # not a comment", "$(touch /tmp/pwned) `id` ${HOME} $((1+1))",
    "'", "''", "'\\''", "\\", "a\\nb", "\n", "\n\nlead and trail\n\n", "grüße ☃ 日本 🗝",
    "\t\r\x1b[31m", "-----BEGIN KEY-----\nline two\n  indented -----END KEY-----", "x=y; z",
    "*", "~", "!", "%s%n", "\u2028\u0085",
]


@pytest.mark.parametrize("value", TRICKY)
def test_tricky_values_survive_dash_byte_exactly(value: str) -> None:
    assert _eval_in_sh(render_exports({"X": value}), "X") == value.encode()


@settings(max_examples=150, deadline=None)
@given(st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\0"),
               max_size=60))
def test_any_value_without_nul_survives_dash(value: str) -> None:
    assert _eval_in_sh(render_exports({"NAME": value}), "NAME") == value.encode()


@settings(max_examples=30, deadline=None)
@given(st.dictionaries(st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True)
                       .filter(lambda n: not reserved_name(n) and n not in (
                           "exports", "PS1", "PS2", "PPID", "OPTIND", "HOME", "PWD")),
                       st.text(st.characters(blacklist_categories=["Cs"],
                                             blacklist_characters="\0"), max_size=20),
                       min_size=1, max_size=5))
def test_several_exports_evaluate_together(values: dict[str, str]) -> None:
    exports = render_exports(values)
    for name, value in values.items():
        assert _eval_in_sh(exports, name) == value.encode()
