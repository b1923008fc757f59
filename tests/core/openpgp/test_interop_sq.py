"""Sequoia (`sq` 0.27) as the oracle: the implementation the reference itself is built on."""

from __future__ import annotations

import pytest

from locksmith.core.openpgp import message, quorumkey, signature
from locksmith.core.openpgp.armor import armor, dearmor_one
from locksmith.core.openpgp.packets import parse_packets
from locksmith.core.openpgp.secretkeys import load_secret_keys
from tests.oracles import GpgKey, sq

pytestmark = pytest.mark.interop

SEVENS = b"\x07" * 32
GENERATED = 1_700_000_000
KEYS = quorumkey.quorum_keys(SEVENS)
PUBLIC = quorumkey.public_certificate(KEYS, generated=GENERATED)
TSK = quorumkey.secret_certificate(KEYS, generated=GENERATED)


@pytest.fixture()
def files(tmp_path):
    (tmp_path / "cert.asc").write_text(PUBLIC)
    (tmp_path / "tsk.asc").write_text(TSK)
    return tmp_path


def test_sq_accepts_the_quorum_certificate_with_its_subkeys(files):
    out = sq("inspect", str(files / "cert.asc")).stdout.decode()
    assert "15B0E570536A4B00A90151DB726E3FCA18892D05" in out
    for fpr in ("A095E34E0C48D9C86F2CF911B9FE66798C956754", "D4D4D9214A94ACD1C39863C6BEE0786E2E1E6A63",
                "C4A43A282891CF826392844D1CF1EFEB2F0CE061"):
        assert fpr in out
    assert "Invalid" not in out and "invalid" not in out
    assert "Keymaker-generated key" in out


@pytest.mark.parametrize("wildcard", [False, True])
def test_sq_decrypts_our_messages_with_the_quorum_tsk(files, wildcard):
    (files / "msg.asc").write_text(armor("MESSAGE", message.encrypt(
        b"exact value\n", [KEYS.encrypt.public], wildcard=wildcard)))
    out = sq("decrypt", "--recipient-key", str(files / "tsk.asc"), str(files / "msg.asc")).stdout
    assert out == b"exact value\n"


def test_sq_decrypts_the_reference_message_with_our_tsk(files, caution_v0):
    out = sq("decrypt", "--recipient-key", str(files / "tsk.asc"),
             str(caution_v0 / "pre-import.asc")).stdout
    assert out == b"encrypted before V0 import"


@pytest.mark.parametrize("compression", ["pad", "none", "zip", "zlib", "bzip2"])
def test_we_decrypt_sq_messages_to_the_quorum_certificate(files, compression):
    ct = sq("encrypt", "--compression", compression, "--recipient-cert", str(files / "cert.asc"),
            input=b"from sequoia").stdout
    assert message.decrypt(ct, [quorumkey.decryption_key(SEVENS)]).plaintext == b"from sequoia"


def test_we_decrypt_sq_messages_to_a_gpg_made_rsa_3072_key(tmp_path, gpg_rsa_holder: GpgKey):
    (tmp_path / "rsa.pgp").write_bytes(gpg_rsa_holder.public)
    ct = sq("encrypt", "--recipient-cert", str(tmp_path / "rsa.pgp"), input=b"to rsa").stdout
    pkesks = [p for p in parse_packets(dearmor_one(ct)) if p.tag == 1]
    assert pkesks and all(p.body[9] == 1 for p in pkesks)  # RSA PKESKs
    ours = [k.unlock() for k in load_secret_keys(gpg_rsa_holder.secret).keys]
    assert message.decrypt(ct, ours).plaintext == b"to rsa"


def test_we_decrypt_and_verify_sq_signed_and_encrypted_messages(files):
    ct = sq("encrypt", "--recipient-cert", str(files / "cert.asc"),
            "--signer-key", str(files / "tsk.asc"), input=b"signed by the quorum").stdout
    out = message.decrypt(ct, [KEYS.encrypt])
    assert out.plaintext == b"signed by the quorum"
    (sig,) = out.signatures
    assert sig.issuer_fingerprint == KEYS.sign.public.fingerprint
    signature.verify(KEYS.sign.public, sig, signature.document(out.plaintext))


def test_sq_verifies_our_detached_signature(files):
    data = b"holder statement\n"
    sig = signature.create(KEYS.sign, signature.document(data), signature.BINARY, created=GENERATED)
    (files / "data").write_bytes(data)
    (files / "data.sig").write_text(armor("SIGNATURE", sig.packet()))
    proc = sq("verify", "--signer-cert", str(files / "cert.asc"), "--detached",
              str(files / "data.sig"), str(files / "data"))
    assert b"1 good signature" in proc.stderr


def test_we_verify_sq_detached_signatures(files):
    data = b"signed by sq\n"
    (files / "data").write_bytes(data)
    raw = sq("sign", "--detached", "--binary", "--signer-key", str(files / "tsk.asc"),
             str(files / "data")).stdout
    (packet,) = parse_packets(raw)
    sig = signature.Signature.parse(packet.body)
    assert sig.notations and sig.notations[0].name == "salt@notations.sequoia-pgp.org"
    signature.verify(KEYS.sign.public, sig, signature.document(data))
