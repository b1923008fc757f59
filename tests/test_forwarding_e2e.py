"""Key forwarding end to end (docs/forwarding.md; issue 12's acceptance): real `locksmith-run`
boots on loopback with simulated NSMs, holders using `caution secret send-shard`, and forwardd.

Enclave A of a 2-of-3 fleet is unlocked by two holders and provides the secret; later enclaves
of the same image receive it without any holder action; an enclave with other PCRs is refused
until `threshold` holders approved exactly its PCR set (an expired approval does not count) —
or, with no approvals of its own, once holders' approvals of its PCRs were pushed to the
provider with `caution secret approvals push`; a provider that serves a wrong secret is caught by the requester's recovered-key check and the
holders still unlock; a requester of another bundle is refused; and the holders' send-shard
works as before on an enclave that also asks a provider — whichever comes first wins. Both
sides log every decision.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from locksmith.core.bundle.model import parse_bundle
from locksmith.core.protocol.messages import submission_bundle_hash
from tests.core.protocol_kit import generated_quorum
from tests.forwarding_kit import (
    PROVIDER_LISTENING, Enclave, FakeProvider, approve, boot_enclave, forwardd_pids,
    other_pcrs, pcrs_of, start_enclave, stop_pids,
)
from tests.unlock_kit import (
    Quorum, World, free_port, keygen, make_quorum, send_with_keyring, world_in,
)

pytestmark = pytest.mark.slow

VALUES = {"DATABASE_URL": "postgres://app:s3cret@db/app", "API_TOKEN": "tok-'quoted'-$(x)"}
ENV_FILE = "DATABASE_URL=postgres://app:s3cret@db/app\nAPI_TOKEN='tok-'\\''quoted'\\''-$(x)'\n"
DAY = 86400


@dataclass
class Fleet:
    world: World
    quorum: Quorum
    privates: tuple[Path, ...]  # the holders' private keyrings, holder order
    provider: Enclave  # enclave A, unlocked by holders 0 and 1, serving on its forward port
    bundle_hash: bytes
    enclaves: list[Enclave]

    @property
    def nsm(self) -> Path:
        return self.quorum.nsm

    @property
    def app_dir(self) -> Path:
        return self.quorum.app_dir

    @property
    def provider_address(self) -> str:
        return f"127.0.0.1:{self.provider.forward_port}"

    def start(self, name: str, **options: object) -> Enclave:
        options.setdefault("nsm", self.nsm)
        enclave = start_enclave(self.world, self.app_dir, name, list(VALUES), **options)  # type: ignore[arg-type]
        self.enclaves.append(enclave)
        return enclave

    def boot(self, name: str, **options: object) -> Enclave:
        enclave = self.start(name, **options)
        enclave.wait_for(rf"listening on 127\.0\.0\.1:{enclave.port} ")
        return enclave

    def unlock(self, enclave: Enclave, holders: tuple[int, ...] = (0, 1),
               nsm: Path | None = None) -> None:
        """Holders `holders` send their shards, expecting the PCRs of `nsm`'s enclave."""
        for k in holders:
            send_with_keyring(self.world, self.app_dir, enclave.port, self.privates[k],
                              nsm or self.nsm)

    def provider_lines(self, pattern: str) -> list[str]:
        return re.findall(pattern, self.provider.log())


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    worlds = world_in()
    world = next(worlds)
    enclaves: list[Enclave] = []
    try:
        keys = [keygen(world, f"holder{i}") for i in range(3)]
        quorum = make_quorum(world, [public for public, _ in keys], 2, ENV_FILE)
        bundle = parse_bundle((quorum.app_dir / ".caution" / "quorum-bundle.json").read_bytes())
        bundle_hash = submission_bundle_hash(bundle)
        assert bundle_hash is not None
        provider = boot_enclave(world, quorum.app_dir, "a", list(VALUES), nsm=quorum.nsm,
                                provide=True)
        enclaves.append(provider)
        fleet = Fleet(world, quorum, tuple(private for _, private in keys), provider,
                      bundle_hash, enclaves)
        fleet.unlock(provider)
        assert provider.view() == VALUES
        provider.wait_for(PROVIDER_LISTENING)
        yield fleet
    finally:
        stop_pids(forwardd_pids(e.log_path for e in enclaves))
        for enclave in enclaves:
            enclave.stop()
        next(worlds, None)  # the world's own clean-up: no process may be left


