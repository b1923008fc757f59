"""One exception family for what a card can do to us, and one for what we do wrong.

`CardError` covers every way a card (broken, hostile, or merely refusing) can make an operation
fail, so the CLI catches one class and prints its message. Messages carry status words and
lengths, never command data: a VERIFY carries the PIN. `LocalError` is our own misuse (an APDU
that cannot be encoded, an unknown PIN reference); it is a `ValueError`, not a `CardError`,
because no card answer can cause it.
"""

from __future__ import annotations


class CardError(Exception):
    """The card failed, refused, or answered something unusable; the message is safe to show."""


class MalformedResponse(CardError):
    """The card's answer cannot be parsed (bad TLV, wrong length, truncated, missing object)."""


class UnsupportedFeature(CardError):
    """The card uses something this implementation does not (a KDF algorithm, a curve)."""


class LocalError(ValueError):
    """A request that cannot be expressed (too long for the APDU form, bad argument)."""


# ISO 7816-4 §5.6 / OpenPGP card 3.4 §7 status words, for messages and the subclass table.
_DESCRIPTIONS: dict[int, str] = {
    0x6281: "part of returned data may be corrupted",
    0x6285: "selected file or application in termination state",
    0x6400: "execution error",
    0x6581: "memory failure",
    0x6700: "wrong length",
    0x6882: "secure messaging not supported",
    0x6883: "last command of the chain expected",
    0x6884: "command chaining not supported",
    0x6982: "security status not satisfied",
    0x6983: "authentication method blocked",
    0x6985: "conditions of use not satisfied",
    0x6987: "expected secure messaging data objects missing",
    0x6988: "secure messaging data objects incorrect",
    0x6A80: "incorrect parameters in the command data field",
    0x6A81: "function not supported",
    0x6A82: "file or application not found",
    0x6A86: "incorrect parameters P1-P2",
    0x6A88: "referenced data not found",
    0x6B00: "wrong parameters P1-P2",
    0x6D00: "instruction code not supported or invalid",
    0x6E00: "class not supported",
    0x6F00: "no precise diagnosis",
}


def describe(sw: int) -> str:
    """`card answered 6A88 (referenced data not found)`, or without the gloss when unknown."""
    text = _DESCRIPTIONS.get(sw)
    if text is None and sw >> 8 == 0x6C:
        text = f"wrong Le; the card has {sw & 0xFF or 256} bytes"
    if text is None and sw & 0xFFF0 == 0x63C0:
        text = f"verification failed, {sw & 0x0F} attempts left"
    return f"card answered {sw:04X}" + (f" ({text})" if text else "")


class StatusError(CardError):
    """The card answered a status word other than 9000 (after 61xx/6Cxx handling)."""

    def __init__(self, sw: int, message: str | None = None) -> None:
        super().__init__(message if message is not None else describe(sw))
        self.sw = sw


class WrongPin(StatusError):
    """VERIFY failed; `retries` is what the card says is left (63Cx, or its PW status)."""

    def __init__(self, sw: int, retries: int) -> None:
        super().__init__(sw, f"the card refused the PIN ({retries} attempts left)")
        self.retries = retries


class PinBlocked(StatusError):
    def __init__(self, sw: int = 0x6983) -> None:
        super().__init__(sw, "the PIN is blocked")


class SecurityStatusNotSatisfied(StatusError):
    pass


class ConditionsNotSatisfied(StatusError):
    pass


class DataNotFound(StatusError):
    pass


class WrongData(StatusError):
    pass


class NotSupported(StatusError):
    pass


class WrongLength(StatusError):
    pass


class IncorrectParameters(StatusError):
    pass


_CLASSES: dict[int, type[StatusError]] = {
    0x6982: SecurityStatusNotSatisfied,
    0x6985: ConditionsNotSatisfied,
    0x6A82: DataNotFound,
    0x6A88: DataNotFound,
    0x6A80: WrongData,
    0x6D00: NotSupported,
    0x6E00: NotSupported,
    0x6A81: NotSupported,
    0x6700: WrongLength,
    0x6A86: IncorrectParameters,
    0x6B00: IncorrectParameters,
}


def status_error(sw: int) -> StatusError:
    """The typed exception for a final status word, so callers can catch what they handle."""
    if sw & 0xFFF0 == 0x63C0:
        return WrongPin(sw, sw & 0x0F)
    if sw == 0x6983:
        return PinBlocked(sw)
    return _CLASSES.get(sw, StatusError)(sw)
