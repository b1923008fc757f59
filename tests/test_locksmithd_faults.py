"""locksmithd under faults (issue 10, item 10): the daemon killed before the quorum, holders
that vanish mid-exchange, a holder whose clock runs ahead.

Why these matter: a share is only ever in locksmithd's memory. If a kill left it anywhere — on
disk, in a file the daemon wrote, or counted by a later daemon — the quorum would no longer
need t live holders. A holder that drops its connection (network, a crash, a cancelled card
touch) must leave nothing behind either: no slot held (the next attempt would have to wait for
an eviction) and no share counted. A skewed clock must be refused in words the holder can act
on, and must not cost the holder its one submission.

(Clock skew: tests/core/protocol/test_session.py checks the 60 s boundary (+60 accepted, +61
refused) on the sans-IO session, and tests/test_locksmithd.py a +120 s refusal over the wire
with the holder's slot kept; here only what those leave out: the spec's literal text as the
holder receives it, a within-tolerance skew accepted over the wire, and the skewed holder's own
retry counted as its first share.)
"""

from __future__ import annotations

import base64
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from locksmith.core.protocol.session import Accepted, Rejected
from locksmith.personalities.locksmithd.server import Limits, Outcome, Unlocked
from tests.core.protocol_kit import Holder, fixture_quorum
from tests.keyforkd_util import short_dir
from tests.locksmithd_kit import (
    Client, Daemons, Sim, serve_in_process, v1_quorum, write_bundle,
)

T = TypeVar("T")

CLOCK_SKEW_TEXT = ("Signature is more than 60 seconds ahead of the enclave clock; "
                   "check signer and enclave clocks")


@pytest.fixture
def sockdir() -> Iterator[Path]:
    yield from short_dir()


def _secret_forms(blob: bytes) -> list[bytes]:
    """The ways a secret could land in a file: raw, hex (either case), and base64."""
    return [blob, blob.hex().encode(), blob.hex().upper().encode(), base64.b64encode(blob)]


def _files_containing(roots: list[Path], secrets: dict[str, bytes]) -> list[str]:
    """Every (file, secret name) where one of the secret's forms occurs, under `roots`."""
    found = []
    for root in roots:
        for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink()):
            data = path.read_bytes()
            for name, blob in secrets.items():
                if any(form in data for form in _secret_forms(blob)):
                    found.append(f"{path}: {name}")
    return found


# --- (a) killed before the quorum --------------------------------------------------------------


def test_a_daemon_killed_after_one_share_leaves_nothing_on_disk_and_its_successor_needs_fresh_shares(
        sim: Sim, daemons: Daemons, sockdir: Path, tmp_path: Path) -> None:
    bundle, quorum, digest = v1_quorum(sim, 2, 3)
    h0, h1, _ = quorum.holders
    bundle_path = write_bundle(tmp_path, bundle)
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    env = {"TMPDIR": str(tmpdir), "HOME": str(tmp_path), "XDG_RUNTIME_DIR": str(sockdir)}
    args = ["--bundle", str(bundle_path), *sim.v1_args(), "--keyforkd-socket",
            str(sockdir / "k.sock")]
    first = daemons.start(args, env=env)
    with Client(first.address, sim) as client:
        assert client.submit(h0, threshold=2, bundle_hash=digest) == Accepted(1)
    first.process.send_signal(signal.SIGKILL)
    assert first.wait(10) == -signal.SIGKILL
    assert first.keyforkd() is None and not (sockdir / "k.sock").exists()
    # Everything the daemon could have written: its working directory (its logs too), TMPDIR,
    # HOME, the keyforkd socket directory, the simulated NSM directory.
    roots = [tmp_path, sockdir, sim.directory]
    secrets = {"holder 0's share": bytes(h0.share[1:]), "master secret": bytes(quorum.secret)}
    assert _files_containing(roots, secrets) == []

    second = daemons.start(args, env=env)
    # Holder 1 is answered as the first of two: holder 0's earlier share died with the daemon.
    with Client(second.address, sim) as client:
        assert client.submit(h1, threshold=2, bundle_hash=digest) == Accepted(1)
    # Holder 0 is not "already contributed": it must (and may) submit again.
    with Client(second.address, sim) as client:
        assert client.submit(h0, threshold=2, bundle_hash=digest) == Accepted(0)
    assert second.wait() == 0, second.log()
    secrets["holder 1's share"] = bytes(h1.share[1:])
    assert _files_containing(roots, secrets) == []


