"""The shipped artifact: build.sh makes a zipapp that dispatches through busybox symlinks.

tests/test_artifact.py covers the build itself and the zipapp on each supported Python.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from locksmith import __version__
from locksmith.__main__ import PERSONALITIES


def _run(exe: Path, *args: str, shiv_root: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, SHIV_ROOT=str(shiv_root))
    return subprocess.run([str(exe), *args], capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.slow
def test_zipapp_runs_the_caution_cli_through_a_symlink(zipapp: Path, tmp_path: Path) -> None:
    link = tmp_path / "caution"
    link.symlink_to(zipapp)
    result = _run(link, "--version", shiv_root=tmp_path / "shiv")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("caution (locksmith)")


@pytest.mark.slow
def test_zipapp_dispatches_locksmith_oneshot_by_symlink_name(zipapp: Path, tmp_path: Path) -> None:
    link = tmp_path / "locksmith-oneshot"
    link.symlink_to(zipapp)
    helped = _run(link, "--help", shiv_root=tmp_path / "shiv")
    assert helped.returncode == 0, helped.stderr
    assert helped.stdout.startswith("usage: locksmith-oneshot")
    # The boot-path personality is reached by its name and runs: no keyforkd here.
    missing = tmp_path / "no-keyforkd.sock"
    result = _run(link, "--socket", str(missing), "--timeout", "0", shiv_root=tmp_path / "shiv")
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines()[-1] == (
        f"locksmith-oneshot: cannot reach keyforkd at {missing}: No such file or directory")


@pytest.mark.slow
def test_zipapp_takes_the_personality_from_the_first_argument(zipapp: Path, tmp_path: Path) -> None:
    result = _run(zipapp, "caution", "--version", shiv_root=tmp_path / "shiv")
    assert result.returncode == 0, result.stderr
    bad = _run(zipapp, "nope", shiv_root=tmp_path / "shiv")
    assert bad.returncode == 2
    assert "unknown personality 'nope'" in bad.stderr


@pytest.mark.slow
def test_zipapp_help_lists_each_personality_on_one_line(zipapp: Path, tmp_path: Path) -> None:
    for option in ("--help", "-h"):
        result = _run(zipapp, option, shiv_root=tmp_path / "shiv")
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        assert lines[0] == ("usage: locksmith.pyz PERSONALITY [ARGS...]   (or a symlink named like "
                            "the personality)")
        for name in PERSONALITIES:
            assert len([line for line in lines if line.startswith(f"  {name} ")]) == 1, name
        assert result.stderr == ""


@pytest.mark.slow
def test_zipapp_version_names_the_version_the_build_id_and_the_python(
        zipapp: Path, tmp_path: Path) -> None:
    with zipfile.ZipFile(zipapp) as zf:
        build_id = json.loads(zf.read("environment.json"))["build_id"]
    result = subprocess.run([sys.executable, str(zipapp), "--version"], capture_output=True,
                            text=True, env=dict(os.environ, SHIV_ROOT=str(tmp_path / "shiv")),
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout == (f"locksmith {__version__} (build {build_id}; CPython "
                             f"{platform.python_version()})\n")
