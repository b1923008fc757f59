"""The whole product, end to end, as separate processes on loopback (the unlock issue's first two
acceptance points): holders' keys, Keymaker, `secret new`, `secret encrypt`, the enclave booting
with `locksmith-run` (locksmithd → keyforkd → locksmith-oneshot → eval → the app), and holders
running `caution secret send-shard`. Every program runs from the source tree through small
wrappers named like the image's symlinks; the zipapp itself is exercised by tests/test_demo.py.
"""

from __future__ import annotations

import shutil

import pytest

from tests.conftest import CAUTION_V0
from tests.unlock_kit import (
    World, application_view, boot, keygen, make_quorum, send_with_keyring,
)

VALUES = {
    "SINGLE_QUOTES": "it's 'quoted'",
    "DOUBLE_QUOTES": 'say "hi"',
    "SUBSTITUTION": "$(touch /tmp/pwned) and $HOME",
    "BACKTICKS": "`id` stays literal",
    "HASH": "not # a comment",
    "NEWLINES": "line one\nline two\n  indented line three",
    "UNICODE": "grüße ☃ 日本語",
}
ENV_FILE = """\
SINGLE_QUOTES="it's 'quoted'"
DOUBLE_QUOTES='say "hi"'
SUBSTITUTION='$(touch /tmp/pwned) and $HOME'
BACKTICKS='`id` stays literal'
HASH="not # a comment"
NEWLINES="line one
line two
  indented line three"
UNICODE=grüße\\ ☃\\ 日本語
EMPTY=
"""


@pytest.mark.slow
@pytest.mark.parametrize("threshold,holders", [(2, 3), (3, 5)])
def test_quorum_unlock_delivers_every_value_byte_exact_to_the_application(
        world: World, threshold: int, holders: int) -> None:
    names = [f"holder{i}" for i in range(holders)]
    keys = [keygen(world, name) for name in names]
    quorum = make_quorum(world, [public for public, _ in keys], threshold, ENV_FILE)
    app_dir, nsm = quorum.app_dir, quorum.nsm
    assert "skipping empty value for EMPTY" in quorum.encrypt_notices.splitlines()
    assert not (app_dir / ".caution" / "secrets" / "EMPTY.asc").exists()

    enclave, port = boot(world, app_dir, [*VALUES, "EMPTY"], nsm=nsm, v1=True)
    for i, (_, private) in enumerate(keys[:threshold]):
        said = send_with_keyring(world, app_dir, port, private, nsm)
        remaining = threshold - i - 1
        assert said.splitlines()[-1] == (
            f"Shard accepted, {remaining} remaining shards until reconstitution")

    view = application_view(enclave, world)
    assert view == {**VALUES, "EMPTY": None}
    boot_log = world.log("locksmith-run")
    assert f"locksmith-oneshot: exported {len(VALUES)} variables" in boot_log
    for value in VALUES.values():  # names are logged, values never
        assert value.splitlines()[0] not in boot_log


@pytest.mark.slow
def test_reference_fixture_unlocks_with_alice_and_bob_and_decrypts_pre_import(world: World) -> None:
    """The reference's own v0 bundle and holders, with shards sent by `send-shard --keyring`."""
    from locksmith.core.attestation.nsm_simulated import SimulatedNsm
    nsm = world.root / "nsm"
    SimulatedNsm.open(nsm)
    app_dir = world.root / "app"
    (app_dir / ".caution" / "secrets").mkdir(parents=True)
    shutil.copy(CAUTION_V0 / "bundle.json", app_dir / ".caution" / "quorum-bundle.json")
    # A file stem must be a shell name: the message goes in as PRE_IMPORT.
    shutil.copy(CAUTION_V0 / "pre-import.asc", app_dir / ".caution" / "secrets" / "PRE_IMPORT.asc")

    enclave, port = boot(world, app_dir, ["PRE_IMPORT"], nsm=nsm, v1=False)
    send_with_keyring(world, app_dir, port, CAUTION_V0 / "alice.private.asc", nsm)
    said = send_with_keyring(world, app_dir, port, CAUTION_V0 / "bob.private.asc", nsm)
    assert said.splitlines()[-1] == "Shard accepted, 0 remaining shards until reconstitution"
    assert application_view(enclave, world) == {"PRE_IMPORT": "encrypted before V0 import"}
    assert ("locksmith-oneshot: derived quorum key 15B0E570536A4B00A90151DB726E3FCA18892D05"
            in world.log("locksmith-run"))
    # keyforkd keeps serving the application's own keys, but never the quorum key again
    from locksmith.core.keyfork import ipc as keyfork_ipc
    from tests.keyforkd_util import connect, derive, exchange
    with connect(world.root / "keyforkd.sock") as sock:
        assert exchange(sock, keyfork_ipc.encode_request(keyfork_ipc.ACCOUNT_PATH)) == {
            "error": keyfork_ipc.QUORUM_ALREADY_SERVED}
    assert derive(world.root / "keyforkd.sock", "m/44'/0'")["depth"] == 2
