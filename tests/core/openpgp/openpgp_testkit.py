"""Test helpers for the OpenPGP tests: keyring walking, NIST key building, GnuPG/sq runners.

Kept out of `locksmith` on purpose: the certificate adapter is another module's job; these
helpers only walk packets far enough to find every signature and what it covers.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from locksmith.core.openpgp import armor, signature
from locksmith.core.openpgp.keys import (
    ECDH, PublicKey, SecretKey, encode_mpi, private_key_from_mpis,
)
from locksmith.core.openpgp.packets import iter_packets

TAG_SECRET_KEY, TAG_PUBLIC_KEY, TAG_SECRET_SUBKEY, TAG_PUBLIC_SUBKEY = 5, 6, 7, 14


@dataclass
class Component:
    key: PublicKey
    secret: SecretKey | None = None
    signatures: list[signature.Signature] = field(default_factory=list)


@dataclass
class Cert:
    primary: Component
    direct: list[signature.Signature] = field(default_factory=list)
    user_ids: list[tuple[bytes, list[signature.Signature]]] = field(default_factory=list)
    subkeys: list[Component] = field(default_factory=list)

    def checks(self) -> Iterator[tuple[PublicKey, signature.Signature, signature.HashInput]]:
        """Every (signer, signature, target) the certificate claims, back-signatures included."""
        primary = self.primary.key
        for sig in self.direct:
            yield primary, sig, signature.direct_key(primary)
        for uid, sigs in self.user_ids:
            for sig in sigs:
                yield primary, sig, signature.certification(primary, uid)
        for sub in self.subkeys:
            target = signature.subkey_binding(primary, sub.key)
            for sig in sub.signatures:
                yield primary, sig, target
                for back in sig.embedded_signatures:
                    yield sub.key, back, target


def _component(tag: int, body: bytes) -> Component:
    public, pos = PublicKey.parse_prefix(body)
    if tag in (TAG_SECRET_KEY, TAG_SECRET_SUBKEY) and body[pos] == 0:
        mpis = body[pos + 1 : -2]  # unprotected: MPIs then a two-octet checksum
        return Component(public, SecretKey(public, private_key_from_mpis(public, mpis)))
    return Component(public)


def parse_keyring(data: bytes | str) -> list[Cert]:
    raw = b"".join(armor.openpgp_binary(data.encode() if isinstance(data, str) else data))
    certs: list[Cert] = []
    current: list[signature.Signature] | None = None
    for packet in iter_packets(raw):
        if packet.tag in (TAG_SECRET_KEY, TAG_PUBLIC_KEY):
            certs.append(Cert(_component(packet.tag, packet.body)))
            current = certs[-1].direct
        elif packet.tag == 13:
            certs[-1].user_ids.append((packet.body, []))
            current = certs[-1].user_ids[-1][1]
        elif packet.tag in (TAG_SECRET_SUBKEY, TAG_PUBLIC_SUBKEY):
            certs[-1].subkeys.append(_component(packet.tag, packet.body))
            current = certs[-1].subkeys[-1].signatures
        elif packet.tag == 2 and current is not None:
            current.append(signature.Signature.parse(packet.body))
    return certs


def secret_keys(data: bytes | str) -> list[SecretKey]:
    out = []
    for cert in parse_keyring(data):
        for comp in [cert.primary, *cert.subkeys]:
            if comp.secret is not None:
                out.append(comp.secret)
    return out


def encryption_keys(data: bytes | str) -> list[SecretKey]:
    return [k for k in secret_keys(data) if k.public.algorithm in (1, 2, ECDH)]


def nist_ecdh_key(curve: ec.EllipticCurve, oid: bytes, kdf_hash: int, kdf_cipher: int,
                  created: int = 1) -> SecretKey:
    private = ec.generate_private_key(curve)
    point = private.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    body = (b"\x04" + created.to_bytes(4, "big") + bytes([ECDH, len(oid)]) + oid + encode_mpi(point)
            + bytes([3, 1, kdf_hash, kdf_cipher]))
    public = PublicKey.parse(body)
    return SecretKey(public, private)


# --- oracles ---------------------------------------------------------------------------------


class Gpg:
    """GnuPG with its own home directory (one per test), batch and loopback pinentry."""

    def __init__(self, home: Path) -> None:
        self.home = home

    def run(self, *args: str, input: bytes | None = None, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        env = {**os.environ, "GNUPGHOME": str(self.home)}
        cmd = ["gpg", "--batch", "--pinentry-mode", "loopback", "--passphrase", "",
               "--no-tty", "--quiet", *args]
        proc = subprocess.run(cmd, input=input, capture_output=True, env=env, timeout=60)
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n"
                                 f"{proc.stderr.decode(errors='replace')}")
        return proc

    def import_(self, data: bytes | str) -> None:
        self.run("--import", input=data.encode() if isinstance(data, str) else data)


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


def sq(*args: str, input: bytes | None = None, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    proc = subprocess.run(["sq", *args], input=input, capture_output=True, timeout=60)
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


def make_gpg_key(user_id: str, algo: str, extra_subkeys: Sequence[tuple[str, str]] = ()) -> GpgKey:
    with gpg_home() as gpg:
        gpg.run("--quick-gen-key", user_id, algo, "default", "never")
        listing = gpg.run("--list-keys", "--with-colons", user_id).stdout.decode()
        fpr = next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:"))
        for sub_algo, usage in extra_subkeys:
            gpg.run("--quick-add-key", fpr, sub_algo, usage, "never")
        public = gpg.run("--export", fpr).stdout
        secret = gpg.run("--export-secret-keys", fpr).stdout
    return GpgKey(fpr, public, secret)


# --- session fixtures: keys made once per process by the GnuPG oracle ------------------------
# Generated in a throw-away GNUPGHOME; tests import the exported bytes into their own fresh
# home, so no test shares GnuPG state with another. Import these into a test module to use them.


def _need_gpg() -> None:
    if shutil.which("gpg") is None:
        pytest.skip("gpg not installed")


@pytest.fixture(scope="session")
def gpg_ed25519_key() -> GpgKey:
    """Ed25519 primary [SC], Cv25519 [E], and an extra Ed25519 signing subkey (back-signed)."""
    _need_gpg()
    return make_gpg_key("Ed Holder <ed@example.org>", "future-default", [("ed25519", "sign")])


@pytest.fixture(scope="session")
def gpg_rsa_key() -> GpgKey:
    """RSA-3072 primary [SC], RSA-3072 [E], and an RSA-3072 signing subkey (back-signed)."""
    _need_gpg()
    return make_gpg_key("RSA Holder <rsa@example.org>", "rsa3072",
                        [("rsa3072", "encr"), ("rsa3072", "sign")])


@pytest.fixture(scope="session")
def gpg_p256_key() -> GpgKey:
    """NIST P-256: ECDSA primary [SC], ECDH [E]."""
    _need_gpg()
    return make_gpg_key("P256 Holder <p256@example.org>", "nistp256", [("nistp256", "encr")])
