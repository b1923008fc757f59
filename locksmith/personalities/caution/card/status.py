"""`caution card status [--bundle PATH] [--json]`: what the readers hold, and whose card it is.

For a holder before an unlock ceremony: is my card seen, is it the card of a holder of this
bundle, how many PIN attempts are left, will it ask for a touch. Nothing is verified or changed
on the card (no PIN is asked); card texts such as the cardholder name reach the terminal
escaped (`ui`). The bundle is checked structurally (formats.md) but its Keymaker proof is
not verified: matching a card needs only the holders' certificates, and nothing is sent.

`--json` prints one object on stdout:
    {"readers": [{"reader": str, "error": str | null, "card": null | {
        "aid", "serial", "manufacturer", "version", "cardholder",
        "keys": {"signature" | "decryption" | "authentication":
                 {"fingerprint": str | null, "algorithm": str, "touch": str | null}},
        "pin_retries": {"pw1", "rc", "pw3"}, "kdf": bool,
        "holder": null | {"index": int, "fingerprint": str, "user_id": str | null}}}],
     "bundle": str | null}
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer

from locksmith.core.bundle.checks import CheckedBundle
from locksmith.core.card.appdata import AlgorithmAttributes, Uif
from locksmith.core.card.holders import CardHolder, match_card
from locksmith.personalities.caution import ui
from locksmith.personalities.caution.bundles import DEFAULT_BUNDLE, read_bundle, warn_if_test_secret
from locksmith.personalities.caution.holder_keyring import openpgp_holders
from locksmith.personalities.caution.ui import CliError

if TYPE_CHECKING:
    from locksmith.personalities.caution.card.survey import SeenCard

card_app = typer.Typer(no_args_is_help=True, add_completion=False)

ROLES = ("signature", "decryption", "authentication")


def _fingerprint(value: bytes | None) -> str | None:
    return value.hex().upper() if value is not None else None


def _touch(uif: Uif | None) -> str | None:
    return uif.name if uif is not None else None


def _holder(match: CardHolder | None) -> dict[str, Any] | None:
    if match is None:
        return None
    uids = [u.text for u in match.certificate.user_ids]
    return {"index": match.index, "fingerprint": match.certificate.fingerprint,
            "user_id": uids[0] if uids else None}


def _card(seen: SeenCard, checked: CheckedBundle | None, now: int) -> dict[str, Any]:
    data = seen.data
    attributes: tuple[AlgorithmAttributes, ...] = (
        data.signature_attributes, data.decryption_attributes, data.authentication_attributes)
    fingerprints = (data.signature_fingerprint, data.decryption_fingerprint,
                    data.authentication_fingerprint)
    uifs = (data.uif_signature, data.uif_decryption, data.uif_authentication)
    match = None
    if checked is not None:
        match = match_card(openpgp_holders(checked), data.signature_fingerprint,
                           data.decryption_fingerprint, now)
    aid = data.aid
    return {
        "aid": aid.hex,
        "serial": aid.serial_hex,
        "manufacturer": aid.manufacturer_name or f"0x{aid.manufacturer:04X}",
        "version": f"{aid.version[0]}.{aid.version[1]}",
        "cardholder": seen.cardholder,
        "keys": {role: {"fingerprint": _fingerprint(fpr), "algorithm": attr.name,
                        "touch": _touch(uif)}
                 for role, fpr, attr, uif in zip(ROLES, fingerprints, attributes, uifs)},
        "pin_retries": {"pw1": data.pw_status.pw1_retries, "rc": data.pw_status.rc_retries,
                        "pw3": data.pw_status.pw3_retries},
        "kdf": data.kdf is not None and data.kdf.algorithm != 0,
        "holder": _holder(match),
    }


def collect(checked: CheckedBundle | None, now: int) -> list[dict[str, Any]]:
    from locksmith.personalities.caution.card.pcsc import PcscError, open_context
    from locksmith.personalities.caution.card.survey import EmptyReader, survey

    try:
        with open_context() as context:
            return [{"reader": item.reader, "error": item.reason, "card": None}
                    if isinstance(item, EmptyReader)
                    else {"reader": item.reader, "error": None, "card": _card(item, checked, now)}
                    for item in survey(context)]
    except PcscError as exc:
        raise CliError(str(exc)) from None


def _print_human(readers: list[dict[str, Any]], bundle: Path | None) -> None:
    if not readers:
        ui.info("No smart-card reader found")
    for entry in readers:
        ui.info(f"Reader: {entry['reader']}")
        card = entry["card"]
        if card is None:
            ui.info(f"  {entry['error']}")
            continue
        name = f" ({card['cardholder']})" if card["cardholder"] else ""
        ui.info(f"  Card: {card['aid']}{name}")
        ui.info(f"    serial {card['serial']}, {card['manufacturer']}, OpenPGP card "
                f"{card['version']}")
        for role in ROLES:
            key = card["keys"][role]
            touch = f", touch {key['touch']}" if key["touch"] else ""
            ui.info(f"    {role + ' key:':<20}{key['fingerprint'] or 'empty'} "
                    f"({key['algorithm']}{touch})")
        retries = card["pin_retries"]
        ui.info(f"    PIN retries: user {retries['pw1']}, reset code {retries['rc']}, admin "
                f"{retries['pw3']}; KDF {'on' if card['kdf'] else 'off'}")
        holder = card["holder"]
        if bundle is None:
            continue
        if holder is None:
            ui.info(f"    Holder: none of {bundle}")
        else:
            uid = f" {holder['user_id']}" if holder["user_id"] else ""
            ui.info(f"    Holder: #{holder['index']} {holder['fingerprint']}{uid}")


@card_app.command("status")
def status(
    bundle: Optional[Path] = typer.Option(
        None, "--bundle", metavar="PATH",
        help="Say which holder of this bundle each card belongs to (default "
             ".caution/quorum-bundle.json if it exists)."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object on stdout."),
) -> None:
    """Readers, cards, their keys and PIN counters, and the bundle holder each card matches."""
    path = bundle
    if path is None and os.path.lexists(DEFAULT_BUNDLE):
        path = DEFAULT_BUNDLE
    checked = read_bundle(path) if path is not None else None
    if checked is not None:
        warn_if_test_secret(checked)
    readers = collect(checked, int(time.time()))
    if as_json:
        print(json.dumps({"readers": readers, "bundle": str(path) if path else None},
                         separators=(",", ":")))
    else:
        _print_human(readers, path)
