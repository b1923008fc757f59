"""keyforkd's IPC (enclave.md §4.3) and the one socket-path resolution order (enclave.md §3).

Both ends ship in this zipapp, so the wire format is this project's own: a CBOR map inside a
keyfork-frame. The CBOR here is a deliberately tiny, strict subset written by hand rather than
`cbor2`: a request must be a *definite* map with exactly two text keys, and a generic decoder
would silently merge duplicate keys, accept tags, indefinite lengths and trailing bytes. It also
keeps cbor2 off locksmith-oneshot's import path. Encoding follows cbor2's canonical order
(shorter key first), so `encode_request` matches `cbor2.dumps(..., canonical=True)` exactly.

Pure: no sockets, no clock, no environment access (the environment is passed in).

Public API:
  * server side: `answer(payload, master) -> Reply` (never raises for bad input),
    `parse_request(payload) -> Request`, `parse_path(text) -> tuple[int, ...]`,
    `encode_success(node)`, `encode_error(text)`
  * client side: `encode_request(path, algorithm="ed25519")`, `decode_response(payload)
    -> slip10.ExtendedKey` raising `KeyforkdRefused` (error map) or `MalformedResponse`
  * `resolve_socket_location(option, env) -> SocketLocation`, `resolve_socket_path(option, env)`
  * `IpcError` (its message is the exact `error` text of the table)
"""

# No `from __future__ import annotations` here: typing.NamedTuple would compile every field's
# annotation string at import, a cost on locksmith-oneshot's start (issue 11).

import re
from collections.abc import Mapping
from typing import NamedTuple

from locksmith.core.keyfork import slip10

__all__ = [
    "ACCOUNT_PATH", "ALGORITHM", "DEFAULT_SOCKET", "MAX_PAYLOAD", "IpcError", "KeyforkdRefused",
    "MalformedResponse", "Reply", "Request", "SocketLocation", "answer", "decode_response",
    "encode_error", "encode_request", "encode_success", "label", "parse_path", "parse_request",
    "resolve_socket_location", "resolve_socket_path",
]

ACCOUNT_PATH = "m/7366512'/0'"
ALGORITHM = "ed25519"
MAX_PAYLOAD = 64 * 1024  # per frame, both directions
MAX_COMPONENTS = 255
DEFAULT_SOCKET = "/keyforkd.sock"
_LABELS = {ACCOUNT_PATH: "OpenPGP quorum key"}

MALFORMED_REQUEST = "malformed request"
INVALID_PATH = "invalid derivation path"
NOT_HARDENED = "ed25519 derivation requires hardened indices"
TOO_DEEP = "derivation path is too deep"

_PATH = r"m(/[0-9]+'?)*"  # compiled on first use: the server's, not locksmith-oneshot's
_UINT, _BYTES, _TEXT, _MAP = 0, 2, 3, 5


class IpcError(ValueError):
    """A refused request; `str(exc)` is the `error` text sent back (enclave.md §4.3 table)."""


class KeyforkdRefused(Exception):
    """The server answered with an error map; the message is its `error` text."""


class MalformedResponse(ValueError):
    """The response is neither a well-formed success map nor an error map."""


# NamedTuples rather than dataclasses, as slip10.ExtendedKey (issue 11: import cost).
class Request(NamedTuple):
    path: str
    algorithm: str


class Reply(NamedTuple):
    """What the server sends (`payload`), whether it then closes, and one log line (no keys).
    `quorum` is true when the reply hands out the quorum account or a node below it."""

    payload: bytes
    close: bool
    log: str
    quorum: bool = False

    def __repr__(self) -> str:  # the payload may be key material
        return f"Reply(close={self.close!r}, log={self.log!r}, quorum={self.quorum!r})"


# --- minimal strict CBOR -------------------------------------------------------------------


class _Malformed(ValueError):
    pass


def _head(major: int, value: int) -> bytes:
    if value < 24:
        return bytes([major << 5 | value])
    for info, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if value < 1 << (8 * size):
            return bytes([major << 5 | info]) + value.to_bytes(size, "big")
    raise ValueError("CBOR integer out of range")


def _item(value: int | bytes | str) -> bytes:
    if isinstance(value, bool):
        raise TypeError("booleans are not part of this encoding")
    if isinstance(value, int):
        return _head(_UINT, value)
    if isinstance(value, bytes):
        return _head(_BYTES, len(value)) + value
    raw = value.encode("utf-8")
    return _head(_TEXT, len(raw)) + raw


