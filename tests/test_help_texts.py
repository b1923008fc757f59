"""Help is for the people who run the programs: every command and option of every personality has
a help text, and none cites spec sections or internal type names; `-h`, `--help` and `--version`
work everywhere."""

from __future__ import annotations

import re
import subprocess
import sys
from typing import Any

import pytest

from locksmith import __version__
from locksmith.personalities.caution.app import build_app
from tests.conftest import REPO

DAEMONS = ("keymaker", "locksmithd", "keyforkd", "locksmith-oneshot", "forwardd")
# Spec references ("§3", "enclave.md") and our own class names mean nothing to a user.
INTERNAL = re.compile(r"§|\b\w+\.md\b|\b(?:CheckedBundle|BundleV[01]|SecretKey|PublicKey|"
                      r"TrustAnchor|PcrPolicy|NsmChoice|Settings|Options|UsageError)\b")


def _commands(group: Any, path: tuple[str, ...] = ("caution",)) -> list[tuple[tuple[str, ...], Any]]:
    """Every visible command under `group` (typer vendors its own click: duck-typed)."""
    found = [(path, group)]
    if hasattr(group, "commands"):
        for name, command in sorted(group.commands.items()):
            if not getattr(command, "hidden", False):
                found += _commands(command, (*path, name))
    return found


CAUTION_COMMANDS = _commands(build_app())


@pytest.mark.parametrize("path,command", CAUTION_COMMANDS,
                         ids=[" ".join(p) for p, _ in CAUTION_COMMANDS])
def test_every_caution_command_and_option_has_help_without_spec_references(
        path: tuple[str, ...], command: Any) -> None:
    assert command.help and command.help.strip(), f"{' '.join(path)} has no help"
    assert not INTERNAL.search(command.help), f"{' '.join(path)}: {command.help!r}"
    for param in command.params:
        if param.param_type_name == "option" and param.name != "help":
            assert param.help, f"{' '.join(path)} {param.opts} has no help"
            assert not INTERNAL.search(param.help), f"{' '.join(path)} {param.opts}: {param.help}"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "locksmith", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("prog", DAEMONS)
def test_every_daemon_help_has_no_spec_references_and_every_option_a_text(prog: str) -> None:
    result = _run(prog, "--help")
    assert result.returncode == 0, result.stderr
    assert not INTERNAL.search(result.stdout), result.stdout
    options = [line for line in result.stdout.splitlines() if line.strip().startswith("-")]
    for line in options:  # argparse puts the help on the same line or the next one
        index = result.stdout.splitlines().index(line)
        following = result.stdout.splitlines()[index + 1] if index + 1 < len(
            result.stdout.splitlines()) else ""
        assert len(line.split("  ")) > 1 or following.startswith(" " * 8), line


@pytest.mark.parametrize("prog", [*DAEMONS, "caution"])
def test_every_personality_answers_version_and_short_help(prog: str) -> None:
    version = _run(prog, "--version")
    assert (version.returncode, version.stdout.strip()) == (0, f"{prog} (locksmith) {__version__}")
    short = _run(prog, "-h")
    assert short.returncode == 0 and "usage" in short.stdout.lower(), short.stderr


@pytest.mark.parametrize("prog,args", [
    ("keymaker", ["--frobnicate"]), ("locksmithd", ["--frobnicate"]),
    ("keyforkd", ["--frobnicate"]), ("locksmith-oneshot", ["--frobnicate"]),
    ("forwardd", ["--frobnicate"]),
])
def test_daemon_usage_errors_are_one_prog_error_line(prog: str, args: list[str]) -> None:
    result = _run(prog, *args)
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1].startswith(f"{prog}: error: "), result.stderr
