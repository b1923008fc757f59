"""The NSM API codecs, NSM selection, and the simulated NSM (the /dev/nsm client:
tests/test_nsm_device.py)."""

from __future__ import annotations

import json
import re
import stat
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import cbor2
import pytest
from cryptography import x509
from hypothesis import given, settings
from hypothesis import strategies as st

from locksmith.core.attestation import cose, nsm
from locksmith.core.attestation import verify as att
from locksmith.core.attestation.document import PAYLOAD_KEYS
from locksmith.core.attestation.nsm import (
    AttestationRequest,
    AttestationResponse,
    DescribePcrRequest,
    DescribePcrResponse,
    GetRandomRequest,
    GetRandomResponse,
    NsmChoice,
    NsmError,
    NsmUsageError,
    resolve_nsm,
)
from locksmith.core.attestation.nsm_simulated import SimulatedNsm
from locksmith.core.attestation.pcr_policy import PcrPolicy, TrustedHashes

NOW = 1_800_000_000.0


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# --------------------------------------------------------------------------- ioctl and codecs


def test_ioctl_request_number_is_iowr_0x0a_0_of_a_32_byte_message() -> None:
    assert nsm.NSM_IOCTL_REQUEST == 0xC0200A00
    assert nsm.ioc(3, 0x0A, 0, 32) == 0xC0200A00
    assert nsm.ioc(2, 0x41, 7, 8) == 0x80084107  # _IOR('A', 7, u64) as asm-generic computes it


def test_requests_encode_as_the_nsm_api_externally_tagged_enums() -> None:
    assert nsm.encode_request(GetRandomRequest()) == b"\x69GetRandom"
    assert cbor2.loads(nsm.encode_request(DescribePcrRequest(3))) == {"DescribePCR": {"index": 3}}
    assert nsm.encode_request(DescribePcrRequest(3)) == (
        b"\xa1\x6bDescribePCR\xa1\x65index\x03")
    assert cbor2.loads(nsm.encode_request(AttestationRequest(b"u", None, None))) == {
        "Attestation": {"user_data": b"u", "nonce": None, "public_key": None}}


@pytest.mark.parametrize("request_, code", [
    (AttestationRequest(user_data=bytes(513)), "InputTooLarge"),
    (AttestationRequest(nonce=bytes(513)), "InputTooLarge"),
    (AttestationRequest(public_key=bytes(1025)), "InputTooLarge"),
    (DescribePcrRequest(32), "InvalidIndex"),
    (DescribePcrRequest(-1), "InvalidIndex"),
])
def test_request_limits_are_enforced_before_sending(request_: Any, code: str) -> None:
    with pytest.raises(NsmError) as info:
        nsm.encode_request(request_)
    assert info.value.code == code


def test_limits_at_the_boundary_are_accepted() -> None:
    nsm.encode_request(AttestationRequest(bytes(512), bytes(512), bytes(1024)))


REQUESTS = (st.builds(AttestationRequest, st.none() | st.binary(max_size=512),
                      st.none() | st.binary(max_size=512), st.none() | st.binary(max_size=1024))
            | st.builds(DescribePcrRequest, st.integers(0, 31)) | st.just(GetRandomRequest()))
RESPONSES = (st.builds(AttestationResponse, st.binary(max_size=200))
             | st.builds(DescribePcrResponse, st.booleans(), st.binary(max_size=48))
             | st.builds(GetRandomResponse, st.binary(max_size=256)))


@settings(max_examples=200, deadline=None)
@given(REQUESTS)
def test_request_encoding_round_trips(request_: Any) -> None:
    assert nsm.decode_request(nsm.encode_request(request_)) == request_


@settings(max_examples=200, deadline=None)
@given(RESPONSES)
def test_response_encoding_round_trips(response: Any) -> None:
    assert nsm.decode_response(nsm.encode_response(response), type(response)) == response


@pytest.mark.parametrize("code", nsm.ERROR_CODES)
def test_error_response_raises_with_its_code(code: str) -> None:
    with pytest.raises(NsmError) as info:
        nsm.decode_response(cbor2.dumps({"Error": code}), AttestationResponse)
    assert info.value.code == code


@pytest.mark.parametrize("data", [
    b"", b"\xff", cbor2.dumps("GetRandom"), cbor2.dumps({"GetRandom": {"random": 5}}),
    cbor2.dumps({"DescribePCR": {"lock": True, "data": b""}}),  # answers another request
    cbor2.dumps({"Attestation": {"document": b"x"}, "Extra": 1}),
    cbor2.dumps({"Attestation": {"document": b"x"}}) + b"\x00",
])
def test_malformed_or_mismatched_response_is_an_invalid_response(data: bytes) -> None:
    with pytest.raises(NsmError) as info:
        nsm.decode_response(data, GetRandomResponse)
    assert info.value.code == "InvalidResponse"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_request_or_response_bytes_raise_only_nsm_error(data: bytes) -> None:
    for decode in (nsm.decode_request, lambda d: nsm.decode_response(d, AttestationResponse)):
        try:
            decode(data)
        except NsmError:
            pass


