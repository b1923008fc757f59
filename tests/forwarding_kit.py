"""A fleet of enclaves on loopback for the key-forwarding tests and the fleet benchmark.

Built on `tests.unlock_kit`'s `World` (wrapper binaries, processes, clean-up): each enclave is
`locksmith-run python -c APP NAMES...` with a directory of its own under the world's root — its
`XDG_RUNTIME_DIR` (so its own keyforkd socket), its log file, and a `bin/` first on PATH whose
`locksmithd` wrapper adds the development trust root and the enclave's own options — and its
own 49504 port. The provider's address comes from `LOCKSMITHD_FORWARD_LISTEN`.

* `other_pcrs(world, nsm, name)`: a copy of a simulated NSM directory (same root and
  intermediate, so the same peer trust anchor) whose `trusted_hashes.json` names other PCRs:
  an enclave "with other PCRs".
* `approve(...)`: an approval file as `caution secret approve` writes it, made with the core
  API and a holder's private keyring (any expiry, also a past one).
* `FakeProvider`: a test double speaking F1–F4 with a simulated NSM that serves whatever secret
  it is given, without any check — a lying or compromised provider.
* `forwardd_pids(...)`: the forwardd processes the enclaves started (from their log lines), so
  a fixture can stop them by pid: they run in sessions of their own and outlive the boot.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from locksmith.core.attestation.document import parse_document
from locksmith.core.attestation.nsm_simulated import SimulatedNsm
from locksmith.core.forwarding.approval import PcrSet, Statement
from locksmith.core.forwarding.binding import provider_binding, seal_secret
from locksmith.core.forwarding.messages import (
    HELLO_CAP, REQUEST_CAP, Challenge, Forwarded, Refused, parse_hello, parse_request,
)
from locksmith.core.protocol import frame
from tests.core.forwarding.approval_kit import signed, signing_key
from tests.unlock_kit import APP, World, free_port

FORWARDD_PID = re.compile(r"\(forwardd, pid (\d+)\)")
PROVIDER_LISTENING = "forwarding provider listening on"


@dataclass
class Enclave:
    """One booting enclave: `locksmith-run` and, through it, locksmithd, keyforkd, the app."""

    name: str
    process: subprocess.Popen[bytes]
    port: int  # its 49504 (shard) port
    log_path: Path
    forward_port: int | None = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for(self, pattern: str, timeout: float = 60.0) -> re.Match[str]:
        """The first match of the regular expression `pattern` in the log, once it appears."""
        deadline = time.monotonic() + timeout
        while True:
            match = re.search(pattern, self.log())
            if match:
                return match
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} never logged {pattern!r}:\n{self.log()}")
            time.sleep(0.05)

    def view(self, timeout: float = 120.0) -> dict[str, str | None]:
        """What the application printed: the values it saw. The boot must have succeeded."""
        out, _ = self.process.communicate(timeout=timeout)
        assert self.process.returncode == 0, f"{self.name} failed:\n{self.log()}"
        value: dict[str, str | None] = json.loads(out)
        return value

    def stop(self) -> None:
        """Kill the boot (locksmith-run and locksmithd: one process group)."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)


def enclave_env(world: World, app_dir: Path, home: Path, nsm: Path, *, v1: bool = True,
                bundle: Path | None = None, forward_listen: int | None = None,
                forward_from_env: Sequence[str] = (), approvals: Path | None = None,
                extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = dict(world.env,
               PATH=f"{home / 'bin'}:{world.env['PATH']}",
               LOCKSMITH_BUNDLE=str(bundle or app_dir / ".caution" / "quorum-bundle.json"),
               LOCKSMITH_SECRETS_DIR=str(app_dir / ".caution" / "secrets"),
               LOCKSMITH_NSM="simulated", LOCKSMITH_NSM_DIR=str(nsm),
               XDG_RUNTIME_DIR=str(home / "run"),
               LOCKSMITH_APPROVALS_DIR=str(approvals or home / "approvals"))
    if v1:
        env["LOCKSMITH_KEYMAKER_PCR_POLICY"] = str(app_dir / ".caution" /
                                                   "keymaker-pcr-policy.json")
    if forward_listen is not None:
        env["LOCKSMITHD_FORWARD_LISTEN"] = f"127.0.0.1:{forward_listen}"
    if forward_from_env:
        env["LOCKSMITHD_FORWARD_FROM"] = ", ".join(forward_from_env)
    env.update(extra or {})
    return env


def start_enclave(world: World, app_dir: Path, name: str, names: Sequence[str], *, nsm: Path,
                  v1: bool = True, bundle: Path | None = None, provide: bool = False,
                  forward_from: Sequence[str] = (), forward_from_env: Sequence[str] = (),
                  approvals: Path | None = None, python: str = sys.executable) -> Enclave:
    """Start an enclave's boot without waiting: `forward_from` go in as `--forward-from`
    options, `forward_from_env` through `LOCKSMITHD_FORWARD_FROM`; `provide` reserves a
    provider port (`LOCKSMITHD_FORWARD_LISTEN`)."""
    home = world.root / name
    (home / "bin").mkdir(parents=True)
    (home / "run").mkdir(mode=0o700)
    options = [f"--trust-root {shlex_quote(str(nsm / 'root.pem'))}"] if v1 else []
    options += [f"--forward-from {shlex_quote(a)}" for a in forward_from]
    wrapper = home / "bin" / "locksmithd"
    wrapper.write_text(f'#!/bin/sh\nexec "{python}" -m locksmith locksmithd '
                       f'{" ".join(options)} "$@"\n')
    wrapper.chmod(0o755)
    port = free_port()
    forward_port = free_port() if provide else None
    env = enclave_env(world, app_dir, home, nsm, v1=v1, bundle=bundle,
                      forward_listen=forward_port, forward_from_env=forward_from_env,
                      approvals=approvals,
                      extra={"LOCKSMITHD_LISTEN_ADDR": f"127.0.0.1:{port}"})
    log_path = home / "boot.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(["locksmith-run", python, "-c", APP, *names], cwd=app_dir,
                                   env=env, stdout=subprocess.PIPE, stderr=log,
                                   start_new_session=True)
    world.processes.append(process)
    return Enclave(name, process, port, log_path, forward_port)


