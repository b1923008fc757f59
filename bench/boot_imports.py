"""Start-up cost of the boot-path personalities, and what they import (spec README §2).

Why: `locksmithd` and `locksmith-oneshot` run while the enclave boots, so their start-up is on
the boot's critical path, and the rule that keeps it short is an import rule — no PGPy (oneshot),
no typer/click, httpx, uvicorn/starlette. `--help` runs every module-level import of the
personality and nothing else, so its wall-clock time is the fixed start-up cost. It is measured
from the zipapp through a symlink (warm SHIV_ROOT, shebang resolved through PATH) and from the
source tree; the module list comes from one more run under PYTHONPROFILEIMPORTTIME (a separate
run, since the trace itself slows imports). The spec sets no number for start-up, so the
verdict is the import rule alone; the times are reported for trend-watching.

Usage: boot_imports.py [--zipapp PATH] [--repetitions N]  (JSON result on stdout)
"""

from __future__ import annotations

import argparse
from pathlib import Path

from benchlib import (DEFAULT_ZIPAPP, JSON, PYTHON, REPO, emit, forbidden_loaded,
                      imported_modules, personality_links, run_timed, scratch_dir,
                      shebang_interpreter, source_env, stats, zipapp_env)

FORBIDDEN: dict[str, tuple[str, ...]] = {
    "locksmith-oneshot": ("pgpy", "typer", "httpx", "uvicorn", "starlette", "click"),
    "locksmithd": ("typer", "httpx", "uvicorn", "starlette", "click"),
}
SLOWEST = 8


def commands(bin_dir: Path, shiv_root: Path,
             name: str) -> dict[str, tuple[list[str], dict[str, str]]]:
    return {
        "zipapp": ([str(bin_dir / name), "--help"], zipapp_env(shiv_root)),
        "source": ([PYTHON, "-m", "locksmith", name, "--help"], source_env()),
    }


def trace(args: list[str], env: dict[str, str]) -> JSON:
    """Modules imported by one run; total import time and where most of it goes (self ms)."""
    _, done = run_timed(args, env={**env, "PYTHONPROFILEIMPORTTIME": "1"}, cwd=REPO)
    entries = imported_modules(done.stderr)
    slowest = sorted(entries, key=lambda e: e.self_us, reverse=True)[:SLOWEST]
    return {"module_count": len(entries),
            "import_ms_total_traced": round(sum(e.self_us for e in entries) / 1000, 1),
            "slowest_imports_self_ms": {e.module: round(e.self_us / 1000, 1) for e in slowest},
            "modules": sorted(e.module for e in entries)}


def measure(zipapp: Path, repetitions: int) -> JSON:
    results: JSON = {}
    violations: list[str] = []
    with scratch_dir("bbi") as work:
        bin_dir = personality_links(zipapp, work, list(FORBIDDEN))
        for name, forbidden in FORBIDDEN.items():
            for variant, (args, env) in commands(bin_dir, work / "shiv", name).items():
                run_timed(args, env=env, cwd=REPO)  # warms SHIV_ROOT and the page cache
                samples = [run_timed(args, env=env, cwd=REPO)[0] for _ in range(repetitions)]
                traced = trace(args, env)
                found = forbidden_loaded(traced["modules"], forbidden)
                violations += [f"{name} ({variant}): {m}" for m in found]
                results[f"{name}_{variant}"] = {
                    **stats(samples), "forbidden": list(forbidden),
                    "forbidden_loaded": found, **traced}
    return {
        "target": "boot path imports: locksmith-oneshot loads none of pgpy, typer, httpx, "
                  "uvicorn, starlette, click; locksmithd none of typer, httpx, uvicorn, "
                  "starlette, click (spec README §2); --help times are informational",
        "passed": not violations,
        "headline": ", ".join(f"{k} --help {v['median_s']} s" for k, v in results.items())
                    + ("; forbidden imports: " + "; ".join(violations) if violations
                       else "; no forbidden imports"),
        "measurements": {"repetitions": repetitions, "launcher_python3": shebang_interpreter(),
                         **results},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zipapp", type=Path, default=DEFAULT_ZIPAPP)
    parser.add_argument("--repetitions", type=int, default=5)
    args = parser.parse_args()
    emit(measure(args.zipapp, args.repetitions))


if __name__ == "__main__":
    main()
