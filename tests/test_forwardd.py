"""forwardd, the forwarding provider (docs/forwarding.md §2.1, §5), as a real process on
127.0.0.1 with a simulated NSM, driven by a scripted requester speaking F1–F4: the same image
gets the secret, other PCRs only with the holders' approvals, every bad document is refused
with its reason, each outcome is one audit line, and the secret never reaches the log (checked
for every provider at teardown)."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from locksmith.core.attestation.nsm import NsmChoice
from locksmith.core.attestation.nsm_simulated import SimulatedNsm
from locksmith.core.attestation.verify import AWS_ROOT_SHA256
from locksmith.core.forwarding.approval import PcrSet
from locksmith.core.forwarding.binding import provider_binding, requester_binding
from locksmith.core.forwarding.messages import Challenge, Forwarded, Refused, Stored
from locksmith.personalities.forwarding_trust import ForwardingTrustError, peer_trust_anchor
from tests.core.protocol_kit import generated_quorum
from tests.forwardd_kit import (
    Served,
    LISTENING, Provider, Providers, Requester, approvals, enclave, other_pcrs, push,
)
from tests.locksmithd_kit import Sim, write_bundle

# --- the peer trust anchor (§2.1) ------------------------------------------------------------


def test_with_the_device_nsm_peers_must_chain_to_the_aws_root_and_nothing_is_said() -> None:
    anchor, warning = peer_trust_anchor(NsmChoice("device"))
    assert anchor.fingerprint == AWS_ROOT_SHA256 and warning is None


def test_with_the_simulated_nsm_peers_must_chain_to_its_own_root_and_a_warning_says_so(
        sim: Sim) -> None:
    anchor, warning = peer_trust_anchor(NsmChoice("simulated", sim.directory))
    assert anchor.der == sim.anchor.der
    assert warning == ("warning: forwarding trusts the simulated NSM root (locksmith simulated "
                       f"NSM root (development only), sha256 {sim.anchor.fingerprint})")


def test_an_unreadable_simulated_root_is_one_line_naming_the_file(tmp_path: Path,
                                                                  sim: Sim) -> None:
    with pytest.raises(ForwardingTrustError, match=f"cannot read the simulated NSM root "
                       f"{tmp_path}/root.pem: No such file"):
        peer_trust_anchor(NsmChoice("simulated", tmp_path))
    shutil.copy(sim.directory / "trusted_hashes.json", tmp_path / "root.pem")
    with pytest.raises(ForwardingTrustError, match="invalid simulated NSM root .*root.pem: not a "
                       "PEM certificate"):
        peer_trust_anchor(NsmChoice("simulated", tmp_path))


# --- forwardd as a process (§5) --------------------------------------------------------------


def _requester(provider: Provider, sim: Sim, served: Served, *,
               pcrs: PcrSet | None = None) -> Requester:
    return Requester(provider.address, sim, served.digest,
                     nsm=None if pcrs is None else enclave(sim, pcrs))


def test_it_logs_where_it_listens_with_the_bundle_and_its_own_pcr0(
        provider: Provider, sim: Sim, served: Served) -> None:
    match = LISTENING.search(provider.log())
    assert match is not None and int(match.group(1)) == provider.port
    assert match.group(2) == served.digest.hex()[:16]
    assert match.group(3) == sim.pcrs[0].hex()[:16]
    assert ("forwardd: warning: forwarding trusts the simulated NSM root (locksmith simulated "
            f"NSM root (development only), sha256 {sim.anchor.fingerprint})") in provider.log()


def test_an_enclave_of_the_same_image_receives_the_secret_and_the_forward_is_audited(
        provider: Provider, sim: Sim, served: Served) -> None:
    with _requester(provider, sim, served) as requester:
        answer, secret = requester.exchange()
        assert isinstance(answer, Forwarded) and secret == served.quorum.secret
        assert requester.closed_within(5) is not None  # then the provider closes
    line = provider.wait_for_log(r"forwardd: forwarded the secret to .*").group()
    pcrs = [sim.pcrs[i].hex()[:16] for i in (0, 1, 2)]
    assert re.fullmatch(
        rf"forwardd: forwarded the secret to 127\.0\.0\.1:\d+ \(module locksmith-sim-[0-9a-f]{{8}}, "
        rf"PCR0 {pcrs[0]}…, PCR1 {pcrs[1]}…, PCR2 {pcrs[2]}…, rule same-pcrs\)", line), line


def test_other_pcrs_without_approvals_are_refused_and_the_refusal_is_audited(
        provider: Provider, sim: Sim, served: Served) -> None:
    with _requester(provider, sim, served, pcrs=other_pcrs(0x10)) as requester:
        answer, secret = requester.exchange()
    assert answer == Refused("Requester PCRs are not approved (0 of 2 holder approvals)")
    assert secret is None
    provider.wait_for_log(r"forwardd: refused forwarding to 127\.0\.0\.1:\d+ \(module "
                          r"locksmith-sim-[0-9a-f]{8}\): Requester PCRs are not approved "
                          r"\(0 of 2 holder approvals\)")


def test_other_pcrs_approved_by_two_holders_receive_the_secret(
        provider: Provider, sim: Sim, served: Served) -> None:
    pcrs = other_pcrs(0x20)
    texts = approvals(served.quorum, pcrs, (2, 0), served.digest)
    with _requester(provider, sim, served, pcrs=pcrs) as requester:
        answer, secret = requester.exchange(texts)
    assert isinstance(answer, Forwarded) and secret == served.quorum.secret
    provider.wait_for_log(r"PCR0 2020202020202020…, PCR1 2121212121212121…, "
                          r"PCR2 2222222222222222…, rule approved by holders 0, 2\)")


def test_one_approval_of_a_2_of_3_bundle_is_not_enough(
        provider: Provider, sim: Sim, served: Served) -> None:
    pcrs = other_pcrs(0x30)
    with _requester(provider, sim, served, pcrs=pcrs) as requester:
        answer, _ = requester.exchange(approvals(served.quorum, pcrs, (1,), served.digest))
    assert answer == Refused("Requester PCRs are not approved (1 of 2 holder approvals)")


def test_approvals_by_an_excluded_holder_do_not_count(
        providers: Providers, sim: Sim, served: Served) -> None:
    excluded = served.quorum.holders[1].fingerprint
    provider = providers.start(sim, served.bundle, served.quorum.secret,
                               extra=["--exclude-holder", excluded])
    assert f"ignoring approvals by holder 1 ({excluded}) at the operator's request" in \
        provider.log()
    pcrs = other_pcrs(0x40)
    with _requester(provider, sim, served, pcrs=pcrs) as requester:
        answer, _ = requester.exchange(approvals(served.quorum, pcrs, (0, 1), served.digest))
    assert answer == Refused("Requester PCRs are not approved (1 of 2 holder approvals)")


def test_a_requester_of_another_bundle_is_refused_at_f1_without_an_attestation(
        provider: Provider, sim: Sim, served: Served) -> None:
    with _requester(provider, sim, served) as requester:
        assert requester.hello(bundle_hash=bytes(32)) == Refused(
            "Requester runs a different bundle")
    provider.wait_for_log(r"refused forwarding to 127\.0\.0\.1:\d+ \(module unverified\): "
                          r"Requester runs a different bundle")


def test_another_protocol_version_is_refused_naming_both(
        provider: Provider, sim: Sim, served: Served) -> None:
    with _requester(provider, sim, served) as requester:
        assert requester.hello(version=2) == Refused(
            "unsupported forwarding version 2 (this provider speaks 1)")


@pytest.mark.parametrize("bend, reason", [
    ("nonce", "Requester attestation rejected: nonce did not match"),
    ("root", "Requester attestation rejected: certificate chain does not lead to the trusted "
             "root"),
    ("bundle", "Requester attestation is bound to a different bundle"),
    ("provider-binding", "Requester attestation is bound to a different bundle"),
    ("49504", "Requester attestation is bound to a different bundle"),
    ("keyless", "Requester attestation carries no X25519 key"),
    ("debug", "Requester attestation rejected: debug-mode enclave (all-zero PCRs) refused"),
    ("garbage", "Requester attestation rejected: malformed attestation document: "),
])
def test_a_bad_requester_attestation_is_refused_with_its_reason(
        provider: Provider, sim: Sim, served: Served, tmp_path: Path, bend: str,
        reason: str) -> None:
    with _requester(provider, sim, served) as requester:
        challenge = requester.hello()
        assert isinstance(challenge, Challenge)
        if bend == "nonce":
            document = requester.document(nonce=os.urandom(32))
        elif bend == "root":  # an enclave whose NSM chains to another CA
            document = requester.document(nsm=SimulatedNsm.open(tmp_path / "other"))
        elif bend == "bundle":
            document = requester.document(user_data=requester_binding(bytes(32)))
        elif bend == "provider-binding":  # the provider's own document bent back
            document = requester.document(
                user_data=provider_binding(served.digest, challenge.nonce))
        elif bend == "49504":  # as locksmithd attests on 49504: a bare key, no public_key
            document = requester.document(user_data=requester.key.public_bytes(),
                                          keyless=True)
        elif bend == "keyless":
            document = requester.document(keyless=True)
        elif bend == "debug":
            document = requester.document(nsm=enclave(sim, PcrSet(*(bytes(48),) * 3)))
        else:
            document = b"\xa0" * 100
        answer = requester.request(document=document)
    assert isinstance(answer, Refused) and answer.reason.startswith(reason), answer
    module = "unverified" if reason.startswith("Requester attestation rejected") else \
        "locksmith-sim-[0-9a-f]{8}"
    provider.wait_for_log(rf"refused forwarding to 127\.0\.0\.1:\d+ \(module {module}\): "
                          + re.escape(reason))


def test_a_document_replayed_from_another_exchange_is_refused(
        provider: Provider, sim: Sim, served: Served) -> None:
    """Dr made for one connection's Np is useless on the next (the nonce differs)."""
    with _requester(provider, sim, served) as first:
        assert isinstance(first.hello(), Challenge)
        replay = first.document()
    with _requester(provider, sim, served) as second:
        assert isinstance(second.hello(), Challenge)
        answer = second.request(document=replay)
    assert answer == Refused("Requester attestation rejected: nonce did not match")


