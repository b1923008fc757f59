"""`caution`: the holder/developer CLI (spec cli.md).

`main` converts every failure into the cli.md §1 shape: `error: <message>` (plus `  caused by:`
lines) on stderr and exit 1, usage errors exit 2. Subcommand modules raise `CliError`; they never
call `sys.exit` themselves.
"""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    import click

    from locksmith.personalities.caution.app import build_app
    from locksmith.personalities.caution.ui import CliError, print_error

    command = build_app()
    try:
        command.main(args=argv, prog_name="caution", standalone_mode=False)
    except CliError as exc:
        print_error(exc)
        return exc.exit_code
    except click.exceptions.UsageError as exc:
        exc.show(file=sys.stderr)
        return 2
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.exceptions.Abort:
        print("error: aborted", file=sys.stderr)
        return 1
    except click.exceptions.ClickException as exc:
        exc.show(file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    return 0
