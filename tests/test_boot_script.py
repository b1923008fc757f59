"""locksmith-run (enclave.md §2) under dash: a stand-in locksmithd, real keyforkd and oneshot.

locksmithd is not part of this test: a stand-in on PATH starts keyforkd the way locksmithd does
(`start_keyforkd`, secret through a pipe) and exits 0, or fails on request. Everything after it
is real: the script's socket wait, the real locksmith-oneshot (a busybox symlink to the
installed `locksmith` entry point), `eval` in /bin/sh and `exec` of an application that dumps
its environment NUL-separated.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from locksmith.core.openpgp import message, quorumkey
from locksmith.core.openpgp.armor import armor
from tests import keyforkd_util as util
from tests.conftest import REPO
from tests.keyforkd_util import SECRET_07

RUN_SH = REPO / "locksmith" / "scripts" / "run.sh"

STAND_IN = f"""#!{sys.executable}
# locksmithd stand-in: start keyforkd like locksmithd does (enclave.md §3.3), then exit 0.
import os, sys
mode = os.environ.get("FAKE_LOCKSMITHD", "start")
path = os.environ["KEYFORKD_SOCKET_PATH"]
if os.path.lexists(path):
    print("stand-in: step 1 did not remove the stale socket", file=sys.stderr)
    sys.exit(4)
if mode.startswith("exit"):
    sys.exit(int(mode[4:]))
if mode in ("start", "start-then-die"):
    from locksmith.personalities.keyforkd_launch import start_keyforkd
    secret = bytearray.fromhex(open(os.environ["FAKE_SECRET_FILE"]).read().strip())
    pid = start_keyforkd(secret, path)
    open(os.environ["FAKE_PID_FILE"], "w").write(str(pid))
    if mode == "start-then-die":  # keyforkd dies between locksmithd's exit and the oneshot
        import signal, time
        os.kill(pid, signal.SIGTERM)
        while os.path.lexists(path):
            time.sleep(0.02)
