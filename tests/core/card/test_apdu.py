"""APDU encoding (ISO 7816-4 cases 1–4, short and extended) and the exchange rules of `transmit`.

The fake cards here are scripts of (exact bytes expected, answer): a test fails on the first
byte we send that the script did not predict.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from locksmith.core.card import apdu, errors
from locksmith.core.card.apdu import Command, Response, transmit
from locksmith.core.card.errors import CardError, LocalError, MalformedResponse


def h(text: str) -> bytes:
    return bytes.fromhex(text)


class ScriptedCard:
    def __init__(self, script: Sequence[tuple[bytes, bytes]]) -> None:
        self.script = list(script)
        self.sent: list[bytes] = []

    def __call__(self, command: bytes) -> bytes:
        assert self.script, f"unexpected command {command.hex()}"
        expected, answer = self.script.pop(0)
        assert command.hex() == expected.hex()
        self.sent.append(command)
        return answer

    def done(self) -> bool:
        return not self.script


# --- encoding: the OpenPGP card 3.4 commands -----------------------------------------------

@pytest.mark.parametrize(("command", "extended", "expected"), [
    (Command(0, 0xA4, 0x04, 0x00, h("D27600012401")), False, "00A4040006D27600012401"),
    (Command(0, 0xA4, 0x04, 0x00, h("D27600012401"), le=0), False, "00A4040006D2760001240100"),
    (Command(0, 0xCA, 0x00, 0x6E, le=0), False, "00CA006E00"),
    (Command(0, 0x20, 0x00, 0x81, b"123456"), False, "0020008106313233343536"),
    (Command(0, 0x2A, 0x9E, 0x9A, bytes(32), le=0), False, "002A9E9A20" + "00" * 32 + "00"),
    (Command(0, 0xC0, 0, 0, le=256), False, "00C0000000"),
    (Command(0, 0xC0, 0, 0, le=0x10), False, "00C0000010"),
    (Command(0, 0x84, 0, 0), False, "00840000"),
    (Command(0, 0xCA, 0x00, 0x6E, le=0), True, "00CA006E000000"),
    (Command(0, 0xCA, 0x00, 0x6E, le=0x0800), True, "00CA006E000800"),
    (Command(0, 0x20, 0x00, 0x81, b"123456"), True, "00200081000006313233343536"),
    (Command(0, 0x84, 0, 0), True, "00840000"),
])
def test_commands_encode_to_the_card_spec_bytes(command: Command, extended: bool,
                                                expected: str) -> None:
    assert command.encode(extended=extended).hex().upper() == expected


def test_pso_decipher_of_257_bytes_uses_the_extended_form() -> None:
    data = b"\x00" + bytes(range(256))
    encoded = Command(0, 0x2A, 0x80, 0x86, data, le=0).encode(extended=True)
    assert encoded == h("002A8086000101") + data + h("0000")


@pytest.mark.parametrize(("command", "extended"), [
    (Command(0, 0x2A, 0x80, 0x86, bytes(256)), False),
    (Command(0, 0x2A, 0x80, 0x86, bytes(65536)), True),
    (Command(0, 0xCA, 0, 0x6E, le=257), False),
    (Command(0, 0xCA, 0, 0x6E, le=65537), True),
    (Command(0, 0xCA, 0, 0x6E, le=-1), True),
    (Command(0x100, 0xCA, 0, 0x6E), False),
])
def test_commands_that_do_not_fit_are_local_errors(command: Command, extended: bool) -> None:
    with pytest.raises(LocalError):
        command.encode(extended=extended)


def test_command_repr_hides_the_data_because_verify_carries_the_pin() -> None:
    assert "313233" not in repr(Command(0, 0x20, 0, 0x81, b"123456"))
    assert "123456" not in repr(Command(0, 0x20, 0, 0x81, b"123456"))


def _decode(raw: bytes, extended: bool) -> tuple[int, int, int, int, bytes, int | None]:
    """An independent ISO 7816-4 §5.1 decoder: header, then the body's case by its length."""
    header, body = raw[:4], raw[4:]
    cla, ins, p1, p2 = header
    if not body:
        return cla, ins, p1, p2, b"", None
    if not extended:
        if len(body) == 1:
            return cla, ins, p1, p2, b"", body[0] or 256
        lc = body[0]
        assert lc and len(body) in (1 + lc, 2 + lc)
        le = (body[-1] or 256) if len(body) == 2 + lc else None
        return cla, ins, p1, p2, body[1:1 + lc], le
    assert body[0] == 0
    if len(body) == 3:
        return cla, ins, p1, p2, b"", int.from_bytes(body[1:], "big") or 65536
    lc = int.from_bytes(body[1:3], "big")
    assert lc and len(body) in (3 + lc, 5 + lc)
    le = (int.from_bytes(body[-2:], "big") or 65536) if len(body) == 5 + lc else None
    return cla, ins, p1, p2, body[3:3 + lc], le


