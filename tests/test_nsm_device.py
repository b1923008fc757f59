"""The /dev/nsm client (over a fake ioctl) and opening the chosen NSM (personalities/nsm_device)."""

from __future__ import annotations

import ctypes
import errno
import os
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from locksmith.core.attestation import nsm
from locksmith.core.attestation import verify as att
from locksmith.core.attestation.nsm import AttestationRequest, NsmError, resolve_nsm
from locksmith.core.attestation.nsm_simulated import SimulatedNsm
from locksmith.personalities import nsm_device
from locksmith.personalities.nsm_device import DeviceNsm, open_nsm

NOW = 1_800_000_000.0


def test_the_ioctl_message_is_two_iovecs_of_the_size_in_the_ioctl_number() -> None:
    assert ctypes.sizeof(nsm_device._NsmMessage) == nsm.NSM_MESSAGE_SIZE
    assert (nsm.NSM_IOCTL_REQUEST >> 16) & 0x3FFF == nsm.NSM_MESSAGE_SIZE


@pytest.fixture
def fake_device(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, Any]:
    """Replace fcntl.ioctl by a 'driver' that reads the request iovec, answers with the simulated
    NSM and writes the response iovec, as the kernel does."""
    import fcntl

    backend = SimulatedNsm.open(tmp_path / "nsm", clock=lambda: NOW)
    seen: dict[str, Any] = {"calls": [], "errno": None}

    def ioctl(fd: int, request: int, arg: Any, mutate: bool = True) -> int:
        assert request == 0xC0200A00 and mutate
        if seen["errno"] is not None:
            raise OSError(seen["errno"], os.strerror(seen["errno"]))
        message = nsm_device._NsmMessage.from_buffer(arg)
        data = ctypes.string_at(message.request.iov_base, message.request.iov_len)
        seen["calls"].append(data)
        answer = backend._call(data)
        assert len(answer) <= message.response.iov_len == nsm.MAX_RESPONSE_SIZE
        ctypes.memmove(message.response.iov_base, answer, len(answer))
        message.response.iov_len = len(answer)
        return 0

    monkeypatch.setattr(fcntl, "ioctl", ioctl)
    seen["backend"] = backend
    return seen


def test_device_client_speaks_cbor_over_the_nsm_ioctl(fake_device: dict[str, Any]) -> None:
    device = DeviceNsm("/dev/null")
    try:
        document = device.attest(user_data=b"k" * 32, nonce=b"n")
        assert len(device.get_random()) == 256
        assert device.describe_pcr(0).lock
    finally:
        device.close()
    assert fake_device["calls"][0] == nsm.encode_request(AttestationRequest(b"k" * 32, b"n", None))
    assert fake_device["calls"][1] == b"\x69GetRandom"
    root = att.TrustAnchor.from_der(
        fake_device["backend"].root_certificate.public_bytes(Encoding.DER))
    assert att.verify(document, trust_root=root).user_data == b"k" * 32


@pytest.mark.parametrize("code, expected", [(errno.EMSGSIZE, "InputTooLarge"),
                                            (errno.EIO, "InternalError")])
def test_device_errno_is_mapped(fake_device: dict[str, Any], code: int, expected: str) -> None:
    fake_device["errno"] = code
    device = DeviceNsm("/dev/null")
    with pytest.raises(NsmError) as info:
        device.get_random()
    assert info.value.code == expected


def test_missing_device_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(NsmError, match="No such file or directory"):
        DeviceNsm(str(tmp_path / "nsm"))


def test_opening_a_device_choice_opens_its_path(tmp_path: Path) -> None:
    with pytest.raises(NsmError, match=f"^{tmp_path}/nsm: No such file or directory$"):
        open_nsm(nsm.NsmChoice("device", device_path=str(tmp_path / "nsm")))
    device = open_nsm(nsm.NsmChoice("device", device_path="/dev/null"))
    try:
        assert isinstance(device, DeviceNsm) and device.kind == "device"
    finally:
        assert device is not None
        device.close()


def test_none_opens_nothing() -> None:
    assert open_nsm(resolve_nsm("none", None, {}, allow_none=True)) is None


def test_simulated_choice_creates_its_directory_only_when_opened(tmp_path: Path) -> None:
    choice = resolve_nsm("simulated", tmp_path / "later", {})
    assert not (tmp_path / "later").exists()
    assert isinstance(open_nsm(choice), SimulatedNsm) and (tmp_path / "later" / "root.pem").exists()
