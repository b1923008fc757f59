"""GnuPG's own `keytocard` onto a virtual card: the path a real holder takes with a YubiKey.

A holder key (certify-only Ed25519 primary; Ed25519 sign, Cv25519 encrypt, Ed25519 auth subkeys,
`tests.oracles.ED25519_HOLDER`) is made or imported in a temporary GNUPGHOME (`tests.oracles.Gpg`,
the one home for running gpg in tests), then `gpg --edit-key` moves its S, E and A subkeys to the
card, driven line by line through `--command-fd 0 --status-fd 2 --pinentry-mode loopback`
(admin PIN 12345678). GnuPG sets the card's algorithm attributes itself (jcecard announces that
they are changeable).

scdaemon reaches the card through our pcscd because gpg-agent is launched with
`PCSCLITE_CSOCK_NAME` in its environment, which scdaemon inherits. Its `scdaemon.conf` has
`disable-ccid` (else scdaemon would drive USB readers itself, a developer's YubiKey included),
`pcsc-shared`, and `reader-port` naming our reader. While scdaemon runs it holds the reader
(pyscard gets a sharing violation), so afterwards gpg-agent and scdaemon are stopped by PID.
"""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.cardkit.provision import PW3
from tests.oracles import ED25519_HOLDER, Gpg, GpgKey

EDIT_TIMEOUT = 60.0  # the whole keytocard session
DAEMON_STOP_TIMEOUT = 5.0

_CARD_SLOT = {"s": "1", "e": "2", "a": "3"}  # GnuPG's "Please select where to store the key"
_ROLE = {"s": "sign", "e": "encr", "a": "auth"}


class KeyToCardError(RuntimeError):
    pass


@dataclass
class GnuPGCardHolder:
    """A holder whose S/E/A subkeys GnuPG moved to the card in `reader`.

    `certificate` is the armored public certificate (for `caution secret new`); `subkeys` maps
    "sign" / "encr" / "auth" to the subkey fingerprint (hex, upper case); `gpg` is the home, which
    now holds card stubs (usable again: scdaemon restarts on demand) until `close()`.
    """

    reader: str
    fingerprint: str
    certificate: bytes
    subkeys: dict[str, str]
    gpg: Gpg = field(repr=False)
    env: dict[str, str] = field(repr=False)

    def launch_agent(self) -> None:
        """Start gpg-agent with the stack's environment, which the scdaemon it starts inherits
        (so `gpg --card-status`, or decrypting with the card, reaches our pcscd)."""
        subprocess.run([_tool("gpgconf"), "--homedir", str(self.gpg.home), "--launch",
                        "gpg-agent"], env={**os.environ, **self.env}, check=True,
                       capture_output=True, timeout=30)

    def daemon_pids(self) -> dict[str, int]:
        """PIDs of this home's running gpg-agent and scdaemon (without starting either)."""
        pids: dict[str, int] = {}
        agent = _connect_agent(self.gpg, self.env, "GETINFO pid", autostart=False)
        if agent is None:
            return pids
        pids["gpg-agent"] = agent
        # `SCD …` would start an scdaemon (which grabs the reader): ask the agent first
        if _agent_says_ok(self.gpg, self.env, "GETINFO scd_running"):
            scd = _connect_agent(self.gpg, self.env, "SCD GETINFO pid", autostart=False)
            if scd is not None:
                pids["scdaemon"] = scd
        return pids

    def stop_daemons(self) -> None:
        """Stop gpg-agent, then scdaemon, by PID (SIGTERM, then SIGKILL), releasing the reader.

        The agent goes first: scdaemon ignores a SIGTERM while the agent's connection is open
        (it would take the SIGKILL timeout), and exits by itself when that connection closes.
        """
        pids = self.daemon_pids()
        for name in ("gpg-agent", "scdaemon"):
            if name in pids:
                _stop_pid(pids[name])

    def close(self) -> None:
        try:
            self.stop_daemons()
        finally:
            subprocess.run([_tool("gpgconf"), "--homedir", str(self.gpg.home),
                            "--remove-socketdir"], capture_output=True, timeout=30, check=False)
            self.gpg.close()


