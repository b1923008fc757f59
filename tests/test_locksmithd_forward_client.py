"""locksmithd's requester tasks in process (docs/forwarding.md §6): a real `Locksmithd` serving
holders on 127.0.0.1 while `ForwardClient` asks test-double providers that speak F1–F4 with the
simulated NSM. Whichever of {quorum, forwarded secret} comes first wins and the other never
delivers; a wrong secret is ignored for the rest of the boot; refusals and unreachable providers
are retried on their schedules; a bundle whose key carries a foreign subkey ends the boot."""

from __future__ import annotations

import asyncio
import re
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from locksmith.core.openpgp.certs import Certificate, load_certificates
from locksmith.core.protocol.messages import submission_bundle_hash
from locksmith.core.protocol.session import BundleHolders, ReconstitutionRound
from locksmith.personalities.locksmithd.forward_client import ForwardClient, Requester, Timing
from locksmith.personalities.locksmithd.options import ListenAddress
from locksmith.personalities.locksmithd.server import (
    Locksmithd, Outcome, Stopped, Tampered, Unlocked,
)
from locksmith.personalities.locksmithd.startup import bind
from tests.core.protocol_kit import generated_quorum, tampered_public_key
from tests.forwarding_kit import FakeProvider
from tests.locksmithd_kit import Client, Sim
from tests.unlock_kit import free_port

QUORUM = generated_quorum(2, 3, "V1")
H = submission_bundle_hash(QUORUM.checked.bundle)
assert H is not None
FAST = Timing(connect=2.0, answer=5.0, backoff=(0.05, 0.1, 0.2), after_refusal=0.3)
WRONG = bytes(range(32))


def address(text: str) -> ListenAddress:
    host, _, port = text.rpartition(":")
    return ListenAddress(host, int(port))


@dataclass
class Run:
    outcome: Outcome
    round: ReconstitutionRound
    log: str
    body: Any = None
    late_delivery: bool | None = None  # what `deliver` said once the collection had ended


@dataclass
class Scenario:
    """A server and its requester; `body(address, go)` runs in a thread: `go()` starts the
    requester (at once when `body` is None)."""

    sim: Sim
    providers: Sequence[str]
    public_key: Certificate = field(default_factory=lambda: QUORUM.checked.quorum_certificate)
    timing: Timing = FAST
    wait: float = 20.0  # for the collection to end by itself before it is stopped

    def run(self, capsys: pytest.CaptureFixture[str],
            body: Callable[[tuple[str, int], Callable[[], None]], Any] | None = None,
            settle: float = 0.0) -> Run:
        requester = Requester(tuple(address(p) for p in self.providers), H, self.public_key,
                              self.sim.anchor, ())
        round_ = ReconstitutionRound.from_bundle(QUORUM.checked)

        async def scenario() -> Run:
            loop = asyncio.get_running_loop()
            go = asyncio.Event()
            listener = bind(ListenAddress("127.0.0.1", 0))
            server = Locksmithd(holders=BundleHolders.from_bundle(QUORUM.checked), round=round_,
                                nsm=self.sim.nsm, handle_signals=False)

            async def companion() -> None:
                await go.wait()
                await ForwardClient(requester, server, timing=self.timing).run()

            serving = asyncio.create_task(server.serve(listener, companion))
            start = lambda: loop.call_soon_threadsafe(go.set)  # noqa: E731
            result = None
            if body is None:
                start()
            else:
                result = await asyncio.to_thread(body, listener.getsockname()[:2], start)
            done, _ = await asyncio.wait({serving}, timeout=self.wait)
            if not done:
                server.stop()
            outcome = await serving
            late = server.deliver(Unlocked(bytearray(32)))
            await asyncio.sleep(settle)  # room for a (wrong) late retry to show
            return Run(outcome, round_, "", result, late)

        run = asyncio.run(scenario())
        run.log = capsys.readouterr().err
        return run


def unlock(address: tuple[str, int], sim: Sim, holders: Sequence[int] = (0, 1)) -> list[Any]:
    verdicts = []
    for k in holders:
        with Client(address, sim) as client:
            verdicts.append(client.submit(QUORUM.holders[k], threshold=2, bundle_hash=H))
    return verdicts


