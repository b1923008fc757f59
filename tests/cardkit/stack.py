"""A private pcscd with two virtual card readers, and virtual OpenPGP cards to insert into them.

Isolation (why two test processes, and a developer's own pcscd, never see each other):

* **Client socket.** pcscd has no option for its socket path, but it supports systemd socket
  activation. `CardStack.start` creates the listening AF_UNIX socket itself, at
  `<root>/pcscd.comm`, and hands it to `pcscd -f` as fd 3 with `LISTEN_FDS=1` and `LISTEN_PID` set
  to pcscd's own pid (`bash -c 'LISTEN_PID=$$ exec pcscd …'`). Clients find it through
  `PCSCLITE_CSOCK_NAME`, which libpcsclite (used by pyscard and by GnuPG's scdaemon) honours:
  `CardStack.env` holds it for subprocesses.
* **Readers.** `pcscd -c <root>/reader.conf.d` reads only our configuration: one vpcd entry whose
  CHANNELID is a free TCP port P, so vpcd listens on P (slot 0) and P+1 (slot 1). vpcd binds
  those ports on **all interfaces** — vpcd's choice, it has no option for it; everything of ours
  (the bridges) only connects to 127.0.0.1.
* **Files and USB.** Even when socket-activated, pcscd creates `/run/pcscd/` and writes (and on
  exit deletes) `/run/pcscd/pcscd.pid`, which would clobber a running system pcscd's pid file; and
  it claims every USB reader it has a driver for (a developer's YubiKey!). So pcscd runs in a
  private mount namespace (`unshare --mount`, or `unshare --user --map-root-user --mount` when not
  root) with empty tmpfs mounts over the parent of its IPC directory (`/run`) and over its USB
  driver directory; the vpcd driver is loaded from a copy in `<root>`. Nothing outside `<root>` is
  touched. Where namespaces are not permitted (a container without CAP_SYS_ADMIN), root falls
  back to a plain pcscd: then `/run/pcscd/pcscd.pid` is written and removed and USB readers are
  scanned — acceptable on a CI machine, which has neither another pcscd nor USB readers.
  `CardStack.isolation` says which mode is in use.

pyscard in the test process: libpcsclite reads `PCSCLITE_CSOCK_NAME` once, on the process's first
PC/SC call, and keeps it. `CardStack.start` therefore sets it in `os.environ` (for the session,
restored by `close`) before its first PC/SC call, and the stack and `provision` talk to pcscd from
the test process. Consequences: one stack per test process (a second one, even after the first is
closed, would need another socket path: refused), and nothing may use PC/SC in the process before
the stack starts (detected: our readers carry the port in their name, "Virtual PCD <P> 00 00").

Every process started here (pcscd, bridges) is stopped by PID — SIGTERM, then SIGKILL after a
timeout — and also gets SIGTERM if the test process dies (PR_SET_PDEATHSIG; not kept across the
user-namespace entry of the rootless mode).
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]

VPCD_DRIVER = Path("/usr/lib/pcsc/drivers/serial/libifdvpcd.so")
SOCKET_ENV = "PCSCLITE_CSOCK_NAME"
SLOTS = (0, 1)

SKIP_MESSAGE = ("pcscd and vsmartcard-vpcd are not installed and we are not root to install them "
                "(make test installs them as root)")
INSTALL_HINT = ("install the Debian packages pcscd and vsmartcard-vpcd and the Python packages "
                "pyscard and jcecard (make test installs them as root)")

START_TIMEOUT = 15.0  # pcscd up and both readers listed
INSERT_TIMEOUT = 20.0  # bridge started, connected, card powered and reported present
REMOVE_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0  # SIGTERM → exit, before SIGKILL


class CardStackError(RuntimeError):
    """The harness could not do what was asked; the message says what happened and where the
    logs are."""


class PortsTaken(CardStackError):
    """vpcd lost the race for its TCP ports (`CardStack.start` tries another pair)."""


# --- what is installed -------------------------------------------------------------------------


def pcscd_path() -> str | None:
    """pcscd lives in /usr/sbin, which is not on a normal user's PATH."""
    path = os.environ.get("PATH", "") + os.pathsep + "/usr/sbin:/sbin"
    return shutil.which("pcscd", path=path)