def _tool(name: str) -> str:
    path = shutil.which(name)
    assert path is not None, f"{name} is not installed (make test installs gnupg and scdaemon)"
    return path


def _ask_agent(gpg: Gpg, env: Mapping[str, str], command: str, *,
               autostart: bool = False) -> list[str]:
    """gpg-connect-agent's answer lines to `command` (none when no agent runs)."""
    args = [_tool("gpg-connect-agent"), "--homedir", str(gpg.home)]
    if not autostart:
        args.append("--no-autostart")
    proc = subprocess.run([*args, command, "/bye"], capture_output=True, text=True, timeout=30,
                          env={**os.environ, **env}, check=False)
    return proc.stdout.splitlines()


def _agent_says_ok(gpg: Gpg, env: Mapping[str, str], command: str) -> bool:
    return "OK" in _ask_agent(gpg, env, command)


def _connect_agent(gpg: Gpg, env: Mapping[str, str], command: str, *,
                   autostart: bool) -> int | None:
    """The number of a `D <n>` answer of gpg-connect-agent, or None."""
    for line in _ask_agent(gpg, env, command, autostart=autostart):
        if line.startswith("D ") and line[2:].strip().isdigit():
            return int(line[2:])
    return None


def _gone(pid: int) -> bool:
    """Exited: no such process, or a zombie (its files, PC/SC handle included, are closed; its
    parent reaps it when it gets round to it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rpartition(")")[2].split()[0] in ("Z", "X")


def _stop_pid(pid: int) -> None:
    """SIGTERM, wait for the process to be gone, SIGKILL after a timeout (not our child, so we
    poll for it rather than wait)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + DAEMON_STOP_TIMEOUT
        while time.monotonic() < deadline:
            if _gone(pid):
                return
            time.sleep(0.02)  # bounded poll: a daemon's exit is not ours to wait(2) for
    raise KeyToCardError(f"process {pid} survived SIGKILL")


def _subkeys(gpg: Gpg, fpr: str) -> list[tuple[str, str]]:
    """(capabilities, fingerprint) of each subkey, in `--edit-key` order (`key 1`, `key 2`…)."""
    listing = gpg.run("--list-secret-keys", "--with-colons", fpr).stdout.decode()
    out: list[tuple[str, str]] = []
    in_subkey = False
    for line in listing.splitlines():
        fields = line.split(":")
        if fields[0] == "ssb":
            out.append((fields[11], ""))
            in_subkey = True
        elif fields[0] == "fpr" and in_subkey:
            out[-1] = (out[-1][0], fields[9])
            in_subkey = False
        elif fields[0] in ("sec", "uid"):
            in_subkey = False
    return out


