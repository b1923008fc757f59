"""The shardfile reader (locksmith/core/bundle/shardfile.py) under hostile input: `split_messages`,
`parse_metadata`, `decrypt_metadata` and `decrypt_own_share`.

Allowed to escape: `ShardfileError` only (the reader maps the OpenPGP layer's errors to its
own texts). A holder runs this on the bundle's shardfile before sending a share, and the
bundle may come from anywhere.

Byte mutations of a real shardfile mostly end at the integrity check (MDC) of the encrypted
data, so the deeper targets re-encrypt mutated *plaintext* to Alice's real key: a wrong or
hostile metadata block, and a share message whose inner packets (one-pass signature, literal,
signature) are mutated packet by packet, reach the certificate parser and the signature check.
"""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from locksmith.core.bundle import shardfile
from locksmith.core.openpgp import quorumkey, validity
from locksmith.core.openpgp.armor import armor
from locksmith.core.openpgp.message import signed_literal
from locksmith.core.openpgp.keys import PublicKey
from locksmith.core.openpgp.secretkeys import load_secret_keys
from tests.conftest import CAUTION_V0
from tests.core.protocol_kit import FIXTURE_SECRET, T0
from tests.fuzz.strategies import (
    armored_packet_mutated, encrypt_raw, fuzz, literal, mutated, only, outcome, packet_mutated,
    text_mutated,
)

ALLOWED = (shardfile.ShardfileError,)
SHARDFILE: str = json.loads((CAUTION_V0 / "bundle.json").read_text())["shardfile"]
_STORED = load_secret_keys((CAUTION_V0 / "alice.private.asc").read_bytes())
ALICE_KEYS = [k.unlock() for k in _STORED.keys]
ALICE_FPR = _STORED.certificates[0].fingerprint
ALICE_ENCRYPTION: PublicKey = validity.storage_encryption_keys(_STORED.certificates[0], T0)[0]
MESSAGES = shardfile.split_messages(SHARDFILE)
METADATA = shardfile._decrypt(MESSAGES[0], ALICE_KEYS).plaintext
ALICE_SHARE = shardfile.decrypt_own_share(SHARDFILE, ALICE_KEYS, ALICE_FPR).share
SIGNER = quorumkey.shard_signer(FIXTURE_SECRET)
SHARE_INNER = signed_literal(ALICE_SHARE, SIGNER, created=T0)


def shardfile_with(metadata_message: bytes = MESSAGES[0], alice_message: bytes = MESSAGES[1]
                   ) -> str:
    return armor("MESSAGE", metadata_message + alice_message + b"".join(MESSAGES[2:]))


def _read_everything(text: str | bytes) -> None:
    """What `send-shard` and `inspect` do with a shardfile: only ShardfileError."""
    only(ALLOWED, shardfile.split_messages, text)
    only(ALLOWED, shardfile.decrypt_metadata, text, ALICE_KEYS)
    own = only(ALLOWED, shardfile.decrypt_own_share, text, ALICE_KEYS, ALICE_FPR)
    outcome("share decrypted" if own is not None else "refused")


def test_fuzz_the_re_encrypted_samples_read_back() -> None:
    """The deep targets' construction is right: unmutated, Alice gets her share."""
    text = shardfile_with(encrypt_raw(literal(METADATA), ALICE_ENCRYPTION),
                          encrypt_raw(SHARE_INNER, ALICE_ENCRYPTION))
    assert shardfile.decrypt_own_share(text, ALICE_KEYS, ALICE_FPR).share == ALICE_SHARE


@fuzz(deadline_ms=1500, scale=2)
@given(st.one_of(
    armored_packet_mutated(SHARDFILE, "MESSAGE"),
    text_mutated(SHARDFILE, alphabet="=+/-ABCabc0189\n"),
    mutated(SHARDFILE.encode()),
    st.binary(max_size=300),
))
def test_fuzz_mutated_shardfiles_raise_only_shardfile_errors(text: str | bytes) -> None:
    _read_everything(text)


@fuzz(deadline_ms=1000, scale=3)
@given(st.one_of(packet_mutated(METADATA[2:]).map(lambda certs: METADATA[:2] + certs),
                 mutated(METADATA), st.binary(max_size=200)))
def test_fuzz_mutated_metadata_raises_only_shardfile_errors(body: bytes) -> None:
    only(ALLOWED, shardfile.parse_metadata, body)


@fuzz(deadline_ms=2000, scale=2)
@given(st.one_of(packet_mutated(METADATA[2:]).map(lambda certs: METADATA[:2] + certs),
                 mutated(METADATA)))
def test_fuzz_metadata_behind_a_valid_mdc_raises_only_shardfile_errors(body: bytes) -> None:
    _read_everything(shardfile_with(
        metadata_message=encrypt_raw(literal(body), ALICE_ENCRYPTION)))


@fuzz(deadline_ms=2000, scale=2)
@given(st.one_of(packet_mutated(SHARE_INNER), mutated(SHARE_INNER),
                 mutated(ALICE_SHARE).map(lambda share: signed_literal(share, SIGNER,
                                                                       created=T0))))
def test_fuzz_share_message_inner_packets_raise_only_shardfile_errors(inner: bytes) -> None:
    """The signed share behind a valid MDC: a broken one-pass or signature packet, a
    second literal, a wrong coordinate or length, a signature by the wrong key."""
    _read_everything(shardfile_with(alice_message=encrypt_raw(inner, ALICE_ENCRYPTION)))


@fuzz(deadline_ms=2000, scale=2)
@given(st.one_of(packet_mutated(MESSAGES[0]), packet_mutated(MESSAGES[1])), st.booleans())
def test_fuzz_mutated_pkesk_and_seipd_packets_raise_only_shardfile_errors(message: bytes,
                                                                         first: bool) -> None:
    """Session-key packets with broken ECDH fields (ephemeral point, wrapped key), SEIPD with
    another version or a cut body: trial decryption tries each and must refuse cleanly."""
    if first:
        _read_everything(shardfile_with(metadata_message=message))
    else:
        _read_everything(shardfile_with(alice_message=message))
