"""Start-up of each personality from the image-like zipapp against the interpreter's own.

Why: every boot starts locksmithd, keyforkd and locksmith-oneshot once, two of them on the
critical path after the last shard (issue 11), and `--help` is a personality's fixed start-up
cost: the shell preamble, the interpreter, the launcher, the personality's module-level imports,
argparse, one screen of text. Measured as the runtime image runs it (`benchlib.image_like`:
pre-extracted SHIV_ROOT with bytecode, the image's interpreter first on PATH, each personality
through its link) against `python3.11 -c pass` (and `-I -S -c pass`) of the same interpreter,
alternating runs. Judged: `locksmith-oneshot --help` at most 3× `python3.11 -c pass` (medians);
the other personalities are reported.

Usage: cold_start.py [--zipapp PATH] [--repetitions N]  (JSON result on stdout)
"""

from __future__ import annotations

import argparse
from pathlib import Path

from benchlib import (DEFAULT_ZIPAPP, IMAGE_PERSONALITIES, JSON, emit, image_like, run_timed,
                      scratch_dir, stats)

TARGET_RATIO = 3.0
JUDGED = "locksmith-oneshot"


def measure(zipapp: Path, repetitions: int) -> JSON:
    with scratch_dir("bcs") as work:
        image = image_like(zipapp, work)
        commands = {"python_pass": [str(image.python), "-c", "pass"],
                    "python_I_S_pass": [str(image.python), "-I", "-S", "-c", "pass"],
                    **{f"{name} --help": image.cmd(name, "--help")
                       for name in IMAGE_PERSONALITIES},
                    "locksmith --help": image.cmd("locksmith", "--help")}
        samples: dict[str, list[float]] = {name: [] for name in commands}
        for round_ in range(repetitions + 1):  # round 0 warms the page cache
            for name, args in commands.items():
                elapsed, _ = run_timed(args, env=image.env)
                if round_ > 0:
                    samples[name].append(elapsed)
    results: JSON = {name: stats(values) for name, values in samples.items()}
    floor = results["python_pass"]["median_s"]
    for name, result in results.items():
        result["vs_python_pass"] = round(result["median_s"] / floor, 2)
    judged = results[f"{JUDGED} --help"]
    return {
        "target": f"{JUDGED} --help from the image-like zipapp at most {TARGET_RATIO:g}x "
                  f"python3.11 -c pass (medians of {repetitions}; issue 11)",
        "passed": judged["vs_python_pass"] <= TARGET_RATIO,
        "headline": ", ".join(f"{name} {round(results[name]['median_s'] * 1000, 1)} ms"
                              for name in results) + f"; {JUDGED} --help "
                    f"{judged['vs_python_pass']}x python3.11 -c pass",
        "measurements": {"repetitions": repetitions, "interpreter": str(image.python),
                         **results},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zipapp", type=Path, default=DEFAULT_ZIPAPP)
    parser.add_argument("--repetitions", type=int, default=7)
    args = parser.parse_args()
    emit(measure(args.zipapp, args.repetitions))


if __name__ == "__main__":
    main()
