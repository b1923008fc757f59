"""The smart-card harness itself (tests/cardkit): a private pcscd, vpcd readers, jcecard cards,
raw-APDU provisioning and GnuPG's keytocard. If these fail, no card test can be believed.

Every test name contains "card", so `pytest -k card` selects them.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa, utils, x25519

from locksmith.core.openpgp.certs import load_certificates
from locksmith.core.openpgp.keygen import generate_holder_key
from tests.cardkit import fixtures, stack
from tests.cardkit.gnupg import gnupg_card_holder, keytocard
from tests.cardkit.provision import (
    PW1,
    PW3,
    CardError,
    CardSession,
    card_keys_from_keyring,
    card_state,
    cv25519_key,
    ed25519_key,
    edit_card_state,
    provision,
    rsa_key,
    set_retry_counters,
    set_uif,
)
from tests.cardkit.stack import CardStack, VirtualCard, list_readers, wait_reader
from tests.oracles import GpgKey

REPO = Path(__file__).resolve().parents[1]
SHA256_DIGESTINFO_PREFIX = bytes.fromhex("3031300d060960864801650304020105000420")


# --- the stack ----------------------------------------------------------------------------------


def test_card_readers_appear_on_a_private_pcscd(card_stack: CardStack) -> None:
    port = card_stack.port
    assert card_stack.readers == [f"Virtual PCD {port} 00 00", f"Virtual PCD {port} 00 01"]
    assert card_stack.env == {"PCSCLITE_CSOCK_NAME": card_stack.socket}
    assert os.environ["PCSCLITE_CSOCK_NAME"] == card_stack.socket
    assert Path(card_stack.socket).is_socket()
    assert set(card_stack.readers) <= set(list_readers())
    # a subprocess finds them through the environment alone
    listed = subprocess.run(
        [sys.executable, "-c", "from smartcard.System import readers; print(readers())"],
        env={**os.environ, **card_stack.env}, capture_output=True, text=True, timeout=30)
    assert listed.stdout.strip() == repr(card_stack.readers), listed.stderr


def test_card_fresh_card_answers_select(virtual_card: VirtualCard) -> None:
    with CardSession(virtual_card.reader, select=False) as card:
        data, sw = card.exchange(bytes.fromhex("00A4040006D27600012401"))
        assert (data, sw) == (b"", 0x9000)
        assert card.pw_status().hex() == "017f7f7f030003"
        assert card.fingerprints() == {"sig": bytes(20), "dec": bytes(20), "aut": bytes(20)}


def test_card_stacks_of_two_processes_do_not_see_each_other(card_stack: CardStack,
                                                             tmp_path: Path) -> None:
    """A second pcscd (as another xdist worker would start) runs beside ours: each client sees
    only its own readers, and neither touches the system's /run/pcscd."""

    def run_dir() -> object:
        pcscd_run = Path("/run/pcscd")
        if not pcscd_run.is_dir():
            return None
        return sorted((p.name, p.read_bytes() if p.is_file() else b"")
                      for p in pcscd_run.iterdir())

    before = run_dir()
    code = ("import json, sys\n"
            "from pathlib import Path\n"
            "from tests.cardkit.stack import CardStack\n"
            "with CardStack.start(Path(sys.argv[1])) as stack:\n"
            "    stack.insert(0)\n"
            "    print(json.dumps({'readers': stack.readers, 'socket': stack.socket,\n"
            "                      'pid': stack.process.pid}), flush=True)\n"
            "    sys.stdin.readline()\n")
    other = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "other")], cwd=REPO,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert other.stdin is not None and other.stdout is not None
    try:
        theirs = json.loads(other.stdout.readline() or "null")
        assert theirs is not None, "the second stack did not start"
        assert theirs["socket"] != card_stack.socket
        assert not set(theirs["readers"]) & set(card_stack.readers)
        assert not set(theirs["readers"]) & set(list_readers())
        # their card is in their slot 0; our slot 0 is still empty
        wait_reader(card_stack.readers[0], present=False, timeout=1)
        if card_stack.isolation != "none":
            ours = Path(f"/proc/{card_stack.process.pid}/ns/mnt").resolve()
            assert ours != Path("/proc/self/ns/mnt").resolve()
            assert run_dir() == before
        other.stdin.write("\n")
        other.stdin.flush()
        assert other.wait(30) == 0
    finally:
        if other.poll() is None:
            other.kill()
            other.wait()
    assert card_stack.running


def test_card_skip_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    """Skipped only when not root and the Debian pieces are missing; otherwise a failure that
    says what to install."""
    monkeypatch.setattr(fixtures, "missing_system_pieces", lambda: ["pcscd (Debian package)"])
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(pytest.skip.Exception, match="not root to install them"):
        fixtures.require_card_stack()
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    with pytest.raises(pytest.fail.Exception, match="install the Debian packages pcscd"):
        fixtures.require_card_stack()
    monkeypatch.setattr(fixtures, "missing_system_pieces", lambda: [])
    monkeypatch.setattr(fixtures, "missing_python_pieces", lambda: ["pyscard (pip)"])
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(pytest.fail.Exception, match="pyscard"):
        fixtures.require_card_stack()


