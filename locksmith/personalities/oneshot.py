"""`locksmith-oneshot`: decrypt every secret with the quorum key from keyforkd, print exports (enclave.md §5).

Fail closed (README §5 #5): the boot script `eval`s stdout, so stdout carries either every
secret or nothing. All files are decrypted and checked first; any failure prints one line per
failed file on stderr, nothing on stdout, and exits 1, which stops the boot. Only then are
all exports written, sorted, in a single write.

Boot-path rule: this personality imports no PGPy, typer, httpx, uvicorn (nor click/starlette)
— not even on error paths — and not the certificate/validity layers: it needs the IPC codec,
the derivation of the encryption subkey and the message decryptor, nothing else. Blocking
sockets suffice for one request, so not even asyncio is loaded. It runs between the last shard
and the application's start (issue 11), so even what it does load waits until it is needed:
`--help`, `--version` and usage errors load argparse and nothing of the decryption stack, and
the boot script's call, without arguments (its paths are in the environment), does not load
argparse either; with many secrets, a forked child decrypts half of them on the second CPU
(`decrypt_all`).

Usage: locksmith-oneshot [--secrets-dir DIR] [--socket PATH] [--timeout SECONDS]
"""

from __future__ import annotations

import gc
import math
import os
import sys

TYPE_CHECKING = False  # mypy reads this name as typing's; the modules below load on use
if TYPE_CHECKING:
    import _socket
    import argparse
    from collections.abc import Callable, Sequence

    from locksmith.core.keyfork import slip10
    from locksmith.core.openpgp.keys import SecretKey

__all__ = ["main"]

PROG = "locksmith-oneshot"
DEFAULT_SECRETS_DIR = "/etc/caution/secrets"
RETRY_INTERVAL = 0.2
DEFAULT_TIMEOUT = 30.0
# Secrets from which a second process pays: forking copies the interpreter's pages as both
# processes touch them (reference counts), which on a 2-vCPU VM cost about what it saved at
# 100 secrets, and 3 ms less than one process at 150 (issue 11).
PARALLEL_FROM = 128
EXCHANGE_TIMEOUT = 10.0


class Failure(Exception):
    """A fatal condition: one `locksmith-oneshot: <text>` line, exit 1."""


def say(text: str) -> None:
    sys.stderr.write(f"{PROG}: {text}\n")
    sys.stderr.flush()


def _parser() -> argparse.ArgumentParser:
    import argparse

    from locksmith.personalities.argparsing import add_version

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
    parser.add_argument("--timeout", metavar="SECONDS", type=_seconds, default=DEFAULT_TIMEOUT,
                        help=f"how long to wait for keyforkd (default {DEFAULT_TIMEOUT:g})")
    return parser


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        import argparse

        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}")
    return value


# --- keyforkd --------------------------------------------------------------------------------


def connect(path: str, timeout: float) -> _socket.socket:
    """Connect, retrying every 0.2 s until `timeout`; the waiting line is printed once.

    With `socket`'s C module: one blocking request needs nothing of the `socket` module, which
    builds its enums at import, 1.5 ms of the boot's critical path (issue 11)."""
    import _socket
    import time

    deadline = time.monotonic() + timeout
    waiting = False
    while True:
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
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


def _receive(sock: _socket.socket) -> bytes:
    from locksmith.core.keyfork import ipc as keyfork_ipc
    from locksmith.core.protocol import frame

    decoder = frame.FrameDecoder()
    while True:
        payload = decoder.next_payload(keyfork_ipc.MAX_PAYLOAD)
        if payload is not None:
            return payload
        data = sock.recv(min(decoder.needed(keyfork_ipc.MAX_PAYLOAD), 65536))
        if not data:
            raise ConnectionError("connection closed")
        decoder.feed(data)


def derive_account(path: str, timeout: float,
                   meanwhile: Callable[[], object] | None = None) -> slip10.ExtendedKey:
    """The quorum account node `m/7366512'/0'` from keyforkd; `meanwhile` runs after the
    request is sent, while keyforkd derives the node."""
    from locksmith.core.keyfork import ipc as keyfork_ipc
    from locksmith.core.protocol import frame

    sock = connect(path, timeout)
    try:
        try:
            sock.sendall(frame.encode(keyfork_ipc.encode_request(keyfork_ipc.ACCOUNT_PATH)))
            if meanwhile is not None:
                meanwhile()
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
    from locksmith.core.app.shellquote import ExportError
    from locksmith.core.openpgp import message
    from locksmith.core.openpgp.errors import OpenPGPError

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
    from locksmith.core.app.shellquote import ExportError, check_name, check_value

    name = file_name[: -len(".asc")]
    check_name(name)
    try:
        with open(os.path.join(directory, file_name), "rb", buffering=0) as handle:
            data = handle.readall()  # unbuffered: one file, read once
    except OSError as exc:
        raise ExportError(f"cannot read file: {exc.strerror or exc}") from None
    return name, check_value(name, _decrypt(data, key))


# (file name, NAME or None if the file failed, the value or the reason of the failure)
Result = tuple[str, "str | None", str]


def decrypt_files(directory: str, files: Sequence[str], key: SecretKey) -> list[Result]:
    """Each file's result, in the order of `files`."""
    from locksmith.core.app.shellquote import ExportError

    results: list[Result] = []
    for file_name in files:
        try:
            name, value = read_secret(directory, file_name, key)
        except ExportError as exc:
            results.append((file_name, None, str(exc)))
        else:
            results.append((file_name, name, value))
    return results


