"""Shared helpers for the benchmarks: timing, statistics, zipapp symlinks, import traces.

Every benchmark is a script that prints one JSON object (its result) on stdout, so that
`run.py` can start each in a fresh process: peak RSS and import state then belong to that
benchmark alone. Results share one shape (`result`), which `run.py` files under the benchmark
name and summarises.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

REPO = Path(__file__).resolve().parent.parent
DEFAULT_ZIPAPP = REPO / "dist" / "locksmith.pyz"
PYTHON = sys.executable  # the venv interpreter: source-tree runs and keyforkd
IMPORT_LINE = "import time:"

JSON = dict[str, Any]
T = TypeVar("T")


def stats(samples: Sequence[float]) -> JSON:
    """Median and min (seconds, plus every sample): the median is the typical run, the min
    the least disturbed one; a mean would let one slow outlier speak for all."""
    return {"median_s": round(statistics.median(samples), 4), "min_s": round(min(samples), 4),
            "samples_s": [round(s, 4) for s in samples]}


def timed(action: Callable[[], T]) -> tuple[float, T]:
    start = time.perf_counter()
    value = action()
    return time.perf_counter() - start, value


def run_timed(args: Sequence[str], *, env: Mapping[str, str] | None = None,
              cwd: Path | None = None) -> tuple[float, subprocess.CompletedProcess[bytes]]:
    """Run to completion, stdout/stderr captured; wall-clock seconds and the result.

    A non-zero exit raises: a benchmark must never report the time of a failed run."""
    start = time.perf_counter()
    done = subprocess.run(list(args), check=False, cwd=cwd,
                          env=dict(env) if env is not None else None,
                          stdin=subprocess.DEVNULL, capture_output=True, timeout=600)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited {done.returncode}:\n"
                           f"{done.stderr.decode(errors='replace')}")
    return elapsed, done


@contextmanager
def scratch_dir(prefix: str) -> Iterator[Path]:
    """A short directory under /tmp (Unix socket paths are limited to 107 bytes); removed."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def personality_links(zipapp: Path, directory: Path, names: Sequence[str]) -> Path:
    """`directory/bin/<name>` → the zipapp, as the enclave image installs them."""
    if not zipapp.is_file():
        raise FileNotFoundError(f"{zipapp} not found: build it first (`make build`)")
    bin_dir = directory / "bin"
    bin_dir.mkdir()
    for name in names:
        (bin_dir / name).symlink_to(zipapp.resolve())
    return bin_dir


