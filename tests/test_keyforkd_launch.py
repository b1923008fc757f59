"""start_keyforkd: keyforkd as its own process, secret by pipe, readiness by pipe (enclave.md §4.1)."""

from __future__ import annotations

import os
import subprocess
import sys
import types
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from locksmith.personalities.keyforkd_launch import (
    KeyforkdStartError, keyforkd_command, start_keyforkd,
)
from tests import keyforkd_util as util
from tests.conftest import REPO
from tests.keyforkd_util import SECRET_07, X_CHAIN, X_PRIV


@pytest.fixture
def workdir() -> Iterator[Path]:
    yield from util.short_dir()


@pytest.fixture
def pids() -> Iterator[list[int]]:
    started: list[int] = []
    try:
        yield started
    finally:
        for pid in started:
            util.kill_pid(pid)


def _cmdline(pid: int) -> bytes:
    return Path(f"/proc/{pid}/cmdline").read_bytes()


def test_started_from_the_source_tree_it_serves_in_its_own_session(
        workdir: Path, pids: list[int]) -> None:
    secret = bytearray(SECRET_07)
    pid = start_keyforkd(secret, str(workdir / "k.sock"))
    pids.append(pid)
    assert util.derive(workdir / "k.sock") == {
        "private_key": bytes.fromhex(X_PRIV), "chain_code": bytes.fromhex(X_CHAIN), "depth": 2}
    assert os.getsid(pid) == pid  # a new session: it outlives locksmithd and the boot script
    argv = _cmdline(pid).split(b"\0")
    assert argv[:4] == [sys.executable.encode(), b"-m", b"locksmith", b"keyforkd"]
    assert b"--secret-fd" in argv and b"--ready-fd" in argv
    assert os.readlink(f"/proc/{pid}/fd/0") == "/dev/null"
    # the secret is in neither argv nor the environment
    environ = Path(f"/proc/{pid}/environ").read_bytes()
    for blob in (_cmdline(pid), environ):
        assert SECRET_07 not in blob and SECRET_07.hex().encode() not in blob
    # the pipe fds were consumed and closed
    fds = os.listdir(f"/proc/{pid}/fd")
    assert all(not os.readlink(f"/proc/{pid}/fd/{fd}").startswith("pipe:") for fd in fds)
    util.kill_pid(pid)
    assert util.process_gone(pid)
    assert not (workdir / "k.sock").exists()


def test_a_failing_keyforkd_is_reported_with_its_exit_status(workdir: Path) -> None:
    with pytest.raises(KeyforkdStartError) as raised:
        start_keyforkd(SECRET_07, str(workdir / "missing" / "k.sock"))
    assert str(raised.value) == "keyforkd did not start: keyforkd exited with status 1"


def test_no_readiness_in_time_kills_the_child(workdir: Path) -> None:
    pid_file = workdir / "pid"
    command = ["/bin/sh", "-c", f'echo $$ > {pid_file}; exec sleep 30']
    with pytest.raises(KeyforkdStartError, match="^keyforkd did not start: no readiness signal "
                                                 "within 0.5 s$"):
        start_keyforkd(SECRET_07, str(workdir / "k.sock"), timeout=0.5, command=command)
    assert util.process_gone(int(pid_file.read_text()), timeout=2)


def test_a_wrong_readiness_message_is_a_failure(workdir: Path) -> None:
    # the launcher appends ... --ready-fd N: answer something else on that fd
    command = [sys.executable, "-c", "import os, sys, time\n"
               "os.write(int(sys.argv[-1]), b'NOPE\\n'); time.sleep(30)"]
    with pytest.raises(KeyforkdStartError, match="unexpected readiness message"):
        start_keyforkd(SECRET_07, str(workdir / "k.sock"), timeout=5, command=command)


def test_an_unexecutable_command_is_a_clear_error(workdir: Path) -> None:
    with pytest.raises(KeyforkdStartError, match="^keyforkd did not start: cannot execute "
                                                 "/nonexistent/python: "):
        start_keyforkd(SECRET_07, str(workdir / "k.sock"), command=["/nonexistent/python"])


def test_the_command_uses_the_resolved_zipapp_or_the_module(tmp_path: Path) -> None:
    archive = tmp_path / "locksmith.pyz"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("__main__.py", "")
    link = tmp_path / "locksmithd"
    link.symlink_to(archive)
    assert keyforkd_command(str(link)) == [sys.executable, str(archive), "keyforkd"]
    assert keyforkd_command(str(REPO / "locksmith" / "__main__.py")) \
        == [sys.executable, "-m", "locksmith", "keyforkd"]
    assert keyforkd_command("-c") == [sys.executable, "-m", "locksmith", "keyforkd"]


def test_after_a_fast_start_keyforkd_is_started_the_same_way(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A zipapp started the fast way (shipping/launcher.py, issue 11) starts keyforkd with its
    launcher's command: the same interpreter and build, without re-reading the archive."""
    archive = tmp_path / "locksmith.pyz"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("__main__.py", "")
    link = tmp_path / "locksmithd"
    link.symlink_to(archive)
    launcher = types.ModuleType("_locksmith_launcher")
    monkeypatch.setitem(sys.modules, "_locksmith_launcher", launcher)
    def fast(path: str, *args: str) -> list[str] | None:
        return ["python", "-I", "-S", "-c", "FAST", path, *args]

    setattr(launcher, "start_command", fast)
    assert keyforkd_command(str(link)) == ["python", "-I", "-S", "-c", "FAST", str(archive),
                                           "keyforkd"]
    setattr(launcher, "start_command", lambda path, *args: None)  # after a slow start
    assert keyforkd_command(str(link)) == [sys.executable, str(archive), "keyforkd"]


@pytest.mark.slow
def test_started_from_the_zipapp_it_runs_the_zipapp(zipapp: Path, workdir: Path,
                                                    tmp_path: Path, pids: list[int]) -> None:
    link = tmp_path / "locksmithd"
    link.symlink_to(zipapp)
    # What locksmithd inside the zipapp does: argv[0] is the personality link (shebang exec).
    code = ("import sys; sys.argv[0] = sys.argv[1]\n"
            "import os; os.environ.pop('SHIV_INTERPRETER')\n"
            "from locksmith.personalities.keyforkd_launch import start_keyforkd\n"
            "print(start_keyforkd(bytearray(b'\\x07' * 32), sys.argv[2]))\n")
    env = dict(os.environ, SHIV_ROOT=str(tmp_path / "shiv"), SHIV_INTERPRETER="1")
    # stderr to a file: keyforkd inherits it (enclave.md §4.1), so a pipe would stay open.
    with open(tmp_path / "stderr", "wb") as stderr:
        result = subprocess.run([sys.executable, str(zipapp), "-c", code, str(link),
                                 str(workdir / "k.sock")], stdout=subprocess.PIPE,
                                stderr=stderr, text=True, env=env, cwd="/", timeout=120)
    assert result.returncode == 0, (tmp_path / "stderr").read_text()
    pid = int(result.stdout)
    pids.append(pid)
    argv = _cmdline(pid).split(b"\0")
    assert argv[:3] == [sys.executable.encode(), str(zipapp).encode(), b"keyforkd"]
    assert util.derive(workdir / "k.sock")["private_key"] == bytes.fromhex(X_PRIV)
    assert "scripts/run.sh" in " ".join(_zip_names(zipapp))


def _zip_names(archive: Path) -> list[str]:
    with zipfile.ZipFile(archive) as zf:
        return zf.namelist()
