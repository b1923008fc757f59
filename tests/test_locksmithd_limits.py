"""locksmithd's limits (protocol.md §9 as amended) against real daemons with their real
defaults, plus, in-process with shortened `Limits` (the daemon itself has no way to change
them): admission past the slots (finding F1: the longest-idle connection makes way, a silent
one makes way for a new one, a new one is refused only behind peers that sent message 1), the
queue, message-3 and 300 s deadlines, and the rate-limited log. The acceptance runs with
hostile peers at the real defaults are in test_locksmithd_abuse.py."""

from __future__ import annotations

import asyncio
import resource
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from locksmith.core.protocol import frame
from locksmith.core.protocol.messages import MESSAGE1_CAP, MESSAGE3_CAP
from locksmith.core.protocol.session import Accepted, BundleHolders, ReconstitutionRound
from locksmith.personalities.locksmithd.logsink import RateLimitedLog
from locksmith.personalities.locksmithd.options import ListenAddress
from locksmith.personalities.locksmithd.server import (
    Limits, Locksmithd, Stopped, Unlocked,
)
from locksmith.personalities.locksmithd.startup import bind
from tests.core.protocol_kit import fixture_quorum
from tests.keyforkd_util import short_dir
from tests.locksmithd_kit import Client, Daemon, Daemons, Sim, serve_in_process

T = TypeVar("T")


@pytest.fixture
def fixture_daemon(sim: Sim, daemons: Daemons, caution_v0: Path) -> Iterator[Daemon]:
    for sockdir in short_dir():
        yield daemons.start(["--bundle", str(caution_v0 / "bundle.json"), *sim.args(),
                             "--keyforkd-socket", str(sockdir / "k.sock")])


def _header(length: int) -> bytes:
    return length.to_bytes(4, "big")




def _silent(address: tuple[str, int]) -> socket.socket:
    return socket.create_connection(address, timeout=5)


def _sent_message_1(address: tuple[str, int], sim: Sim) -> Client:
    client = Client(address, sim)
    client.sock.sendall(client.session.send_nonce())
    return client


def _closed(sock: socket.socket, within: float) -> bool:
    sock.settimeout(within)
    try:
        while sock.recv(65536):
            pass
        return True
    except TimeoutError:
        return False
    except (ConnectionResetError, BrokenPipeError):
        return True


def test_past_the_slots_the_longest_idle_connection_makes_way_for_a_waiting_holder(
        sim: Sim, capsys: pytest.CaptureFixture[str]) -> None:
    """Slots 2, grace 0.5 s: two idle attested peers hold both slots; each holder waits until
    the older idle peer's grace is over, then takes its slot and submits."""
    alice, bob = fixture_quorum().holders

    def body(address: tuple[str, int]) -> list[float]:
        idle = [Client(address, sim) for _ in range(2)]
        for client in idle:
            client.attest()
        waits = []
        for holder, remaining in ((alice, 1), (bob, 0)):
            start = time.monotonic()
            with Client(address, sim) as client:
                client.attest()
                waits.append(time.monotonic() - start)
                assert client.submit(holder, threshold=2, bundle_hash=None) == \
                    Accepted(remaining)
        assert all(_closed(client.sock, 1.0) for client in idle)  # both were cut
        return waits

    waits, outcome = serve_in_process(sim, Limits(slots=2, waiting=4, grace=0.5), body,
                                      until_unlocked=True)
    assert isinstance(outcome, Unlocked)
    assert 0.3 <= waits[0] <= 2.0 and waits[1] <= 2.0, waits
    err = capsys.readouterr().err
    assert "evicted the connection from 127.0.0.1:" in err
    assert "it had not sent message 3 0.5 s after message 2 and a holder was waiting" in err


