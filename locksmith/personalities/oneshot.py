"""`locksmith-oneshot`: decrypt every secret with the quorum key from keyforkd, print exports (enclave.md §5).

Fail closed (README §5 #5): the boot script `eval`s stdout, so stdout carries either every
secret or nothing. All files are decrypted and checked first; any failure prints one line per
failed file on stderr, nothing on stdout, and exits 1, which stops the boot. Only then are
all exports written, sorted, in a single write.

Boot-path rule: this personality imports no PGPy, typer, httpx, uvicorn (nor click/starlette)
— not even on error paths — and not the certificate/validity layers: it needs the IPC codec,
the derivation of the encryption subkey and the message decryptor, nothing else. Blocking
sockets suffice for one request, so not even asyncio is loaded.

Usage: locksmith-oneshot [--secrets-dir DIR] [--socket PATH] [--timeout SECONDS]
"""

from __future__ import annotations

import argparse
import math
import os
import socket
import sys
import time

from locksmith.core.app.shellquote import ExportError, check_name, check_value, render_exports
from locksmith.core.keyfork import ipc as keyfork_ipc
from locksmith.core.keyfork import slip10
from locksmith.core.openpgp import message, quorumkey
from locksmith.core.openpgp.errors import OpenPGPError
from locksmith.core.openpgp.keys import SecretKey
from locksmith.core.protocol import frame
from locksmith.personalities.argparsing import add_version
from locksmith.personalities.hardening import disable_core_dumps

__all__ = ["main"]

PROG = "locksmith-oneshot"
DEFAULT_SECRETS_DIR = "/etc/caution/secrets"
RETRY_INTERVAL = 0.2
EXCHANGE_TIMEOUT = 10.0


class Failure(Exception):
    """A fatal condition: one `locksmith-oneshot: <text>` line, exit 1."""


def say(text: str) -> None:
    sys.stderr.write(f"{PROG}: {text}\n")
    sys.stderr.flush()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Decrypt the secrets with the quorum key held by keyforkd and "
        "print `export NAME='value'` lines for the boot script.")
    add_version(parser)
    parser.add_argument("--secrets-dir", metavar="DIR",
                        help=f"directory of NAME.asc files (env LOCKSMITH_SECRETS_DIR, "
                        f"default {DEFAULT_SECRETS_DIR})")
    parser.add_argument("--socket", metavar="PATH", help="keyforkd socket (env "
                        "KEYFORKD_SOCKET_PATH, then $XDG_RUNTIME_DIR/keyforkd/keyforkd.sock, "
                        "then /keyforkd.sock)")
    parser.add_argument("--timeout", metavar="SECONDS", type=_seconds, default=30.0,
                        help="how long to wait for keyforkd (default 30)")
    return parser


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}")
    return value


# --- keyforkd --------------------------------------------------------------------------------


def connect(path: str, timeout: float) -> socket.socket:
    """Connect, retrying every 0.2 s until `timeout`; the waiting line is printed once."""
    deadline = time.monotonic() + timeout
    waiting = False
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(EXCHANGE_TIMEOUT)
            sock.connect(path)
            return sock
        except OSError as exc:
            sock.close()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Failure(f"cannot reach keyforkd at {path}: {exc.strerror or exc}") \
                    from None
            if not waiting:
                say(f"waiting for keyforkd at {path}")
                waiting = True
            time.sleep(min(RETRY_INTERVAL, remaining))


def _receive(sock: socket.socket) -> bytes:
    decoder = frame.FrameDecoder()
    while True:
        payload = decoder.next_payload(keyfork_ipc.MAX_PAYLOAD)
        if payload is not None:
            return payload
        data = sock.recv(min(decoder.needed(keyfork_ipc.MAX_PAYLOAD), 65536))
        if not data:
            raise ConnectionError("connection closed")
        decoder.feed(data)


def derive_account(path: str, timeout: float) -> slip10.ExtendedKey:
    """The quorum account node `m/7366512'/0'` from keyforkd."""
    sock = connect(path, timeout)
    try:
        try:
            sock.sendall(frame.encode(keyfork_ipc.encode_request(keyfork_ipc.ACCOUNT_PATH)))
            payload = _receive(sock)
        except (OSError, frame.FrameError):
            raise Failure("malformed response from keyforkd") from None
    finally:
        sock.close()
    try:
        return keyfork_ipc.decode_response(payload)
    except keyfork_ipc.KeyforkdRefused as exc:
        raise Failure(f"keyforkd refused the derivation: {exc}") from None
    except keyfork_ipc.MalformedResponse:
        raise Failure("malformed response from keyforkd") from None


