"""The shipped artifact: build.sh makes a zipapp that dispatches through busybox symlinks."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest



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