def missing_system_pieces() -> list[str]:
    """The Debian-packaged pieces that are absent (the skip rule looks only at these)."""
    missing = []
    if pcscd_path() is None:
        missing.append("pcscd (Debian package pcscd)")
    if not VPCD_DRIVER.exists():
        missing.append(f"{VPCD_DRIVER} (Debian package vsmartcard-vpcd)")
    return missing


def missing_python_pieces() -> list[str]:
    missing = []
    if importlib.util.find_spec("smartcard") is None:
        missing.append("pyscard (pip; builds from source with swig, libpcsclite-dev and gcc)")
    if importlib.util.find_spec("jcecard") is None:
        missing.append("jcecard (pip)")
    return missing


def _pcscd_features(pcscd: str) -> dict[str, str]:
    """`usbdropdir`, `ipcdir`, … from `pcscd -v` ("Enabled features: … usbdropdir=/usr/lib/…")."""
    out = subprocess.run([pcscd, "-v"], capture_output=True, text=True, timeout=10).stdout
    return dict(word.split("=", 1) for word in out.split() if "=" in word)


# --- processes ---------------------------------------------------------------------------------


def _die_with_parent() -> None:
    """preexec_fn: SIGTERM to the child when the test process dies without tearing down."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def stop_process(proc: subprocess.Popen[Any], timeout: float = STOP_TIMEOUT) -> int | None:
    """SIGTERM by PID, wait, SIGKILL if it does not go; returns the exit status."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait(timeout)
    return proc.returncode


def _tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


# --- PC/SC from this process ---------------------------------------------------------------------


def _scard() -> Any:
    from smartcard import scard  # imported late: pyscard may be absent when card tests skip

    return scard


@contextlib.contextmanager
def pcsc_context() -> Iterator[Any]:
    """An SCARD context in this process (so: on the socket libpcsclite cached on first use)."""
    scard = _scard()
    hresult, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    if hresult != scard.SCARD_S_SUCCESS:
        raise CardStackError(f"SCardEstablishContext: {scard.SCardGetErrorMessage(hresult)}")
    try:
        yield context
    finally:
        scard.SCardReleaseContext(context)


def list_readers() -> list[str]:
    """Reader names as this process's pcscd sees them ([] when it has none or is not there)."""
    return _answered_readers() or []


def _answered_readers() -> list[str] | None:
    """The readers pcscd reports, or None when no pcscd answered."""
    scard = _scard()
    try:
        with pcsc_context() as context:
            hresult, readers = scard.SCardListReaders(context, [])
    except CardStackError:
        return None
    if hresult == scard.SCARD_S_SUCCESS:
        return list(readers)
    return [] if hresult == scard.SCARD_E_NO_READERS_AVAILABLE else None


def wait_reader(reader: str, *, present: bool, timeout: float,
                alive: Callable[[], None] = lambda: None) -> None:
    """Block until `reader` holds a powered card (`present`) or is empty (not `present`).

    Waits on SCardGetStatusChange (pcscd's own notification) in short slices, calling `alive`
    between slices so that a dead bridge fails at once instead of at the deadline.
    """
    scard = _scard()
    deadline = time.monotonic() + timeout
    with pcsc_context() as context:
        current = scard.SCARD_STATE_UNAWARE
        while True:
            hresult, states = scard.SCardGetStatusChange(context, 200, [(reader, current)])
            if hresult == scard.SCARD_S_SUCCESS:
                event = states[0][1]
                current = event & ~scard.SCARD_STATE_CHANGED
                if present and event & scard.SCARD_STATE_PRESENT and not (
                        event & scard.SCARD_STATE_MUTE):
                    return
                if not present and event & scard.SCARD_STATE_EMPTY:
                    return
            elif hresult != scard.SCARD_E_TIMEOUT:
                raise CardStackError(
                    f"{reader}: SCardGetStatusChange: {scard.SCardGetErrorMessage(hresult)}")
            alive()
            if time.monotonic() > deadline:
                raise CardStackError(f"{reader}: no {'card' if present else 'removal'} reported "
                                     f"by pcscd within {timeout:.0f} s")


# --- the stack -----------------------------------------------------------------------------------

_process_socket: str | None = None  # the socket libpcsclite in this process is bound to


