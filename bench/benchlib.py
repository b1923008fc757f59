"""Shared helpers for the benchmarks: timing, statistics, zipapp symlinks, import traces.

Every benchmark is a script that prints one JSON object (its result) on stdout, so that
`run.py` can start each in a fresh process: peak RSS and import state then belong to that
benchmark alone. Results share one shape (`result`), which `run.py` files under the benchmark
name and summarises.
"""

from __future__ import annotations

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
