"""Abuse run: a real locksmithd on 127.0.0.1 under every kind of hostile traffic at once, while
honest holders unlock (issue 10, item 9; docs/security.md "Abuse run").

Why a bench and not a test: the figures that matter here — how long an honest unlock takes
under pressure, how much memory the daemon needs for it — are measurements on a given machine,
not verdicts a timed test could give without being flaky. The verdict this run does give is
the issue's acceptance: honest holders unlock in *every* round and the daemon's peak RSS stays
under 200 MiB.

Each round starts a fresh daemon (simulated NSM, a V1 2-of-3 bundle from tests/locksmithd_kit;
one bundle for the whole run, as a re-booted enclave would serve it) and, concurrently:

* garbage: connections that send 1–2048 random bytes and close (1,000 over the whole run);
* slowloris: peers that send a frame header and then one byte per second;
* half-open peers that connect and send nothing, and idle peers (`HostilePeers`) that send
  message 1 and idle — as many as the daemon has slots, so every slot is held and each holder
  waits for an idle peer's grace to run out;
* oversize headers (a length above 1 MiB) before message 1;
* a flood of well-formed message 3s signed by a key outside the bundle;
* a rogue holder (holder 0) submitting random shares with its real signing key, again after
  every answer;
* a replay: the message 3 holder 1 sent in the previous round (to the previous daemon; in the
  first round, one captured on a connection that was then closed unsent) is resent on a new
  connection before holder 1 submits. It must not count: holder 1's own submission must still
  be accepted, not refused as a duplicate.

Then holders 1 and 2 submit (concurrently, as `Client` does it — the holder CLI's session); the
latency is from their first byte to the last verdict. Everything is bounded: a fixed number of
rounds, a per-round deadline, every thread stops when the round ends, and every daemon (and the
keyforkd it starts) is killed by PID in a `finally`.

Usage: abuse.py [--rounds N] [--garbage N] [--repetitions N (ignored; run.py passes it)]
(JSON result on stdout, a summary on stderr)
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from benchlib import REPO, emit, scratch_dir

sys.path.insert(0, str(REPO))

from locksmith.core.protocol import frame  # noqa: E402
from locksmith.core.protocol.messages import SubmissionMessage, Verdict  # noqa: E402
from locksmith.core.protocol.reconstitution import REJECT_DUPLICATE  # noqa: E402
from locksmith.core.protocol.session import Accepted, HolderSession, Rejected  # noqa: E402
from locksmith.personalities.locksmithd.gate import Limits  # noqa: E402
from tests.core.protocol_kit import Holder, generated_quorum  # noqa: E402
from tests.locksmithd_kit import (  # noqa: E402
    Client, Daemon, Daemons, HostilePeers, Sim, v1_quorum, write_bundle,
)

RSS_LIMIT_MIB = 200.0
ROUND_DEADLINE = 60.0  # seconds; a round that takes longer is a failed round
THRESHOLD, HOLDERS = 2, 3
SLOWLORIS = 8
HALF_OPEN = 16
OVERSIZE = 20
FLOOD = 10  # per flood thread
FLOOD_THREADS = 4
ONE_MIB = 1 << 20


@dataclass
class Counters:
    """Connections per kind (`opened`: the connect succeeded) and how they ended."""

    opened: dict[str, int] = field(default_factory=dict)
    closed_by_daemon: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, kind: str, *, closed: bool = False) -> None:
        with self.lock:
            target = self.closed_by_daemon if closed else self.opened
            target[kind] = target.get(kind, 0) + 1


def _connect(address: tuple[str, int], timeout: float = 5.0) -> socket.socket | None:
    try:
        return socket.create_connection(address, timeout=timeout)
    except OSError:
        return None  # the daemon is gone (round over) or refused us


def _closed_by_peer(sock: socket.socket, within: float) -> bool:
    """True when the daemon closes (EOF/reset) within `within` s; whatever it sends is read."""
    sock.settimeout(within)
    deadline = time.monotonic() + within
    try:
        while time.monotonic() < deadline:
            if not sock.recv(65536):
                return True
    except (TimeoutError, socket.timeout):
        return False
    except OSError:
        return True
    return False


# --- the attackers (each runs until `stop` or its count is done) -----------------------------


def garbage(address: tuple[str, int], count: int, counters: Counters,
            stop: threading.Event) -> None:
    """Random bytes, then close: the frame decoder and the HELLO eviction path."""
    for _ in range(count):
        if stop.is_set():
            return
        sock = _connect(address)
        if sock is None:
            continue
        counters.add("garbage")
        try:
            sock.sendall(os.urandom(1 + int.from_bytes(os.urandom(2), "big") % 2048))
        except OSError:
            pass
        sock.close()


def slowloris(address: tuple[str, int], counters: Counters, stop: threading.Event) -> None:
    """Frame headers, then a byte a second, reconnecting when cut (the 10 s message-1 limit)."""
    socks: list[socket.socket] = []
    while not stop.is_set():
        while len(socks) < SLOWLORIS and not stop.is_set():
            sock = _connect(address)
            if sock is None:
                break
            counters.add("slowloris")
            try:
                sock.sendall((64).to_bytes(4, "big"))
            except OSError:
                sock.close()
                continue
            socks.append(sock)
        for sock in list(socks):
            try:
                sock.sendall(b"{")
            except OSError:
                counters.add("slowloris", closed=True)
                socks.remove(sock)
                sock.close()
        stop.wait(1.0)
    for sock in socks:
        sock.close()


def half_open(address: tuple[str, int], counters: Counters, stop: threading.Event) -> None:
    """Connections that say nothing, and ones that stop halfway through message 1."""
    socks = []
    for k in range(HALF_OPEN):
        sock = _connect(address)
        if sock is None:
            continue
        counters.add("half_open")
        if k % 2:
            try:
                sock.sendall(HolderSession().send_nonce()[:10])
            except OSError:
                pass
        socks.append(sock)
    stop.wait(ROUND_DEADLINE)
    for sock in socks:
        sock.close()


def oversize(address: tuple[str, int], counters: Counters, stop: threading.Event) -> None:
    """A frame header announcing more than 1 MiB: must be closed at once, nothing buffered."""
    for k in range(OVERSIZE):
        if stop.is_set():
            return
        sock = _connect(address)
        if sock is None:
            continue
        counters.add("oversize")
        length = 0xFFFFFFFF if k % 2 else ONE_MIB + 1
        try:
            sock.sendall(length.to_bytes(4, "big") + b"A" * 4096)
            if _closed_by_peer(sock, 5.0):
                counters.add("oversize", closed=True)
        except OSError:
            counters.add("oversize", closed=True)
        sock.close()


def flood(address: tuple[str, int], sim: Sim, message3: bytes, counters: Counters,
          stop: threading.Event) -> None:
    """Well-formed message 3s signed by an outsider: attestation, identification, rejection."""
    for _ in range(FLOOD):
        if stop.is_set():
            return
        try:
            with Client(address, sim, timeout=30) as client:
                counters.add("wrongly_signed")
                if not client.try_attest():
                    continue
                client.sock.sendall(message3)
                if isinstance(client.read_raw_verdict(), Rejected):
                    counters.add("wrongly_signed", closed=True)
        except (OSError, AssertionError):
            return  # the round is over


def rogue(address: tuple[str, int], sim: Sim, holder: Holder, digest: bytes, counters: Counters,
          stop: threading.Event) -> None:
    """Holder 0's real key, a random share, resubmitted after every answer (finding F2)."""
    while not stop.is_set():
        try:
            with Client(address, sim, timeout=30) as client:
                counters.add("rogue_holder")
                if not client.try_attest():
                    return
                verdict = client.submit(holder, threshold=THRESHOLD, bundle_hash=digest,
                                        share=bytes([holder.index + 1]) + os.urandom(32))
        except (OSError, AssertionError):
            return
        if verdict is None:
            return