def test_repeated_refusals_are_one_line_per_second_with_the_count(
        provider: Provider, sim: Sim, served: Served) -> None:
    for _ in range(6):
        with _requester(provider, sim, served) as requester:
            assert isinstance(requester.hello(bundle_hash=bytes(32)), Refused)
    provider.wait_for_log(r"Requester runs a different bundle \(4 similar refusals suppressed\)",
                          timeout=5)
    assert provider.log().count("Requester runs a different bundle") == 2


def test_the_secret_and_the_exchange_keys_never_reach_the_log(
        provider: Provider, sim: Sim, served: Served) -> None:
    with _requester(provider, sim, served) as requester:
        answer, _ = requester.exchange()
        assert isinstance(answer, Forwarded)
    provider.wait_for_log("forwarded the secret to")
    assert provider.stop() == 143
    log = provider.log().lower()
    for value in (served.quorum.secret, answer.public_key, answer.encrypted_secret,
                  requester.key.public_bytes()):
        assert value.hex() not in log


def test_sigterm_stops_it_with_143_and_the_secret_wiped(provider: Provider) -> None:
    assert provider.stop() == 143
    assert "forwardd: stopped by SIGTERM; the secret was wiped" in provider.log()


def test_the_boot_path_loads_no_cli_http_or_pgpy_module(
        providers: Providers, sim: Sim, served: Served) -> None:
    provider = providers.start(sim, served.bundle, served.quorum.secret, bootstrap=True)
    with _requester(provider, sim, served) as requester:
        answer, _ = requester.exchange()  # the whole path, approvals counted too
        assert isinstance(answer, Forwarded)
    pcrs = other_pcrs(0x50)
    with _requester(provider, sim, served, pcrs=pcrs) as requester:
        requester.exchange(approvals(served.quorum, pcrs, (0, 1), served.digest))
    assert push(provider.address, approvals(served.quorum, pcrs, (2,), served.digest)) \
        == Stored(1)  # and a push
    assert provider.stop() == 143
    modules = set(provider.stdout_path.read_text().split())
    assert {"locksmith.personalities.forwardd.server",
            "locksmith.personalities.forwardd.pushes"} <= modules
    forbidden = {m.split(".")[0] for m in modules} & {
        "typer", "click", "httpx", "uvicorn", "starlette", "pgpy"}
    assert not forbidden, forbidden