def decrypt_all(directory: str, files: list[str], key: SecretKey) -> list[Result]:
    """Each file's result, in file order, on two CPUs when there are enough files.

    The boot waits for this (issue 11), and an enclave has at least two vCPUs: with
    PARALLEL_FROM files or more, a forked child decrypts the second half while this process
    decrypts the first (after one file, so that the child finds OpenSSL's algorithms already
    fetched). The child is this process: it holds the same key, inherits the core-dump
    protection, writes nothing but its results (marshal'd, through a pipe) and leaves with
    os._exit. Whatever keeps it from delivering every result fails the run, as any failure
    here does. Without a second CPU, or when fork fails, one process does it all."""
    if len(files) < PARALLEL_FROM or len(os.sched_getaffinity(0)) < 2:
        return decrypt_files(directory, files, key)
    half = len(files) // 2
    first = decrypt_files(directory, files[:1], key)
    collect = _in_child(directory, files[half:], key)
    return first + decrypt_files(directory, files[1:half], key) + collect()


def _in_child(directory: str, files: list[str], key: SecretKey) -> Callable[[], list[Result]]:
    """Start decrypting `files` in a forked child; the function that waits for its results."""
    import marshal

    read_end, write_end = os.pipe()
    try:
        pid = os.fork()
    except OSError:  # no second process: this one does it afterwards
        os.close(read_end)
        os.close(write_end)
        return lambda: decrypt_files(directory, files, key)
    if pid == 0:  # the child: never returns into the parent's code, never prints a traceback
        status = 1
        try:
            os.close(read_end)
            write_all(write_end, marshal.dumps(decrypt_files(directory, files, key)))
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)

    def collect() -> list[Result]:
        chunks = []
        try:
            while chunk := os.read(read_end, 65536):
                chunks.append(chunk)
        finally:
            os.close(read_end)
            _, status = os.waitpid(pid, 0)
        try:
            results = marshal.loads(b"".join(chunks)) if status == 0 else None
        except (EOFError, ValueError, TypeError):
            results = None
        if not isinstance(results, list) or [r[0] for r in results] != files:
            raise Failure("internal error: the second decryption process failed")
        return results

    return collect


def write_all(fd: int, data: bytes | bytearray) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


# --- main ------------------------------------------------------------------------------------


def _load_decryption() -> None:
    """The modules (and `cryptography`'s backend) that decrypting needs, loaded while keyforkd
    derives the key: its round trip then costs the boot nothing (issue 11)."""
    from cryptography.hazmat.backends import default_backend

    for name in ("locksmith.core.openpgp.quorumkey", "locksmith.core.openpgp.message",
                 "locksmith.core.app.shellquote"):
        __import__(name)
    default_backend()  # what X25519 and Ed25519 keys load on their first use


def run(secrets_dir: str, socket_path: str, timeout: float) -> int:
    node = derive_account(socket_path, timeout, _load_decryption)
    from locksmith.core.app.shellquote import render_exports
    from locksmith.core.openpgp import quorumkey

    primary = quorumkey.primary_key_from_account(node.private_key, node.chain_code)
    key = quorumkey.decryption_key_from_account(node.private_key, node.chain_code)
    say(f"derived quorum key {primary.public.fingerprint_hex}")
    files = list_secrets(secrets_dir)
    if not files:
        say(f"no secrets in {secrets_dir}")
        say("exported 0 variables")
        return 0
    values: dict[str, str] = {}
    failures: list[str] = []
    for file_name, name, text in decrypt_all(secrets_dir, files, key):
        if name is None:
            failures.append(f"{file_name}: {text}")
        else:
            values[name] = text
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


def options(argv: list[str]) -> tuple[str | None, str | None, float] | int:
    """`(--secrets-dir, --socket, --timeout)`, or the exit status of usage errors (2),
    `--help` and `--version` (0). No arguments, as the boot script calls it, are the defaults
    without a parser: nothing can go wrong with them, and argparse is not loaded for them."""
    if not argv:
        return None, None, DEFAULT_TIMEOUT
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # usage errors (2) and --help (0)
        return exc.code if isinstance(exc.code, int) else 2
    if args.socket == "" or args.secrets_dir == "":
        parser.print_usage(sys.stderr)
        print(f"{PROG}: error: --socket and --secrets-dir must not be empty", file=sys.stderr)
        return 2
    return args.secrets_dir, args.socket, args.timeout


def main(argv: list[str]) -> int:
    # A process that lives well under a second and keeps what it allocates until it exits:
    # the cyclic garbage collector would only cost it time (issue 11; about 5% of a run).
    # Restored on return, for a caller that runs this in its own process (tests).
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _main(argv)
    finally:
        if collecting:
            gc.enable()


def _main(argv: list[str]) -> int:
    parsed = options(argv)
    if isinstance(parsed, int):
        return parsed
    secrets_option, socket_option, timeout = parsed
    secrets_dir = secrets_option or os.environ.get("LOCKSMITH_SECRETS_DIR") \
        or DEFAULT_SECRETS_DIR
    from locksmith.core.keyfork import ipc as keyfork_ipc
    from locksmith.personalities.hardening import disable_core_dumps

    socket_path = keyfork_ipc.resolve_socket_path(socket_option, os.environ)
    try:  # it will hold the quorum decryption key and every secret: never in a core file
        disable_core_dumps()
    except OSError as exc:
        say(f"cannot disable core dumps: {exc.strerror or exc}")
        return 1
    try:
        return run(secrets_dir, socket_path, timeout)
    except Failure as exc:
        say(str(exc))
        return 1
    except Exception as exc:  # a bug must still fail closed, on one line, without a value
        say(f"internal error: {type(exc).__name__}")
        return 1
