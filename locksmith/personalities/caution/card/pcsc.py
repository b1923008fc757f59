"""PC/SC over pyscard: list readers, hold one card exclusively, move APDU bytes.

This is the only module that touches the card stack; everything that decides what to send and
what an answer means is `locksmith.core.card`. pyscard (the `card` extra) is imported here
only, and this module only on the smart-card path, so the reproducible zipapp without pyscard
runs every other command.

A card is connected in exclusive mode: while a holder's PIN is verified on it, no other program
on the machine can send it a command. Disconnecting resets the card, which clears the PIN
verification (OpenPGP card 3.4 §7.2.2): the card is never left unlocked behind us.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

from locksmith.personalities.caution.ui import CliError

SMARTCARD_UNAVAILABLE = ("smart-card support is not available in this build; use --keyring or "
                         "install with make install-cli-untrusted")
NO_SERVICE = "no PC/SC service is running (start pcscd, the PC/SC daemon)"
SHARING_VIOLATION = ("the card in reader '{reader}' is in use by another program (GnuPG's "
                     "scdaemon keeps cards open: stop it with 'gpgconf --kill scdaemon')")


class PcscError(Exception):
    """A PC/SC failure: no service, a reader gone, a card removed. `str()` is one line."""


def _scard() -> Any:
    try:
        from smartcard import scard
    except ImportError:
        raise CliError(SMARTCARD_UNAVAILABLE) from None
    return scard


def _code(result: int) -> int:
    return result & 0xFFFFFFFF


class Context:
    """One PC/SC context: `readers()`, then `connect(reader)` for each card to talk to."""

    def __init__(self) -> None:
        self._scard = _scard()
        result, self._handle = self._scard.SCardEstablishContext(self._scard.SCARD_SCOPE_USER)
        if result != self._scard.SCARD_S_SUCCESS:
            if _code(result) == _code(self._scard.SCARD_E_NO_SERVICE):
                raise PcscError(NO_SERVICE)
            raise PcscError(f"cannot open the PC/SC service: {self._message(result)}")
        self._connections: list[Connection] = []

    def _message(self, result: int) -> str:
        text = str(self._scard.SCardGetErrorMessage(result)).strip().rstrip(".")
        return f"{text} (0x{_code(result):08X})"

    def readers(self) -> list[str]:
        result, names = self._scard.SCardListReaders(self._handle, [])
        if _code(result) in (_code(self._scard.SCARD_E_NO_READERS_AVAILABLE),
                             _code(self._scard.SCARD_E_READER_UNAVAILABLE)):
            return []
        if result != self._scard.SCARD_S_SUCCESS:
            raise PcscError(f"cannot list smart-card readers: {self._message(result)}")
        return [str(name) for name in names]

    def connect(self, reader: str) -> Connection:
        """The card in `reader`, exclusively; `PcscError` with a reason a person can act on."""
        sc = self._scard
        result, card, protocol = sc.SCardConnect(
            self._handle, reader, sc.SCARD_SHARE_EXCLUSIVE, sc.SCARD_PROTOCOL_T0 | sc.SCARD_PROTOCOL_T1)
        if result != sc.SCARD_S_SUCCESS:
            code = _code(result)
            if code in (_code(sc.SCARD_E_NO_SMARTCARD), _code(sc.SCARD_W_REMOVED_CARD)):
                raise PcscError("no card")
            if code == _code(sc.SCARD_E_SHARING_VIOLATION):
                raise PcscError(SHARING_VIOLATION.format(reader=reader))
            if code == _code(sc.SCARD_W_UNRESPONSIVE_CARD):
                raise PcscError("the card does not respond")
            raise PcscError(f"cannot connect to the card: {self._message(result)}")
        connection = Connection(self, reader, card, protocol)
        self._connections.append(connection)
        return connection

    def close(self) -> None:
        for connection in self._connections:
            connection.close()
        self._connections.clear()
        if self._handle is not None:
            self._scard.SCardReleaseContext(self._handle)
            self._handle = None

    def __enter__(self) -> Context:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()


def open_context() -> Context:
    """A `Context` for a CLI command: no pyscard or no PC/SC service is one error line."""
    try:
        return Context()
    except PcscError as exc:
        raise CliError(str(exc)) from None


class Connection:
    """One card held exclusively; `transmit` is the `core.card` transport."""

    def __init__(self, context: Context, reader: str, handle: Any, protocol: int) -> None:
        self.reader = reader
        self._context = context
        self._handle = handle
        self._protocol = protocol

    def transmit(self, apdu: bytes) -> bytes:
        sc = self._context._scard
        if self._handle is None:
            raise PcscError(f"the connection to reader '{self.reader}' is closed")
        result, response = sc.SCardTransmit(self._handle, self._protocol, list(apdu))
        if result != sc.SCARD_S_SUCCESS:
            if _code(result) in (_code(sc.SCARD_W_REMOVED_CARD), _code(sc.SCARD_E_NO_SMARTCARD)):
                raise PcscError("the card was removed")
            raise PcscError(f"the card did not answer: {self._context._message(result)}")
        return bytes(response)

    def close(self) -> None:
        """Disconnect and reset the card, which forgets any PIN verified on it."""
        if self._handle is not None:
            sc = self._context._scard
            sc.SCardDisconnect(self._handle, sc.SCARD_RESET_CARD)
            self._handle = None
