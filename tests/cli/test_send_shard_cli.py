"""`caution secret send-shard` (cli.md §5, protocol.md §11) against an in-test enclave.

The enclave (`enclave_harness`) runs the real `EnclaveSession`, `ReconstitutionRound` and
simulated NSM on 127.0.0.1 and records what reached it, so "nothing is sent" is asserted where
it matters: at the server, which must never see message 3 from a client that refused.
"""

from __future__ import annotations

import json
import socket
import sys
import time
from pathlib import Path

import pytest

from locksmith.core.attestation.nsm_simulated import SimulatedNsm
from locksmith.core.attestation.verify import TrustAnchor
from locksmith.core.bundle.checks import CheckedBundle
from locksmith.personalities.caution.shard_client import Address, parse_address
from tests.cli.clirun import Result, caution
from tests.cli.enclave_harness import Behaviour, FakeEnclave, running
from tests.cli.send_shard_kit import (
    SENDING, SENT, TEST_SECRET, ZERO, Capsys, lines, refused_before_message_3, send,
)
from tests.conftest import CAUTION_V0
from tests.keymaker_helpers import keygen_holders

# --- the whole exchange ----------------------------------------------------------------------


def test_progress_lines_in_order_and_the_second_shard_completes_the_quorum(
        capsys: Capsys, enclave: FakeEnclave, nsm_dir: Path) -> None:
    root = TrustAnchor.from_pem((nsm_dir / "root.pem").read_bytes())
    first = send(capsys, enclave.address, nsm_dir)
    assert first.code == 0, first.err
    assert first.out == ""  # only human text, and all of it on stderr
    module = lines(first)[3].removeprefix("Enclave attestation verified (module ").rstrip(")")
    assert module.startswith("locksmith-sim-")
    assert lines(first) == [
        TEST_SECRET,
        f"warning: trusting a development root ({root.name}, sha256 {root.fingerprint}) "
        "instead of the AWS Nitro root",
        SENDING.format(address=enclave.address),
        f"Enclave attestation verified (module {module})",
        SENT,
        "Shard accepted, 1 remaining shards until reconstitution",
    ]
    second = send(capsys, enclave.address, nsm_dir, holder="bob")
    assert second.code == 0, second.err
    assert lines(second)[-1] == "Shard accepted, 0 remaining shards until reconstitution"
    assert enclave.round.finished
    # v0: the metadata's threshold is claimed and bundle_hash is omitted (protocol.md §3, §12)
    assert [(s.holder, s.threshold, s.bundle_hash) for s in enclave.seen] == [
        (0, 2, None), (1, 2, None)]


def test_a_rejection_reason_is_printed_and_exits_1(capsys: Capsys, enclave: FakeEnclave,
                                                   nsm_dir: Path) -> None:
    assert send(capsys, enclave.address, nsm_dir).code == 0
    again = send(capsys, enclave.address, nsm_dir)
    assert again.code == 1
    assert lines(again)[-2:] == [SENT, "error: Shard rejected by enclave: Holder already "
                                       "contributed a share"]


def test_trusted_hashes_with_verified_at_are_announced(capsys: Capsys, enclave: FakeEnclave,
                                                       nsm_dir: Path, tmp_path: Path) -> None:
    hashes = json.loads((nsm_dir / "trusted_hashes.json").read_text())
    hashes.update(verified_at="2026-01-02T03:04:05Z", tls={"anything": 1})
    (tmp_path / ".caution").mkdir()
    (tmp_path / ".caution" / "trusted_hashes.json").write_text(json.dumps(hashes))
    result = caution(capsys, "--workdir", str(tmp_path), "secret", "send-shard",
                     "--address", enclave.address, "--bundle", str(CAUTION_V0 / "bundle.json"),
                     "--keyring", str(CAUTION_V0 / "alice.private.asc"),
                     "--trust-root", str(nsm_dir / "root.pem"))
    assert result.code == 0, result.err
    assert lines(result)[1] == "Using trusted hashes from 2026-01-02T03:04:05Z"


def test_pcr_options_override_the_trusted_hashes_file(capsys: Capsys, enclave: FakeEnclave,
                                                      nsm_dir: Path, tmp_path: Path) -> None:
    hashes = json.loads((nsm_dir / "trusted_hashes.json").read_text())
    result = send(capsys, enclave.address, nsm_dir, "--pcr0", hashes["pcr0"],
                  "--pcr1", hashes["pcr1"], "--pcr2", hashes["pcr2"].upper(),
                  hashes=tmp_path / "absent.json")
    assert result.code == 0, result.err


# --- refusals of the live attestation: nothing is sent -----------------------------------------


