"""GnuPG as the oracle: it accepts what we write, and we read and verify what it writes."""

from __future__ import annotations

import pytest

from locksmith.core.openpgp import message, quorumkey, signature, validity
from locksmith.core.openpgp.armor import armor
from locksmith.core.openpgp.certs import load_certificates
from locksmith.core.openpgp.keys import SecretKey
from locksmith.core.openpgp.packets import parse_packets
from locksmith.core.openpgp.secretkeys import load_secret_keys
from tests.core.openpgp.openpgp_testkit import self_signature_checks
from tests.oracles import GpgKey, gpg_home

pytestmark = pytest.mark.interop
HOLDERS = ["gpg_rsa_holder", "gpg_p256_holder", "gpg_ed25519_holder"]  # conftest fixtures

SEVENS = b"\x07" * 32
GENERATED = 1_700_000_000
KEYS = quorumkey.quorum_keys(SEVENS)
PUBLIC = quorumkey.public_certificate(KEYS, generated=GENERATED)
TSK = quorumkey.secret_certificate(KEYS, generated=GENERATED)
E_FPR = "D4D4D9214A94ACD1C39863C6BEE0786E2E1E6A63"


def _unlocked(key: GpgKey) -> list[SecretKey]:
    return [k.unlock() for k in load_secret_keys(key.secret).keys]


def test_gpg_imports_the_quorum_certificate_and_finds_every_signature_good():
    with gpg_home() as gpg:
        gpg.import_(PUBLIC)
        listing = gpg.run("--with-colons", "--fixed-list-mode", "--check-sigs").stdout.decode()
        sigs = [line for line in listing.splitlines() if line.startswith("sig:")]
        assert len(sigs) == 4 and all(line.split(":")[1] == "!" for line in sigs)
        keys = gpg.run("--with-colons", "--list-keys").stdout.decode().splitlines()
        pub = next(line for line in keys if line.startswith("pub:")).split(":")
        assert pub[1] not in ("e", "r", "i")  # valid, not expired
        assert int(pub[6]) == GENERATED + quorumkey.DEFAULT_EXPIRE  # absolute expiry
        fprs = [line.split(":")[9] for line in keys if line.startswith("fpr:")]
        assert fprs == ["15B0E570536A4B00A90151DB726E3FCA18892D05",
                        "A095E34E0C48D9C86F2CF911B9FE66798C956754", E_FPR,
                        "C4A43A282891CF826392844D1CF1EFEB2F0CE061"]
        caps = [line.split(":")[11] for line in keys if line.startswith(("pub:", "sub:"))]
        assert caps[1:] == ["s", "e", "a"]


def test_gpg_decrypts_our_messages_with_the_quorum_tsk():
    real = armor("MESSAGE", message.encrypt(b"exact value\n", [KEYS.encrypt.public]))
    wildcard = message.encrypt(b"to nobody in particular", [KEYS.encrypt.public], wildcard=True)
    with gpg_home() as gpg:
        gpg.import_(TSK)
        assert gpg.run("--decrypt", input=real.encode()).stdout == b"exact value\n"
        assert gpg.run("--try-all-secrets", "--decrypt", input=wildcard).stdout == \
            b"to nobody in particular"


def test_gpg_decrypts_the_reference_message_with_our_tsk(caution_v0):
    with gpg_home() as gpg:
        gpg.import_(TSK)
        out = gpg.run("--decrypt", str(caution_v0 / "pre-import.asc")).stdout
    assert out == b"encrypted before V0 import"


def test_we_decrypt_gpg_messages_to_the_quorum_key_compressed_by_default():
    with gpg_home() as gpg:
        gpg.import_(PUBLIC)
        made = {}
        for name, extra in (("default", []), ("none", ["-z", "0"]),
                            ("zlib", ["--compress-algo", "zlib"]),
                            ("bzip2", ["--compress-algo", "bzip2"])):
            data = b"gpg plaintext " * 50
            ct = gpg.run("--trust-model", "always", *extra, "--encrypt", "-r", E_FPR, input=data).stdout
            out = message.decrypt(ct, [quorumkey.decryption_key(SEVENS)])
            assert out.plaintext == data
            made[name] = ct
        gpg.import_(TSK)
        listing = gpg.run("--list-packets", input=made["default"]).stdout
        assert b":compressed packet: algo=1" in listing  # GnuPG's default: ZIP