def zipapp_env(shiv_root: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The caller's environment with a private SHIV_ROOT, so extraction is ours to warm."""
    env = dict(os.environ, SHIV_ROOT=str(shiv_root))
    env.pop("PYTHONPROFILEIMPORTTIME", None)
    env.update(extra or {})
    return env


def source_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONPROFILEIMPORTTIME", None)
    env.update(extra or {})
    return env


def shebang_interpreter() -> JSON:
    """What the zipapp's launcher finds first here (`python3`, then python3.13 … 3.11).

    A pyenv shim is a bash script that re-executes the real interpreter, adding a fixed cost
    to every zipapp start that an enclave image (a plain /usr/bin/python3) does not have;
    the benchmarks report it so a number is never read without knowing that."""
    found = shutil.which("python3")
    if found is None:
        return {"path": None, "is_script": False}
    with open(found, "rb") as handle:
        is_script = handle.read(2) == b"#!"
    return {"path": found, "resolved": os.path.realpath(found), "is_script": is_script}


def real_interpreter_path(directory: Path) -> Path:
    """A PATH entry whose `python3` and `python3.11` are the interpreter itself (no shim in
    between): the names the zipapp's launcher tries."""
    path_dir = directory / "realpy"
    path_dir.mkdir()
    for name in ("python3", "python3.11"):
        (path_dir / name).symlink_to(os.path.realpath(PYTHON))
    return path_dir


class ImportEntry(NamedTuple):
    module: str
    depth: int  # nesting: 0 for an import made by no other traced import
    self_us: int
    cumulative_us: int


def imported_modules(stderr: bytes) -> list[ImportEntry]:
    """The `-X importtime` (PYTHONPROFILEIMPORTTIME) lines of a run, in import order."""
    out = []
    for raw in stderr.decode(errors="replace").splitlines():
        if not raw.startswith(IMPORT_LINE):
            continue
        fields = raw[len(IMPORT_LINE):].split("|")
        if len(fields) != 3 or not fields[1].strip().isdigit():
            continue  # the header line
        name_field = fields[2][1:]
        depth = (len(name_field) - len(name_field.lstrip(" "))) // 2
        out.append(ImportEntry(name_field.strip(), depth, int(fields[0]), int(fields[1])))
    return out


def forbidden_loaded(modules: Sequence[str], forbidden: Sequence[str]) -> list[str]:
    """Modules whose top-level package is forbidden (`pgpy.constants` counts as `pgpy`)."""
    banned = set(forbidden)
    return sorted({m for m in modules if m.split(".", 1)[0] in banned})


def emit(result: JSON) -> None:
    """The benchmark's result as one JSON document on stdout (what `run.py` reads)."""
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")


# --- the runtime image, emulated on this machine -------------------------------------------

IMAGE_PERSONALITIES = ("caution", "keyforkd", "keymaker", "locksmith-oneshot", "locksmithd")
# What the Containerfile's runtime stage runs once at build time (its RUN step, verbatim).
_IMAGE_EXTRACT = ("import sysconfig; print(sysconfig.get_config_var('EXT_SUFFIX'))")


def image_interpreter() -> Path:
    """The interpreter the enclave image runs: Debian's /usr/bin/python3.11 (bookworm's build,
    as in the image) when this machine has it, else the real interpreter behind this venv."""
    debian = Path("/usr/bin/python3.11")
    if debian.is_file() and os.access(debian, os.X_OK):
        return debian
    return Path(os.path.realpath(PYTHON))


class ImageLike(NamedTuple):
    """The runtime image's layout, rebuilt under a scratch directory (see `image_like`)."""

    bin_dir: Path  # locksmith (a copy of the zipapp), its personality links, locksmith-run
    shiv_root: Path  # extracted and compiled at "build time"
    python: Path  # the interpreter the preamble finds first on PATH
    env: dict[str, str]  # PATH and SHIV_ROOT as in the image; no PYTHON* variables

    def cmd(self, name: str, *args: str) -> list[str]:
        return [str(self.bin_dir / name), *args]


def image_like(zipapp: Path, directory: Path) -> ImageLike:
    """The runtime image on this machine, as the Containerfile builds it.

    `directory/bin/locksmith` is a copy of the zipapp with the five personality links and
    locksmith-run beside it; PATH is that directory, then one whose `python3` and `python3.11`
    are `image_interpreter()` itself (no pyenv shim), then /usr/bin:/bin. SHIV_ROOT is extracted
    and byte-compiled by the same first run as the Containerfile's (`SHIV_COMPILE_PYC=1
    SHIV_INTERPRETER=1 locksmith -c ...`), the other Python versions' extension modules are
    deleted and `locksmith-oneshot --help` is run once, as there. The environment carries no
    PYTHON* variable (the image sets none; PYTHONDONTWRITEBYTECODE in particular would change
    what a run costs), so a timed run starts exactly as a boot does.
    """
    if not zipapp.is_file():
        raise FileNotFoundError(f"{zipapp} not found: build it first (`make build`)")
    bin_dir = directory / "bin"
    bin_dir.mkdir()
    shutil.copyfile(zipapp, bin_dir / "locksmith")
    (bin_dir / "locksmith").chmod(0o755)
    for name in IMAGE_PERSONALITIES:
        (bin_dir / name).symlink_to("locksmith")
    shutil.copyfile(REPO / "locksmith" / "scripts" / "run.sh", bin_dir / "locksmith-run")
    (bin_dir / "locksmith-run").chmod(0o755)
    python = image_interpreter()
    python_dir = directory / "python"
    python_dir.mkdir()
    for name in ("python3", "python3.11"):
        (python_dir / name).symlink_to(python)
    shiv_root = directory / "shiv"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "SHIV_"))}
    env.update(PATH=f"{bin_dir}:{python_dir}:/usr/local/bin:/usr/bin:/bin",
               SHIV_ROOT=str(shiv_root))
    done = subprocess.run([str(bin_dir / "locksmith"), "-c", _IMAGE_EXTRACT], check=True,
                          env={**env, "SHIV_COMPILE_PYC": "1", "SHIV_INTERPRETER": "1"},
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=600)
    suffix = done.stdout.strip()
    if not suffix.startswith(".cpython-3") or not suffix.endswith(".so"):
        raise RuntimeError(f"unexpected extension suffix {suffix!r}")
    for site_packages in shiv_root.glob("locksmith_*/site-packages"):
        for module in site_packages.rglob("*.cpython-3*.so"):
            if not module.name.endswith(suffix):
                module.unlink()
    run_timed([str(bin_dir / "locksmith-oneshot"), "--help"], env=env)
    return ImageLike(bin_dir, shiv_root, python, env)


