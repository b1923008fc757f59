"""PKESK v3 + SEIPD v1 messages: layout written, grammar read, trial decryption, failures."""

from __future__ import annotations

import bz2
import subprocess
import sys
import zlib

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa, x25519
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from locksmith.core.openpgp import message, pkesk, seipd, signature
from locksmith.core.openpgp.armor import armor
from locksmith.core.openpgp.errors import DecryptionError, MessageError, OpenPGPError
from locksmith.core.openpgp.keys import OID_P256, PublicKey, SecretKey, encode_mpi
from locksmith.core.openpgp.packets import encode_packet, parse_packets
from tests.core.openpgp.openpgp_testkit import nist_ecdh_key

CANNOT = "selected key cannot decrypt this message"


def _cv25519(i: int) -> SecretKey:
    private = x25519.X25519PrivateKey.from_private_bytes(bytes([i]) * 32)
    return SecretKey(PublicKey.cv25519(private.public_key().public_bytes_raw(), 1), private)


def _rsa(private: rsa.RSAPrivateKey) -> SecretKey:
    n = private.public_key().public_numbers()
    body = b"\x04\x00\x00\x00\x01\x01" + encode_mpi(n.n) + encode_mpi(n.e)
    return SecretKey(PublicKey.parse(body), private)


X25519_KEYS = [_cv25519(i) for i in range(1, 6)]
RSA_KEY = _rsa(rsa.generate_private_key(65537, 2048))
P256_KEY = nist_ecdh_key(ec.SECP256R1(), OID_P256, 8, 7)
POOL = [*X25519_KEYS, RSA_KEY, P256_KEY]
SIGNER_PRIVATE = ed25519.Ed25519PrivateKey.from_private_bytes(b"\x33" * 32)
SIGNER = SecretKey(PublicKey.ed25519(SIGNER_PRIVATE.public_key().public_bytes_raw(), 1),
                   SIGNER_PRIVATE)


def _session(msg: bytes, key: SecretKey) -> tuple[int, bytes]:
    packets = parse_packets(msg)
    for p in packets[:-1]:
        try:
            return pkesk.unwrap(pkesk.PKESK.parse(p.body), key)
        except DecryptionError:
            continue
    raise AssertionError("no PKESK for key")


def _with_inner(inner: bytes, recipient: SecretKey) -> bytes:
    """A message around arbitrary inner packets, bypassing `encrypt`'s own inner check."""
    key = b"\x01" * 32
    return (pkesk.build(recipient.public, pkesk.AES256, key).packet()
            + encode_packet(18, seipd.encrypt(pkesk.AES256, key, inner)))


# --- writing ---------------------------------------------------------------------------------


def test_written_message_is_one_pkesk_per_recipient_then_seipd_v1_with_aes256():
    msg = message.encrypt(b"value", [X25519_KEYS[0].public, RSA_KEY.public])
    packets = parse_packets(msg)
    assert [p.tag for p in packets] == [1, 1, 18]
    assert msg[0] == 0xC1  # new-format header, tag 1
    first, second = (pkesk.PKESK.parse(p.body) for p in packets[:2])
    assert (first.key_id, first.algorithm) == (X25519_KEYS[0].public.key_id, 18)
    assert (second.key_id, second.algorithm) == (RSA_KEY.public.key_id, 1)
    assert packets[2].body[0] == 1
    assert _session(msg, X25519_KEYS[0])[0] == 9  # AES-256


def test_written_literal_is_binary_with_empty_name_and_date_zero():
    msg = message.encrypt(b"value", [X25519_KEYS[0].public])
    cipher, key = _session(msg, X25519_KEYS[0])
    inner = seipd.decrypt(cipher, key, parse_packets(msg)[-1].body)
    assert inner == encode_packet(11, b"b\x00\x00\x00\x00\x00value")


def test_wildcard_messages_carry_all_zero_key_ids():
    msg = message.encrypt(b"v", [k.public for k in X25519_KEYS[:3]], wildcard=True)
    ids = [pkesk.PKESK.parse(p.body).key_id for p in parse_packets(msg)[:-1]]
    assert ids == [bytes(8)] * 3


def test_encrypting_to_nobody_or_to_a_signing_key_is_refused():
    with pytest.raises(ValueError):
        message.encrypt(b"v", [])
    with pytest.raises(OpenPGPError):
        message.encrypt(b"v", [SIGNER.public])


