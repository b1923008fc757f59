"""Which bundle holder a card belongs to (cli.md §5.3): by the fingerprints written on the card.

No trial decryption: a card is asked to decrypt only once it is known to hold the holder's
decryption key, so a card of someone else never sees a share and never spends a touch or a PIN
attempt. The rules are the same as for a software keyring (`secretkeys.match_holder`): the
signing key must be live now (the signature is made now, formats.md §13.3), the decryption key
one of the holder's §13.5 decryption keys.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from locksmith.core.openpgp import validity
from locksmith.core.openpgp.certs import Certificate
from locksmith.core.openpgp.keys import PublicKey

__all__ = ["CardHolder", "match_card", "match_signing_card"]


@dataclass(frozen=True)
class CardHolder:
    index: int  # the holder's position in the bundle
    certificate: Certificate  # the bundle's copy
    signing_key: PublicKey  # the card's signature slot
    decryption_key: PublicKey  # the card's decryption slot


def match_card(holders: Sequence[Certificate | None], signature: bytes | None,
               decryption: bytes | None, now: int, wanted: str | None = None) -> CardHolder | None:
    """The first holder (bundle order, or the one with primary fingerprint `wanted`) whose
    signing-capable key is the card's signature key and whose decryption key is the card's
    decryption key. `None` entries (WebAuthn holders) never match."""
    if signature is None or decryption is None:
        return None
    for index, cert in enumerate(holders):
        if cert is None or (wanted is not None and cert.fingerprint != wanted):
            continue
        signing = [k for k in validity.signing_candidates(cert, now, now)
                   if k.fingerprint == signature]
        decrypting = validity.decryption_keys(cert, among={decryption})
        if signing and decrypting:
            return CardHolder(index, cert, signing[0], decrypting[0])
    return None


def match_signing_card(holders: Sequence[Certificate | None], signature: bytes | None, now: int,
                       wanted: str | None = None) -> CardHolder | None:
    """As `match_card`, for a card that only has to sign (a forwarding approval): the holder
    whose live signing-capable key is the card's signature key; `decryption_key` is that key
    too, unused."""
    if signature is None:
        return None
    for index, cert in enumerate(holders):
        if cert is None or (wanted is not None and cert.fingerprint != wanted):
            continue
        signing = [k for k in validity.signing_candidates(cert, now, now)
                   if k.fingerprint == signature]
        if signing:
            return CardHolder(index, cert, signing[0], signing[0])
    return None
