"""The deterministic quorum key and the shard-signing key (formats.md §9, §10), without PGPy.

From the 32-byte master secret, the same keys as Keyfork: BIP-39 seed → SLIP-10 account
`m/7366512'/0'` → component keys 0'..3', all v4 with creation time 1 so that fingerprints
depend on the secret alone. Keymaker publishes the certificate; keyforkd hands
locksmith-oneshot the account node, from which `decryption_key_from_account` gives the
encryption subkey directly (no armor, no certificate parsing on the boot path).

Public API:
  * `quorum_keys(secret) -> QuorumKeys`; `quorum_keys_from_account(private_key, chain_code)`
  * `decryption_key(secret) -> SecretKey`; `decryption_key_from_account(private_key, chain_code)`
  * `primary_key_from_account(private_key, chain_code) -> SecretKey` (its fingerprint names the
    quorum key)
  * `account_node(secret) -> slip10.ExtendedKey`
  * `public_certificate(keys, *, generated, expire=DEFAULT_EXPIRE, user_id=...) -> str`
    (armored `PGP PUBLIC KEY BLOCK`); `secret_certificate(...) -> str` (armored TSK);
    `certificate_packets(..., secret=False) -> bytes` (binary)
  * `parse_expire(text) -> int` seconds, for `KEYFORK_OPENPGP_EXPIRE` values `<n>d|<n>m|<n>y`
  * `shard_signer(secret) -> SecretKey`, `shard_signer_certificate(signer, *, created) -> bytes`
  * `QuorumKeyError`
"""

# No `from __future__ import annotations` here: typing.NamedTuple would compile every field's
# annotation string at import, a cost on locksmith-oneshot's start (issue 11).

import re
from typing import NamedTuple

from cryptography.hazmat.primitives.asymmetric import ed25519, x25519

from locksmith.core.keyfork import slip10
from locksmith.core.openpgp.armor import armor
from locksmith.core.openpgp.errors import OpenPGPError
from locksmith.core.openpgp.keys import PublicKey, SecretKey
from locksmith.core.openpgp.packets import PUBLIC_KEY, USER_ID, encode_packet

# Deferred to the functions that need them: BIP-39 (`account_node`), and the signature stack
# and certificate writer (`certificate_packets`, `shard_signer_certificate`). locksmith-oneshot
# only derives keys from the account node keyforkd hands it, and must not pay for either.

ACCOUNT_PATH = "m/7366512'/0'"  # 7366512 = 0x706770 = "pgp", Keyfork's OpenPGP root
KEY_CREATION_TIME = 1  # formats.md §9.3: every key packet, so fingerprints are reproducible
DEFAULT_USER_ID = "Keymaker-generated key"
SHARD_SIGNER_USER_ID = "keyfork-sss"
DAY = 86400
DEFAULT_EXPIRE = 42 * 365 * DAY  # "42y" = 15330 days (formats.md §9.4)
_EXPIRE = r"([0-9]+)([dmy])"  # compiled on first use, not on locksmith-oneshot's path
_UNIT_DAYS = {"d": 1, "m": 30, "y": 365}


class QuorumKeyError(OpenPGPError):
    pass


class QuorumKeys(NamedTuple):  # not a dataclass: see keys.PublicKey
    """Component keys 0'..3' of the account: certify, sign, encrypt (0x0C), authenticate."""

    primary: SecretKey
    sign: SecretKey
    encrypt: SecretKey
    authenticate: SecretKey


def parse_expire(text: str) -> int:
    """Validity D in seconds from `<n>d` (days), `<n>m` (30 days) or `<n>y` (365 days), n ≥ 1."""
    match = re.fullmatch(_EXPIRE, text, re.ASCII)
    if match is None or int(match.group(1)) == 0:
        raise QuorumKeyError(f"invalid expiry {text!r}: expected <n>d, <n>m or <n>y with n >= 1")
    return int(match.group(1)) * _UNIT_DAYS[match.group(2)] * DAY


def account_node(secret: bytes) -> slip10.ExtendedKey:
    """`m/7366512'/0'` from the BIP-39 seed of `secret` (the secret is the BIP-39 entropy)."""
    if len(secret) != 32:
        raise QuorumKeyError("the quorum secret must be 32 bytes")
    from locksmith.core.keyfork import bip39  # deferred: see the imports

    seed = bip39.mnemonic_to_seed(bip39.entropy_to_mnemonic(secret))
    return slip10.derive_path(seed, ACCOUNT_PATH)


def _child(node: slip10.ExtendedKey, n: int) -> bytes:
    return slip10.derive_child(node, n | slip10.HARDENED).private_key


def _ed25519(seed: bytes) -> SecretKey:
    private = ed25519.Ed25519PrivateKey.from_private_bytes(seed)
    public = PublicKey.ed25519(private.public_key().public_bytes_raw(), KEY_CREATION_TIME)
    return SecretKey(public, private)


