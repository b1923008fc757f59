"""OpenPGP packet framing (RFC 4880 §4.2): split a byte stream into (tag, body) packets.

Both header formats and every length encoding are read, partial body lengths included, because
PGPy cannot read a stream of several messages (formats.md §7.3) and the boot path must not
import PGPy at all. Writing always uses new-format headers with definite lengths.
"""

# No `from __future__ import annotations` here: typing.NamedTuple would compile every field's
# annotation string at import, a cost on locksmith-oneshot's start (issue 11).

from typing import Iterator, NamedTuple

from locksmith.core.openpgp.errors import PacketError

# Packet tags used by this project.
PKESK = 1
SIGNATURE = 2
ONE_PASS_SIGNATURE = 4
SECRET_KEY = 5
PUBLIC_KEY = 6
SECRET_SUBKEY = 7
COMPRESSED = 8
SYMMETRIC_NO_MDC = 9
MARKER = 10
LITERAL = 11
TRUST = 12
USER_ID = 13
PUBLIC_SUBKEY = 14
USER_ATTRIBUTE = 17
SEIPD = 18
MDC = 19
AEAD = 20
PADDING = 21


class Packet(NamedTuple):
    # A NamedTuple, not a dataclass: `dataclasses` (with `inspect`) is a large share of the
    # boot path's imports (issue 11), and every class here is an immutable record anyway.
    tag: int
    body: bytes

    def serialize(self) -> bytes:
        return encode_packet(self.tag, self.body)


def encode_length(length: int) -> bytes:
    """New-format definite body length (RFC 4880 §4.2.2)."""
    if length < 0:
        raise ValueError("negative length")
    if length < 192:
        return bytes([length])
    if length < 8384:
        length -= 192
        return bytes([(length >> 8) + 192, length & 0xFF])
    if length <= 0xFFFFFFFF:
        return b"\xff" + length.to_bytes(4, "big")
    raise ValueError("packet too long")


def encode_packet(tag: int, body: bytes) -> bytes:
    if not 0 < tag < 64:
        raise ValueError(f"invalid packet tag {tag}")
    return bytes([0xC0 | tag]) + encode_length(len(body)) + body


def iter_packets(data: bytes) -> Iterator[Packet]:
    """Yield the packets of `data` in order; raise `PacketError` on any framing problem."""
    view = memoryview(data)
    pos = 0
    end = len(view)
    while pos < end:
        first = view[pos]
        pos += 1
        if not first & 0x80:
            raise PacketError("invalid packet header (bit 7 clear)")
        if first & 0x40:
            tag = first & 0x3F
            body, pos = _new_format_body(view, pos)
        else:
            tag = (first >> 2) & 0x0F
            body, pos = _old_format_body(view, pos, first & 0x03)
        if tag == 0:
            raise PacketError("packet with reserved tag 0")
        yield Packet(tag, body)


def parse_packets(data: bytes) -> list[Packet]:
    return list(iter_packets(data))


def _take(view: memoryview, pos: int, n: int) -> tuple[bytes, int]:
    if pos + n > len(view):
        raise PacketError("truncated packet")
    return bytes(view[pos : pos + n]), pos + n


def _old_format_body(view: memoryview, pos: int, length_type: int) -> tuple[bytes, int]:
    if length_type == 3:  # indeterminate: to the end of the data
        return bytes(view[pos:]), len(view)
    size = (1, 2, 4)[length_type]
    raw, pos = _take(view, pos, size)
    return _take(view, pos, int.from_bytes(raw, "big"))


def _new_format_body(view: memoryview, pos: int) -> tuple[bytes, int]:
    chunks: list[bytes] = []
    while True:
        if pos >= len(view):
            raise PacketError("truncated packet length")
        octet = view[pos]
        pos += 1
        if octet < 192:
            length = octet
        elif octet < 224:
            if pos >= len(view):
                raise PacketError("truncated packet length")
            length = ((octet - 192) << 8) + view[pos] + 192
            pos += 1
        elif octet == 255:
            raw, pos = _take(view, pos, 4)
            length = int.from_bytes(raw, "big")
        else:  # partial body length: a chunk of 2**(octet & 0x1f) bytes, more follow
            chunk, pos = _take(view, pos, 1 << (octet & 0x1F))
            chunks.append(chunk)
            continue
        chunk, pos = _take(view, pos, length)
        chunks.append(chunk)
        return b"".join(chunks), pos
