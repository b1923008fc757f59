"""The smart-card issue's end-to-end points: a 2-of-3 quorum unlocked by one holder on a card and
one on a key file, from `caution secret new` to the application's environment, with every
program a separate process on loopback and the card a third-party virtual OpenPGP card behind a
real pcscd (tests/cardkit). The card holder's keys are Ed25519/Cv25519, RSA-2048, or moved onto
the card by GnuPG's own `keytocard` — the path a real holder takes with a YubiKey.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from locksmith.core.openpgp import signature as sig
from locksmith.core.openpgp.armor import armor
from locksmith.core.openpgp.certbuild import build_certificate
from locksmith.core.openpgp.certs import load_certificates
from locksmith.core.openpgp.keygen import new_ed25519_key
from locksmith.core.openpgp.keys import SecretKey
from tests.cardkit.gnupg import keytocard
from tests.cardkit.provision import card_keys_from_keyring, provision, rsa_key
from tests.cardkit.stack import CardStack, VirtualCard
from tests.test_unlock_e2e import ENV_FILE, VALUES
from tests.unlock_kit import (
    World, application_view, boot, keygen, make_quorum, send_with_keyring,
)

PIN = "123456"


def send_with_card(world: World, stack: CardStack, quorum_app: Path, port: int,
                   nsm: Path) -> str:
    """`send-shard` without --keyring, the PIN from a file (no terminal in a subprocess)."""
    pin = world.root / "pin"
    pin.write_text(PIN + "\n")
    pin.chmod(0o600)
    world.env.update(stack.env)
    return world.run("caution", "secret", "send-shard", "--address", f"127.0.0.1:{port}",
                     "--bundle", str(quorum_app / ".caution" / "quorum-bundle.json"),
                     "--pin-file", str(pin), "--trusted-hashes", str(nsm / "trusted_hashes.json"),
                     "--trust-root", str(nsm / "root.pem"), cwd=quorum_app)


def unlock_with_card_and_key_file(world: World, stack: CardStack, card_holder: Path,
                                  others: list[tuple[Path, Path]]) -> str:
    """2-of-3 (card holder first in the bundle): the card holder sends, then the first key-file
    holder; returns what the card holder's send-shard said."""
    quorum = make_quorum(world, [card_holder, *(public for public, _ in others)], 2, ENV_FILE)
    enclave, port = boot(world, quorum.app_dir, list(VALUES), nsm=quorum.nsm, v1=True)
    said = send_with_card(world, stack, quorum.app_dir, port, quorum.nsm)
    assert said.splitlines()[-1] == "Shard accepted, 1 remaining shards until reconstitution"
    last = send_with_keyring(world, quorum.app_dir, port, others[0][1], quorum.nsm)
    assert last.splitlines()[-1] == "Shard accepted, 0 remaining shards until reconstitution"
    assert application_view(enclave, world) == VALUES
    return said


@pytest.mark.slow
def test_card_holder_with_ed25519_and_cv25519_and_a_key_file_holder_unlock_2_of_3(
        world: World, card_stack: CardStack, virtual_card: VirtualCard) -> None:
    public, private = keygen(world, "carda")
    signing, decryption, authentication = card_keys_from_keyring(private.read_bytes(),
                                                                 public.read_bytes())
    provision(virtual_card.reader, signing=signing, decryption=decryption,
              authentication=authentication)
    private.unlink()  # the card holder has no key file: only the card can open the share
    said = unlock_with_card_and_key_file(world, card_stack, public,
                                         [keygen(world, "fileb"), keygen(world, "filec")])
    assert f"in reader '{virtual_card.reader}'" in said


def _rsa_card_holder(directory: Path) -> tuple[Path, SecretKey, SecretKey, SecretKey]:
    """A holder whose signing and storage-encryption keys are RSA-2048 (Ed25519 primary and
    authentication key): its public certificate and the keys for the card."""
    now = int(time.time()) - 60
    primary, signing, decryption, auth = (new_ed25519_key(now), rsa_key(2048, now),
                                          rsa_key(2048, now), new_ed25519_key(now))
    cert = build_certificate(primary, "RSA Card <rsa-card@example.org>", [
        (signing, sig.FLAG_SIGN), (decryption, sig.FLAG_ENCRYPT_STORAGE),
        (auth, sig.FLAG_AUTHENTICATE)], signed_at=now)
    path = directory / "rsacard.asc"
    path.write_text(armor("PUBLIC KEY BLOCK", cert))
    return path, signing, decryption, auth


@pytest.mark.slow
def test_card_holder_on_rsa_2048_and_a_key_file_holder_unlock_2_of_3(
        world: World, card_stack: CardStack, virtual_card: VirtualCard) -> None:
    public, signing, decryption, auth = _rsa_card_holder(world.root)
    provision(virtual_card.reader, signing=signing, decryption=decryption, authentication=auth)
    unlock_with_card_and_key_file(world, card_stack, public,
                                  [keygen(world, "fileb"), keygen(world, "filec")])


@pytest.mark.slow
def test_card_filled_by_gnupg_keytocard_completes_a_quorum(
        world: World, card_stack: CardStack, virtual_card: VirtualCard) -> None:
    certificate, subkeys = keytocard(virtual_card.reader, card_stack.env)
    public = world.root / "gnupg-card.asc"
    public.write_bytes(certificate)
    said = unlock_with_card_and_key_file(world, card_stack, public,
                                         [keygen(world, "fileb"), keygen(world, "filec")])
    holder = load_certificates(certificate)[0].fingerprint
    assert f"for holder {holder}" in said
    assert subkeys["sign"] != subkeys["encr"]
