"""`caution secret approvals push` (docs/forwarding.md §7), in-process, against a real forwardd
on 127.0.0.1 (simulated NSM) or a scripted peer: the approvals that count are sent in batches of
16, what the provider answers is printed file by file, and every failure — nothing to send, no
provider, a peer that is not one, a silent one, nothing stored — is one `error:` line, exit 1.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from locksmith.core.forwarding.approval import PcrSet, Statement
from locksmith.core.forwarding.messages import (
    MAX_APPROVAL_BYTES, MAX_PUSHED, PUSH_CAP, Forwarded, Push, Stored, parse_first,
)
from locksmith.core.protocol import frame
from locksmith.personalities.caution import approvals_push
from locksmith.personalities.caution.approvals_push import batches, parse_push_address
from locksmith.personalities.caution.shard_client import Address
from locksmith.personalities.caution.ui import UsageError
from tests.cli.clirun import Result, caution
from tests.core.forwarding.approval_kit import signed
from tests.forwardd_kit import (
    Served,
    DAY, Provider, Providers, Requester, enclave, other_pcrs,
)
from tests.locksmithd_kit import Sim
from tests.unlock_kit import free_port

Capsys = pytest.CaptureFixture[str]


def write(directory: Path, served: Served, pcrs: PcrSet, holders: Sequence[int], *,
          expires_in: int = DAY, prefix: str = "") -> list[Path]:
    """Approval files as `caution secret approve` names them, signed now."""
    now = int(time.time())
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in holders:
        holder = served.quorum.holders[k]
        text = signed(holder.signing_key, Statement(served.digest, pcrs, now + expires_in),
                      created=now)
        path = directory / f"{prefix}{holder.fingerprint}-{pcrs.set_id}.asc"
        path.write_text(text)
        paths.append(path)
    return paths


def run_push(capsys: Capsys, sim: Sim, served: Served, address: str, directory: Path,
             *extra: str) -> Result:
    return caution(capsys, "secret", "approvals", "push", "--address", address, "--dir",
                   str(directory), "--bundle", str(served.bundle), "--keymaker-pcr-policy",
                   str(sim.policy), "--trust-root", str(sim.root), *extra)


def address_of(provider: Provider) -> str:
    return f"127.0.0.1:{provider.port}"


def errors(result: Result) -> list[str]:
    return [line for line in result.err.splitlines() if line.startswith("error:")]


# --- against forwardd ------------------------------------------------------------------------


def test_push_sends_what_counts_and_a_requester_of_that_image_then_receives_the_secret(
        capsys: Capsys, provider: Provider, sim: Sim, served: Served, tmp_path: Path) -> None:
    pcrs = other_pcrs(0x90)
    directory = tmp_path / "approvals"
    write(directory, served, pcrs, (0, 2))
    [expired] = write(directory, served, pcrs, (1,), expires_in=-DAY)
    (directory / "README.txt").write_text("not an approval")
    result = run_push(capsys, sim, served, address_of(provider), directory)
    assert result.code == 0, result.err
    lines = result.err.splitlines()
    assert any(line.startswith(f"{expired}: expired ") for line in lines), lines
    assert lines[-1] == f"Provider at {address_of(provider)} stored 2 approvals"
    assert result.out == ""
    provider.wait_for_log(rf"stored 2 approvals from 127\.0\.0\.1:\d+ \(PCR sets {pcrs.set_id}\)"
                          r"; 0 discarded")  # the expired file was not sent
    with Requester(provider.address, sim, served.digest, nsm=enclave(sim, pcrs)) as requester:
        answer, secret = requester.exchange()  # no approvals of its own
    assert isinstance(answer, Forwarded) and secret == served.quorum.secret


def test_more_than_16_approvals_go_in_batches_of_16_one_connection_each(
        capsys: Capsys, provider: Provider, sim: Sim, served: Served, tmp_path: Path) -> None:
    directory = tmp_path / "approvals"
    for tag in range(7):  # 7 PCR sets × 3 holders
        write(directory, served, other_pcrs(0xa0 + 3 * tag), (0, 1, 2))
    result = run_push(capsys, sim, served, address_of(provider), directory)
    assert result.code == 0, result.err
    assert result.err.splitlines()[-1] == f"Provider at {address_of(provider)} stored 21 approvals"
    provider.wait_for_log(r"stored 16 approvals from .*; 0 discarded")
    provider.wait_for_log(r"stored 5 approvals from .*; 0 discarded")


def test_pushing_the_same_files_twice_succeeds_twice(
        capsys: Capsys, provider: Provider, sim: Sim, served: Served, tmp_path: Path) -> None:
    directory = tmp_path / "approvals"
    write(directory, served, other_pcrs(0x94), (1,))
    for _ in range(2):
        result = run_push(capsys, sim, served, address_of(provider), directory)
        assert (result.code, result.err.splitlines()[-1]) == (
            0, f"Provider at {address_of(provider)} stored 1 approvals")


def test_what_the_provider_discards_is_printed_per_file_and_nothing_stored_exits_1(
        capsys: Capsys, providers: Providers, sim: Sim, served: Served, tmp_path: Path) -> None:
    """A provider shutting holder 0 out discards its approval, which counted locally."""
    provider = providers.start(sim, served.bundle, served.quorum.secret,
                               extra=["--exclude-holder", served.quorum.holders[0].fingerprint])
    directory = tmp_path / "approvals"
    [path] = write(directory, served, other_pcrs(0x98), (0,))
    result = run_push(capsys, sim, served, address_of(provider), directory)
    address = address_of(provider)
    assert result.code == 1
    assert result.err.splitlines()[-3:] == [
        f"Provider at {address} stored 0 approvals",
        f"{path}: holder 0 is excluded",
        f"error: the provider at {address} stored none of the 1 approvals"]


# --- failures before or without a provider ---------------------------------------------------


def test_nothing_is_sent_when_no_approval_counts(
        capsys: Capsys, sim: Sim, served: Served, tmp_path: Path) -> None:
    directory = tmp_path / "approvals"
    [expired] = write(directory, served, other_pcrs(0x9c), (0,), expires_in=-DAY)
    dead = f"127.0.0.1:{free_port()}"  # never contacted
    result = run_push(capsys, sim, served, dead, directory)
    assert result.code == 1
    assert errors(result) == [f"error: no approval in {directory} counts for this bundle; "
                              "nothing was sent"]
    assert f"{expired}: expired " in result.err
    empty = run_push(capsys, sim, served, dead, tmp_path / "missing")
    assert errors(empty) == [f"error: no approval in {tmp_path / 'missing'} counts for this "
                             "bundle; nothing was sent"]


def test_an_unreachable_provider_is_one_error_line(
        capsys: Capsys, sim: Sim, served: Served, tmp_path: Path) -> None:
    write(tmp_path / "approvals", served, other_pcrs(0x9e), (0,))
    dead = f"127.0.0.1:{free_port()}"
    result = run_push(capsys, sim, served, dead, tmp_path / "approvals")
    assert result.code == 1
    assert errors(result) == [f"error: Failed to connect to {dead}: Connection refused"]


@dataclass
class Peer:
    """A TCP peer on 127.0.0.1 that handles connection i as `script[i]`: `answer` (read the
    A1, reply a coherent A2 storing everything), `close`, `silent` or `garbage`."""

    script: Sequence[str]
    sock: socket.socket = field(default_factory=socket.socket)
    seen: list[int] = field(default_factory=list)  # texts per A1 received

    def __post_init__(self) -> None:
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.release = threading.Event()

    def __enter__(self) -> Peer:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.release.set()
        self.sock.close()
        self.thread.join(timeout=10)

    def _serve(self) -> None:
        for action in self.script:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                if action == "close":
                    continue
                if action == "garbage":
                    conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
                    continue
                if action == "silent":
                    self.release.wait(10)
                    continue
                decoder = frame.FrameDecoder()
                while (payload := decoder.next_payload(PUSH_CAP)) is None:
                    decoder.feed(conn.recv(65536))
                push = parse_first(payload)
                assert isinstance(push, Push)
                self.seen.append(len(push.approvals))
                conn.sendall(frame.encode(Stored(len(push.approvals)).encode()))


@pytest.mark.parametrize("action", ["close", "garbage"])
def test_a_peer_that_does_not_answer_the_push_is_named_as_perhaps_not_a_provider(
        capsys: Capsys, sim: Sim, served: Served, tmp_path: Path, action: str) -> None:
    write(tmp_path / "approvals", served, other_pcrs(0xb0), (0,))
    with Peer([action]) as peer:
        result = run_push(capsys, sim, served, peer.address, tmp_path / "approvals")
    assert result.code == 1
    assert errors(result) == [f"error: {peer.address} did not answer the push; is it a "
                              "forwarding provider (port 49505)?"]


def test_a_silent_peer_is_given_up_after_the_answer_timeout(
        capsys: Capsys, sim: Sim, served: Served, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(approvals_push, "ANSWER_TIMEOUT", 0.5)  # 30 s in use
    write(tmp_path / "approvals", served, other_pcrs(0xb4), (0,))
    with Peer(["silent"]) as peer:
        start = time.monotonic()
        result = run_push(capsys, sim, served, peer.address, tmp_path / "approvals")
        elapsed = time.monotonic() - start
    assert result.code == 1 and elapsed < 5
    assert errors(result) == [f"error: no answer from the provider at {peer.address} within "
                              "0.5 s"]


def test_a_failure_after_a_stored_batch_says_how_many_were_stored(
        capsys: Capsys, sim: Sim, served: Served, tmp_path: Path) -> None:
    directory = tmp_path / "approvals"
    for tag in range(6):  # 18 approvals: a batch of 16, then one of 2
        write(directory, served, other_pcrs(0xc0 + 3 * tag), (0, 1, 2))
    with Peer(["answer", "close"]) as peer:
        result = run_push(capsys, sim, served, peer.address, directory)
    assert peer.seen == [16]
    assert result.code == 1
    assert errors(result) == [f"error: {peer.address} did not answer the push; is it a "
                              "forwarding provider (port 49505)?; 16 approvals were stored "
                              "before"]


# --- the pieces ------------------------------------------------------------------------------


@pytest.mark.parametrize("text, address", [
    ("10.0.0.5", Address("10.0.0.5", 49505)),
    ("provider.internal", Address("provider.internal", 49505)),
    ("10.0.0.5:7000", Address("10.0.0.5", 7000)),
    ("[fd00::5]", Address("fd00::5", 49505)),
    ("[fd00::5]:7000", Address("fd00::5", 7000)),
    ("fd00::5", Address("fd00::5", 49505)),
])
def test_the_address_defaults_to_the_forwarding_port(text: str, address: Address) -> None:
    assert parse_push_address(text) == address


def test_a_bad_address_is_a_usage_error(capsys: Capsys, sim: Sim, served: Served,
                                        tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"invalid --address 'h:x': invalid port 'x'"):
        parse_push_address("h:x")
    result = run_push(capsys, sim, served, "h:0", tmp_path)
    assert result.code == 2
    assert errors(result) == ["error: invalid --address 'h:0': invalid port '0' (expected "
                              "1..65535)"]


def test_batches_hold_at_most_16_texts_and_fit_the_a1_cap() -> None:
    assert [len(b) for b in batches(["a"] * 33)] == [16, 16, 1]
    assert list(batches([])) == []
    big = "A" * (MAX_APPROVAL_BYTES - 10)  # escaped, 20 of these would not fit in 272 KiB
    sizes = [len(b) for b in batches([big + "\x01" * 10] * 20)]
    assert sum(sizes) == 20 and max(sizes) <= MAX_PUSHED
    for batch in batches([big + "\x01" * 10] * 20):
        assert len(Push(tuple([big + "\x01" * 10] * len(batch))).encode()) <= PUSH_CAP