sys.exit(0)
"""

VALUES = {
    "QUOTES": "it's \"double\" and 'single' # not a comment",
    "SUBST": "$(touch pwned) `touch pwned` ${HOME} $((6*7))",
    "NEWLINES": "line one\nline two\n\n",
    "HASH": "#value",
    "UNICODE": "grüße ☃ 日本 🗝",
    "SPACES": "  padded  ",
    "BACKSLASH": "C:\\path\\n\\",
    "EMPTY": "",
}


@dataclass
class Boot:
    root: Path
    bin: Path
    secrets: Path
    socket: Path
    pid_file: Path
    env: dict[str, str]

    def run(self, *app: str, **env: str) -> tuple[int, bytes, str]:
        """Run locksmith-run; (status, application stdout, stderr)."""
        stderr_path = self.root / f"stderr-{time.monotonic_ns()}"
        # stderr to a file: keyforkd inherits it and outlives the script, so a pipe would stay
        # open; the application's stdout is ours alone.
        with open(stderr_path, "wb") as stderr:
            result = subprocess.run([str(RUN_SH), *(app or ("env", "-0"))], cwd=self.root,
                                    env={**self.env, **env}, stdout=subprocess.PIPE,
                                    stderr=stderr, stdin=subprocess.DEVNULL, timeout=60)
        return result.returncode, result.stdout, stderr_path.read_text()

    def stop_keyforkd(self) -> None:
        if self.pid_file.exists():
            util.kill_pid(int(self.pid_file.read_text()))
            self.pid_file.unlink()


@pytest.fixture
def boot(tmp_path: Path) -> Iterator[Boot]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    entry = Path(sys.executable).parent / "locksmith"  # the installed console script
    assert entry.exists(), "the locksmith entry point is not installed in this environment"
    (bin_dir / "locksmith-oneshot").symlink_to(entry)
    (bin_dir / "locksmithd").write_text(STAND_IN)
    (bin_dir / "locksmithd").chmod(0o755)
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    for directory in util.short_dir():
        secret_file = util.write_secret_file(directory / "secret.hex")
        env = {
            "PATH": f"{bin_dir}:/usr/bin:/bin",
            "HOME": str(tmp_path),
            "KEYFORKD_SOCKET_PATH": str(directory / "k.sock"),
            "LOCKSMITH_SECRETS_DIR": str(secrets),
            "LOCKSMITH_SOCKET_WAIT": "5",
            "FAKE_SECRET_FILE": str(secret_file),
            "FAKE_PID_FILE": str(tmp_path / "keyforkd.pid"),
        }
        state = Boot(tmp_path, bin_dir, secrets, directory / "k.sock", tmp_path / "keyforkd.pid",
                     env)
        try:
            yield state
        finally:
            state.stop_keyforkd()


@pytest.fixture(scope="module")
def keys() -> quorumkey.QuorumKeys:
    return quorumkey.quorum_keys(SECRET_07)


def _write_secret(boot: Boot, name: str, value: bytes | str, keys: quorumkey.QuorumKeys) -> None:
    data = value.encode() if isinstance(value, str) else value
    (boot.secrets / f"{name}.asc").write_text(
        armor("MESSAGE", message.encrypt(data, [keys.encrypt.public])))


def _environment(dump: bytes) -> dict[bytes, bytes]:
    entries = [e for e in dump.split(b"\0") if e]
    return dict(e.split(b"=", 1) for e in entries)


def test_keyforkd_dying_before_the_oneshot_stops_the_boot_with_a_reason(
        boot: Boot, keys: quorumkey.QuorumKeys) -> None:
    _write_secret(boot, "TOKEN", "s3cret", keys)
    status, out, err = boot.run("sh", "-c", "echo APPLICATION STARTED",
                                FAKE_LOCKSMITHD="start-then-die", LOCKSMITH_SOCKET_WAIT="1")
    assert status != 0 and out == b""
    assert "locksmith-run: keyforkd socket did not appear" in err
    assert "s3cret" not in err


def test_the_application_receives_every_value_byte_exactly(
        boot: Boot, keys: quorumkey.QuorumKeys) -> None:
    for name, value in VALUES.items():
        _write_secret(boot, name, value, keys)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(boot.socket))  # a leftover socket: step 1 must remove it before locksmithd
    stale.close()
    status, out, err = boot.run()
    assert status == 0, err
    env = _environment(out)
    for name, value in VALUES.items():
        assert env[name.encode()] == value.encode(), name
    assert b"exports" not in env  # the shell variable is not exported
    assert env[b"KEYFORKD_SOCKET_PATH"] == str(boot.socket).encode()
    assert not (boot.root / "pwned").exists()
    names = " ".join(sorted(VALUES))
    assert f"locksmith-oneshot: exported {len(VALUES)} variables: {names}\n" in err
    assert "locksmith-run:" not in err
    for value in ("double", "grüße", "line one"):
        assert value not in err


def test_a_secret_named_exports_is_not_unset(boot: Boot, keys: quorumkey.QuorumKeys) -> None:
    _write_secret(boot, "exports", "kept", keys)
    status, out, err = boot.run()
    assert status == 0, err
    assert _environment(out)[b"exports"] == b"kept"


def test_an_inherited_exports_variable_does_not_carry_the_secrets_to_the_application(
        boot: Boot, keys: quorumkey.QuorumKeys) -> None:
    # A variable imported from the environment stays exported in sh when reassigned: without
    # care the application would inherit `exports`, the whole text of every export line.
    _write_secret(boot, "TOKEN", "s3cret", keys)
    status, out, err = boot.run(exports="from the parent")
    assert status == 0, err
    env = _environment(out)
    assert env[b"TOKEN"] == b"s3cret"
    assert b"exports" not in env


def test_the_application_gets_its_arguments_and_replaces_the_script(boot: Boot) -> None:
    status, out, err = boot.run("sh", "-c", 'printf "%s|" "$@"; echo "$PPID"', "app",
                                "two words", "$(x)")
    assert status == 0, err
    # exec: the application's parent is our process, not a shell left in between
    assert out.decode() == f"two words|$(x)|{os.getpid()}\n"


def test_an_empty_secrets_directory_starts_the_application_without_secrets(boot: Boot) -> None:
    (boot.secrets / "README.txt").write_text("no secrets yet")
    status, out, err = boot.run()
    assert status == 0, err
    assert b"PATH" in _environment(out)
    assert "locksmith-oneshot: exported 0 variables" in err


def test_a_failing_locksmithd_stops_the_boot_with_its_status(boot: Boot) -> None:
    marker = boot.root / "app-ran"
    status, out, err = boot.run("touch", str(marker), FAKE_LOCKSMITHD="exit3")
    assert status == 3
    assert err.splitlines()[-1] == "locksmith-run: locksmithd failed (exit 3)"
    assert not marker.exists() and out == b""


def test_a_socket_that_never_appears_stops_the_boot(boot: Boot) -> None:
    marker = boot.root / "app-ran"
    started = time.monotonic()
    status, out, err = boot.run("touch", str(marker), FAKE_LOCKSMITHD="nothing",
                                LOCKSMITH_SOCKET_WAIT="1")
    assert 0.9 < time.monotonic() - started < 20
    assert status == 1
    assert err.splitlines()[-1] == "locksmith-run: keyforkd socket did not appear"
    assert not marker.exists() and out == b""


def test_a_failing_oneshot_stops_the_boot(boot: Boot, keys: quorumkey.QuorumKeys) -> None:
    _write_secret(boot, "GOOD", "fine", keys)
    (boot.secrets / "BAD.asc").write_bytes(b"not a message")
    marker = boot.root / "app-ran"
    status, out, err = boot.run("touch", str(marker))
    assert status == 1
    assert err.splitlines()[-2:] == [
        "locksmith-oneshot: BAD.asc: malformed message",
        "locksmith-run: locksmith-oneshot failed; not starting the application",
    ]
    assert not marker.exists() and out == b""


def test_the_xdg_default_is_used_and_exported(boot: Boot, keys: quorumkey.QuorumKeys) -> None:
    _write_secret(boot, "X", "y", keys)
    runtime = boot.socket.parent / "run"
    runtime.mkdir(mode=0o700)
    env = dict(boot.env)
    del env["KEYFORKD_SOCKET_PATH"]
    boot.env = env
    status, out, err = boot.run(XDG_RUNTIME_DIR=str(runtime), KEYFORKD_SOCKET_PATH="")
    assert status == 0, err
    exported = _environment(out)
    assert exported[b"KEYFORKD_SOCKET_PATH"] == f"{runtime}/keyforkd/keyforkd.sock".encode()
    assert exported[b"X"] == b"y"


def test_without_a_command_it_is_a_usage_error(boot: Boot) -> None:
    result = subprocess.run([str(RUN_SH)], env=boot.env, capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 2
    assert result.stderr == "usage: locksmith-run APP_COMMAND [ARGS...]\n"


def test_the_script_is_posix_sh_with_the_required_form() -> None:
    text = RUN_SH.read_text()
    assert text.startswith("#!/bin/sh\n")
    assert "\nset -eu\n" in text
    assert ('if ! exports=$(locksmith-oneshot); then\n'
            '  echo "locksmith-run: locksmith-oneshot failed; not starting the application" >&2\n'
            '  exit 1\nfi\neval "$exports"\n') in text
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    assert 'eval "$(locksmith-oneshot)"' not in code
    assert text.rstrip().endswith('exec "$@"')
    assert os.access(RUN_SH, os.X_OK)
    checkbashisms = shutil.which("checkbashisms")
    if checkbashisms:
        subprocess.run([checkbashisms, str(RUN_SH)], check=True)
    subprocess.run(["/bin/sh", "-n", str(RUN_SH)], check=True)
