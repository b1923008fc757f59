"""`caution secret ...` commands (cli.md §2–§5)."""

from __future__ import annotations

import typer

secret_app = typer.Typer(no_args_is_help=True, add_completion=False, rich_markup_mode=None)
