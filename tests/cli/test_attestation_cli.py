"""`caution attestation verify | simulate` (cli.md §7.2)."""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from locksmith.__main__ import run
from locksmith.personalities.caution.attestation import UNDECODABLE, decode_document_file
from tests.conftest import NITRO, REPO
from tests.core.attestation_factory import nitro_fixture

GOOD = NITRO / "debug-2024-09-09.b64"
BAD_SIGNATURE = NITRO / "bad-signature-2024-07-23.b64"
JSON_KEYS = ["ok", "reason", "module_id", "timestamp", "digest", "pcrs", "user_data", "nonce",
             "public_key"]
NONCE_HEX = "00" * 19 + "01"


def caution(*args: str | Path) -> int:
    return run(["caution", *[str(a) for a in args]])


def verify(capsys: pytest.CaptureFixture[str], *args: Any) -> tuple[int, str, str]:
    code = caution("attestation", "verify", *args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def good_17(tmp_path: Path) -> Path:
    """The published debug-2024-09-17.b64 has trailing Rust text after the base64 (see
    attestation_factory.nitro_fixture); this is the document alone, as raw CBOR."""
    path = tmp_path / "debug-2024-09-17.cbor"
    path.write_bytes(nitro_fixture("debug-2024-09-17.b64"))
    return path


@pytest.fixture
def sim(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Path, Path]:
    """(nsm dir, simulated document path) made with `caution attestation simulate`."""
    directory = tmp_path / "nsm"
    stdout = io.TextIOWrapper(io.BytesIO())
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "stdout", stdout)
        assert caution("attestation", "simulate", "--nsm-dir", directory, "--nonce", "abcd",
                       "--user-data", "11" * 32) == 0
    assert capsys.readouterr().err.startswith(
        "warning: using the simulated NSM (development only)\n")
    doc = tmp_path / "sim.cbor"
    assert isinstance(stdout.buffer, io.BytesIO)
    doc.write_bytes(stdout.buffer.getvalue())
    return directory, doc


# --------------------------------------------------------------------------- real documents


@pytest.mark.parametrize("which", ["09-09", "09-17"])
def test_real_documents_verify_at_their_own_timestamp_with_allow_debug(
        capsys: pytest.CaptureFixture[str], good_17: Path, which: str) -> None:
    doc = GOOD if which == "09-09" else good_17
    code, out, err = verify(capsys, doc, "--allow-debug-enclave", "--nonce", NONCE_HEX)
    assert code == 0 and out == ""
    assert "Attestation verified (module i-0bbf1bfe232b8c2ce-enc01" in err
    assert "warning: accepted a debug-mode enclave" in err
    assert "PCR3:" in err and "(the document's timestamp)" in err