# --- startup refusals (§5.1) -----------------------------------------------------------------


def test_a_secret_that_is_not_the_bundle_s_stops_it(
        providers: Providers, sim: Sim, served: Served) -> None:
    status, log = providers.run(sim, served.bundle, bytes(32))
    assert status == 1
    assert log.splitlines()[-1] == "forwardd: the secret does not match the bundle"
    assert "listening" not in log


@pytest.mark.parametrize("length", [0, 31, 33])
def test_a_secret_of_the_wrong_length_stops_it(
        providers: Providers, sim: Sim, served: Served, length: int) -> None:
    status, log = providers.run(sim, served.bundle, served.quorum.secret[:1] * length)
    assert status == 1
    got = "more" if length > 32 else str(length)
    assert re.search(r"forwardd: cannot read the secret: expected exactly 32 secret bytes on "
                     rf"fd \d+, got {got}$", log.strip()), log


def test_a_v0_bundle_cannot_be_provided(providers: Providers, sim: Sim) -> None:
    from tests.conftest import CAUTION_V0
    path = CAUTION_V0 / "bundle.json"
    status, log = providers.run(sim, path, b"\x07" * 32)
    assert status == 1
    assert log.splitlines()[-1] == ("forwardd: key forwarding needs a bundle with a threshold "
                                    f"(V1 or ImportedV0); {path} is a v0 bundle")