# --- (b) holders that vanish mid-exchange ------------------------------------------------------


def _one_slot(sim: Sim, body: Callable[[tuple[str, int]], T]) -> tuple[T, Outcome]:
    """The fixture bundle served in-process with ONE slot and a 30 s grace and message-3
    deadline: a slot that a vanished holder kept would stall the next holder for 30 s, which
    its 8 s socket timeout turns into a failure."""
    return serve_in_process(sim, Limits(slots=1, grace=30.0, submission=30.0), body,
                            until_unlocked=True)


def _vanish_after_message_2(address: tuple[str, int], sim: Sim) -> None:
    with Client(address, sim, timeout=8) as client:
        client.attest()


def _vanish_halfway_through_message_3(address: tuple[str, int], sim: Sim, holder: Holder) -> None:
    with Client(address, sim, timeout=8) as client:
        attested = client.attest()
        data = client.session.submit(attested, share=holder.share, threshold=2,
                                     bundle_hash=None, sign=holder.signing_key,
                                     signed_at=int(time.time()))
        client.sock.sendall(data[:len(data) // 2])


def test_holders_that_disconnect_mid_exchange_leave_no_slot_taken_and_no_share_counted(
        sim: Sim) -> None:
    alice, bob = fixture_quorum().holders

    def body(address: tuple[str, int]) -> list[object]:
        for _ in range(3):  # more than the one slot: each must have been given back
            _vanish_after_message_2(address, sim)
            _vanish_halfway_through_message_3(address, sim, alice)
            _vanish_halfway_through_message_3(address, sim, bob)
        verdicts: list[object] = []
        start = time.monotonic()
        for holder in (alice, bob):
            with Client(address, sim, timeout=8) as client:
                verdicts.append(client.submit(holder, threshold=2, bundle_hash=None))
        verdicts.append(time.monotonic() - start)
        return verdicts

    (first, second, elapsed), outcome = _one_slot(sim, body)
    # Alice is the first of two (her half message 3 counted for nothing), Bob completes it.
    assert (first, second) == (Accepted(1), Accepted(0))
    assert isinstance(outcome, Unlocked)
    assert isinstance(elapsed, float) and elapsed < 5.0  # no wait for a kept slot's grace


# --- (c) holder clock skew -----------------------------------------------------------------------


def test_a_signature_from_a_clock_ahead_is_refused_in_the_spec_words_and_costs_no_slot(
        sim: Sim, daemons: Daemons, sockdir: Path, tmp_path: Path) -> None:
    bundle, quorum, digest = v1_quorum(sim, 2, 3)
    h0, h1, _ = quorum.holders
    daemon = daemons.start(["--bundle", str(write_bundle(tmp_path, bundle)), *sim.v1_args(),
                            "--keyforkd-socket", str(sockdir / "k.sock")])
    with Client(daemon.address, sim) as client:  # well past the tolerance, whatever the second
        assert client.submit(h0, threshold=2, bundle_hash=digest,
                             signed_at=int(time.time()) + 90) == Rejected(CLOCK_SKEW_TEXT)
    # The same holder with its clock fixed is counted as the first share, not a duplicate.
    with Client(daemon.address, sim) as client:
        assert client.submit(h0, threshold=2, bundle_hash=digest) == Accepted(1)
    # A skew within the 60 s tolerance is accepted over the wire.
    with Client(daemon.address, sim) as client:
        assert client.submit(h1, threshold=2, bundle_hash=digest,
                             signed_at=int(time.time()) + 30) == Accepted(0)
    assert daemon.wait() == 0, daemon.log()
    assert "holder signature verification failed: signature clock skew" in daemon.log()
