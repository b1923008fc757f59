"""Fleet boot by key forwarding: one provider, N enclaves booting at once from it (issue 12).

Why a bench: the figure that matters — how long a fleet takes to come up once the first
enclave is unlocked, and how many holder actions that costs — is a measurement on a given
machine. The verdict it does give: every application of every wave started with its secrets,
no requester took a share from a holder, and the whole fleet cost the holders 2 actions (the
first enclave's unlock).

Set-up (as tests/test_forwarding_e2e.py, real processes on loopback, simulated NSM): three
holders' keys, a 2-of-3 V1 quorum from a one-shot Keymaker, `secret encrypt` of two values.
Enclave A boots with `LOCKSMITHD_FORWARD_LISTEN` and is unlocked by two `send-shard` runs; its
forwardd serves from then on. Then, per wave, N enclaves of the same image (`locksmith-run`
each: locksmithd → keyforkd → locksmith-oneshot → the application; their own keyforkd socket
and 49504 port) are started at the same instant with `LOCKSMITHD_FORWARD_FROM` = A. Timed: from
that instant to each application's output, and to the last one ("all started"). Every process
is stopped by pid in a `finally` (forwardd's pid from locksmithd's log), and the world's clean-up
checks that none is left.

Usage: forwarding_fleet.py [--enclaves N] [--waves N] [--repetitions N (ignored; run.py passes
it)] (JSON result on stdout, progress on stderr)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

from benchlib import REPO, emit, stats, vm_hwm_kib

sys.path.insert(0, str(REPO))

from tests.forwarding_kit import (  # noqa: E402
    PROVIDER_LISTENING, Enclave, boot_enclave, forwardd_pids, start_enclave, stop_pids,
)
from tests.unlock_kit import (  # noqa: E402
    World, keygen, make_quorum, send_with_keyring, world_in,
)

VALUES = {"DATABASE_URL": "postgres://app:s3cret@db/app", "API_TOKEN": "tok-42"}
ENV_FILE = "DATABASE_URL=postgres://app:s3cret@db/app\nAPI_TOKEN=tok-42\n"

RSS_LIMIT_MIB = 100  # issue 11's limit for every enclave personality


def wave(world: World, app_dir: Path, nsm: Path, provider: str, count: int,
         index: int) -> dict[str, object]:
    """Start `count` enclaves at once; seconds from the start to each application's output."""
    enclaves: list[Enclave] = []
    finished: dict[str, float] = {}
    delivered: dict[str, bool] = {}
    start = time.perf_counter()
    for i in range(count):
        enclaves.append(start_enclave(world, app_dir, f"w{index}e{i}", list(VALUES), nsm=nsm,
                                      forward_from_env=[provider]))

    def collect(enclave: Enclave) -> None:
        try:
            delivered[enclave.name] = enclave.view(timeout=300) == VALUES
        except Exception:  # a failed boot is reported, not raised in a thread
            delivered[enclave.name] = False
        finished[enclave.name] = time.perf_counter() - start

    threads = [threading.Thread(target=collect, args=(e,)) for e in enclaves]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    logs = {e.name: e.log() for e in enclaves}
    forwarded = [name for name, log in logs.items() if "received the secret from" in log]
    holder_actions = sum(log.count("accepted share from holder") for log in logs.values())
    failed = [name for name, ok in delivered.items() if not ok]
    for enclave in enclaves:
        enclave.stop()
    times = sorted(finished.values())
    return {"enclaves": count, "all_started_s": round(times[-1], 3),
            "per_enclave": stats(times), "delivered": count - len(failed),
            "received_by_forwarding": len(forwarded), "holder_actions": holder_actions,
            **({"failed_log_tail": logs[failed[0]][-2000:]} if failed else {})}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--enclaves", type=int, default=20)
    parser.add_argument("--waves", type=int, default=3)
    parser.add_argument("--repetitions", type=int, default=1, help="ignored (run.py)")
    args = parser.parse_args()

    worlds = world_in()
    world = next(worlds)
    provider: Enclave | None = None
    logs: list[Path] = []
    try:
        keys = [keygen(world, f"holder{i}") for i in range(3)]
        quorum = make_quorum(world, [public for public, _ in keys], 2, ENV_FILE)
        provider = boot_enclave(world, quorum.app_dir, "a", list(VALUES), nsm=quorum.nsm,
                                provide=True)
        logs.append(provider.log_path)
        first_shard = time.perf_counter()
        for _, private in keys[:2]:  # the only holder actions of the whole fleet
            send_with_keyring(world, quorum.app_dir, provider.port, private, quorum.nsm)
        assert provider.view() == VALUES, provider.log()
        provider.wait_for(PROVIDER_LISTENING)
        provider_up = time.perf_counter() - first_shard
        address = f"127.0.0.1:{provider.forward_port}"
        print(f"provider {address} serving {provider_up:.2f} s after the first shard",
              file=sys.stderr, flush=True)
        waves = []
        for index in range(args.waves):
            result = wave(world, quorum.app_dir, quorum.nsm, address, args.enclaves, index)
            logs += [world.root / f"w{index}e{i}" / "boot.log" for i in range(args.enclaves)]
            waves.append(result)
            print(f"wave {index}: {result['delivered']}/{args.enclaves} started, all in "
                  f"{result['all_started_s']} s", file=sys.stderr, flush=True)
        forwarded_lines = provider.log().count("forwarded the secret to")
        # forwardd's peak after serving every wave: what the image needs beside keyforkd.
        forwardd_kib = max(vm_hwm_kib(pid) for pid in forwardd_pids([provider.log_path]))
    finally:
        stop_pids(forwardd_pids(logs))
        if provider is not None:
            provider.stop()
        next(worlds, None)

    all_started = [float(w["all_started_s"]) for w in waves]  # type: ignore[arg-type]
    holder_actions = 2 + sum(int(w["holder_actions"]) for w in waves)  # type: ignore[call-overload]
    passed = (all(w["delivered"] == args.enclaves == w["received_by_forwarding"] for w in waves)
              and holder_actions == 2 and forwardd_kib < RSS_LIMIT_MIB * 1024)
    forwardd_mib = round(forwardd_kib / 1024, 1)
    median = round(statistics.median(all_started), 2)
    emit({
        "target": f"informational: one provider, {args.enclaves} enclaves booting at once from "
                  "it; passed = every application started with its secrets by forwarding and "
                  f"the fleet cost the holders 2 actions; forwardd's peak RSS under "
                  f"{RSS_LIMIT_MIB} MiB",
        "passed": passed,
        "headline": f"{args.enclaves} enclaves all started {median} s after their boot began "
                    f"(median of {len(waves)} waves, best {min(all_started):.2f} s); holder "
                    f"actions for the whole fleet: {holder_actions}; forwardd peak RSS "
                    f"{forwardd_mib} MiB",
        "measurements": {
            "enclaves_per_wave": args.enclaves,
            "waves": waves,
            "all_started": stats(all_started),
            "holder_actions": holder_actions,
            "provider_serving_after_first_shard_s": round(provider_up, 3),
            "provider_forwarded_lines": forwarded_lines,
            "forwardd_peak_rss_mib": forwardd_mib,
        },
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
