"""locksmithd's limits (protocol.md §9) against real daemons with their real defaults, plus the
300 s connection limit in-process with shortened `Limits` (the daemon itself has no way to
change them) and the rate-limited log."""

from __future__ import annotations

import asyncio
import resource
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from locksmith.core import frame
from locksmith.core.protocol import Accepted, BundleHolders, ReconstitutionRound, Rejected
from locksmith.core.protocol_messages import MESSAGE1_CAP, MESSAGE3_CAP
from locksmith.core.reconstitution import REJECT_DUPLICATE
from locksmith.personalities.locksmithd.logsink import RateLimitedLog
from locksmith.personalities.locksmithd.options import ListenAddress
from locksmith.personalities.locksmithd.server import Limits, Locksmithd, Stopped
from locksmith.personalities.locksmithd.startup import bind
from tests.core.protocol_kit import fixture_quorum
from tests.keyforkd_util import short_dir
from tests.locksmithd_kit import Client, Daemon, Daemons, Sim


@pytest.fixture
def fixture_daemon(sim: Sim, daemons: Daemons, caution_v0: Path) -> Iterator[Daemon]:
    for sockdir in short_dir():
        yield daemons.start(["--bundle", str(caution_v0 / "bundle.json"), *sim.args(),
                             "--keyforkd-socket", str(sockdir / "k.sock")])


def _header(length: int) -> bytes:
    return length.to_bytes(4, "big")


def test_33rd_connection_is_closed_at_once_and_the_32_others_proceed(
        sim: Sim, fixture_daemon: Daemon) -> None:
    alice, bob = fixture_quorum().holders
    clients = [Client(fixture_daemon.address, sim) for _ in range(32)]
    for client in clients:
        client.attest()
    with Client(fixture_daemon.address, sim) as extra:
        waited = extra.closed_within(5)
        assert waited is not None and waited < 2.0  # closed at once, not after 10 s
    fixture_daemon.wait_for_log(r"limit hit: 32 connections open; closed a new connection "
                                r"from 127\.0\.0\.1:\d+ at once")
    # A slot is released when its connection ends, however it ends.
    clients.pop().close()
    deadline = time.monotonic() + 5
    while True:
        replacement = Client(fixture_daemon.address, sim)
        if replacement.try_attest():
            break
        replacement.close()
        assert time.monotonic() < deadline, "the freed slot was never reused"
        time.sleep(0.05)
    clients.append(replacement)
    # The 32 proceed to their verdicts.
    assert clients[0].submit(alice, threshold=2, bundle_hash=None) == Accepted(1)
    for client in clients[1:-1]:
        assert client.submit(alice, threshold=2, bundle_hash=None) == Rejected(REJECT_DUPLICATE)
    assert clients[-1].submit(bob, threshold=2, bundle_hash=None) == Accepted(0)
    assert fixture_daemon.wait() == 0, fixture_daemon.log()


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