def test_enclaves_of_the_same_image_boot_from_the_provider_without_holder_action(
        fleet: Fleet) -> None:
    provider_log = fleet.provider.log()
    assert (f"forwarding provider started on 127.0.0.1:{fleet.provider.forward_port} "
            "(forwardd, pid") in provider_log
    assert re.search(rf"{PROVIDER_LISTENING} 127\.0\.0\.1:{fleet.provider.forward_port} "
                     rf"\(bundle {fleet.bundle_hash.hex()[:16]}, PCR0 "
                     rf"{pcrs_of(fleet.nsm).pcr0.hex()[:16]}\)", provider_log)
    b = fleet.start("b", forward_from=[fleet.provider_address])  # the option
    c = fleet.start("c", forward_from_env=[fleet.provider_address])  # the variable
    assert b.view() == VALUES and c.view() == VALUES
    pcr0 = pcrs_of(fleet.nsm).pcr0.hex()[:16]
    for enclave in (b, c):
        log = enclave.log()
        received = re.search(rf"locksmithd: received the secret from {fleet.provider_address} "
                             rf"\(module (\S+), PCR0 {pcr0}…, PCR1 [0-9a-f]{{16}}…, "
                             rf"PCR2 [0-9a-f]{{16}}…\)", log)
        assert received, log
        assert "accepted share" not in log  # no holder acted
        assert "locksmith-oneshot: exported 2 variables" in log
    forwarded = fleet.provider_lines(r"forwarded the secret to 127\.0\.0\.1:\d+ \(module \S+, "
                                     rf"PCR0 {pcr0}…, PCR1 [0-9a-f]{{16}}…, PCR2 [0-9a-f]{{16}}…, "
                                     r"rule same-pcrs\)")
    assert len(forwarded) >= 2, fleet.provider.log()


def test_other_pcrs_are_refused_until_two_holders_approved_them(fleet: Fleet,
                                                                 tmp_path: Path) -> None:
    nsm_d = other_pcrs(fleet.world, fleet.nsm, "nsm-d")
    pcrs_d = pcrs_of(nsm_d)
    now = int(time.time())
    refused = (r"locksmithd: forwarding from {addr} refused: Requester PCRs are not approved "
               r"\({n} of 2 holder approvals\)")

    def refused_boot(name: str, approvals: Path, n: int) -> None:
        d = fleet.boot(name, nsm=nsm_d, forward_from=[fleet.provider_address],
                       approvals=approvals)
        d.wait_for(refused.format(addr=re.escape(fleet.provider_address), n=n))
        d.stop()
        fleet.provider.wait_for(rf"refused forwarding to 127\.0\.0\.1:\d+ \(module \S+\): "
                                rf"Requester PCRs are not approved \({n} of 2 holder approvals\)")

    none = tmp_path / "none"
    refused_boot("d0", none, 0)

    one = tmp_path / "one"
    approve(one, fleet.privates[0], bundle_hash=fleet.bundle_hash, pcrs=pcrs_d,
            expires=now + 30 * DAY)
    refused_boot("d1", one, 1)

    expired = tmp_path / "expired"
    approve(expired, fleet.privates[0], bundle_hash=fleet.bundle_hash, pcrs=pcrs_d,
            expires=now + 30 * DAY)
    approve(expired, fleet.privates[1], bundle_hash=fleet.bundle_hash, pcrs=pcrs_d,
            expires=now - DAY)  # signed now, expired yesterday
    refused_boot("d2", expired, 1)

    two = tmp_path / "two"
    for k in (0, 2):
        approve(two, fleet.privates[k], bundle_hash=fleet.bundle_hash, pcrs=pcrs_d,
                expires=now + 30 * DAY)
    (two / "README.txt").write_text("not an approval")
    d = fleet.start("d3", nsm=nsm_d, forward_from=[fleet.provider_address], approvals=two)
    assert d.view() == VALUES
    log = d.log()
    assert "locksmithd: 2 approval file(s) read from" in log
    assert "approval(s) to present" in log and "(2 approval(s) to present)" in log
    assert re.search(rf"received the secret from {re.escape(fleet.provider_address)}", log)
    fleet.provider.wait_for(rf"forwarded the secret to 127\.0\.0\.1:\d+ \(module \S+, PCR0 "
                            rf"{pcrs_d.pcr0.hex()[:16]}…, PCR1 [0-9a-f]{{16}}…, PCR2 "
                            r"[0-9a-f]{16}…, rule approved by holders 0, 2\)")


