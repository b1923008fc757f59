"""Test material for the certificate-validity tests: the fixture holders of formats.md §15,
builders that re-sign parts of their certificates with `signature.py`, and recipes for GnuPG
holders with particular certificates (expired, revoked, SHA-1, locked, ...).

GnuPG, run through `tests.oracles`, is the oracle for "what real holders bring"; the builders
make the cases GnuPG cannot (or not precisely): a binding with an unknown critical subpacket, a
signing subkey without a back-signature, revocations with chosen reasons and times.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import time
from collections.abc import Callable, Sequence

from locksmith.core.openpgp import signature as sigmod
from locksmith.core.openpgp.certs import Certificate, Subkey, load_certificates
from locksmith.core.openpgp.keys import PublicKey, SecretKey
from locksmith.core.openpgp.packets import SIGNATURE, Packet
from locksmith.core.openpgp.secretkeys import load_secret_keys
from locksmith.core.openpgp.signature import Subpacket
from tests.conftest import CAUTION_V0
from tests.oracles import ED25519_HOLDER, RSA_HOLDER, Gpg, process_gpg

DAY = 86400


def now() -> int:
    """The current time; read after generating a key, so the key is never "from the future"."""
    return int(time.time())


# --- the fixtures of formats.md §15 -----------------------------------------------------------

ALICE_FPR = "930755D28A0F722225264690D92F1A9EE975CFE8"
BOB_FPR = "EE9DCBD1ADDAF6B55BB54B67A13E41E31AC969A9"
FIXTURE_CREATED = 1700000000


@functools.cache
def bundle_keyring() -> str:
    return str(json.loads((CAUTION_V0 / "bundle.json").read_text())["keyring"])


@functools.cache
def private_asc(name: str) -> bytes:
    return (CAUTION_V0 / f"{name}.private.asc").read_bytes()


def fixture_certs() -> tuple[Certificate, Certificate]:
    alice, bob = load_certificates(bundle_keyring())
    return alice, bob


@functools.cache
def fixture_secret(name: str, index: int) -> SecretKey:
    """Key `index` (0 primary, 1 sign, 2 auth, 3 encr) of Alice's or Bob's TSK, unlocked."""
    return load_secret_keys(private_asc(name)).keys[index].unlock()


# --- building signatures with signature.py -----------------------------------------------------


def binding(primary: SecretKey, subkey: PublicKey, *, created: int, flags: int,
            expiry: int | None = None, backsig: SecretKey | None = None,
            hash_algorithm: int = sigmod.SHA512, extra: Sequence[Subpacket] = ()) -> Packet:
    """A subkey binding (0x18); with `backsig`, an embedded primary-key binding (0x19)."""
    target = sigmod.subkey_binding(primary.public, subkey)
    hashed = [Subpacket.key_flags(flags), *extra]
    if expiry is not None:
        hashed.append(Subpacket.key_expiration(expiry))
    if backsig is not None:
        back = sigmod.create(backsig, target, sigmod.PRIMARY_KEY_BINDING, created=created,
                             hash_algorithm=hash_algorithm)
        hashed.append(Subpacket.embedded_signature(back.serialize()))
    sig = sigmod.create(primary, target, sigmod.SUBKEY_BINDING, created=created, hashed=hashed,
                        hash_algorithm=hash_algorithm)
    return Packet(SIGNATURE, sig.serialize())


def revocation(primary: SecretKey, subkey: PublicKey | None, *, created: int,
               reason: int | None) -> Packet:
    """A key revocation (0x20, `subkey` None) or subkey revocation (0x28) with `reason`."""
    hashed = [] if reason is None else [Subpacket.revocation_reason(reason, "test")]
    if subkey is None:
        target, kind = sigmod.direct_key(primary.public), sigmod.KEY_REVOCATION
    else:
        target, kind = sigmod.subkey_binding(primary.public, subkey), sigmod.SUBKEY_REVOCATION
    sig = sigmod.create(primary, target, kind, created=created, hashed=hashed)
    return Packet(SIGNATURE, sig.serialize())


def with_subkey_signatures(cert: Certificate, index: int, sigs: Sequence[Packet]) -> Certificate:
    """`cert` with subkey `index`'s signatures replaced, round-tripped through the wire."""
    subkeys = list(cert.subkeys)
    subkeys[index] = Subkey(subkeys[index].key, subkeys[index].packet, tuple(sigs))
    edited = dataclasses.replace(cert, subkeys=tuple(subkeys))
    (reloaded,) = load_certificates(edited.serialize())
    return reloaded


def with_direct_signatures(cert: Certificate, extra: Sequence[Packet]) -> Certificate:
    edited = dataclasses.replace(cert, direct_signatures=cert.direct_signatures + tuple(extra))
    (reloaded,) = load_certificates(edited.serialize())
    return reloaded


# --- GnuPG holders with particular certificates (formats.md §13) --------------------------------
# Made once per process in `process_gpg()`, each by a recipe that runs GnuPG as a holder would.

Y2024 = 1704067200  # 2024-01-01T00:00:00Z, creation time of the keys made with faked time

Recipe = Callable[[Gpg, str], None]


def _make(gpg: Gpg, name: str, subkeys: Sequence[tuple[str, str]] = ED25519_HOLDER, *,
          primary: str = "ed25519", expire: str = "never", faked: str | None = None,
          passphrase: str = "", extra: Sequence[str] = ()) -> str:
    return gpg.make(f"{name.title()} <{name}@test>", subkeys, primary=primary, expire=expire,
                    faked=faked, passphrase=passphrase, extra=extra)