def test_inner_packets_must_carry_the_plaintext_as_their_literal_body():
    inner = message.signed_literal(b"share", SIGNER, created=5)
    with pytest.raises(ValueError):
        message.encrypt(b"other", [X25519_KEYS[0].public], inner=inner)
    with pytest.raises(MessageError):
        message.encrypt(b"", [X25519_KEYS[0].public], inner=b"\xc2\x01\x00")


def test_signed_literal_round_trips_with_a_verifiable_signature():
    inner = message.signed_literal(b"share", SIGNER, created=5)
    msg = message.encrypt(b"share", [X25519_KEYS[1].public], wildcard=True, inner=inner)
    out = message.decrypt(msg, X25519_KEYS)
    assert out.plaintext == b"share" and out.key is X25519_KEYS[1]
    (ops,) = out.one_pass_signatures
    assert (ops.sig_type, ops.hash_algorithm, ops.pubkey_algorithm, ops.key_id, ops.last) == (
        0, 10, 22, SIGNER.public.key_id, True)
    (sig,) = out.signatures
    assert sig.created == 5 and sig.issuer_fingerprint == SIGNER.public.fingerprint
    signature.verify(SIGNER.public, sig, signature.document(out.plaintext))


# --- reading: trial decryption ---------------------------------------------------------------


def test_each_recipient_can_decrypt_and_the_decrypting_key_is_reported():
    msg = message.encrypt(b"to all", [k.public for k in POOL])
    for key in POOL:
        out = message.decrypt(msg, [key])
        assert out.plaintext == b"to all" and out.key is key


def test_a_wildcard_pkesk_is_tried_with_every_key_of_its_algorithm():
    msg = message.encrypt(b"w", [X25519_KEYS[4].public, RSA_KEY.public], wildcard=True)
    assert message.decrypt(msg, X25519_KEYS).key is X25519_KEYS[4]
    assert message.decrypt(msg, [P256_KEY, RSA_KEY]).key is RSA_KEY


def test_a_pkesk_with_a_real_key_id_is_only_tried_with_that_key():
    # A PKESK that names key 0 but is wrapped for key 1: key 1 must not be tried on it.
    built = pkesk.build(X25519_KEYS[1].public, pkesk.AES256, b"\x01" * 32)
    misnamed = pkesk.PKESK(X25519_KEYS[0].public.key_id, 18, built.fields)
    msg = misnamed.packet() + encode_packet(18, seipd.encrypt(9, b"\x01" * 32, b"\xcb\x06b\x00\x00\x00\x00\x00"))
    with pytest.raises(message.NoMatchingRecipient):
        message.decrypt(msg, [X25519_KEYS[1]])
    with pytest.raises(DecryptionError, match=CANNOT):
        message.decrypt(msg, [X25519_KEYS[0], X25519_KEYS[1]])


def test_a_session_key_whose_mdc_fails_means_try_the_next_pkesk():
    good = message.encrypt(b"second wins", [X25519_KEYS[0].public])
    decoy = pkesk.build(X25519_KEYS[0].public, pkesk.AES256, b"\x07" * 32)
    out = message.decrypt(decoy.packet() + good, [X25519_KEYS[0]])
    assert out.plaintext == b"second wins"


def test_wrong_keys_give_the_single_cannot_decrypt_error():
    msg = message.encrypt(b"x", [X25519_KEYS[0].public], wildcard=True)
    with pytest.raises(DecryptionError, match=f"^{CANNOT}$") as caught:
        message.decrypt(msg, X25519_KEYS[1:])
    assert not isinstance(caught.value, message.NoMatchingRecipient)


def test_no_pkesk_for_any_given_key_is_no_matching_recipient():
    msg = message.encrypt(b"x", [X25519_KEYS[0].public])
    with pytest.raises(message.NoMatchingRecipient, match=f"^{CANNOT}$"):
        message.decrypt(msg, X25519_KEYS[1:])
    msg = message.encrypt(b"x", [RSA_KEY.public], wildcard=True)
    with pytest.raises(message.NoMatchingRecipient):
        message.decrypt(msg, X25519_KEYS)  # wildcard RSA PKESK: no RSA key offered