# --- provisioning with raw APDUs ------------------------------------------------------------------


def test_card_ed25519_cv25519_sign_decipher_authenticate(virtual_card: VirtualCard) -> None:
    signing, decryption, auth = ed25519_key(), cv25519_key(), ed25519_key()
    provision(virtual_card.reader, signing=signing, decryption=decryption, authentication=auth,
              cardholder="Holder<<Card", env=virtual_card.stack.env)
    with CardSession(virtual_card.reader) as card:
        assert card.fingerprints() == {"sig": signing.public.fingerprint,
                                       "dec": decryption.public.fingerprint,
                                       "aut": auth.public.fingerprint}
        assert card.get_data(0xC1).hex() == "162b06010401da470f01"
        assert card.get_data(0xC2).hex() == "122b060104019755010501"
        assert b"\x5b\x0cHolder<<Card" in card.get_data(0x65)

        with pytest.raises(CardError) as refused:  # a new session starts without a PIN
            card.sign(hashlib.sha256(b"x").digest(), pin=None)
        assert refused.value.sw == 0x6982

        digest = hashlib.sha256(b"message").digest()
        apdu = bytes.fromhex("002A9E9A") + bytes([len(digest)]) + digest + b"\x00"
        card.verify(PW1, 0x81)
        signature, sw = card.exchange(apdu)
        assert sw == 0x9000
        assert isinstance(signing.private, ed25519.Ed25519PrivateKey)
        signing.private.public_key().verify(signature, digest)

        ephemeral = x25519.X25519PrivateKey.generate()
        point = ephemeral.public_key().public_bytes_raw()
        apdu = bytes.fromhex("002A8086 27 A625 7F4922 8620") + point + b"\x00"
        card.verify(PW1, 0x82)
        shared, sw = card.exchange(apdu)
        assert sw == 0x9000
        assert isinstance(decryption.private, x25519.X25519PrivateKey)
        assert shared == ephemeral.exchange(decryption.private.public_key())

        challenge = os.urandom(32)
        assert isinstance(auth.private, ed25519.Ed25519PrivateKey)
        auth.private.public_key().verify(card.authenticate(challenge), challenge)


def test_card_takes_the_keys_of_a_keygen_holder(virtual_card: VirtualCard) -> None:
    generated = generate_holder_key("Card Holder", "holder@example.org", now=int(time.time()))
    signing, decryption, auth = card_keys_from_keyring(generated.private_armored,
                                                       generated.public_armored)
    assert auth is not None
    [cert] = load_certificates(generated.public_armored)
    subkeys = [key.fingerprint for key in cert.keys()[1:]]
    assert [signing.public.fingerprint, decryption.public.fingerprint,
            auth.public.fingerprint] == subkeys  # keygen's order: sign, encrypt, authenticate
    provision(virtual_card.reader, signing=signing, decryption=decryption, authentication=auth)
    with CardSession(virtual_card.reader) as card:
        assert list(card.fingerprints().values()) == subkeys
        assert card.get_data(0xCD) == b"".join(
            k.public.created.to_bytes(4, "big") for k in (signing, decryption, auth))


def test_card_rsa2048_signs_a_sha256_digestinfo_and_deciphers(virtual_card: VirtualCard) -> None:
    signing, decryption = rsa_key(2048), rsa_key(2048)
    provision(virtual_card.reader, signing=signing, decryption=decryption)
    digest = hashlib.sha256(b"message").digest()
    with CardSession(virtual_card.reader) as card:
        assert card.get_data(0xC1).hex() == "010800001100"
        signature = card.sign(SHA256_DIGESTINFO_PREFIX + digest)
        assert len(signature) == 256
        assert isinstance(signing.private, rsa.RSAPrivateKey)
        signing.private.public_key().verify(signature, digest, padding.PKCS1v15(),
                                            utils.Prehashed(hashes.SHA256()))
        assert isinstance(decryption.private, rsa.RSAPrivateKey)
        ciphertext = decryption.private.public_key().encrypt(b"session key", padding.PKCS1v15())
        assert card.decipher(b"\x00" + ciphertext) == b"session key"


def test_card_two_cards_in_two_readers_at_once(
        virtual_cards: tuple[VirtualCard, VirtualCard]) -> None:
    keys = []
    for card in virtual_cards:
        signing = ed25519_key()
        provision(card.reader, signing=signing, decryption=cv25519_key())
        keys.append(signing)
    sessions = [CardSession(card.reader) for card in virtual_cards]
    try:
        for round_ in range(2):  # interleaved, both connections open
            for session, key in zip(sessions, keys, strict=True):
                digest = hashlib.sha256(b"%d" % round_).digest()
                assert isinstance(key.private, ed25519.Ed25519PrivateKey)
                key.private.public_key().verify(session.sign(digest), digest)
    finally:
        for session in sessions:
            session.close()