def outsider_message3() -> bytes:
    """Message 3 signed by a key outside the bundle (as tests/test_locksmithd_abuse.py)."""
    outsider = generated_quorum(2, 3).holders[0]
    payload = '{"encrypted_payload":"00","public_key":[' + ",".join(["1"] * 32) + "]}"
    armored = outsider.sign(payload.encode()).decode()
    return frame.encode(SubmissionMessage(payload, armored).encode())


# --- honest holders, the replay, the daemon's memory -------------------------------------------


def honest_submit(address: tuple[str, int], sim: Sim, holder: Holder,
                  digest: bytes) -> tuple[Verdict | None, bytes]:
    """Holder's submission as `Client.submit` makes it; the verdict and the message 3 bytes."""
    with Client(address, sim, timeout=ROUND_DEADLINE) as client:
        attested = client.attest()
        data = client.session.submit(attested, share=holder.share, threshold=THRESHOLD,
                                     bundle_hash=digest, sign=holder.signing_key,
                                     signed_at=int(time.time()))
        client.sock.sendall(data)
        event = client._event()
        return (event if isinstance(event, (Accepted, Rejected)) else None), data


def captured_unsent(address: tuple[str, int], sim: Sim, holder: Holder, digest: bytes) -> bytes:
    """A real message 3 for an attested connection, which is then closed without sending it."""
    with Client(address, sim, timeout=ROUND_DEADLINE) as client:
        attested = client.attest()
        return client.session.submit(attested, share=holder.share, threshold=THRESHOLD,
                                     bundle_hash=digest, sign=holder.signing_key,
                                     signed_at=int(time.time()))


