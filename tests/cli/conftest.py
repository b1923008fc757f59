"""Fixtures of the send-shard CLI tests: simulated-NSM directories, the v0 fixture bundle and an
in-test enclave per test (tests/cli/enclave_harness.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from locksmith.core.attestation.nsm_simulated import SimulatedNsm
from locksmith.core.bundle.checks import CheckedBundle, check_bundle
from locksmith.core.bundle.model import parse_bundle
from tests.cli.enclave_harness import FakeEnclave, running
from tests.conftest import CAUTION_V0


# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def nsm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("nsm")
    SimulatedNsm.open(path)
    return path


@pytest.fixture(scope="module")
def other_nsm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another simulated enclave image: same kind of root, different PCRs."""
    path = tmp_path_factory.mktemp("other-nsm")
    SimulatedNsm.open(path)
    return path


@pytest.fixture(scope="module")
def v0() -> CheckedBundle:
    return check_bundle(parse_bundle((CAUTION_V0 / "bundle.json").read_bytes()))


@pytest.fixture
def enclave(v0: CheckedBundle, nsm_dir: Path) -> Iterator[FakeEnclave]:
    with running(v0, SimulatedNsm.open(nsm_dir)) as server:
        yield server