byte = st.integers(0, 255)


@given(byte, byte, byte, byte, st.binary(max_size=255), st.none() | st.integers(0, 256))
@settings(max_examples=200)
def test_short_encoding_decodes_back_to_the_same_fields(
        cla: int, ins: int, p1: int, p2: int, data: bytes, le: int | None) -> None:
    raw = Command(cla, ins, p1, p2, data, le).encode(extended=False)
    expected_le = None if le is None else le or 256
    assert _decode(raw, False) == (cla, ins, p1, p2, data, expected_le)


@given(byte, byte, byte, byte, st.binary(max_size=600), st.none() | st.integers(0, 65536))
@settings(max_examples=200)
def test_extended_encoding_decodes_back_to_the_same_fields(
        cla: int, ins: int, p1: int, p2: int, data: bytes, le: int | None) -> None:
    raw = Command(cla, ins, p1, p2, data, le).encode(extended=True)
    expected_le = None if le is None else le or 65536
    assert _decode(raw, True) == (cla, ins, p1, p2, data, expected_le)


# --- responses -----------------------------------------------------------------------------

def test_response_splits_data_and_status_word() -> None:
    response = Response.parse(h("0102 9000"))
    assert (response.data, response.sw, response.sw1, response.sw2, response.ok) == (
        b"\x01\x02", 0x9000, 0x90, 0x00, True)
    assert not Response.parse(h("6A88")).ok


@pytest.mark.parametrize("raw", [b"", b"\x90"])
def test_a_response_without_a_status_word_is_malformed(raw: bytes) -> None:
    with pytest.raises(MalformedResponse):
        Response.parse(raw)


@given(st.binary(max_size=40))
@settings(max_examples=100)
def test_response_parse_of_garbage_raises_only_card_errors(raw: bytes) -> None:
    try:
        Response.parse(raw)
    except CardError:
        pass


# --- status words --------------------------------------------------------------------------

@pytest.mark.parametrize(("sw", "cls"), [
    (0x6982, errors.SecurityStatusNotSatisfied), (0x6985, errors.ConditionsNotSatisfied),
    (0x6A82, errors.DataNotFound), (0x6A88, errors.DataNotFound), (0x6A80, errors.WrongData),
    (0x6D00, errors.NotSupported), (0x6E00, errors.NotSupported), (0x6A81, errors.NotSupported),
    (0x6700, errors.WrongLength), (0x6A86, errors.IncorrectParameters),
    (0x6B00, errors.IncorrectParameters), (0x6983, errors.PinBlocked),
    (0x63C2, errors.WrongPin), (0x1234, errors.StatusError),
])
def test_status_words_map_to_their_typed_errors(sw: int, cls: type[errors.StatusError]) -> None:
    error = apdu.status_error(sw)
    assert type(error) is cls and error.sw == sw and isinstance(error, CardError)


def test_status_messages_name_the_status_word_and_its_meaning() -> None:
    assert str(apdu.status_error(0x6A88)) == "card answered 6A88 (referenced data not found)"
    assert str(apdu.status_error(0x1234)) == "card answered 1234"
    assert str(apdu.status_error(0x6983)) == "the PIN is blocked"
    wrong = apdu.status_error(0x63C2)
    assert isinstance(wrong, errors.WrongPin) and wrong.retries == 2
    assert str(wrong) == "the card refused the PIN (2 attempts left)"


# --- transmit ------------------------------------------------------------------------------

def test_transmit_returns_the_data_of_a_9000_answer() -> None:
    card = ScriptedCard([(h("00CA006E00"), h("6E00 9000"))])
    assert transmit(card, Command(0, 0xCA, 0, 0x6E, le=0), extended=False) == h("6E00")


def test_a_300_byte_command_is_chained_255_then_45_with_le_on_the_last_part_only() -> None:
    data = bytes(i % 251 for i in range(300))
    card = ScriptedCard([
        (h("102A8086FF") + data[:255], h("9000")),
        (h("002A80862D") + data[255:] + h("00"), h("AABB9000")),
    ])
    assert transmit(card, Command(0, 0x2A, 0x80, 0x86, data, le=0), extended=False) == h("AABB")
    assert card.done()


def test_extended_commands_chain_at_the_card_s_maximum_command_data() -> None:
    data = bytes(10)
    card = ScriptedCard([
        (h("102A8086000004") + data[:4], h("9000")),
        (h("102A8086000004") + data[4:8], h("9000")),
        (h("002A8086000002") + data[8:] + h("0000"), h("019000")),
    ])
    result = transmit(card, Command(0, 0x2A, 0x80, 0x86, data, le=0), extended=True,
                      max_command_data=4)
    assert result == h("01") and card.done()