def test_a_new_connection_pushes_out_a_silent_one_and_is_refused_only_behind_message_1(
        sim: Sim, capsys: pytest.CaptureFixture[str]) -> None:
    """Waiting places 2: a connection that sent nothing makes way for a new one; peers that
    sent message 1 keep their places, so only then is the newcomer closed at once."""

    def body(address: tuple[str, int]) -> None:
        holder = Client(address, sim)
        holder.attest()  # the one slot
        silent = _silent(address)
        queued = _sent_message_1(address, sim)
        time.sleep(0.2)
        newcomer = _sent_message_1(address, sim)
        assert _closed(silent, 2.0)
        assert not _closed(queued.sock, 0.3) and not _closed(newcomer.sock, 0.1)
        refused = _silent(address)
        assert _closed(refused, 2.0)
        for sock in (holder.sock, queued.sock, newcomer.sock, refused):
            sock.close()

    _, outcome = serve_in_process(sim, Limits(slots=1, waiting=2, grace=30.0), body)
    assert isinstance(outcome, Stopped)
    err = capsys.readouterr().err
    assert "its message 1 was not complete and a new connection needed its place" in err
    assert "limit hit: 2 connections waiting for a slot; closed a new connection from" in err


def test_message_3_is_due_soon_after_message_2_and_a_slot_soon_after_message_1(
        sim: Sim, capsys: pytest.CaptureFixture[str]) -> None:
    """Message 3 within `submission` of message 2 (30 s by default: a touch of a card); an
    attestation slot within `queue` of message 1; a peer that leaves the queue costs nothing."""

    def body(address: tuple[str, int]) -> tuple[float, float]:
        start = time.monotonic()
        holder = Client(address, sim)
        holder.attest()
        queued = _sent_message_1(address, sim)
        leaving = _sent_message_1(address, sim)
        leaving.close()
        assert _closed(queued.sock, 3.0)
        queue_cut = time.monotonic() - start
        assert _closed(holder.sock, 3.0)
        submission_cut = time.monotonic() - start
        queued.close()
        holder.close()
        return queue_cut, submission_cut

    (queue_cut, submission_cut), _ = serve_in_process(
        sim, Limits(slots=1, queue=0.6, submission=1.2, grace=30.0), body)
    assert 0.5 <= queue_cut <= 1.5 and 1.1 <= submission_cut <= 2.2
    err = capsys.readouterr().err
    assert "limit hit: no attestation slot within 0.6 s; closed the connection from" in err
    assert ("limit hit: no complete message 3 within 1.2 s of message 2; closed the connection "
            "from") in err
    assert "closed while waiting for a slot" in err


def test_frames_over_the_limit_are_refused_from_the_header_without_reading_the_body(
        sim: Sim, fixture_daemon: Daemon) -> None:
    refused = [
        _header(frame.MAX_LENGTH + 1),  # 1 MiB + 1: the body is never sent
        _header(frame.DIGEST + MESSAGE1_CAP + 1),  # within the frame limit, over message 1's cap
        _header(frame.MIN_LENGTH - 1),
    ]
    for header in refused:
        with Client(fixture_daemon.address, sim) as client:
            client.sock.sendall(header)
            waited = client.closed_within(5)
            assert waited is not None and waited < 2.0
    with Client(fixture_daemon.address, sim) as client:  # message 3 over its 256 KiB cap
        client.attest()
        client.sock.sendall(_header(frame.DIGEST + MESSAGE3_CAP + 1))
        waited = client.closed_within(5)
        assert waited is not None and waited < 2.0
    log = fixture_daemon.wait_for_log("frame payload of 262145 bytes").string
    assert "limit hit: frame body length 1048577 is outside 32..=1048576" in log
    with Client(fixture_daemon.address, sim) as client:  # and the daemon keeps serving
        client.attest()


