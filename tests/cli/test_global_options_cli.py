"""cli.md §1 conventions that belong to no single command: the `secrets` alias, `--workdir` /
`CAUTION_WORKDIR`, `-v/--verbose` and the one-line `error: <message>` shape of usage errors."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.cli.clirun import caution
from tests.conftest import CAUTION_V0

Capsys = pytest.CaptureFixture[str]
FIXTURE = CAUTION_V0 / "bundle.json"


def test_secrets_is_an_alias_of_secret(capsys: Capsys) -> None:
    plain = caution(capsys, "secret", "inspect", str(FIXTURE), "--json")
    alias = caution(capsys, "secrets", "inspect", str(FIXTURE), "--json")
    assert (alias.code, alias.out, alias.err) == (plain.code, plain.out, plain.err)
    assert alias.code == 0 and alias.out


def test_caution_workdir_environment_variable_is_the_workdir(
        capsys: Capsys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text("TOKEN=abc\n")
    monkeypatch.setenv("CAUTION_WORKDIR", str(tmp_path))
    result = caution(capsys, "secret", "encrypt", "--bundle", str(FIXTURE))
    assert result.code == 0, result.err
    assert (tmp_path / ".caution" / "secrets" / "TOKEN.asc").is_file()


@pytest.mark.parametrize("args,message", [
    (["secret", "keygen", "--bogus"], "No such option: --bogus"),
    (["secret", "inspect"], "Missing argument 'BUNDLE'."),
    (["secret", "frobnicate"], "No such command 'frobnicate'."),
    (["--bogus"], "No such option: --bogus"),
])
def test_usage_errors_are_one_error_line_and_exit_2(capsys: Capsys, args: list[str],
                                                    message: str) -> None:
    """cli.md §1: errors are one line `error: <message>` on stderr; usage errors exit 2."""
    result = caution(capsys, *args)
    assert (result.code, result.out) == (2, "")
    assert result.err.startswith(f"error: {message}") and result.err.count("\n") == 1, result.err


def test_no_arguments_still_show_the_help(capsys: Capsys) -> None:
    result = caution(capsys)
    assert result.code == 2 and result.out == ""
    assert result.err.startswith("Usage: caution [OPTIONS] COMMAND [ARGS]...")


def test_help_and_version_exit_0(capsys: Capsys) -> None:
    assert caution(capsys, "secret", "inspect", "--help").code == 0
    result = caution(capsys, "--version")
    assert result.code == 0 and "locksmith" in result.out


def test_verbose_adds_prefixed_lines_on_stderr_only_when_asked(capsys: Capsys) -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]  # closed again: the connection is refused
    args = ["secret", "send-shard", "--address", f"127.0.0.1:{port}", "--bundle", str(FIXTURE),
            "--keyring", str(CAUTION_V0 / "alice.private.asc"), "--pcr0", "11" * 48,
            "--pcr1", "11" * 48, "--pcr2", "11" * 48]
    quiet = caution(capsys, *args)
    loud = caution(capsys, "-v", *args)
    assert quiet.code == loud.code == 1
    assert not any(line.startswith("[VERBOSE] ") for line in quiet.err.splitlines())
    verbose = [line for line in loud.err.splitlines() if line.startswith("[VERBOSE] ")]
    assert verbose and verbose[0].startswith("[VERBOSE] holder 0 (")
    assert [line for line in loud.err.splitlines() if not line.startswith("[VERBOSE] ")] == (
        quiet.err.splitlines())
    assert loud.out == ""
    assert caution(capsys, "--verbose", *args).err == loud.err