def test_card_state_survives_removal_and_can_be_edited(virtual_card: VirtualCard) -> None:
    signing = ed25519_key()
    provision(virtual_card.reader, signing=signing, decryption=cv25519_key())
    with pytest.raises(RuntimeError, match="remove the card first"):
        set_uif(virtual_card.storage, "sig", 1)
    with virtual_card.removed() as storage:
        assert not virtual_card.inserted
        set_uif(storage, "sig", 1)
        set_retry_counters(storage, pw1=1)
        edit_card_state(storage, lambda state: state["cardholder"].update(name="Edited<<Card"))
    assert virtual_card.inserted
    assert card_state(virtual_card.storage)["key_sig"]["uif"] == 1
    with CardSession(virtual_card.reader) as card:
        assert card.get_data(0xD6) == b"\x01\x20"
        assert card.pw_status()[4] == 1
        assert b"Edited<<Card" in card.get_data(0x65)
        digest = hashlib.sha256(b"after reinsertion").digest()
        assert isinstance(signing.private, ed25519.Ed25519PrivateKey)
        signing.private.public_key().verify(card.sign(digest), digest)  # resets PW1 to 3
        assert card.pw_status()[4] == 3


def test_card_state_prepared_before_the_first_insertion(card_stack: CardStack,
                                                       tmp_path: Path) -> None:
    storage = tmp_path / "blocked-card"
    set_retry_counters(storage, pw1=0)  # writes jcecard's initial state first
    with card_stack.insert(0, storage, name="blocked") as card, CardSession(card.reader) as s:
        assert s.pw_status()[4:] == b"\x00\x00\x03"
        with pytest.raises(CardError) as blocked:
            s.verify(PW1, 0x81)
        assert blocked.value.sw == 0x6983


def test_card_pins_and_keys_stay_out_of_logs(virtual_card: VirtualCard,
                                             capfd: pytest.CaptureFixture[str]) -> None:
    signing = ed25519_key()
    provision(virtual_card.reader, signing=signing, decryption=cv25519_key())
    with CardSession(virtual_card.reader) as card:
        with pytest.raises(CardError):
            card.verify("999999", 0x81)  # a failure is logged by jcecard at WARNING
        card.sign(b"\x00" * 32)
    virtual_card.remove()
    assert isinstance(signing.private, ed25519.Ed25519PrivateKey)
    secret = signing.private.private_bytes_raw()
    logs = [virtual_card.log, virtual_card.storage / "jcecard.log", virtual_card.stack.log]
    text = b"".join(path.read_bytes() for path in logs if path.exists())
    captured = capfd.readouterr()
    text += (captured.out + captured.err).encode()
    for needle in (PW1, PW3, "999999", PW1.encode().hex(), PW3.encode().hex(), secret.hex()):
        assert needle.encode() not in text


# --- GnuPG's keytocard ------------------------------------------------------------------------------


@pytest.mark.interop
def test_card_gnupg_keytocard_of_a_fresh_holder(virtual_card: VirtualCard) -> None:
    env = virtual_card.stack.env
    with gnupg_card_holder(virtual_card.reader, env) as holder:
        assert holder.daemon_pids() == {}  # reader released
        [cert] = load_certificates(holder.certificate)
        assert cert.fingerprint == holder.fingerprint
        keys = {key.fingerprint_hex: key for key in cert.keys()}
        with CardSession(virtual_card.reader) as card:
            on_card = {slot: fpr.hex().upper() for slot, fpr in card.fingerprints().items()}
            assert on_card == {"sig": holder.subkeys["sign"], "dec": holder.subkeys["encr"],
                               "aut": holder.subkeys["auth"]}
            digest = hashlib.sha256(b"signed by the card").digest()
            signing = keys[holder.subkeys["sign"]].crypto_key()
            assert isinstance(signing, ed25519.Ed25519PublicKey)
            signing.verify(card.sign(digest), digest)

            ephemeral = x25519.X25519PrivateKey.generate()
            encryption = keys[holder.subkeys["encr"]].crypto_key()
            assert isinstance(encryption, x25519.X25519PublicKey)
            shared = card.ecdh(ephemeral.public_key().public_bytes_raw())
            assert shared == ephemeral.exchange(encryption)


@pytest.mark.interop
def test_card_gnupg_keytocard_of_an_imported_holder(virtual_card: VirtualCard,
                                                     gpg_ed25519_holder: GpgKey) -> None:
    certificate, subkeys = keytocard(virtual_card.reader, virtual_card.stack.env,
                                     key=gpg_ed25519_holder)
    [cert] = load_certificates(certificate)
    [original] = load_certificates(gpg_ed25519_holder.public)
    assert cert.fingerprint == gpg_ed25519_holder.fingerprint
    assert cert.keys() == original.keys()
    with CardSession(virtual_card.reader) as card:
        assert [fpr.hex().upper() for fpr in card.fingerprints().values()] == [
            subkeys["sign"], subkeys["encr"], subkeys["auth"]]


def test_card_stack_refuses_a_second_socket_in_one_process(card_stack: CardStack,
                                                           tmp_path: Path) -> None:
    with pytest.raises(stack.CardStackError, match="another process"):
        CardStack.start(tmp_path / "second")
