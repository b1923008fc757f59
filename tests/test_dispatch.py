"""The busybox dispatcher picks a personality from argv[0] or the first argument."""

from __future__ import annotations

import pytest

from locksmith.__main__ import run


def test_unknown_first_argument_lists_valid_personalities(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["locksmith.pyz", "frobnicate"]) == 2
    assert capsys.readouterr().err.strip() == (
        "unknown personality 'frobnicate'; expected one of: "
        "caution, forwardd, keyforkd, keymaker, locksmith-oneshot, locksmithd"
    )


def test_argv0_basename_selects_the_personality(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["/usr/bin/caution", "--version"]) == 0
    assert "locksmith" in capsys.readouterr().out


def test_generic_name_takes_personality_from_first_argument(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["/opt/locksmith.pyz", "caution", "--version"]) == 0
    assert "locksmith" in capsys.readouterr().out


def test_missing_personality_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["locksmith"]) == 2
    assert "expected one of" in capsys.readouterr().err
