"""keyfork-frame (protocol.md §2): `u32 L ‖ SHA-256(payload) ‖ payload`, L = 32 + len(payload).

Sans-IO: `FrameDecoder` takes bytes as they arrive and yields complete payloads, so the asyncio
server, the blocking CLI client and keyforkd share one codec. The length is checked from the
4-byte header alone, before any body byte is buffered, so a hostile peer cannot make us hold
more than the limit.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes

HEADER = 4
DIGEST = 32
MIN_LENGTH = DIGEST
MAX_LENGTH = 1 << 20  # 1 MiB: L, i.e. digest + payload


def _sha256(data: bytes) -> bytes:
    # `cryptography`'s SHA-256, which every user of frames has loaded: `hashlib` would also load
    # the system's libcrypto, a cost on locksmith-oneshot's start (issue 11).
    digest = hashes.Hash(hashes.SHA256())
    digest.update(data)
    return digest.finalize()


class FrameError(ValueError):
    """A frame that must close the connection (bad length or checksum)."""


class FrameTooLarge(FrameError):
    pass


def encode(payload: bytes) -> bytes:
    length = DIGEST + len(payload)
    if length > MAX_LENGTH:
        raise FrameTooLarge(f"frame body length {length} is outside 32..=1048576")
    return length.to_bytes(4, "big") + _sha256(payload) + payload


def check_length(length: int, max_payload: int | None = None) -> None:
    """Refuse a frame from its header: outside 32..1 MiB, or over a per-message cap."""
    if not MIN_LENGTH <= length <= MAX_LENGTH:
        raise FrameTooLarge(f"frame body length {length} is outside 32..=1048576")
    if max_payload is not None and length - DIGEST > max_payload:
        raise FrameTooLarge(f"frame payload of {length - DIGEST} bytes exceeds the "
                            f"{max_payload}-byte limit for this message")


class FrameDecoder:
    """Incremental decoder for one direction of a connection.

    `feed(data)` buffers bytes; `next_payload(max_payload)` returns the next complete payload,
    or None when more bytes are needed. It never consumes bytes beyond the frame it returns.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> None:
        self._buffer += data

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def needed(self, max_payload: int | None = None) -> int:
        """How many more bytes complete the next frame (checks the header when present)."""
        if len(self._buffer) < HEADER:
            return HEADER - len(self._buffer)
        length = int.from_bytes(self._buffer[:HEADER], "big")
        check_length(length, max_payload)
        return max(0, HEADER + length - len(self._buffer))

    def next_payload(self, max_payload: int | None = None) -> bytes | None:
        if self.needed(max_payload):
            return None
        length = int.from_bytes(self._buffer[:HEADER], "big")
        end = HEADER + length
        digest = bytes(self._buffer[HEADER:HEADER + DIGEST])
        payload = bytes(self._buffer[HEADER + DIGEST:end])
        del self._buffer[:end]
        if _sha256(payload) != digest:
            raise FrameError("frame checksum mismatch")
        return payload
