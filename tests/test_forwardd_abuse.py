"""Abuse of forwardd's port (docs/forwarding.md §5.3; docs/security.md "Key forwarding"), as
tests/test_locksmithd_abuse.py does for 49504: hostile peers hold connections, send garbage,
oversize frame headers, slow F3s and piles of approvals, while an honest requester still
receives the secret. Real processes on 127.0.0.1 with the daemon's own limits, except where a
deadline is the subject: those run the same server in this process with shortened limits.

Every peer and server stops by itself or at teardown; counts and times are bounded.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from locksmith.core.forwarding.messages import (
    FIRST_CAP, MAX_APPROVALS, Challenge, Forwarded, Hello, Refused, Request,
)
from locksmith.core.protocol import frame
from locksmith.core.protocol.admission import Phase
from locksmith.personalities.forwardd.server import Forwardd, Limits
from tests.forwardd_kit import (
    Served,
    IdleRequesters, Provider, Requester, approvals, enclave, other_pcrs, serve_in_process,
)
from tests.locksmithd_kit import Sim

HONEST_WITHIN = 15.0  # seconds for an honest exchange under pressure (the grace is 3 s)


def _honest(address: tuple[str, int], sim: Sim, served: Served) -> float:
    """One honest exchange of the same image; seconds it took. Fails unless the secret came."""
    start = time.monotonic()
    with Requester(address, sim, served.digest, timeout=30) as requester:
        answer, secret = requester.exchange()
    assert isinstance(answer, Forwarded) and secret == served.quorum.secret, answer
    return time.monotonic() - start


def _wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def _raw(address: tuple[str, int], data: bytes, *, wait: float = 5.0) -> float | None:
    """Send `data`, then seconds until the provider closes (None: still open after `wait`)."""
    with socket.create_connection(address, timeout=5) as sock:
        sock.sendall(data)
        start = time.monotonic()
        sock.settimeout(wait)
        try:
            while sock.recv(65536):
                pass
        except (ConnectionResetError, BrokenPipeError):
            pass
        except TimeoutError:
            return None
        return time.monotonic() - start


# --- connections held idle (F1 of docs/security.md, on 49505) --------------------------------


def test_idle_requesters_holding_every_slot_do_not_keep_an_honest_one_out(
        provider: Provider, sim: Sim, served: Served) -> None:
    """16 peers hold the 16 slots after F2 and 16 more wait in the queue, all reconnecting
    whenever they are cut: the honest requester queues behind them and is attested once the
    slots' 3 s grace runs out."""
    limits = Limits()
    with IdleRequesters(provider.address, served.digest, limits.slots * 2) as peers:
        peers.wait_attested(limits.slots)
        elapsed = _honest(provider.address, sim, served)
        cut = peers.cut
    assert elapsed < HONEST_WITHIN, elapsed
    assert cut >= limits.slots  # idle peers were evicted for the queue
    assert "it had not sent F3 3." in provider.log()


def test_silent_connections_make_way_for_a_requester(sim: Sim, served: Served) -> None:
    """Every waiting place held by a peer that sent nothing: a newcomer takes the oldest one's
    place, and is served at once (in process, to see the places fill)."""
    limits = Limits()

    def body(address: tuple[str, int], server: Forwardd) -> float:
        with IdleRequesters(address, served.digest, limits.waiting, hello=False,
                       reconnect=False):
            _wait_for(lambda: server.phases()[Phase.HELLO] == limits.waiting)
            return _honest(address, sim, served)

    elapsed, lines, counts = serve_in_process(sim, served.quorum, served.digest, limits, body)
    assert elapsed < 5.0, elapsed
    assert counts["evict:hello"] == 1
    assert any("its F1 was not complete and a new connection needed its place" in line
               for line in lines), lines