def replay(address: tuple[str, int], sim: Sim, message3: bytes) -> Verdict | None:
    with Client(address, sim, timeout=ROUND_DEADLINE) as client:
        if not client.try_attest():
            return None
        client.sock.sendall(message3)
        return client.read_raw_verdict()


class PeakRss:
    """Polls VmHWM of a process until it exits; the last value read is its peak (kB→MiB)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            with open(f"/proc/{self.pid}/status") as handle:
                for line in handle:
                    if line.startswith("VmHWM:"):
                        self.peak_kib = max(self.peak_kib, int(line.split()[1]))
        except (OSError, ValueError):
            pass

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self._read()

    def stop(self) -> float:
        self._read()
        self._stop.set()
        self._thread.join(timeout=5)
        return self.peak_kib / 1024


# --- one round ---------------------------------------------------------------------------------


@dataclass
class RoundResult:
    unlocked: bool
    latency_s: float | None
    peak_rss_mib: float
    replay_verdict: str
    honest_verdicts: list[str]
    daemon_status: int | None
    next_replay: bytes | None


def one_round(work: Path, sim: Sim, bundle_path: Path, holders: list[Holder], digest: bytes,
              garbage_count: int, previous: bytes | None, counters: Counters,
              message3: bytes) -> RoundResult:
    daemons = Daemons(work)
    stop = threading.Event()
    threads: list[threading.Thread] = []
    peers: HostilePeers | None = None
    rss: PeakRss | None = None
    try:
        daemon: Daemon = daemons.start(
            ["--bundle", str(bundle_path), *sim.v1_args(),
             "--keyforkd-socket", str(work / "k.sock")])
        rss = PeakRss(daemon.process.pid)
        address = daemon.address
        to_replay = previous if previous is not None else captured_unsent(
            address, sim, holders[1], digest)
        counters.add("replay")
        attackers: list[Callable[[], None]] = [
            *[lambda: flood(address, sim, message3, counters, stop)] * FLOOD_THREADS,
            lambda: rogue(address, sim, holders[0], digest, counters, stop),
            lambda: garbage(address, garbage_count, counters, stop),
            lambda: slowloris(address, counters, stop),
            lambda: half_open(address, counters, stop),
            lambda: oversize(address, counters, stop),
        ]
        for attack in attackers:
            threads.append(threading.Thread(target=attack, daemon=True))
            threads[-1].start()
        peers = HostilePeers(address, Limits().slots).__enter__()
        peers.wait_attested(Limits().slots - 8, timeout=30)  # the slots are (nearly) all held
        replay_out: list[Verdict | None] = []
        replayer = threading.Thread(
            target=lambda: replay_out.append(replay(address, sim, to_replay)), daemon=True)
        replayer.start()
        time.sleep(0.2)  # its message 1 is queued ahead of the holders'
        start = time.monotonic()
        honest_out: dict[int, tuple[Verdict | None, bytes]] = {}

        def run_holder(k: int) -> None:
            try:
                honest_out[k] = honest_submit(address, sim, holders[k], digest)
            except (OSError, AssertionError) as error:
                print(f"holder {k}: {error!r}", file=sys.stderr)

        honest = [threading.Thread(target=run_holder, args=(k,), daemon=True) for k in (1, 2)]
        for thread in honest:
            thread.start()
        for thread in honest:
            thread.join(timeout=ROUND_DEADLINE)
        latency = time.monotonic() - start
        replayer.join(timeout=5)
        status = daemon.wait(timeout=ROUND_DEADLINE) if len(honest_out) == 2 else None
        verdicts = [honest_out[k][0] for k in sorted(honest_out)]
        # Holder 1's own share must not be refused as a duplicate of the replay.
        unlocked = (status == 0 and len(verdicts) == 2
                    and all(isinstance(v, Accepted) for v in verdicts)
                    and Rejected(REJECT_DUPLICATE) not in verdicts
                    and not any(isinstance(v, Accepted) for v in replay_out))
        if not unlocked:
            print(daemon.log()[-4000:], file=sys.stderr)
        return RoundResult(unlocked, latency if unlocked else None, rss.stop(),
                           repr(replay_out[0] if replay_out else None),
                           [repr(v) for v in verdicts], status,
                           honest_out[1][1] if 1 in honest_out else None)
    finally:
        stop.set()
        if peers is not None:
            peers.stop()
            with counters.lock:  # every idle connection, the reconnects after a cut included
                counters.opened["idle_after_message_1"] = (
                    counters.opened.get("idle_after_message_1", 0) + peers.count + peers.cut)
        for thread in threads:
            thread.join(timeout=15)
        if rss is not None:
            rss.stop()
        daemons.cleanup()  # SIGKILL by PID for the daemon, kill_pid for its keyforkd


def p99(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=100)[98] if len(samples) > 1 else samples[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--garbage", type=int, default=1000, help="over the whole run")
    parser.add_argument("--repetitions", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    run_start = time.monotonic()
    counters = Counters()
    message3 = outsider_message3()
    rounds: list[RoundResult] = []
    with scratch_dir("babuse") as work:
        (work / "nsm").mkdir()
        sim = Sim.create(work / "nsm")
        bundle, quorum, digest = v1_quorum(sim, THRESHOLD, HOLDERS)
        bundle_path = write_bundle(work, bundle)
        previous: bytes | None = None
        for r in range(args.rounds):
            round_dir = work / f"r{r}"
            round_dir.mkdir()
            share = args.garbage // args.rounds + (r < args.garbage % args.rounds)
            result = one_round(round_dir, sim, bundle_path, list(quorum.holders), digest,
                               share, previous, counters, message3)
            previous = result.next_replay
            rounds.append(result)
            print(f"round {r}: unlocked={result.unlocked} latency={result.latency_s} "
                  f"peak_rss={result.peak_rss_mib:.1f} MiB replay={result.replay_verdict}",
                  file=sys.stderr, flush=True)
    latencies = [r.latency_s for r in rounds if r.latency_s is not None]
    peak = max(r.peak_rss_mib for r in rounds)
    handled = sum(counters.opened.values())
    all_unlocked = all(r.unlocked for r in rounds)
    median = round(statistics.median(latencies), 3) if latencies else None
    high = round(p99(latencies), 3) if latencies else None
    emit({
        "target": f"honest holders unlock in every round under abuse; daemon peak RSS under "
                  f"{RSS_LIMIT_MIB:g} MiB (issue 10, item 9)",
        "passed": all_unlocked and peak < RSS_LIMIT_MIB,
        "headline": f"{sum(r.unlocked for r in rounds)}/{len(rounds)} rounds unlocked; "
                    f"{handled} hostile connections; honest unlock median {median} s, p99 "
                    f"{high} s; daemon peak RSS {peak:.1f} MiB",
        "measurements": {
            "rounds": len(rounds), "rounds_unlocked": sum(r.unlocked for r in rounds),
            "connections_handled": handled,
            "connections_by_kind": dict(sorted(counters.opened.items())),
            "closed_or_rejected_by_daemon": dict(sorted(counters.closed_by_daemon.items())),
            "hostile_idle_peers_per_round": Limits().slots,
            "honest_unlock_latency_s": {"median": median, "p99": high,
                                        "samples": [round(x, 3) for x in latencies]},
            "daemon_peak_rss_mib": round(peak, 1),
            "daemon_peak_rss_mib_per_round": [round(r.peak_rss_mib, 1) for r in rounds],
            "replay_verdicts": [r.replay_verdict for r in rounds],
            "honest_verdicts": [r.honest_verdicts for r in rounds],
            "run_wall_s": round(time.monotonic() - run_start, 1),
        },
    })


if __name__ == "__main__":
    main()
