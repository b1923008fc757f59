"""locksmith-oneshot against GnuPG, Sequoia and the interpreter's floor, 10/100/1,000 secrets.

Why this shape (enclave.md §5; issue 11): the oneshot is the last program between the last
shard and the application, so it is compared with what a boot script could run instead — one
`gpg --decrypt` per secret, one `gpg --decrypt-files` process for all of them, one `sq decrypt`
per secret — and with the least any Python program doing this can cost: the interpreter
starting and exiting (`python3.11 -I -S -c pass`), and starting plus a bare import of the
primitives the oneshot uses (X25519, AES, CFB, the hashes, HMAC, key wrap), nothing else.

Everything runs as in the runtime image (`benchlib.image_like`): the zipapp pre-extracted with
bytecode, its personality links, the image's interpreter first on PATH, a keyforkd started from
the same zipapp (`--unsafe-secret-hex-file`, `--unsafe-serve-quorum-key-repeatedly`: the boot
serves the quorum key once). The oneshot is called as locksmith-run calls it: no arguments,
`KEYFORKD_SOCKET_PATH` and `LOCKSMITH_SECRETS_DIR` in the environment. GnuPG gets the quorum TSK
in a private GNUPGHOME and an untimed warm-up, so its agent is running; `sq` gets the TSK as
`--recipient-key`. Every contender must produce the plaintexts byte for byte, on every run, or
the benchmark fails. Runs alternate between the contenders, so machine noise falls on all.

Judged at 100 secrets (medians): the oneshot at least 10× faster than the `gpg --decrypt` loop
and 3× faster than `gpg --decrypt-files`, and at most 2× the floor (start + primitive imports).
Also reported: each contender's peak RSS (`ru_maxrss`), keyforkd's (`VmHWM`), the oneshot's
first run into an empty SHIV_ROOT (what the image's pre-extraction saves).

Usage: oneshot_vs_gpg.py [--zipapp PATH] [--repetitions N]  (JSON result on stdout)
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import signal
import subprocess
import time
from pathlib import Path

from benchlib import (DEFAULT_ZIPAPP, JSON, REPO, ImageLike, emit, floor_commands, image_like,
                      max_rss_kib, run_timed, scratch_dir, stats, zipapp_env)

from locksmith.core.openpgp import armor, message, quorumkey

SIZES = (10, 100, 1000)
JUDGED = 100
TARGET_VS_GPG_LOOP = 10.0
TARGET_VS_DECRYPT_FILES = 3.0
TARGET_VS_FLOOR = 2.0
GPG_LOOP = r"""
for f in "$1"/*.asc; do
    n=${f##*/}
    gpg --batch --quiet --decrypt "$f" > "$2/${n%.asc}" || exit 1
done
"""
SQ_LOOP = r"""
for f in "$1"/*.asc; do
    n=${f##*/}
    sq decrypt --recipient-key "$3" --output "$2/${n%.asc}" "$f" 2>/dev/null || exit 1
done
"""
_EXPORT = re.compile(r"export ([A-Za-z_][A-Za-z0-9_]*)='((?:[^']|'\\'')*)'\n")


def make_plaintexts(count: int) -> dict[str, bytes]:
    """`count` values of realistic sizes; a few carry a quote, a newline or non-ASCII UTF-8 so
    that the comparison also covers the export quoting."""
    values = {}
    for i in range(count):
        value = secrets.token_urlsafe(8 + (i * 37) % 120)
        if i % 10 == 3:
            value = f"it's {value}\nline two é"
        values[f"SECRET_{i:04d}"] = value.encode("utf-8")
    return values


def write_secrets(directory: Path, plaintexts: dict[str, bytes], secret: bytes) -> None:
    recipient = quorumkey.quorum_keys(secret).encrypt.public
    directory.mkdir()
    for name, value in plaintexts.items():
        data = armor.armor("MESSAGE", message.encrypt(value, [recipient]))
        (directory / f"{name}.asc").write_text(data)


def write_secret_file(path: Path, secret: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secret.hex() + "\n")


def start_keyforkd(image: ImageLike, secret_file: Path, sock: Path,
                   log: Path) -> subprocess.Popen[bytes]:
    """A real keyforkd from the image-like zipapp, returned once it has written READY."""
    ready_read, ready_write = os.pipe()
    args = image.cmd("keyforkd", "--socket", str(sock), "--unsafe-secret-hex-file",
                     str(secret_file), "--unsafe-serve-quorum-key-repeatedly",
                     "--ready-fd", str(ready_write))
    with open(log, "wb") as err:
        process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=err, pass_fds=(ready_write,), env=image.env)
    os.close(ready_write)
    try:
        with os.fdopen(ready_read, "rb") as ready:
            if ready.read() != b"READY\n":
                raise RuntimeError(f"keyforkd did not become ready:\n{log.read_text()}")
    except BaseException:
        stop(process)
        raise
    return process


def peak_rss_kib(pid: int) -> int | None:
    """VmHWM of a running process (KiB): its peak resident set so far."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
    process.wait()