def test_a_forwarded_secret_ends_the_collection_and_the_holders_shares_are_wiped(
        sim: Sim, capsys: pytest.CaptureFixture[str]) -> None:
    with FakeProvider(sim.directory, secret=QUORUM.secret) as provider:
        def body(addr: tuple[str, int], go: Callable[[], None]) -> float | None:
            first = unlock(addr, sim, (0,))
            assert [getattr(v, "remaining", None) for v in first] == [1]
            waiting = Client(addr, sim)
            waiting.attest()  # a holder in the middle of its exchange
            go()
            return waiting.closed_within(15.0)

        run = Scenario(sim, [provider.address]).run(capsys, body)
    assert isinstance(run.outcome, Unlocked) and bytes(run.outcome.secret) == QUORUM.secret
    assert run.body is not None  # the waiting holder was closed without a response
    assert run.round.finished  # holder 0's share went with the round
    assert run.late_delivery is False
    assert (f"locksmithd: received the secret from {provider.address} (module locksmith-sim-"
            in run.log)
    assert "quorum reached" not in run.log


def test_a_quorum_first_stops_the_requester(sim: Sim,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    with FakeProvider(sim.directory, secret=QUORUM.secret, refuse="not yet") as provider:
        def body(addr: tuple[str, int], go: Callable[[], None]) -> None:
            go()
            deadline = time.monotonic() + 10
            while provider.exchanges == 0 and time.monotonic() < deadline:
                time.sleep(0.01)
            unlock(addr, sim)

        run = Scenario(sim, [provider.address]).run(capsys, body, settle=1.0)
        asked = provider.exchanges
        time.sleep(0.5)
        assert provider.exchanges == asked  # nobody asks once the round has ended
    assert isinstance(run.outcome, Unlocked) and bytes(run.outcome.secret) == QUORUM.secret
    assert "quorum reached" in run.log and "received the secret" not in run.log
    assert run.late_delivery is False


def test_a_wrong_secret_is_ignored_for_the_rest_of_the_boot_and_holders_unlock(
        sim: Sim, capsys: pytest.CaptureFixture[str]) -> None:
    with FakeProvider(sim.directory, secret=WRONG) as liar:
        def body(addr: tuple[str, int], go: Callable[[], None]) -> None:
            go()
            deadline = time.monotonic() + 10
            while liar.exchanges == 0 and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(0.5)  # several backoff intervals: it must not be asked again
            unlock(addr, sim)

        run = Scenario(sim, [liar.address]).run(capsys, body)
        assert liar.exchanges == 1
    assert isinstance(run.outcome, Unlocked) and bytes(run.outcome.secret) == QUORUM.secret
    assert ("served a secret that does not match the bundle; ignoring this provider"
            in run.log)


def test_an_honest_provider_wins_even_after_a_liar(sim: Sim,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    with FakeProvider(sim.directory, secret=WRONG) as liar, \
            FakeProvider(sim.directory, secret=QUORUM.secret) as honest:
        run = Scenario(sim, [liar.address, honest.address]).run(capsys)
    assert isinstance(run.outcome, Unlocked) and bytes(run.outcome.secret) == QUORUM.secret
    assert run.log.count("received the secret from") == 1


def test_a_refusal_is_logged_and_retried_on_the_refusal_interval(
        sim: Sim, capsys: pytest.CaptureFixture[str]) -> None:
    reason = "Requester PCRs are not approved (0 of 2 holder approvals)"
    with FakeProvider(sim.directory, secret=QUORUM.secret, refuse=reason) as provider:
        def body(addr: tuple[str, int], go: Callable[[], None]) -> None:
            go()
            deadline = time.monotonic() + 10
            while provider.exchanges < 3 and time.monotonic() < deadline:
                time.sleep(0.01)
            unlock(addr, sim)

        run = Scenario(sim, [provider.address]).run(capsys, body)
    assert provider.exchanges >= 3
    assert f"locksmithd: forwarding from {provider.address} refused: {reason}" in run.log
    assert isinstance(run.outcome, Unlocked)


def test_a_refusal_text_cannot_forge_log_lines(sim: Sim,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    forged = "no\nlocksmithd: received the secret from somewhere" + "x" * 1000
    with FakeProvider(sim.directory, secret=QUORUM.secret, refuse=forged) as provider:
        def body(addr: tuple[str, int], go: Callable[[], None]) -> None:
            go()
            deadline = time.monotonic() + 10
            while provider.exchanges == 0 and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(0.2)
            unlock(addr, sim)

        run = Scenario(sim, [provider.address]).run(capsys, body)
    refused = [line for line in run.log.splitlines() if " refused: " in line]
    assert refused[0].startswith(f"locksmithd: forwarding from {provider.address} refused: "
                                 "no\\nlocksmithd: received the secret from somewhere")
    assert refused[0].endswith("…") and len(refused[0]) < 400
    assert not any(line.startswith("locksmithd: received") for line in run.log.splitlines())


def test_a_failing_provider_is_retried_with_backoff_and_the_lines_are_rate_limited(
        sim: Sim, capsys: pytest.CaptureFixture[str]) -> None:
    accepted: list[float] = []
    hangup = socket.socket()
    hangup.bind(("127.0.0.1", 0))
    hangup.listen(16)
    hangup.settimeout(0.1)
    done = threading.Event()

    def accept() -> None:  # a provider that closes every connection at once
        while not done.is_set():
            try:
                conn, _ = hangup.accept()
            except TimeoutError:
                continue
            accepted.append(time.monotonic())
            conn.close()

    thread = threading.Thread(target=accept)
    thread.start()
    provider = f"127.0.0.1:{hangup.getsockname()[1]}"

    def body(addr: tuple[str, int], go: Callable[[], None]) -> None:
        go()
        deadline = time.monotonic() + 10
        while len(accepted) < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        unlock(addr, sim)

    try:
        run = Scenario(sim, [provider]).run(capsys, body)
    finally:
        done.set()
        thread.join()
        hangup.close()
    gaps = [b - a for a, b in zip(accepted, accepted[1:])]
    for gap, delay in zip(gaps, (0.05, 0.1, 0.2, 0.2)):
        assert gap >= delay * 0.7, gaps  # the server side sees each attempt a little late
    lines = [line for line in run.log.splitlines() if f"forwarding from {provider} failed" in line]
    assert re.fullmatch(rf"locksmithd: forwarding from {provider} failed: (the provider closed "
                        r"the connection before F2|Connection reset by peer|Broken pipe); "
                        r"retrying in 0\.05 s", lines[0]), lines[0]
    assert len(lines) < len(accepted)  # one line per second, the rest counted
    assert "events of this kind since the last report)" in run.log
    assert isinstance(run.outcome, Unlocked)


def test_a_provider_under_another_root_is_refused(sim: Sim, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    stranger = Sim.create(tmp_path / "other-nsm")
    with FakeProvider(stranger.directory, secret=QUORUM.secret) as provider:
        def body(addr: tuple[str, int], go: Callable[[], None]) -> None:
            go()
            deadline = time.monotonic() + 10
            while provider.exchanges == 0 and time.monotonic() < deadline:
                time.sleep(0.01)
            unlock(addr, sim)

        run = Scenario(sim, [provider.address]).run(capsys, body)
    assert (f"locksmithd: forwarding from {provider.address} refused the provider: Provider "
            "attestation rejected: ") in run.log
    assert "received the secret" not in run.log and isinstance(run.outcome, Unlocked)


def test_a_foreign_subkey_in_the_bundle_key_ends_the_boot(
        sim: Sim, capsys: pytest.CaptureFixture[str]) -> None:
    tampered = load_certificates(tampered_public_key(QUORUM.secret))[0]
    with FakeProvider(sim.directory, secret=QUORUM.secret) as provider:
        run = Scenario(sim, [provider.address], public_key=tampered).run(capsys)
    assert isinstance(run.outcome, Tampered)
    assert "bundle public key carries a subkey not derived from the received secret" in run.log


def test_stopping_before_anything_arrives_stops_the_requester(
        sim: Sim, capsys: pytest.CaptureFixture[str]) -> None:
    stopped = threading.Event()

    def body(addr: tuple[str, int], go: Callable[[], None]) -> None:
        go()
        stopped.set()

    run = Scenario(sim, [f"127.0.0.1:{free_port()}"], wait=0.5).run(capsys, body)
    assert stopped.is_set() and isinstance(run.outcome, Stopped)
