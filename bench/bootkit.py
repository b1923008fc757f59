"""An enclave boot on loopback from the image-like zipapp: a quorum, holders, `locksmith-run`.

Shared by the boot benchmarks (`last_shard_to_exec`, `peak_rss`). Everything is a real process
started from the zipapp as the runtime image installs it (`benchlib.image_like`): three holders
make development keys, a one-shot Keymaker with a simulated NSM makes a 2-of-3 V1 quorum, the
`.env` is encrypted with `caution secret encrypt`, and each boot runs `locksmith-run APP` with
locksmithd on 127.0.0.1 while two holders send their shards with `caution secret send-shard`.

The boot's stderr (locksmith-run, locksmithd, keyforkd, locksmith-oneshot: one pipe, inherited
by all) is read line by line in a thread that stamps each line with `time.time()` on arrival;
every writer flushes its line at once, so an arrival time is the event's time to well under a
millisecond. The application is `/bin/sh -c 'date +%s.%N; exec env -0'`: its first command
prints the wall-clock time (a fork and exec of `date` later than its first instruction, which
only makes the measured interval longer), then it dumps the environment it was given, which is
compared with the `.env`.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

from benchlib import ImageLike, run_timed

HOLDERS = ("alice", "bob", "carol")
THRESHOLD = 2
APP = "date +%s.%N; exec env -0"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def secret_values(count: int) -> dict[str, str]:
    """`count` values of 8 to 128 characters (URL-safe alphabet: `.env` quoting is tested
    elsewhere; here only the count and the bytes matter)."""
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"
    values = {}
    for i in range(count):
        raw = os.urandom(8 + (i * 37) % 121)
        values[f"SECRET_{i:04d}"] = "".join(alphabet[b % 64] for b in raw)
    return values


class Quorum(NamedTuple):
    work: Path
    app_dir: Path
    nsm: Path
    holders: dict[str, Path]  # name -> private key file
    values: dict[str, str]  # what the application must see


def make_quorum(image: ImageLike, work: Path, secrets: int) -> Quorum:
    """Holder keys, a 2-of-3 V1 quorum from a one-shot Keymaker, `secrets` encrypted values."""
    env = dict(image.env)
    for name in HOLDERS:
        run_timed(image.cmd("caution", "secret", "keygen", f"{name}.asc", "--name", name.title(),
                            "--email", f"{name}@example.org", "--shoot-self-in-foot"),
                  env=env, cwd=work)
    (work / "holders.asc").write_text("".join((work / f"{n}.asc").read_text() for n in HOLDERS))
    nsm = work / "nsm"
    port = free_port()
    log = work / "keymaker.log"
    with open(log, "wb") as err:
        keymaker = subprocess.Popen(
            image.cmd("keymaker", "--listen", f"127.0.0.1:{port}", "--nsm", "simulated",
                      "--nsm-dir", str(nsm), "--one-shot"),
            env=env, cwd=work, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
    try:
        deadline = time.monotonic() + 60
        while f"127.0.0.1:{port}" not in log.read_text(errors="replace"):
            if keymaker.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"keymaker did not start:\n{log.read_text()}")
            time.sleep(0.05)
        app_dir = work / "app"
        (app_dir / ".caution").mkdir(parents=True)
        (app_dir / "Procfile").write_text("locksmith: true\n")
        hashes = json.loads((nsm / "trusted_hashes.json").read_text())
        (app_dir / ".caution" / "keymaker-pcr-policy.json").write_text(json.dumps(
            {"sets": [{"pcrs": {str(i): hashes[f"pcr{i}"] for i in range(3)}}]}))
        run_timed(image.cmd("caution", "secret", "new", str(work / "holders.asc"),
                            "--threshold", str(THRESHOLD), "--max", str(len(HOLDERS)),
                            "--name", "bench", "--trust-root", str(nsm / "root.pem")),
                  env={**env, "KEYMAKER_URL": f"http://127.0.0.1:{port}"}, cwd=app_dir)
        if keymaker.wait(timeout=60) != 0:
            raise RuntimeError(f"keymaker failed:\n{log.read_text()}")
    finally:
        if keymaker.poll() is None:
            keymaker.kill()
            keymaker.wait()
    values = secret_values(secrets)
    (app_dir / ".env").write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    run_timed(image.cmd("caution", "secret", "encrypt", "--trust-root", str(nsm / "root.pem")),
              env=env, cwd=app_dir)
    return Quorum(work, app_dir, nsm, {n: work / f"{n}.private.asc" for n in HOLDERS}, values)


def enclave_bin(image: ImageLike, quorum: Quorum, directory: Path,
                wrappers: Mapping[str, str] | None = None) -> Path:
    """A PATH entry placed before the image's: `locksmithd` with the simulated Keymaker's root
    (a development boot takes it only as an option, as demo/demo.sh does), and `wrappers`
    (name -> a shell command line that replaces that program, `"$@"` appended)."""
    directory.mkdir()
    lines = {"locksmithd": f'"{image.bin_dir}/locksmith" locksmithd '
                           f'--trust-root "{quorum.nsm}/root.pem"'}
    lines.update(wrappers or {})
    for name, command in lines.items():
        path = directory / name
        path.write_text(f'#!/bin/sh\nexec {command} "$@"\n')
        path.chmod(0o755)
    return directory


class Line(NamedTuple):
    at: float  # time.time() when the line arrived
    text: str


class Boot(NamedTuple):
    lines: list[Line]  # the boot's stderr, stamped
    accepted_at: float  # locksmithd's `... 0 remaining` line
    sent_at: float  # the last send-shard process returned
    app_at: float  # the application's first command (date)
    environment: dict[str, str]  # what the application was given
    keyforkd_pid: int

    def first(self, text: str) -> float | None:
        return next((line.at for line in self.lines if text in line.text), None)


class _Reader(threading.Thread):
    def __init__(self, stream: object) -> None:
        super().__init__(daemon=True)
        self.stream = stream
        self.lines: list[Line] = []

    def run(self) -> None:
        for raw in self.stream:  # type: ignore[attr-defined]
            self.lines.append(Line(time.time(), raw.decode(errors="replace").rstrip("\n")))

    def wait_for(self, text: str, process: subprocess.Popen[bytes], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line.text for line in list(self.lines)):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the boot never logged {text!r}:\n" + self.text())
            time.sleep(0.01)

    def text(self) -> str:
        return "\n".join(line.text for line in self.lines)


def _send(image: ImageLike, quorum: Quorum, port: int, holder: str) -> None:
    run_timed(image.cmd("caution", "secret", "send-shard", "--address", f"127.0.0.1:{port}",
                        "--keyring", str(quorum.holders[holder]),
                        "--trusted-hashes", str(quorum.nsm / "trusted_hashes.json"),
                        "--trust-root", str(quorum.nsm / "root.pem")),
              env=image.env, cwd=quorum.app_dir)


def stop_keyforkd(pid: int, socket_path: Path) -> None:
    """keyforkd outlives the boot (its own session): SIGTERM, wait until it is gone."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    if Path(f"/proc/{pid}").exists():
        os.kill(pid, signal.SIGKILL)
    socket_path.unlink(missing_ok=True)


