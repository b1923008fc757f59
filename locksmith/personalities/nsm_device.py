"""The Nitro NSM driver at `/dev/nsm`, and opening the NSM a personality chose.

`DeviceNsm` is the one piece of NSM code that touches a device: its `_call` hands the CBOR
request to the driver's ioctl (`nsm.NSM_IOCTL_REQUEST`, `_IOWR(0x0A, 0, struct nsm_message)`)
and reads the response back. The CBOR API, the `Nsm` interface and the resolution of the NSM
options stay pure in `locksmith.core.attestation.nsm`; `open_nsm` turns a resolved `NsmChoice`
into an open NSM for Keymaker and locksmithd.
"""

from __future__ import annotations

import ctypes
import errno
import os
import time
from typing import Callable

from locksmith.core.attestation.nsm import (
    DEVICE_PATH,
    MAX_REQUEST_SIZE,
    MAX_RESPONSE_SIZE,
    NSM_IOCTL_REQUEST,
    Nsm,
    NsmChoice,
    NsmError,
)

__all__ = ["DeviceNsm", "open_nsm"]


class _IoVec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


class _NsmMessage(ctypes.Structure):
    _fields_ = [("request", _IoVec), ("response", _IoVec)]


class DeviceNsm(Nsm):
    """The Nitro NSM driver at `/dev/nsm` (only inside a Nitro enclave)."""

    kind = "device"

    def __init__(self, path: str = DEVICE_PATH) -> None:
        try:
            self._fd: int | None = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except OSError as exc:
            raise NsmError(f"{path}: {exc.strerror or exc}") from None
        self.path = path

    def _call(self, request: bytes) -> bytes:
        import fcntl

        if self._fd is None:
            raise NsmError("the NSM device is closed")
        if len(request) > MAX_REQUEST_SIZE:
            raise NsmError("NSM request too large", "InputTooLarge")
        request_buf = ctypes.create_string_buffer(request, len(request))
        response_buf = ctypes.create_string_buffer(MAX_RESPONSE_SIZE)
        message = _NsmMessage(_IoVec(ctypes.addressof(request_buf), len(request)),
                              _IoVec(ctypes.addressof(response_buf), MAX_RESPONSE_SIZE))
        try:
            fcntl.ioctl(self._fd, NSM_IOCTL_REQUEST, message, True)
        except OSError as exc:
            if exc.errno == errno.EMSGSIZE:
                raise NsmError("NSM input too large", "InputTooLarge") from None
            raise NsmError(f"NSM internal error: {exc.strerror or exc}", "InternalError") from None
        length = min(int(message.response.iov_len), MAX_RESPONSE_SIZE)
        return response_buf.raw[:length]

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def open_nsm(choice: NsmChoice, *, clock: Callable[[], float] = time.time) -> Nsm | None:
    """Open the NSM `choice` names; None for "none". Raises NsmError with a one-line reason."""
    if choice.kind == "none":
        return None
    if choice.kind == "device":
        return DeviceNsm(choice.device_path)
    from locksmith.core.attestation.nsm_simulated import SimulatedNsm

    assert choice.directory is not None
    return SimulatedNsm.open(choice.directory, clock=clock)
