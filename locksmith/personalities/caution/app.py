"""Assembly of the `caution` command tree.

Each command group lives in its own module and exposes a `typer.Typer`; this module only wires
them together and handles the global options of cli.md §1.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer

from locksmith import __version__
from locksmith.personalities.caution import ui


def _version(value: bool) -> None:
    if value:
        print(f"caution (locksmith) {__version__}")
        raise typer.Exit(0)


def build_app() -> typer.core.TyperGroup:
    app = typer.Typer(
        name="caution",
        help="Caution-compatible holder and developer CLI for Locksmith quorums.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
        context_settings={"help_option_names": ["-h", "--help"]},
    )

    @app.callback()
    def _global(
        verbose: bool = typer.Option(False, "-v", "--verbose", help="Extra diagnostics on stderr."),
        workdir: Optional[Path] = typer.Option(
            None, "--workdir", envvar="CAUTION_WORKDIR",
            help="Run as if started in this directory.",
        ),
        version: bool = typer.Option(
            False, "--version", callback=_version, is_eager=True, help="Print the version."
        ),
    ) -> None:
        ui.set_verbose(verbose)
        if workdir is not None:
            try:
                os.chdir(workdir)
            except OSError as exc:
                raise ui.CliError(f"cannot use --workdir {workdir}", [exc.strerror or str(exc)])

    from locksmith.personalities.caution.secret import secret_app

    app.add_typer(secret_app, name="secret", help="Quorum secrets: keygen, encrypt, ...")
    app.add_typer(secret_app, name="secrets", hidden=True)

    from locksmith.personalities.caution.attestation import attestation_app

    app.add_typer(attestation_app, name="attestation", help="Verify or simulate Nitro attestations.")

    from locksmith.personalities.caution.card.status import card_app

    app.add_typer(card_app, name="card", help="OpenPGP smart cards: what the readers hold.")

    from locksmith.personalities.caution.procfile import procfile_app

    app.add_typer(procfile_app, name="procfile",
                  help="Check a Procfile, and that the image installs what Locksmith needs.")
    command = typer.main.get_command(app)
    assert isinstance(command, typer.core.TyperGroup)
    return command