def _isolation_prefix() -> tuple[str, list[str]] | None:
    """The `unshare` command line for a private mount namespace, if this machine permits one."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return None
    cmd = [unshare, "--mount", "--propagation", "private"]
    mode = "mount-namespace"
    if os.geteuid() != 0:
        cmd[1:1] = ["--user", "--map-root-user"]
        mode = "user-namespace"
    probe = subprocess.run([*cmd, "mount", "-n", "-t", "tmpfs", "none", "/mnt"],
                           capture_output=True, timeout=10)
    return (mode, cmd) if probe.returncode == 0 else None


def _free_port_pair() -> int:
    """A port P with P and P+1 free on all interfaces (vpcd binds both there).

    Drawn below Linux's ephemeral range (32768+), where outgoing connections do not take ports.
    pcscd could still lose a race for it; `CardStack.start` then retries with another pair.
    """
    for _ in range(200):
        port = random.randrange(20000, 32000)
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("0.0.0.0", port))
                b.bind(("0.0.0.0", port + 1))
        except OSError:
            continue
        return port
    raise CardStackError("no free pair of TCP ports in 20000-32000 for vpcd")


@dataclass
class VirtualCard:
    """A jcecard card in one reader slot: a bridge subprocess while inserted.

    `storage` (jcecard's state directory) outlives the bridge: `remove()` then `insert()` is the
    same card taken out and put back (PIN verification is lost, keys and counters stay).
    """

    stack: CardStack
    slot: int
    storage: Path
    name: str
    atr: bytes | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def reader(self) -> str:
        return self.stack.readers[self.slot]

    @property
    def port(self) -> int:
        return self.stack.port + self.slot

    @property
    def log(self) -> Path:
        """The bridge's own output; jcecard's warnings are in `storage/jcecard.log`."""
        return self.storage / "bridge.log"

    @property
    def inserted(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def insert(self) -> VirtualCard:
        """Start the bridge and wait until pcscd reports the card present in `reader`."""
        if self.inserted:
            return self
        holder = self.stack.cards.get(self.slot)
        if holder is not None and holder is not self and holder.inserted:
            raise CardStackError(f"slot {self.slot} already holds card {holder.name!r}")
        self.storage.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "tests.cardkit.bridge", "--port", str(self.port),
               "--storage", str(self.storage)]
        if self.atr is not None:
            cmd += ["--atr", self.atr.hex()]
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(cmd, cwd=REPO, stdin=subprocess.DEVNULL, stdout=out,
                                            stderr=subprocess.STDOUT,
                                            preexec_fn=_die_with_parent)
        self.stack.cards[self.slot] = self
        try:
            wait_reader(self.reader, present=True, timeout=INSERT_TIMEOUT, alive=self._alive)
        except BaseException:
            self.remove()
            raise
        return self

    def remove(self) -> None:
        """Stop the bridge (by PID) and wait until the reader is empty. Idempotent."""
        proc, self.process = self.process, None
        if proc is None:
            return
        if self.stack.cards.get(self.slot) is self:
            del self.stack.cards[self.slot]
        status = stop_process(proc)
        if self.stack.running:
            wait_reader(self.reader, present=False, timeout=REMOVE_TIMEOUT)
        if status not in (0, -signal.SIGTERM, None):
            raise CardStackError(f"bridge for card {self.name!r} exited with {status}:\n"
                                 f"{_tail(self.log)}")

    @contextlib.contextmanager
    def removed(self) -> Iterator[Path]:
        """Take the card out for the block (to edit its state file), put it back after."""
        self.remove()
        try:
            yield self.storage
        finally:
            self.insert()

    def _alive(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            raise CardStackError(f"bridge for card {self.name!r} exited with "
                                 f"{self.process.returncode}:\n{_tail(self.log)}")
        self.stack.check_alive()

    def __enter__(self) -> VirtualCard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


@dataclass
class CardStack:
    """One pcscd with two vpcd readers (slots 0 and 1), private to this test process."""

    root: Path
    port: int
    readers: list[str]
    env: dict[str, str]
    isolation: str  # "mount-namespace", "user-namespace" or "none" (see the module docstring)
    process: subprocess.Popen[bytes] = field(repr=False)
    cards: dict[int, VirtualCard] = field(default_factory=dict, repr=False)
    _old_env: str | None = field(default=None, repr=False)
    _socket_dir: Path | None = field(default=None, repr=False)
    _made_ipc_dir: Path | None = field(default=None, repr=False)
    _counter: int = field(default=0, repr=False)

    @property
    def socket(self) -> str:
        return self.env[SOCKET_ENV]

    @property
    def log(self) -> Path:
        return self.root / "pcscd.log"

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    @classmethod
    def start(cls, root: Path) -> CardStack:
        """Start pcscd with its files in `root` (which the caller owns and removes)."""
        global _process_socket
        missing = missing_system_pieces() + missing_python_pieces()
        if missing:
            raise CardStackError(f"missing {', '.join(missing)}: {INSTALL_HINT}")
        pcscd = pcscd_path()
        assert pcscd is not None
        root.mkdir(parents=True, exist_ok=True)
        sock_path = root / "pcscd.comm"
        socket_dir: Path | None = None
        if len(os.fsencode(sock_path)) > 100:  # sun_path holds 108 bytes
            socket_dir = Path(tempfile.mkdtemp(prefix="lsm-pcsc-"))
            sock_path = socket_dir / "pcscd.comm"
        features = _pcscd_features(pcscd)
        ipc_dir = Path(features.get("ipcdir", "/run/pcscd"))
        isolation = _isolation_prefix()
        # without a namespace pcscd creates its IPC directory for real: removed if we made it
        made_ipc_dir = ipc_dir if isolation is None and not ipc_dir.exists() else None
        old_env = os.environ.get(SOCKET_ENV)
        errors: list[str] = []
        try:
            if _process_socket is not None and _process_socket != str(sock_path):
                raise CardStackError(
                    "a CardStack already ran in this process; libpcsclite keeps the first "
                    f"socket ({_process_socket}), so a second stack must run in another process")
            if isolation is None and os.geteuid() != 0:
                raise CardStackError(
                    "pcscd needs root to create /run/pcscd and user namespaces are not "
                    "available here: run the card tests as root (make test)")
            os.environ[SOCKET_ENV] = str(sock_path)
            _process_socket = str(sock_path)
            for _attempt in range(3):
                port = _free_port_pair()
                try:
                    process, readers = cls._launch(pcscd, root, sock_path, port, isolation,
                                                   features)
                except PortsTaken as exc:
                    errors.append(str(exc))
                    continue
                return cls(root=root, port=port, readers=readers,
                           env={SOCKET_ENV: str(sock_path)},
                           isolation=isolation[0] if isolation else "none", process=process,
                           _old_env=old_env, _socket_dir=socket_dir, _made_ipc_dir=made_ipc_dir)
            raise CardStackError("pcscd did not come up:\n" + "\n---\n".join(errors))
        except BaseException:
            _restore_env(old_env)
            if socket_dir is not None:
                shutil.rmtree(socket_dir, ignore_errors=True)
            if made_ipc_dir is not None:
                with contextlib.suppress(OSError):
                    made_ipc_dir.rmdir()
            raise

    @staticmethod
    def _launch(pcscd: str, root: Path, sock_path: Path, port: int,
                isolation: tuple[str, list[str]] | None,
                features: dict[str, str]) -> tuple[subprocess.Popen[bytes], list[str]]:
        conf = root / "reader.conf.d"
        conf.mkdir(exist_ok=True)
        driver = VPCD_DRIVER
        if isolation is not None:  # the drivers directory is hidden in the namespace
            driver = root / "libifdvpcd.so"
            shutil.copyfile(VPCD_DRIVER.resolve(), driver)
        friendly = f"Virtual PCD {port}"
        (conf / "vpcd").write_text(f'FRIENDLYNAME "{friendly}"\nDEVICENAME /dev/null:{port}\n'
                                   f"LIBPATH {driver}\nCHANNELID {port}\n")
        expected = [f"{friendly} 00 {slot:02d}" for slot in SLOTS]

        sock_path.unlink(missing_ok=True)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(str(sock_path))
            os.chmod(sock_path, 0o600)
            listener.listen(64)
            fd = listener.fileno()
            # bash (dash takes only one-digit fds): the socket to fd 3, LISTEN_PID = its own pid,
            # then exec pcscd, which keeps that pid.
            script = "set -e\n"
            if isolation is not None:
                hide = [str(Path(features.get("ipcdir", "/run/pcscd")).parent),
                        features.get("usbdropdir", "/usr/lib/pcsc/drivers")]
                script += "".join(f"mount -n -t tmpfs -o mode=0755 locksmith-cardkit '{d}'\n"
                                  for d in hide if Path(d).is_dir())
            if fd != 3:
                script += f"exec 3<&{fd} {fd}<&-\n"
            script += 'LISTEN_FDS=1 LISTEN_PID=$$ exec "$0" -f -i -c "$1"\n'
            env = {k: v for k, v in os.environ.items()
                   if k not in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", SOCKET_ENV)}
            cmd = [*(isolation[1] if isolation else []), shutil.which("bash") or "/bin/bash", "-c",
                   script, pcscd, str(conf)]
            log_path = root / "pcscd.log"
            with open(log_path, "ab") as log:
                offset = log.tell()
                process = subprocess.Popen(cmd, pass_fds=(fd,), env=env, stdin=subprocess.DEVNULL,
                                           stdout=log, stderr=subprocess.STDOUT,
                                           preexec_fn=_die_with_parent)
        finally:
            listener.close()  # pcscd holds its own copy; if it dies, clients are refused at once

        def log_text() -> str:
            with open(log_path, "rb") as log:
                log.seek(offset)
                return log.read().decode(errors="replace")

        # pcscd serves clients once its readers are set up ("daemon ready"); a reader whose
        # ports vpcd could not bind has been dropped by then (both slots), pcscd stays up.
        # Waiting for the log line first keeps the blocking PC/SC call below from ever hanging.
        deadline = time.monotonic() + START_TIMEOUT
        while "daemon ready" not in log_text() and process.poll() is None:
            if time.monotonic() > deadline:
                break
            time.sleep(0.02)  # bounded poll: pcscd is up within a few tens of ms
        readers = _answered_readers() if process.poll() is None else None
        if readers is not None and all(name in readers for name in expected):
            return process, expected
        fresh = ""
        if process.poll() is None:  # what a fresh process sees on our socket
            fresh = subprocess.run(
                [sys.executable, "-c", "from smartcard.System import readers; print(readers())"],
                env={**os.environ, SOCKET_ENV: str(sock_path)}, capture_output=True, text=True,
                timeout=30).stdout.strip()
        stop_process(process)
        text = log_text()
        log_tail = "\n".join(text.splitlines()[-30:])
        if process.returncode not in (0, -signal.SIGTERM):
            raise CardStackError(f"pcscd exited with {process.returncode}:\n{log_tail}")
        if all(name in fresh for name in expected):
            raise CardStackError(
                f"pcscd lists {expected} to a fresh process but this process sees {readers}: "
                "something used PC/SC in this process before the stack started, and libpcsclite "
                "keeps the first socket it used")
        if "Address already in use" in text:
            raise PortsTaken(f"vpcd could not bind port {port} or {port + 1}:\n{log_tail}")
        raise CardStackError(f"pcscd on {sock_path} did not list {expected} within "
                             f"{START_TIMEOUT:.0f} s (it lists {readers}):\n{log_tail}")

    def check_alive(self) -> None:
        if not self.running:
            raise CardStackError(f"pcscd exited with {self.process.returncode}:\n"
                                 f"{_tail(self.log)}")

    def insert(self, slot: int, storage: Path | None = None, *, name: str | None = None,
               atr: bytes | None = None) -> VirtualCard:
        """A card in reader `slot` (0 or 1), present once this returns.

        `storage` None makes a fresh card (new state directory under `root/cards`); an existing
        directory re-inserts that card as it was left.
        """
        if slot not in SLOTS:
            raise ValueError(f"slot must be one of {SLOTS}")
        self.check_alive()
        self._counter += 1
        name = name or f"card{self._counter}"
        if storage is None:
            storage = self.root / "cards" / f"{self._counter:03d}-{name}"
        card = VirtualCard(self, slot, Path(storage), name, atr)
        return card.insert()

    def remove_all(self) -> None:
        for card in list(self.cards.values()):
            card.remove()

    def close(self) -> None:
        """Remove every card, stop pcscd by PID, restore the environment."""
        try:
            for card in list(self.cards.values()):
                with contextlib.suppress(CardStackError):
                    card.remove()
        finally:
            stop_process(self.process)
            _restore_env(self._old_env)
            Path(self.socket).unlink(missing_ok=True)
            if self._socket_dir is not None:
                shutil.rmtree(self._socket_dir, ignore_errors=True)
            if self._made_ipc_dir is not None:
                with contextlib.suppress(OSError):  # not empty: another pcscd uses it now
                    self._made_ipc_dir.rmdir()

    def __enter__(self) -> CardStack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _restore_env(old: str | None) -> None:
    if old is None:
        os.environ.pop(SOCKET_ENV, None)
    else:
        os.environ[SOCKET_ENV] = old
