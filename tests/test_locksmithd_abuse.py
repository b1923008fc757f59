"""Abuse of a real locksmithd on 127.0.0.1 while honest holders unlock (docs/security.md):

* F1 — keyless peers that send message 1 and idle, 32 and 100 of them, reconnecting whenever
  the server cuts them: two holders running the real `caution secret send-shard` still unlock
  within 5 s; past the 128 slots (slow) they still get through, after the grace period;
* F2 — holders with real signing keys that keep sending random shares, resubmitting after every
  answer: the honest holders unlock and the log names the rogues;
* F7 — a flood of wrongly signed submissions: a bounded number of log lines, attestations at
  the rationed rate, and the unlock afterwards.

Every peer and daemon stops by itself or at teardown; counts and times are bounded.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from locksmith.core.openpgp.holder_signature import REJECT_NO_HOLDER
from locksmith.core.protocol import frame
from locksmith.core.protocol.messages import SubmissionMessage
from locksmith.core.protocol.reconstitution import LOG_CULPRIT, REJECT_DUPLICATE
from locksmith.core.protocol.session import Accepted, AttestationReceived, Rejected
from tests.conftest import CAUTION_V0
from tests.core.protocol_kit import Holder, fixture_quorum, generated_quorum
from tests.keyforkd_util import short_dir
from tests.locksmithd_kit import (
    Client, Daemon, Daemons, HostilePeers, Sim, clean_env, v1_quorum, write_bundle,
)

UNLOCK_WITHIN = 5.0  # seconds from starting send-shard (the acceptance criterion)


@pytest.fixture
def sockdir() -> Iterator[Path]:
    yield from short_dir()


def _fixture_daemon(daemons: Daemons, sim: Sim, sockdir: Path) -> Daemon:
    return daemons.start(["--bundle", str(CAUTION_V0 / "bundle.json"), *sim.args(),
                          "--keyforkd-socket", str(sockdir / "k.sock")])


def _send_shard(daemon: Daemon, sim: Sim, holder: str) -> subprocess.Popen[str]:
    """The real holder CLI, as a holder runs it (its own process, a key file)."""
    return subprocess.Popen(
        [sys.executable, "-m", "locksmith", "caution", "secret", "send-shard",
         "--address", f"127.0.0.1:{daemon.port}", "--bundle", str(CAUTION_V0 / "bundle.json"),
         "--keyring", str(CAUTION_V0 / f"{holder}.private.asc"),
         "--trusted-hashes", str(sim.directory / "trusted_hashes.json"),
         "--trust-root", str(sim.root)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env=clean_env())


def _two_holders_unlock(daemon: Daemon, sim: Sim) -> list[float]:
    """Alice and Bob start send-shard together; seconds until each exits (0 expected)."""
    start = time.monotonic()
    runs = [_send_shard(daemon, sim, name) for name in ("alice", "bob")]
    elapsed = []
    for run in runs:
        _, err = run.communicate(timeout=60)
        elapsed.append(time.monotonic() - start)
        assert run.returncode == 0, err + daemon.log()
    return elapsed


# --- F1: peers without a key holding connections ---------------------------------------------


@pytest.mark.parametrize("hostile", [32, 100])
def test_idle_keyless_peers_holding_connections_do_not_keep_two_holders_out(
        sim: Sim, daemons: Daemons, sockdir: Path, hostile: int) -> None:
    daemon = _fixture_daemon(daemons, sim, sockdir)
    with HostilePeers(daemon.address, hostile) as peers:
        peers.wait_attested(hostile)
        elapsed = _two_holders_unlock(daemon, sim)
        attested, refused = peers.attested, peers.refused
    assert daemon.wait() == 0, daemon.log()
    assert max(elapsed) < UNLOCK_WITHIN, elapsed
    # Held for the whole run: every hostile connection was attested once and kept until the
    # quorum closed them all (§10); none was refused or had to come back.
    assert attested == hostile and refused == 0
    log = daemon.log()
    assert "evicted" not in log and "limit hit" not in log, log


@pytest.mark.slow
def test_past_the_slots_holders_get_through_after_the_grace_period(
        sim: Sim, daemons: Daemons, sockdir: Path) -> None:
    """200 idle peers for 128 slots: 72 wait in the queue before the holders do. Admission is
    in order, so the holders are attested once the first idle peers' 10 s grace is over."""
    daemon = _fixture_daemon(daemons, sim, sockdir)
    with HostilePeers(daemon.address, 200) as peers:
        peers.wait_attested(128)
        time.sleep(0.5)  # the other 72 have sent message 1 and wait
        elapsed = _two_holders_unlock(daemon, sim)
        assert peers.cut >= 72  # idle peers were evicted for the queue, and came back
    assert daemon.wait() == 0, daemon.log()
    assert max(elapsed) < 20.0, elapsed
    assert "it had not sent message 3 10." in daemon.log()


