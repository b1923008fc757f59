"""`caution`: the holder/developer CLI (spec cli.md).

`main` converts every failure into the cli.md §1 shape: `error: <message>` (plus `  caused by:`
lines) on stderr and exit 1; usage errors, the project's and click's alike, are printed the same
way and exit 2. Subcommand modules raise `CliError`; they never call `sys.exit` themselves.
"""

from __future__ import annotations

import os
import sys


def main(argv: list[str]) -> int:
    import typer
    from typer._click.exceptions import NoArgsIsHelpError  # typer's own click (constraints.txt)

    from locksmith.personalities.caution.app import build_app
    from locksmith.personalities.caution.ui import CliError, print_error

    command = build_app()
    try:
        result = command.main(args=argv, prog_name="caution", standalone_mode=False)
    except CliError as exc:
        print_error(exc)
        return exc.exit_code
    except NoArgsIsHelpError as exc:  # bare `caution`: the help, exit 2
        exc.show()
        return exc.exit_code
    except typer.TyperException as exc:  # usage errors: the cli.md §1 one-line shape
        print_error(CliError(exc.format_message()))
        return exc.exit_code
    except typer.Abort:
        print("error: aborted", file=sys.stderr)
        return 1
    except BrokenPipeError:  # e.g. `... --json | head -c0`; keep the exit quiet
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no 2nd error at exit
        return 1
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    return result if isinstance(result, int) else 0
