"""F1–F4 and A1–A2 (docs/forwarding.md §3): every writer round-trips through its reader, and
every reader refuses what §3 says closes the connection — duplicate or unknown members, wrong
types, wrong-length or non-hex values, too many or too large approvals, a first frame that is
neither F1 nor A1 — with a fixed text."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from locksmith.core.forwarding.messages import (
    ANSWER_CAP, FIRST_CAP, HELLO_CAP, MAX_APPROVAL_BYTES, MAX_APPROVALS, MAX_PUSHED, PUSH_CAP,
    REQUEST_CAP, STORED_CAP, Challenge, Discarded, Forwarded, Hello, MessageError, Push, Refused,
    Request, Stored, parse_answer, parse_challenge, parse_first, parse_hello, parse_request,
    parse_stored,
)
from locksmith.core.protocol import frame

H = bytes(range(32))
NR = bytes(range(32, 64))
NP = bytes(range(64, 96))
HELLO = {"version": 1, "bundle_hash": H.hex(), "nonce": NR.hex()}
CHALLENGE = {"nonce": NP.hex(), "attestation": "d28443a10126"}
REQUEST = {"attestation": "d28443a10126", "approvals": ["-----BEGIN PGP SIGNED MESSAGE-----"]}
FORWARDED = {"Forwarded": {"public_key": H.hex(), "encrypted_secret": "ab" * 48}}
REFUSED = {"Refused": {"reason": "Requester runs a different bundle"}}

blobs32 = st.binary(min_size=32, max_size=32)
texts = st.text(max_size=200)


def _json(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


# --- round trips -----------------------------------------------------------------------------


@given(st.integers(min_value=-2**70, max_value=2**70), blobs32, blobs32)
def test_hello_round_trips_with_any_integer_version(version: int, h: bytes, nr: bytes) -> None:
    assert parse_hello(Hello(version, h, nr).encode()) == Hello(version, h, nr)


@given(blobs32, st.binary(max_size=4096))
def test_challenge_round_trips(np_: bytes, document: bytes) -> None:
    assert parse_challenge(Challenge(np_, document).encode()) == Challenge(np_, document)


@given(st.binary(max_size=2048), st.lists(texts, max_size=8).map(tuple))
def test_request_round_trips(document: bytes, approvals: tuple[str, ...]) -> None:
    assert parse_request(Request(document, approvals).encode()) == Request(document, approvals)


@given(blobs32, st.binary(min_size=48, max_size=48))
def test_forwarded_round_trips(e: bytes, c: bytes) -> None:
    assert parse_answer(Forwarded(e, c).encode()) == Forwarded(e, c)


@given(texts)
def test_refused_round_trips(reason: str) -> None:
    assert parse_answer(Refused(reason).encode()) == Refused(reason)


def test_writers_emit_compact_json_in_the_documented_member_order_with_lowercase_hex() -> None:
    assert Hello(1, H, NR).encode() == _json(HELLO)
    assert Challenge(NP, bytes.fromhex("D28443A10126")).encode() == _json(CHALLENGE)
    assert Request(bytes.fromhex("d28443a10126"), tuple(REQUEST["approvals"])).encode() \
        == _json(REQUEST)
    assert Forwarded(H, bytes([0xab]) * 48).encode() == _json(FORWARDED)
    assert Refused("Requester runs a different bundle").encode() == _json(REFUSED)


def test_members_are_accepted_in_any_order_and_hex_in_either_case() -> None:
    text = f'{{"nonce":"{NR.hex().upper()}","bundle_hash":"{H.hex().upper()}","version":1}}'
    assert parse_hello(text.encode()) == Hello(1, H, NR)


# --- strictness ------------------------------------------------------------------------------

PARSERS = {"F1": (parse_hello, HELLO), "F2": (parse_challenge, CHALLENGE),
           "F3": (parse_request, REQUEST)}


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_an_unknown_member_closes(name: str) -> None:
    parse, valid = PARSERS[name]
    with pytest.raises(MessageError, match="unknown member"):
        parse(_json({**valid, "extra": 1}))


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_a_missing_member_closes(name: str) -> None:
    parse, valid = PARSERS[name]
    for member in valid:
        with pytest.raises(MessageError, match=f"lacks member '{member}'"):
            parse(_json({k: v for k, v in valid.items() if k != member}))


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_a_duplicate_member_closes(name: str) -> None:
    parse, valid = PARSERS[name]
    member = next(iter(valid))
    text = _json(valid)[:-1] + b"," + _json({member: valid[member]})[1:]
    with pytest.raises(MessageError, match="duplicate member"):
        parse(text)


@pytest.mark.parametrize("version", ["1", True, 1.0, None, [1]])
def test_a_version_that_is_not_a_json_integer_closes(version: object) -> None:
    with pytest.raises(MessageError, match="version must be an integer"):
        parse_hello(_json({**HELLO, "version": version}))


def test_version_1e0_is_not_an_integer() -> None:
    with pytest.raises(MessageError, match="version must be an integer"):
        parse_hello(_json(HELLO).replace(b'"version":1', b'"version":1e0'))


@pytest.mark.parametrize("member, value, text", [
    ("bundle_hash", H.hex()[:-2], "bundle_hash must be 32 bytes"),
    ("bundle_hash", H.hex() + "00", "bundle_hash must be 32 bytes"),
    ("bundle_hash", H.hex()[:-1], "bundle_hash must be hex"),
    ("nonce", "zz" * 32, "nonce must be hex"),
    ("nonce", " " + NR.hex()[1:], "nonce must be hex"),
    ("nonce", list(NR), "nonce must be a string"),
])
def test_wrong_hex_in_f1_closes(member: str, value: object, text: str) -> None:
    with pytest.raises(MessageError, match=text):
        parse_hello(_json({**HELLO, member: value}))


def test_wrong_values_in_f2_and_f3_close() -> None:
    with pytest.raises(MessageError, match="F2 nonce must be 32 bytes"):
        parse_challenge(_json({**CHALLENGE, "nonce": "00" * 31}))
    with pytest.raises(MessageError, match="F2 attestation must be hex"):
        parse_challenge(_json({**CHALLENGE, "attestation": "abc"}))
    with pytest.raises(MessageError, match="F3 attestation must be a string"):
        parse_request(_json({**REQUEST, "attestation": 5}))
    with pytest.raises(MessageError, match="approvals must be an array"):
        parse_request(_json({**REQUEST, "approvals": "text"}))
    with pytest.raises(MessageError, match="approvals element must be a string"):
        parse_request(_json({**REQUEST, "approvals": ["a", 1]}))


def test_more_than_254_approvals_close() -> None:
    assert len(parse_request(_json({**REQUEST, "approvals": ["a"] * MAX_APPROVALS})).approvals) \
        == MAX_APPROVALS
    with pytest.raises(MessageError, match="more than 254 approvals"):
        parse_request(_json({**REQUEST, "approvals": ["a"] * (MAX_APPROVALS + 1)}))


def test_an_approval_over_16_kib_of_utf8_closes() -> None:
    fits = "x" * MAX_APPROVAL_BYTES
    assert parse_request(_json({**REQUEST, "approvals": [fits]})).approvals == (fits,)
    multibyte = "é" * (MAX_APPROVAL_BYTES // 2 + 1)  # fewer characters, more bytes
    with pytest.raises(MessageError, match="larger than 16384 bytes"):
        parse_request(_json({**REQUEST, "approvals": [multibyte]}))


def test_the_largest_f3_fits_in_one_frame() -> None:
    """254 approvals of 3.8 KiB and an attestation of 16 KiB: about 1 MiB, and one frame (254
    approvals of the largest size do not fit: the frame limit is the binding one)."""
    request = Request(bytes(16 * 1024), tuple("a" * 3800 for _ in range(MAX_APPROVALS)))
    payload = request.encode()
    assert len(payload) <= REQUEST_CAP
    decoder = frame.FrameDecoder()
    decoder.feed(frame.encode(payload))
    assert decoder.next_payload(REQUEST_CAP) == payload


@pytest.mark.parametrize("answer", [
    {}, {"Forwarded": FORWARDED["Forwarded"], "Refused": REFUSED["Refused"]},
    {"Accepted": {"remaining": 0}}, {"Refused": "no"}, {"Refused": {}},
    {"Refused": {"reason": 1}}, {"Refused": {"reason": "x", "extra": 1}},
    {"Forwarded": {"public_key": H.hex()}},
    {"Forwarded": {"public_key": H.hex()[:-2], "encrypted_secret": "ab" * 48}},
    {"Forwarded": {"public_key": H.hex(), "encrypted_secret": "ab" * 47}},
    [FORWARDED], "Forwarded",
])
def test_an_answer_that_is_not_exactly_one_well_formed_variant_closes(answer: object) -> None:
    with pytest.raises(MessageError):
        parse_answer(_json(answer))


@pytest.mark.parametrize("payload", [b"", b"{", b"\xff", b"[]", b"null", b'{"a":NaN}'])
def test_non_json_and_non_objects_close_with_a_text_that_quotes_nothing(payload: bytes) -> None:
    for parse in (parse_hello, parse_challenge, parse_request, parse_answer):
        with pytest.raises(MessageError) as caught:
            parse(payload)
        assert str(caught.value).startswith(("F1", "F2", "F3", "F4"))
        assert "NaN" not in str(caught.value)


def test_writers_refuse_what_the_readers_would_refuse() -> None:
    with pytest.raises(ValueError):
        Hello(1, H[:31], NR).encode()
    with pytest.raises(ValueError):
        Forwarded(H, bytes(47)).encode()
    with pytest.raises(ValueError):
        Request(b"", ("a",) * (MAX_APPROVALS + 1)).encode()
    with pytest.raises(ValueError):
        Refused("x" * ANSWER_CAP).encode()


# --- A1 and A2: the push (§4.4) --------------------------------------------------------------

PUSH = {"approvals": ["-----BEGIN PGP SIGNED MESSAGE-----"]}
STORED = {"Stored": {"stored": 1, "discarded": [{"index": 1, "reason": "expired "
                                                  "2025-01-01T00:00:00Z"}]}}
discards = st.lists(st.tuples(st.integers(0, 2**40), texts), max_size=16).map(
    lambda items: tuple(Discarded(i, r) for i, r in items))


@given(st.lists(texts, min_size=1, max_size=MAX_PUSHED).map(tuple))
def test_a_push_round_trips_through_the_first_frame_reader(approvals: tuple[str, ...]) -> None:
    assert parse_first(Push(approvals).encode()) == Push(approvals)


@given(st.integers(-2**70, 2**70), blobs32, blobs32)
def test_an_f1_round_trips_through_the_first_frame_reader(version: int, h: bytes,
                                                          nr: bytes) -> None:
    assert parse_first(Hello(version, h, nr).encode()) == Hello(version, h, nr)


@given(st.integers(0, 2**40), discards)
def test_stored_round_trips(stored: int, discarded: tuple[Discarded, ...]) -> None:
    try:
        payload = Stored(stored, discarded).encode()
    except ValueError:  # larger than A2's cap: the writer refuses, as the reader would
        return
    assert parse_stored(payload) == Stored(stored, discarded)


def test_push_writers_emit_the_documented_json() -> None:
    assert Push(tuple(PUSH["approvals"])).encode() == _json(PUSH)
    assert Stored(1, (Discarded(1, "expired 2025-01-01T00:00:00Z"),)).encode() == _json(STORED)
    assert Stored(0).encode() == b'{"Stored":{"stored":0,"discarded":[]}}'


@pytest.mark.parametrize("payload, text", [
    ({"approvals": []}, "A1 carries no approval"),
    ({"approvals": "text"}, "A1 approvals must be an array"),
    ({"approvals": ["a", 2]}, "A1 approvals element must be a string"),
    ({"approvals": ["a"] * (MAX_PUSHED + 1)}, "A1 carries more than 16 approvals"),
    ({"approvals": ["é" * (MAX_APPROVAL_BYTES // 2 + 1)]}, "larger than 16384 bytes"),
    ({"approvals": ["a"], "version": 1}, "neither F1 nor A1"),
    ({**HELLO, "approvals": ["a"]}, "neither F1 nor A1"),
    ({"version": 1, "bundle_hash": H.hex()}, "neither F1 nor A1"),
    ({}, "neither F1 nor A1"),
])
def test_a_first_frame_that_is_not_exactly_f1_or_a1_closes(payload: object, text: str) -> None:
    with pytest.raises(MessageError, match=text):
        parse_first(_json(payload))


def test_a_duplicate_member_in_a1_closes() -> None:
    with pytest.raises(MessageError, match="duplicate member"):
        parse_first(b'{"approvals":["a"],"approvals":["b"]}')


def test_an_f1_over_4_kib_closes_after_parsing_though_its_header_passed() -> None:
    """The header is checked against A1's cap (the larger); F1 keeps its own 4 KiB."""
    padded = _json(HELLO)[:-1] + b" " * (HELLO_CAP - len(_json(HELLO)) + 1) + b"}"
    assert len(padded) == HELLO_CAP + 1 <= FIRST_CAP
    assert parse_hello(padded) == Hello(1, H, NR)  # a valid F1 by itself ...
    with pytest.raises(MessageError, match="F1 is larger than 4096 bytes"):
        parse_first(padded)  # ... but not as a first frame
    exact = _json(HELLO)[:-1] + b" " * (HELLO_CAP - len(_json(HELLO))) + b"}"
    assert parse_first(exact) == Hello(1, H, NR)