def test_armored_input_is_accepted():
    msg = message.encrypt(b"armored", [X25519_KEYS[0].public])
    assert message.decrypt(armor("MESSAGE", msg), [X25519_KEYS[0]]).plaintext == b"armored"
    assert message.decrypt(armor("MESSAGE", msg).encode(), [X25519_KEYS[0]]).plaintext == b"armored"


def test_partial_body_lengths_and_old_format_headers_are_read():
    msg = message.encrypt(b"p" * 3000, [X25519_KEYS[0].public])
    first, seipd_packet = parse_packets(msg)
    body = seipd_packet.body
    partial = b"\xd2" + b"\xea" + body[:1024] + b"\xe9" + body[1024:1536]  # 1024, 512 ...
    rest = body[1536:]
    partial += bytes([192 + ((len(rest) - 192) >> 8), (len(rest) - 192) & 0xFF]) + rest
    old_pkesk = bytes([0x80 | (1 << 2) | 0, len(first.body)]) + first.body
    assert message.decrypt(old_pkesk + partial, [X25519_KEYS[0]]).plaintext == b"p" * 3000


def test_marker_and_passphrase_esk_packets_are_skipped():
    msg = message.encrypt(b"m", [X25519_KEYS[0].public])
    marker = encode_packet(10, b"PGP")
    skesk = encode_packet(3, b"\x04\x09\x03\x08" + bytes(9))
    assert message.decrypt(marker + skesk + msg, [X25519_KEYS[0]]).plaintext == b"m"
    with pytest.raises(message.NoMatchingRecipient):
        message.decrypt(skesk + parse_packets(msg)[-1].serialize(), [X25519_KEYS[0]])


# --- reading: what is refused ----------------------------------------------------------------


def test_symmetrically_encrypted_data_without_mdc_is_refused():
    msg = message.encrypt(b"x", [X25519_KEYS[0].public])
    head = parse_packets(msg)[0].serialize()
    with pytest.raises(message.NotIntegrityProtected, match="not integrity protected"):
        message.decrypt(head + encode_packet(9, bytes(40)), [X25519_KEYS[0]])


def test_aead_and_seipd_v2_are_refused_with_clear_messages():
    head = parse_packets(message.encrypt(b"x", [X25519_KEYS[0].public]))[0].serialize()
    with pytest.raises(message.UnsupportedMessage, match="AEAD"):
        message.decrypt(head + encode_packet(20, b"\x01" + bytes(40)), [X25519_KEYS[0]])
    with pytest.raises(message.UnsupportedMessage, match="SEIPD v2"):
        message.decrypt(head + encode_packet(18, b"\x02" + bytes(40)), [X25519_KEYS[0]])


@pytest.mark.parametrize("bad", [
    b"",
    encode_packet(11, b"b\x00\x00\x00\x00\x00x"),
    encode_packet(18, b"\x01" + bytes(40)),  # no session key at all
])
def test_structurally_wrong_messages_are_malformed(bad):
    with pytest.raises(MessageError, match="malformed message"):
        message.decrypt(bad, X25519_KEYS)


def test_two_concatenated_messages_are_not_one_message():
    msg = message.encrypt(b"x", [X25519_KEYS[0].public])
    with pytest.raises(MessageError, match="malformed message"):
        message.decrypt(msg + msg, [X25519_KEYS[0]])


def test_a_flipped_ciphertext_byte_fails_the_mdc():
    msg = bytearray(message.encrypt(b"tamper me" * 10, [X25519_KEYS[0].public]))
    msg[-30] ^= 0x01
    with pytest.raises(DecryptionError, match=CANNOT):
        message.decrypt(bytes(msg), [X25519_KEYS[0]])


@pytest.mark.parametrize("inner,why", [
    (b"", "0 literal"),
    (encode_packet(11, b"b\x00\x00\x00\x00\x00a") * 2, "2 literal"),
    (encode_packet(13, b"uid") + encode_packet(11, b"b\x00\x00\x00\x00\x00a"), "tag 13"),
    (encode_packet(11, b"b\x05ab"), "truncated literal"),
    (encode_packet(8, b"\x02not zlib"), "invalid compressed"),
    (encode_packet(8, b"\x02" + zlib.compress(encode_packet(11, b"b\x00\x00\x00\x00\x00a"))[:-6]),
     "truncated compressed"),
    (encode_packet(8, b"\x07whatever"), "compression algorithm 7"),
])
def test_bad_inner_content_after_a_valid_mdc_is_malformed(inner, why):
    with pytest.raises(MessageError, match=why):
        message.decrypt(_with_inner(inner, X25519_KEYS[0]), [X25519_KEYS[0]])