def test_a_refused_chain_link_stops_the_chain_with_its_typed_error() -> None:
    card = ScriptedCard([(h("102A8086FF") + bytes(255), h("6884"))])
    with pytest.raises(errors.StatusError, match="6884 \\(command chaining not supported\\)"):
        transmit(card, Command(0, 0x2A, 0x80, 0x86, bytes(300), le=0), extended=False)
    assert card.done()


def test_61xx_answers_are_followed_with_get_response_and_concatenated() -> None:
    card = ScriptedCard([
        (h("00CA006E00"), h("0102") + h("6110")),
        (h("00C0000010"), bytes(range(16)) + h("6100")),
        (h("00C0000000"), bytes(256) + h("9000")),
    ])
    result = transmit(card, Command(0, 0xCA, 0, 0x6E, le=0), extended=False)
    assert result == h("0102") + bytes(range(16)) + bytes(256) and card.done()


def test_6cxx_resends_the_same_command_once_with_the_length_the_card_asked_for() -> None:
    card = ScriptedCard([
        (h("00CA006500"), h("6C05")),
        (h("00CA006505"), h("6503 5B01 41 9000")),
    ])
    assert transmit(card, Command(0, 0xCA, 0, 0x65, le=0), extended=False) == h("65035B0141")


def test_a_second_6cxx_is_an_error_not_a_loop() -> None:
    card = ScriptedCard([(h("00CA006500"), h("6C05")), (h("00CA006505"), h("6C06"))])
    with pytest.raises(errors.StatusError, match="6C06"):
        transmit(card, Command(0, 0xCA, 0, 0x65, le=0), extended=False)


def test_6cxx_then_61xx_is_followed_through() -> None:
    card = ScriptedCard([
        (h("00CA006500"), h("6C00")),
        (h("00CA006500"), h("AA6101")),
        (h("00C0000001"), h("BB9000")),
    ])
    assert transmit(card, Command(0, 0xCA, 0, 0x65, le=0), extended=False) == h("AABB")


def test_an_error_after_get_response_is_raised_typed() -> None:
    card = ScriptedCard([(h("00CA006E00"), h("6101")), (h("00C0000001"), h("6A88"))])
    with pytest.raises(errors.DataNotFound):
        transmit(card, Command(0, 0xCA, 0, 0x6E, le=0), extended=False)


def test_a_card_that_answers_61xx_forever_is_cut_off() -> None:
    sent: list[bytes] = []

    def card(command: bytes) -> bytes:
        sent.append(command)
        return h("00 6101")

    with pytest.raises(MalformedResponse, match="kept answering 61xx"):
        transmit(card, Command(0, 0xCA, 0, 0x6E, le=0), extended=False)
    assert len(sent) == 1 + apdu.MAX_GET_RESPONSE_ROUNDS


def test_a_card_that_floods_get_response_is_cut_off_by_size() -> None:
    sent: list[bytes] = []

    def card(command: bytes) -> bytes:
        sent.append(command)
        return bytes(8192) + h("6100")

    with pytest.raises(MalformedResponse):
        transmit(card, Command(0, 0xCA, 0, 0x6E, le=0), extended=False)
    assert len(sent) <= 10


@given(st.binary(min_size=0, max_size=1200), st.integers(1, 300), st.booleans())
@settings(max_examples=150)
def test_chained_parts_reassemble_to_the_command_data(data: bytes, limit: int,
                                                      extended: bool) -> None:
    received = bytearray()
    final: list[tuple[int, int | None]] = []

    def card(raw: bytes) -> bytes:
        cla, _, _, _, part, le = _decode(raw, extended)
        received.extend(part)
        if cla & 0x10:
            assert le is None and len(part) == min(limit, 255 if not extended else limit)
        else:
            final.append((cla, le))
        return h("9000")

    transmit(card, Command(0, 0x2A, 0x80, 0x86, data, le=0), extended=extended,
             max_command_data=limit)
    assert bytes(received) == data
    assert final == [(0, 65536 if extended else 256)]


@given(st.data(), st.binary(max_size=300), st.booleans())
@settings(max_examples=200)
def test_a_card_answering_garbage_causes_only_card_errors(
        draw: st.DataObject, data: bytes, extended: bool) -> None:
    answers = st.one_of(
        st.binary(max_size=8),
        st.builds(lambda d, sw: d + sw, st.binary(max_size=20),
                  st.sampled_from([h("9000"), h("6100"), h("6102"), h("6C03"), h("6C00"),
                                   h("63C1"), h("6A88"), h("6983")])))
    calls = 0

    def card(raw: bytes) -> bytes:
        nonlocal calls
        calls += 1
        assert calls < 1000
        return draw.draw(answers)

    try:
        result = transmit(card, Command(0, 0x2A, 0x80, 0x86, data, le=0), extended=extended,
                          max_command_data=100)
        assert isinstance(result, bytes)
    except CardError:
        pass