def boot_enclave(world: World, app_dir: Path, name: str, names: Sequence[str], *, nsm: Path,
                 **options: object) -> Enclave:
    """`start_enclave`, then wait until it serves the holders."""
    enclave = start_enclave(world, app_dir, name, names, nsm=nsm, **options)  # type: ignore[arg-type]
    enclave.wait_for(rf"listening on 127\.0\.0\.1:{enclave.port} ")
    return enclave


def shlex_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def other_pcrs(world: World, nsm: Path, name: str, pcr0: bytes = b"\x5a" * 48) -> Path:
    """A simulated NSM directory sharing `nsm`'s CA whose enclave measures other PCRs."""
    copy = world.root / name
    shutil.copytree(nsm, copy)
    hashes = json.loads((copy / "trusted_hashes.json").read_text())
    hashes["pcr0"] = pcr0.hex()
    (copy / "trusted_hashes.json").write_text(json.dumps(hashes))
    return copy


def pcrs_of(nsm: Path) -> PcrSet:
    hashes = json.loads((nsm / "trusted_hashes.json").read_text())
    return PcrSet(*(bytes.fromhex(hashes[f"pcr{i}"]) for i in range(3)))


def approve(directory: Path, private: Path, *, bundle_hash: bytes, pcrs: PcrSet,
            expires: int, created: int | None = None, name: str | None = None) -> Path:
    """An approval file by the holder whose private keyring is `private`, into `directory`."""
    now = int(time.time()) if created is None else created
    key = signing_key(private.read_text(), now)
    text = signed(key, Statement(bundle_hash, pcrs, expires), created=now)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / (name or f"{private.stem}-{pcrs.set_id}.asc")
    path.write_text(text)
    return path


def forwardd_pids(logs: Iterable[Path]) -> list[int]:
    pids: list[int] = []
    for path in logs:
        if path.exists():
            pids += [int(m) for m in FORWARDD_PID.findall(path.read_text(errors="replace"))]
    return pids


def stop_pids(pids: Iterable[int]) -> None:
    """SIGKILL each process we started (by its pid) and wait until it is gone."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            continue
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            if _zombie(pid):
                break
            time.sleep(0.02)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")
    except (OSError, IndexError):
        return True


# --- a provider that lies ------------------------------------------------------------------------


def _read_frame(sock: socket.socket, cap: int) -> bytes:
    decoder = frame.FrameDecoder()
    while True:
        payload = decoder.next_payload(cap)
        if payload is not None:
            return payload
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("peer closed")
        decoder.feed(chunk)


@dataclass
class FakeProvider:
    """F1–F4 on 127.0.0.1 with a simulated NSM (the requester's trust anchor accepts it),
    serving `secret` — or refusing with `refuse` — to every requester, checking nothing."""

    nsm_dir: Path
    secret: bytes
    refuse: str | None = None
    exchanges: int = 0
    sock: socket.socket = field(default_factory=socket.socket)
    address: str = ""  # 127.0.0.1:<port>, set when made
    _thread: threading.Thread | None = None
    _stopping: bool = False

    def __post_init__(self) -> None:
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"

    def __enter__(self) -> FakeProvider:
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stopping = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.sock.close()

    def _serve(self) -> None:
        nsm = SimulatedNsm.open(self.nsm_dir)
        while not self._stopping:
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(30)
                try:
                    self._exchange(conn, nsm)
                except (OSError, ValueError):
                    pass

    def _exchange(self, conn: socket.socket, nsm: SimulatedNsm) -> None:
        hello = parse_hello(_read_frame(conn, HELLO_CAP))
        self.exchanges += 1
        np = os.urandom(32)
        document = nsm.attest(user_data=provider_binding(hello.bundle_hash, np),
                              nonce=hello.nonce)
        conn.sendall(frame.encode(Challenge(np, document).encode()))
        request = parse_request(_read_frame(conn, REQUEST_CAP))
        if self.refuse is not None:
            conn.sendall(frame.encode(Refused(self.refuse).encode()))
            return
        requester_public = parse_document(request.attestation).public_key
        assert requester_public is not None
        e, c = seal_secret(self.secret, requester_public, bundle_hash=hello.bundle_hash,
                           requester_nonce=hello.nonce, provider_nonce=np)
        conn.sendall(frame.encode(Forwarded(e, c).encode()))