def gpg_home(directory: Path, tsk: Path) -> Path:
    """A private GNUPGHOME holding the quorum TSK (this also starts its gpg-agent)."""
    home = directory / "g"
    home.mkdir(mode=0o700)
    run_timed(["gpg", "--homedir", str(home), "--batch", "--quiet", "--import", str(tsk)])
    return home


def kill_agent(home: Path) -> None:
    subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], check=False,
                   stdin=subprocess.DEVNULL, capture_output=True, timeout=30)


def parse_exports(stdout: bytes) -> dict[str, bytes]:
    text = stdout.decode("utf-8")
    values: dict[str, bytes] = {}
    position = 0
    for match in _EXPORT.finditer(text):
        if match.start() != position:
            raise RuntimeError(f"unexpected oneshot output at offset {position}")
        values[match.group(1)] = match.group(2).replace("'\\''", "'").encode("utf-8")
        position = match.end()
    if position != len(text):
        raise RuntimeError(f"unexpected oneshot output at offset {position}")
    return values


def read_outputs(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in directory.iterdir() if not p.name.endswith(".asc")}


def clear_outputs(directory: Path) -> None:
    for stale in directory.iterdir():  # a tool's files must come from this run
        if not stale.name.endswith(".asc"):
            stale.unlink()


def check(label: str, got: dict[str, bytes], expected: dict[str, bytes]) -> None:
    if got != expected:
        wrong = sorted(k for k in expected.keys() | got.keys() if got.get(k) != expected.get(k))
        raise RuntimeError(f"{label}: plaintexts differ for {len(wrong)} secrets, e.g. {wrong[:3]}")


def tool_version(*args: str) -> str:
    done = subprocess.run(list(args), check=False, capture_output=True, text=True, timeout=30)
    return done.stdout.splitlines()[0] if done.stdout else "unknown"


class Contender:
    """A timed command, how to read what it decrypted, and its samples."""

    def __init__(self, args: list[str], env: dict[str, str], outputs: Path | None) -> None:
        self.args, self.env, self.outputs = args, env, outputs
        self.samples: list[float] = []
        self.rss_kib: int | None = None

    def _check(self, out: bytes, expected: dict[str, bytes] | None, label: str) -> None:
        if expected is not None:
            got = read_outputs(self.outputs) if self.outputs is not None else parse_exports(out)
            check(label, got, expected)

    def run(self, expected: dict[str, bytes] | None, label: str, *, timed: bool) -> None:
        """One run, checked; timed unless it is the warm-up."""
        if self.outputs is not None:
            clear_outputs(self.outputs)
        elapsed, done = run_timed(self.args, env=self.env, cwd=REPO)
        self._check(done.stdout, expected, label)
        if timed:
            self.samples.append(elapsed)

    def measure_rss(self, expected: dict[str, bytes] | None, label: str) -> None:
        """One more run, untimed, for the peak RSS (`benchlib.max_rss_kib`)."""
        if self.outputs is not None:
            clear_outputs(self.outputs)
        self.rss_kib, out = max_rss_kib(self.args, env=self.env, cwd=REPO)
        self._check(out, expected, label)


