"""Transport encryption of Q (protocol.md §5): the spec vector, round trips, refusals."""

from __future__ import annotations

import hmac

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from locksmith.core.protocol import transport
from locksmith.core.protocol.transport import EnclaveKey, TransportError, seal, transport_keys

S_SECRET = b"\x11" * 32
C_SECRET = b"\x22" * 32
S = bytes.fromhex("7b4e909bbe7ffe44c465a220037d608ee35897d31ef972f07f74892cb0f73f13")
C = bytes.fromhex("0faa684ed28867b97f4a6a2dee5df8ce974e76b7018e3f22a1c4cf2678570f20")
Z = bytes.fromhex("9e004098efc091d4ec2663b4e9f5cfd4d7064571690b4bea97ab146ab9f35056")
PRK = bytes.fromhex("758cc81a902dd2799eb10475c5fd56b545abb4da87cad9a20496fbf39111c0a3")
K = bytes.fromhex("8ee1b9a76afd0db84c101bb2d1bc71a09d4bdb4d90ff6cfbe27fd75f01f9395c")
N = bytes.fromhex("6e17bf50caced8dcc50b3d4d")
Q = (b'{"shard":[1,183,37,51,206,182,176,254,137,97,141,228,194,36,237,105,208,75,131,171,207,'
     b'107,206,11,154,129,158,67,254,171,249,148,194],"threshold":2}')
CT = bytes.fromhex(
    "e967dad6767714e6c04dc2e12ea941c353f68e3229e43d18e1c863934e6b2739c0038df47c73be658b4c8362"
    "7763ea04930ce477753bd6bdd5e389ffc71ec745106d446219d7faff14d552ca0b4cbc4f7c7f4878dee8236a"
    "9a35b740ee205f9425e56ae1cadd886476f9fdecb09f5a65242e6a521a1d0d20da0c3c3d14806473b3601d2e"
    "6a6847401d474ee558215efad854f50a4d88bd70d00120cd38b07e29e6d8562b")
BUNDLE_HASH = "9e8387963d60c4c74718d475fb19c4e61b5072a70a208156b038b63af6c21159"


def _fixed(value: bytes) -> transport.RandomSource:
    def draw(n: int) -> bytes:
        assert n == len(value)
        return value
    return draw


def _server() -> EnclaveKey:
    return EnclaveKey.generate(_fixed(S_SECRET))


# --- the protocol.md §5 vector -------------------------------------------------------------------


def test_enclave_key_from_spec_secret_has_spec_public_key() -> None:
    assert _server().public_bytes == S


def test_spec_vector_extract_and_both_expands() -> None:
    assert hmac.digest(bytes(32), Z, "sha256") == PRK  # HKDF-Extract without salt
    keys = transport_keys(Z)
    assert (keys.key, keys.nonce) == (K, N)


def test_seal_reproduces_the_spec_ciphertext_and_client_key() -> None:
    sealed = seal(S, Q, random=_fixed(C_SECRET))
    assert sealed.client_public == C
    assert sealed.ciphertext == CT
    assert len(CT) == len(Q) + 16


def test_enclave_opens_the_spec_ciphertext() -> None:
    assert _server().open(C, CT) == Q


def test_bundle_hash_variant_shares_the_first_147_ciphertext_bytes() -> None:
    with_hash = Q[:-1] + b',"bundle_hash":"' + BUNDLE_HASH.encode() + b'"}'
    sealed = seal(S, with_hash, random=_fixed(C_SECRET))
    assert sealed.ciphertext[:147] == CT[:147]
    assert sealed.ciphertext[147] != CT[147]  # Q differs from byte 147 on ('}' vs ',')
    assert _server().open(C, sealed.ciphertext) == with_hash


# --- properties ----------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(st.binary(max_size=600))
def test_seal_then_open_round_trips(plaintext: bytes) -> None:
    server = EnclaveKey.generate()
    sealed = seal(server.public_bytes, plaintext)
    assert server.open(sealed.client_public, sealed.ciphertext) == plaintext


def test_fresh_keys_give_fresh_ciphertexts() -> None:
    server = EnclaveKey.generate()
    assert seal(server.public_bytes, Q).ciphertext != seal(server.public_bytes, Q).ciphertext


@settings(max_examples=40, deadline=None)
@given(st.integers(min_value=0, max_value=len(CT) - 1), st.integers(min_value=1, max_value=255))
def test_any_flipped_ciphertext_bit_fails_to_open(position: int, mask: int) -> None:
    tampered = bytearray(CT)
    tampered[position] ^= mask
    with pytest.raises(TransportError):
        _server().open(C, bytes(tampered))


def test_truncated_or_empty_ciphertext_fails_to_open() -> None:
    for ciphertext in (b"", CT[:15], CT[:-1]):
        with pytest.raises(TransportError):
            _server().open(C, ciphertext)


def test_wrong_client_key_fails_to_open() -> None:
    with pytest.raises(TransportError):
        _server().open(S, CT)


# --- non-contributory keys -------------------------------------------------------------------------

# Small-order points of Curve25519: X25519 with any scalar gives the all-zero shared secret.
SMALL_ORDER = [bytes(32), (1).to_bytes(32, "little"),
               bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800")]


@pytest.mark.parametrize("point", SMALL_ORDER)
def test_enclave_refuses_an_all_zero_shared_secret(point: bytes) -> None:
    with pytest.raises(TransportError, match="all zero"):
        _server().open(point, CT)


@pytest.mark.parametrize("point", SMALL_ORDER)
def test_holder_refuses_an_all_zero_shared_secret(point: bytes) -> None:
    with pytest.raises(TransportError, match="all zero"):
        seal(point, Q)


def test_transport_keys_refuse_an_all_zero_secret() -> None:
    with pytest.raises(TransportError):
        transport_keys(bytes(32))


@pytest.mark.parametrize("length", [0, 31, 33])
def test_public_keys_must_be_32_bytes(length: int) -> None:
    with pytest.raises(TransportError):
        seal(b"\x09" * length, Q)
    with pytest.raises(TransportError):
        _server().open(b"\x09" * length, CT)


def test_repr_shows_no_secret() -> None:
    assert repr(_server()) == f"EnclaveKey(public={S.hex()})"
    assert CT.hex() not in repr(seal(S, Q))
