"""ISO 7816-4 command/response APDUs, and the exchange rules every OpenPGP command shares.

`transmit` is the single place bytes meet the card: it chains long commands, follows `61xx`
with GET RESPONSE, repeats a `6Cxx` command with the length the card asked for, and turns any
other non-9000 status into a typed `StatusError`. Every loop is bounded, so a card answering
garbage forever costs at most a few hundred exchanges and ends in a `CardError`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

from locksmith.core.card.errors import LocalError, MalformedResponse, status_error

__all__ = ["SW_OK", "Command", "Response", "Transmit", "status_error", "transmit"]

Transmit = Callable[[bytes], bytes]
"""Raw command APDU in, raw response APDU (data ‖ SW1 SW2) out; supplied by the transport."""

SW_OK = 0x9000
SHORT_MAX_DATA = 255
EXTENDED_MAX_DATA = 65535
MAX_RESPONSE_DATA = 65536  # what one command may collect through GET RESPONSE
MAX_GET_RESPONSE_ROUNDS = 256
INS_GET_RESPONSE = 0xC0
CHAINING_BIT = 0x10


@dataclass(frozen=True)
class Command:
    """A command APDU. `le=None`: no Le field; `le=0`: as much as the card has (256 / 65536).

    `data` is kept out of `repr` because a VERIFY carries the PIN.
    """

    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes = field(default=b"", repr=False)
    le: int | None = None

    def encode(self, *, extended: bool) -> bytes:
        """ISO 7816-4 §5.1 cases 1–4, in the short or the extended length form."""
        for name, value in (("CLA", self.cla), ("INS", self.ins), ("P1", self.p1),
                            ("P2", self.p2)):
            if not 0 <= value <= 0xFF:
                raise LocalError(f"{name} {value} is not a byte")
        header = bytes([self.cla, self.ins, self.p1, self.p2])
        limit = EXTENDED_MAX_DATA if extended else SHORT_MAX_DATA
        if len(self.data) > limit:
            raise LocalError(f"{len(self.data)} bytes of command data do not fit a "
                             f"{'extended' if extended else 'short'} APDU (at most {limit})")
        max_le = 65536 if extended else 256
        if self.le is not None and not 0 <= self.le <= max_le:
            raise LocalError(f"Le {self.le} is outside 0..{max_le}")
        le_size = 2 if extended else 1
        le = b"" if self.le is None else (self.le % max_le).to_bytes(le_size, "big")
        if not extended:
            lc = bytes([len(self.data)]) if self.data else b""
            return header + lc + self.data + le
        if self.data:
            return header + b"\x00" + len(self.data).to_bytes(2, "big") + self.data + le
        return header + (b"\x00" + le if le else b"")


@dataclass(frozen=True)
class Response:
    data: bytes
    sw: int

    @classmethod
    def parse(cls, raw: bytes) -> Response:
        if len(raw) < 2:
            raise MalformedResponse(f"card response of {len(raw)} bytes has no status word")
        return cls(bytes(raw[:-2]), int.from_bytes(raw[-2:], "big"))

    @property
    def sw1(self) -> int:
        return self.sw >> 8

    @property
    def sw2(self) -> int:
        return self.sw & 0xFF

    @property
    def ok(self) -> bool:
        return self.sw == SW_OK


def _exchange(send: Transmit, command: Command, extended: bool) -> Response:
    return Response.parse(send(command.encode(extended=extended)))


def _chunk_limit(extended: bool, max_command_data: int | None) -> int | None:
    if max_command_data is not None and max_command_data < 1:
        raise LocalError(f"max_command_data {max_command_data} must be positive")
    if not extended:
        return min(SHORT_MAX_DATA, max_command_data or SHORT_MAX_DATA)
    return max_command_data


def transmit(send: Transmit, command: Command, *, extended: bool,
             max_command_data: int | None = None) -> bytes:
    """Run `command` to completion and return its response data, or raise a `CardError`.

    Data longer than one APDU takes (255 bytes short, `max_command_data` extended) is sent by
    command chaining (ISO 7816-4 §5.1.1.1): CLA | 0x10 on every part but the last, which alone
    carries Le; each intermediate answer must be 9000.
    """
    limit = _chunk_limit(extended, max_command_data)
    last = command
    if limit is not None and len(command.data) > limit:
        data = command.data
        for start in range(0, len(data) - limit, limit):
            link = Command(command.cla | CHAINING_BIT, command.ins, command.p1, command.p2,
                           data[start:start + limit])
            answer = _exchange(send, link, extended)
            if not answer.ok:
                raise status_error(answer.sw)
        last = replace(command, data=data[(len(data) - 1) // limit * limit:])
    response = _exchange(send, last, extended)
    if response.sw1 == 0x6C:
        response = _exchange(send, replace(last, le=response.sw2 or 256), extended)
    return _collect(send, response)


def _collect(send: Transmit, response: Response) -> bytes:
    """Follow `61xx` with GET RESPONSE until 9000, bounded in rounds and in bytes."""
    collected = bytearray(response.data)
    rounds = 0
    while response.sw1 == 0x61:
        rounds += 1
        if rounds > MAX_GET_RESPONSE_ROUNDS or len(collected) > MAX_RESPONSE_DATA:
            raise MalformedResponse(
                f"the card kept answering 61xx: {len(collected)} bytes after {rounds - 1} "
                f"GET RESPONSE commands")
        get_response = Command(0x00, INS_GET_RESPONSE, 0x00, 0x00, le=response.sw2 or 256)
        response = _exchange(send, get_response, False)
        collected += response.data
    if not response.ok:
        raise status_error(response.sw)
    return bytes(collected)