def floor_commands(python: Path, shiv_root: Path) -> dict[str, list[str]]:
    """The interpreter's own floor: start and exit (`-I -S`, and plain as a program starts it),
    and start plus a bare import of the primitives locksmith-oneshot uses (X25519, AES, the
    hashes) from the extracted site-packages, nothing else."""
    site_packages = next(shiv_root.glob("locksmith_*/site-packages"))
    primitives = (f"import sys; sys.path.append({str(site_packages)!r}); "
                  "from cryptography.hazmat.primitives.asymmetric import x25519; "
                  "from cryptography.hazmat.primitives.ciphers import Cipher, algorithms; "
                  "from cryptography.hazmat.decrepit.ciphers.modes import CFB; "
                  "from cryptography.hazmat.primitives import hashes, hmac, keywrap")
    return {"python_I_S_pass": [str(python), "-I", "-S", "-c", "pass"],
            "python_pass": [str(python), "-c", "pass"],
            "python_I_S_primitives": [str(python), "-I", "-S", "-c", primitives]}


# Starts its arguments and writes the child's peak RSS (ru_maxrss, KiB) to the file in argv[1]
# (`max_rss_kib` says why a wrapper).
RSS_WRAPPER = """
import os, sys
pid = os.fork()
if pid == 0:
    try:
        os.execvp(sys.argv[2], sys.argv[2:])
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as out:
    out.write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def max_rss_kib(args: Sequence[str], *, env: Mapping[str, str] | None = None,
                cwd: Path | None = None) -> tuple[int, bytes]:
    """Run to completion; the peak RSS (KiB) of the program and of what it waited for, and its
    stdout.

    Why a wrapper: a child's `ru_maxrss` also counts the memory of the process it was forked
    from before its exec (Linux folds the old address space's high-water mark in), so a child
    of this benchmark process would report at least this process's size. The wrapper, an
    `-I -S` interpreter of a few MiB, forks it instead: figures above its own size are exact.
    A preamble that execs the interpreter keeps the pid, so this is the interpreter's peak."""
    with tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "rss"
        done = subprocess.run([str(image_interpreter()), "-I", "-S", "-c", RSS_WRAPPER,
                               str(report), *args], check=False, cwd=cwd,
                              env=dict(env) if env is not None else None,
                              stdin=subprocess.DEVNULL, capture_output=True, timeout=600)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} exited {done.returncode}:\n"
                               f"{done.stderr.decode(errors='replace')}")
        return int(report.read_text()), done.stdout


def fast_start(image: ImageLike, name: str, *args: str,
               options: Sequence[str] = ()) -> list[str]:
    """The command the preamble execs for `bin/<name> ARGS` once the zipapp is extracted (its
    launcher's FAST_START, this build's id), with extra interpreter `options` such as
    `-X importtime`: `-I` ignores PYTHONPROFILEIMPORTTIME, so this is how a benchmark traces
    the imports of a start exactly as a boot makes it."""
    site_packages = next(image.shiv_root.glob("locksmith_*/site-packages"))
    build_id = site_packages.parent.name.removeprefix("locksmith_")
    spec = importlib.util.spec_from_file_location(
        "_bench_launcher", site_packages / "_locksmith_launcher.py")
    assert spec is not None and spec.loader is not None
    launcher = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(launcher)
    return [str(image.python), *options, "-I", "-S", "-c", launcher.FAST_START, build_id,
            str(image.bin_dir / name), *args]


def vm_hwm_kib(pid: int) -> int:
    """A running process's peak resident set (kernel's VmHWM), for daemons we do not wait for."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmHWM for pid {pid}")
