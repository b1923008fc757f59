"""Shared pieces of the `send-shard` CLI tests: texts and `send` (the CLI in-process with the
usual options). Their fixtures (simulated-NSM directories, the v0 bundle, the in-test enclave)
are in tests/cli/conftest.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.clirun import Result, caution
from tests.cli.enclave_harness import FakeEnclave
from tests.conftest import CAUTION_V0

Capsys = pytest.CaptureFixture[str]
ZERO = "00" * 48
SENDING = "Sending shard to enclave at {address}..."
SENT = "Shard sent, waiting for the enclave's answer"
TEST_SECRET = ("warning: this bundle's quorum key comes from the public test secret; anything "
               "encrypted to it can be read by anyone")

def send(capsys: Capsys, address: str, nsm_dir: Path, *extra: str, holder: str = "alice",
         bundle: Path = CAUTION_V0 / "bundle.json", trust: bool = True,
         hashes: Path | None = None) -> Result:
    args = ["secret", "send-shard", "--address", address, "--bundle", str(bundle),
            "--trusted-hashes", str(hashes or nsm_dir / "trusted_hashes.json")]
    if holder:
        args += ["--keyring", str(CAUTION_V0 / f"{holder}.private.asc")]
    if trust:
        args += ["--trust-root", str(nsm_dir / "root.pem")]
    return caution(capsys, *args, *extra)


def lines(result: Result) -> list[str]:
    return result.err.splitlines()


def refused_before_message_3(enclave: FakeEnclave, result: Result, error: str) -> None:
    """The client connected, got the document, refused it: message 3 never reached the server."""
    assert result.code == 1, result.err
    assert lines(result)[-1] == f"error: {error}"
    assert SENT not in result.err and "Enclave attestation verified" not in result.err
    assert len(enclave.seen) == 1 and enclave.seen[0].nonce is not None
    assert enclave.submissions == 0
