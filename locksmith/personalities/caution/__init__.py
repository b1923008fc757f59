"""`caution`: the holder/developer CLI (spec cli.md).

`main` converts every failure into the cli.md §1 shape: `error: <message>` (plus `  caused by:`
lines) on stderr and exit 1; usage errors exit 2 (typer reports those itself). Subcommand modules
raise `CliError`; they never call `sys.exit` themselves.
"""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    from locksmith.personalities.caution.app import build_app
    from locksmith.personalities.caution.ui import CliError, print_error

    command = build_app()
    try:
        command.main(args=argv, prog_name="caution", standalone_mode=True)
    except CliError as exc:
        print_error(exc)
        return exc.exit_code
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    return 0