def test_bad_signature_document_is_refused_with_the_signature_reason(
        capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = verify(capsys, BAD_SIGNATURE, "--allow-debug-enclave")
    assert (code, out) == (1, "")
    assert err.endswith("error: attestation signature is invalid\n")


def test_debug_document_is_refused_without_allow_debug_enclave(
        capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = verify(capsys, GOOD)
    assert code == 1
    assert err == ("error: debug-mode enclave (all-zero PCRs) refused; "
                   "pass --allow-debug-enclave for development\n")


@pytest.mark.parametrize("doc", [GOOD, BAD_SIGNATURE])
def test_real_document_verified_now_is_refused_as_no_longer_valid(
        capsys: pytest.CaptureFixture[str], doc: Path) -> None:
    code, _, err = verify(capsys, doc, "--allow-debug-enclave", "--now")
    assert code == 1 and "is not valid at" in err


def test_at_after_the_leaf_expiry_is_refused_and_within_it_accepted(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert verify(capsys, GOOD, "--allow-debug-enclave", "--at", "1725922152")[0] == 0
    code, _, err = verify(capsys, GOOD, "--allow-debug-enclave", "--at", "1725922153")
    assert code == 1 and "is not valid at 2024-09-09T22:49:13.000Z" in err


def test_different_expected_pcr_is_refused_with_the_pcr_reason(
        capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = verify(capsys, GOOD, "--allow-debug-enclave", "--pcr0", "00" * 48,
                          "--pcr1", "00" * 48, "--pcr2", "01" * 48)
    assert code == 1
    assert err.strip() == f"error: PCR2 mismatch (expected {'01' * 48}, got {'00' * 48})"


def test_real_document_is_refused_against_a_different_root(
        capsys: pytest.CaptureFixture[str], sim: tuple[Path, Path]) -> None:
    code, _, err = verify(capsys, GOOD, "--allow-debug-enclave", "--trust-root",
                          sim[0] / "root.pem")
    assert code == 1
    assert err.startswith("warning: trusting a development root (locksmith simulated NSM root "
                          "(development only), sha256 ")
    assert err.endswith("error: certificate chain does not lead to the trusted root\n")


def test_flipped_payload_byte_and_altered_signature_are_refused(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    raw = bytearray(nitro_fixture("debug-2024-09-09.b64"))
    raw[200] ^= 0x01
    (tmp_path / "flipped.cbor").write_bytes(raw)
    assert verify(capsys, tmp_path / "flipped.cbor", "--allow-debug-enclave")[0] == 1
    raw = bytearray(nitro_fixture("debug-2024-09-09.b64"))
    raw[-5] ^= 0x80
    (tmp_path / "sig.cbor").write_bytes(raw)
    code, _, err = verify(capsys, tmp_path / "sig.cbor", "--allow-debug-enclave")
    assert code == 1 and err.endswith("error: attestation signature is invalid\n")


def test_wrong_nonce_or_user_data_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = verify(capsys, GOOD, "--allow-debug-enclave", "--nonce", "00" * 20)
    assert code == 1 and err.endswith("error: nonce did not match\n")
    code, _, err = verify(capsys, GOOD, "--allow-debug-enclave", "--user-data", "00")
    assert code == 1 and err.endswith("error: user_data did not match\n")


# --------------------------------------------------------------------------- --json


def test_json_output_has_the_documented_keys_and_types(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = verify(capsys, GOOD, "--allow-debug-enclave", "--json")
    assert code == 0 and out.endswith("}\n") and out.count("\n") == 1
    obj = json.loads(out)
    assert list(obj) == JSON_KEYS
    assert obj["ok"] is True and obj["reason"] is None
    assert obj["module_id"] == "i-0bbf1bfe232b8c2ce-enc0191ba35c9d1b77a"
    assert obj["timestamp"] == 1725911352400 and obj["digest"] == "SHA384"
    assert list(obj["pcrs"]) == [str(i) for i in range(16)]
    assert obj["pcrs"]["0"] == "00" * 48 and obj["pcrs"]["3"].startswith("671ca1e328f75015")
    assert obj["nonce"] == NONCE_HEX and obj["public_key"] == b"dummy".hex()
    assert len(bytes.fromhex(obj["user_data"])) == 68


def test_json_failure_has_the_same_keys_with_the_reason(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = verify(capsys, BAD_SIGNATURE, "--allow-debug-enclave", "--json")
    assert code == 1
    obj = json.loads(out)
    assert list(obj) == JSON_KEYS
    assert obj == {"ok": False, "reason": "attestation signature is invalid",
                   **{k: None for k in JSON_KEYS[2:]}}
    assert err.endswith("error: attestation signature is invalid\n")
    code, out, _ = verify(capsys, GOOD, "--json")
    assert json.loads(out)["reason"] == "debug-mode enclave (all-zero PCRs) refused"


def test_usage_errors_exit_2_without_json(capsys: pytest.CaptureFixture[str]) -> None:
    for args in (["--at", "1", "--now"], ["--pcr0", "00" * 48],
                 ["--pcr0", "00" * 48, "--pcr1", "00" * 48, "--pcr2", "0"],
                 ["--trusted-hashes", "x", "--pcr-policy", "y"], ["--nonce", "abc"],
                 ["--at", "-1"], ["--bogus"]):
        code, out, err = verify(capsys, GOOD, "--json", *args)
        assert (code, out) == (2, ""), args
        assert err


# --------------------------------------------------------------------------- document encodings


def test_document_may_be_raw_cbor_hex_or_base64_and_stdin(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = nitro_fixture("debug-2024-09-09.b64")
    b64 = base64.b64encode(raw).decode()
    variants = {"raw.cbor": raw, "upper.hex": raw.hex().upper().encode(),
                "wrapped.hex": "\n".join(raw.hex()[i:i + 64] for i in range(0, 2 * len(raw), 64))
                .encode(),
                "unpadded.b64": b64.rstrip("=").encode(),
                "wrapped.b64": ("\r\n".join(b64[i:i + 76] for i in range(0, len(b64), 76))
                                + "\n").encode()}
    for name, content in variants.items():
        (tmp_path / name).write_bytes(content)
        assert verify(capsys, tmp_path / name, "--allow-debug-enclave")[0] == 0, name

    class Stdin:
        buffer = io.BytesIO(raw.hex().encode())

    monkeypatch.setattr(sys, "stdin", Stdin)
    assert verify(capsys, "-", "--allow-debug-enclave")[0] == 0


@pytest.mark.parametrize("content", [b"", b" \n", b"abc", b"!!!!", b"QUJD=Q==", b"A"])
def test_undecodable_document_file_is_refused(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, content: bytes) -> None:
    (tmp_path / "doc").write_bytes(content)
    code, _, err = verify(capsys, tmp_path / "doc")
    assert code == 1 and err == f"error: {UNDECODABLE}\n"


def test_published_17_file_with_trailing_text_is_not_a_valid_doc_encoding() -> None:
    with pytest.raises(ValueError, match="could not decode"):
        decode_document_file((NITRO / "debug-2024-09-17.b64").read_bytes())


def test_missing_document_file_is_a_runtime_error(capsys: pytest.CaptureFixture[str],
                                                  tmp_path: Path) -> None:
    code, _, err = verify(capsys, tmp_path / "absent")
    assert code == 1 and "error: cannot read attestation document" in err
    assert "caused by: No such file or directory" in err


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=1, max_size=300), st.sampled_from(["hex", "HEX", "b64", "b64-"]))
def test_hex_and_base64_encodings_decode_back(data: bytes, how: str) -> None:
    if data[:1] in (b"\x84", b"\xd2"):
        assert decode_document_file(data) == data
    encoded = {"hex": data.hex(), "HEX": data.hex().upper(),
               "b64": base64.b64encode(data).decode(),
               "b64-": base64.b64encode(data).decode().rstrip("=")}[how]
    if how.startswith("b64") and all(c in "0123456789abcdefABCDEF" for c in encoded):
        return  # all-hex base64 text is read as hex, as cli.md §7.2 says
    assert decode_document_file(encoded.encode()) == data


# --------------------------------------------------------------------------- simulate + sources


def test_simulated_document_verifies_with_trust_root_and_is_refused_without(
        capsys: pytest.CaptureFixture[str], sim: tuple[Path, Path]) -> None:
    directory, doc = sim
    code, _, err = verify(capsys, doc)
    assert code == 1 and err.endswith("error: certificate chain does not lead to the trusted root\n")
    code, out, err = verify(capsys, doc, "--trust-root", directory / "root.pem", "--now",
                            "--trusted-hashes", directory / "trusted_hashes.json",
                            "--nonce", "abcd", "--user-data", "11" * 32, "--json")
    assert code == 0, err
    obj = json.loads(out)
    assert obj["ok"] and obj["nonce"] == "abcd" and obj["user_data"] == "11" * 32
    assert obj["module_id"].startswith("locksmith-sim-") and obj["public_key"] is None


def test_pcr_policy_of_the_simulated_directory_matches_and_a_foreign_policy_does_not(
        capsys: pytest.CaptureFixture[str], sim: tuple[Path, Path], tmp_path: Path) -> None:
    directory, doc = sim
    root = directory / "root.pem"
    code, _, err = verify(capsys, doc, "--trust-root", root, "--pcr-policy",
                          directory / "keymaker-pcr-policy.json")
    assert code == 0 and "PCR set 0 of " in err
    other = {"sets": [{"pcrs": {"0": "01" * 48, "1": "01" * 48, "2": "01" * 48}}]}
    (tmp_path / "other.json").write_text(json.dumps(other))
    code, _, err = verify(capsys, doc, "--trust-root", root, "--pcr-policy", tmp_path / "other.json")
    assert code == 1
    assert "error: no PCR set of the policy matched (1 attempts): set 0: PCR0 mismatch" in err


def test_invalid_policy_and_trusted_hashes_files_use_the_spec_texts(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "policy.json").write_text('{"sets": [], "x": 1}')
    code, _, err = verify(capsys, GOOD, "--pcr-policy", tmp_path / "policy.json")
    assert code == 1 and err == ("error: could not parse Keymaker PCR policy JSON\n"
                                 "  caused by: policy: unknown member 'x'\n")
    (tmp_path / "hashes.json").write_text('{"pcr0": "00", "pcr1": "00", "pcr2": "00"}')
    code, _, err = verify(capsys, GOOD, "--trusted-hashes", tmp_path / "hashes.json")
    assert code == 1 and err == "error: invalid pcr0 hex\n"


def test_simulate_applies_pcr_overrides_and_needs_a_directory(
        capsysbinary: pytest.CaptureFixture[bytes], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOCKSMITH_NSM_DIR", raising=False)
    assert caution("attestation", "simulate") == 2
    assert b"--nsm-dir" in capsysbinary.readouterr().err
    monkeypatch.setenv("LOCKSMITH_NSM_DIR", str(tmp_path / "env"))
    assert caution("attestation", "simulate", "--pcr1", "ab" * 48) == 0
    doc = capsysbinary.readouterr().out
    from locksmith.core.attestation import verify as att
    anchor = att.TrustAnchor.from_pem((tmp_path / "env" / "root.pem").read_bytes())
    assert att.verify(doc, trust_root=anchor).pcrs[1] == bytes.fromhex("ab" * 48)
    assert caution("attestation", "simulate", "--user-data", "00" * 513) == 1
    assert b"error: cannot use the simulated NSM: user_data is 513 bytes" in (
        capsysbinary.readouterr().err)


def test_simulate_then_verify_in_subprocesses(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with open(tmp_path / "doc.cbor", "wb") as out:
        done = subprocess.run([sys.executable, "-m", "locksmith", "caution", "attestation",
                               "simulate", "--nsm-dir", str(tmp_path / "nsm"), "--nonce", "beef"],
                              stdout=out, stderr=subprocess.PIPE, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    verified = subprocess.run(
        [sys.executable, "-m", "locksmith", "caution", "attestation", "verify",
         str(tmp_path / "doc.cbor"), "--trust-root", str(tmp_path / "nsm" / "root.pem"),
         "--nonce", "beef", "--json"], capture_output=True, text=True, env=env, timeout=60)
    assert verified.returncode == 0, verified.stderr
    assert json.loads(verified.stdout)["nonce"] == "beef"
    assert "warning: trusting a development root" in verified.stderr