def _encode_map(entries: Mapping[str, int | bytes | str]) -> bytes:
    """Definite map, keys in canonical (length-first, then bytewise) order like cbor2."""
    items = sorted(((_item(k), _item(v)) for k, v in entries.items()),
                   key=lambda kv: (len(kv[0]), kv[0]))
    return _head(_MAP, len(items)) + b"".join(k + v for k, v in items)


def _read_head(data: bytes, pos: int) -> tuple[int, int, int]:
    if pos >= len(data):
        raise _Malformed("truncated")
    major, info = data[pos] >> 5, data[pos] & 0x1F
    pos += 1
    if info < 24:
        return major, info, pos
    if info > 27:  # indefinite lengths (31) and reserved values are not accepted
        raise _Malformed("unsupported length encoding")
    size = 1 << (info - 24)
    if pos + size > len(data):
        raise _Malformed("truncated")
    return major, int.from_bytes(data[pos:pos + size], "big"), pos + size


def _read_scalar(data: bytes, pos: int) -> tuple[int | bytes | str, int]:
    major, value, pos = _read_head(data, pos)
    if major == _UINT:
        return value, pos
    if major not in (_BYTES, _TEXT):
        raise _Malformed("unsupported item")
    if value > len(data) - pos:
        raise _Malformed("truncated")
    raw = data[pos:pos + value]
    if major == _BYTES:
        return bytes(raw), pos + value
    try:
        return raw.decode("utf-8"), pos + value
    except UnicodeDecodeError as exc:
        raise _Malformed("invalid UTF-8") from exc


def _decode_map(data: bytes) -> dict[str, int | bytes | str]:
    """A definite map of text keys to uint/bytes/text values, no duplicates, nothing after."""
    major, count, pos = _read_head(data, 0)
    if major != _MAP or count > len(data):
        raise _Malformed("not a map")
    out: dict[str, int | bytes | str] = {}
    for _ in range(count):
        key, pos = _read_scalar(data, pos)
        if not isinstance(key, str) or key in out:
            raise _Malformed("bad or duplicate key")
        out[key], pos = _read_scalar(data, pos)
    if pos != len(data):
        raise _Malformed("trailing bytes")
    return out


# --- requests (server side) ----------------------------------------------------------------


def encode_request(path: str, algorithm: str = ALGORITHM) -> bytes:
    return _encode_map({"path": path, "algorithm": algorithm})


def parse_request(payload: bytes) -> Request:
    try:
        entries = _decode_map(payload)
    except _Malformed:
        raise IpcError(MALFORMED_REQUEST) from None
    path, algorithm = entries.get("path"), entries.get("algorithm")
    if set(entries) != {"path", "algorithm"} or not isinstance(path, str) \
            or not isinstance(algorithm, str):
        raise IpcError(MALFORMED_REQUEST)
    return Request(path=path, algorithm=algorithm)


def parse_path(text: str) -> tuple[int, ...]:
    """Full hardened indices of `text`, checked in the spec's order: syntax, hardened, 2..255."""
    if re.fullmatch(_PATH, text) is None:
        raise IpcError(INVALID_PATH)
    components = text.split("/")[1:]
    indices = []
    for component in components:
        digits = component.rstrip("'")
        # Ten digits already exceed 2^31 - 1 only sometimes; eleven always do. The length cut
        # also keeps int() away from Python's limit on huge digit strings.
        if (len(digits) > 1 and digits[0] == "0") or len(digits) > 10 \
                or int(digits) >= slip10.HARDENED:
            raise IpcError(INVALID_PATH)
        indices.append(int(digits) | slip10.HARDENED)
    if not all(component.endswith("'") for component in components):
        raise IpcError(NOT_HARDENED)
    if len(components) < 2:
        raise IpcError(f"derivation path needs at least 2 components, got {len(components)}")
    if len(components) > MAX_COMPONENTS:
        raise IpcError(TOO_DEEP)
    return tuple(indices)


def label(path: str) -> str:
    """A human label for well-known paths (`OpenPGP quorum key`), else empty."""
    return _LABELS.get(path, "")


def encode_success(node: slip10.ExtendedKey) -> bytes:
    return _encode_map({"private_key": node.private_key, "chain_code": node.chain_code,
                        "depth": node.depth})