def test_pcr_mismatch_refuses_and_sends_nothing(capsys: Capsys, enclave: FakeEnclave,
                                                nsm_dir: Path, other_nsm_dir: Path) -> None:
    result = send(capsys, enclave.address, nsm_dir, hashes=other_nsm_dir / "trusted_hashes.json")
    expected = json.loads((other_nsm_dir / "trusted_hashes.json").read_text())["pcr0"]
    got = json.loads((nsm_dir / "trusted_hashes.json").read_text())["pcr0"]
    refused_before_message_3(enclave, result, "Enclave attestation rejected: PCR0 mismatch "
                                              f"(expected {expected}, got {got})")
    assert SENDING.format(address=enclave.address) in lines(result)


def test_nonce_mismatch_refuses_and_sends_nothing(capsys: Capsys, v0: CheckedBundle,
                                                  nsm_dir: Path) -> None:
    with running(v0, SimulatedNsm.open(nsm_dir), Behaviour.WRONG_NONCE) as server:
        result = send(capsys, server.address, nsm_dir)
        refused_before_message_3(server, result, "Enclave attestation rejected: nonce did not match")


def test_a_short_user_data_refuses_and_sends_nothing(capsys: Capsys, v0: CheckedBundle,
                                                     nsm_dir: Path) -> None:
    with running(v0, SimulatedNsm.open(nsm_dir), Behaviour.SHORT_USER_DATA) as server:
        result = send(capsys, server.address, nsm_dir)
        refused_before_message_3(
            server, result, "Enclave attestation rejected: user_data is 16 bytes, expected 32")


def test_untrusted_root_refuses_and_sends_nothing(capsys: Capsys, enclave: FakeEnclave,
                                                  nsm_dir: Path) -> None:
    result = send(capsys, enclave.address, nsm_dir, trust=False)
    hint = lines(result).pop()
    assert hint == ("  caused by: this document comes from a simulated (development) NSM: pass "
                    "--trust-root <its NSM directory>/root.pem to trust that root")
    result = Result(result.code, result.out, result.err.replace(hint + "\n", ""))
    refused_before_message_3(enclave, result, "Enclave attestation rejected: certificate chain "
                                              "does not lead to the trusted root")


def test_debug_document_is_refused_without_allow_debug_enclave(
        capsys: Capsys, v0: CheckedBundle, nsm_dir: Path) -> None:
    debug = SimulatedNsm.open(nsm_dir, pcr_overrides={i: bytes(48) for i in range(3)})
    with running(v0, debug) as server:
        result = send(capsys, server.address, nsm_dir)
        refused_before_message_3(
            server, result, "Enclave attestation rejected: debug-mode enclave (all-zero PCRs) "
                            "refused; pass --allow-debug-enclave for development")


def test_debug_enclave_is_accepted_with_allow_debug_enclave(
        capsys: Capsys, v0: CheckedBundle, nsm_dir: Path) -> None:
    debug = SimulatedNsm.open(nsm_dir, pcr_overrides={i: bytes(48) for i in range(3)})
    with running(v0, debug) as server:
        result = send(capsys, server.address, nsm_dir, "--pcr0", ZERO, "--pcr1", ZERO,
                      "--pcr2", ZERO, "--allow-debug-enclave")
        assert result.code == 0, result.err
        assert ("warning: the enclave is a debug-mode enclave (all-zero PCRs), accepted because "
                "of --allow-debug-enclave") in lines(result)
        assert server.submissions == 1


def test_all_zero_expected_pcrs_need_allow_debug_enclave(capsys: Capsys, enclave: FakeEnclave,
                                                         nsm_dir: Path) -> None:
    result = send(capsys, enclave.address, nsm_dir, "--pcr0", ZERO, "--pcr1", ZERO,
                  "--pcr2", ZERO)
    assert result.code == 1
    assert lines(result)[-1] == ("error: the expected PCRs are all zero (a debug-mode enclave); "
                                 "pass --allow-debug-enclave for development")
    assert enclave.seen == []  # refused before connecting


# --- connection and verdict failures ---------------------------------------------------------


