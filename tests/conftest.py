"""Shared test locations.

The spec and the reference fixtures live in `../shared` beside the checkout (also in CI, which
copies it there); `LOCKSMITH_SHARED` overrides that for unusual layouts.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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
