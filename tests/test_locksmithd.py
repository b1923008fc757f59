"""locksmithd end to end: real processes, real loopback sockets, the simulated NSM, and a holder
client driving `HolderSession` (enclave.md §3, protocol.md §2–§10).

Each test starts its own daemon on an ephemeral port of 127.0.0.1 (`--listen 127.0.0.1:0`; the
port is read from the `listening on` line). Limits: test_locksmithd_limits.py; startup and
options: test_locksmithd_startup.py.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from locksmith.core.bundle.model import BundleV0
from locksmith.core.keyfork import bip39, slip10
from locksmith.core.openpgp.holder_signature import REJECT_CLOCK_SKEW, REJECT_NO_HOLDER
from locksmith.core.openpgp.keygen import generate_holder_key
from locksmith.core.openpgp.keys import SecretKey
from locksmith.core.openpgp.secretkeys import load_secret_keys
from locksmith.core.protocol.messages import MALFORMED_SHARE_REQUEST, submission_bundle_hash
from locksmith.core.protocol.reconstitution import (
    LOG_CONTRIBUTORS, LOG_CULPRIT, LOG_FOREIGN_SUBKEY, LOG_QUORUM, REJECT_COORDINATE,
    REJECT_DUPLICATE, REJECT_FOREIGN_SUBKEY, REJECT_MALFORMED_SHARE, REJECT_OTHER_BUNDLE,
    REJECT_THRESHOLD, REJECT_UNKNOWN_HOLDER,
)
from locksmith.core.protocol.session import Accepted, Rejected
from tests.core.protocol_kit import (
    FIXTURE_SECRET, T0, fixture_quorum, generated_quorum, tampered_public_key, with_public_key,
)
from tests.keyforkd_util import derive, short_dir
from tests.locksmithd_kit import (
    PYTHON, Client, Daemons, Sim, clean_env, share_request, v1_quorum, write_bundle,
)

FORBIDDEN_ON_BOOT_PATH = {"typer", "click", "httpx", "uvicorn", "starlette", "pgpy"}


@pytest.fixture
def sockdir() -> Iterator[Path]:
    yield from short_dir()


def _outsider_signing_key() -> SecretKey:
    outsider = generate_holder_key("Outsider", "outsider@example.org", now=T0)
    return load_secret_keys(outsider.private_armored).keys[1].unlock()  # the signing subkey


SIBLING_PATH = "m/7366512'/1'"  # beside the quorum account, which keyforkd serves only once


def _expected_node(secret: bytes, path: str) -> slip10.ExtendedKey:
    seed = bip39.mnemonic_to_seed(bip39.entropy_to_mnemonic(secret))
    return slip10.derive_path(seed, path)


def _assert_keyforkd_serves(socket_path: Path, secret: bytes) -> None:
    """keyforkd holds `secret`: checked on a sibling of the quorum account, which keyforkd
    serves only once (to the oneshot that runs next)."""
    info = os.stat(socket_path)
    assert stat.S_ISSOCK(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o600
    node = _expected_node(secret, SIBLING_PATH)
    answer = derive(socket_path, SIBLING_PATH)
    assert answer["private_key"] == node.private_key and answer["chain_code"] == node.chain_code


# --- unlocks ---------------------------------------------------------------------------------


def test_reference_v0_fixture_unlocks_keyforkd_and_oneshot_decrypts_without_cli_imports(
        sim: Sim, daemons: Daemons, sockdir: Path, caution_v0: Path) -> None:
    quorum = fixture_quorum()
    alice, bob = quorum.holders
    sock = sockdir / "k.sock"
    daemon = daemons.start(["--bundle", str(caution_v0 / "bundle.json"), *sim.args(),
                            "--keyforkd-socket", str(sock)], bootstrap=True)
    with Client(daemon.address, sim) as first:
        # v0: any bundle_hash is ignored (protocol.md §8), so a wrong one is still accepted
        assert first.submit(alice, threshold=2, bundle_hash=bytes(32)) == Accepted(1)
    bystander = Client(daemon.address, sim)
    bystander.attest()
    with Client(daemon.address, sim) as last:
        assert last.submit(bob, threshold=2, bundle_hash=None) == Accepted(0)
    assert bystander.closed_within(5) is not None  # §10: closed without a response
    assert daemon.wait() == 0, daemon.log()
    log = daemon.log()
    assert (f"locksmithd: accepted share from holder 0 ({alice.fingerprint}) for threshold 2; "
            "1 remaining") in log
    assert f"accepted share from holder 1 ({bob.fingerprint}) for threshold 2; 0 remaining" in log
    assert LOG_QUORUM in log
    started = daemon.keyforkd()
    assert started is not None and started[0] == str(sock)
    _assert_keyforkd_serves(sock, FIXTURE_SECRET)

    secrets = sockdir / "secrets"
    secrets.mkdir()
    shutil.copy(caution_v0 / "pre-import.asc", secrets / "PRE_IMPORT.asc")
    oneshot = subprocess.run(
        [PYTHON, "-m", "locksmith", "locksmith-oneshot", "--socket", str(sock),
         "--secrets-dir", str(secrets)], capture_output=True, text=True, timeout=60,
        env=clean_env(), check=False)
    assert oneshot.returncode == 0, oneshot.stderr
    assert oneshot.stdout == "export PRE_IMPORT='encrypted before V0 import'\n"

    modules = set(daemon.stdout().split())
    assert "locksmith.personalities.locksmithd.server" in modules  # the list is the real one
    assert not {name.split(".")[0] for name in modules} & FORBIDDEN_ON_BOOT_PATH


def test_v1_2_of_3_unlocks_with_two_holders_and_keyforkd_derives_from_the_secret(
        sim: Sim, daemons: Daemons, sockdir: Path, tmp_path: Path) -> None:
    bundle, quorum, digest = v1_quorum(sim, 2, 3)
    holder0, _, holder2 = quorum.holders
    sock = sockdir / "k.sock"
    daemon = daemons.start(["--bundle", str(write_bundle(tmp_path, bundle)), *sim.v1_args(),
                            "--keyforkd-socket", str(sock)])
    log = daemon.log()
    assert re.search(r"locksmithd: V1 bundle verified \(PCR set 0, generated "
                     r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\)", log), log
    assert f"listening on 127.0.0.1:{daemon.port} (V1 bundle, threshold 2 of 3)" in log
    with Client(daemon.address, sim) as client:
        assert client.submit(holder2, threshold=2, bundle_hash=digest) == Accepted(1)
    with Client(daemon.address, sim) as client:
        assert client.submit(holder0, threshold=2, bundle_hash=digest) == Accepted(0)
    assert daemon.wait() == 0, daemon.log()
    assert f"accepted share from holder 2 ({holder2.fingerprint}); 1 remaining" in daemon.log()
    _assert_keyforkd_serves(sock, quorum.secret)


def test_imported_v0_3_of_5_unlocks_and_a_missing_bundle_hash_is_accepted_with_a_warning(
        sim: Sim, daemons: Daemons, sockdir: Path, tmp_path: Path) -> None:
    quorum = generated_quorum(3, 5, "ImportedV0")
    digest = submission_bundle_hash(quorum.checked.bundle)
    h = quorum.holders
    # The socket path from the XDG default: its directory is made 0700 for keyforkd.
    sock = sockdir / "keyforkd" / "keyforkd.sock"
    daemon = daemons.start(["--bundle", str(write_bundle(tmp_path, quorum.checked.bundle)),
                            *sim.args()], env={"XDG_RUNTIME_DIR": str(sockdir)})
    log = daemon.log()
    assert ("Legacy V0 — no Keymaker generation proof; using image-baked recovery metadata"
            in log)
    assert "(ImportedV0 bundle, threshold 3 of 5)" in log
    for holder, hash_sent, remaining in ((h[4], digest, 2), (h[1], None, 1), (h[3], digest, 0)):
        with Client(daemon.address, sim) as client:
            assert client.submit(holder, threshold=3, bundle_hash=hash_sent) == \
                Accepted(remaining)
    assert daemon.wait() == 0, daemon.log()
    assert f"holder 1 ({h[1].fingerprint}) carries no bundle_hash (older client)" in daemon.log()
    assert stat.S_IMODE(os.stat(sock.parent).st_mode) == 0o700
    _assert_keyforkd_serves(sock, quorum.secret)


# --- rejections and rounds -------------------------------------------------------------------


def test_rejections_carry_the_spec_reasons_and_never_consume_a_slot(
        sim: Sim, daemons: Daemons, sockdir: Path, tmp_path: Path) -> None:
    bundle, quorum, digest = v1_quorum(sim, 2, 3)
    _, _, other_digest = v1_quorum(sim, 3, 5)  # the real hash of another V1 bundle
    h0, h1, _ = quorum.holders
    daemon = daemons.start(["--bundle", str(write_bundle(tmp_path, bundle)), *sim.v1_args(),
                            "--keyforkd-socket", str(sockdir / "k.sock")])
    outsider = _outsider_signing_key()
    wrong_x = bytes([1]) + h1.share[1:]  # holder 1's share at holder 0's coordinate
    cases = [
        (lambda c: c.submit(h1, threshold=2, bundle_hash=digest, key=outsider),
         REJECT_NO_HOLDER),
        (lambda c: c.submit(h1, threshold=2, bundle_hash=digest, share=wrong_x),
         REJECT_COORDINATE),
        (lambda c: c.submit(h1, threshold=3, bundle_hash=digest), REJECT_THRESHOLD),
        (lambda c: c.submit(h1, threshold=2, bundle_hash=other_digest), REJECT_OTHER_BUNDLE),
        (lambda c: c.submit(h1, threshold=2, bundle_hash=digest,
                            signed_at=int(time.time()) + 120), REJECT_CLOCK_SKEW),
        (lambda c: c.submit_raw(share_request(h1.share, 2, digest), h1.signing_key,
                                tamper=True), MALFORMED_SHARE_REQUEST),
        (lambda c: c.submit_raw(share_request(h1.share[:32], 2, digest), h1.signing_key),
         REJECT_MALFORMED_SHARE),
    ]
    for submit, reason in cases:
        with Client(daemon.address, sim) as client:
            assert submit(client) == Rejected(reason)
    # Nothing above was counted: the first honest share still leaves t - 1 to go ...
    with Client(daemon.address, sim) as client:
        assert client.submit(h0, threshold=2, bundle_hash=digest) == Accepted(1)
    with Client(daemon.address, sim) as client:
        assert client.submit(h0, threshold=2, bundle_hash=digest) == Rejected(REJECT_DUPLICATE)
    # ... and holder 1, rejected six times, still has its slot.
    with Client(daemon.address, sim) as client:
        assert client.submit(h1, threshold=2, bundle_hash=digest) == Accepted(0)
    assert daemon.wait() == 0, daemon.log()
    log = daemon.log()
    assert "holder signature verification failed: invalid holder signature" in log
    assert "holder signature verification failed: signature clock skew" in log
    for reason in (REJECT_COORDINATE, REJECT_THRESHOLD, REJECT_OTHER_BUNDLE,
                   MALFORMED_SHARE_REQUEST, REJECT_MALFORMED_SHARE, REJECT_DUPLICATE):
        assert f"locksmithd: rejected submission: {reason}\n" in log
    assert h1.share.hex() not in log and bytes(h1.share).hex().upper() not in log


def test_a_wrong_share_is_kept_aside_and_the_next_honest_holder_completes_the_quorum(
        sim: Sim, daemons: Daemons, sockdir: Path, tmp_path: Path) -> None:
    """protocol.md §8 as amended: a failed recovery keeps every share (no restart), answers the
    submitter `remaining: 1`, and the round tries other subsets when the next share arrives."""
    quorum = generated_quorum(2, 3, "ImportedV0")
    digest = submission_bundle_hash(quorum.checked.bundle)
    h0, h1, h2 = quorum.holders
    daemon = daemons.start(["--bundle", str(write_bundle(tmp_path, quorum.checked.bundle)),
                            *sim.args(), "--keyforkd-socket", str(sockdir / "k.sock")])
    in_progress = Client(daemon.address, sim)  # attested before the failed recovery
    in_progress.attest()
    with Client(daemon.address, sim) as client:
        assert client.submit(h0, threshold=2, bundle_hash=digest) == Accepted(1)
    wrong_y = h1.share[:1] + bytes(b ^ 0x5A for b in h1.share[1:])
    with Client(daemon.address, sim) as client:
        assert client.submit(h1, threshold=2, bundle_hash=digest, share=wrong_y) == Accepted(1)
    log = daemon.wait_for_log("every share is kept").string
    assert LOG_CONTRIBUTORS.format(contributors=f"0 ({h0.fingerprint}), 1 ({h1.fingerprint})") \
        in log
    # Nothing was wiped: a resubmission is a duplicate, before and after the failure alike.
    with Client(daemon.address, sim) as client:
        assert client.submit(h0, threshold=2, bundle_hash=digest) == Rejected(REJECT_DUPLICATE)
    assert in_progress.submit(h2, threshold=2, bundle_hash=digest) == Accepted(0)
    assert daemon.wait() == 0, daemon.log()
    assert LOG_CULPRIT.format(k=1, fpr=h1.fingerprint) in daemon.log()


def test_v0_holder_claiming_a_wrong_threshold_does_not_block_the_honest_holders(
        sim: Sim, daemons: Daemons, sockdir: Path, tmp_path: Path) -> None:
    quorum = generated_quorum(3, 5, "v0")
    h = quorum.holders
    sock = sockdir / "k.sock"
    daemon = daemons.start(["--bundle", str(write_bundle(tmp_path, quorum.checked.bundle)),
                            *sim.args(), "--keyforkd-socket", str(sock)])
    assert "(v0 bundle, threshold per share set of 5)" in daemon.log()
    steps = [
        (h[3], 1, Accepted(1)),  # a set of one: recovered at once, wrong, kept
        (h[4], 4, Accepted(3)),  # a set of its own that never completes
        (h[0], 3, Accepted(2)),
        (h[1], 3, Accepted(1)),
        (h[3], 3, Rejected(REJECT_DUPLICATE)),  # one share per holder per round
        (h[2], 3, Accepted(0)),
    ]
    for holder, claimed, verdict in steps:
        with Client(daemon.address, sim) as client:
            assert client.submit(holder, threshold=claimed, bundle_hash=None) == verdict
    assert daemon.wait() == 0, daemon.log()
    log = daemon.log()
    assert "no 1 of the 1 shares held for threshold 1 recover the bundle's secret" in log
    assert f"accepted share from holder 4 ({h[4].fingerprint}) for threshold 4; 3 remaining" \
        in log
    _assert_keyforkd_serves(sock, quorum.secret)


def test_a_holder_excluded_by_the_operator_is_an_unknown_holder_and_the_others_unlock(
        sim: Sim, daemons: Daemons, sockdir: Path, tmp_path: Path) -> None:
    bundle, quorum, digest = v1_quorum(sim, 2, 3)
    h0, h1, h2 = quorum.holders
    daemon = daemons.start(["--bundle", str(write_bundle(tmp_path, bundle)), *sim.v1_args(),
                            "--keyforkd-socket", str(sockdir / "k.sock")],
                           env={"LOCKSMITHD_EXCLUDE_HOLDERS": h0.fingerprint.lower()})
    assert (f"excluding holder 0 ({h0.fingerprint}) at the operator's request: its "
            "submissions are refused") in daemon.log()
    with Client(daemon.address, sim) as client:
        assert client.submit(h0, threshold=2, bundle_hash=digest) == \
            Rejected(REJECT_UNKNOWN_HOLDER)
    for holder, remaining in ((h1, 1), (h2, 0)):
        with Client(daemon.address, sim) as client:
            assert client.submit(holder, threshold=2, bundle_hash=digest) == Accepted(remaining)
    assert daemon.wait() == 0, daemon.log()
    assert f"submission from holder 0 ({h0.fingerprint}), excluded by the operator" in \
        daemon.log()


def test_a_foreign_subkey_in_the_bundle_is_fatal_after_recovery(
        sim: Sim, daemons: Daemons, sockdir: Path, tmp_path: Path) -> None:
    quorum = fixture_quorum()
    bundle = quorum.checked.bundle
    assert isinstance(bundle, BundleV0)
    altered = with_public_key(bundle, tampered_public_key(FIXTURE_SECRET))
    alice, bob = quorum.holders
    daemon = daemons.start(["--bundle", str(write_bundle(tmp_path, altered)), *sim.args(),
                            "--keyforkd-socket", str(sockdir / "k.sock")])
    with Client(daemon.address, sim) as client:
        assert client.submit(alice, threshold=2, bundle_hash=None) == Accepted(1)
    bystander = Client(daemon.address, sim)
    bystander.attest()
    with Client(daemon.address, sim) as client:
        assert client.submit(bob, threshold=2, bundle_hash=None) == \
            Rejected(REJECT_FOREIGN_SUBKEY)
    assert bystander.closed_within(5) is not None
    assert daemon.wait() == 1
    assert LOG_FOREIGN_SUBKEY in daemon.log()
    assert daemon.keyforkd() is None and not (sockdir / "k.sock").exists()


# --- exits -----------------------------------------------------------------------------------


@pytest.mark.parametrize("signum, status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_before_the_quorum_wipes_the_shares_and_exits_128_plus_the_signal(
        sim: Sim, daemons: Daemons, sockdir: Path, caution_v0: Path, signum: int,
        status: int) -> None:
    alice, _ = fixture_quorum().holders
    daemon = daemons.start(["--bundle", str(caution_v0 / "bundle.json"), *sim.args(),
                            "--keyforkd-socket", str(sockdir / "k.sock")])
    with Client(daemon.address, sim) as client:
        assert client.submit(alice, threshold=2, bundle_hash=None) == Accepted(1)
    waiting = Client(daemon.address, sim)
    waiting.attest()
    daemon.process.send_signal(signum)
    assert daemon.wait(10) == status
    assert waiting.closed_within(5) is not None
    name = signal.Signals(signum).name
    assert f"locksmithd: stopped by {name}; every share held was wiped" in daemon.log()
    assert daemon.keyforkd() is None


def test_keyforkd_that_cannot_start_makes_locksmithd_exit_1(
        sim: Sim, daemons: Daemons, sockdir: Path, caution_v0: Path) -> None:
    alice, bob = fixture_quorum().holders
    daemon = daemons.start(["--bundle", str(caution_v0 / "bundle.json"), *sim.args(),
                            "--keyforkd-socket", str(sockdir / "missing" / "k.sock")])
    for holder, remaining in ((alice, 1), (bob, 0)):
        with Client(daemon.address, sim) as client:
            assert client.submit(holder, threshold=2, bundle_hash=None) == Accepted(remaining)
    assert daemon.wait() == 1
    assert "locksmithd: keyforkd did not start: keyforkd exited with status 1" in daemon.log()
