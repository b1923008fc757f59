"""OpenPGP smart-card answers (locksmith/core/card/) under hostile input: what tests/core/card
does not fuzz yet.

Already covered there (reused, not repeated): `apdu.Response.parse` and `transmit` on garbage
answers, `tlv.parse`/`find` on garbage, `ApplicationData.parse` and the other DO parsers on
random, structured and mutated objects, `KdfDo.parse` on garbage, `CardSession` on hostile
answer sequences. Added here:

* `tlv.find` / `tlv.unwrap` on constructed objects nested past `MAX_DEPTH`: `MalformedResponse`
  (a `CardError`), never a `RecursionError`;
* `KdfDo.parse` of plausible KDF-DOs, then `hash_pin` for every PIN reference: `CardError`
  only, in bounded time whatever iteration count the card asks for;
* a card's signature answer through `signing.signature_values` and
  `PreparedSignature.finish` (what `card_signer` does): `CardError` or `OpenPGPError` only;
* a card's decipher answers behind `DelegatedKey` in trial decryption (what
  `CardDecryption` does): `CardError` or `OpenPGPError` only.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from locksmith.core.card import tlv
from locksmith.core.card.errors import CardError
from locksmith.core.card.kdf import PW1, PW1_SIGN, PW3, RESETTING_CODE, KdfDo, hash_pin
from locksmith.core.card.session import normalise_shared_secret
from locksmith.core.card.signing import signature_values
from locksmith.core.openpgp.errors import OpenPGPError
from locksmith.core.openpgp.holder_signature import prepare_detached_text
from locksmith.core.openpgp.keys import DelegatedKey, PublicKey
from locksmith.core.openpgp.message import decrypt
from tests.fuzz.strategies import bounded, encrypt_raw, fuzz, literal, only, outcome
from tests.fuzz.test_fuzz_openpgp import ALICE_TSK, p256_holder, rsa_holder

CARD = (CardError,)


def _nested(depth: int, tag: int = 0x73, leaf: bytes = b"\x5a\x01\x00") -> bytes:
    data = leaf
    for _ in range(depth):
        data = tlv.encode(tag, data)
    return data


constructed_tags = st.sampled_from([0x6E, 0x73, 0x7F66, 0x65, 0xF9, 0x7F49, 0x20, 0x3F20])


@fuzz(deadline_ms=1000, scale=2)
@given(st.integers(0, 40), st.lists(constructed_tags, min_size=1, max_size=4),
       st.sampled_from([0x5A, 0xC5, 0x7F49, 0x4F, 0x1F21]), st.binary(max_size=8))
def test_fuzz_deeply_nested_tlv_raises_only_card_errors(depth: int, tags: list[int],
                                                        wanted: int, tail: bytes) -> None:
    data = b"\x5a\x01\x00" + tail
    for level in range(depth):
        data = tlv.encode(tags[level % len(tags)], data)
    found = only(CARD, tlv.find, data, wanted)
    outcome("found" if found is not None else "not found or refused")
    only(CARD, tlv.unwrap, data, tags[0])
    only(CARD, KdfDo.parse, data)


def test_fuzz_tlv_nesting_past_the_limit_is_refused_quickly() -> None:
    for depth in (tlv.MAX_DEPTH + 2, 200, 2000):
        bounded(only, CARD, tlv.find, _nested(depth), 0x99, seconds=1.0)


COUNTS = st.one_of(st.sampled_from([0, 1, 65536, 65011712, 65011713, 2**32 - 1]),
                   st.integers(0, 1 << 20))
kdf_fields = st.one_of(
    # Plausible: each tag at most once, the common values most of the time.
    st.fixed_dictionaries({
        0x81: st.sampled_from([b"\x03"] * 6 + [b"\x00", b"\x02", b"\x03\x00"]),
        0x82: st.sampled_from([b"\x08", b"\x0a"] * 3 + [b"\x09", b""]),
        0x83: COUNTS.map(lambda n: n.to_bytes(4, "big")),
        0x84: st.binary(min_size=1, max_size=16),
    }, optional={
        0x85: st.binary(max_size=16),
        0x86: st.binary(max_size=16), 0x87: st.binary(max_size=64),
        0x88: st.binary(max_size=64), 0x89: st.binary(max_size=4),
    }).map(lambda fields: list(fields.items())),
    # Anything, duplicates included.
    st.lists(st.tuples(st.sampled_from([0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88]),
                       st.binary(max_size=12)), max_size=8),
)


@fuzz(deadline_ms=3000, scale=2)
@given(kdf_fields, st.booleans(), st.binary(max_size=32))
def test_fuzz_kdf_dos_hash_pins_or_raise_only_card_errors(fields: list[tuple[int, bytes]],
                                                          wrap: bool, pin: bytes) -> None:
    """Whatever KDF-DO the card presents, the PIN is hashed exactly or refused: never sent raw
    by mistake, never an exception of another type, never more than the capped count."""
    content = b"".join(tlv.encode(tag, value) for tag, value in fields)
    kdf = only(CARD, KdfDo.parse, tlv.encode(0xF9, content) if wrap else content)
    if kdf is None:
        outcome("KDF-DO refused")
        return
    for reference in (PW1_SIGN, PW1, PW3, RESETTING_CODE):
        hashed = only(CARD, hash_pin, kdf, pin, reference)
        outcome("hashed" if hashed not in (None, pin) else "raw or refused")
        if hashed is not None and kdf.enabled:
            assert len(hashed) in (32, 64)


# --- a card's signature ------------------------------------------------------------------------

SIGNED = b"P"


def _signing_keys() -> list[PublicKey]:
    from locksmith.core.openpgp.secretkeys import load_secret_keys
    alice = load_secret_keys(ALICE_TSK).keys[1].public
    return [alice, rsa_holder()[1].public, p256_holder()[1].public]


@fuzz(deadline_ms=2000, scale=2)
@given(st.deferred(lambda: st.sampled_from(_signing_keys())), st.one_of(
    st.binary(max_size=600),
    st.sampled_from([b"", bytes(64), b"\xff" * 64, bytes(256), b"\xff" * 257, b"\x00\x01" * 32]),
))
def test_fuzz_card_signature_answers_raise_only_card_or_openpgp_errors(key: PublicKey,
                                                                      raw: bytes) -> None:
    prepared = prepare_detached_text(key, SIGNED, 1_750_000_000)
    values = only(CARD, signature_values, key, raw)
    if values is None:
        outcome("refused by signature_values")
        return
    finished = only((OpenPGPError,), prepared.finish, values)
    outcome("refused by finish" if finished is None else "a valid signature?!")
    assert finished is None  # a random answer is not a signature


# --- a card's decipher answers -----------------------------------------------------------------


class HostileCard:
    """`KeyOperations` that answer whatever the test says, as `CardDecryption` would pass it
    on (the ECDH answer goes through `normalise_shared_secret`, as there)."""

    def __init__(self, key: PublicKey, answer: bytes) -> None:
        self._key, self._answer = key, answer

    def agree(self, ephemeral: bytes) -> bytes:
        assert self._key.oid is not None
        return normalise_shared_secret(self._answer, self._key.oid)

    def decrypt_rsa(self, ciphertext: bytes) -> bytes:
        return self._answer


def _storage_keys() -> list[PublicKey]:
    from locksmith.core.openpgp import validity
    from locksmith.core.openpgp.certs import load_certificates
    alice = validity.storage_encryption_keys(load_certificates(ALICE_TSK)[0], 1_750_000_000)[0]
    return [alice, rsa_holder()[2].public, p256_holder()[2].public]


@fuzz(deadline_ms=2000, scale=2)
@given(st.deferred(lambda: st.sampled_from(_storage_keys())), st.one_of(
    st.binary(max_size=300),
    st.sampled_from([bytes(32), b"\x40" + bytes(32), b"\x04" + bytes(64), bytes(256),
                     b"\x07" + bytes(32) + b"\x00\x00", b"\x00\x02" + b"\xff" * 200]),
))
def test_fuzz_card_decipher_answers_raise_only_card_or_openpgp_errors(key: PublicKey,
                                                                     answer: bytes) -> None:
    message = encrypt_raw(literal(b"secret"), key)
    card = DelegatedKey(key, HostileCard(key, answer))
    result = only((OpenPGPError, CardError), decrypt, message, [card])
    outcome("refused" if result is None else "decrypted?!")
    assert result is None  # a random answer is not the session key
