"""`caution secret keygen` (cli.md §2): checks in order, files, modes, and real OpenPGP tools."""

from __future__ import annotations

import stat
import time
from pathlib import Path

import pytest

from locksmith.core.openpgp import validity
from locksmith.core.openpgp.certs import load_certificates
from locksmith.core.openpgp.secretkeys import load_secret_keys
from locksmith.personalities.caution.keygen import default_private_path
from tests.cli.clirun import caution
from tests.oracles import gpg_home, sq

Capsys = pytest.CaptureFixture[str]
ARGS = ("--name", "Alice", "--email", "alice@example.org")


def _keygen(capsys: Capsys, out: Path, *extra: str, flag: bool = True):  # type: ignore[no-untyped-def]
    args = ["secret", "keygen", str(out), *ARGS, *extra]
    if flag:
        args.append("--shoot-self-in-foot")
    return caution(capsys, *args)


def test_keygen_writes_eligible_public_and_0600_private_keyring(capsys: Capsys, tmp_path: Path) -> None:
    out = tmp_path / "alice.asc"
    result = _keygen(capsys, out)
    assert result.code == 0, result.err
    private = tmp_path / "alice.private.asc"
    assert stat.S_IMODE(out.stat().st_mode) == 0o644
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    [cert] = load_certificates(out.read_bytes())
    verdict = validity.eligibility(cert, int(time.time()) + 1)
    assert verdict.eligible and verdict.display_name == "Alice <alice@example.org>"
    lines = result.err.splitlines()
    assert lines[0] == "Generating OpenPGP key for Alice <alice@example.org>..."
    assert lines[1] == f"Wrote public keyring to {out}"
    assert lines[2] == f"Fingerprint: {cert.fingerprint}"
    assert lines[3] == f"Wrote private keyring to {private}"
    assert lines[4].startswith("warning: the private keyring is written UNENCRYPTED")
    assert lines[-1] == f"Use the private keyring with: caution secret send-shard --keyring {private}"
    assert result.out == ""
    keys = load_secret_keys(private.read_bytes())
    assert {k.primary_fingerprint for k in keys.keys} == {cert.fingerprint}
    assert all(not k.needs_passphrase for k in keys.keys)
    assert private.read_text().startswith("-----BEGIN PGP PRIVATE KEY BLOCK-----\n")


def test_gnupg_and_sequoia_read_both_keyrings(capsys: Capsys, tmp_path: Path) -> None:
    out = tmp_path / "alice.asc"
    assert _keygen(capsys, out).code == 0
    private = tmp_path / "alice.private.asc"
    with gpg_home() as gpg:
        gpg.import_(private.read_bytes())
        listing = gpg.run("--list-secret-keys", "--with-colons").stdout.decode()
        capabilities = [line.split(":")[11] for line in listing.splitlines()
                        if line.startswith(("sec:", "ssb:"))]
        assert capabilities[0].startswith("c") and capabilities[1:] == ["s", "e", "a"]
        signed = gpg.run("--local-user", "alice@example.org", "--detach-sign", input=b"x").stdout
        gpg.run("--verify", "-", str(_write(tmp_path / "x", b"x")), input=signed)
    shown = sq("inspect", str(out)).stdout.decode()
    assert "Alice <alice@example.org>" in shown and "Invalid" not in shown
    assert "Secret key" in sq("inspect", str(private)).stdout.decode()


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_refuses_without_acknowledgement_and_writes_nothing(capsys: Capsys, tmp_path: Path) -> None:
    result = _keygen(capsys, tmp_path / "a.asc", flag=False)
    assert result.code == 1
    lines = result.err.splitlines()
    assert lines[0] == ("error: Refusing to generate an unencrypted private keyring without "
                        "--shoot-self-in-foot.")
    assert lines[1] == "" and lines[2].startswith("warning: ")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name,email,message", [
    ("  ", "a@x", "--name must not be empty"),
    ("A", " ", "--email must not be empty"),
    ("A<b", "a@x", "--name and --email must not contain newlines or angle brackets"),
    ("A", "a\n@x", "--name and --email must not contain newlines or angle brackets"),
    ("A", "ax", "--email must be an email address"),
])
def test_bad_names_and_emails_are_refused(capsys: Capsys, tmp_path: Path, name: str, email: str,
                                          message: str) -> None:
    result = caution(capsys, "secret", "keygen", str(tmp_path / "a.asc"), "--name", name,
                     "--email", email, "--shoot-self-in-foot")
    assert (result.code, result.err.strip()) == (1, f"error: {message}")


def test_same_path_for_both_files_is_refused(capsys: Capsys, tmp_path: Path) -> None:
    out = tmp_path / "a.asc"
    result = _keygen(capsys, out, "--private-keyring", str(out))
    assert result.err.strip() == "error: public and private keyring paths must be different"


def test_existing_file_is_not_replaced_without_force(capsys: Capsys, tmp_path: Path) -> None:
    out = tmp_path / "a.asc"
    (tmp_path / "a.private.asc").write_text("keep me")
    result = _keygen(capsys, out)
    assert result.code == 1
    assert result.err.strip() == (f"error: {tmp_path / 'a.private.asc'} already exists; "
                                  "pass --force to overwrite it")
    assert not out.exists() and (tmp_path / "a.private.asc").read_text() == "keep me"
    assert _keygen(capsys, out, "--force").code == 0
    private = tmp_path / "a.private.asc"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert load_secret_keys(private.read_bytes()).keys


@pytest.mark.parametrize("public,private", [
    ("alice.asc", "alice.private.asc"), ("a.b.asc", "a.b.private.asc"), ("alice", "alice.private"),
])
def test_default_private_path_inserts_private_before_the_last_extension(public: str, private: str) -> None:
    assert default_private_path(Path("/d") / public) == Path("/d") / private


def test_a_failed_private_write_removes_the_public_file_of_this_run(capsys: Capsys,
                                                                    tmp_path: Path) -> None:
    """cli.md §2: if writing the private file fails, the public file written is removed."""
    out = tmp_path / "a.asc"
    blocker = tmp_path / "a.private.asc"
    blocker.mkdir()  # with --force the existence check passes; replacing a directory fails
    result = _keygen(capsys, out, "--force")
    assert result.code == 1
    assert result.err.splitlines()[-2] == f"error: failed to write {blocker}"
    assert not out.exists() and blocker.is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.private.asc"]  # no temporary left
