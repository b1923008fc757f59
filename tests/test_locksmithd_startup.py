"""locksmithd's options (enclave.md §3) and startup refusals (§3.1): exit 2 for usage errors,
exit 1 with the spec's text for everything else, and never a bound port.

"Binds nothing" is shown by ordering: each refusing daemon is pointed at a port the test already
holds, so a daemon that tried to bind before refusing would say `cannot listen on …` instead
of the expected text (and no `listening on` line may appear).
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from locksmith.core.keyfork.ipc import SocketLocation
from locksmith.personalities.locksmithd.options import (
    DEFAULT_BUNDLE, DEFAULT_POLICY, ListenAddress, UsageError, parse_listen, parse_options,
)
from tests.core.protocol_kit import fixture_quorum
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


# --- options ---------------------------------------------------------------------------------


@pytest.mark.parametrize("text, host, port", [
    ("0.0.0.0:49504", "0.0.0.0", 49504),
    ("127.0.0.1:0", "127.0.0.1", 0),
    ("localhost:65535", "localhost", 65535),
    ("[::1]:49504", "::1", 49504),
    ("[::]:1", "::", 1),
])
def test_listen_addresses_accept_host_port_and_bracketed_ipv6(text: str, host: str,
                                                               port: int) -> None:
    address = parse_listen(text)
    assert address == ListenAddress(host, port) and str(address) == text


@given(host=st.one_of(st.ip_addresses().map(str),
                     st.from_regex(r"[a-z][a-z0-9.-]{0,30}", fullmatch=True)),
       port=st.integers(0, 65535))
def test_listen_addresses_round_trip_through_their_text(host: str, port: int) -> None:
    address = ListenAddress(host, port)
    assert parse_listen(str(address)) == address


@pytest.mark.parametrize("text", ["::1:49504", "49504", "host:", ":49504", "host:65536",
                                  "host:-1", "host:0x10", "[::1]49504", "[]:1", "[::1]:"])
def test_malformed_listen_addresses_are_usage_errors(text: str) -> None:
    with pytest.raises(UsageError, match="expected HOST:PORT or \\[IPV6\\]:PORT"):
        parse_listen(text)


def test_options_fall_back_to_the_environment_then_the_defaults() -> None:
    defaults = parse_options([], {})
    assert (defaults.bundle, defaults.policy) == (DEFAULT_BUNDLE, DEFAULT_POLICY)
    assert str(defaults.listen) == "0.0.0.0:49504" and defaults.nsm.kind == "device"
    assert defaults.keyforkd_socket == SocketLocation("/keyforkd.sock")
    env = {"LOCKSMITH_BUNDLE": "/b.json", "LOCKSMITH_KEYMAKER_PCR_POLICY": "/p.json",
           "LOCKSMITHD_LISTEN_ADDR": "[::1]:7", "LOCKSMITH_NSM": "simulated",
           "LOCKSMITH_NSM_DIR": "/nsm", "XDG_RUNTIME_DIR": "/run/user/0"}
    from_env = parse_options([], env)
    assert (from_env.bundle, from_env.policy, str(from_env.listen)) == ("/b.json", "/p.json",
                                                                         "[::1]:7")
    assert from_env.nsm.kind == "simulated" and str(from_env.nsm.directory) == "/nsm"
    assert from_env.keyforkd_socket == SocketLocation("/run/user/0/keyforkd/keyforkd.sock",
                                                      "/run/user/0/keyforkd")
    explicit = parse_options(["--bundle", "/x.json", "--listen", "127.0.0.1:1",
                              "--keyforkd-socket", "/k.sock", "--nsm", "device"],
                             {**env, "KEYFORKD_SOCKET_PATH": "/env.sock"})
    assert (explicit.bundle, str(explicit.listen), explicit.nsm.kind) == ("/x.json",
                                                                          "127.0.0.1:1",
                                                                          "device")
    assert explicit.keyforkd_socket == SocketLocation("/k.sock")
    empty = parse_options([], {name: "" for name in env})  # empty variables count as unset
    assert (empty.bundle, str(empty.listen)) == (DEFAULT_BUNDLE, "0.0.0.0:49504")


def test_excluded_holders_come_from_repeated_options_else_the_environment() -> None:
    alice, bob = (h.fingerprint for h in fixture_quorum().holders)
    assert parse_options([], {}).exclude_holders == ()
    spaced = " ".join(alice[i:i + 4] for i in range(0, 40, 4)).lower()  # as gpg prints it
    argv = ["--exclude-holder", spaced, "--exclude-holder", bob, "--exclude-holder", alice]
    assert parse_options(argv, {}).exclude_holders == (alice, bob)
    env = {"LOCKSMITHD_EXCLUDE_HOLDERS": f" {bob.lower()},{alice}\n"}
    assert parse_options([], env).exclude_holders == (bob, alice)
    assert parse_options(["--exclude-holder", alice], env).exclude_holders == (alice,)
    for bad in ("", "ABCD", alice + "0", "G" * 40):
        with pytest.raises(UsageError, match="invalid holder fingerprint"):
            parse_options(["--exclude-holder", bad], {})


@pytest.mark.parametrize("argv, message", [
    (["--nsm", "simulated"], "--nsm-dir is required with --nsm simulated"),
    (["--nsm", "tpm"], "invalid --nsm value 'tpm'"),
    (["--bundle", ""], "--bundle must not be empty"),
])
def test_option_errors_are_usage_errors(argv: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_options(argv, {})


# --- refusals, as processes ------------------------------------------------------------------


@dataclass(frozen=True)
class Files:
    sim: Sim
    directory: Path
    v0: Path
    v1: Path

    def write(self, name: str, text: str) -> Path:
        path = self.directory / name
        path.write_text(text)
        return path


@pytest.fixture(scope="module")
def files(sim: Sim, tmp_path_factory: pytest.TempPathFactory, caution_v0: Path) -> Files:
    directory = tmp_path_factory.mktemp("startup")
    bundle, _, _ = v1_quorum(sim, 2, 3)
    return Files(sim, directory, caution_v0 / "bundle.json", write_bundle(directory, bundle))


def _checksum_mismatch(f: Files) -> list[str]:
    value = json.loads(f.v0.read_text())
    value["keyring_hash"][0] ^= 1
    return ["--bundle", str(f.write("checksum.json", json.dumps(value))), *f.sim.args()]


def _other_pcrs(f: Files) -> list[str]:
    policy = json.loads(f.sim.policy.read_text())
    policy["sets"][0]["pcrs"]["0"] = "ab" * 48
    return ["--bundle", str(f.v1), "--keymaker-pcr-policy",
            str(f.write("other-policy.json", json.dumps(policy))),
            "--trust-root", str(f.sim.root), *f.sim.args()]


Case = tuple[Callable[[Files], list[str]], int, str]
REFUSALS: dict[str, Case] = {
    "missing bundle": (lambda f: ["--bundle", str(f.directory / "nope.json"), *f.sim.args()], 1,
                       "cannot read quorum bundle {dir}/nope.json: No such file or directory"),
    "bundle is a directory": (lambda f: ["--bundle", str(f.directory), *f.sim.args()], 1,
                              "cannot read quorum bundle {dir}: Is a directory"),
    "not JSON": (lambda f: ["--bundle", str(f.write("junk.json", "{junk")), *f.sim.args()], 1,
                 "invalid quorum bundle {dir}/junk.json: could not parse quorum bundle JSON"),
    "keyring checksum": (_checksum_mismatch, 1,
                         ("invalid quorum bundle {dir}/checksum.json: keyring checksum mismatch; "
                          "restore the original bundle (no repair override)")),
    "V1 without policy": (lambda f: ["--bundle", str(f.v1), "--trust-root", str(f.sim.root),
                                     "--keymaker-pcr-policy", str(f.directory / "none.json"),
                                     *f.sim.args()], 1,
                          "Keymaker PCR policy is required for V1 bundles: {dir}/none.json"),
    "V1 policy invalid": (lambda f: ["--bundle", str(f.v1), "--trust-root", str(f.sim.root),
                                     "--keymaker-pcr-policy", str(f.write("bad.json", "{}")),
                                     *f.sim.args()], 1,
                          "could not parse Keymaker PCR policy JSON"),
    "V1 proof from other code": (_other_pcrs, 1,
                                 ("keymaker necroproof did not match any PCR set valid at the "
                                  "necroproof timestamp (1 attempts): set 0: PCR0 mismatch")),
    "V1 simulated proof under the AWS root": (
        lambda f: ["--bundle", str(f.v1), "--keymaker-pcr-policy", str(f.sim.policy),
                   *f.sim.args()], 1, "certificate chain does not lead to the trusted root"),
    "NSM dir missing": (lambda f: ["--bundle", str(f.v0), "--nsm", "simulated"], 2,
                        "--nsm-dir is required with --nsm simulated"),
    "NSM dir unusable": (lambda f: ["--bundle", str(f.v0), "--nsm", "simulated", "--nsm-dir",
                                    str(f.v0)], 1, "cannot open the NSM (simulated): "),
    "unknown option": (lambda f: ["--bundle", str(f.v0), "--frobnicate"], 2,
                       "unrecognized arguments: --frobnicate"),
    "excluding a non-holder": (
        lambda f: ["--bundle", str(f.v1), "--keymaker-pcr-policy", str(f.sim.policy),
                   "--trust-root", str(f.sim.root), *f.sim.args(), "--exclude-holder",
                   "AB" * 20], 1,
        "--exclude-holder ABABABABABABABABABABABABABABABABABABABAB: no holder of the quorum "
        "bundle {dir}/bundle.json has this fingerprint"),
    "excluding below the threshold": (
        lambda f: ["--bundle", str(f.v1), "--keymaker-pcr-policy", str(f.sim.policy),
                   "--trust-root", str(f.sim.root), *f.sim.args(),
                   *(a for h in v1_quorum(f.sim, 2, 3)[1].holders[:2]
                     for a in ("--exclude-holder", h.fingerprint))], 1,
        "--exclude-holder: excluding 2 of 3 holders leaves fewer than the threshold 2"),
}


@pytest.mark.parametrize("name", list(REFUSALS))
def test_startup_refusals_exit_with_the_spec_text_and_bind_nothing(
        name: str, files: Files, daemons: Daemons, held_port: int) -> None:
    build, status, text = REFUSALS[name]
    code, log = daemons.run([*build(files), "--listen", f"127.0.0.1:{held_port}"])
    assert code == status, log
    assert text.format(dir=files.directory) in log
    assert "listening on" not in log and "cannot listen" not in log


@pytest.mark.skipif(os.path.exists("/dev/nsm"), reason="this machine has a real NSM")
def test_the_default_nsm_is_the_device_and_its_absence_refuses_startup(
        files: Files, daemons: Daemons, held_port: int) -> None:
    code, log = daemons.run(["--bundle", str(files.v0), "--listen", f"127.0.0.1:{held_port}"])
    assert code == 1
    assert "cannot open the NSM (device): /dev/nsm: No such file or directory" in log
    assert "listening on" not in log


def test_a_port_in_use_is_refused_after_every_other_check(
        files: Files, daemons: Daemons, held_port: int) -> None:
    code, log = daemons.run(["--bundle", str(files.v0), *files.sim.args(),
                             "--listen", f"127.0.0.1:{held_port}"])
    assert code == 1
    assert f"locksmithd: cannot listen on 127.0.0.1:{held_port}: Address already in use" in log
    assert "listening on" not in log


def test_malformed_listen_option_is_a_usage_error(files: Files, daemons: Daemons) -> None:
    code, log = daemons.run(["--bundle", str(files.v0), *files.sim.args(),
                             "--listen", "::1:49504"])
    assert code == 2 and "invalid listen address '::1:49504'" in log