def test_we_decrypt_and_verify_gpg_signed_and_encrypted_messages(gpg_ed25519_holder: GpgKey):
    with gpg_home() as gpg:
        gpg.import_(gpg_ed25519_holder.secret)
        gpg.import_(PUBLIC)
        ct = gpg.run("--trust-model", "always", "--sign", "--encrypt", "-r", E_FPR,
                     "-u", gpg_ed25519_holder.fingerprint, input=b"signed inside").stdout
    out = message.decrypt(ct, [quorumkey.decryption_key(SEVENS)])
    assert out.plaintext == b"signed inside"
    (sig,) = out.signatures
    (ops,) = out.one_pass_signatures
    signer = next(k for k in _unlocked(gpg_ed25519_holder) if k.public.key_id == sig.issuer_key_id)
    assert ops.key_id == signer.public.key_id
    signature.verify(signer.public, sig, signature.document(out.plaintext))


@pytest.mark.parametrize("fixture", HOLDERS)
def test_gpg_and_we_exchange_messages_for_gpg_made_keys(fixture, request):
    key: GpgKey = request.getfixturevalue(fixture)
    ours = _unlocked(key)
    with gpg_home() as gpg:
        gpg.import_(key.public)
        ct = gpg.run("--trust-model", "always", "--encrypt", "-r", key.fingerprint,
                     input=b"from gpg").stdout
        assert message.decrypt(ct, ours).plaintext == b"from gpg"
        (cert,) = load_certificates(key.public)
        enc = validity.decryption_keys(cert)
        assert [k.fingerprint for k in enc] == [s.key.fingerprint for s in cert.subkeys[1:2]]
        gpg.import_(key.secret)
        for wildcard in (False, True):
            msg = message.encrypt(b"from us", enc, wildcard=wildcard)
            args = ["--try-all-secrets"] if wildcard else []
            assert gpg.run(*args, "--decrypt", input=msg).stdout == b"from us"


@pytest.mark.parametrize("fixture", HOLDERS)
def test_every_self_signature_and_back_signature_of_gpg_made_keys_verifies(fixture, request):
    key: GpgKey = request.getfixturevalue(fixture)
    for data in (key.public, key.secret):
        (cert,) = load_certificates(data)
        checks = list(self_signature_checks(cert))
        assert any(s.sig_type == 0x13 for _, s, _ in checks)
        for signer, sig, target in checks:
            signature.verify(signer, sig, target)


def test_a_flipped_byte_in_a_gpg_binding_fails(gpg_rsa_holder: GpgKey):
    (cert,) = load_certificates(gpg_rsa_holder.public)
    sub = cert.subkeys[0]
    body = bytearray(sub.signatures[0].body)
    body[-10] ^= 0x40
    flipped = signature.Signature.parse(bytes(body))
    with pytest.raises(signature.SignatureError):
        signature.verify(cert.primary, flipped, signature.subkey_binding(cert.primary, sub.key))


@pytest.mark.parametrize("sig_type", [signature.BINARY, signature.TEXT])
def test_gpg_verifies_our_detached_signatures_by_the_quorum_signing_subkey(sig_type, tmp_path):
    data = b"line one\nline two\n"
    sig = signature.create(KEYS.sign, signature.document(data), sig_type, created=GENERATED)
    (tmp_path / "data").write_bytes(data)
    (tmp_path / "data.sig").write_bytes(sig.packet())
    with gpg_home() as gpg:
        gpg.import_(PUBLIC)
        proc = gpg.run("--verify", str(tmp_path / "data.sig"), str(tmp_path / "data"), status=True)
        assert b"[GNUPG:] GOODSIG" in proc.status
        assert b"A095E34E0C48D9C86F2CF911B9FE66798C956754" in proc.status


@pytest.mark.parametrize("textmode", [False, True])
def test_we_verify_gpg_detached_signatures(gpg_ed25519_holder: GpgKey, gpg_rsa_holder: GpgKey,
                                           textmode):
    data = b"holder statement\nsecond line\n"
    for key in (gpg_ed25519_holder, gpg_rsa_holder):
        with gpg_home() as gpg:
            gpg.import_(key.secret)
            args = ["--textmode"] if textmode else []
            raw = gpg.run(*args, "--detach-sign", "-u", key.fingerprint, input=data).stdout
        (packet,) = parse_packets(raw)
        sig = signature.Signature.parse(packet.body)
        assert sig.sig_type == (signature.TEXT if textmode else signature.BINARY)
        signer = next(k for k in _unlocked(key) if k.public.fingerprint == sig.issuer_fingerprint)
        signature.verify(signer.public, sig, signature.document(data))
        with pytest.raises(signature.BadSignature):
            signature.verify(signer.public, sig, signature.document(data + b"x"))