def pids_naming(text: str) -> list[int]:
    """The processes whose command line contains `text` (a path unique to this benchmark)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


@contextmanager
def boot(image: ImageLike, quorum: Quorum, bin_first: Path) -> Iterator[Boot]:
    """One boot: `locksmith-run /bin/sh -c APP` until the application has run; keyforkd is
    stopped when the block ends (after the caller has looked at it)."""
    port = free_port()
    socket_dir = quorum.work / f"kf{port}"
    socket_dir.mkdir(mode=0o700)
    socket_path = socket_dir / "keyforkd.sock"
    caution = quorum.app_dir / ".caution"
    env = dict(image.env, PATH=f"{bin_first}:{image.env['PATH']}",
               LOCKSMITH_BUNDLE=str(caution / "quorum-bundle.json"),
               LOCKSMITH_KEYMAKER_PCR_POLICY=str(caution / "keymaker-pcr-policy.json"),
               LOCKSMITH_SECRETS_DIR=str(caution / "secrets"),
               LOCKSMITHD_LISTEN_ADDR=f"127.0.0.1:{port}", LOCKSMITH_NSM="simulated",
               LOCKSMITH_NSM_DIR=str(quorum.nsm), KEYFORKD_SOCKET_PATH=str(socket_path))
    process = subprocess.Popen([str(image.bin_dir / "locksmith-run"), "/bin/sh", "-c", APP],
                               env=env, cwd=quorum.work, stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               start_new_session=True)
    reader = _Reader(process.stderr)
    reader.start()
    keyforkd_pid = 0
    try:
        reader.wait_for(f"listening on 127.0.0.1:{port}", process, 60)
        first, last = HOLDERS[0], HOLDERS[1]
        _send(image, quorum, port, first)
        _send(image, quorum, port, last)
        sent_at = time.time()
        assert process.stdout is not None
        out = process.stdout.read()
        status = process.wait(timeout=60)
        reader.wait_for("locksmith-oneshot: exported", process, 5)
        ready = next((line.text for line in reader.lines if "keyforkd is ready" in line.text), "")
        if "(pid " in ready:
            keyforkd_pid = int(ready.split("(pid ", 1)[1].split(")", 1)[0])
        if status != 0:
            raise RuntimeError(f"the boot failed (exit {status}):\n{reader.text()}")
        stamp, _, dump = out.partition(b"\n")
        environment = dict(item.decode().split("=", 1) for item in dump.split(b"\0") if item)
        accepted = [line.at for line in reader.lines
                    if "accepted share" in line.text and "; 0 remaining" in line.text]
        if not accepted:
            raise RuntimeError(f"no `0 remaining` line:\n{reader.text()}")
        yield Boot(list(reader.lines), accepted[0], sent_at, float(stamp), environment,
                   keyforkd_pid)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        if keyforkd_pid:
            stop_keyforkd(keyforkd_pid, socket_path)
        else:  # it may have started before the failure: find it by its (unique) socket path
            for pid in pids_naming(str(socket_path)):
                stop_keyforkd(pid, socket_path)
        reader.join(timeout=10)