def measure(zipapp: Path, repetitions: int) -> JSON:
    secret = os.urandom(32)
    results: JSON = {}
    with scratch_dir("bog") as work:
        image = image_like(zipapp, work)
        keys = quorumkey.quorum_keys(secret)
        tsk = work / "tsk.asc"
        tsk.write_text(quorumkey.secret_certificate(keys, generated=int(time.time())))
        secret_file = work / "secret.hex"
        write_secret_file(secret_file, secret)
        sock = work / "k.sock"
        home: Path | None = None
        keyforkd = start_keyforkd(image, secret_file, sock, work / "keyforkd.log")
        try:
            home = gpg_home(work, tsk)
            gpg_env = dict(image.env, GNUPGHOME=str(home))
            floors = {name: Contender(args, image.env, None)
                      for name, args in floor_commands(image.python, image.shiv_root).items()}
            first: dict[str, bytes] = {}
            for count in SIZES:
                plaintexts = make_plaintexts(count)
                first = first or plaintexts
                secrets_dir = work / f"s{count}"
                write_secrets(secrets_dir, plaintexts, secret)
                files_dir = work / f"f{count}"  # --decrypt-files writes beside its inputs
                files_dir.mkdir()
                for asc in secrets_dir.iterdir():
                    (files_dir / asc.name).write_bytes(asc.read_bytes())
                loop_out, sq_out = work / f"gl{count}", work / f"sq{count}"
                loop_out.mkdir()
                sq_out.mkdir()
                contenders = {
                    "oneshot": Contender(image.cmd("locksmith-oneshot"), dict(
                        image.env, KEYFORKD_SOCKET_PATH=str(sock),
                        LOCKSMITH_SECRETS_DIR=str(secrets_dir)), None),
                    "gpg_decrypt_loop": Contender(
                        ["sh", "-c", GPG_LOOP, "sh", str(secrets_dir), str(loop_out)],
                        gpg_env, loop_out),
                    "gpg_decrypt_files": Contender(
                        ["gpg", "--batch", "--quiet", "--yes", "--decrypt-files",
                         *sorted(str(p) for p in files_dir.glob("*.asc"))], gpg_env, files_dir),
                    "sq_decrypt_loop": Contender(
                        ["sh", "-c", SQ_LOOP, "sh", str(secrets_dir), str(sq_out), str(tsk)],
                        image.env, sq_out),
                }
                if count == JUDGED:
                    contenders.update(floors)
                for round_ in range(repetitions + 1):  # round 0 warms caches and the agent
                    for name, contender in contenders.items():
                        contender.run(None if name in floors else plaintexts,
                                      f"{name} ({count})", timed=round_ > 0)
                for name, contender in contenders.items():
                    contender.measure_rss(None if name in floors else plaintexts,
                                          f"{name} ({count})")
                results[str(count)] = {
                    name: {**stats(c.samples), "peak_rss_kib": c.rss_kib}
                    for name, c in contenders.items() if name not in floors}
            results["floor"] = {name: {**stats(c.samples), "peak_rss_kib": c.rss_kib}
                                for name, c in floors.items()}
            results["keyforkd_peak_rss_kib"] = peak_rss_kib(keyforkd.pid)
            cold_env = zipapp_env(work / "shiv-cold", {
                "PATH": image.env["PATH"], "KEYFORKD_SOCKET_PATH": str(sock),
                "LOCKSMITH_SECRETS_DIR": str(work / f"s{SIZES[0]}")})
            cold, done = run_timed(image.cmd("locksmith-oneshot"), env=cold_env)
            check("cold zipapp", parse_exports(done.stdout), first)
            results[f"oneshot_{SIZES[0]}_first_run_into_empty_shiv_root_s"] = round(cold, 3)
        finally:
            stop(keyforkd)
            if home is not None:
                kill_agent(home)
    return report(results, repetitions, image.python)


def ratio(a: float, b: float) -> float:
    return round(a / b, 2)


def report(results: JSON, repetitions: int, python: Path) -> JSON:
    at = results[str(JUDGED)]
    oneshot = at["oneshot"]["median_s"]
    floor = results["floor"]["python_I_S_primitives"]["median_s"]
    for count in SIZES:
        row = results[str(count)]
        for name in ("gpg_decrypt_loop", "gpg_decrypt_files", "sq_decrypt_loop"):
            row[name]["oneshot_speedup"] = ratio(row[name]["median_s"], row["oneshot"]["median_s"])
        row["oneshot"]["vs_floor"] = ratio(row["oneshot"]["median_s"], floor)
    vs_loop = at["gpg_decrypt_loop"]["oneshot_speedup"]
    vs_files = at["gpg_decrypt_files"]["oneshot_speedup"]
    vs_floor = at["oneshot"]["vs_floor"]
    passed = (vs_loop >= TARGET_VS_GPG_LOOP and vs_files >= TARGET_VS_DECRYPT_FILES
              and vs_floor <= TARGET_VS_FLOOR)
    return {
        "target": f"{JUDGED} secrets, image-like zipapp (median of {repetitions}): "
                  f"locksmith-oneshot >= {TARGET_VS_GPG_LOOP:g}x faster than a gpg --decrypt loop "
                  f"and >= {TARGET_VS_DECRYPT_FILES:g}x faster than gpg --decrypt-files, and "
                  f"<= {TARGET_VS_FLOOR:g}x the floor (python3.11 -I -S + primitive imports) "
                  "(issue 11)",
        "passed": passed,
        "headline": f"{JUDGED} secrets: oneshot {round(oneshot * 1000, 1)} ms; "
                    f"{vs_loop}x vs gpg loop ({round(at['gpg_decrypt_loop']['median_s'] * 1000)} "
                    f"ms), {vs_files}x vs gpg --decrypt-files "
                    f"({round(at['gpg_decrypt_files']['median_s'] * 1000)} ms), "
                    f"{at['sq_decrypt_loop']['oneshot_speedup']}x vs sq loop; "
                    f"{vs_floor}x the floor ({round(floor * 1000, 1)} ms)",
        "measurements": {
            "sizes": list(SIZES), "repetitions": repetitions, "interpreter": str(python),
            **results, "plaintexts_identical": True,  # any difference raised in `check`
            "gpg": tool_version("gpg", "--version"), "sq": tool_version("sq", "--version"),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zipapp", type=Path, default=DEFAULT_ZIPAPP)
    parser.add_argument("--repetitions", type=int, default=5)
    args = parser.parse_args()
    emit(measure(args.zipapp, args.repetitions))


if __name__ == "__main__":
    main()