def test_a_listen_fd_that_is_not_a_socket_stops_it(
        providers: Providers, sim: Sim, served: Served) -> None:
    status, log = providers.run(sim, served.bundle, served.quorum.secret,
                                extra=["--listen-fd", "0"])
    assert status == 1
    assert "forwardd: cannot use --listen-fd 0:" in log


def test_an_unproofed_bundle_is_refused_as_locksmithd_refuses_it(
        providers: Providers, sim: Sim, tmp_path: Path) -> None:
    quorum = generated_quorum(2, 3, "V1")  # placeholder proof
    path = write_bundle(tmp_path, quorum.checked.bundle)
    status, log = providers.run(sim, path, quorum.secret)
    assert status == 1 and "listening" not in log
    assert log.splitlines()[-1].startswith("forwardd: ")


def test_usage_errors_exit_2_with_one_error_line(providers: Providers, sim: Sim,
                                                 served: Served) -> None:
    status, log = providers.run(sim, served.bundle, served.quorum.secret, options=[
        "--bundle", str(served.bundle), "--keymaker-pcr-policy", str(sim.policy),
        "--nsm", "simulated"])
    assert status == 2
    assert log.splitlines()[-1] == ("forwardd: error: --nsm-dir is required with --nsm "
                                    "simulated")
    status, log = providers.run(sim, served.bundle, served.quorum.secret, extra=[
        "--exclude-holder", "ABC"])
    assert status == 2 and "invalid holder fingerprint 'ABC'" in log
