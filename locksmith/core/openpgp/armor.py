"""ASCII armor (RFC 4880 §6) as Caution writes and reads it (formats.md §7.1, §11).

Writing is byte-exact with the reference: no armor headers, 64-column base64, a CRC-24 line,
`\n` line ends and a final newline. Reading is lenient where the RFC allows (headers, `\r\n`,
whitespace, a missing CRC) but strict where a mistake would hide corruption (a CRC that does not
match, stray text inside a block).
"""

# No `from __future__ import annotations` here: typing.NamedTuple would compile every field's
# annotation string at import, a cost on locksmith-oneshot's start (issue 11).

import base64
import binascii
import re
from typing import NamedTuple

from locksmith.core.openpgp.crc24 import crc24
from locksmith.core.openpgp.errors import ArmorError

_BEGIN = re.compile(r"^-----BEGIN PGP ([A-Z0-9 ,/]+)-----[ \t]*$")
_END = "-----END PGP {}-----"
_HEADER = re.compile(r"^[A-Za-z0-9-]+: ")


class ArmorBlock(NamedTuple):
    kind: str  # e.g. "MESSAGE", "PUBLIC KEY BLOCK", "PRIVATE KEY BLOCK", "SIGNATURE"
    data: bytes


def armor(kind: str, data: bytes) -> str:
    """Armor `data` as `-----BEGIN PGP <kind>-----` with no headers (formats.md §7.1)."""
    b64 = base64.b64encode(data).decode("ascii")
    lines = [f"-----BEGIN PGP {kind}-----", ""]
    lines += [b64[i : i + 64] for i in range(0, len(b64), 64)]
    lines.append("=" + base64.b64encode(crc24(data).to_bytes(3, "big")).decode("ascii"))
    lines.append(_END.format(kind))
    return "\n".join(lines) + "\n"


def is_armored(data: bytes | str) -> bool:
    probe = data if isinstance(data, str) else data[:4096].decode("latin-1")
    return "-----BEGIN PGP " in probe


def dearmor_all(text: str | bytes) -> list[ArmorBlock]:
    """Every armor block in `text`, in order; text outside blocks is ignored."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ArmorError("armored data is not valid UTF-8") from exc
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    blocks: list[ArmorBlock] = []
    i = 0
    while i < len(lines):
        match = _BEGIN.match(lines[i].strip())
        if match is None:
            i += 1
            continue
        block, i = _read_block(match.group(1), lines, i + 1)
        blocks.append(block)
    return blocks


def dearmor_one(text: str | bytes, kind: str | None = None) -> bytes:
    """The content of the single armor block in `text` (optionally of the given kind)."""
    blocks = dearmor_all(text)
    if len(blocks) != 1:
        raise ArmorError(f"expected exactly one armor block, found {len(blocks)}")
    if kind is not None and blocks[0].kind != kind:
        raise ArmorError(f"expected an armored PGP {kind}, found PGP {blocks[0].kind}")
    return blocks[0].data


def _read_block(kind: str, lines: list[str], i: int) -> tuple[ArmorBlock, int]:
    end = _END.format(kind)
    # Armor headers: "Key: value" lines up to the first blank line; all ignored.
    start = i
    while i < len(lines) and _HEADER.match(lines[i]):
        i += 1
    if i < len(lines) and lines[i].strip() == "":
        i += 1
    elif i != start:
        raise ArmorError("armor headers must be followed by an empty line")
    body: list[str] = []
    checksum: str | None = None
    while True:
        if i >= len(lines):
            raise ArmorError(f"armor block PGP {kind} has no END line")
        line = lines[i].strip()
        i += 1
        if line == end:
            break
        if checksum is not None:
            if line:
                raise ArmorError("unexpected text after the armor checksum")
            continue
        if line.startswith("=") and len(line) == 5:
            checksum = line[1:]
            continue
        body.append(line)
    b64 = "".join("".join(body).split())
    try:
        data = base64.b64decode(b64 + "=" * (-len(b64) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ArmorError("invalid base64 in armor block") from exc
    if checksum is not None:
        try:
            expected = int.from_bytes(base64.b64decode(checksum, validate=True), "big")
        except (binascii.Error, ValueError) as exc:
            raise ArmorError("invalid armor checksum line") from exc
        if expected != crc24(data):
            raise ArmorError("armor checksum mismatch")
    return ArmorBlock(kind, data), i


def openpgp_binary(data: bytes) -> list[bytes]:
    """Binary OpenPGP content of a file that is armored (any number of blocks) or binary."""
    if is_armored(data):
        return [block.data for block in dearmor_all(data)]
    return [bytes(data)]
