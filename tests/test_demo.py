"""`make demo` keeps working: the whole quorum unlock with the built zipapp, and no leftovers."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.conftest import REPO


@pytest.mark.slow
def test_demo_unlocks_a_quorum_and_leaves_no_process_behind(zipapp: Path, tmp_path: Path) -> None:
    # A short TMPDIR: keyforkd's Unix socket lives under it and AF_UNIX paths are limited to
    # 107 bytes, which pytest's own temporary paths can exceed.
    short = Path(tempfile.mkdtemp(prefix="lsdemo", dir="/tmp"))
    env = dict(os.environ, PYTHON=sys.executable, TMPDIR=str(short),
               SHIV_ROOT=str(tmp_path / "shiv"))
    result = subprocess.run(["bash", str(REPO / "demo" / "demo.sh"), str(zipapp)], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-4000:]
    assert ("demo: unlocked a 2-of-3 quorum; the application's environment matches the .env "
            "byte for byte") in result.stderr
    assert "Shard accepted, 0 remaining shards until reconstitution" in result.stderr
    leftovers = subprocess.run(["pgrep", "-af", "locksmith-demo"], capture_output=True,
                               text=True).stdout
    assert leftovers == ""
    assert not list(short.iterdir())  # its work directory is removed too
    short.rmdir()