def test_a_refused_connection_is_reported(capsys: Capsys, nsm_dir: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    result = send(capsys, f"127.0.0.1:{port}", nsm_dir)
    assert result.code == 1
    assert lines(result)[-2:] == [SENDING.format(address=f"127.0.0.1:{port}"),
                                  f"error: Failed to connect to 127.0.0.1:{port}: Connection refused"]


def test_closed_without_verdict(capsys: Capsys, v0: CheckedBundle, nsm_dir: Path) -> None:
    with running(v0, SimulatedNsm.open(nsm_dir), Behaviour.NO_VERDICT) as server:
        result = send(capsys, server.address, nsm_dir)
    assert result.code == 1
    assert lines(result)[-2:] == [SENT, "error: the enclave closed the connection without a "
                                        "verdict; the shard was not accepted"]


def test_an_answer_that_is_no_verdict_is_unexpected(capsys: Capsys, v0: CheckedBundle,
                                                    nsm_dir: Path) -> None:
    with running(v0, SimulatedNsm.open(nsm_dir), Behaviour.UNEXPECTED) as server:
        result = send(capsys, server.address, nsm_dir)
    assert result.code == 1
    assert lines(result)[-2:] == [SENT, "error: unexpected answer from the enclave"]


def test_no_verdict_within_the_timeout(capsys: Capsys, v0: CheckedBundle, nsm_dir: Path) -> None:
    with running(v0, SimulatedNsm.open(nsm_dir), Behaviour.SILENT) as server:
        started = time.monotonic()
        result = send(capsys, server.address, nsm_dir, "--timeout", "1")
        assert time.monotonic() - started < 10
    assert result.code == 1
    assert lines(result)[-2:] == [SENT, "error: no answer from the enclave within 1 s; the shard "
                                        "may or may not have been counted"]


# --- local failures: before any connection ----------------------------------------------------


def test_no_matching_holder_key(capsys: Capsys, enclave: FakeEnclave, nsm_dir: Path,
                                tmp_path: Path) -> None:
    stranger = tmp_path / "stranger.private.asc"
    stranger.write_bytes(keygen_holders(1, "stranger")[0].private)
    result = send(capsys, enclave.address, nsm_dir, "--keyring", str(stranger), holder="")
    assert result.code == 1
    assert lines(result)[-1] == ("error: no holder of this bundle has both signing and "
                                 f"decryption secret keys in {stranger}")
    assert enclave.seen == []


def test_holder_option_must_name_a_bundle_holder(capsys: Capsys, enclave: FakeEnclave,
                                                 nsm_dir: Path) -> None:
    result = send(capsys, enclave.address, nsm_dir, "--holder", "ee9d cbd1 adda f6b5 5bb5 "
                  "4b67 a13e 41e3 1ac9 69a9")  # Bob's fingerprint, but Alice's keyring
    assert lines(result)[-1].startswith("error: no holder of this bundle has both")
    result = send(capsys, enclave.address, nsm_dir, "--holder", "00" * 20)
    assert lines(result)[-1] == f"error: --holder {'00' * 20} is not a holder of this bundle"
    assert enclave.seen == []


def test_smart_card_path_needs_pyscard(capsys: Capsys, enclave: FakeEnclave, nsm_dir: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "smartcard", None)  # `import smartcard` fails
    result = send(capsys, enclave.address, nsm_dir, holder="")
    assert result.code == 1
    assert lines(result)[-1] == ("error: smart-card support is not available in this build; use "
                                 "--keyring or install with make install-cli-untrusted")
    assert enclave.seen == []


def test_pcr0_without_pcr1_and_pcr2_is_a_usage_error(capsys: Capsys, nsm_dir: Path) -> None:
    result = send(capsys, "127.0.0.1", nsm_dir, "--pcr0", ZERO)
    assert result.code == 2
    assert "--pcr0, --pcr1 and --pcr2 must be given together" in result.err


def test_bad_addresses_are_usage_errors(capsys: Capsys, nsm_dir: Path) -> None:
    for address in ("host:", "host:0", "host:65536", "host:x", "[::1", "[::1]x", ""):
        result = send(capsys, address, nsm_dir)
        assert result.code == 2, (address, result.err)
        assert "invalid --address" in result.err


def test_address_forms() -> None:
    assert parse_address("enclave.example") == Address("enclave.example", 49504)
    assert parse_address("10.0.0.1:1234") == Address("10.0.0.1", 1234)
    assert parse_address("[fe80::1]:5") == Address("fe80::1", 5)
    assert parse_address("[::1]") == Address("::1", 49504)
    assert parse_address("::1") == Address("::1", 49504)
    assert str(Address("::1", 49504)) == "[::1]:49504"


def test_missing_trusted_hashes(capsys: Capsys, tmp_path: Path, nsm_dir: Path) -> None:
    result = caution(capsys, "--workdir", str(tmp_path), "secret", "send-shard",
                     "--address", "127.0.0.1", "--bundle", str(CAUTION_V0 / "bundle.json"),
                     "--keyring", str(CAUTION_V0 / "alice.private.asc"))
    assert result.code == 1
    assert lines(result)[-1] == ("error: No trusted PCR values: pass --pcr0/--pcr1/--pcr2 or "
                                 "create .caution/trusted_hashes.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"pcr0": "00", "pcr1": "' + ZERO + '", "pcr2": "' + ZERO + '"}')
    result = send(capsys, "127.0.0.1", nsm_dir, hashes=bad)
    assert lines(result)[-1] == "error: invalid pcr0 hex"
    bad.write_text('{"pcr1": "' + ZERO + '"}')
    assert lines(send(capsys, "127.0.0.1", nsm_dir, hashes=bad))[-1] == "error: missing pcr0"
    bad.write_text("{")
    assert lines(send(capsys, "127.0.0.1", nsm_dir, hashes=bad))[-1] == f"error: Failed to parse {bad}"


def test_a_missing_bundle(capsys: Capsys, tmp_path: Path, nsm_dir: Path) -> None:
    result = send(capsys, "127.0.0.1", nsm_dir, bundle=tmp_path / "none.json")
    assert lines(result)[-1] == f"error: quorum bundle not found: {tmp_path / 'none.json'}"


def test_a_public_keyring_is_named_as_holding_no_secret_keys(
        capsys: Capsys, enclave: FakeEnclave, nsm_dir: Path, tmp_path: Path) -> None:
    from locksmith.core.openpgp.secretkeys import load_secret_keys
    private = (CAUTION_V0 / "alice.private.asc").read_bytes()
    public = tmp_path / "alice.asc"
    public.write_text(load_secret_keys(private).certificates[0].public().armored())
    result = send(capsys, enclave.address, nsm_dir, "--keyring", str(public), holder="")
    assert result.code == 1
    assert lines(result)[-1] == (
        f"error: {public} holds no secret keys (a public certificate?); pass the holder's "
        "private keyring, e.g. the .private.asc file of 'caution secret keygen', or leave out "
        "--keyring to use a smart card")
    assert enclave.seen == []


def test_an_http_server_at_the_address_is_said_not_to_speak_the_shard_protocol(
        capsys: Capsys, nsm_dir: Path) -> None:
    import threading
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def answer_like_http() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(4096)
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")

    server = threading.Thread(target=answer_like_http, daemon=True)
    server.start()
    try:
        result = send(capsys, f"127.0.0.1:{port}", nsm_dir)
    finally:
        server.join(timeout=10)
        listener.close()
    assert result.code == 1
    said = lines(result)
    assert said[-3] == (f"error: 127.0.0.1:{port} did not speak the shard protocol; is it the "
                        "enclave's locksmithd port (49504)? Nothing was sent")
    assert said[-2] == "  caused by: it answered like an HTTP server"
    assert said[-1].startswith("  caused by: frame body length 1213486160")


@pytest.mark.parametrize("command", [["secret", "send-shard", "--address", "127.0.0.1"],
                                     ["secret", "encrypt"], ["secret", "inspect"]])
def test_a_directory_given_as_bundle_is_said_to_be_a_directory(
        capsys: Capsys, tmp_path: Path, command: list[str]) -> None:
    directory = tmp_path / ".caution"
    directory.mkdir()
    (tmp_path / ".env").write_text("A=1\n")  # encrypt reads the .env first
    args = [*command, str(directory)] if command[-1] == "inspect" else [*command, "--bundle",
                                                                          str(directory)]
    result = caution(capsys, "--workdir", str(tmp_path), *args)
    assert result.code == 1
    assert lines(result)[-1] == (f"error: quorum bundle {directory} is a directory; name the "
                                 f"bundle file (e.g. {directory / 'quorum-bundle.json'})")


def test_pcr3_4_8_can_be_pinned_by_option_or_in_trusted_hashes(
        capsys: Capsys, v0: CheckedBundle, nsm_dir: Path, tmp_path: Path) -> None:
    """PCR0-2 name the image; PCR3/4/8 (role, instance, signer) say whose enclave it is."""
    role, other = "33" * 48, "44" * 48
    nsm = SimulatedNsm.open(nsm_dir, pcr_overrides={3: bytes.fromhex(role)})
    with running(v0, nsm) as server:
        accepted = send(capsys, server.address, nsm_dir, "--pcr3", role)
        assert accepted.code == 0, accepted.err
        wrong = send(capsys, server.address, nsm_dir, "--pcr3", other)
        assert lines(wrong)[-1] == (f"error: Enclave attestation rejected: PCR3 mismatch "
                                    f"(expected {other}, got {role})")
        hashes = json.loads((nsm_dir / "trusted_hashes.json").read_text())
        pinned = tmp_path / "trusted_hashes.json"
        pinned.write_text(json.dumps({**hashes, "pcr3": other, "pcr8": None}))
        from_file = send(capsys, server.address, nsm_dir, hashes=pinned)
        assert lines(from_file)[-1].startswith("error: Enclave attestation rejected: PCR3 mismatch")
        assert server.submissions == 1  # only the first one reached message 3


def test_bad_pcr3_hex_is_a_usage_error(capsys: Capsys, nsm_dir: Path) -> None:
    result = send(capsys, "127.0.0.1", nsm_dir, "--pcr3", "zz")
    assert result.code == 2
    assert "invalid --pcr3 value: expected 96 hex digits (48 bytes)" in result.err