def test_sixteen_approvals_of_16_kib_fit_in_the_a1_cap() -> None:
    """Approval texts escape only their line ends: 16 of the largest size still fit."""
    text = ("A" * 63 + "\n") * (MAX_APPROVAL_BYTES // 64)
    assert len(text.encode()) == MAX_APPROVAL_BYTES
    payload = Push((text,) * MAX_PUSHED).encode()
    assert len(payload) <= PUSH_CAP == FIRST_CAP
    assert parse_first(payload) == Push((text,) * MAX_PUSHED)


def test_push_writers_refuse_what_the_readers_would_refuse() -> None:
    with pytest.raises(ValueError):
        Push(()).encode()
    with pytest.raises(ValueError):
        Push(("a",) * (MAX_PUSHED + 1)).encode()
    with pytest.raises(ValueError):
        Push(("x" * (MAX_APPROVAL_BYTES + 1),)).encode()
    with pytest.raises(ValueError):  # control characters escape to six bytes each
        Push(("\x01" * MAX_APPROVAL_BYTES,) * 3).encode()
    with pytest.raises(ValueError):
        Stored(0, tuple(Discarded(i, "x" * 300) for i in range(16))).encode()
    assert STORED_CAP == ANSWER_CAP


@pytest.mark.parametrize("answer, text", [
    ({}, "not one Stored"),
    ({"Stored": STORED["Stored"], "Refused": {"reason": "x"}}, "not one Stored"),
    ({"Refused": {"reason": "x"}}, "not one Stored"),
    ({"Stored": {"stored": 1}}, "lacks member 'discarded'"),
    ({"Stored": {"stored": 1, "discarded": [], "extra": 0}}, "unknown member"),
    ({"Stored": {"stored": -1, "discarded": []}}, "stored must be a non-negative integer"),
    ({"Stored": {"stored": True, "discarded": []}}, "stored must be a non-negative integer"),
    ({"Stored": {"stored": 1.0, "discarded": []}}, "stored must be a non-negative integer"),
    ({"Stored": {"stored": 0, "discarded": {}}}, "discarded must be an array"),
    ({"Stored": {"stored": 0, "discarded": [{"index": 0}]}}, "lacks member 'reason'"),
    ({"Stored": {"stored": 0, "discarded": [{"index": "0", "reason": "x"}]}},
     "index must be a non-negative integer"),
    ({"Stored": {"stored": 0, "discarded": [{"index": 0, "reason": 5}]}},
     "reason must be a string"),
    ([STORED], "not a JSON object"),
])
def test_an_a2_that_is_not_exactly_one_well_formed_stored_closes(answer: object,
                                                                 text: str) -> None:
    with pytest.raises(MessageError, match=text):
        parse_stored(_json(answer))


@pytest.mark.parametrize("stored, indices, count, coherent", [
    (2, (), 2, True), (1, (1,), 2, True), (0, (0, 1), 2, True),
    (2, (1,), 2, False),  # more than were sent
    (0, (1,), 2, False),  # one unaccounted for
    (0, (1, 0), 2, False),  # out of A1's order
    (0, (0, 0), 2, False),  # named twice
    (1, (2,), 2, False),  # no such text
])
def test_an_a2_answers_its_a1_only_when_every_text_is_accounted_for_once(
        stored: int, indices: tuple[int, ...], count: int, coherent: bool) -> None:
    answer = Stored(stored, tuple(Discarded(i, "x") for i in indices))
    assert answer.answers(count) is coherent
