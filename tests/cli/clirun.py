"""Run the `caution` CLI in-process, the way argv[0] dispatch does, and capture its streams."""

from __future__ import annotations

import os
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
    cwd = os.getcwd()  # --workdir changes directory, as it would in a process of its own
    try:
        code = run(["caution", *args])
    finally:
        os.chdir(cwd)
    captured = capsys.readouterr()
    return Result(code, captured.out, captured.err)
