"""locksmithd's key-forwarding options and startup (docs/forwarding.md §2.1, §5.1, §6 step 5):
usage errors exit 2 with their texts, a v0 bundle is refused before anything is bound, the
forwarding address is bound at startup but not served, and the approvals directory is read once
with every skipped file named."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from locksmith.personalities.locksmithd.options import (
    ListenAddress, UsageError, parse_forwarding_address, parse_options,
)
from locksmith.personalities.locksmithd.startup import read_approvals
from tests.locksmithd_kit import Daemons, Sim, v1_quorum, write_bundle


@pytest.fixture
def held_port() -> Iterator[int]:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    try:
        yield holder.getsockname()[1]
    finally:
        holder.close()


# --- options -----------------------------------------------------------------------------------


def test_forwarding_is_off_by_default() -> None:
    options = parse_options([], {})
    assert options.forward_listen is None and options.forward_from == ()
    assert options.approvals == "/etc/caution/approvals" and not options.forwarding


@pytest.mark.parametrize("text, host, port", [
    ("10.0.0.5", "10.0.0.5", 49505),
    ("provider.internal:7000", "provider.internal", 7000),
    ("[fd00::5]", "fd00::5", 49505),
    ("[::1]:1", "::1", 1),
])
def test_forwarding_addresses_take_an_optional_port_defaulting_to_49505(
        text: str, host: str, port: int) -> None:
    assert parse_forwarding_address(text, connect=True) == ListenAddress(host, port)


@given(host=st.one_of(st.ip_addresses().map(str),
                     st.from_regex(r"[a-z][a-z0-9.-]{0,30}", fullmatch=True)),
       port=st.integers(1, 65535))
def test_forwarding_addresses_round_trip_through_their_text(host: str, port: int) -> None:
    address = ListenAddress(host, port)
    assert parse_forwarding_address(str(address), connect=True) == address


@pytest.mark.parametrize("text", ["::1", "host:", ":7", "host:65536", "host:0x1", "[::1]7",
                                  "[]", "[::1]:", "a b", "host:0"])
def test_malformed_forwarding_addresses_are_usage_errors(text: str) -> None:
    with pytest.raises(UsageError) as raised:
        parse_options(["--forward-from", text], {})
    assert str(raised.value) == (f"invalid forwarding address {text!r}: expected HOST[:PORT] "
                                 "or [IPV6][:PORT]")


def test_providers_come_from_repeated_options_else_the_variable() -> None:
    env = {"LOCKSMITHD_FORWARD_FROM": " 10.0.0.1,10.0.0.2:7\n[::1] 10.0.0.1"}
    assert [str(a) for a in parse_options([], env).forward_from] == [
        "10.0.0.1:49505", "10.0.0.2:7", "[::1]:49505"]  # each once
    argv = ["--forward-from", "a", "--forward-from", "b:1"]
    assert [str(a) for a in parse_options(argv, env).forward_from] == ["a:49505", "b:1"]
    assert parse_options([], {"LOCKSMITHD_FORWARD_FROM": ""}).forward_from == ()


def test_more_than_16_providers_is_a_usage_error() -> None:
    sixteen = ",".join(f"10.0.0.{i}" for i in range(16))
    assert len(parse_options([], {"LOCKSMITHD_FORWARD_FROM": sixteen}).forward_from) == 16
    with pytest.raises(UsageError, match="^at most 16 forwarding providers$"):
        parse_options([], {"LOCKSMITHD_FORWARD_FROM": sixteen + ",10.0.0.99"})


def test_the_provider_address_comes_from_the_option_else_the_variable() -> None:
    env = {"LOCKSMITHD_FORWARD_LISTEN": "0.0.0.0:49505"}
    assert str(parse_options([], env).forward_listen) == "0.0.0.0:49505"
    assert str(parse_options(["--forward-listen", "127.0.0.1:0"], env).forward_listen) \
        == "127.0.0.1:0"
    assert str(parse_options(["--forward-listen", "[::]"], {}).forward_listen) == "[::]:49505"


@pytest.mark.parametrize("argv", [
    ["--forward-listen", "0.0.0.0:49504"],
    ["--forward-listen", "10.0.0.1:49504", "--listen", "127.0.0.1:1"],
    ["--forward-listen", "127.0.0.1:6000", "--listen", "127.0.0.1:6000"],
    ["--forward-listen", "0.0.0.0:6000", "--listen", "127.0.0.1:6000"],
])
def test_the_shard_port_is_refused_for_the_provider(argv: list[str]) -> None:
    port = argv[1].rsplit(":", 1)[1]
    with pytest.raises(UsageError) as raised:
        parse_options(argv, {})
    assert str(raised.value) == f"--forward-listen must not use the shard port {port}"


def test_the_provider_may_share_a_port_number_on_another_address_or_pick_one() -> None:
    argv = ["--forward-listen", "10.0.0.1:6000", "--listen", "127.0.0.1:6000"]
    assert parse_options(argv, {}).forward_listen == ListenAddress("10.0.0.1", 6000)
    argv = ["--forward-listen", "127.0.0.1:0", "--listen", "127.0.0.1:0"]
    assert parse_options(argv, {}).forward_listen == ListenAddress("127.0.0.1", 0)


def test_the_approvals_directory_comes_from_the_option_else_the_variable() -> None:
    env = {"LOCKSMITH_APPROVALS_DIR": "/env/approvals"}
    assert parse_options([], env).approvals == "/env/approvals"
    assert parse_options(["--approvals", "/opt/a"], env).approvals == "/opt/a"
    for name in ("--approvals", "--forward-listen", "--forward-from"):
        with pytest.raises(UsageError, match=f"^{name} must not be empty$"):
            parse_options([name, ""], {})


# --- the approvals directory -------------------------------------------------------------------


def test_approvals_are_the_small_asc_files_and_everything_else_is_named(tmp_path: Path) -> None:
    said: list[str] = []
    assert read_approvals(str(tmp_path / "missing"), said.append) == ()
    assert said == []  # a missing directory holds none, silently
    (tmp_path / "b.asc").write_text("second")
    (tmp_path / "a.asc").write_text("first")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "big.asc").write_text("x" * (16 * 1024 + 1))
    (tmp_path / "binary.asc").write_bytes(b"\xff\xfe")
    (tmp_path / "sub").mkdir()
    assert read_approvals(str(tmp_path), said.append) == (("a.asc", "first"),
                                                          ("b.asc", "second"))
    assert said == [f"approval {tmp_path}/big.asc skipped: larger than 16384 bytes",
                    f"approval {tmp_path}/binary.asc skipped: not UTF-8 text",
                    f"approval {tmp_path}/notes.txt skipped: not an .asc file",
                    f"2 approval file(s) read from {tmp_path}"]


# --- as processes ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def v1_args(sim: Sim, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    bundle, _, _ = v1_quorum(sim, 2, 3)
    return ["--bundle", str(write_bundle(tmp_path_factory.mktemp("fwd"), bundle)),
            *sim.v1_args()]


@pytest.mark.parametrize("role", [["--forward-listen", "127.0.0.1:0"],
                                  ["--forward-from", "127.0.0.1:9"]])
def test_a_v0_bundle_cannot_forward_and_nothing_is_bound(
        role: list[str], sim: Sim, caution_v0: Path, daemons: Daemons, held_port: int) -> None:
    code, log = daemons.run(["--bundle", str(caution_v0 / "bundle.json"), *sim.args(), *role,
                             "--listen", f"127.0.0.1:{held_port}"])
    assert code == 1, log
    assert (f"locksmithd: key forwarding needs a bundle with a threshold (V1 or ImportedV0); "
            f"{caution_v0}/bundle.json is a v0 bundle") in log
    assert "listening on" not in log and "cannot listen" not in log


def test_a_usage_error_exits_2_with_its_text(v1_args: list[str], daemons: Daemons) -> None:
    code, log = daemons.run([*v1_args, "--forward-listen", "0.0.0.0:49504"])
    assert code == 2
    assert "locksmithd: error: --forward-listen must not use the shard port 49504" in log


def test_a_busy_forwarding_port_stops_the_boot_before_any_holder_acts(
        v1_args: list[str], daemons: Daemons, held_port: int) -> None:
    code, log = daemons.run([*v1_args, "--listen", "127.0.0.1:0",
                             "--forward-listen", f"127.0.0.1:{held_port}"])
    assert code == 1, log
    assert f"locksmithd: cannot listen on 127.0.0.1:{held_port}: Address already in use" in log
    assert "listening on" not in log


def test_the_forwarding_address_is_held_but_not_served_before_the_unlock(
        v1_args: list[str], daemons: Daemons) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    daemon = daemons.start([*v1_args, "--forward-listen", f"127.0.0.1:{port}"])
    daemon.wait_for_log(rf"forwarding address 127\.0\.0\.1:{port} reserved")
    with pytest.raises(ConnectionRefusedError):  # bound, not listening
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    with socket.socket() as other, pytest.raises(OSError, match="Address already in use"):
        other.bind(("127.0.0.1", port))


def test_a_requester_announces_its_providers_and_the_simulated_root(
        v1_args: list[str], sim: Sim, daemons: Daemons, tmp_path: Path) -> None:
    daemon = daemons.start([*v1_args, "--forward-from", "127.0.0.1:9",
                            "--approvals", str(tmp_path)])
    daemon.wait_for_log(r"forwarding from 127\.0\.0\.1:9 failed: .*; retrying in 1 s")
    log = daemon.log()
    assert (f"locksmithd: warning: forwarding trusts the simulated NSM root ("
            f"{sim.anchor.name}, sha256 {sim.anchor.fingerprint})") in log
    assert ("asking 1 forwarding provider(s) for the secret: 127.0.0.1:9 (0 approval(s) to "
            "present)") in log
