"""The interop oracles: GnuPG and Sequoia (`sq`), run as real programs.

Every test that asks "does a real OpenPGP implementation accept this?" runs them through here,
and nothing else in the tests starts `gpg` or `sq`. Each GnuPG instance has its own temporary
home; keys made once per session are exported as bytes (`GpgKey`) and imported by whoever needs
them, so no test shares GnuPG state with another. The one exception is `process_gpg()`, a home
that lives as long as the test process, for the certificate recipes of `gpgkit.py` that build
holders once and only export them afterwards. Both tools are installed by `make test` (Debian
packages gnupg and sq): a missing tool is a failure, never a skip.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

TIMEOUT = 120  # seconds; RSA-3072 key generation is the slowest thing asked of either tool


def _require(tool: str) -> str:
    path = shutil.which(tool)
    assert path is not None, f"{tool} is not installed (make test installs gnupg and sq)"
    return path


def _bytes(data: bytes | str | None) -> bytes | None:
    return data.encode() if isinstance(data, str) else data


class GpgResult(subprocess.CompletedProcess[bytes]):
    """A finished gpg run; `status` holds its `[GNUPG:]` status lines when asked for."""

    def __init__(self, args: list[str], returncode: int, stdout: bytes, stderr: bytes,
                 status: bytes) -> None:
        super().__init__(args, returncode, stdout, stderr)
        self.status = status


class Gpg:
    """GnuPG in one home directory: batch mode, loopback pinentry, never a prompt.

    `Gpg.temporary()` makes a fresh home whose agent uses a cheap S2K for passphrase-protected
    keys (GnuPG's default calibration takes seconds per key); `close()` stops the daemons of
    that home only and removes it.
    """

    def __init__(self, home: Path) -> None:
        self.home = home

    @classmethod
    def temporary(cls) -> Gpg:
        home = Path(tempfile.mkdtemp(prefix="locksmith-gpg-"))
        home.chmod(0o700)
        (home / "gpg-agent.conf").write_text("s2k-count 65536\n")
        return cls(home)

    def close(self) -> None:
        subprocess.run([_require("gpgconf"), "--homedir", str(self.home), "--kill", "all"],
                       capture_output=True, timeout=30, check=False)
        shutil.rmtree(self.home, ignore_errors=True)

    def run(self, *args: str, input: bytes | str | None = None, check: bool = True,
            passphrase: str = "", faked: str | None = None, status: bool = False) -> GpgResult:
        """`gpg ARGS`; `faked` sets GnuPG's clock ("20240101T000000"), `status` collects the
        status lines apart from stdout and stderr, `check` makes a non-zero exit a failure."""
        cmd = [_require("gpg"), "--homedir", str(self.home), "--batch", "--no-tty", "--quiet",
               "--yes", "--no-auto-check-trustdb", "--pinentry-mode", "loopback",
               "--passphrase", passphrase]
        if faked is not None:
            # Frozen ("!"): a running clock let a slow key generation end a second after the
            # faked time, so the next command's subkey was "created before its primary".
            cmd += ["--faked-system-time", faked if faked.endswith("!") else faked + "!"]
        with tempfile.TemporaryFile() as status_out:  # a file, so gpg can never block on it
            if status:
                cmd += ["--status-fd", str(status_out.fileno())]
            cmd += args
            proc = subprocess.run(cmd, input=_bytes(input), capture_output=True,
                                  pass_fds=(status_out.fileno(),), timeout=TIMEOUT)
            status_out.seek(0)
            lines = status_out.read()
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n"
                                 f"{proc.stderr.decode(errors='replace')}")
        return GpgResult(cmd, proc.returncode, proc.stdout, proc.stderr, lines)

    def import_(self, data: bytes | str) -> None:
        self.run("--import", input=data)

    def decrypt(self, message: bytes | str) -> bytes:
        return self.run("--decrypt", input=message).stdout

    def export(self, key: str) -> bytes:
        return self.run("--export", key).stdout

    def fingerprints(self, user_id: str) -> list[str]:
        """Primary then subkey fingerprints of the keys matching `user_id`, as listed."""
        listing = self.run("--list-keys", "--with-colons", user_id).stdout.decode()
        return [line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:")]

    def fingerprint(self, user_id: str) -> str:
        return self.fingerprints(user_id)[0]

    def make(self, user_id: str, subkeys: Sequence[tuple[str, str]] = (), *,
             primary: str = "ed25519", expire: str = "never", faked: str | None = None,
             passphrase: str = "", extra: Sequence[str] = ()) -> str:
        """`--quick-gen-key USER_ID PRIMARY cert EXPIRE`, then `--quick-add-key FPR ALGO USAGE
        never` per (ALGO, USAGE) subkey; returns the primary fingerprint.

        `extra` options go to every command but the addition of a signing subkey: GnuPG makes
        its back-signature with the subkey, and refuses to do that with SHA-1.
        """
        self.run(*extra, "--quick-gen-key", user_id, primary, "cert", expire, faked=faked,
                 passphrase=passphrase)
        fpr = self.fingerprint(user_id)
        for algo, usage in subkeys:
            self.run(*(extra if usage != "sign" else ()), "--quick-add-key", fpr, algo, usage,
                     "never", faked=faked, passphrase=passphrase)
        return fpr


@contextmanager
def gpg_home() -> Iterator[Gpg]:
    """A GnuPG with a fresh home for the duration of the block."""
    gpg = Gpg.temporary()
    try:
        yield gpg
    finally:
        gpg.close()


@functools.cache
def process_gpg() -> Gpg:
    """One GnuPG home for the whole test process, removed at exit."""
    gpg = Gpg.temporary()
    atexit.register(gpg.close)
    return gpg


def sq(*args: str, input: bytes | str | None = None,
       check: bool = True) -> subprocess.CompletedProcess[bytes]:
    proc = subprocess.run([_require("sq"), *args], input=_bytes(input), capture_output=True,
                          timeout=TIMEOUT)
    if check and proc.returncode != 0:
        raise AssertionError(f"sq {' '.join(args)} failed ({proc.returncode}):\n"
                             f"{proc.stderr.decode(errors='replace')}")
    return proc


@dataclass(frozen=True)
class GpgKey:
    """A key made by GnuPG, exported: public certificate and unprotected secret keys."""

    fingerprint: str
    public: bytes
    secret: bytes


def make_gpg_key(user_id: str, algo: str, subkeys: Sequence[tuple[str, str]] = ()) -> GpgKey:
    """A certify-only ALGO primary and `subkeys`, made in a home of their own (`Gpg.make`)."""
    with gpg_home() as gpg:
        fpr = gpg.make(user_id, subkeys, primary=algo)
        return GpgKey(fpr, gpg.export(fpr), gpg.run("--export-secret-keys", fpr).stdout)


# Holder layouts (formats.md §13.2 roles): signing, storage encryption, authentication subkeys.
ED25519_HOLDER = (("ed25519", "sign"), ("cv25519", "encr"), ("ed25519", "auth"))
RSA_HOLDER = (("rsa3072", "sign"), ("rsa3072", "encr"), ("rsa3072", "auth"))
P256_HOLDER = (("nistp256/ecdsa", "sign"), ("nistp256", "encr"), ("nistp256/ecdsa", "auth"))
