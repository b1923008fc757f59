"""What the boot-path personalities import (spec README §2), traced as the image starts them.

Why: `locksmithd`, `keyforkd` and `locksmith-oneshot` run while the enclave boots, and the rule
that keeps them light is an import rule — no PGPy (oneshot), no typer/click, httpx,
uvicorn/starlette. `--help` runs every module-level import of a personality; for the oneshot a
real decrypting run (against a keyforkd of the same zipapp) is traced too. Each is traced with
`-X importtime` on exactly the command the zipapp's preamble execs in the runtime image
(`benchlib.fast_start`: `-I` ignores PYTHONPROFILEIMPORTTIME). The verdict is the import rule;
the module counts and the slowest imports are reported (start-up times are `cold_start`'s).

Usage: boot_imports.py [--zipapp PATH] [--repetitions N]  (JSON result on stdout)
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from benchlib import (DEFAULT_ZIPAPP, JSON, emit, fast_start, forbidden_loaded, image_like,
                      imported_modules, run_timed, scratch_dir)

from locksmith.core.openpgp import armor, message, quorumkey

FORBIDDEN: dict[str, tuple[str, ...]] = {
    "locksmith-oneshot": ("pgpy", "typer", "httpx", "uvicorn", "starlette", "click"),
    "locksmithd": ("typer", "httpx", "uvicorn", "starlette", "click"),
    "keyforkd": ("typer", "httpx", "uvicorn", "starlette", "click"),
}
SLOWEST = 8


def trace(args: list[str], env: dict[str, str]) -> JSON:
    """Modules imported by one run; total traced import time and the slowest imports."""
    _, done = run_timed(args, env=env)
    entries = imported_modules(done.stderr)
    slowest = sorted(entries, key=lambda e: e.self_us, reverse=True)[:SLOWEST]
    return {"module_count": len(entries),
            "import_ms_total_traced": round(sum(e.self_us for e in entries) / 1000, 1),
            "slowest_imports_self_ms": {e.module: round(e.self_us / 1000, 1) for e in slowest},
            "modules": sorted(e.module for e in entries)}


def oneshot_run(image_env: dict[str, str], work: Path, keyforkd: list[str]) -> dict[str, str]:
    """A keyforkd (of the zipapp) and three secrets: the environment of a decrypting run."""
    import subprocess

    secret = os.urandom(32)
    secrets_dir = work / "secrets"
    secrets_dir.mkdir()
    recipient = quorumkey.quorum_keys(secret).encrypt.public
    for i in range(3):
        (secrets_dir / f"S{i}.asc").write_text(
            armor.armor("MESSAGE", message.encrypt(b"value", [recipient])))
    hex_file = work / "secret.hex"
    fd = os.open(hex_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, secret.hex().encode())
    os.close(fd)
    sock = work / "k.sock"
    subprocess.Popen([*keyforkd, "--socket", str(sock), "--unsafe-secret-hex-file",
                      str(hex_file), "--unsafe-serve-quorum-key-repeatedly"], env=image_env,
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 30
    while not sock.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    return dict(image_env, KEYFORKD_SOCKET_PATH=str(sock), LOCKSMITH_SECRETS_DIR=str(secrets_dir))


def measure(zipapp: Path) -> JSON:
    results: JSON = {}
    violations: list[str] = []
    with scratch_dir("bbi") as work:
        image = image_like(zipapp, work)
        runs = {f"{name} --help": (name, fast_start(image, name, "--help",
                                                   options=("-X", "importtime")), image.env)
                for name in FORBIDDEN}
        env = oneshot_run(image.env, work, image.cmd("keyforkd"))
        runs["locksmith-oneshot (decrypting 3 secrets)"] = (
            "locksmith-oneshot", fast_start(image, "locksmith-oneshot",
                                            options=("-X", "importtime")), env)
        try:
            for label, (name, args, run_env) in runs.items():
                traced = trace(args, run_env)
                found = forbidden_loaded(traced["modules"], FORBIDDEN[name])
                violations += [f"{label}: {m}" for m in found]
                results[label] = {"forbidden": list(FORBIDDEN[name]), "forbidden_loaded": found,
                                  **traced}
        finally:
            from bootkit import pids_naming, stop_keyforkd

            for pid in pids_naming(env["KEYFORKD_SOCKET_PATH"]):
                stop_keyforkd(pid, Path(env["KEYFORKD_SOCKET_PATH"]))
    return {
        "target": "boot path imports: locksmith-oneshot loads none of pgpy, typer, httpx, "
                  "uvicorn, starlette, click; locksmithd and keyforkd none of typer, httpx, "
                  "uvicorn, starlette, click (spec README §2)",
        "passed": not violations,
        "headline": ", ".join(f"{k}: {v['module_count']} modules" for k, v in results.items())
                    + ("; forbidden imports: " + "; ".join(violations) if violations
                       else "; no forbidden imports"),
        "measurements": results,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zipapp", type=Path, default=DEFAULT_ZIPAPP)
    parser.add_argument("--repetitions", type=int, default=1, help="ignored: one trace each")
    args = parser.parse_args()
    emit(measure(args.zipapp))


if __name__ == "__main__":
    main()
