"""`caution secret encrypt` (cli.md §4): raw values reach GnuPG and Sequoia byte-exactly."""

from __future__ import annotations

import json
import stat
import time
from pathlib import Path

import pytest

from locksmith.core.keymaker import quorum
from locksmith.core.openpgp import message, quorumkey
from locksmith.core.openpgp.armor import dearmor_one
from locksmith.core.openpgp.packets import parse_packets
from tests.cli.clirun import caution
from tests.conftest import CAUTION_V0
from tests.oracles import gpg_home, sq

Capsys = pytest.CaptureFixture[str]
SECRET = bytes.fromhex("5a" * 32)

ENV = """\
# comment
export SINGLE='it''s "quoted" # not a comment'
DOUBLE="say \\"hi\\" $(rm -rf /) `id` $HOME"
SPACES="  padded value  "
HASHED=a#b
UNICODE="grüße ☃ 日本"
MULTI="-----BEGIN KEY-----
line two
  indented -----END KEY-----"
EMPTY=
"""
EXPECTED = {
    "SINGLE": 'its "quoted" # not a comment',
    "DOUBLE": 'say "hi" $(rm -rf /) `id` $HOME',
    "SPACES": "  padded value  ",
    "HASHED": "a#b",
    "UNICODE": "grüße ☃ 日本",
    "MULTI": "-----BEGIN KEY-----\nline two\n  indented -----END KEY-----",
}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("project")
    keyring = json.loads((CAUTION_V0 / "bundle.json").read_text())["keyring"]
    # The fixture holders were created in 2023; generate as of now.
    bundle = quorum.generate_quorum(keyring, 2, 2, now=int(time.time()), secret=SECRET)
    (root / ".caution").mkdir()
    (root / ".caution" / "quorum-bundle.json").write_text(bundle.to_json())
    (root / ".env").write_text(ENV)
    return root


@pytest.fixture(scope="module")
def tsk() -> str:
    return quorumkey.secret_certificate(quorumkey.quorum_keys(SECRET), generated=int(time.time()))


def _encrypt(capsys: Capsys, project: Path, *args: str):  # type: ignore[no-untyped-def]
    return caution(capsys, "--workdir", str(project), "secret", "encrypt", *args)


def test_every_non_empty_value_is_encrypted_and_empty_is_skipped(capsys: Capsys, project: Path) -> None:
    result = _encrypt(capsys, project)
    assert result.code == 0, result.err
    secrets = project / ".caution" / "secrets"
    assert sorted(p.stem for p in secrets.iterdir()) == sorted(EXPECTED)
    lines = result.err.splitlines()
    assert "skipping empty value for EMPTY" in lines
    assert f"encrypted SINGLE -> {Path('.caution/secrets/SINGLE.asc')}" in lines
    assert lines[-1] == f"encrypted {len(EXPECTED)} secret(s)"
    assert result.out == ""
    key = quorumkey.decryption_key(SECRET)
    for name, value in EXPECTED.items():
        path = secrets / f"{name}.asc"
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
        text = path.read_text()
        assert text.startswith("-----BEGIN PGP MESSAGE-----\n\n")
        assert message.decrypt(text, [key]).plaintext == value.encode()
        # One PKESK with the real key ID of the encryption subkey, then SEIPD: no compression.
        tags = [p.tag for p in parse_packets(dearmor_one(text))]
        assert tags == [1, 18]


def test_gnupg_decrypts_each_value_exactly(capsys: Capsys, project: Path, tsk: str) -> None:
    assert _encrypt(capsys, project).code == 0
    with gpg_home() as gpg:
        gpg.import_(tsk)
        for name, value in EXPECTED.items():
            asc = (project / ".caution" / "secrets" / f"{name}.asc").read_bytes()
            assert gpg.decrypt(asc) == value.encode(), name


def test_sequoia_decrypts_each_value_exactly(capsys: Capsys, project: Path, tsk: str,
                                             tmp_path: Path) -> None:
    assert _encrypt(capsys, project).code == 0
    key_file = tmp_path / "tsk.asc"
    key_file.write_text(tsk)
    for name, value in EXPECTED.items():
        asc = project / ".caution" / "secrets" / f"{name}.asc"
        out = sq("decrypt", "--recipient-key", str(key_file), str(asc)).stdout
        assert out == value.encode(), name


def test_selected_keys_only_and_other_files_untouched(capsys: Capsys, project: Path) -> None:
    secrets = project / ".caution" / "secrets"
    secrets.mkdir(parents=True, exist_ok=True)
    (secrets / "OTHER.asc").write_text("untouched")
    result = _encrypt(capsys, project, "HASHED")
    assert result.code == 0
    assert result.err.splitlines()[-1] == "encrypted 1 secret(s)"
    assert (secrets / "OTHER.asc").read_text() == "untouched"


@pytest.mark.parametrize("args,message", [
    (["BAD-KEY"], "Invalid env key: BAD-KEY"),
    (["NOPE", "ALSO"], "Env key(s) not found in .env: ALSO, NOPE"),
    (["--env-file", "missing.env"], "Missing env file: missing.env"),
    (["--bundle", "missing.json"], "quorum bundle not found: missing.json"),
])
def test_input_errors_name_the_problem(capsys: Capsys, project: Path, args: list[str],
                                       message: str) -> None:
    result = _encrypt(capsys, project, *args)
    assert (result.code, result.err.strip()) == (1, f"error: {message}")


