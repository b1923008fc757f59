"""The deterministic quorum key and the shard-signing key against formats.md §9.5 and §10."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519, x25519

from locksmith.core.keyfork import bip39, slip10
from locksmith.core.openpgp import message, quorumkey, signature
from locksmith.core.openpgp.armor import dearmor_one
from locksmith.core.openpgp.certs import load_certificates
from locksmith.core.openpgp.keys import PublicKey
from locksmith.core.openpgp.packets import parse_packets
from locksmith.core.openpgp.secretkeys import load_secret_keys
from tests.core.openpgp.openpgp_testkit import parse_signatures, self_signature_checks

SEVENS = b"\x07" * 32
GENERATED = 1_700_000_000

VECTOR_1 = {  # formats.md §9.5, entropy 07×32
    "x_priv": "7eb0d92a15f1898a47f5190ee3dd5d4a214031eb7eb94f86cc42d969b9c3fc42",
    "x_chain": "39fa90d84212c4f2f3bb6af7468b672dca054beba631c51320321a0392a6920b",
    "keys": [
        ("292d0932efe712653f5bd6b6a9098a41e9e646a090aca23ba5f1e30f43c99288",
         "769329c0cbae1f52e6757382d97787b54676d7e5cf9cb8249e4ae0fefa618949",
         "15B0E570536A4B00A90151DB726E3FCA18892D05"),
        ("bf0088bde33c8bec5982b59f4f8b759d78f840ac45cdac24d3b8d63a7dc609c5",
         "21bb3a144741b59b7aaee3435aa60aa7720ea84f71a018ad14f1672caa2def88",
         "A095E34E0C48D9C86F2CF911B9FE66798C956754"),
        ("003ec2602b92419dc360f26474d59e3c8f9652bd7ab86bcbb5bbc0f17035893d",
         "2a0b99b81838ab5ff1bf43775d6a8e994c30ac353a87b02ea9bd36c638598a3d",
         "D4D4D9214A94ACD1C39863C6BEE0786E2E1E6A63"),
        ("e0ac1c290f797d0080e59089856c6091bddf518c6134ab9bb791dfb811e503da",
         "75015e05f31be6054b48aaf2bb4871233d75283c5a576b3078d3181d28fe3855",
         "C4A43A282891CF826392844D1CF1EFEB2F0CE061"),
    ],
}
VECTOR_2_PRIV = "8b4cc92653ab978723978139ade620ee3b6dec623b0a37739859a940aeb6b9d0"
VECTOR_2_CHAIN = "ae994c2521540ead8fb5aaf6dd4d41c35f0dd322d22042483db4fc0914340ce4"
VECTOR_2_FPRS = ["A4C665913A0FF9EBD254B69205755E9571EE33DF", "68114C1F8C34317B0858704E5E54985ADEE10711",
                 "3CBDB34DDBB10C96E437CC229AA06A8B9BCF854D", "F6F26F4372D0E73949D8CBBCDB307CB1EEA44CCA"]


def _components(keys: quorumkey.QuorumKeys) -> list:
    return [keys.primary, keys.sign, keys.encrypt, keys.authenticate]


def test_account_node_of_the_first_vector():
    node = quorumkey.account_node(SEVENS)
    assert (node.private_key.hex(), node.chain_code.hex()) == (VECTOR_1["x_priv"], VECTOR_1["x_chain"])


def test_first_vector_component_keys_and_fingerprints():
    keys = quorumkey.quorum_keys(SEVENS)
    algorithms = [22, 22, 18, 22]
    for key, (priv, pub, fpr), algorithm in zip(_components(keys), VECTOR_1["keys"], algorithms):
        assert key.public.point == b"\x40" + bytes.fromhex(pub)
        assert key.public.fingerprint_hex == fpr
        assert key.public.algorithm == algorithm and key.public.created == 1
    assert keys.primary.private.private_bytes_raw().hex() == VECTOR_1["keys"][0][0]
    assert keys.encrypt.public.key_id.hex().upper() == "BEE0786E2E1E6A63"
    assert keys.encrypt.public.material.endswith(b"\x03\x01\x08\x07")


def test_the_encryption_key_is_the_derived_scalar_as_is():
    # X25519 clamps internally, so the derived scalar and its clamped form are the same key.
    raw = x25519.X25519PrivateKey.from_private_bytes(bytes.fromhex(VECTOR_1["keys"][2][0]))
    ours = quorumkey.decryption_key(SEVENS)
    assert ours.public.point == b"\x40" + raw.public_key().public_bytes_raw()


def test_second_vector_from_a_raw_seed_account_node():
    node = slip10.derive_path(b"\x56" * 32, quorumkey.ACCOUNT_PATH)
    assert (node.private_key.hex(), node.chain_code.hex()) == (VECTOR_2_PRIV, VECTOR_2_CHAIN)
    keys = quorumkey.quorum_keys_from_account(bytes.fromhex(VECTOR_2_PRIV), bytes.fromhex(VECTOR_2_CHAIN))
    assert [k.public.fingerprint_hex for k in _components(keys)] == VECTOR_2_FPRS
    key = quorumkey.decryption_key_from_account(bytes.fromhex(VECTOR_2_PRIV), bytes.fromhex(VECTOR_2_CHAIN))
    assert key.public.fingerprint_hex == VECTOR_2_FPRS[2]
    primary = quorumkey.primary_key_from_account(bytes.fromhex(VECTOR_2_PRIV),
                                                 bytes.fromhex(VECTOR_2_CHAIN))
    assert primary.public.fingerprint_hex == VECTOR_2_FPRS[0]


def test_negative_checks_of_section_9_5_all_change_the_fingerprint():
    expected = VECTOR_1["keys"][0][2]
    # raw E as the SLIP-10 seed instead of the BIP-39 seed
    raw_node = slip10.derive_path(SEVENS, quorumkey.ACCOUNT_PATH)
    assert quorumkey.quorum_keys_from_account(raw_node.private_key, raw_node.chain_code) \
        .primary.public.fingerprint_hex != expected
    # the account node itself as the primary key
    node = quorumkey.account_node(SEVENS)
    account_as_primary = ed25519.Ed25519PrivateKey.from_private_bytes(node.private_key)
    pub = account_as_primary.public_key().public_bytes_raw()
    assert PublicKey.ed25519(pub, 1).fingerprint_hex != expected
    # byte-reversed X25519 scalar
    reversed_key = x25519.X25519PrivateKey.from_private_bytes(bytes.fromhex(VECTOR_1["keys"][2][0])[::-1])
    assert PublicKey.cv25519(reversed_key.public_key().public_bytes_raw(), 1).fingerprint_hex \
        != VECTOR_1["keys"][2][2]
    # creation time other than 1
    primary_pub = bytes.fromhex(VECTOR_1["keys"][0][1])
    assert PublicKey.ed25519(primary_pub, 0).fingerprint_hex != expected
    assert PublicKey.ed25519(primary_pub, 2).fingerprint_hex != expected


def test_the_mnemonic_path_matches_the_spec_words():
    words = bip39.entropy_to_mnemonic(SEVENS).split()
    assert words[0] == "alpha" and words[-1] == "truly" and len(words) == 24


def test_the_derived_encryption_key_decrypts_the_reference_message(caution_v0):
    text = (caution_v0 / "pre-import.asc").read_text()
    assert message.decrypt(text, [quorumkey.decryption_key(SEVENS)]).plaintext == b"encrypted before V0 import"
    node = quorumkey.account_node(SEVENS)
    key = quorumkey.decryption_key_from_account(node.private_key, node.chain_code)
    assert message.decrypt(text, [key]).plaintext == b"encrypted before V0 import"


def test_public_certificate_structure_signatures_and_expiry():
    keys = quorumkey.quorum_keys(SEVENS)
    text = quorumkey.public_certificate(keys, generated=GENERATED)
    assert text.startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n") and text.endswith(
        "-----END PGP PUBLIC KEY BLOCK-----\n")
    assert [p.tag for p in parse_packets(dearmor_one(text))] == [6, 13, 2, 14, 2, 14, 2, 14, 2]
    (cert,) = load_certificates(text)
    expected_expiry = GENERATED + quorumkey.DEFAULT_EXPIRE - 1
    (certification,) = parse_signatures(cert.user_ids[0].signatures)
    assert cert.user_ids[0].packet.body == b"Keymaker-generated key"
    assert certification.sig_type == 0x13 and certification.hash_algorithm == signature.SHA512
    assert certification.key_flags == 0x01 and certification.primary_user_id
    assert certification.key_expiration == expected_expiry
    assert certification.created == GENERATED
    assert certification.issuer_fingerprint == keys.primary.public.fingerprint
    assert certification.issuer_key_id == keys.primary.public.key_id
    assert certification.preferred_symmetric == (9, 7)
    assert certification.preferred_hash == (10, 8)
    assert certification.features == b"\x01"
    flags = {}
    for sub in cert.subkeys:
        (binding,) = parse_signatures(sub.signatures)
        flags[sub.key.fingerprint_hex] = binding.key_flags
        assert binding.key_expiration == expected_expiry
    assert flags == {VECTOR_1["keys"][1][2]: 0x02, VECTOR_1["keys"][2][2]: 0x0C,
                     VECTOR_1["keys"][3][2]: 0x20}
    checks = list(self_signature_checks(cert))
    assert sorted(s.sig_type for _, s, _ in checks) == [0x13, 0x18, 0x18, 0x18, 0x19]
    for signer, sig, target in checks:
        signature.verify(signer, sig, target)


def test_secret_certificate_holds_the_seed_and_the_reversed_clamped_scalar():
    keys = quorumkey.quorum_keys(SEVENS)
    text = quorumkey.secret_certificate(keys, generated=GENERATED, user_id="Ephemeral Locksmith TSK")
    assert text.startswith("-----BEGIN PGP PRIVATE KEY BLOCK-----\n\n")
    packets = parse_packets(dearmor_one(text))
    assert [p.tag for p in packets] == [5, 13, 2, 7, 2, 7, 2, 7, 2]
    assert packets[1].body == b"Ephemeral Locksmith TSK"
    primary_secret = packets[0].body[len(keys.primary.public.body):]
    assert primary_secret[0] == 0  # unprotected
    assert primary_secret[3:35] == bytes.fromhex(VECTOR_1["keys"][0][0])
    scalar = bytearray(bytes.fromhex(VECTOR_1["keys"][2][0]))
    scalar[0] &= 0xF8
    scalar[31] = (scalar[31] & 0x7F) | 0x40
    e_secret = packets[5].body[len(keys.encrypt.public.body):]
    assert e_secret[3:35] == bytes(scalar[::-1])
    ring = load_secret_keys(text)
    assert len(ring.certificates) == 1
    unlocked = [k.unlock() for k in ring.keys]  # unprotected: no passphrase asked for
    assert [k.public for k in unlocked] == [k.public for k in _components(keys)]


def test_certificate_expiry_follows_generation_time_plus_validity_minus_one():
    keys = quorumkey.quorum_keys(SEVENS)
    data = quorumkey.certificate_packets(keys, generated=100, expire=quorumkey.parse_expire("1d"))
    (cert,) = load_certificates(data)
    assert parse_signatures(cert.user_ids[0].signatures)[0].key_expiration == 100 + 86400 - 1
    with pytest.raises(quorumkey.QuorumKeyError):
        quorumkey.certificate_packets(keys, generated=0xFFFFFFF0)


@pytest.mark.parametrize("text,seconds", [
    ("42y", 15330 * 86400), ("1d", 86400), ("3m", 90 * 86400), ("1y", 365 * 86400),
    ("007d", 7 * 86400),
])
def test_expire_values(text, seconds):
    assert quorumkey.parse_expire(text) == seconds


@pytest.mark.parametrize("text", ["", "0d", "1w", "1 d", " 1d", "-1d", "1D", "y", "1.5y", "١d", "1d\n"])
def test_invalid_expire_values_are_refused(text):
    with pytest.raises(quorumkey.QuorumKeyError, match="invalid expiry"):
        quorumkey.parse_expire(text)


def test_default_expiry_is_42_years_of_365_days():
    assert quorumkey.DEFAULT_EXPIRE == 15330 * 86400


def test_shard_signer_vector_and_certificate():
    signer = quorumkey.shard_signer(SEVENS)
    assert signer.private.private_bytes_raw().hex() == \
        "497838992416b0164f8ae80ab750c053a58dc79a0ad08498059038b59c83b876"
    assert signer.public.point == b"\x40" + bytes.fromhex(
        "7b2e4f462dbe41f93889a0da06fa084cabbdd27901b20d21a7b82cec29540180")
    assert signer.public.fingerprint_hex == "F629E823ABDD66CA2FDEF047F98E1466AB60F236"
    data = quorumkey.shard_signer_certificate(signer, created=GENERATED)
    assert [p.tag for p in parse_packets(data)] == [6, 13, 2]
    (cert,) = load_certificates(data)
    uid = cert.user_ids[0].packet.body
    (certification,) = parse_signatures(cert.user_ids[0].signatures)
    assert uid == b"keyfork-sss"
    assert certification.sig_type == 0x13 and certification.key_flags == 0x03
    assert certification.key_expiration is None and cert.subkeys == ()
    signature.verify(signer.public, certification, signature.certification(signer.public, uid))


@pytest.mark.parametrize("bad", [b"", b"\x07" * 31, b"\x07" * 33])
def test_secrets_must_be_32_bytes(bad):
    with pytest.raises(quorumkey.QuorumKeyError):
        quorumkey.quorum_keys(bad)
    with pytest.raises(quorumkey.QuorumKeyError):
        quorumkey.shard_signer(bad)
    with pytest.raises(quorumkey.QuorumKeyError):
        quorumkey.decryption_key_from_account(bad, b"\x00" * 32)
