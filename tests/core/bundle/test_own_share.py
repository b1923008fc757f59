"""A holder's own share against its bundle (formats.md §7.4 step 3, protocol.md §11 step 3)."""

from __future__ import annotations

import dataclasses

import pytest

from locksmith.core.attestation.nsm_simulated import SimulatedNsm
from locksmith.core.bundle.checks import CheckedBundle, check_bundle
from locksmith.core.bundle.model import BundleV0, BundleV1, ImportedV0, OpenPGPKey, parse_bundle
from locksmith.core.bundle.own_share import (
    METADATA_DIFFERS, V0_ORDER_WARNING, CheckedShare, open_own_share,
)
from locksmith.core.bundle.shardfile import CANNOT_DECRYPT, ShardfileError
from locksmith.core.keymaker import request as km
from locksmith.core.openpgp.certs import load_certificates
from locksmith.core.openpgp.keys import SecretKey
from locksmith.core.openpgp.secretkeys import load_secret_keys
from locksmith.personalities.keymaker.service import KeymakerService
from tests.conftest import CAUTION_V0
from tests.keymaker_helpers import Holder, keygen_holders


def fixture_keys(name: str) -> list[SecretKey]:
    return [k.unlock() for k in load_secret_keys((CAUTION_V0 / f"{name}.private.asc").read_bytes()).keys]


@pytest.fixture(scope="module")
def v0() -> CheckedBundle:
    return check_bundle(parse_bundle((CAUTION_V0 / "bundle.json").read_bytes()))


@pytest.fixture(scope="module")
def v1(tmp_path_factory: pytest.TempPathFactory) -> tuple[CheckedBundle, list[Holder]]:
    holders = keygen_holders(3, "own")
    service = KeymakerService(SimulatedNsm.open(tmp_path_factory.mktemp("nsm")), "simulated")
    request = km.V1Request(bytes(16), {}, tuple(OpenPGPKey(h.public) for h in holders), 2, 3)
    certs = [load_certificates(h.public)[0] for h in holders]
    return check_bundle(BundleV1.from_json(service.generate(request, certs))), holders


def test_the_fixture_shares_open_with_the_metadata_threshold(v0: CheckedBundle) -> None:
    for index, name in enumerate(("alice", "bob")):
        own = open_own_share(v0, index, fixture_keys(name))
        assert (own.index, own.threshold, own.warnings) == (index, 2, ())
        assert len(own.share) == 33 and own.share[0] == index + 1


def test_v0_keyring_order_that_differs_from_the_metadata_only_warns(v0: CheckedBundle) -> None:
    swapped = dataclasses.replace(v0, holders=v0.holders[::-1])
    own = open_own_share(swapped, 1, fixture_keys("alice"))  # Alice is listed second
    assert own.warnings == (V0_ORDER_WARNING,)
    assert own.share[0] == 1  # the metadata is authoritative for v0
    assert V0_ORDER_WARNING == ("this v0 bundle's keyring order differs from its encrypted "
                                "metadata; a strict enclave will reject the share")


def test_v1_threshold_that_differs_from_the_metadata_is_named(
        v1: tuple[CheckedBundle, list[Holder]]) -> None:
    checked, holders = v1
    assert open_own_share(checked, 2, holders[2].keys()).threshold == 2
    with pytest.raises(ShardfileError, match=r"^the share's threshold \(2\) differs from the "
                                             r"bundle's \(3\)$"):
        open_own_share(dataclasses.replace(checked, threshold=3), 0, holders[0].keys())


def test_v1_holders_that_differ_from_the_metadata(v1: tuple[CheckedBundle, list[Holder]]) -> None:
    checked, holders = v1
    reordered = dataclasses.replace(checked, holders=checked.holders[::-1])
    with pytest.raises(ShardfileError, match=f"^{METADATA_DIFFERS}$"):
        open_own_share(reordered, 2, holders[0].keys())
    stranger = load_certificates(keygen_holders(1, "stranger")[0].public)[0]
    replaced = dataclasses.replace(checked, holders=(stranger, *checked.holders[1:]))
    with pytest.raises(ShardfileError, match=f"^{METADATA_DIFFERS}$"):
        open_own_share(replaced, 0, holders[0].keys())  # metadata opens, holder 0 is not in it


def test_imported_v0_reports_any_difference_as_metadata_differs(v0: CheckedBundle) -> None:
    assert isinstance(v0.bundle, BundleV0)
    keys = tuple(OpenPGPKey(c.armored()) for c in v0.holders)
    good = check_bundle(ImportedV0(v0.bundle, 2, keys))
    assert open_own_share(good, 1, fixture_keys("bob")).threshold == 2
    wrong = check_bundle(ImportedV0(v0.bundle, 1, keys))
    with pytest.raises(ShardfileError, match=f"^{METADATA_DIFFERS}$"):
        open_own_share(wrong, 1, fixture_keys("bob"))


def test_other_keys_cannot_decrypt(v0: CheckedBundle) -> None:
    with pytest.raises(ShardfileError, match=f"^{CANNOT_DECRYPT}$"):
        open_own_share(v0, 0, [k for h in keygen_holders(1, "x") for k in h.keys()])


def test_wipe_zeroes_the_share(v0: CheckedBundle) -> None:
    own = open_own_share(v0, 0, fixture_keys("alice"))
    assert isinstance(own, CheckedShare) and any(own.share)
    own.wipe()
    assert own.share == bytearray(33)

