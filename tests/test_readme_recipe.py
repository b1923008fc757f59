"""The README's local quorum-and-unlock recipe works as written (a new user's first try).

The shell block after `<!-- recipe: local-unlock -->` runs with bash in a fresh directory, the
programs on PATH as wrappers around this source tree. Only the two fixed ports are replaced by
free ones, so the test cannot collide with anything else on the machine.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.unlock_kit import still_running

MARKER = "<!-- recipe: local-unlock"


def _recipe() -> str:
    readme = (REPO / "README.md").read_text()
    after = readme[readme.index(MARKER):]
    match = re.search(r"```sh\n(.*?)```", after, re.S)
    assert match is not None, "the recipe's shell block is missing"
    return match.group(1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_the_readme_local_unlock_recipe_runs_as_written(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("caution", "keymaker", "keyforkd", "locksmith-oneshot", "locksmithd"):
        wrapper = bin_dir / name
        wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m locksmith {name} "$@"\n')
        wrapper.chmod(0o755)
    script = _recipe()
    keymaker, enclave = _free_port(), _free_port()
    script = script.replace("8080", str(keymaker)).replace("49504", str(enclave))
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("LOCKSMITH", "KEYFORKD", "KEYMAKER", "CAUTION"))}
    env.update(PATH=f"{bin_dir}:{env['PATH']}", PYTHONPATH=str(REPO))
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    try:  # files, not pipes: a background program left running must not hold the test
        with open(out, "wb") as stdout, open(err, "wb") as stderr:
            code = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path,
                                  env=env, stdout=stdout, stderr=stderr, timeout=180).returncode
        leftover = still_running(tmp_path)  # the recipe stops what it started
    finally:
        subprocess.run(["pkill", "-KILL", "-f", "--", str(tmp_path)], check=False)
    assert code == 0, err.read_text()[-3000:]
    assert out.read_text() == "export DB_PASSWORD='hunter2'\n"
    said = err.read_text().splitlines()
    assert "Shard accepted, 0 remaining shards until reconstitution" in said
    assert leftover == "", f"processes left running: {leftover}"