def _cv25519(scalar: bytes) -> SecretKey:
    # The derived bytes are the native X25519 scalar as-is (formats.md §9.3); the TSK stores
    # it clamped (`SecretKey.secret_mpis`), which is the same key.
    private = x25519.X25519PrivateKey.from_private_bytes(scalar)
    public = PublicKey.cv25519(private.public_key().public_bytes_raw(), KEY_CREATION_TIME)
    return SecretKey(public, private)


def _account(private_key: bytes, chain_code: bytes) -> slip10.ExtendedKey:
    if len(private_key) != 32 or len(chain_code) != 32:
        raise QuorumKeyError("an account node is a 32-byte private key and a 32-byte chain code")
    return slip10.ExtendedKey(private_key=bytes(private_key), chain_code=bytes(chain_code), depth=2)


def quorum_keys_from_account(private_key: bytes, chain_code: bytes) -> QuorumKeys:
    node = _account(private_key, chain_code)
    return QuorumKeys(primary=_ed25519(_child(node, 0)), sign=_ed25519(_child(node, 1)),
                      encrypt=_cv25519(_child(node, 2)), authenticate=_ed25519(_child(node, 3)))


def quorum_keys(secret: bytes) -> QuorumKeys:
    node = account_node(secret)
    return quorum_keys_from_account(node.private_key, node.chain_code)


def decryption_key_from_account(private_key: bytes, chain_code: bytes) -> SecretKey:
    """The Cv25519 encryption subkey (2') only: what locksmith-oneshot decrypts with."""
    return _cv25519(_child(_account(private_key, chain_code), 2))


def primary_key_from_account(private_key: bytes, chain_code: bytes) -> SecretKey:
    """The Ed25519 primary key (0') only, whose fingerprint names the quorum key: with
    `decryption_key_from_account`, all that locksmith-oneshot derives (issue 11)."""
    return _ed25519(_child(_account(private_key, chain_code), 0))


def decryption_key(secret: bytes) -> SecretKey:
    node = account_node(secret)
    return decryption_key_from_account(node.private_key, node.chain_code)


def certificate_packets(keys: QuorumKeys, *, generated: int, expire: int = DEFAULT_EXPIRE,
                        user_id: str = DEFAULT_USER_ID, secret: bool = False) -> bytes:
    """The transferable key in binary: primary, UID + certification, three bound subkeys.

    `generated` (Unix seconds) is the signatures' creation time; the key expiration time is
    generated + expire − 1, relative to the key creation time 1 (formats.md §9.4).
    """
    from locksmith.core.openpgp import signature as sig  # deferred: see the imports
    from locksmith.core.openpgp.certbuild import build_certificate

    key_expiration = generated + expire - KEY_CREATION_TIME
    if generated < KEY_CREATION_TIME or expire <= 0 or key_expiration > 0xFFFFFFFF:
        raise QuorumKeyError("generation time or validity out of range")
    subkeys = ((keys.sign, sig.FLAG_SIGN),
               (keys.encrypt, sig.FLAG_ENCRYPT_COMMUNICATIONS | sig.FLAG_ENCRYPT_STORAGE),
               (keys.authenticate, sig.FLAG_AUTHENTICATE))
    return build_certificate(keys.primary, user_id, subkeys, signed_at=generated,
                             key_expiration=key_expiration, secret=secret)


def public_certificate(keys: QuorumKeys, *, generated: int, expire: int = DEFAULT_EXPIRE,
                       user_id: str = DEFAULT_USER_ID) -> str:
    data = certificate_packets(keys, generated=generated, expire=expire, user_id=user_id)
    return armor("PUBLIC KEY BLOCK", data)


def secret_certificate(keys: QuorumKeys, *, generated: int, expire: int = DEFAULT_EXPIRE,
                       user_id: str = DEFAULT_USER_ID) -> str:
    """The TSK (unprotected secret key packets) for decryption inside the enclave."""
    data = certificate_packets(keys, generated=generated, expire=expire, user_id=user_id,
                               secret=True)
    return armor("PRIVATE KEY BLOCK", data)


def shard_signer(secret: bytes) -> SecretKey:
    """Ed25519 at `m/7366512'/0'/0'` with the raw secret as the SLIP-10 seed (formats.md §10)."""
    if len(secret) != 32:
        raise QuorumKeyError("the quorum secret must be 32 bytes")
    return _ed25519(slip10.derive_path(bytes(secret), ACCOUNT_PATH + "/0'").private_key)


def shard_signer_certificate(signer: SecretKey, *, created: int) -> bytes:
    """Binary certificate `keyfork-sss`: key, UID, positive self-certification (flags 0x03)."""
    from locksmith.core.openpgp import signature as sig  # deferred: see the imports
    from locksmith.core.openpgp.signature import Subpacket

    uid = SHARD_SIGNER_USER_ID.encode("ascii")
    cert = sig.create(signer, sig.certification(signer.public, uid), sig.POSITIVE_CERTIFICATION,
                      created=created,
                      hashed=[Subpacket.key_flags(sig.FLAG_CERTIFY | sig.FLAG_SIGN)])
    return (encode_packet(PUBLIC_KEY, signer.public.body) + encode_packet(USER_ID, uid)
            + cert.packet())