def _edit_key(gpg: Gpg, fpr: str, env: Mapping[str, str], commands: Sequence[str],
              slots: Sequence[str], admin_pin: str) -> None:
    """Run `gpg --edit-key`, answering each prompt GnuPG asks for on the status channel."""
    cmd = [_tool("gpg"), "--homedir", str(gpg.home), "--no-tty", "--command-fd", "0",
           "--status-fd", "2", "--pinentry-mode", "loopback", "--edit-key", fpr]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env={**os.environ, **env})
    assert proc.stdin is not None and proc.stderr is not None
    lines: queue.Queue[bytes | None] = queue.Queue()

    def pump(stream: object) -> None:
        for line in iter(proc.stderr.readline, b""):  # type: ignore[union-attr]
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, args=(proc.stderr,), daemon=True).start()
    todo, places = list(commands), list(slots)
    transcript: list[str] = []
    deadline = time.monotonic() + EDIT_TIMEOUT

    def fail(why: str) -> KeyToCardError:
        return KeyToCardError(f"gpg --edit-key {fpr}: {why}\n" + "\n".join(transcript[-40:]))

    try:
        while True:
            try:
                raw = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise fail(f"no progress within {EDIT_TIMEOUT:.0f} s") from None
            if raw is None:
                break
            line = raw.decode(errors="replace").rstrip("\n")
            transcript.append(line)
            if not line.startswith("[GNUPG:] GET_"):
                continue
            kind, _, prompt = line.split(" ", 1)[1].partition(" ")
            if kind == "GET_HIDDEN" and prompt == "passphrase.enter":
                answer = admin_pin
            elif kind == "GET_BOOL":
                answer = "y"
            elif prompt == "keyedit.prompt" and todo:
                answer = todo.pop(0)
            elif prompt == "cardedit.genkeys.storekeytype" and places:
                answer = places.pop(0)
            else:
                raise fail(f"unexpected prompt {kind} {prompt}")
            transcript.append("  → (PIN)" if kind == "GET_HIDDEN" else f"  → {answer}")
            proc.stdin.write(answer.encode() + b"\n")
            proc.stdin.flush()
        status = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        if status != 0 or todo or places:
            raise fail(f"exit status {status}, unsent commands {todo}, unused slots {places}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        with contextlib.suppress(OSError):
            proc.stdin.close()


@contextlib.contextmanager
def gnupg_card_holder(reader: str, env: Mapping[str, str], *, key: GpgKey | None = None,
                      user_id: str = "Card Holder <card@example.org>",
                      admin_pin: str = PW3) -> Iterator[GnuPGCardHolder]:
    """A GnuPG home whose holder key went to the card in `reader` by `keytocard`.

    `env` is the `CardStack.env`. `key` (e.g. the session's `gpg_ed25519_holder`) is imported;
    without it a fresh ED25519_HOLDER-layout key is made. On entry the daemons are already
    stopped, so the reader is free for pyscard; the home is removed on exit.
    """
    holder = GnuPGCardHolder(reader, "", b"", {}, Gpg.temporary(), dict(env))
    gpg = holder.gpg
    try:
        (gpg.home / "scdaemon.conf").write_text(
            f"disable-ccid\npcsc-shared\nreader-port {reader}\n")
        holder.launch_agent()
        if key is not None:
            gpg.import_(key.secret)
            holder.fingerprint = key.fingerprint
        else:
            holder.fingerprint = gpg.make(user_id, ED25519_HOLDER)
        subkeys = _subkeys(gpg, holder.fingerprint)
        commands: list[str] = []
        slots: list[str] = []
        for index, (caps, sub_fpr) in enumerate(subkeys, start=1):
            usage = next((c for c in "sea" if c in caps), None)
            if usage is None or _ROLE[usage] in holder.subkeys:
                continue
            holder.subkeys[_ROLE[usage]] = sub_fpr
            commands += ["key 0", f"key {index}", "keytocard"]
            slots.append(_CARD_SLOT[usage])
        if set(holder.subkeys) != {"sign", "encr", "auth"}:
            raise KeyToCardError(f"{holder.fingerprint} lacks a sign, encrypt or auth subkey: "
                                 f"{subkeys}")
        _edit_key(gpg, holder.fingerprint, env, [*commands, "save"], slots, admin_pin)
        holder.certificate = gpg.run("--armor", "--export", holder.fingerprint).stdout
        holder.stop_daemons()
        yield holder
    finally:
        holder.close()


def keytocard(reader: str, env: Mapping[str, str], *, key: GpgKey | None = None,
              user_id: str = "Card Holder <card@example.org>",
              admin_pin: str = PW3) -> tuple[bytes, dict[str, str]]:
    """`gnupg_card_holder` for callers that need only the outcome: the armored certificate and
    the subkey fingerprints by role; the GnuPG home is gone when this returns."""
    with gnupg_card_holder(reader, env, key=key, user_id=user_id, admin_pin=admin_pin) as holder:
        return holder.certificate, dict(holder.subkeys)
