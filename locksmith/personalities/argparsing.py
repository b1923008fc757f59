"""What every argparse-based personality shares: `-h/--help`, `--version`, and one error style.

The daemons' lines interleave in one boot log, so each fatal line names its program:
`<prog>: error: <message>`, exit 2 for usage errors. (The interactive `caution` CLI prints
`error: <message>` as cli.md fixes.)
"""

from __future__ import annotations

import argparse

from locksmith import __version__


def version_line(prog: str) -> str:
    return f"{prog} (locksmith) {__version__}"


def add_version(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--version", action="version", version=version_line(parser.prog),
                        help="print the version and exit")
