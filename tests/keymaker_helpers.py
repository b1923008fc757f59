"""Test helpers for Keymaker: holders with private keys, odd certificates, share recovery, and a
real `keymaker` process on 127.0.0.1 (ephemeral port, killed when the test is done)."""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path


from locksmith.core import shamir
from locksmith.core.attestation.pcr_policy import PcrPolicy
from locksmith.core.attestation.verify import TrustAnchor
from locksmith.core.bundle import shardfile
from locksmith.core.bundle.checks import check_bundle
from locksmith.core.bundle.model import Bundle
from locksmith.core.openpgp import signature as sig
from locksmith.core.openpgp.armor import armor
from locksmith.core.openpgp.certbuild import build_certificate
from locksmith.core.openpgp.keygen import generate_holder_key, new_cv25519_key, new_ed25519_key
from locksmith.core.openpgp.keys import SecretKey
from locksmith.core.openpgp.quorumkey import quorum_keys
from locksmith.core.openpgp.secretkeys import load_secret_keys
from tests.conftest import REPO

ROLE_FLAGS = {"sign": sig.FLAG_SIGN, "storage": sig.FLAG_ENCRYPT_STORAGE,
              "auth": sig.FLAG_AUTHENTICATE}


@dataclass(frozen=True)
class Holder:
    fingerprint: str
    public: str  # armored public certificate
    private: bytes = field(repr=False)  # armored or binary secret keys

    def keys(self) -> list[SecretKey]:
        return [k.unlock() for k in load_secret_keys(self.private).keys]


def keygen_holders(count: int, prefix: str = "holder") -> list[Holder]:
    now = int(time.time()) - 60
    out = []
    for i in range(count):
        key = generate_holder_key(f"{prefix} {i}", f"{prefix}{i}@example.org", now=now)
        out.append(Holder(key.fingerprint, key.public_armored, key.private_armored.encode()))
    return out



def custom_cert(name: str, *, roles: Sequence[str] = ("sign", "storage", "auth"),
                created: int | None = None, key_expiration: int | None = None,
                storage: SecretKey | None = None) -> str:
    """An armored public certificate with exactly these subkey roles (for the refusal cases)."""
    at = created if created is not None else int(time.time()) - 60
    subkeys = []
    for role in roles:
        key = (storage or new_cv25519_key(at)) if role == "storage" else new_ed25519_key(at)
        subkeys.append((key, ROLE_FLAGS[role]))
    binary = build_certificate(new_ed25519_key(at), f"{name} <{name.lower()}@example.org>", subkeys,
                               signed_at=at, key_expiration=key_expiration)
    return armor("PUBLIC KEY BLOCK", binary)


def shared_storage_key() -> SecretKey:
    return new_cv25519_key(int(time.time()) - 60)


def recovered_secret(bundle: Bundle, holders: Sequence[Holder], threshold: int) -> bytes:
    """Every threshold-subset of the holders' shares gives the secret behind the bundle's
    quorum key; no smaller subset does. Returns that secret."""
    checked = check_bundle(bundle)
    assert [c.fingerprint for c in checked.holders] == [h.fingerprint for h in holders]
    owns = [shardfile.decrypt_own_share(bundle.shardfile, h.keys(), h.fingerprint)
            for h in holders]
    assert [o.share[0] for o in owns] == list(range(1, len(holders) + 1))
    assert all(o.threshold == threshold for o in owns)
    shares = [o.share for o in owns]
    secret = shamir.combine(shares[:threshold], threshold)
    fingerprint = quorum_keys(secret).primary.public.fingerprint_hex
    assert fingerprint == checked.quorum_certificate.fingerprint
    for subset in itertools.combinations(shares, threshold):
        assert shamir.combine(list(subset), threshold) == secret
    for subset in itertools.combinations(shares, threshold - 1):
        if subset:
            assert shamir.combine(list(subset)) != secret
    return secret


def policy_and_root(nsm_dir: Path) -> tuple[PcrPolicy, TrustAnchor]:
    return (PcrPolicy.from_json((nsm_dir / "keymaker-pcr-policy.json").read_bytes()),
            TrustAnchor.from_pem((nsm_dir / "root.pem").read_bytes()))


# --- a real keymaker process ------------------------------------------------------------------

_LISTENING = re.compile(r"listening on 127\.0\.0\.1:(\d+)")
_NSM_VARIABLES = ("LOCKSMITH_NSM", "LOCKSMITH_NSM_DIR", "KEYMAKER_ONE_SHOT",
                  "KEYMAKER_LISTEN_ADDR", "KEYMAKER_MAX_BODY_BYTES", "KEYFORK_OPENPGP_EXPIRE",
                  "CAUTION_UNSAFE_KEY_SERVICE_E2E")


@dataclass
class KeymakerProcess:
    proc: "subprocess.Popen[bytes]"
    url: str
    lines: list[str]

    def log(self) -> str:
        return "\n".join(self.lines)

    def count(self, text: str) -> int:
        return sum(text in line for line in self.lines)


@contextmanager
def running_keymaker(*args: str, env: dict[str, str] | None = None) -> Iterator[KeymakerProcess]:
    """`python -m locksmith keymaker --listen 127.0.0.1:0 ARGS`, ready when it says where it
    listens. The process is killed (by its own handle) when the block ends."""
    environment = {k: v for k, v in os.environ.items() if k not in _NSM_VARIABLES}
    environment.update(env or {})
    environment["PYTHONPATH"] = str(REPO)
    proc = subprocess.Popen(
        [sys.executable, "-m", "locksmith", "keymaker", "--listen", "127.0.0.1:0", *args],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        env=environment, cwd=REPO)
    lines: list[str] = []
    ready = threading.Event()
    port: list[int] = []

    def drain() -> None:
        assert proc.stderr is not None
        for raw in proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            lines.append(line)
            match = _LISTENING.search(line)
            if match and not port:
                port.append(int(match.group(1)))
                ready.set()
        ready.set()

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        ready.wait(timeout=60)
        if not port:
            raise AssertionError("keymaker did not start:\n" + "\n".join(lines))
        yield KeymakerProcess(proc, f"http://127.0.0.1:{port[0]}", lines)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
        reader.join(timeout=10)