# --- secrets ---------------------------------------------------------------------------------


def list_secrets(directory: str) -> list[str]:
    """File names `*.asc` of regular files (symlinks followed), sorted bytewise."""
    try:
        with os.scandir(directory) as entries:
            names = [e.name for e in entries if e.name.endswith(".asc") and e.is_file()]
    except OSError as exc:
        raise Failure(f"cannot read secrets directory {directory}: {exc.strerror or exc}") \
            from None
    return sorted(names, key=os.fsencode)


def _decrypt(data: bytes, key: SecretKey) -> bytes:
    try:
        return message.decrypt(data, [key]).plaintext
    except message.NoMatchingRecipient:
        raise ExportError("no recipient matches the quorum key") from None
    except message.NotIntegrityProtected:
        raise ExportError("message is not integrity protected") from None
    except message.DecryptionError:
        raise ExportError("decryption failed") from None
    except (OpenPGPError, ValueError):
        raise ExportError("malformed message") from None


def read_secret(directory: str, file_name: str, key: SecretKey) -> tuple[str, str]:
    """(NAME, value) of one file, or `ExportError` with the reason for its failure line."""
    name = file_name[: -len(".asc")]
    check_name(name)
    try:
        with open(os.path.join(directory, file_name), "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise ExportError(f"cannot read file: {exc.strerror or exc}") from None
    return name, check_value(name, _decrypt(data, key))


def write_all(fd: int, data: bytes | bytearray) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


# --- main ------------------------------------------------------------------------------------


def run(secrets_dir: str, socket_path: str, timeout: float) -> int:
    node = derive_account(socket_path, timeout)
    keys = quorumkey.quorum_keys_from_account(node.private_key, node.chain_code)
    say(f"derived quorum key {keys.primary.public.fingerprint_hex}")
    files = list_secrets(secrets_dir)
    if not files:
        say(f"no secrets in {secrets_dir}")
        say("exported 0 variables")
        return 0
    values: dict[str, str] = {}
    failures: list[str] = []
    for file_name in files:
        try:
            name, value = read_secret(secrets_dir, file_name, keys.encrypt)
        except ExportError as exc:
            failures.append(f"{file_name}: {exc}")
            continue
        values[name] = value
    if failures:
        for line in failures:
            say(line)
        return 1
    names = sorted(values, key=str.encode)
    output = bytearray(render_exports(values))
    try:
        write_all(1, output)  # straight to fd 1: unbuffered, one write of everything
    except (OSError, ValueError) as exc:
        raise Failure(f"cannot write exports: {getattr(exc, 'strerror', None) or exc}") \
            from None
    finally:
        output[:] = bytes(len(output))  # best effort: the decrypted bytes themselves are immutable
        values.clear()
    say(f"exported {len(names)} variables" + (": " + " ".join(names) if names else ""))
    return 0


def main(argv: list[str]) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # usage errors (2) and --help (0)
        return exc.code if isinstance(exc.code, int) else 2
    if args.socket == "" or args.secrets_dir == "":
        parser.print_usage(sys.stderr)
        print(f"{PROG}: error: --socket and --secrets-dir must not be empty", file=sys.stderr)
        return 2
    secrets_dir = args.secrets_dir or os.environ.get("LOCKSMITH_SECRETS_DIR") \
        or DEFAULT_SECRETS_DIR
    socket_path = keyfork_ipc.resolve_socket_path(args.socket, os.environ)
    try:  # it will hold the quorum decryption key and every secret: never in a core file
        disable_core_dumps()
    except OSError as exc:
        say(f"cannot disable core dumps: {exc.strerror or exc}")
        return 1
    try:
        return run(secrets_dir, socket_path, args.timeout)
    except Failure as exc:
        say(str(exc))
        return 1
    except Exception as exc:  # a bug must still fail closed, on one line, without a value
        say(f"internal error: {type(exc).__name__}")
        return 1
