"""generate_quorum: Keymaker's core, with holders from keygen, GnuPG (Ed25519) and GnuPG (RSA)."""

from __future__ import annotations

import dataclasses
import itertools
import time
from dataclasses import dataclass

import pytest

from locksmith.__main__ import run
from locksmith.core import shamir
from locksmith.core.bundle import shardfile
from locksmith.core.bundle.checks import check_bundle
from locksmith.core.keymaker import quorum
from locksmith.core.openpgp import armor, quorumkey
from locksmith.core.openpgp.certs import load_certificates
from locksmith.core.openpgp.keys import SecretKey
from locksmith.core.openpgp.secretkeys import load_secret_keys
from tests.oracles import Gpg, GpgKey, gpg_home


def _now() -> int:
    """Read after the holder fixtures exist: keys made a moment ago must already be valid."""
    return int(time.time())


@dataclass(frozen=True)
class Holder:
    fingerprint: str
    public: str
    secret: bytes

    def keys(self) -> list[SecretKey]:
        return [k.unlock() for k in load_secret_keys(self.secret).keys]


@pytest.fixture(scope="module")
def holders(gpg_ed25519_holder: GpgKey, gpg_rsa_holder: GpgKey,
            tmp_path_factory: pytest.TempPathFactory) -> list[Holder]:
    """A holder from `caution secret keygen` (the CLI, as a user runs it) and two from GnuPG."""
    public = tmp_path_factory.mktemp("keygen") / "keygen.asc"
    assert run(["caution", "secret", "keygen", str(public), "--name", "Keygen Holder",
                "--email", "keygen@example.org", "--shoot-self-in-foot"]) == 0
    [cert] = load_certificates(public.read_bytes())
    private = public.with_name("keygen.private.asc").read_bytes()
    out = [Holder(cert.fingerprint, public.read_text(), private)]
    for key in (gpg_ed25519_holder, gpg_rsa_holder):
        out.append(Holder(key.fingerprint, armor.armor("PUBLIC KEY BLOCK", key.public), key.secret))
    return out


def _keyring(holders: list[Holder]) -> str:
    return "".join(h.public for h in holders)


def test_two_of_three_recovers_from_every_pair_and_no_single_share(holders: list[Holder]) -> None:
    secret = bytes(range(100, 132))
    bundle = quorum.generate_quorum(_keyring(holders), 2, 3, now=_now(), secret=secret)
    checked = check_bundle(bundle)
    assert [c.fingerprint for c in checked.holders] == [h.fingerprint for h in holders]
    shares = [shardfile.decrypt_own_share(bundle.shardfile, h.keys(), h.fingerprint)
              for h in holders]
    assert [s.share[0] for s in shares] == [1, 2, 3]
    assert all(s.threshold == 2 for s in shares)
    for pair in itertools.combinations(shares, 2):
        assert shamir.combine([s.share for s in pair], 2) == secret
    for single in shares:
        with pytest.raises(shamir.ShamirError):
            shamir.combine([single.share], 2)
        assert shamir.combine([single.share]) != secret
    # The bundle's quorum key is the one derived from the secret.
    assert checked.quorum_certificate.fingerprint == quorumkey.quorum_keys(secret).primary.public.fingerprint_hex


def test_gnupg_decrypts_each_holders_share_message_with_that_holders_key(
        holders: list[Holder]) -> None:
    bundle = quorum.generate_quorum(_keyring(holders), 2, 3, now=_now())
    messages = shardfile.split_messages(bundle.shardfile)
    for index, holder in enumerate(holders):
        own = shardfile.decrypt_own_share(bundle.shardfile, holder.keys(), holder.fingerprint)
        with gpg_home() as gpg:
            gpg.import_(holder.secret)
            # Wildcard key IDs make GnuPG try its key on every PKESK; those addressed to other
            # holders fail and GnuPG exits 2 after a successful decryption. The status lines
            # say whether the message itself decrypted with a valid MDC.
            metadata = _gpg_decrypt(gpg, messages[0])
            assert metadata[:2] == b"\x01\x02"
            gpg.import_(metadata[2:])  # the shard-signing certificate, so gpg checks the share
            assert _gpg_decrypt(gpg, messages[index + 1], signed=True) == own.share


def _gpg_decrypt(gpg: Gpg, message: bytes, *, signed: bool = False) -> bytes:
    result = gpg.run("--decrypt", input=armor.armor("MESSAGE", message), check=False,
                     status=True)
    assert b"[GNUPG:] DECRYPTION_OKAY" in result.status, result.stderr.decode()
    assert b"[GNUPG:] GOODMDC" in result.status
    if signed:
        assert b"[GNUPG:] GOODSIG" in result.status
    return result.stdout


def test_every_holder_is_refused_who_lacks_a_role(holders: list[Holder]) -> None:
    keygen_cert = load_certificates(holders[0].public)[0]
    no_auth = dataclasses.replace(keygen_cert, subkeys=keygen_cert.subkeys[:2])
    keyring = no_auth.armored() + holders[1].public
    with pytest.raises(quorum.QuorumRequestError) as info:
        quorum.generate_quorum(keyring, 1, 2, now=_now())
    assert info.value.reasons == [
        quorum.NO_ELIGIBLE,
        f"certificate {no_auth.fingerprint} is not Keymaker-eligible: missing authentication",
    ]


@pytest.mark.parametrize("threshold,max_", [(0, 3), (4, 3), (2, 2), (1, 255)])
def test_inconsistent_parameters_are_refused(holders: list[Holder], threshold: int, max_: int) -> None:
    with pytest.raises(quorum.QuorumRequestError) as info:
        quorum.generate_quorum(_keyring(holders), threshold, max_, now=_now())
    assert info.value.reasons == [quorum.PARAMETERS.format(t=threshold, m=max_, n=3)]


def test_duplicate_holder_is_refused(holders: list[Holder]) -> None:
    with pytest.raises(quorum.QuorumRequestError) as info:
        quorum.generate_quorum(holders[0].public * 2, 1, 2, now=_now())
    assert info.value.reasons == ["duplicate holder certificate"]


def test_secret_key_material_in_the_keyring_is_refused(holders: list[Holder]) -> None:
    with pytest.raises(quorum.QuorumRequestError) as info:
        quorum.generate_quorum(holders[0].secret.decode(), 1, 1, now=_now())
    assert info.value.reasons == [quorum.SECRET_MATERIAL]
