"""Shardfile reading against the reference fixture, and writing that reads back."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from locksmith.core import shamir
from locksmith.core.bundle import shardfile
from locksmith.core.openpgp import armor
from locksmith.core.openpgp.certs import load_certificates
from locksmith.core.openpgp.keys import SecretKey
from locksmith.core.openpgp.packets import Packet, encode_packet, parse_packets
from locksmith.core.openpgp.secretkeys import load_secret_keys

ALICE = "930755D28A0F722225264690D92F1A9EE975CFE8"
BOB = "EE9DCBD1ADDAF6B55BB54B67A13E41E31AC969A9"
SIGNER = "F629E823ABDD66CA2FDEF047F98E1466AB60F236"
NOW = 1_800_000_000


def _keys(path: Path) -> list[SecretKey]:
    return [k.unlock() for k in load_secret_keys(path.read_bytes()).keys]


@pytest.fixture(scope="module")
def fixture_shardfile(caution_v0: Path) -> str:
    return str(json.loads((caution_v0 / "bundle.json").read_text())["shardfile"])


def test_reference_shardfile_has_metadata_and_two_share_messages(fixture_shardfile: str) -> None:
    assert shardfile.message_count(fixture_shardfile) == 3


def test_reference_metadata_names_signer_threshold_and_holders(
        fixture_shardfile: str, caution_v0: Path) -> None:
    meta = shardfile.decrypt_metadata(fixture_shardfile, _keys(caution_v0 / "bob.private.asc"))
    assert meta.threshold == 2
    assert meta.signer.fingerprint == SIGNER
    assert meta.holder_fingerprints == (ALICE, BOB)


def test_reference_shares_decrypt_and_combine_to_the_test_secret(
        fixture_shardfile: str, caution_v0: Path) -> None:
    alice = shardfile.decrypt_own_share(fixture_shardfile, _keys(caution_v0 / "alice.private.asc"), ALICE)
    bob = shardfile.decrypt_own_share(fixture_shardfile, _keys(caution_v0 / "bob.private.asc"), BOB)
    assert alice.share.hex() == "01b72533ceb6b0fe89618de4c224ed69d04b83abcf6bce0b9a819e43feabf994c2"
    assert (alice.index, bob.index) == (0, 1)
    assert shamir.combine([alice.share, bob.share], 2) == b"\x07" * 32


def test_a_key_that_is_not_a_recipient_cannot_decrypt(fixture_shardfile: str) -> None:
    from locksmith.core.openpgp import quorumkey
    stranger = [quorumkey.decryption_key(b"\x01" * 32)]
    with pytest.raises(shardfile.ShardfileError, match="selected key cannot decrypt this message"):
        shardfile.decrypt_metadata(fixture_shardfile, stranger)


def _restream(shard: str, packets_fn: Callable[[list[Packet]], list[Packet]]) -> str:
    stream = parse_packets(armor.dearmor_one(shard))
    return armor.armor("MESSAGE", b"".join(encode_packet(p.tag, p.body) for p in packets_fn(stream)))


def test_trailing_pkesk_without_seipd_is_a_structure_error(fixture_shardfile: str) -> None:
    mutated = _restream(fixture_shardfile, lambda s: s + [s[0]])
    with pytest.raises(shardfile.ShardfileError, match="invalid shardfile packet structure"):
        shardfile.message_count(mutated)


def test_a_foreign_packet_in_the_stream_is_a_structure_error(fixture_shardfile: str) -> None:
    from locksmith.core.openpgp.packets import LITERAL
    mutated = _restream(fixture_shardfile, lambda s: s[:1] + [Packet(LITERAL, b"b\0\0\0\0\0x")] + s[1:])
    with pytest.raises(shardfile.ShardfileError, match="invalid shardfile packet structure"):
        shardfile.message_count(mutated)


def test_seipd_without_pkesk_is_a_structure_error(fixture_shardfile: str) -> None:
    mutated = _restream(fixture_shardfile, lambda s: [p for p in s if p.tag != 1][:1] + s)
    with pytest.raises(shardfile.ShardfileError, match="invalid shardfile packet structure"):
        shardfile.message_count(mutated)


def test_a_single_message_is_an_invalid_count(fixture_shardfile: str) -> None:
    mutated = _restream(fixture_shardfile, lambda s: s[:3])
    with pytest.raises(shardfile.ShardfileError, match="invalid shardfile message count"):
        shardfile.message_count(mutated)


def test_written_shardfile_reads_back_for_every_holder(caution_v0: Path) -> None:
    holders = load_certificates(json.loads((caution_v0 / "bundle.json").read_text())["keyring"])
    secret = bytes(range(32))
    text = shardfile.build(secret, 2, holders, at=NOW)
    assert text.startswith("-----BEGIN PGP MESSAGE-----\n\n")
    shares = [
        shardfile.decrypt_own_share(text, _keys(caution_v0 / f"{name}.private.asc"), fpr)
        for name, fpr in (("alice", ALICE), ("bob", BOB))
    ]
    assert [s.share[0] for s in shares] == [1, 2]
    assert all(s.threshold == 2 for s in shares)
    assert shamir.combine([s.share for s in shares]) == secret
    # Every PKESK carries the wildcard key ID (formats.md §7.2).
    for packet in parse_packets(armor.dearmor_one(text)):
        if packet.tag == 1:
            assert packet.body[1:9] == b"\x00" * 8
