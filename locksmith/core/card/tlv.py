"""BER-TLV as ISO 7816-4 §5.2 and the OpenPGP card use it: tags of 1–3 bytes, definite lengths.

Tags are handled as integers of their encoded bytes (`0x7F49`, `0x5F52`, `0xC5`), the way the
card spec writes them. A tag is constructed when bit 0x20 of its first byte is set; `find`
descends only into those.

Padding: ISO 7816-4 §5.2.2.1 allows `00` and `FF` bytes "before, between, or after" data objects
(erased or rewritten objects leave them), and GnuPG's `tlv.c` skips them, so `parse` skips them
too; neither can start a tag. Everything else is strict: a truncated object, an indefinite or
over-long length, or a tag longer than 3 bytes is a `MalformedResponse`.
"""

from __future__ import annotations

from locksmith.core.card.errors import LocalError, MalformedResponse

MAX_DEPTH = 16  # deeper than any OpenPGP card DO (6E > 73 > 7F66 > 02); bounds recursion
_PADDING = (0x00, 0xFF)


def _tag_bytes(tag: int) -> bytes:
    if tag <= 0 or tag > 0xFFFFFF:
        raise LocalError(f"tag {tag:#x} is outside 1..3 bytes")
    raw = tag.to_bytes((tag.bit_length() + 7) // 8, "big")
    first, rest = raw[0], raw[1:]
    valid = first not in _PADDING and (
        (not rest and first & 0x1F != 0x1F)
        or (rest and first & 0x1F == 0x1F
            and all(b & 0x80 for b in rest[:-1]) and not rest[-1] & 0x80))
    if not valid:
        raise LocalError(f"{raw.hex().upper()} is not a valid BER-TLV tag")
    return raw


def _length_bytes(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    for size in (1, 2, 3):
        if length < 1 << (8 * size):
            return bytes([0x80 | size]) + length.to_bytes(size, "big")
    raise LocalError(f"value of {length} bytes is too long for a BER-TLV object")


def encode(tag: int, value: bytes) -> bytes:
    """One object with the shortest length form (`81 xx` from 128, `82 xx xx` from 256)."""
    return _tag_bytes(tag) + _length_bytes(len(value)) + value


def is_constructed(tag: int) -> bool:
    first = tag >> (8 * ((tag.bit_length() - 1) // 8)) if tag else 0
    return bool(first & 0x20)


def _read_tag(data: bytes, at: int) -> tuple[int, int]:
    first = data[at]
    end = at + 1
    if first & 0x1F == 0x1F:
        while True:
            if end >= len(data):
                raise MalformedResponse("truncated BER-TLV tag")
            byte = data[end]
            end += 1
            if not byte & 0x80:
                break
            if end - at >= 3:
                raise MalformedResponse("BER-TLV tag longer than 3 bytes")
    return int.from_bytes(data[at:end], "big"), end


def _read_length(data: bytes, at: int) -> tuple[int, int]:
    if at >= len(data):
        raise MalformedResponse("BER-TLV object without a length")
    first = data[at]
    if first < 0x80:
        return first, at + 1
    size = first & 0x7F
    if not 1 <= size <= 3:
        raise MalformedResponse(f"unsupported BER-TLV length form {first:02X}")
    if at + 1 + size > len(data):
        raise MalformedResponse("truncated BER-TLV length")
    return int.from_bytes(data[at + 1:at + 1 + size], "big"), at + 1 + size


def parse(data: bytes) -> list[tuple[int, bytes]]:
    """The objects at one level, in order; constructed values are returned undecoded."""
    objects: list[tuple[int, bytes]] = []
    at = 0
    while at < len(data):
        if data[at] in _PADDING:
            at += 1
            continue
        tag, at = _read_tag(data, at)
        length, at = _read_length(data, at)
        if at + length > len(data):
            raise MalformedResponse(
                f"BER-TLV object {tag:X} claims {length} bytes, {len(data) - at} remain")
        objects.append((tag, data[at:at + length]))
        at += length
    return objects


def find(data: bytes, tag: int, *, _depth: int = 0) -> bytes | None:
    """The value of the first `tag`, depth-first through constructed objects (as GnuPG does)."""
    if _depth > MAX_DEPTH:
        raise MalformedResponse(f"BER-TLV nested deeper than {MAX_DEPTH} levels")
    for found, value in parse(data):
        if found == tag:
            return value
        if is_constructed(found):
            inner = find(value, tag, _depth=_depth + 1)
            if inner is not None:
                return inner
    return None


def unwrap(data: bytes, tag: int) -> bytes:
    """The content of `data`, whether or not the card included the outer `tag` object.

    Cards differ on whether GET DATA of a constructed DO returns its value or the whole object;
    a response that is exactly one `tag` object is taken as the latter.
    """
    objects = parse(data)
    if len(objects) == 1 and objects[0][0] == tag:
        return objects[0][1]
    return data
