"""The hypothesis profile of the fuzz suites: small and reproducible in `make test`, long in
`make fuzz`.

* `FUZZ_EXAMPLES` sets `max_examples` per test (default 30, so that the whole directory runs
  in well under a minute on two cores inside `make test`). When it is set, examples are drawn
  at random (and failures kept in `.hypothesis/`), which is what a long `make fuzz` run is for.
  When it is not, the examples are derandomised: `make test` must not turn red by chance, and a
  fuzz failure in CI must be reproducible by running it again.
* `FUZZ_DEADLINE_SCALE` multiplies every per-example deadline (default 1), for slow machines.

Tests do not load this profile globally (that would change the budget of every other
hypothesis test in the session); they take it through `tests.fuzz.strategies.fuzz(...)`, which
adds each target's own deadline.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

PROFILE = "locksmith-fuzz"
DEFAULT_EXAMPLES = 30


def _env_number(name: str, default: float) -> float:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise pytest.UsageError(f"{name} must be a number, got {text!r}") from None
    if value <= 0:
        raise pytest.UsageError(f"{name} must be positive, got {text!r}")
    return value


EXAMPLES = int(_env_number("FUZZ_EXAMPLES", DEFAULT_EXAMPLES))
DEADLINE_SCALE = _env_number("FUZZ_DEADLINE_SCALE", 1.0)
RANDOMISED = bool(os.environ.get("FUZZ_EXAMPLES", "").strip())

settings.register_profile(
    PROFILE,
    max_examples=EXAMPLES,
    derandomize=not RANDOMISED,
    **({} if RANDOMISED else {"database": None}),
    # Inputs are deliberately large or slow to generate in places (whole bundles, certificates
    # re-signed per example); bounded time is checked with per-test deadlines instead.
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.filter_too_much],
    print_blob=True,
)


def pytest_report_header(config: pytest.Config) -> str:
    mode = "random" if RANDOMISED else "derandomised"
    return f"fuzz: {EXAMPLES} examples per test ({mode}), deadline scale {DEADLINE_SCALE:g}"
