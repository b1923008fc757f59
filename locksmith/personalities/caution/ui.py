"""How the CLI talks to a person: every human-readable line goes to stderr (cli.md §1).

Only machine data (bundle JSON, `--json` output, attestation documents) goes to stdout, so the
CLI composes with pipes and redirections.

Much of what is shown comes from files and peers nobody vouches for: bundle labels, holders'
User IDs, an enclave's module id and rejection reason, a card's cardholder name. Every line is
therefore printed with its non-printable characters escaped (`printable`): a hostile bundle
cannot move the cursor, clear the screen or forge a line such as "Keymaker proof verified",
and a line is always exactly one line. Multi-line output is several calls.
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
    after: list[str] = field(default_factory=list)  # our own lines printed below, e.g. advice

    def __str__(self) -> str:
        return self.message


class UsageError(CliError):
    """A parameter problem the spec classes as a usage error (exit 2)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, [], 2)


def printable(text: str) -> str:
    """Control, format (e.g. bidi overrides) and separator characters written as escapes."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def set_verbose(on: bool) -> None:
    global _verbose
    _verbose = on


def info(message: str) -> None:
    print(printable(message), file=sys.stderr, flush=True)


def warn(message: str) -> None:
    """Print a warning; the `warning: ` prefix is added here and only here."""
    print(f"warning: {printable(message)}", file=sys.stderr, flush=True)


def verbose(message: str) -> None:
    if _verbose:
        print(f"[VERBOSE] {printable(message)}", file=sys.stderr, flush=True)


def print_error(exc: CliError) -> None:
    print(f"error: {printable(exc.message)}", file=sys.stderr)
    for cause in exc.causes:
        print(f"  caused by: {printable(cause)}", file=sys.stderr)
    for line in exc.after:
        print(printable(line), file=sys.stderr)
    sys.stderr.flush()
