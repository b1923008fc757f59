"""The interop oracles: GnuPG and Sequoia (`sq`), run as real programs.

Every test that asks "does a real OpenPGP implementation accept this?" goes through here. Each
GnuPG instance has its own temporary home; keys made once per session are exported as bytes
and imported by whoever needs them, so no test shares GnuPG state with another. Both tools are
installed by `make test` (Debian packages gnupg and sq): a missing tool is a failure, not a
skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


def _require(tool: str) -> str:
    path = shutil.which(tool)
    assert path is not None, f"{tool} is not installed (make test installs gnupg and sq)"
    return path


class Gpg:
    """GnuPG with its own home directory, batch mode and loopback pinentry."""

    def __init__(self, home: Path) -> None:
        self.home = home

    def run(self, *args: str, input: bytes | str | None = None, check: bool = True,
            passphrase: str = "") -> subprocess.CompletedProcess[bytes]:
        env = {**os.environ, "GNUPGHOME": str(self.home)}
        cmd = [_require("gpg"), "--batch", "--pinentry-mode", "loopback", "--passphrase",
               passphrase, "--no-tty", "--quiet", *args]
        data = input.encode() if isinstance(input, str) else input
        proc = subprocess.run(cmd, input=data, capture_output=True, env=env, timeout=120)
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n"
                                 f"{proc.stderr.decode(errors='replace')}")
        return proc

    def import_(self, data: bytes | str) -> None:
        self.run("--import", input=data)

    def decrypt(self, message: bytes | str) -> bytes:
        return self.run("--decrypt", input=message).stdout

    def fingerprint(self, user_id: str) -> str:
        listing = self.run("--list-keys", "--with-colons", user_id).stdout.decode()
        return next(line.split(":")[9] for line in listing.splitlines()
                    if line.startswith("fpr:"))


@contextmanager
def gpg_home() -> Iterator[Gpg]:
    home = Path(tempfile.mkdtemp(prefix="locksmith-gpg-"))
    home.chmod(0o700)
    try:
        yield Gpg(home)
    finally:
        env = {**os.environ, "GNUPGHOME": str(home)}
        subprocess.run(["gpgconf", "--kill", "all"], env=env, capture_output=True, timeout=30)
        shutil.rmtree(home, ignore_errors=True)


def sq(*args: str, input: bytes | str | None = None,
       check: bool = True) -> subprocess.CompletedProcess[bytes]:
    data = input.encode() if isinstance(input, str) else input
    proc = subprocess.run([_require("sq"), *args], input=data, capture_output=True, timeout=120)
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
    """`gpg --quick-gen-key USER_ID ALGO cert never` plus `--quick-add-key` per subkey."""
    with gpg_home() as gpg:
        gpg.run("--quick-gen-key", user_id, algo, "cert", "never")
        fpr = gpg.fingerprint(user_id)
        for sub_algo, usage in subkeys:
            gpg.run("--quick-add-key", fpr, sub_algo, usage, "never")
        return GpgKey(fpr, gpg.run("--export", fpr).stdout,
                      gpg.run("--export-secret-keys", fpr).stdout)


ED25519_HOLDER = (("ed25519", "sign"), ("cv25519", "encr"), ("ed25519", "auth"))
RSA_HOLDER = (("rsa3072", "sign"), ("rsa3072", "encr"), ("rsa3072", "auth"))
