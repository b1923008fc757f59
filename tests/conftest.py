"""Shared test locations, and the holder keys GnuPG makes once per test process.

The spec and the reference fixtures live in `../shared` beside the checkout (also in CI, which
copies it there); `LOCKSMITH_SHARED` overrides that for unusual layouts.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.oracles import ED25519_HOLDER, P256_HOLDER, RSA_HOLDER, GpgKey, make_gpg_key

if TYPE_CHECKING:
    from tests.forwardd_kit import Provider, Providers, Served
    from tests.locksmithd_kit import Daemons, Sim
    from tests.unlock_kit import World

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("LOCKSMITH_SHARED", REPO.parent / "shared"))
FIXTURES = SHARED / "fixtures"
CAUTION_V0 = FIXTURES / "caution-v0"
NITRO = FIXTURES / "nitro"


@pytest.fixture(scope="session")
def caution_v0() -> Path:
    assert CAUTION_V0.is_dir(), f"reference fixtures not found at {CAUTION_V0}"
    return CAUTION_V0


@pytest.fixture(scope="session")
def nitro_fixtures() -> Path:
    assert NITRO.is_dir(), f"Nitro fixtures not found at {NITRO}"
    return NITRO


# --- holders made by the GnuPG oracle, once per test process --------------------------------
# Each is made in a throw-away GnuPG home and kept as exported bytes; a test imports them into a
# home of its own (`tests.oracles.gpg_home`), so no test shares GnuPG state with another.


@pytest.fixture(scope="session")
def gpg_ed25519_holder() -> GpgKey:
    """Ed25519 certify-only primary with Ed25519 sign, Cv25519 encrypt, Ed25519 auth subkeys."""
    return make_gpg_key("Ed Holder <ed@example.org>", "ed25519", ED25519_HOLDER)


@pytest.fixture(scope="session")
def gpg_rsa_holder() -> GpgKey:
    """RSA-3072 certify-only primary with RSA-3072 sign, encrypt and auth subkeys."""
    return make_gpg_key("RSA Holder <rsa@example.org>", "rsa3072", RSA_HOLDER)


@pytest.fixture(scope="session")
def gpg_p256_holder() -> GpgKey:
    """NIST P-256 certify-only ECDSA primary with ECDSA sign, ECDH encrypt, ECDSA auth subkeys."""
    return make_gpg_key("P256 Holder <p256@example.org>", "nistp256", P256_HOLDER)


# --- locksmithd daemons (tests/test_locksmithd*.py) ------------------------------------------


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Sim:
    """A simulated NSM directory shared by one test module's daemons."""
    from tests.locksmithd_kit import Sim
    return Sim.create(tmp_path_factory.mktemp("nsm"))


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[Daemons]:
    """Starts locksmithd processes for a test and cleans every one (and its keyforkd) up."""
    from tests.locksmithd_kit import daemons_in
    yield from daemons_in(tmp_path)


# --- forwardd processes (tests/test_forwardd*.py, tests/cli/test_approvals_push_cli.py) ------


@pytest.fixture(scope="module")
def served(sim: Sim, tmp_path_factory: pytest.TempPathFactory) -> Served:
    from tests.forwardd_kit import Served
    return Served.create(sim, tmp_path_factory.mktemp("bundle"))


@pytest.fixture
def providers(tmp_path: Path) -> Iterator[Providers]:
    """Starts forwardd processes for a test and stops every one."""
    from tests.forwardd_kit import providers_in
    yield from providers_in(tmp_path)


@pytest.fixture
def provider(providers: Providers, sim: Sim, served: Served) -> Provider:
    return providers.start(sim, served.bundle, served.quorum.secret)


@pytest.fixture
def world() -> Iterator[World]:
    """The product as separate processes on loopback (tests/unlock_kit.py), cleaned up after."""
    from tests.unlock_kit import world_in
    yield from world_in()


@pytest.fixture(scope="session")
def zipapp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """dist/locksmith.pyz as build.sh makes it, built once per test process."""
    out = tmp_path_factory.mktemp("dist") / "locksmith.pyz"
    subprocess.run([str(REPO / "build.sh"), str(out)], cwd=REPO, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return out


# --- virtual smart cards: private pcscd + vpcd + jcecard (tests/cardkit) ---------------------
from tests.cardkit.fixtures import card_stack, virtual_card, virtual_cards  # noqa: E402, F401
# --- end of virtual smart cards ----------------------------------------------------------------


# --- the enclave images (tests/test_image.py, `make image-test`) ------------------------------
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "image: builds and boots the Containerfile's images (root, podman, mmdebstrap)")