def encode_error(text: str) -> bytes:
    return _encode_map({"error": text})


def _printable(text: str, limit: int = 120) -> str:
    """Request text for a log line: control characters escaped, long input cut."""
    shown = text[:limit].encode("unicode_escape").decode("ascii")
    return shown + ("..." if len(text) > limit else "")


QUORUM_ALREADY_SERVED = ("the quorum key was already served; keyforkd serves it once, to "
                         "locksmith-oneshot")
_QUORUM_ACCOUNT = (7366512 | slip10.HARDENED, 0 | slip10.HARDENED)  # ACCOUNT_PATH, parsed


def is_quorum_path(indices: tuple[int, ...]) -> bool:
    """`m/7366512'/0'` or below: the quorum decryption key, which opens every secret."""
    return indices[:2] == _QUORUM_ACCOUNT


def answer(payload: bytes, master: slip10.ExtendedKey, *, quorum_available: bool = True) -> Reply:
    """The server's reply to one request payload, given the SLIP-10 master node.

    `quorum_available` False refuses the quorum account and everything below it: after boot
    the application shares keyforkd's uid, and it must not be able to derive the key that
    opens every secret of the image (hardening finding F6).
    """
    path = None
    try:
        request = parse_request(payload)
        path = request.path
        if request.algorithm != ALGORITHM:
            raise IpcError(f"unsupported algorithm: {request.algorithm}")
        indices = parse_path(request.path)
        if not quorum_available and is_quorum_path(indices):
            raise IpcError(QUORUM_ALREADY_SERVED)
    except IpcError as exc:
        where = f"request for {_printable(path)}" if path is not None else "request"
        return Reply(encode_error(str(exc)), True, f"refused {where}: {_printable(str(exc))}")
    node = master
    for index in indices:
        node = slip10.derive_child(node, index)
    name = label(request.path)
    return Reply(encode_success(node), False,
                 f"derivation {request.path}" + (f" ({name})" if name else ""),
                 quorum=is_quorum_path(indices))


# --- responses (client side) ---------------------------------------------------------------


def decode_response(payload: bytes) -> slip10.ExtendedKey:
    """The derived node of a success map; `KeyforkdRefused` for an error map."""
    try:
        entries = _decode_map(payload)
    except _Malformed:
        raise MalformedResponse("malformed response") from None
    if set(entries) == {"error"} and isinstance(entries["error"], str):
        raise KeyforkdRefused(entries["error"])
    key, chain, depth = entries.get("private_key"), entries.get("chain_code"), entries.get("depth")
    if set(entries) != {"private_key", "chain_code", "depth"} \
            or not isinstance(key, bytes) or len(key) != 32 \
            or not isinstance(chain, bytes) or len(chain) != 32 \
            or not isinstance(depth, int) or depth > MAX_COMPONENTS:
        raise MalformedResponse("malformed response")
    return slip10.ExtendedKey(private_key=key, chain_code=chain, depth=depth)


# --- socket path (enclave.md §3) ------------------------------------------------------------


class SocketLocation(NamedTuple):
    """The resolved path, and the `$XDG_RUNTIME_DIR/keyforkd` directory keyforkd may create
    (mode 0700) when the path is the XDG default; None otherwise."""

    path: str
    runtime_dir: str | None = None


def resolve_socket_location(option: str | None, env: Mapping[str, str]) -> SocketLocation:
    """Option, else `KEYFORKD_SOCKET_PATH`, else the XDG default, else `/keyforkd.sock`.

    An empty environment variable counts as unset (an empty option is the caller's usage
    error; it is treated as unset here too).
    """
    runtime = env.get("XDG_RUNTIME_DIR", "")
    directory = f"{runtime}/keyforkd" if runtime else None  # spelled as the boot script does
    default = f"{directory}/keyforkd.sock" if directory else DEFAULT_SOCKET
    path = option or env.get("KEYFORKD_SOCKET_PATH", "") or default
    # The XDG default may also arrive explicitly: the boot script exports the path it resolved
    # and locksmithd passes its own with --socket. It is still the XDG default, so the
    # directory may still be created.
    return SocketLocation(path, directory if directory and path == default else None)


def resolve_socket_path(option: str | None, env: Mapping[str, str]) -> str:
    return resolve_socket_location(option, env).path
