"""Run every benchmark, write one JSON file under bench/results/, print a short summary.

Why one process per benchmark: peak RSS and the set of imported modules are per process, so a
benchmark measured inside a process that has already run another would report the other's
memory and imports. Each benchmark script prints its result as JSON; this file adds the machine
facts a number needs to be read (a 2-core VM and a workstation differ by integer factors) and
files everything under a UTC timestamp.

Exit status: 0 every target met, 1 a target missed, 2 a benchmark failed to run.

Usage: bench/run.py [--repetitions N] [--zipapp PATH] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from benchlib import DEFAULT_ZIPAPP, JSON, PYTHON, REPO

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
BENCHMARKS = {  # name -> whether it takes --zipapp
    "oneshot_vs_gpg": True,
    "cold_start": True,
    "last_shard_to_exec": True,
    "peak_rss": True,
    "keymaker_generation": False,
    "boot_imports": True,
    "identification": False,
    "abuse": False,  # a real locksmithd under hostile traffic; ignores --repetitions
    "image": False,  # builds its own images (root, podman, mmdebstrap)
    "forwarding_fleet": False,  # one provider, 20 enclaves booting from it; ignores --repetitions
}


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def git_revision() -> str:
    """The commit measured, `+dirty` when the work tree differs from it (read-only git)."""
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], check=False, cwd=REPO, capture_output=True, text=True,
                              timeout=30)
        return done.stdout.strip() if done.returncode == 0 else ""
    head = git("rev-parse", "--short", "HEAD") or "unknown"
    return head + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def machine() -> JSON:
    return {
        "nproc": os.cpu_count(), "usable_cpus": len(os.sched_getaffinity(0)),
        "cpu_model": cpu_model(), "python": platform.python_version(),
        "python_executable": PYTHON, "kernel": platform.release(),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def run_benchmark(name: str, takes_zipapp: bool, zipapp: Path, repetitions: int) -> JSON:
    """The benchmark's JSON result, or an error record if it failed to run."""
    args = [PYTHON, str(BENCH / f"{name}.py"), "--repetitions", str(repetitions)]
    if takes_zipapp:
        args += ["--zipapp", str(zipapp)]
    start = time.monotonic()
    done = subprocess.run(args, check=False, cwd=REPO, stdin=subprocess.DEVNULL,
                          capture_output=True, timeout=1800)
    elapsed = round(time.monotonic() - start, 1)
    if done.returncode != 0:
        tail = done.stderr.decode(errors="replace").strip().splitlines()[-15:]
        return {"passed": None, "error": "\n".join(tail), "benchmark_wall_s": elapsed}
    result: JSON = json.loads(done.stdout)
    result["benchmark_wall_s"] = elapsed
    return result


def summary(document: JSON, path: Path) -> str:
    facts = document["machine"]
    title = (f"locksmith benchmarks {document['started_utc']} @ {document['git']}: "
             f"{facts['cpu_model']} x{facts['nproc']}, Python {facts['python']}")
    lines = [title]
    for name, result in document["benchmarks"].items():
        if result["passed"] is None:
            verdict, text = "ERROR ", result["error"].splitlines()[-1:]
            lines.append(f"  {name:20} {verdict} {' '.join(text)}")
            continue
        verdict = "met   " if result["passed"] else "MISSED"
        lines.append(f"  {name:20} {verdict} {result['headline']}")
        lines.append(f"  {'':20}        target: {result['target']}")
    try:
        shown = path.relative_to(Path.cwd())
    except ValueError:
        shown = path
    lines.append(f"results: {shown}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repetitions", type=int, default=7)
    parser.add_argument("--zipapp", type=Path, default=DEFAULT_ZIPAPP)
    parser.add_argument("--only", action="append", choices=sorted(BENCHMARKS))
    args = parser.parse_args()
    started = datetime.now(timezone.utc)
    document: JSON = {"started_utc": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
                      "git": git_revision(), "machine": machine(),
                      "zipapp": str(args.zipapp.resolve()), "repetitions": args.repetitions,
                      "benchmarks": {}}
    for name, takes_zipapp in BENCHMARKS.items():
        if args.only and name not in args.only:
            continue
        print(f"running {name} ...", file=sys.stderr, flush=True)
        document["benchmarks"][name] = run_benchmark(name, takes_zipapp, args.zipapp,
                                                     args.repetitions)
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps(document, indent=2) + "\n")
    print(summary(document, path))
    verdicts = [r["passed"] for r in document["benchmarks"].values()]
    return 2 if None in verdicts else 0 if all(verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