def _full(gpg: Gpg, name: str) -> None:
    _make(gpg, name)


def _rsa(gpg: Gpg, name: str) -> None:
    _make(gpg, name, RSA_HOLDER, primary="rsa3072")


def _lacking(subkeys: Sequence[tuple[str, str]]) -> Recipe:
    def recipe(gpg: Gpg, name: str) -> None:
        _make(gpg, name, subkeys)
    return recipe


def _primary_expired(gpg: Gpg, name: str) -> None:
    """Made 2024-01-01, then `--quick-set-expire FPR 1d`: expired on 2024-01-02."""
    fpr = _make(gpg, name, faked="20240101T000000")
    gpg.run("--quick-set-expire", fpr, "1d", faked="20240101T000100")


def _subkey_expired(gpg: Gpg, name: str) -> None:
    """As above, but only the encryption subkey expires."""
    fpr = _make(gpg, name, faked="20240101T000000")
    gpg.run("--quick-set-expire", fpr, "1d", _subkey(gpg, name, "e"), faked="20240101T000100")


def _born_expired(gpg: Gpg, name: str) -> None:
    """Made in 2020 (faked clock) with a one-year expiry given at creation."""
    _make(gpg, name, expire="1y", faked="20200101T000000")


def _revoked(gpg: Gpg, name: str) -> None:
    """GnuPG's own revocation certificate (reason 0 "no reason": applies at all times)."""
    fpr = _make(gpg, name)
    text = (gpg.home / "openpgp-revocs.d" / f"{fpr}.rev").read_text()
    gpg.import_(text.replace(":-----BEGIN", "-----BEGIN"))


def _subkey_revoked(reason: str) -> Recipe:
    """Encryption subkey revoked with `--edit-key` `revkey` a year after creation (2025)."""
    def recipe(gpg: Gpg, name: str) -> None:
        fpr = _make(gpg, name, faked="20240101T000000")
        index = _subkeys(gpg, name).index(_subkey(gpg, name, "e")) + 1
        script = f"key {index}\nrevkey\ny\n{reason}\n\ny\nsave\n"
        gpg.run("--command-fd", "0", "--edit-key", fpr, input=script, faked="20250101T000000")
    return recipe


def _sha1(faked: str | None) -> Recipe:
    """Every self-signature SHA-1 (GnuPG cannot make SHA-1 back-signatures, so the signing
    subkey's binding is SHA-256), made now or in 2022."""
    def recipe(gpg: Gpg, name: str) -> None:
        _make(gpg, name, faked=faked, extra=("--cert-digest-algo", "SHA1"))
    return recipe


def _sha1_subkey(gpg: Gpg, name: str) -> None:
    """Only the encryption subkey's binding is SHA-1, made now."""
    fpr = _make(gpg, name, (("ed25519", "sign"), ("ed25519", "auth")))
    gpg.run("--cert-digest-algo", "SHA1", "--quick-add-key", fpr, "cv25519", "encr", "never")


def _locked(gpg: Gpg, name: str) -> None:
    _make(gpg, name, passphrase="secret")


RECIPES: dict[str, Recipe] = {
    "full": _full,
    "rsa": _rsa,
    "nosign": _lacking((("cv25519", "encr"), ("ed25519", "auth"))),
    "noauth": _lacking((("ed25519", "sign"), ("cv25519", "encr"))),
    "noencr": _lacking((("ed25519", "sign"), ("ed25519", "auth"))),
    "primexp": _primary_expired,
    "subexp": _subkey_expired,
    "past": _born_expired,
    "revoked": _revoked,
    "subhard": _subkey_revoked("1"),  # "Key has been compromised"
    "subsoft": _subkey_revoked("2"),  # "Key is superseded"
    "sha1new": _sha1(None),
    "sha1old": _sha1("20220601T000000"),
    "sha1sub": _sha1_subkey,
    "locked": _locked,
}


@functools.cache
def gpg_key(name: str) -> str:
    """Make GnuPG holder `name` (once per process); return its primary fingerprint."""
    gpg = process_gpg()
    RECIPES[name](gpg, name)
    return gpg.fingerprint(f"<{name}@test>")


def gpg_cert(name: str) -> Certificate:
    (cert,) = load_certificates(gpg_export(name))
    return cert


def gpg_export(name: str, *args: str, passphrase: str = "") -> bytes:
    """`gpg --export` (or e.g. `--export-secret-keys`) of holder `name`."""
    gpg_key(name)
    return process_gpg().run(*(args or ("--export",)), f"<{name}@test>",
                             passphrase=passphrase).stdout


def _subkeys(gpg: Gpg, name: str) -> list[str]:
    return gpg.fingerprints(f"<{name}@test>")[1:]


def _subkey(gpg: Gpg, name: str, capability: str) -> str:
    """Fingerprint of the subkey of `name` with `capability` (s, e, a) per GnuPG's listing."""
    out = gpg.run("--with-colons", "--list-keys", f"<{name}@test>").stdout.decode().splitlines()
    for i, line in enumerate(out):
        fields = line.split(":")
        if fields[0] == "sub" and capability in fields[11]:
            return out[i + 1].split(":")[9]
    raise KeyError(capability)
