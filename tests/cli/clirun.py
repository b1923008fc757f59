"""Run the `caution` CLI in-process, the way argv[0] dispatch does, and capture its streams."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from locksmith.__main__ import run


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str


def caution(capsys: pytest.CaptureFixture[str], *args: str) -> Result:
    capsys.readouterr()
    code = run(["caution", *args])
    captured = capsys.readouterr()
    return Result(code, captured.out, captured.err)