def test_past_every_place_new_connections_are_closed_at_once_and_logged(
        sim: Sim, served: Served) -> None:
    """In process, 2 waiting places and 1 slot: the third peer that sent F1 is refused."""
    limits = Limits(waiting=2, slots=1, grace=30.0)

    def body(address: tuple[str, int], server: Forwardd) -> float | None:
        with IdleRequesters(address, served.digest, 1, reconnect=False) as first:
            first.wait_attested(1)
            with IdleRequesters(address, served.digest, 1, reconnect=False):
                _wait_for(lambda: server.phases()[Phase.WAITING] == 1)
                with IdleRequesters(address, served.digest, 1, reconnect=False):
                    _wait_for(lambda: server.phases()[Phase.WAITING] == 2)
                    return _raw(address, frame.encode(Hello(1, served.digest,
                                                            bytes(32)).encode()))

    closed, lines, counts = serve_in_process(sim, served.quorum, served.digest, limits, body)
    assert closed is not None and closed < 1.0, (lines, counts)
    assert counts["limit:connections"] >= 1
    assert any("limit hit: 2 connections waiting for a slot; closed a new connection" in line
               for line in lines), lines


def test_past_the_slots_the_longest_idle_requester_makes_way(sim: Sim, served: Served) -> None:
    limits = Limits(slots=2, grace=0.5)

    def body(address: tuple[str, int], _: Forwardd) -> float:
        with IdleRequesters(address, served.digest, 2, reconnect=False) as peers:
            peers.wait_attested(2)
            return _honest(address, sim, served)

    elapsed, lines, counts = serve_in_process(sim, served.quorum, served.digest, limits, body)
    assert elapsed < 5.0
    assert counts["evict:idle"] >= 1
    assert any("it had not sent F3 0." in line and "a requester was waiting" in line
               for line in lines), lines


# --- garbage and oversize frames -------------------------------------------------------------


def test_garbage_is_closed_counted_and_logged_at_a_bounded_rate(
        provider: Provider, sim: Sim, served: Served) -> None:
    rng = os.urandom
    with ThreadPoolExecutor(8) as pool:
        closed = list(pool.map(lambda _: _raw(provider.address, rng(64)), range(100)))
    assert all(c is not None for c in closed), closed
    assert _honest(provider.address, sim, served) < 5.0
    lines = [line for line in provider.log().splitlines() if "limit hit" in line
             or "protocol violation" in line]
    assert 1 <= len(lines) <= 10, lines  # 100 events, one line per second per kind


@pytest.mark.parametrize("length, text", [
    ((1 << 20) + 1, "frame body length 1048577 is outside 32..=1048576"),
    (32 + FIRST_CAP + 1, f"frame payload of {FIRST_CAP + 1} bytes exceeds the {FIRST_CAP}-byte "
                         "limit for this message"),
    (31, "frame body length 31 is outside 32..=1048576"),
])
def test_an_oversize_f1_header_is_refused_from_the_header(
        provider: Provider, length: int, text: str) -> None:
    """The first frame is F1 or A1: its header is checked against A1's cap, the larger."""
    closed = _raw(provider.address, length.to_bytes(4, "big"))  # the header, no body
    assert closed is not None and closed < 2.0
    provider.wait_for_log(f"limit hit: F1 or A1: {text}; closed the connection from "
                          "127.0.0.1:")


def test_an_oversize_f3_header_is_refused_from_the_header(
        provider: Provider, sim: Sim, served: Served) -> None:
    with Requester(provider.address, sim, served.digest) as requester:
        assert isinstance(requester.hello(), Challenge)
        requester.sock.sendall(((1 << 20) + 1).to_bytes(4, "big"))
        assert requester.closed_within(2.0) is not None
    provider.wait_for_log("limit hit: F3: frame body length 1048577 is outside 32..=1048576")


