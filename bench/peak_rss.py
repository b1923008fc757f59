"""Peak RSS of locksmithd, keyforkd and locksmith-oneshot in a real boot (issue 11).

Why: an enclave's memory is fixed when it is launched, so what the boot's programs need at their
peak is what the image must be given on top of the application. Measured in one boot on
loopback as `last_shard_to_exec` runs it (bootkit: image-like zipapp, 2-of-3 V1 quorum, 100
secrets, two holders): locksmithd and locksmith-oneshot are started through a wrapper that
reports their `ru_maxrss` (benchlib.max_rss_kib says why a wrapper), keyforkd's `VmHWM` is read
once the application has run (it has served the oneshot by then). The boot runs them one after
the other except for two overlaps — locksmithd waits for keyforkd's readiness, keyforkd serves
the oneshot — so the image needs the larger of locksmithd + keyforkd and keyforkd + oneshot,
and keyforkd's alone beside the application afterwards. Judged: each under 100 MiB.

Usage: peak_rss.py [--zipapp PATH] [--repetitions N]  (JSON result on stdout)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import bootkit
from benchlib import (DEFAULT_ZIPAPP, JSON, RSS_WRAPPER, emit, image_like, scratch_dir,
                      vm_hwm_kib)

SECRETS = 100
TARGET_MIB = 100


def measure(zipapp: Path, repetitions: int) -> JSON:
    peaks: dict[str, list[int]] = {"locksmithd": [], "keyforkd": [], "locksmith-oneshot": []}
    with scratch_dir("brs") as work:
        image = image_like(zipapp, work)
        (work / "q").mkdir()
        quorum = bootkit.make_quorum(image, work / "q", SECRETS)
        wrapper = work / "rss.py"
        wrapper.write_text(RSS_WRAPPER)
        reports = {name: work / f"{name}.rss" for name in peaks}
        measured = f'"{image.python}" -I -S "{wrapper}"'
        bin_first = bootkit.enclave_bin(image, quorum, work / "enclave-bin", {
            "locksmithd": f'{measured} "{reports["locksmithd"]}" "{image.bin_dir}/locksmith" '
                          f'locksmithd --trust-root "{quorum.nsm}/root.pem"',
            "locksmith-oneshot": f'{measured} "{reports["locksmith-oneshot"]}" '
                                 f'"{image.bin_dir}/locksmith-oneshot"'})
        for _ in range(max(1, repetitions)):
            with bootkit.boot(image, quorum, bin_first) as run:
                if {k: run.environment.get(k) for k in quorum.values} != quorum.values:
                    raise RuntimeError("the application's environment differs from the .env")
                peaks["keyforkd"].append(vm_hwm_kib(run.keyforkd_pid))
            for name in ("locksmithd", "locksmith-oneshot"):
                peaks[name].append(int(reports[name].read_text()))
    worst = {name: max(values) for name, values in peaks.items()}
    mib = {name: round(kib / 1024, 1) for name, kib in worst.items()}
    image_needs = max(mib["locksmithd"] + mib["keyforkd"],
                      mib["keyforkd"] + mib["locksmith-oneshot"])
    return {
        "target": f"peak RSS of locksmithd, keyforkd and locksmith-oneshot in a boot "
                  f"({SECRETS} secrets), each under {TARGET_MIB} MiB (issue 11)",
        "passed": all(value < TARGET_MIB for value in mib.values()),
        "headline": ", ".join(f"{name} {value} MiB" for name, value in mib.items())
                    + f"; the boot needs about {round(image_needs, 1)} MiB at its peak "
                      f"(two programs overlap), keyforkd's {mib['keyforkd']} MiB beside the "
                      "application afterwards",
        "measurements": {"secrets": SECRETS, "boots": max(1, repetitions),
                         "peak_rss_mib": mib, "peak_rss_kib_samples": peaks,
                         "boot_peak_mib": round(image_needs, 1), "interpreter": str(image.python)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zipapp", type=Path, default=DEFAULT_ZIPAPP)
    parser.add_argument("--repetitions", type=int, default=3)
    args = parser.parse_args()
    emit(measure(args.zipapp, args.repetitions))


if __name__ == "__main__":
    main()
