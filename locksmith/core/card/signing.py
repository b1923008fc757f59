"""An OpenPGP signature whose private-key step happens on a card (PSO: COMPUTE DIGITAL SIGNATURE).

`signature.prepare` gives the digest; the card signs what the OpenPGP card spec 3.4 §7.2.10
asks for that algorithm (EdDSA and ECDSA: the digest itself; RSA: the PKCS#1 DigestInfo) and
answers with raw signature values, which become the packet's MPIs here. `PreparedSignature.finish`
then verifies the result with the holder's public key, so a card that signed with another key
(or garbage) is caught before anything is sent.
"""

from __future__ import annotations

from locksmith.core.card.errors import MalformedResponse
from locksmith.core.card.session import digest_info
from locksmith.core.openpgp.keys import ECDSA, EDDSA, RSA_ALGORITHMS, PublicKey
from locksmith.core.openpgp.signature import PreparedSignature, hash_algorithm_name

__all__ = ["signature_input", "signature_values"]


def signature_input(key: PublicKey, prepared: PreparedSignature) -> bytes:
    """The data field of PSO: COMPUTE DIGITAL SIGNATURE for `prepared`."""
    if key.algorithm in (EDDSA, ECDSA):
        return prepared.digest
    if key.algorithm in RSA_ALGORITHMS:
        return digest_info(hash_algorithm_name(prepared.hash_algorithm), prepared.digest)
    raise ValueError(f"public-key algorithm {key.algorithm} cannot sign")


def signature_values(key: PublicKey, raw: bytes) -> list[int | bytes]:
    """The signature MPIs from the card's answer: EdDSA R, S; ECDSA r, s; RSA s."""
    if key.algorithm == EDDSA:
        if len(raw) != 64:
            raise MalformedResponse(f"an EdDSA signature is 64 bytes, the card sent {len(raw)}")
        return [raw[:32], raw[32:]]
    if key.algorithm == ECDSA:
        if not raw or len(raw) % 2:
            raise MalformedResponse(f"an ECDSA signature r ‖ s has an even length, not {len(raw)}")
        half = len(raw) // 2
        return [int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big")]
    if key.algorithm in RSA_ALGORITHMS:
        if not raw:
            raise MalformedResponse("the card sent an empty RSA signature")
        return [raw]
    raise ValueError(f"public-key algorithm {key.algorithm} cannot sign")