def test_bytes_before_f2_are_a_protocol_violation(sim: Sim, served: Served) -> None:
    """A requester sends F3 only after verifying F2: anything earlier closes, unanswered."""
    hello = frame.encode(Hello(1, served.digest, bytes(32)).encode())

    def body(address: tuple[str, int], _: Forwardd) -> float | None:
        return _raw(address, hello + b"\x00\x00\x00\x40")

    closed, lines, _ = serve_in_process(sim, served.quorum, served.digest, Limits(), body)
    assert closed is not None and closed < 1.0
    assert any("protocol violation: data after F1 before F2" in line for line in lines), lines


# --- deadlines (in process, shortened) -------------------------------------------------------


def test_a_slow_loris_f3_is_cut_at_its_deadline(sim: Sim, served: Served) -> None:
    limits = Limits(request=1.0)

    def body(address: tuple[str, int], _: Forwardd) -> float | None:
        with Requester(address, sim, served.digest) as requester:
            assert isinstance(requester.hello(), Challenge)
            data = frame.encode(Request(requester.document(), ()).encode())
            start = time.monotonic()
            try:
                for byte in data[:40]:  # one byte every 0.1 s
                    requester.sock.sendall(bytes([byte]))
                    time.sleep(0.1)
            except (BrokenPipeError, ConnectionResetError):
                return time.monotonic() - start
            closed = requester.closed_within(5.0)
            return None if closed is None else time.monotonic() - start

    elapsed, lines, counts = serve_in_process(sim, served.quorum, served.digest, limits, body)
    assert elapsed is not None and 0.8 <= elapsed <= 2.5, elapsed
    assert counts["limit:request"] == 1
    assert any("limit hit: no complete F3 within 1 s of F2; closed the connection" in line
               for line in lines), lines


def test_a_slow_or_silent_f1_is_cut_at_its_deadline(sim: Sim, served: Served) -> None:
    limits = Limits(hello=0.5)
    half = frame.encode(Hello(1, served.digest, bytes(32)).encode())[:20]

    def body(address: tuple[str, int], _: Forwardd) -> list[float | None]:
        return [_raw(address, b""), _raw(address, half)]

    closed, lines, counts = serve_in_process(sim, served.quorum, served.digest, limits, body)
    assert all(c is not None and c < 2.0 for c in closed), closed
    assert counts["limit:hello"] == 2
    assert any("limit hit: no complete F1 or A1 within 0.5 s" in line for line in lines), lines


# --- approvals and attestations --------------------------------------------------------------


def test_254_approvals_of_any_kind_are_judged_quickly_beside_an_honest_requester(
        provider: Provider, sim: Sim, served: Served) -> None:
    pcrs = other_pcrs(0x60)
    one = approvals(served.quorum, pcrs, (0,), served.digest)[0]
    piles = [("x" * 3800,) * MAX_APPROVALS, (one,) * MAX_APPROVALS]
    for pile in piles:
        start = time.monotonic()
        with Requester(provider.address, sim, served.digest,
                       nsm=enclave(sim, pcrs)) as requester:
            assert isinstance(requester.hello(), Challenge)
            answer = requester.request(pile)
        held = sum(text == one for text in pile)
        assert answer == Refused("Requester PCRs are not approved "
                                 f"({1 if held else 0} of 2 holder approvals)")
        assert time.monotonic() - start < 5.0
    assert _honest(provider.address, sim, served) < 5.0


def test_attestations_are_rationed_by_the_token_bucket(provider: Provider, served: Served) -> None:
    """60 peers each send F1 and leave after F2: 20 are attested at once, the rest at 20/s."""
    hello = frame.encode(Hello(1, served.digest, bytes(32)).encode())

    def one(_: int) -> float:
        with socket.create_connection(provider.address, timeout=10) as sock:
            sock.sendall(hello)
            assert sock.recv(4)  # the F2 header: attested
            return time.monotonic()

    start = time.monotonic()
    with ThreadPoolExecutor(60) as pool:
        times = sorted(pool.map(one, range(60)))
    span = times[-1] - start
    assert span >= (60 - 20) / 20 - 0.3, span  # burst of 20, then 20 per second
