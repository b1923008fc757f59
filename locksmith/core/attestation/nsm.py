"""The Nitro Security Module: its CBOR API, the NSM interface and NSM selection.

Layers (attestation.md §6):

* pure CBOR request/response codecs (`encode_*_request`, `decode_request`, `encode_response`,
  `decode_response`) for the three requests this system uses — Attestation, DescribePCR,
  GetRandom — as the aws-nitro-enclaves-nsm-api defines them (externally tagged enums), and
  the driver's request number (`_IOWR(0x0A, 0, struct nsm_message)`), computed;
* `Nsm`, which turns those into method calls over one `_call(request) -> response` exchange;
* `resolve_nsm`, the pure resolution of `--nsm`, `--nsm-dir`, `LOCKSMITH_NSM`,
  `LOCKSMITH_NSM_DIR` shared by every personality that attests (no typer/httpx import).

The simulated NSM (`nsm_simulated.SimulatedNsm`) answers the same CBOR requests in-process. The
device (`/dev/nsm`, whose `_call` is the driver call) is I/O and lives with the programs:
`locksmith.personalities.nsm_device`, which also opens the NSM an `NsmChoice` names.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Union

import cbor2

from locksmith.core.attestation import cose

DEVICE_PATH = "/dev/nsm"
MAX_REQUEST_SIZE = 0x1000
MAX_RESPONSE_SIZE = 0x3000
MAX_USER_DATA = 512
MAX_NONCE = 512
MAX_PUBLIC_KEY = 1024
MAX_PCR_INDEX = 31
ERROR_CODES = ("InvalidArgument", "InvalidIndex", "InvalidResponse", "ReadOnlyIndex",
               "InvalidOperation", "BufferTooSmall", "InputTooLarge", "InternalError")
SIMULATED_WARNING = "using the simulated NSM (development only)"


class NsmError(Exception):
    """The NSM refused or failed a request; `code` is the NSM API error code when there is one."""

    def __init__(self, message: str, code: str | None = None) -> None:
        self.code = code
        super().__init__(message)


class NsmUsageError(ValueError):
    """Bad NSM selection options (a usage error, exit 2, for the personalities)."""


# --------------------------------------------------------------------------- request number


def ioc(direction: int, type_: int, nr: int, size: int) -> int:
    """Linux `_IOC(dir, type, nr, size)` (the asm-generic request-number encoding)."""
    return (direction << 30) | (size << 16) | (type_ << 8) | nr


IOC_WRITE, IOC_READ = 1, 2
NSM_IOCTL_MAGIC = 0x0A
NSM_MESSAGE_SIZE = 32  # struct nsm_message { struct iovec request; struct iovec response; }
NSM_IOCTL_REQUEST = ioc(IOC_READ | IOC_WRITE, NSM_IOCTL_MAGIC, 0, NSM_MESSAGE_SIZE)  # 0xC0200A00


# --------------------------------------------------------------------------- requests


@dataclass(frozen=True)
class AttestationRequest:
    user_data: bytes | None = None
    nonce: bytes | None = None
    public_key: bytes | None = None


@dataclass(frozen=True)
class DescribePcrRequest:
    index: int


@dataclass(frozen=True)
class GetRandomRequest:
    pass


Request = Union[AttestationRequest, DescribePcrRequest, GetRandomRequest]


def encode_request(request: Request) -> bytes:
    """CBOR of one request; raises NsmError("InputTooLarge"/"InvalidIndex") for bad inputs."""
    if isinstance(request, GetRandomRequest):
        return bytes(cbor2.dumps("GetRandom"))
    if isinstance(request, DescribePcrRequest):
        if not 0 <= request.index <= MAX_PCR_INDEX:
            raise NsmError(f"PCR index {request.index} out of range", "InvalidIndex")
        return bytes(cbor2.dumps({"DescribePCR": {"index": request.index}}))
    _check_limits(request)
    return bytes(cbor2.dumps({"Attestation": {
        "user_data": request.user_data, "nonce": request.nonce, "public_key": request.public_key,
    }}))


def _check_limits(request: AttestationRequest) -> None:
    for name, value, limit in (("user_data", request.user_data, MAX_USER_DATA),
                               ("nonce", request.nonce, MAX_NONCE),
                               ("public_key", request.public_key, MAX_PUBLIC_KEY)):
        if value is not None and len(value) > limit:
            raise NsmError(f"{name} is {len(value)} bytes, more than {limit}", "InputTooLarge")


def decode_request(data: bytes) -> Request:
    """Inverse of `encode_request` (for the simulated NSM); NsmError("InvalidArgument"/...)."""
    try:
        value = cose.loads_strict(data)
    except cose.CoseError as exc:
        raise NsmError(f"request is not CBOR: {exc}", "InvalidArgument") from None
    if value == "GetRandom":
        return GetRandomRequest()
    if not isinstance(value, dict) or len(value) != 1:
        raise NsmError("unknown request", "InvalidOperation")
    (name, body), = value.items()
    if name == "DescribePCR" and isinstance(body, dict) and set(body) == {"index"}:
        index = body["index"]
        if type(index) is not int or not 0 <= index <= MAX_PCR_INDEX:
            raise NsmError("bad PCR index", "InvalidIndex")
        return DescribePcrRequest(index)
    if name == "Attestation" and isinstance(body, dict) and set(body) <= {
            "user_data", "nonce", "public_key"}:
        fields = {k: body.get(k) for k in ("user_data", "nonce", "public_key")}
        if any(v is not None and not isinstance(v, bytes) for v in fields.values()):
            raise NsmError("attestation fields must be byte strings or null", "InvalidArgument")
        request = AttestationRequest(**fields)
        _check_limits(request)
        return request
    raise NsmError("unknown request", "InvalidOperation")


# --------------------------------------------------------------------------- responses


@dataclass(frozen=True)
class AttestationResponse:
    document: bytes


@dataclass(frozen=True)
class DescribePcrResponse:
    lock: bool
    data: bytes


@dataclass(frozen=True)
class GetRandomResponse:
    random: bytes


Response = Union[AttestationResponse, DescribePcrResponse, GetRandomResponse]


def encode_response(response: Response | NsmError) -> bytes:
    value: Any
    if isinstance(response, NsmError):
        value = {"Error": response.code if response.code in ERROR_CODES else "InternalError"}
    elif isinstance(response, AttestationResponse):
        value = {"Attestation": {"document": response.document}}
    elif isinstance(response, DescribePcrResponse):
        value = {"DescribePCR": {"lock": response.lock, "data": response.data}}
    else:
        value = {"GetRandom": {"random": response.random}}
    return bytes(cbor2.dumps(value))


def decode_response(data: bytes, expected: type[Response]) -> Response:
    """Decode a response to a request whose answer type is `expected`; `{"Error": code}` and
    anything malformed raise NsmError."""
    try:
        value = cose.loads_strict(data)
    except cose.CoseError as exc:
        raise NsmError(f"NSM response is not CBOR: {exc}", "InvalidResponse") from None
    if not isinstance(value, dict) or len(value) != 1:
        raise NsmError("malformed NSM response", "InvalidResponse")
    (name, body), = value.items()
    if name == "Error":
        code = body if isinstance(body, str) else "InternalError"
        raise NsmError(f"NSM error {code}", code)
    if expected is AttestationResponse and name == "Attestation" and isinstance(body, dict) \
            and isinstance(body.get("document"), bytes):
        return AttestationResponse(body["document"])
    if expected is DescribePcrResponse and name == "DescribePCR" and isinstance(body, dict) \
            and isinstance(body.get("lock"), bool) and isinstance(body.get("data"), bytes):
        return DescribePcrResponse(body["lock"], body["data"])
    if expected is GetRandomResponse and name == "GetRandom" and isinstance(body, dict) \
            and isinstance(body.get("random"), bytes):
        return GetRandomResponse(body["random"])
    raise NsmError(f"unexpected NSM response {name!r}", "InvalidResponse")


# --------------------------------------------------------------------------- clients


class Nsm(ABC):
    """An NSM: three requests over a CBOR exchange. `kind` is "device" or "simulated"."""

    kind: str

    @abstractmethod
    def _call(self, request: bytes) -> bytes:
        """Send one CBOR request and return the CBOR response."""

    def attest(self, *, user_data: bytes | None = None, nonce: bytes | None = None,
               public_key: bytes | None = None) -> bytes:
        """An attestation document (COSE_Sign1 bytes) binding these values."""
        raw = self._call(encode_request(AttestationRequest(user_data, nonce, public_key)))
        response = decode_response(raw, AttestationResponse)
        assert isinstance(response, AttestationResponse)
        return response.document

    def describe_pcr(self, index: int) -> DescribePcrResponse:
        response = decode_response(self._call(encode_request(DescribePcrRequest(index))),
                                   DescribePcrResponse)
        assert isinstance(response, DescribePcrResponse)
        return response

    def get_random(self) -> bytes:
        response = decode_response(self._call(encode_request(GetRandomRequest())),
                                   GetRandomResponse)
        assert isinstance(response, GetRandomResponse)
        return response.random

    def close(self) -> None:
        """Release the device; the default has nothing to release."""


# --------------------------------------------------------------------------- selection


@dataclass(frozen=True)
class NsmChoice:
    """The resolved NSM options; `locksmith.personalities.nsm_device.open_nsm` opens them (the
    device, or the simulated CA directory)."""

    kind: str  # "device", "simulated" or (Keymaker only) "none"
    directory: Path | None = None
    device_path: str = DEVICE_PATH

    @property
    def warning(self) -> str | None:
        """The start-up warning a personality prints (attestation.md §7), if any."""
        return SIMULATED_WARNING if self.kind == "simulated" else None


def resolve_nsm(option: str | None, nsm_dir: str | os.PathLike[str] | None,
                env: Mapping[str, str], *, allow_none: bool = False) -> NsmChoice:
    """`--nsm`/`--nsm-dir` win over `LOCKSMITH_NSM`/`LOCKSMITH_NSM_DIR` (an empty variable counts
    as unset); `device` is the default. Pure: nothing is opened or created here."""
    kind = option or env.get("LOCKSMITH_NSM") or "device"
    allowed = ("device", "simulated", "none") if allow_none else ("device", "simulated")
    if kind not in allowed:
        raise NsmUsageError(f"invalid --nsm value {kind!r} (expected {' or '.join(allowed)})")
    raw_dir = nsm_dir if nsm_dir not in (None, "") else env.get("LOCKSMITH_NSM_DIR") or None
    if kind == "simulated":
        if raw_dir is None:
            raise NsmUsageError("--nsm-dir is required with --nsm simulated")
        return NsmChoice("simulated", Path(raw_dir))
    return NsmChoice(kind)