def test_unterminated_quote_is_an_error_with_its_line(capsys: Capsys, project: Path,
                                                      tmp_path: Path) -> None:
    env = tmp_path / "bad.env"
    env.write_text("A=1\nB='open\n")
    result = _encrypt(capsys, project, "--env-file", str(env))
    assert (result.code, result.err.strip()) == (1, f"error: {env}:2: unterminated single quote")


def test_tampered_bundle_is_refused_with_the_spec_text(capsys: Capsys, project: Path,
                                                       tmp_path: Path) -> None:
    data = json.loads((project / ".caution" / "quorum-bundle.json").read_text())
    data["keyring"] = data["keyring"].replace("\n\n", "\n\n\n", 1)
    bad = tmp_path / "bundle.json"
    bad.write_text(json.dumps(data))
    result = _encrypt(capsys, project, "--bundle", str(bad))
    assert result.err.strip() == (f"error: invalid quorum bundle {bad}: keyring checksum "
                                  "mismatch; restore the original bundle (no repair override)")


def test_the_public_test_secret_is_flagged(capsys: Capsys, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("A=1\n")
    result = caution(capsys, "--workdir", str(tmp_path), "secret", "encrypt", "--bundle",
                     str(CAUTION_V0 / "bundle.json"))
    assert result.code == 0, result.err
    assert ("warning: this bundle's quorum key comes from the public test secret; anything "
            "encrypted to it can be read by anyone") in result.err.splitlines()


@pytest.mark.parametrize("name", ["PATH", "LD_PRELOAD", "PYTHONSTARTUP", "IFS"])
def test_a_name_that_would_take_over_the_boot_is_refused_before_anything_is_written(
        capsys: Capsys, project: Path, tmp_path: Path, name: str) -> None:
    env = tmp_path / "reserved.env"
    env.write_text(f"FIRST=1\n{name}=/tmp/evil\n")
    secrets = tmp_path / "out"
    result = _encrypt(capsys, project, "--env-file", str(env), "--secrets-dir", str(secrets))
    assert (result.code, result.err.strip()) == (
        1, f"error: {name}: reserved name: it would change how the boot shell, the program "
           "loader or the runtime behaves; the enclave would refuse it, so rename it")
    assert not (secrets.exists() and any(secrets.glob("*.asc")))


def test_nul_in_a_value_is_refused_before_anything_is_written(capsys: Capsys, project: Path,
                                                              tmp_path: Path) -> None:
    env = tmp_path / "nul.env"
    env.write_bytes(b"FIRST=1\nZ='a\x00b'\n")
    secrets = tmp_path / "out"
    result = _encrypt(capsys, project, "--env-file", str(env), "--secrets-dir", str(secrets))
    assert (result.code, result.err.strip()) == (1, "error: Z: value contains a NUL character")
    assert not any(secrets.glob("*.asc")) if secrets.exists() else True


def test_an_expired_quorum_certificate_is_used_with_a_warning(capsys: Capsys,
                                                              tmp_path: Path) -> None:
    """cli.md §4 step 6: quorum-key expiry is ignored, with a warning naming the date."""
    keyring = json.loads((CAUTION_V0 / "bundle.json").read_text())["keyring"]
    generated = int(time.time()) - 3 * 86400
    bundle = quorum.generate_quorum(keyring, 2, 2, now=generated, secret=SECRET, expire=86400)
    (tmp_path / "bundle.json").write_text(bundle.to_json())
    (tmp_path / ".env").write_text("TOKEN=abc\n")
    result = caution(capsys, "--workdir", str(tmp_path), "secret", "encrypt", "--bundle",
                     "bundle.json")
    assert result.code == 0, result.err
    day = time.strftime("%Y-%m-%d", time.gmtime(generated + 86400))
    assert (f"warning: quorum certificate expired on {day}; encrypting anyway (the enclave does "
            "not check quorum key expiry)") in result.err.splitlines()
    asc = (tmp_path / ".caution" / "secrets" / "TOKEN.asc").read_text()
    assert message.decrypt(asc, [quorumkey.decryption_key(SECRET)]).plaintext == b"abc"


def test_a_value_too_large_for_the_environment_is_refused_before_anything_is_written(
        capsys: Capsys, project: Path, tmp_path: Path) -> None:
    """cli.md §4: len(KEY) + 1 + len(value) >= 131072 bytes is refused; one byte less is not."""
    env = tmp_path / "big.env"
    fits = "x" * (131072 - len("FITS=") - 1)
    env.write_text(f"FITS={fits}\nBIG={'y' * (131072 - len('BIG='))}\n")
    secrets = tmp_path / "out"
    result = _encrypt(capsys, project, "--env-file", str(env), "--secrets-dir", str(secrets))
    assert (result.code, result.err.strip()) == (
        1, "error: BIG: value too large for a process environment")
    assert not any(secrets.glob("*.asc")) if secrets.exists() else True
    result = _encrypt(capsys, project, "FITS", "--env-file", str(env), "--secrets-dir",
                      str(secrets))
    assert result.code == 0, result.err


def test_an_uncreatable_secrets_directory_is_reported(capsys: Capsys, project: Path,
                                                      tmp_path: Path) -> None:
    occupied = tmp_path / "file"
    occupied.write_text("not a directory")
    result = _encrypt(capsys, project, "--secrets-dir", str(occupied / "secrets"))
    assert result.code == 1
    assert result.err.splitlines()[-2] == f"error: Failed to create {occupied / 'secrets'}"