def test_an_upgrade_without_approvals_of_its_own_boots_once_they_were_pushed_to_the_provider(
        fleet: Fleet, tmp_path: Path) -> None:
    """Two holders approve D's PCRs with `caution secret approve`; anyone pushes them to A with
    `caution secret approvals push`; D, whose approvals directory does not exist, boots from A."""
    nsm_d = other_pcrs(fleet.world, fleet.nsm, "nsm-upgrade", pcr0=b"\x7c" * 48)
    pcrs_d = pcrs_of(nsm_d)
    approvals = tmp_path / "approvals"
    bundle = str(fleet.app_dir / ".caution" / "quorum-bundle.json")
    root = str(fleet.nsm / "root.pem")
    for k in (0, 2):
        said = fleet.world.run(
            "caution", "secret", "approve", "--trusted-hashes", str(nsm_d / "trusted_hashes.json"),
            "--keyring", str(fleet.privates[k]), "--bundle", bundle, "--trust-root", root,
            "--expires", "30d", "--output", str(approvals / f"holder{k}.asc"),
            cwd=fleet.app_dir)
        assert f"Approval by holder {k} (" in said and f"of PCR set {pcrs_d.set_id}" in said
    said = fleet.world.run("caution", "secret", "approvals", "push", "--address",
                           fleet.provider_address, "--dir", str(approvals), "--bundle", bundle,
                           "--trust-root", root, cwd=fleet.app_dir)
    assert said.splitlines()[-1] == f"Provider at {fleet.provider_address} stored 2 approvals"
    fleet.provider.wait_for(rf"forwardd: stored 2 approvals from 127\.0\.0\.1:\d+ \(PCR sets "
                            rf"{pcrs_d.set_id}\); 0 discarded")

    d = fleet.start("upgrade", nsm=nsm_d, forward_from=[fleet.provider_address])
    assert d.view() == VALUES
    log = d.log()
    assert "(0 approval(s) to present)" in log and "approval file(s) read" not in log
    assert re.search(rf"received the secret from {re.escape(fleet.provider_address)} \(module "
                     rf"\S+, PCR0 {pcrs_of(fleet.nsm).pcr0.hex()[:16]}…", log), log  # A's
    assert "accepted share" not in log  # no holder acted on D
    fleet.provider.wait_for(rf"forwarded the secret to 127\.0\.0\.1:\d+ \(module \S+, PCR0 "
                            rf"{pcrs_d.pcr0.hex()[:16]}…, PCR1 [0-9a-f]{{16}}…, PCR2 "
                            r"[0-9a-f]{16}…, rule approved by holders 0, 2\)")


def test_holders_still_unlock_an_enclave_whose_provider_refuses_it(fleet: Fleet,
                                                                   tmp_path: Path) -> None:
    nsm_e = other_pcrs(fleet.world, fleet.nsm, "nsm-e", pcr0=b"\x6b" * 48)
    e = fleet.boot("e", nsm=nsm_e, forward_from=[fleet.provider_address],
                   approvals=tmp_path / "none")
    e.wait_for(r"forwarding from \S+ refused: Requester PCRs are not approved")
    fleet.unlock(e, (1, 2), nsm_e)
    assert e.view() == VALUES
    log = e.log()
    assert "quorum reached" in log and "received the secret" not in log


def test_a_provider_serving_a_wrong_secret_is_ignored_and_the_holders_unlock(
        fleet: Fleet) -> None:
    with FakeProvider(fleet.nsm, secret=bytes(range(32))) as liar:
        f = fleet.boot("f", forward_from=[liar.address])
        f.wait_for(rf"locksmithd: forwarding from {liar.address} \(module \S+\) served a secret "
                   r"that does not match the bundle; ignoring this provider")
        fleet.unlock(f)
        assert f.view() == VALUES
        assert liar.exchanges == 1  # not asked again during this boot
    log = f.log()
    assert "quorum reached" in log and "received the secret" not in log


def test_a_requester_with_another_bundle_is_refused_on_both_sides(fleet: Fleet) -> None:
    other = generated_quorum(2, 3, "ImportedV0").checked.bundle
    path = fleet.world.root / "other-bundle.json"
    path.write_text(other.to_json())
    g = fleet.boot("g", v1=False, bundle=path, forward_from=[fleet.provider_address])
    g.wait_for(rf"locksmithd: forwarding from {re.escape(fleet.provider_address)} refused: "
               r"Requester runs a different bundle")
    g.stop()
    fleet.provider.wait_for(r"refused forwarding to 127\.0\.0\.1:\d+ \(module unverified\): "
                            r"Requester runs a different bundle")


def test_send_shard_unlocks_an_enclave_whose_provider_is_unreachable(fleet: Fleet) -> None:
    dead = f"127.0.0.1:{free_port()}"
    h = fleet.boot("h", forward_from_env=[dead])
    h.wait_for(rf"forwarding from {re.escape(dead)} failed: Connection refused; retrying in 1 s")
    fleet.unlock(h, (0, 2))
    assert h.view() == VALUES
    assert "quorum reached" in h.log()
