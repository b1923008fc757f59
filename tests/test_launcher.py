"""The zipapp's launcher (shipping/launcher.py) as a module: the parts of the fast start that a
test can reach without building the zipapp. tests/test_artifact.py runs the built artifact."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import REPO

LAUNCHER = REPO / "shipping" / "launcher.py"
BUILD = "ab" * 32


@pytest.fixture
def launcher() -> Iterator[ModuleType]:
    spec = importlib.util.spec_from_file_location("launcher_under_test", LAUNCHER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module


def test_build_of_recognises_exactly_the_names_the_launcher_and_shiv_make(
        launcher: ModuleType) -> None:
    """The names cleaning may touch, as the regular expression it replaced defined them."""
    ours = re.compile(r"\.?locksmith_([0-9a-f]{64})(\.tmp|\.old|\.lock|_lock)?")
    names = [f"{dot}locksmith_{build}{suffix}"
             for dot in ("", ".", "..") for build in (BUILD, "AB" * 32, BUILD[:-1], BUILD + "0")
             for suffix in ("", ".tmp", ".old", ".lock", "_lock", ".lock2", "-x", "/")]
    names += ["locksmith_", "other_" + BUILD, "notes.txt", "", "."]
    for name in names:
        match = ours.fullmatch(name)
        assert launcher.build_of(name) == (match.group(1) if match else None), name


def test_fast_start_is_one_sh_quotable_program_that_any_python3_parses(
        launcher: ModuleType) -> None:
    """The preamble puts FAST_START inside single quotes, and an unsupported python3 (which the
    preamble may exec) must get as far as handing over to the probe."""
    assert "'" not in launcher.FAST_START
    compile(launcher.FAST_START, "<fast start>", "exec")
    assert "_locksmith_launcher.fast_main(" in launcher.FAST_START


def test_fast_start_hands_an_unsupported_interpreter_back_to_the_probe(launcher: ModuleType,
                                                                       tmp_path: Path) -> None:
    """FAST_START on a Python the zipapp does not support execs `/bin/sh ARCHIVE ARGS` with
    _LOCKSMITH_PROBE set, which makes the preamble probe instead (here: a script that prints
    what it was given)."""
    archive = tmp_path / "archive"
    archive.write_text('#!/bin/sh\necho "probe=$_LOCKSMITH_PROBE args=$*"\n')
    pretend = launcher.FAST_START.replace("(3, 11), (3, 12), (3, 13)", "(2, 7),")
    done = subprocess.run([sys.executable, "-I", "-S", "-c", pretend, BUILD, str(archive), "a",
                           "b c"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "probe=1 args=a b c\n"


def test_record_interpreter_lists_each_absolute_path_once(launcher: ModuleType,
                                                          tmp_path: Path) -> None:
    listing = tmp_path / launcher.INTERPRETERS
    for candidate in ("/usr/bin/python3", "/usr/bin/python3", "python3", "", None,
                      "/opt/py\n/evil", "/usr/local/bin/python3.12"):
        launcher.record_interpreter(str(tmp_path), candidate)
    assert listing.read_text() == "/usr/bin/python3\n/usr/local/bin/python3.12\n"
    assert listing.stat().st_mode & 0o777 == 0o600


def test_record_interpreter_is_best_effort(launcher: ModuleType, tmp_path: Path) -> None:
    launcher.record_interpreter(str(tmp_path / "missing"), "/usr/bin/python3")  # no error
    assert not (tmp_path / "missing").exists()


def test_start_command_reproduces_a_fast_start_only(launcher: ModuleType,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """After a slow start there is nothing to reproduce (the caller uses the archive); after a
    fast one it is the same interpreter, FAST_START and build."""
    assert launcher.start_command("/usr/bin/locksmith", "keyforkd") is None
    monkeypatch.setattr(launcher, "_started_fast", True)
    monkeypatch.setattr(launcher, "BUILD_ID", BUILD)
    assert launcher.start_command("/usr/bin/locksmith", "keyforkd", "--x") == [
        sys.executable, "-I", "-S", "-c", launcher.FAST_START, BUILD, "/usr/bin/locksmith",
        "keyforkd", "--x"]
