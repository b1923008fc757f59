"""Real material for the protocol and round tests: quorums whose holders can sign and whose
shares come out of the shardfile, as `caution secret send-shard` would get them.

* `fixture_quorum()`: the reference v0 2-of-2 bundle (secret 07×32), Alice and Bob.
* `generated_quorum(t, n, generation)`: a fresh quorum made by `generate_quorum` over keys from
  `generate_holder_key`, as v0, ImportedV0 (same bundle wrapped) or V1 (same material in V1
  `data`; the necroproof is a placeholder: proof verification is not this layer's job).
* `tampered_public_key(secret)`: the quorum certificate plus a subkey bound by the quorum
  primary that is not derived from the secret (protocol.md §8 step 5).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric import x25519

from locksmith.core.bundle.checks import CheckedBundle, check_bundle
from locksmith.core.bundle.model import BundleV0, BundleV1, BundleV1Data, ImportedV0, OpenPGPKey
from locksmith.core.bundle.shardfile import decrypt_own_share
from locksmith.core.keymaker.quorum import generate_quorum
from locksmith.core.openpgp import quorumkey
from locksmith.core.openpgp import signature as sigmod
from locksmith.core.openpgp.armor import armor
from locksmith.core.openpgp.holder_signature import sign_detached_text
from locksmith.core.openpgp.keygen import generate_holder_key
from locksmith.core.openpgp.keys import PublicKey, SecretKey
from locksmith.core.openpgp.packets import PUBLIC_SUBKEY, encode_packet
from locksmith.core.openpgp.secretkeys import load_secret_keys
from locksmith.core.openpgp.signature import Subpacket
from tests.conftest import CAUTION_V0

T0 = 1_750_000_000  # keys, bundles and "now" of these tests (after the fixture keys' 1700000000)
NOW = T0 + 3600
FIXTURE_SECRET = b"\x07" * 32


@dataclass(frozen=True)
class Holder:
    index: int
    fingerprint: str
    signing_key: SecretKey = field(repr=False)
    share: bytes = field(repr=False)

    def sign(self, data: bytes, created: int = NOW) -> bytes:
        return sign_detached_text(self.signing_key, data, created)


@dataclass(frozen=True)
class Quorum:
    checked: CheckedBundle
    holders: tuple[Holder, ...]
    secret: bytes = field(repr=False)

    @property
    def threshold(self) -> int | None:
        return self.checked.threshold


def _holders(bundle_shardfile: str, privates: Sequence[bytes | str]) -> tuple[Holder, ...]:
    out = []
    for armored in privates:
        stored = load_secret_keys(armored)
        keys = [k.unlock() for k in stored.keys]
        fingerprint = stored.certificates[0].fingerprint
        own = decrypt_own_share(bundle_shardfile, keys, fingerprint)
        out.append(Holder(own.index, fingerprint, keys[1], own.share))  # keys[1]: signing
    return tuple(sorted(out, key=lambda h: h.index))


@functools.cache
def fixture_quorum() -> Quorum:
    bundle = BundleV0.from_json((CAUTION_V0 / "bundle.json").read_bytes())
    privates = [(CAUTION_V0 / f"{name}.private.asc").read_bytes() for name in ("alice", "bob")]
    return Quorum(check_bundle(bundle), _holders(bundle.shardfile, privates), FIXTURE_SECRET)


@functools.cache
def _generated_v0(t: int, n: int) -> tuple[BundleV0, tuple[str, ...], tuple[str, ...], bytes]:
    keys = [generate_holder_key(f"Holder {i}", f"h{i}@example.org", now=T0) for i in range(n)]
    keyring = "".join(k.public_armored for k in keys)
    secret = bytes(range(100 + t, 132 + t))
    bundle = generate_quorum(keyring, t, n, now=T0, secret=secret)
    return (bundle, tuple(k.public_armored for k in keys), tuple(k.private_armored for k in keys),
            secret)


@functools.cache
def generated_quorum(t: int, n: int, generation: str = "v0") -> Quorum:
    v0, publics, privates, secret = _generated_v0(t, n)
    keyring = tuple(OpenPGPKey(cert) for cert in publics)
    if generation == "v0":
        bundle: BundleV0 | ImportedV0 | BundleV1 = v0
    elif generation == "ImportedV0":
        bundle = ImportedV0(v0, t, keyring)
    else:
        data = BundleV1Data(bytes(range(16)), {"name": "test"}, keyring, t, n, v0.shardfile,
                            v0.public_key)
        bundle = BundleV1(data, b"\x01")
    return Quorum(check_bundle(bundle), _holders(v0.shardfile, privates), secret)


def tampered_public_key(secret: bytes) -> str:
    """The quorum certificate plus an extra encryption subkey validly bound by the primary."""
    keys = quorumkey.quorum_keys(secret)
    extra_private = x25519.X25519PrivateKey.from_private_bytes(b"\x42" * 32)
    extra = PublicKey.cv25519(extra_private.public_key().public_bytes_raw(), T0)
    binding = sigmod.create(keys.primary, sigmod.subkey_binding(keys.primary.public, extra),
                            sigmod.SUBKEY_BINDING, created=T0,
                            hashed=[Subpacket.key_flags(sigmod.FLAG_ENCRYPT_STORAGE)])
    packets = (quorumkey.certificate_packets(keys, generated=T0)
               + encode_packet(PUBLIC_SUBKEY, extra.body) + binding.packet())
    return armor("PUBLIC KEY BLOCK", packets)


def with_public_key(bundle: BundleV0, public_key: str) -> BundleV0:
    return BundleV0.new(dict(bundle.label), bundle.keyring, bundle.shardfile, public_key)


def share_request_json(shard: Sequence[int], threshold: object, **extra: object) -> bytes:
    value: dict[str, object] = {"shard": list(shard), "threshold": threshold, **extra}
    return json.dumps(value, separators=(",", ":")).encode()