LITERAL = encode_packet(11, b"b\x00\x00\x00\x00\x00compressed!")


@pytest.mark.parametrize("compressed", [
    b"\x00" + LITERAL,
    b"\x01" + (lambda c: c.compress(LITERAL) + c.flush())(zlib.compressobj(9, zlib.DEFLATED, -15)),
    b"\x02" + zlib.compress(LITERAL),
    b"\x03" + bz2.compress(LITERAL),
])
def test_uncompressed_zip_zlib_and_bzip2_layers_are_read(compressed):
    msg = _with_inner(encode_packet(8, compressed), X25519_KEYS[0])
    assert message.decrypt(msg, [X25519_KEYS[0]]).plaintext == b"compressed!"


def test_decompression_is_limited_to_max_size():
    body = bytes(2 << 20)
    literal = b"\xcb\xff" + (6 + len(body)).to_bytes(4, "big") + b"b\x00\x00\x00\x00\x00" + body
    for compressed in (b"\x02" + zlib.compress(literal), b"\x03" + bz2.compress(literal)):
        msg = _with_inner(encode_packet(8, compressed), X25519_KEYS[0])
        with pytest.raises(message.DecompressionLimit, match="exceeds 1048576 bytes"):
            message.decrypt(msg, [X25519_KEYS[0]])
        assert message.decrypt(msg, [X25519_KEYS[0]], max_size=3 << 20).plaintext == body
        with pytest.raises(message.DecompressionLimit):
            message.decrypt(msg, [X25519_KEYS[0]], max_size=1000)


def test_importing_the_message_layer_does_not_import_pgpy():
    code = ("import sys; import locksmith.core.openpgp.message, locksmith.core.openpgp.quorumkey, "
            "locksmith.core.openpgp.signature, locksmith.core.openpgp.ecdh; "
            "assert 'pgpy' not in sys.modules, 'pgpy imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


# --- properties ------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plaintext=st.binary(max_size=3000),
       recipients=st.lists(st.sampled_from(POOL), min_size=1, max_size=5, unique_by=id),
       wildcard=st.booleans(), data=st.data())
def test_encrypt_then_decrypt_round_trips(plaintext, recipients, wildcard, data):
    msg = message.encrypt(plaintext, [k.public for k in recipients], wildcard=wildcard)
    key = data.draw(st.sampled_from(recipients))
    decoys = [k for k in POOL if k not in recipients]
    out = message.decrypt(msg, [*decoys, key])
    assert out.plaintext == plaintext and out.key is key


_MUTATION_SOURCE = message.encrypt(b"the true plaintext", [X25519_KEYS[0].public, RSA_KEY.public])


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_ciphertexts_raise_only_library_errors_and_never_a_wrong_plaintext(data):
    msg = bytearray(_MUTATION_SOURCE)
    for _ in range(data.draw(st.integers(1, 3))):
        kind = data.draw(st.sampled_from(["flip", "truncate", "insert", "delete"]))
        pos = data.draw(st.integers(0, max(0, len(msg) - 1)))
        if kind == "flip" and msg:
            msg[pos] ^= data.draw(st.integers(1, 255))
        elif kind == "truncate":
            del msg[pos:]
        elif kind == "insert":
            msg[pos:pos] = data.draw(st.binary(min_size=1, max_size=4))
        elif msg:
            del msg[pos]
    try:
        out = message.decrypt(bytes(msg), [X25519_KEYS[0], RSA_KEY])
    except OpenPGPError:
        return
    assert out.plaintext == b"the true plaintext"


def test_a_session_key_for_a_non_aes_cipher_is_reported_as_unsupported():
    key = X25519_KEYS[0]
    cast5 = bytes(16)
    block = bytes([3]) + cast5 + (sum(cast5) & 0xFFFF).to_bytes(2, "big")
    from locksmith.core.openpgp import ecdh

    esk = pkesk.PKESK(key.public.key_id, 18, ecdh.encrypt_block(key.public, block))
    msg = esk.packet() + encode_packet(18, b"\x01" + bytes(60))
    with pytest.raises(message.UnsupportedMessage, match="symmetric algorithm 3"):
        message.decrypt(msg, [key])