# --- F2: holders with valid keys sending wrong shares ----------------------------------------


def _rogue(address: tuple[str, int], sim: Sim, holder: Holder, t: int, digest: bytes,
           verdicts: list[object], stop: threading.Event) -> None:
    """Submit `x ‖ 32 random bytes` with the holder's real key, again after every answer,
    until the daemon stops answering."""
    while not stop.is_set():
        try:
            with Client(address, sim, timeout=10) as client:
                if not client.try_attest():
                    return
                verdict = client.submit(holder, threshold=t, bundle_hash=digest,
                                        share=bytes([holder.index + 1]) + os.urandom(32))
        except OSError:
            return  # the listener is closed: the round is over
        if verdict is None:
            return
        verdicts.append(verdict)


@pytest.mark.parametrize("t, n, rogues", [(2, 3, (0,)), (3, 5, (0, 1))])
def test_holders_resubmitting_random_shares_cannot_block_the_honest_ones(
        sim: Sim, daemons: Daemons, sockdir: Path, tmp_path: Path, t: int, n: int,
        rogues: Sequence[int]) -> None:
    bundle, quorum, digest = v1_quorum(sim, t, n)
    daemon = daemons.start(["--bundle", str(write_bundle(tmp_path, bundle)), *sim.v1_args(),
                            "--keyforkd-socket", str(sockdir / "k.sock")])
    stop = threading.Event()
    verdicts: dict[int, list[object]] = {k: [] for k in rogues}
    threads = [threading.Thread(target=_rogue, args=(daemon.address, sim, quorum.holders[k], t,
                                                     digest, verdicts[k], stop), daemon=True)
               for k in rogues]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 20
    while not all(len(v) >= 2 for v in verdicts.values()):  # in, and already resubmitting
        assert time.monotonic() < deadline, verdicts
        time.sleep(0.05)
    honest = [h for h in quorum.holders if h.index not in rogues][:t]
    results = []
    for holder in honest:
        with Client(daemon.address, sim) as client:
            results.append(client.submit(holder, threshold=t, bundle_hash=digest))
    assert results[-1] == Accepted(0), results
    assert daemon.wait() == 0, daemon.log()
    stop.set()
    for thread in threads:
        thread.join(timeout=20)
    for k in rogues:  # first answer Accepted, every resubmission the same duplicate text
        assert isinstance(verdicts[k][0], Accepted)
        assert set(verdicts[k][1:]) == {Rejected(REJECT_DUPLICATE)}, verdicts[k]
    log = daemon.log()
    for k in rogues:
        assert LOG_CULPRIT.format(k=k, fpr=quorum.holders[k].fingerprint) in log
    for holder in honest:
        assert f"likely culprit: holder {holder.index} " not in log


# --- F7: a flood of wrongly signed submissions ------------------------------------------------


def _garbage_message_3() -> bytes:
    """Well-formed message 3 signed by a key outside the bundle (valid armor, valid signature,
    wrong signer): everything up to identification is exercised."""
    outsider = generated_quorum(2, 3).holders[0]
    payload = '{"encrypted_payload":"00","public_key":[' + ",".join(["1"] * 32) + "]}"
    armored = outsider.sign(payload.encode()).decode()
    return frame.encode(SubmissionMessage(payload, armored).encode())


def test_a_flood_of_wrongly_signed_submissions_is_logged_and_attested_at_bounded_rates(
        sim: Sim, daemons: Daemons, sockdir: Path) -> None:
    daemon = _fixture_daemon(daemons, sim, sockdir)
    message3 = _garbage_message_3()
    count = 120

    def flood(_: int) -> object:
        with Client(daemon.address, sim, timeout=20) as client:
            client.sock.sendall(client.session.send_nonce())
            assert isinstance(client._event(), AttestationReceived)  # an attestation spent
            client.sock.sendall(message3)
            return client.read_raw_verdict()

    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(flood, range(count)))
    elapsed = time.monotonic() - start
    assert set(answers) == {Rejected(REJECT_NO_HOLDER)}
    # Attestations: a burst of 64, then 32 per second, so 120 need at least (120-64)/32 s.
    assert elapsed >= (count - 64) / 32 * 0.8, elapsed
    time.sleep(1.2)  # the rate-limited summary line is written a second later
    lines = [line for line in daemon.log().splitlines()
             if "holder signature verification failed" in line]
    assert len(lines) <= elapsed + 3, lines
    assert "events of this kind since the last report)" in lines[-1]
    alice, bob = fixture_quorum().holders
    for holder, remaining in ((alice, 1), (bob, 0)):
        with Client(daemon.address, sim) as client:
            assert client.submit(holder, threshold=2, bundle_hash=None) == Accepted(remaining)
    assert daemon.wait() == 0, daemon.log()
