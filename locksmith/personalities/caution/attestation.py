"""`caution attestation verify | simulate` (cli.md §7.2)."""

from __future__ import annotations

import typer

attestation_app = typer.Typer(no_args_is_help=True, add_completion=False, rich_markup_mode=None)
