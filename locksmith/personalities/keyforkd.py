"""`keyforkd`: holds the master secret in memory and serves derivations on a Unix socket (enclave.md §4).

The secret arrives only through an inherited pipe (`--secret-fd`, from locksmithd) or, for
development, a private file (`--unsafe-secret-hex-file`, loudly named and refused when group or
others can read or write it) — never argv or the environment, which other processes can read.
Core dumps are disabled before the secret is read. The socket is created under umask 077 and
chmod 0600 *before* `READY` is signalled, so there is no moment at which a ready socket is open
to other users. Startup failures exit 1 after removing nothing but a provably stale socket.
READY is on the boot's critical path (issue 11), so the event loop and the connection handling,
asyncio being by far the largest import of this program, are loaded only after it: a client
that connects meanwhile waits in the listen backlog.

Usage: keyforkd [--socket PATH] (--secret-fd N | --unsafe-secret-hex-file FILE) [--ready-fd N]
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import stat
import sys

from locksmith.core.keyfork import bip39, slip10
from locksmith.core.keyfork import ipc as keyfork_ipc
from locksmith.personalities import secret_fd
from locksmith.personalities.argparsing import add_version
from locksmith.personalities.hardening import disable_core_dumps

TYPE_CHECKING = False  # mypy reads this name as typing's; these load after READY
if TYPE_CHECKING:
    import asyncio

    from locksmith.personalities.keyforkd_server import MasterNode

__all__ = ["main"]

SECRET_LENGTH = 32
_HEX_SECRET = re.compile(rb"[0-9A-Fa-f]{64}\n?")


class StartupError(Exception):
    """A fatal startup condition; exit 1 with this message."""


class _Terminated(BaseException):
    """SIGTERM/SIGINT before the event loop handles them: unwind so the socket is removed."""


def _terminate(signum: int, _frame: object) -> None:
    log(f"stopping ({signal.Signals(signum).name})")
    raise _Terminated(signum)


_STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


def log(text: str) -> None:
    """One line on stderr, prefixed with the personality (unless the text already names it)."""
    line = text if text.startswith("keyforkd ") else f"keyforkd: {text}"
    try:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass  # a closed stderr must not take the daemon down


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="keyforkd", description="Serve key derivations from the master secret on a Unix "
        "socket, for locksmith-oneshot and the application.")
    add_version(parser)
    parser.add_argument("--socket", metavar="PATH", help="socket path (default: "
                        "KEYFORKD_SOCKET_PATH, $XDG_RUNTIME_DIR/keyforkd/keyforkd.sock, "
                        "/keyforkd.sock)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--secret-fd", metavar="N", type=_fd,
                        help="read exactly 32 raw bytes from inherited fd N, then EOF")
    source.add_argument("--unsafe-secret-hex-file", metavar="FILE",
                        help="development/tests only: 64 hex digits in a file of mode 0600")
    parser.add_argument("--unsafe-serve-quorum-key-repeatedly", action="store_true",
                        help="development/tests only: serve m/7366512'/0' to every request, "
                        "not only to the first (locksmith-oneshot)")
    parser.add_argument("--ready-fd", metavar="N", type=_fd,
                        help="write READY and close fd N once the socket is ready")
    return parser


def _fd(text: str) -> int:
    if not text.isascii() or not text.isdigit():
        raise argparse.ArgumentTypeError(f"not a file descriptor number: {text!r}")
    return int(text)


# --- the secret ------------------------------------------------------------------------------


def wipe(buffer: bytearray) -> None:
    """Overwrite in place (best effort: immutable copies made by libraries cannot be reached)."""
    buffer[:] = bytes(len(buffer))


def read_secret_fd(fd: int) -> bytearray:
    """Exactly 32 bytes, then EOF, read straight into a bytearray; the fd is closed."""
    try:
        return secret_fd.read_secret_fd(fd)
    except secret_fd.SecretInputError as exc:
        raise StartupError(str(exc)) from None


def read_secret_hex_file(path: str) -> bytearray:
    log("WARNING: --unsafe-secret-hex-file is for development and tests only: the master "
        "secret is read from a file on disk, not handed over by locksmithd")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise StartupError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise StartupError(f"refusing {path}: not a regular file")
        if info.st_mode & 0o066:
            raise StartupError(f"refusing {path}: it is readable or writable by group or others "
                               f"(mode {stat.S_IMODE(info.st_mode):04o}); chmod 600 it")
        content = bytearray(os.read(fd, 200))
    except OSError as exc:
        raise StartupError(f"cannot read {path}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    try:
        if _HEX_SECRET.fullmatch(content) is None:
            raise StartupError(f"{path} must hold exactly 64 hex digits (and an optional newline)")
        return bytearray.fromhex(content[:64].decode("ascii"))
    finally:
        wipe(content)


def master_node(secret: bytearray) -> slip10.ExtendedKey:
    """SLIP-10 master of the BIP-39 seed of the secret, empty passphrase (formats.md §9.1)."""
    seed = bip39.mnemonic_to_seed(bip39.entropy_to_mnemonic(bytes(secret)))
    return slip10.master_key(seed)


# --- the socket ------------------------------------------------------------------------------


def _clear_path(path: str) -> None:
    """Remove a dead socket at `path`; refuse a live one and anything that is not a socket."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise StartupError(f"cannot inspect {path}: {exc.strerror or exc}") from None
    if not stat.S_ISSOCK(info.st_mode):
        raise StartupError(f"{path} exists and is not a socket; refusing to replace it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(2.0)
    try:
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        log(f"removed stale socket {path}")
        return
    except OSError as exc:
        raise StartupError(f"cannot check the existing socket {path}: "
                           f"{exc.strerror or exc}") from None
    finally:
        probe.close()
    raise StartupError(f"keyforkd already running at {path}")


def bind_socket(location: keyfork_ipc.SocketLocation) -> tuple[socket.socket, os.stat_result]:
    """A listening socket at the location, mode 0600; also its identity for later removal."""
    path = location.path
    if location.runtime_dir is not None and not os.path.isdir(location.runtime_dir):
        try:
            os.mkdir(location.runtime_dir, 0o700)
        except FileExistsError:
            pass
        except OSError as exc:
            raise StartupError(f"cannot create {location.runtime_dir}: "
                               f"{exc.strerror or exc}") from None
    _clear_path(path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    previous = os.umask(0o077)
    try:
        listener.bind(path)
        os.chmod(path, 0o600)
        listener.listen(32)
        identity = os.stat(path)
    except OSError as exc:
        listener.close()
        raise StartupError(f"cannot listen on {path}: {exc.strerror or exc}") from None
    finally:
        os.umask(previous)
    listener.setblocking(False)
    return listener, identity


def remove_socket(path: str, identity: os.stat_result) -> None:
    """Unlink `path` only if it is still the socket this process bound."""
    try:
        current = os.lstat(path)
        if (current.st_dev, current.st_ino) == (identity.st_dev, identity.st_ino):
            os.unlink(path)
    except OSError:
        pass


# --- main ------------------------------------------------------------------------------------


async def _serve(listener: socket.socket, master: MasterNode, quorum_once: bool) -> None:
    import asyncio

    from locksmith.personalities.keyforkd_server import KeyforkServer

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in _STOP_SIGNALS:
        loop.add_signal_handler(signum, _stop, stop, signum)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)  # held since before READY
    await KeyforkServer(master, log, quorum_once=quorum_once).serve(listener, stop)


def _stop(stop: asyncio.Event, signum: int) -> None:
    log(f"stopping ({signal.Signals(signum).name})")
    stop.set()


def main(argv: list[str]) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # usage errors (2) and --help (0)
        return exc.code if isinstance(exc.code, int) else 2
    if args.socket == "":
        parser.print_usage(sys.stderr)
        print("keyforkd: error: --socket must not be empty", file=sys.stderr)
        return 2
    try:
        disable_core_dumps()
    except OSError as exc:
        log(f"cannot disable core dumps: {exc.strerror or exc}")
        return 1
    secret = bytearray()
    master: MasterNode | None = None
    bound: tuple[str, os.stat_result] | None = None
    for signum in _STOP_SIGNALS:
        signal.signal(signum, _terminate)
    try:
        if args.secret_fd is not None:
            secret = read_secret_fd(args.secret_fd)
        else:
            secret = read_secret_hex_file(args.unsafe_secret_hex_file)
        node = master_node(secret)
        wipe(secret)  # from here on only the master node is needed
        location = keyfork_ipc.resolve_socket_location(args.socket, os.environ)
        listener, identity = bind_socket(location)
        bound = (location.path, identity)
        # From READY on, a stop signal must reach the event loop's handler: hold it pending
        # until that handler is installed (`_serve`) instead of racing it.
        signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
        if args.ready_fd is not None:
            secret_fd.signal_ready(args.ready_fd, StartupError)
        log(f"listening on {location.path}")
        # Only now (see the module's docstring); stop signals stay pending meanwhile.
        import asyncio

        from locksmith.personalities.keyforkd_server import MasterNode

        master = MasterNode(node)
        del node
        asyncio.run(_serve(listener, master, not args.unsafe_serve_quorum_key_repeatedly))
        return 0
    except StartupError as exc:
        log(str(exc))
        return 1
    except _Terminated:
        return 0
    finally:
        if bound is not None:
            remove_socket(*bound)
        wipe(secret)
        if master is not None:
            master.wipe()


if __name__ == "__main__":  # pragma: no cover - reached through locksmith's dispatcher
    sys.exit(main(sys.argv[1:]))