# --------------------------------------------------------------------------- selection


@pytest.mark.parametrize("option, nsm_dir, env, expected", [
    (None, None, {}, NsmChoice("device")),
    (None, None, {"LOCKSMITH_NSM": ""}, NsmChoice("device")),
    ("device", "/x", {"LOCKSMITH_NSM": "simulated"}, NsmChoice("device")),
    (None, None, {"LOCKSMITH_NSM": "simulated", "LOCKSMITH_NSM_DIR": "/e"},
     NsmChoice("simulated", Path("/e"))),
    ("simulated", "/o", {"LOCKSMITH_NSM_DIR": "/e"}, NsmChoice("simulated", Path("/o"))),
    ("simulated", "", {"LOCKSMITH_NSM_DIR": "/e"}, NsmChoice("simulated", Path("/e"))),
])
def test_nsm_options_win_over_environment_and_device_is_the_default(
        option: Any, nsm_dir: Any, env: dict[str, str], expected: NsmChoice) -> None:
    assert resolve_nsm(option, nsm_dir, env) == expected


def test_simulated_without_a_directory_is_a_usage_error() -> None:
    with pytest.raises(NsmUsageError, match="^--nsm-dir is required with --nsm simulated$"):
        resolve_nsm("simulated", None, {"LOCKSMITH_NSM_DIR": ""})


def test_unknown_nsm_and_none_outside_keymaker_are_usage_errors() -> None:
    with pytest.raises(NsmUsageError, match="invalid --nsm value 'fake'"):
        resolve_nsm("fake", None, {})
    with pytest.raises(NsmUsageError):
        resolve_nsm("none", None, {})
    choice = resolve_nsm("none", None, {}, allow_none=True)
    assert choice == NsmChoice("none") and choice.warning is None


def test_resolving_does_no_io_and_simulated_carries_its_warning(tmp_path: Path) -> None:
    choice = resolve_nsm("simulated", tmp_path / "later", {})
    assert not (tmp_path / "later").exists()
    assert choice.warning == "using the simulated NSM (development only)"


# --------------------------------------------------------------------------- the simulated NSM


def test_simulated_directory_layout_and_modes(tmp_path: Path) -> None:
    directory = tmp_path / "sim"
    SimulatedNsm.open(directory, clock=Clock())
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    for name in ("root.key", "intermediate.key"):
        assert stat.S_IMODE((directory / name).stat().st_mode) == 0o600
    root = x509.load_pem_x509_certificate((directory / "root.pem").read_bytes())
    assert root.subject.rfc4514_string() == "CN=locksmith simulated NSM root (development only)"
    assert root.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert root.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    assert root.not_valid_after_utc - root.not_valid_before_utc == timedelta(days=365 * 30)
    hashes = TrustedHashes.from_json((directory / "trusted_hashes.json").read_bytes())
    assert all(any(v) for v in hashes.pcrs.values()) and len(set(hashes.pcrs.values())) == 3
    policy = PcrPolicy.from_json((directory / "keymaker-pcr-policy.json").read_bytes())
    assert dict(policy.sets[0].pcrs) == hashes.pcrs and policy.sets[0].expires_at_unix_seconds is None
    assert not [p for p in directory.iterdir() if p.name.endswith(".tmp")]


