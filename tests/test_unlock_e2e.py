"""The whole product, end to end, as separate processes on loopback (the unlock issue's first two
acceptance points): holders' keys, Keymaker, `secret new`, `secret encrypt`, the enclave booting
with `locksmith-run` (locksmithd → keyforkd → locksmith-oneshot → eval → the app), and holders
running `caution secret send-shard`. Every program runs from the source tree through small
wrappers named like the image's symlinks; the zipapp itself is exercised by tests/test_demo.py.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import CAUTION_V0, REPO

VALUES = {
    "SINGLE_QUOTES": "it's 'quoted'",
    "DOUBLE_QUOTES": 'say "hi"',
    "SUBSTITUTION": "$(touch /tmp/pwned) and $HOME",
    "BACKTICKS": "`id` stays literal",
    "HASH": "not # a comment",
    "NEWLINES": "line one\nline two\n  indented line three",
    "UNICODE": "grüße ☃ 日本語",
}
ENV_FILE = """\
SINGLE_QUOTES="it's 'quoted'"
DOUBLE_QUOTES='say "hi"'
SUBSTITUTION='$(touch /tmp/pwned) and $HOME'
BACKTICKS='`id` stays literal'
HASH="not # a comment"
NEWLINES="line one
line two
  indented line three"
UNICODE=grüße\\ ☃\\ 日本語
EMPTY=
"""
APP = ("import json, os, sys; names = sys.argv[1:]; "
       "print(json.dumps({n: os.environ.get(n) for n in names}))")


@dataclass
class World:
    """A short temporary root (AF_UNIX paths are limited), wrapper binaries and processes."""

    root: Path
    env: dict[str, str]
    processes: list[subprocess.Popen[bytes]]

    def run(self, *args: str, cwd: Path | None = None, timeout: float = 60) -> str:
        result = subprocess.run(args, cwd=cwd or self.root, env=self.env, capture_output=True,
                                text=True, timeout=timeout)
        assert result.returncode == 0, f"{args} failed:\n{result.stderr}"
        return result.stderr

    def start(self, *args: str, cwd: Path | None = None,
              env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(args, cwd=cwd or self.root, env=env or self.env,
                                   stdout=subprocess.PIPE, stderr=open(self.root / f"{args[0]}.log", "wb"),
                                   start_new_session=True)
        self.processes.append(process)
        return process

    def log(self, name: str) -> str:
        return (self.root / f"{name}.log").read_text(errors="replace")

    def wait_for_log(self, name: str, text: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log(name):
            assert time.monotonic() < deadline, f"{name} never logged {text!r}:\n{self.log(name)}"
            time.sleep(0.05)


@pytest.fixture
def world() -> Iterator[World]:
    root = Path(tempfile.mkdtemp(prefix="lse2e", dir="/tmp"))
    bin_dir = root / "bin"
    bin_dir.mkdir()
    for name in ("caution", "keymaker", "keyforkd", "locksmith-oneshot", "locksmithd"):
        wrapper = bin_dir / name
        wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m locksmith {name} "$@"\n')
        wrapper.chmod(0o755)
    shutil.copy(REPO / "locksmith" / "scripts" / "run.sh", bin_dir / "locksmith-run")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("LOCKSMITH", "KEYFORKD", "KEYMAKER", "CAUTION"))}
    env.update(PATH=f"{bin_dir}:{env['PATH']}", PYTHONPATH=str(REPO))
    state = World(root, env, [])
    try:
        yield state
    finally:
        for process in state.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        # keyforkd runs in a session of its own, started by locksmithd.
        subprocess.run(["pkill", "-KILL", "-f", "--", f"--socket {root}/"], check=False)
        leftover = subprocess.run(["pgrep", "-f", "--", str(root)], capture_output=True,
                                  text=True).stdout
        shutil.rmtree(root, ignore_errors=True)
        assert leftover == "", f"processes left behind: {leftover}"


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _boot(world: World, app_dir: Path, names: list[str], *, nsm: Path,
          v1: bool) -> tuple[subprocess.Popen[bytes], int]:
    """Start `locksmith-run python -c APP NAMES...` as the enclave image would."""
    port = _free_port()
    env = dict(world.env,
               LOCKSMITH_BUNDLE=str(app_dir / ".caution" / "quorum-bundle.json"),
               LOCKSMITH_SECRETS_DIR=str(app_dir / ".caution" / "secrets"),
               LOCKSMITHD_LISTEN_ADDR=f"127.0.0.1:{port}",
               LOCKSMITH_NSM="simulated", LOCKSMITH_NSM_DIR=str(nsm),
               KEYFORKD_SOCKET_PATH=str(world.root / "keyforkd.sock"))
    if v1:
        env["LOCKSMITH_KEYMAKER_PCR_POLICY"] = str(app_dir / ".caution" / "keymaker-pcr-policy.json")
        # The development root reaches locksmithd only as an option, never from the environment.
        (world.root / "bin" / "locksmithd").write_text(
            f'#!/bin/sh\nexec "{sys.executable}" -m locksmith locksmithd '
            f'--trust-root "{nsm / "root.pem"}" "$@"\n')
    enclave = world.start("locksmith-run", sys.executable, "-c", APP, *names, env=env)
    world.wait_for_log("locksmith-run", f"listening on 127.0.0.1:{port}")
    return enclave, port


def _send(world: World, app_dir: Path, port: int, private: Path, nsm: Path) -> str:
    return world.run("caution", "secret", "send-shard", "--address", f"127.0.0.1:{port}",
                     "--bundle", str(app_dir / ".caution" / "quorum-bundle.json"),
                     "--keyring", str(private), "--trusted-hashes", str(nsm / "trusted_hashes.json"),
                     "--trust-root", str(nsm / "root.pem"), cwd=app_dir)


def _application_view(enclave: subprocess.Popen[bytes], world: World) -> dict[str, str | None]:
    out, _ = enclave.communicate(timeout=60)
    assert enclave.returncode == 0, world.log("locksmith-run")
    view: dict[str, str | None] = json.loads(out)
    return view


@pytest.mark.slow
@pytest.mark.parametrize("threshold,holders", [(2, 3), (3, 5)])
def test_quorum_unlock_delivers_every_value_byte_exact_to_the_application(
        world: World, threshold: int, holders: int) -> None:
    nsm = world.root / "nsm"
    names = [f"holder{i}" for i in range(holders)]
    for name in names:
        world.run("caution", "secret", "keygen", f"{name}.asc", "--name", name.title(),
                  "--email", f"{name}@example.org", "--shoot-self-in-foot")
    (world.root / "keyring.asc").write_text(
        "".join((world.root / f"{n}.asc").read_text() for n in names))

    keymaker_port = _free_port()
    keymaker = world.start("keymaker", "--listen", f"127.0.0.1:{keymaker_port}", "--nsm",
                           "simulated", "--nsm-dir", str(nsm), "--one-shot")
    world.wait_for_log("keymaker", f"127.0.0.1:{keymaker_port}")
    app_dir = world.root / "app"
    (app_dir / ".caution").mkdir(parents=True)
    (app_dir / "Procfile").write_text("locksmith: true\n")
    hashes = json.loads((nsm / "trusted_hashes.json").read_text())
    (app_dir / ".caution" / "keymaker-pcr-policy.json").write_text(json.dumps(
        {"sets": [{"pcrs": {"0": hashes["pcr0"], "1": hashes["pcr1"], "2": hashes["pcr2"]}}]}))
    world.env["KEYMAKER_URL"] = f"http://127.0.0.1:{keymaker_port}"
    world.run("caution", "secret", "new", str(world.root / "keyring.asc"), "--threshold",
              str(threshold), "--max", str(holders), "--trust-root", str(nsm / "root.pem"),
              cwd=app_dir)
    assert keymaker.wait(timeout=30) == 0  # --one-shot: one quorum, then exit

    (app_dir / ".env").write_text(ENV_FILE)
    notices = world.run("caution", "secret", "encrypt", "--trust-root", str(nsm / "root.pem"),
                        cwd=app_dir)
    assert "skipping empty value for EMPTY" in notices.splitlines()
    assert not (app_dir / ".caution" / "secrets" / "EMPTY.asc").exists()

    enclave, port = _boot(world, app_dir, [*VALUES, "EMPTY"], nsm=nsm, v1=True)
    for i, name in enumerate(names[:threshold]):
        said = _send(world, app_dir, port, world.root / f"{name}.private.asc", nsm)
        remaining = threshold - i - 1
        assert said.splitlines()[-1] == (
            f"Shard accepted, {remaining} remaining shards until reconstitution")

    view = _application_view(enclave, world)
    assert view == {**VALUES, "EMPTY": None}
    boot_log = world.log("locksmith-run")
    assert f"locksmith-oneshot: exported {len(VALUES)} variables" in boot_log
    for value in VALUES.values():  # names are logged, values never
        assert value.splitlines()[0] not in boot_log


@pytest.mark.slow
def test_reference_fixture_unlocks_with_alice_and_bob_and_decrypts_pre_import(world: World) -> None:
    """The reference's own v0 bundle and holders, with shards sent by `send-shard --keyring`."""
    from locksmith.core.nsm_simulated import SimulatedNsm
    nsm = world.root / "nsm"
    SimulatedNsm.open(nsm)
    app_dir = world.root / "app"
    (app_dir / ".caution" / "secrets").mkdir(parents=True)
    shutil.copy(CAUTION_V0 / "bundle.json", app_dir / ".caution" / "quorum-bundle.json")
    # A file stem must be a shell name: the message goes in as PRE_IMPORT.
    shutil.copy(CAUTION_V0 / "pre-import.asc", app_dir / ".caution" / "secrets" / "PRE_IMPORT.asc")

    enclave, port = _boot(world, app_dir, ["PRE_IMPORT"], nsm=nsm, v1=False)
    _send(world, app_dir, port, CAUTION_V0 / "alice.private.asc", nsm)
    said = _send(world, app_dir, port, CAUTION_V0 / "bob.private.asc", nsm)
    assert said.splitlines()[-1] == "Shard accepted, 0 remaining shards until reconstitution"
    assert _application_view(enclave, world) == {"PRE_IMPORT": "encrypted before V0 import"}
    assert ("locksmith-oneshot: derived quorum key 15B0E570536A4B00A90151DB726E3FCA18892D05"
            in world.log("locksmith-run"))
