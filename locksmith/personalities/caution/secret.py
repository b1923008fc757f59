"""`caution secret ...` commands (cli.md §2–§5, docs/forwarding.md §7); each command lives in
its own module."""

from __future__ import annotations

import typer

from locksmith.personalities.caution.approvals import approvals_app, approve
from locksmith.personalities.caution.encrypt import encrypt
from locksmith.personalities.caution.inspect import inspect
from locksmith.personalities.caution.keygen import keygen
from locksmith.personalities.caution.new import new
from locksmith.personalities.caution.send_shard import send_shard

secret_app = typer.Typer(no_args_is_help=True, add_completion=False, rich_markup_mode=None)
secret_app.command("keygen")(keygen)
secret_app.command("encrypt")(encrypt)
secret_app.command("new")(new)
secret_app.command("inspect")(inspect)
secret_app.command("send-shard")(send_shard)
secret_app.command("approve")(approve)
secret_app.add_typer(approvals_app, name="approvals")
