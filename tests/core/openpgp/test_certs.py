"""Certificate grouping (RFC 4880 §11.1/§11.2) over the fixtures and GnuPG exports."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from locksmith.core.openpgp import armor, packets
from locksmith.core.openpgp.certs import (
    Certificate, CertificateError, is_gnu_stub, load_certificates, split_secret_part,
)
from locksmith.core.openpgp.errors import OpenPGPError, UnsupportedKey
from locksmith.core.openpgp.packets import Packet
from locksmith.core.openpgp.validity import eligibility
from tests.core.openpgp.gpgkit import (
    ALICE_FPR, BOB_FPR, FIXTURE_CREATED, bundle_keyring, gpg_cert, gpg_export, private_asc,
)


def _binary_keyring() -> bytes:
    return armor.dearmor_one(bundle_keyring())


def test_fixture_keyring_holds_alice_then_bob_as_formats_15_says() -> None:
    alice, bob = load_certificates(bundle_keyring())
    assert (alice.fingerprint, bob.fingerprint) == (ALICE_FPR, BOB_FPR)
    assert [u.text for u in alice.user_ids] == ["Alice V0 public TEST KEY"]
    assert [u.text for u in bob.user_ids] == ["Bob V0 public TEST KEY"]
    assert not alice.has_secret and not bob.has_secret
    assert len(alice.subkeys) == 3
    assert all(k.created == FIXTURE_CREATED for k in alice.keys())


def test_private_key_yields_its_public_certificate_and_a_secret_flag() -> None:
    (tsk,) = load_certificates(private_asc("alice"))
    alice, _ = load_certificates(bundle_keyring())
    assert tsk.has_secret and len(tsk.secret_packets) == 4
    assert tsk != alice  # "same packets" includes the secret ones
    assert tsk.public() == alice
    assert tsk.serialize() == alice.serialize()  # canonical form never carries secrets
    assert all(p.tag not in (packets.SECRET_KEY, packets.SECRET_SUBKEY) for p in tsk.packets)


def test_binary_armored_and_multi_block_inputs_agree() -> None:
    binary = _binary_keyring()
    alice, bob = load_certificates(binary)
    two_blocks = alice.armored() + "junk between blocks\n" + bob.armored()
    assert load_certificates(two_blocks) == [alice, bob]
    assert load_certificates(two_blocks.replace("\n", "\r\n").encode()) == [alice, bob]
    assert load_certificates(bundle_keyring()) == [alice, bob]


def test_canonical_serialization_round_trips_and_armors_as_public_key_block() -> None:
    for cert in load_certificates(bundle_keyring()):
        assert load_certificates(cert.serialize()) == [cert]
        assert cert.armored().startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n")
        assert cert.armored().endswith("-----END PGP PUBLIC KEY BLOCK-----\n")
        assert load_certificates(cert.armored()) == [cert]


def test_gnupg_old_format_headers_give_the_same_packets() -> None:
    exported = gpg_export("full")
    assert exported[0] & 0x40 == 0  # GnuPG writes old-format headers
    cert = gpg_cert("full")
    assert load_certificates(cert.serialize()) == [cert]
    assert cert.serialize() != exported


def test_trust_marker_and_padding_packets_are_skipped() -> None:
    alice, bob = load_certificates(bundle_keyring())
    noisy = (Packet(packets.MARKER, b"PGP").serialize() + alice.primary_packet.serialize()
             + Packet(packets.TRUST, b"\x00\x00").serialize()
             + b"".join(p.serialize() for p in alice.packets[1:])
             + Packet(packets.PADDING, b"\x00" * 8).serialize() + bob.serialize())
    assert load_certificates(noisy) == [alice, bob]


def test_empty_input_has_no_certificates() -> None:
    assert load_certificates(b"") == []


@pytest.mark.parametrize("version", [3, 5, 6])
def test_keys_other_than_v4_are_unsupported_key_version(version: int) -> None:
    alice, _ = load_certificates(bundle_keyring())
    body = bytes([version]) + alice.primary_packet.body[1:]
    with pytest.raises(UnsupportedKey, match="unsupported key version"):
        load_certificates(Packet(packets.PUBLIC_KEY, body).serialize())


def test_v6_subkey_is_unsupported_key_version_too() -> None:
    alice, _ = load_certificates(bundle_keyring())
    sub = alice.subkeys[0].packet
    data = alice.primary_packet.serialize() + Packet(sub.tag, b"\x06" + sub.body[1:]).serialize()
    with pytest.raises(UnsupportedKey, match="unsupported key version"):
        load_certificates(data)


def test_stream_not_starting_with_a_key_is_a_certificate_error() -> None:
    alice, _ = load_certificates(bundle_keyring())
    with pytest.raises(CertificateError,
                       match="expected a primary key packet, found packet tag 13"):
        load_certificates(alice.user_ids[0].packet.serialize() + alice.serialize())


def test_unexpected_packet_inside_a_certificate_is_named() -> None:
    alice, _ = load_certificates(bundle_keyring())
    with pytest.raises(CertificateError, match=r"unexpected packet \(tag 11\)"):
        literal = Packet(packets.LITERAL, b"b\x00\x00\x00\x00\x00")
        load_certificates(alice.serialize() + literal.serialize())


def test_gnupg_stub_primary_is_not_secret_material() -> None:
    (cert,) = load_certificates(gpg_export("full", "--export-secret-subkeys"))
    primary = cert.primary
    assert primary.fingerprint not in cert.secret_packets
    assert len(cert.secret_packets) == 3 and cert.has_secret
    assert cert.public() == gpg_cert("full")


def test_stub_detection_reads_the_gnu_extension() -> None:
    assert is_gnu_stub(b"\xfe\x00\x65\x02GNU\x01")
    assert is_gnu_stub(b"\xff\x00\x65\x02GNU\x02\x10" + b"\x00" * 16)
    assert not is_gnu_stub(b"\xfe\x07\x03\x02" + b"\x00" * 9)
    assert not is_gnu_stub(b"\x00\x00\x01\x01")
    (tsk,) = load_certificates(private_asc("alice"))
    packet = tsk.secret_packets[tsk.primary.fingerprint]
    assert split_secret_part(packet.body, tsk.primary)[0] == 0  # unprotected


def test_equality_is_same_packets_and_hashable() -> None:
    alice, bob = load_certificates(bundle_keyring())
    (again, _) = load_certificates(_binary_keyring())
    assert alice == again and hash(alice) == hash(again)
    assert alice != bob
    assert len({alice, again, bob}) == 2


def test_rsa_holder_parses_with_three_subkeys() -> None:
    cert = gpg_cert("rsa")
    assert cert.primary.rsa_n is not None and cert.primary.rsa_n.bit_length() == 3072
    assert len(cert.subkeys) == 3 and all(s.key.supported for s in cert.subkeys)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_keyring_raises_only_openpgp_errors(data: st.DataObject) -> None:
    original = bytearray(_binary_keyring())
    mutated = original
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(mutated) - 1))
        action = data.draw(st.sampled_from(["flip", "cut", "insert", "truncate"]))
        if action == "flip":
            mutated[pos] ^= data.draw(st.integers(1, 255))
        elif action == "cut":
            del mutated[pos : pos + data.draw(st.integers(1, 16))]
        elif action == "insert":
            mutated[pos:pos] = data.draw(st.binary(min_size=1, max_size=8))
        else:
            del mutated[pos:]
        if not mutated:
            return
    try:
        certs = load_certificates(bytes(mutated))
    except OpenPGPError:
        return
    for cert in certs:  # whatever loads must also be judged without an exception
        assert isinstance(cert, Certificate)
        eligibility(cert, 1800000000)
        cert.armored()


def test_key_packet_too_large_for_a_v4_fingerprint_is_refused() -> None:
    alice, _ = load_certificates(bundle_keyring())
    body = alice.primary_packet.body[:6] + b"\x00" * 70000  # an opaque algorithm id 22 body
    huge = Packet(packets.PUBLIC_KEY, body[:5] + bytes([99]) + body[6:])
    with pytest.raises(CertificateError, match="too large"):
        load_certificates(huge.serialize())


def test_text_with_a_lone_surrogate_is_a_certificate_error() -> None:
    with pytest.raises(CertificateError, match="not valid Unicode"):
        load_certificates(bundle_keyring() + "\ud800")
