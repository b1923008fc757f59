"""Real material for the approval tests: a quorum whose holders can sign statements, and the
approval files they would write.

`approval_quorum(t, n)` is a V1 bundle over holder keys made at T0, unproofed (the proof is not
this layer's business; the CLI tests use a proofed one); the keys stay available as private
keyrings so GnuPG can sign with them too. `quorum_with(publics, privates, t)` does the same over
given certificates (e.g. a GnuPG holder's).

Everything here is deterministic — keys from fixed seeds, the shardfile's randomness from a
seeded stream — so the bundle hash is the same in every test process: tests that put it in a
parameter id stay collectable by pytest-xdist, whose workers must collect identical ids.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric import ed25519, x25519

from locksmith.core.bundle import shardfile
from locksmith.core.bundle.checks import CheckedBundle, check_bundle
from locksmith.core.bundle.model import BundleV1, BundleV1Data, OpenPGPKey
from locksmith.core.forwarding.approval import (
    PcrSet, Statement, Tally, approval_file, count_approvals,
)
from locksmith.core.keymaker.quorum import QUORUM_USER_ID
from locksmith.core.openpgp import quorumkey, validity
from locksmith.core.openpgp import signature as sigmod
from locksmith.core.openpgp.armor import armor
from locksmith.core.openpgp.certbuild import build_certificate
from locksmith.core.openpgp.certs import Certificate, load_certificates
from locksmith.core.openpgp.keys import PublicKey, SecretKey
from locksmith.core.openpgp.secretkeys import load_secret_keys
from locksmith.core.protocol.holders import BundleHolders
from locksmith.core.protocol.messages import submission_bundle_hash

T0 = 1_750_000_000  # the holder keys' creation time
NOW = T0 + 3600
DAY = 86400
SET_A = PcrSet(b"\xa0" * 48, b"\xa1" * 48, b"\xa2" * 48)
SET_B = PcrSet(b"\xb0" * 48, b"\xb1" * 48, b"\xb2" * 48)
DEBUG = PcrSet(bytes(48), bytes(48), bytes(48))


def signing_key(private: bytes | str, now: int = NOW) -> SecretKey:
    """The holder's signing subkey (the one a signature made now would use), unlocked."""
    keyring = load_secret_keys(private)
    cert = keyring.certificates[0]
    wanted = validity.signing_candidates(cert, now, now)[0].fingerprint
    return next(k for k in keyring.keys if k.public.fingerprint == wanted).unlock()


def signed(key: SecretKey, statement: Statement, *, created: int = NOW,
           hash_algorithm: int = sigmod.SHA512, sig_type: int = sigmod.TEXT) -> str:
    """An approval file: `statement` signed by `key` as `caution secret approve` signs it."""
    sig = sigmod.create(key, sigmod.document(statement.signed_bytes()), sig_type,
                        created=created, hash_algorithm=hash_algorithm)
    return approval_file(statement, armor("SIGNATURE", sig.packet()))


@dataclass(frozen=True)
class ApprovalQuorum:
    checked: CheckedBundle
    holders: BundleHolders
    bundle_hash: bytes
    privates: tuple[str, ...] = field(repr=False)  # armored private keyrings, holder order

    @property
    def threshold(self) -> int:
        assert self.checked.threshold is not None
        return self.checked.threshold

    def fingerprint(self, k: int) -> str:
        return self.checked.holders[k].fingerprint

    def statement(self, pcrs: PcrSet = SET_A, expires: int = NOW + DAY,
                  bundle_hash: bytes | None = None) -> Statement:
        return Statement(bundle_hash or self.bundle_hash, pcrs, expires)

    def approve(self, k: int, pcrs: PcrSet = SET_A, *, expires: int = NOW + DAY,
                created: int = NOW, **options: int) -> str:
        return signed(signing_key(self.privates[k]), self.statement(pcrs, expires),
                      created=created, **options)

    def count(self, texts: Sequence[str] | Sequence[tuple[str, str]], *, now: int = NOW,
              excluded: Collection[int] = ()) -> Tally:
        named = [t if isinstance(t, tuple) else (f"file{i}", t) for i, t in enumerate(texts)]
        return count_approvals(named, holders=self.holders, bundle_hash=self.bundle_hash,
                               threshold=self.threshold, now=now, excluded=excluded)


def _stream(seed: bytes) -> Callable[[int], bytes]:
    """A deterministic stand-in for os.urandom (SHAKE-256 of the seed and a counter)."""
    counter = itertools.count()
    return lambda n: hashlib.shake_256(seed + next(counter).to_bytes(8, "big")).digest(n)


def holder_key(name: str) -> tuple[str, str]:
    """(public, private) armored keyrings of a `caution secret keygen`-shaped holder key whose
    key material derives from `name`."""
    def seed(role: str) -> bytes:
        return hashlib.sha256(f"{name}/{role}".encode()).digest()

    def ed(role: str) -> SecretKey:
        private = ed25519.Ed25519PrivateKey.from_private_bytes(seed(role))
        return SecretKey(PublicKey.ed25519(private.public_key().public_bytes_raw(), T0), private)

    cv = x25519.X25519PrivateKey.from_private_bytes(seed("encrypt"))
    storage = SecretKey(PublicKey.cv25519(cv.public_key().public_bytes_raw(), T0), cv)
    private = build_certificate(
        ed("primary"), f"{name} <{name.lower()}@example.org>",
        [(ed("sign"), sigmod.FLAG_SIGN), (storage, sigmod.FLAG_ENCRYPT_STORAGE),
         (ed("auth"), sigmod.FLAG_AUTHENTICATE)], signed_at=T0, secret=True)
    [cert] = load_certificates(private)
    return cert.public().armored(), armor("PRIVATE KEY BLOCK", private)


def quorum_with(publics: Sequence[str], privates: Sequence[bytes | str],
                threshold: int) -> ApprovalQuorum:
    """A V1 bundle (placeholder proof) over `publics`, holders in that order."""
    secret = bytes(range(40, 72))
    certs: list[Certificate] = [load_certificates(p)[0] for p in publics]
    shards = shardfile.build(secret, threshold, certs, at=T0, urandom=_stream(secret))
    public_key = quorumkey.public_certificate(quorumkey.quorum_keys(secret), generated=T0,
                                              user_id=QUORUM_USER_ID)
    data = BundleV1Data(bytes(range(16)), {"name": "approvals"},
                        tuple(OpenPGPKey(p) for p in publics), threshold, len(publics),
                        shards, public_key)
    checked = check_bundle(BundleV1(data, b"\x01"))
    by_fpr = {load_secret_keys(p).certificates[0].fingerprint: p for p in privates}
    digest = submission_bundle_hash(checked.bundle)
    assert digest is not None
    return ApprovalQuorum(checked, BundleHolders.from_bundle(checked), digest,
                          tuple(_text(by_fpr[c.fingerprint]) for c in checked.holders))


def _text(private: bytes | str) -> str:
    return private if isinstance(private, str) else armor("PRIVATE KEY BLOCK", private)


@functools.cache
def approval_quorum(threshold: int = 2, count: int = 3) -> ApprovalQuorum:
    keys = [holder_key(f"Approver{i}") for i in range(count)]
    return quorum_with([public for public, _ in keys], [private for _, private in keys],
                       threshold)


@functools.cache
def stranger() -> str:
    """A private keyring of someone who is no holder of any bundle here."""
    return holder_key("Stranger")[1]
