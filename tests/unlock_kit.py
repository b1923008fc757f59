"""End-to-end machinery: the product as separate processes on loopback, from the source tree.

`World` is a short temporary root (AF_UNIX paths are limited) with wrapper binaries named like
the image's symlinks; `make_quorum` runs keygen'd or given holders through a one-shot Keymaker,
`secret new` and `secret encrypt`; `boot` starts `locksmith-run` as the enclave image would.
Used by the key-file unlock tests and the smart-card ones.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import REPO

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


def world_in() -> Iterator[World]:
    """The `world` fixture's body (tests/conftest.py): processes are killed, the root removed."""
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
        leftover = still_running(root)
        shutil.rmtree(root, ignore_errors=True)
        assert leftover == "", f"processes left behind: {leftover}"


def still_running(root: Path, grace: float = 5.0) -> str:
    """Processes whose command line names `root`, once SIGKILL had time to take effect (a
    killed process stays visible for a moment, which made this check flaky)."""
    deadline = time.monotonic() + grace
    while True:
        found = subprocess.run(["pgrep", "-f", "--", str(root)], capture_output=True,
                               text=True).stdout
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def boot(world: World, app_dir: Path, names: list[str], *, nsm: Path,
          v1: bool) -> tuple[subprocess.Popen[bytes], int]:
    """Start `locksmith-run python -c APP NAMES...` as the enclave image would."""
    port = free_port()
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


def send_with_keyring(world: World, app_dir: Path, port: int, private: Path, nsm: Path) -> str:
    return world.run("caution", "secret", "send-shard", "--address", f"127.0.0.1:{port}",
                     "--bundle", str(app_dir / ".caution" / "quorum-bundle.json"),
                     "--keyring", str(private), "--trusted-hashes", str(nsm / "trusted_hashes.json"),
                     "--trust-root", str(nsm / "root.pem"), cwd=app_dir)


def application_view(enclave: subprocess.Popen[bytes], world: World) -> dict[str, str | None]:
    out, _ = enclave.communicate(timeout=60)
    assert enclave.returncode == 0, world.log("locksmith-run")
    view: dict[str, str | None] = json.loads(out)
    return view




@dataclass(frozen=True)
class Quorum:
    app_dir: Path  # holds .caution/quorum-bundle.json, the policy and secrets/*.asc
    nsm: Path  # the simulated NSM's directory (root.pem, trusted_hashes.json)
    encrypt_notices: str  # what `secret encrypt` said on stderr


def make_quorum(world: World, public_keys: Sequence[Path], threshold: int,
                env_file: str) -> Quorum:
    """A V1 quorum of `public_keys` (in this order) made by a one-shot simulated-NSM Keymaker,
    with `env_file` encrypted to it."""
    nsm = world.root / "nsm"
    (world.root / "keyring.asc").write_text("".join(p.read_text() for p in public_keys))
    keymaker_port = free_port()
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
              str(threshold), "--max", str(len(public_keys)), "--trust-root",
              str(nsm / "root.pem"), cwd=app_dir)
    assert keymaker.wait(timeout=30) == 0  # --one-shot: one quorum, then exit
    (app_dir / ".env").write_text(env_file)
    notices = world.run("caution", "secret", "encrypt", "--trust-root", str(nsm / "root.pem"),
                        cwd=app_dir)
    return Quorum(app_dir, nsm, notices)


def keygen(world: World, name: str) -> tuple[Path, Path]:
    """`caution secret keygen`: (public certificate, private keyring) of a development holder."""
    world.run("caution", "secret", "keygen", f"{name}.asc", "--name", name.title(),
              "--email", f"{name}@example.org", "--shoot-self-in-foot")
    return world.root / f"{name}.asc", world.root / f"{name}.private.asc"
