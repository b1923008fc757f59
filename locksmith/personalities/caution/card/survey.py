"""Every reader, and the OpenPGP card in it if there is one (cli.md §5.3 first two points).

A reader whose card cannot be read is reported, not fatal: a holder with a broken token in one
slot and their own card in another must still be able to send. Connections stay open (and
exclusive) until the `Context` closes, so the card that is chosen is the card that was read.
"""

from __future__ import annotations

from dataclasses import dataclass

from locksmith.core.card.appdata import ApplicationData
from locksmith.core.card.errors import CardError, DataNotFound, StatusError
from locksmith.core.card.session import OpenPGPCard
from locksmith.personalities.caution.card.pcsc import Connection, Context, PcscError


@dataclass
class SeenCard:
    """An OpenPGP card, selected, with what it said about itself."""

    reader: str
    connection: Connection
    card: OpenPGPCard
    data: ApplicationData
    cardholder: str | None

    @property
    def aid(self) -> str:
        return self.data.aid.hex

    @property
    def label(self) -> str:
        """How messages name the card: its serial and its reader."""
        return f"card {self.data.aid.serial_hex} in reader '{self.reader}'"


@dataclass(frozen=True)
class EmptyReader:
    """A reader with no usable OpenPGP card, and why."""

    reader: str
    reason: str


def survey(context: Context) -> list[SeenCard | EmptyReader]:
    seen: list[SeenCard | EmptyReader] = []
    for reader in context.readers():
        try:
            connection = context.connect(reader)
        except PcscError as exc:
            seen.append(EmptyReader(reader, str(exc)))
            continue
        card = OpenPGPCard(connection.transmit)
        try:
            card.select()
        except (DataNotFound, StatusError):
            connection.close()
            seen.append(EmptyReader(reader, "the card has no OpenPGP application"))
            continue
        except (CardError, PcscError) as exc:
            connection.close()
            seen.append(EmptyReader(reader, str(exc)))
            continue
        try:
            data = card.application_data()
            cardholder = card.cardholder_name()
        except (CardError, PcscError) as exc:
            connection.close()
            seen.append(EmptyReader(reader, f"cannot read the OpenPGP application: {exc}"))
            continue
        seen.append(SeenCard(reader, connection, card, data, cardholder))
    return seen
