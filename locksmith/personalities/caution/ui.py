"""How the CLI talks to a person: every human-readable line goes to stderr (cli.md §1).

Only machine data (bundle JSON, `--json` output, attestation documents) goes to stdout, so the
CLI composes with pipes and redirections.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

_verbose = False


@dataclass
class CliError(Exception):
    """A failure to report as `error: <message>` with optional `caused by:` lines."""

    message: str
    causes: list[str] = field(default_factory=list)
    exit_code: int = 1

    def __str__(self) -> str:
        return self.message


class UsageError(CliError):
    """A parameter problem the spec classes as a usage error (exit 2)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, [], 2)


def set_verbose(on: bool) -> None:
    global _verbose
    _verbose = on


def info(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def warn(message: str) -> None:
    """Print a warning; the `warning: ` prefix is added here and only here."""
    print(f"warning: {message}", file=sys.stderr, flush=True)


def verbose(message: str) -> None:
    if _verbose:
        print(f"[VERBOSE] {message}", file=sys.stderr, flush=True)


def print_error(exc: CliError) -> None:
    print(f"error: {exc.message}", file=sys.stderr)
    for cause in exc.causes:
        print(f"  caused by: {cause}", file=sys.stderr)
    sys.stderr.flush()
