"""Assemble a v4 transferable key from key objects: the one certificate writer.

Used for the deterministic quorum certificate (formats.md §9.4) and for `caution secret keygen`
holder keys (cli.md §2): primary + one User ID with a positive self-certification carrying the
preference subpackets, then each subkey with its binding signature; a signing subkey's binding
embeds the primary-key binding signature (0x19) it made, which verifiers require.
"""

from __future__ import annotations

from collections.abc import Sequence

from locksmith.core.openpgp import signature as sig
from locksmith.core.openpgp.keys import SecretKey
from locksmith.core.openpgp.packets import (
    PUBLIC_KEY, PUBLIC_SUBKEY, SECRET_KEY, SECRET_SUBKEY, USER_ID, encode_packet,
)
from locksmith.core.openpgp.signature import Subpacket

AES256, AES128 = 9, 7


def _key_packet(key: SecretKey, *, primary: bool, secret: bool) -> bytes:
    if secret:
        return encode_packet(SECRET_KEY if primary else SECRET_SUBKEY, key.packet_body())
    return encode_packet(PUBLIC_KEY if primary else PUBLIC_SUBKEY, key.public.body)


def build_certificate(primary: SecretKey, user_id: str, subkeys: Sequence[tuple[SecretKey, int]],
                      *, signed_at: int, key_expiration: int | None = None,
                      primary_flags: int = sig.FLAG_CERTIFY, secret: bool = False) -> bytes:
    """Binary transferable key; `secret` writes unprotected secret key packets (a TSK).

    `key_expiration` is seconds after each key's creation time (absent: no expiry); every
    signature is created at `signed_at`.
    """
    expiry = [] if key_expiration is None else [Subpacket.key_expiration(key_expiration)]
    uid = user_id.encode("utf-8")
    certification = sig.create(
        primary, sig.certification(primary.public, uid), sig.POSITIVE_CERTIFICATION,
        created=signed_at, hashed=[
            Subpacket.key_flags(primary_flags), *expiry,
            Subpacket.preferred_symmetric(AES256, AES128),
            Subpacket.preferred_hash(sig.SHA512, sig.SHA256),
            Subpacket.features(sig.FEATURE_MDC), Subpacket.primary_user_id()])
    out = [_key_packet(primary, primary=True, secret=secret), encode_packet(USER_ID, uid),
           certification.packet()]
    for subkey, flags in subkeys:
        target = sig.subkey_binding(primary.public, subkey.public)
        hashed = [Subpacket.key_flags(flags), *expiry]
        if flags & sig.FLAG_SIGN:  # a signing subkey must show it agrees to be bound
            back = sig.create(subkey, target, sig.PRIMARY_KEY_BINDING, created=signed_at)
            hashed.append(Subpacket.embedded_signature(back.serialize()))
        binding = sig.create(primary, target, sig.SUBKEY_BINDING, created=signed_at,
                             hashed=hashed)
        out += [_key_packet(subkey, primary=False, secret=secret), binding.packet()]
    return b"".join(out)