def test_a_client_without_a_complete_message_1_is_cut_after_10_s(
        sim: Sim, fixture_daemon: Daemon) -> None:
    alice, _ = fixture_quorum().holders
    silent = Client(fixture_daemon.address, sim)
    silent_since = time.monotonic()
    partial = Client(fixture_daemon.address, sim)
    partial_since = time.monotonic()
    partial.sock.sendall(partial.session.send_nonce()[:20])  # a header and half a digest
    attested = Client(fixture_daemon.address, sim)  # message 1 in time: 300 s apply
    attested.attest()
    assert silent.closed_within(15) is not None
    silent_after = time.monotonic() - silent_since
    assert partial.closed_within(5) is not None
    partial_after = time.monotonic() - partial_since
    assert 9.5 <= silent_after <= 12.0 and 9.5 <= partial_after <= 12.0
    assert attested.submit(alice, threshold=2, bundle_hash=None) == Accepted(1)
    fixture_daemon.wait_for_log(r"limit hit: no complete message 1 within 10 s; closed the "
                                r"connection from 127\.0\.0\.1:\d+")


def test_accept_errors_are_logged_and_the_listener_keeps_serving(
        sim: Sim, fixture_daemon: Daemon) -> None:
    pid = fixture_daemon.process.pid
    try:  # the daemon is not dumpable: only root may look at its descriptors
        in_use = len(list(Path(f"/proc/{pid}/fd").iterdir()))
    except PermissionError:
        pytest.skip(reason="counting a non-dumpable process's descriptors needs root")
    soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (in_use + 2, hard))  # room for 2 connections
    flood = [socket.create_connection(fixture_daemon.address, timeout=5) for _ in range(6)]
    fixture_daemon.wait_for_log(r"accept error: OSError: \[Errno 24\] Too many open files; the "
                                r"listener keeps serving")
    for conn in flood:
        conn.close()
    deadline = time.monotonic() + 10
    while True:  # the backlog drains once descriptors are free again
        client = Client(fixture_daemon.address, sim)
        if client.try_attest():
            client.close()
            break
        client.close()
        assert time.monotonic() < deadline, fixture_daemon.log()
        time.sleep(0.1)
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))


def test_a_connection_is_cut_when_its_whole_time_is_up_even_while_it_keeps_sending(
        sim: Sim, capsys: pytest.CaptureFixture[str]) -> None:
    """The 300 s limit with `Limits(connection=2)`, in-process (the daemon has no knob)."""
    quorum = fixture_quorum()

    def slowloris(port: int) -> float:
        with Client(("127.0.0.1", port), sim) as client:
            start = time.monotonic()
            client.attest()
            client.sock.sendall(_header(frame.DIGEST + 1000))  # message 3, one byte at a time
            client.sock.settimeout(0.2)
            while time.monotonic() - start < 10:
                try:
                    client.sock.sendall(b"x")
                    if client.sock.recv(1) == b"":
                        break
                except TimeoutError:
                    continue
                except (ConnectionResetError, BrokenPipeError):
                    break
            return time.monotonic() - start

    async def scenario() -> tuple[float, object]:
        listener = bind(ListenAddress("127.0.0.1", 0))
        server = Locksmithd(holders=BundleHolders.from_bundle(quorum.checked),
                            round=ReconstitutionRound.from_bundle(quorum.checked), nsm=sim.nsm,
                            limits=Limits(first_message=1.0, connection=2.0),
                            handle_signals=False)
        serving = asyncio.create_task(server.serve(listener))
        elapsed = await asyncio.to_thread(slowloris, listener.getsockname()[1])
        server.stop()
        return elapsed, await serving

    elapsed, outcome = asyncio.run(scenario())
    assert 1.8 <= elapsed <= 4.0
    assert isinstance(outcome, Stopped)
    assert "limit hit: connection open for 2 s; closed the connection from" in \
        capsys.readouterr().err


def test_rate_limited_log_writes_one_line_per_second_per_kind_with_the_count() -> None:
    lines: list[str] = []

    async def scenario() -> None:
        rlog = RateLimitedLog(lines.append)
        for i in range(5):
            rlog.hit("flood", f"event {i}")
        rlog.hit("other", "another kind")
        assert lines == ["event 0", "another kind"]
        await asyncio.sleep(1.2)
        assert lines == ["event 0", "another kind",
                         "event 4 (4 events of this kind since the last report)"]
        rlog.hit("flood", "event 5")  # within a second of the summary: held back
        rlog.flush()

    asyncio.run(scenario())
    assert lines[-1] == "event 5"