def test_simulated_directory_is_reused_across_opens(tmp_path: Path) -> None:
    first = SimulatedNsm.open(tmp_path, clock=Clock())
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    second = SimulatedNsm.open(tmp_path, clock=Clock(NOW + 3600))
    assert first.root_certificate == second.root_certificate
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_concurrent_first_use_creates_one_ca(tmp_path: Path) -> None:
    roots: list[x509.Certificate] = []
    threads = [threading.Thread(target=lambda: roots.append(
        SimulatedNsm.open(tmp_path / "shared").root_certificate)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(roots) == 4 and all(root == roots[0] for root in roots)


def test_incomplete_or_foreign_directory_is_refused(tmp_path: Path) -> None:
    SimulatedNsm.open(tmp_path / "a", clock=Clock())
    (tmp_path / "a" / "root.key").unlink()
    with pytest.raises(NsmError, match="root.pem and root.key must both exist"):
        SimulatedNsm.open(tmp_path / "a", clock=Clock())
    SimulatedNsm.open(tmp_path / "b", clock=Clock())
    SimulatedNsm.open(tmp_path / "c", clock=Clock())
    for name in ("intermediate.pem", "intermediate.key"):
        (tmp_path / "b" / name).write_bytes((tmp_path / "c" / name).read_bytes())
    with pytest.raises(NsmError, match="intermediate.pem is not issued by root.pem"):
        SimulatedNsm.open(tmp_path / "b", clock=Clock())


def anchor(directory: Path) -> att.TrustAnchor:
    return att.TrustAnchor.from_pem((directory / "root.pem").read_bytes())


def test_simulated_document_has_exactly_the_nitro_format(tmp_path: Path) -> None:
    sim = SimulatedNsm.open(tmp_path, clock=Clock())
    doc = sim.attest(user_data=b"u" * 32, nonce=b"nonce")
    assert doc[:1] == b"\x84" and cose.decode_sign1(doc).protected == bytes.fromhex("a1013822")
    sign1 = cose.decode_sign1(doc)
    assert sign1.unprotected == {} and not sign1.tagged and sign1.payload[:1] == b"\xbf"
    payload = cbor2.loads(sign1.payload)
    assert list(payload) == list(PAYLOAD_KEYS)
    assert payload["digest"] == "SHA384" and payload["timestamp"] == int(NOW * 1000)
    assert sorted(payload["pcrs"]) == list(range(16))
    assert all(payload["pcrs"][i] == bytes(48) for i in range(3, 16))
    assert payload["public_key"] is None and payload["nonce"] == b"nonce"
    assert payload["cabundle"][0] == anchor(tmp_path).der
    leaf = x509.load_der_x509_certificate(payload["certificate"])
    assert re.fullmatch(r"locksmith-sim-[0-9a-f]{8}", payload["module_id"])
    assert leaf.subject.rfc4514_string() == f"CN={payload['module_id']}"
    assert leaf.not_valid_before_utc.timestamp() == NOW - 60
    assert leaf.not_valid_after_utc.timestamp() == NOW - 60 + 3 * 3600


def test_simulated_document_verifies_only_with_its_root_given_explicitly(tmp_path: Path) -> None:
    sim = SimulatedNsm.open(tmp_path, clock=Clock())
    doc = sim.attest(user_data=b"u" * 32, nonce=b"nonce")
    hashes = TrustedHashes.from_json((tmp_path / "trusted_hashes.json").read_bytes())
    result = att.verify(doc, trust_root=anchor(tmp_path), now_ms=int(NOW * 1000),
                        pcrs=hashes.pcrs, nonce=b"nonce", user_data_length=32)
    assert result.user_data == b"u" * 32 and not result.is_debug
    with pytest.raises(att.CertificateChainError):
        att.verify(doc, now_ms=int(NOW * 1000))


def test_leaf_is_kept_per_process_and_reissued_when_less_than_ten_minutes_remain(
        tmp_path: Path) -> None:
    clock = Clock()
    sim = SimulatedNsm.open(tmp_path, clock=clock)

    def module(doc: bytes) -> str:
        return str(cbor2.loads(cose.decode_sign1(doc).payload)["module_id"])

    first = module(sim.attest())
    clock.now = NOW - 60 + 3 * 3600 - 601
    assert module(sim.attest()) == first
    clock.now += 2
    assert module(sim.attest()) != first
    other = SimulatedNsm.open(tmp_path, clock=Clock())
    assert module(other.attest()) != first


def test_hand_edited_zero_hashes_give_a_debug_document(tmp_path: Path) -> None:
    SimulatedNsm.open(tmp_path, clock=Clock())
    (tmp_path / "trusted_hashes.json").write_text(json.dumps(
        {"pcr0": "00" * 48, "pcr1": "00" * 48, "pcr2": "00" * 48}))
    doc = SimulatedNsm.open(tmp_path, clock=Clock()).attest()
    with pytest.raises(att.DebugEnclaveError):
        att.verify(doc, trust_root=anchor(tmp_path))
    assert att.verify(doc, trust_root=anchor(tmp_path), allow_debug=True).is_debug


def test_pcr_overrides_apply_to_one_instance(tmp_path: Path) -> None:
    sim = SimulatedNsm.open(tmp_path, clock=Clock(), pcr_overrides={1: b"\x07" * 48})
    result = att.verify(sim.attest(), trust_root=anchor(tmp_path))
    assert result.pcrs[1] == b"\x07" * 48
    assert sim.describe_pcr(1) == DescribePcrResponse(True, b"\x07" * 48)
    assert sim.describe_pcr(20) == DescribePcrResponse(False, bytes(48))


def test_simulated_nsm_answers_errors_in_the_nsm_api_format(tmp_path: Path) -> None:
    sim = SimulatedNsm.open(tmp_path, clock=Clock())
    assert cbor2.loads(sim._call(b"\xff")) == {"Error": "InvalidArgument"}
    assert cbor2.loads(sim._call(cbor2.dumps("Reboot"))) == {"Error": "InvalidOperation"}
    oversized = cbor2.dumps({"Attestation": {"user_data": bytes(600)}})
    assert cbor2.loads(sim._call(oversized)) == {"Error": "InputTooLarge"}
    assert cbor2.loads(sim._call(cbor2.dumps({"DescribePCR": {"index": 99}}))) == {
        "Error": "InvalidIndex"}
