"""`make install-cli` and `make install-cli-untrusted` (cli.md §9; install-cli.sh does the work).

The preflight and install-directory tests run install-cli.sh directly (they stop before
building); the two slow tests run the make targets end to end and start the installed `caution`.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "install-cli.sh"
# The interpreter that runs the tests, not its venv: what the Makefile's $(PYTHON) resolves to.
PYTHON = getattr(sys, "_base_executable", "") or sys.executable
SMARTCARD_UNAVAILABLE = ("smart-card support is not available in this build; use --keyring or "
                         "install with make install-cli-untrusted")


def _install(mode: str, target: Path | str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SCRIPT), mode, str(target)], capture_output=True, text=True,
                          env={**os.environ, "PYTHON": PYTHON, **env}, timeout=120)


def _path_without(tmp_path: Path, excluded: str) -> str:
    """A PATH of one directory with a symlink to every command on PATH except `excluded*`."""
    bin_dir = tmp_path / "path-bin"
    bin_dir.mkdir()
    for entry in os.environ["PATH"].split(os.pathsep):
        if not entry or not os.path.isdir(entry):
            continue
        for name in sorted(os.listdir(entry)):
            source = os.path.join(entry, name)
            link = bin_dir / name
            if (name.startswith(excluded) or os.path.lexists(link) or not os.path.isfile(source)
                    or not os.access(source, os.X_OK)):
                continue
            link.symlink_to(source)
    return str(bin_dir)


def test_install_cli_untrusted_preflight_names_swig_and_builds_nothing_without_it(
        tmp_path: Path) -> None:
    path = _path_without(tmp_path, "swig")
    target = tmp_path / "bin"
    target.mkdir()
    result = _install("untrusted", target, PATH=path)
    assert result.returncode == 1, result.stderr
    assert result.stdout == ""
    # One line, naming swig and its package per distribution; nothing else is missing here.
    assert result.stderr.splitlines() == [
        "Error: swig is missing (pyscard's build generates its PC/SC bindings with it). Install: "
        "Debian/Ubuntu: apt-get install swig; Fedora: dnf install swig; macOS: brew install swig."]
    assert list(target.iterdir()) == []


def test_install_cli_untrusted_preflight_names_libpcsclite_dev_when_pkg_config_cannot_find_it(
        tmp_path: Path) -> None:
    empty = tmp_path / "no-pkg-config-files"
    empty.mkdir()
    target = tmp_path / "bin"
    target.mkdir()
    result = _install("untrusted", target, PKG_CONFIG_PATH=str(empty), PKG_CONFIG_LIBDIR=str(empty))
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines() == [
        "Error: pkg-config cannot find libpcsclite, the PC/SC headers (pyscard links against it). "
        "Install: Debian/Ubuntu: apt-get install libpcsclite-dev; Fedora: dnf install "
        "pcsc-lite-devel; macOS: built in (PCSC.framework)."]
    assert list(target.iterdir()) == []


@pytest.mark.parametrize("mode", ["reproducible", "untrusted"])
def test_install_cli_refuses_an_install_dir_that_does_not_exist(mode: str, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-dir"
    result = _install(mode, missing)
    assert result.returncode == 1
    assert result.stderr == f"Error: {missing} does not exist.\n"
    assert not missing.exists()


@pytest.mark.parametrize("mode", ["reproducible", "untrusted"])
def test_install_cli_refuses_an_install_dir_that_is_not_writable(mode: str) -> None:
    # Root may write into any directory of an ordinary file system whatever its mode bits, so the
    # test uses a directory the kernel refuses to anyone: a process directory of procfs (access(2)
    # with W_OK fails there for root too, and so does creating a file).
    not_writable = "/proc/1"
    if not os.path.isdir(not_writable) or os.access(not_writable, os.W_OK):
        pytest.skip(reason=f"{not_writable} is not a directory that this user cannot write to")
    result = _install(mode, not_writable)
    assert result.returncode == 1
    assert result.stderr == f"Error: {not_writable} is not writable.\n"


def test_install_cli_refuses_an_unknown_mode(tmp_path: Path) -> None:
    result = _install("trusted", tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("usage: ")
    assert list(tmp_path.iterdir()) == []


# --- end to end: the make targets build, install and the installed caution runs --------------


def _make_install(target_name: str, variable: str, target: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["make", "--no-print-directory", target_name, f"{variable}={target}",
                           f"PYTHON={PYTHON}"],
                          cwd=REPO, capture_output=True, text=True, timeout=240)


def _caution(exe: Path, *args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    # No PC/SC service: the card path must fail on the missing service, not on a missing pyscard.
    env = dict(os.environ, SHIV_ROOT=str(tmp_path / "shiv"),
               PCSCLITE_CSOCK_NAME=str(tmp_path / "no-pcscd.sock"))
    return subprocess.run([str(exe), *args], capture_output=True, text=True, env=env, timeout=120)


def _assert_installed(target: Path) -> Path:
    exe = target / "caution"
    assert sorted(p.name for p in target.iterdir()) == ["caution"]  # no temporary file left
    assert stat.S_IMODE(exe.stat().st_mode) == 0o755
    return exe


@pytest.mark.slow
def test_make_install_cli_untrusted_installs_a_caution_that_has_card_support(tmp_path: Path) -> None:
    target = tmp_path / "bin"
    target.mkdir()
    made = _make_install("install-cli-untrusted", "CLI_UNTRUSTED_INSTALL_DIR", target)
    assert made.returncode == 0, made.stderr
    lines = made.stdout.splitlines()
    assert lines[0] == f"Installed untrusted caution to {target}/caution"
    assert "supply-chain risk" in made.stdout
    exe = _assert_installed(target)

    # The shebang names the absolute interpreter pyscard was compiled for.
    shebang = exe.read_bytes().split(b"\n", 1)[0].decode()
    assert shebang == f"#!{PYTHON}"
    with zipfile.ZipFile(exe) as zf:
        assert any(n.startswith("site-packages/smartcard/scard/_scard") and n.endswith(".so")
                   for n in zf.namelist())

    helped = _caution(exe, "--help", tmp_path=tmp_path)
    assert helped.returncode == 0, helped.stderr
    assert "secret" in helped.stdout

    status = _caution(exe, "card", "status", tmp_path=tmp_path)
    assert status.returncode == 1, status.stdout + status.stderr
    error_lines = status.stderr.splitlines()
    assert len(error_lines) == 1 and error_lines[0].startswith("error: "), status.stderr
    assert SMARTCARD_UNAVAILABLE not in status.stderr


@pytest.mark.slow
def test_make_install_cli_installs_the_reproducible_caution_without_card_support(
        tmp_path: Path) -> None:
    target = tmp_path / "bin"
    target.mkdir()
    (target / "caution").write_text("an older caution\n")  # replaced, not appended to
    made = _make_install("install-cli", "CLI_INSTALL_DIR", target)
    assert made.returncode == 0, made.stderr
    assert made.stdout.splitlines()[0] == f"Installed caution to {target}/caution"
    assert "make install-cli-untrusted" in made.stdout
    exe = _assert_installed(target)

    # The reproducible zipapp: a sh preamble finds a supported python3 (README "The zipapp").
    assert exe.read_bytes().split(b"\n", 1)[0] == b"#!/bin/sh"
    with zipfile.ZipFile(exe) as zf:
        assert not any(n.startswith("site-packages/smartcard/") for n in zf.namelist())

    helped = _caution(exe, "--help", tmp_path=tmp_path)
    assert helped.returncode == 0, helped.stderr

    status = _caution(exe, "card", "status", tmp_path=tmp_path)
    assert status.returncode == 1
    assert status.stderr == f"error: {SMARTCARD_UNAVAILABLE}\n"
