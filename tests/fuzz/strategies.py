"""Shared fuzzing strategies: byte, text, JSON, CBOR and OpenPGP-packet mutations, and the
invariant helper `only`.

Random bytes mostly die at the first check of a parser (a version byte, a JSON brace), so each
strategy here starts from something valid and breaks it in the ways real corruption and real
attackers do: bit flips, truncations, splices and repeats of its own pieces, duplicated or
removed fields, integers at the edges of their encodings, and deep nesting. Every strategy
shrinks towards small edits of the valid input, so a failure reads as "this valid thing, with
byte 37 set to FF".
"""

from __future__ import annotations

import json
import time
import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context

from locksmith.core.openpgp import pkesk, seipd
from locksmith.core.openpgp.armor import armor, dearmor_all
from locksmith.core.openpgp.keys import PublicKey
from locksmith.core.openpgp.packets import (
    LITERAL, SEIPD, encode_length, encode_packet, parse_packets,
)
from tests.fuzz.conftest import DEADLINE_SCALE, PROFILE

T = TypeVar("T")

# --- the invariant ----------------------------------------------------------------------------


def only(allowed: tuple[type[BaseException], ...], call: Callable[..., T], *args: Any,
         **kwargs: Any) -> T | None:
    """`call(*args, **kwargs)`, with the target's own exception types (`allowed`) swallowed.

    Anything else propagates and fails the example with its traceback: an `IndexError`,
    `KeyError`, `TypeError`, `RecursionError`, `UnicodeDecodeError`, `struct.error`,
    `OverflowError` or `ZeroDivisionError` from inside a parser is a bug, even when a caller
    higher up happens to catch `Exception`.
    """
    try:
        return call(*args, **kwargs)
    except allowed:
        return None


def fuzz(*, deadline_ms: float = 1000, scale: float = 1.0) -> settings:
    """The fuzz profile (conftest.py) with this target's per-example deadline; `scale` trades
    examples for cost (an expensive target runs fewer, a cheap one more)."""
    base = settings.get_profile(PROFILE)
    return settings(base, max_examples=max(1, round(base.max_examples * scale)),
                    deadline=timedelta(milliseconds=deadline_ms * DEADLINE_SCALE))


def outcome(label: str) -> None:
    """Count what an example reached (`--hypothesis-show-statistics` lists the shares), so a
    look at the statistics tells whether the mutations get past the first check."""
    if currently_in_test_context():
        event(label)


def bounded(call: Callable[..., T], *args: Any, seconds: float,
            peak_bytes: int | None = None) -> T:
    """Run `call(*args)` and assert that it finishes within `seconds` and, when given,
    allocates at most `peak_bytes` at its peak: for the few large-input cases, where a
    per-example deadline alone would not show a quadratic loop or a copy per byte. Memory is
    measured in a second run under tracemalloc, which slows allocation-heavy code too much to
    time it."""
    started = time.perf_counter()
    result = call(*args)
    elapsed = time.perf_counter() - started
    limit = seconds * DEADLINE_SCALE
    assert elapsed <= limit, f"took {elapsed:.2f} s, more than {limit:.2f} s"
    if peak_bytes is not None:
        tracemalloc.start()
        try:
            call(*args)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak <= peak_bytes, f"peak allocation {peak} bytes, more than {peak_bytes}"
    return result


# --- bytes ------------------------------------------------------------------------------------

# Values that sit on the edges of length and integer encodings (one, two, four and eight
# bytes), and the bytes parsers most often special-case.
INTERESTING_BYTES = (0x00, 0x01, 0x02, 0x03, 0x04, 0x7F, 0x80, 0x81, 0x9F, 0xBF, 0xC0, 0xDF,
                     0xE0, 0xFE, 0xFF)
INTERESTING_WORDS = (
    b"\x00\x00", b"\xff\xff", b"\x7f\xff", b"\x80\x00", b"\x00\x00\x00\x00",
    b"\xff\xff\xff\xff", b"\x7f\xff\xff\xff", b"\x80\x00\x00\x00", b"\x00\x10\x00\x20",
    b"\xff\xff\xff\xff\xff\xff\xff\xff", b"\x80\x00\x00\x00\x00\x00\x00\x00",
)


@dataclass(frozen=True)
class Edit:
    """One mutation: `kind` at `at` (taken modulo the current length), with its parameters."""

    kind: str
    at: int
    value: int
    size: int
    payload: bytes


_EDIT_KINDS = ("flip", "set", "interesting", "word", "insert", "delete", "truncate", "splice",
               "repeat", "swap")

edits = st.builds(
    Edit,
    kind=st.sampled_from(_EDIT_KINDS),
    at=st.integers(0, 1 << 20),
    value=st.integers(0, 255),
    size=st.integers(1, 64),
    payload=st.binary(min_size=1, max_size=16),
)


def apply_edit(data: bytes, edit: Edit) -> bytes:
    """Apply one `Edit`; total (any edit applies to any input, the empty one included)."""
    buf = bytearray(data)
    if not buf:
        return bytes(edit.payload)
    n = len(buf)
    at = edit.at % n
    kind = edit.kind
    if kind == "flip":
        buf[at] ^= 1 << (edit.value % 8)
    elif kind == "set":
        buf[at] = edit.value
    elif kind == "interesting":
        buf[at] = INTERESTING_BYTES[edit.value % len(INTERESTING_BYTES)]
    elif kind == "word":
        word = INTERESTING_WORDS[edit.value % len(INTERESTING_WORDS)]
        buf[at:at + len(word)] = word
    elif kind == "insert":
        buf[at:at] = edit.payload
    elif kind == "delete":
        del buf[at:at + edit.size]
    elif kind == "truncate":
        del buf[at:]
    elif kind == "splice":  # a piece of the input itself, elsewhere: plausible structure
        source = (at * 7919 + edit.value) % n
        buf[at:at] = buf[source:source + edit.size]
    elif kind == "repeat":
        chunk = bytes(buf[at:at + edit.size])
        buf[at:at] = chunk * (1 + edit.value % 4)
    else:  # swap two chunks
        other = (at + 1 + edit.value * 31) % n
        first, second = sorted((at, other))
        size = min(edit.size, second - first)
        a, b = bytes(buf[first:first + size]), bytes(buf[second:second + size])
        buf[first:first + size], buf[second:second + size] = b, a
    return bytes(buf)


def mutated(data: bytes, *, max_edits: int = 4) -> st.SearchStrategy[bytes]:
    """`data` with one to `max_edits` byte-level edits (never returned unchanged on purpose,
    but an edit may cancel out: callers must not assume the result differs)."""

    def build(changes: list[Edit]) -> bytes:
        out = data
        for change in changes:
            out = apply_edit(out, change)
        return out

    return st.lists(edits, min_size=1, max_size=max_edits).map(build)


def mutated_from(samples: Sequence[bytes], *, max_edits: int = 4) -> st.SearchStrategy[bytes]:
    """One of `samples`, mutated."""
    return st.sampled_from(list(samples)).flatmap(lambda s: mutated(s, max_edits=max_edits))


def text_mutated(text: str, *, alphabet: str = "", max_edits: int = 4) -> st.SearchStrategy[str]:
    """Character-level edits of `text`: the same edit kinds as `mutated`, with replacement
    characters drawn from the text itself, `alphabet` and a few perennial troublemakers."""
    specials = sorted(set(text) | set(alphabet) | set("\n\r\t \\\"'=#:\x00\x0b\u2028\ufeff\xe9"))

    def build(changes: list[tuple[Edit, str]]) -> str:
        chars = list(text)
        for edit, replacement in changes:
            if not chars:
                chars = [replacement]
                continue
            n = len(chars)
            at = edit.at % n
            if edit.kind in ("flip", "set", "interesting", "word"):
                chars[at] = replacement
            elif edit.kind == "insert":
                chars[at:at] = [replacement] * (1 + edit.value % 3)
            elif edit.kind == "delete":
                del chars[at:at + edit.size]
            elif edit.kind == "truncate":
                del chars[at:]
            elif edit.kind in ("splice", "repeat"):
                source = (at * 7919 + edit.value) % n
                chars[at:at] = chars[source:source + edit.size] * (1 + edit.value % 3)
            else:
                other = (at + 1 + edit.value * 31) % n
                chars[at], chars[other] = chars[other], chars[at]
        return "".join(chars)

    return st.lists(st.tuples(edits, st.sampled_from(specials)), min_size=1,
                    max_size=max_edits).map(build)


def chunked(data: bytes) -> st.SearchStrategy[list[bytes]]:
    """`data` cut into pieces at random points, as a socket may deliver it."""

    def cut(points: list[int]) -> list[bytes]:
        edges = sorted({p % (len(data) + 1) for p in points} | {0, len(data)})
        return [data[a:b] for a, b in zip(edges, edges[1:])]

    return st.lists(st.integers(0, 1 << 20), max_size=6).map(cut)


# --- JSON -------------------------------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class Raw:
    """A JSON token written verbatim (`1e400`, `NaN`, `-0`, `[[[[…]]]]`): what no encoder
    writes."""

    text: str

    def __repr__(self) -> str:  # short: hypothesis prints strategies and failing examples
        shown = self.text if len(self.text) <= 24 else f"{self.text[:10]}…({len(self.text)})"
        return f"Raw({shown!r})"


@dataclass(frozen=True)
class Pairs:
    """A JSON object as its member list, so that a member may occur twice."""

    members: tuple[tuple[str, Any], ...]


def json_tree(text: str | bytes) -> Any:
    """Parse valid JSON into the mutation model: objects become `Pairs`, in document order."""
    return json.loads(text, object_pairs_hook=lambda pairs: Pairs(tuple(pairs)))


def dump_tree(value: Any, *, pretty: bool = False) -> str:
    """Write the mutation model back as JSON text (duplicates and `Raw` tokens included)."""
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, Pairs):
        sep = ", " if pretty else ","
        return "{" + sep.join(f"{json.dumps(k, ensure_ascii=False)}:{dump_tree(v, pretty=pretty)}"
                              for k, v in value.members) + "}"
    if isinstance(value, list):
        return "[" + ",".join(dump_tree(v, pretty=pretty) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


def deep(depth: int, opener: str = "[", closer: str = "]", core: str = "0") -> Raw:
    return Raw(opener * depth + core + closer * depth)


JSON_EXTREMES: tuple[Any, ...] = (
    0, -1, 1, 255, 256, -0.0, 2**31, 2**32, 2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63) - 1,
    10**40, 1.0, 1.5, 0.1, True, False, None, "", "0", "x" * 300, "\u0000", "\U0001f600",
    [], Pairs(()), [0] * 40, [256], [-1], [True], [1.0],
    Raw("1e400"), Raw("-1e400"), Raw("1E2"), Raw("-0"), Raw("NaN"), Raw("Infinity"),
    Raw("1" * 5000), Raw('"\\ud800"'), Raw('"\\udc00x"'), Raw('"\\u0000"'),
    deep(600), deep(3000), deep(300, "{\"a\":", "}"), Raw("[" * 50),
)

json_extremes = st.integers(0, len(JSON_EXTREMES) - 1).map(
    lambda i: JSON_EXTREMES[i])  # not sampled_from: its repr would list them all in every event
json_scalars = st.one_of(
    json_extremes,
    st.integers(), st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20),
    st.booleans(), st.none(),
)
json_junk: st.SearchStrategy[Any] = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4)
    | st.lists(st.tuples(st.text(max_size=8), inner), max_size=4).map(
        lambda pairs: Pairs(tuple(pairs))),
    max_leaves=8,
)


@dataclass(frozen=True)
class JsonEdit:
    path: tuple[int, ...]
    kind: str
    junk: Any
    name: str


_JSON_EDIT_KINDS = ("replace", "delete", "duplicate", "duplicate_other", "rename", "add",
                    "wrap_list", "wrap_object", "empty")

json_edits = st.builds(
    JsonEdit,
    path=st.lists(st.integers(0, 1000), max_size=6).map(tuple),
    kind=st.sampled_from(_JSON_EDIT_KINDS),
    junk=json_junk,
    name=st.sampled_from(["", "x", "data", "version", "label", "nonce", "shard", "sets", "pcrs",
                          "pcr0", "format", "__proto__", "\u00e9"]) | st.text(max_size=6),
)


def _edit_at(value: Any, path: tuple[int, ...], edit: JsonEdit) -> Any:
    """Apply `edit` to the node reached by `path` (indices modulo the container size)."""
    containers = (Pairs, list)
    if path and isinstance(value, containers) and (
            value.members if isinstance(value, Pairs) else value):
        if isinstance(value, Pairs):
            members = list(value.members)
            i = path[0] % len(members)
            name, member = members[i]
            if len(path) > 1:
                members[i] = (name, _edit_at(member, path[1:], edit))
                return Pairs(tuple(members))
            if edit.kind == "delete":
                del members[i]
            elif edit.kind == "duplicate":
                members.insert(i + 1, (name, member))
            elif edit.kind == "duplicate_other":
                members.insert(i + 1, (name, edit.junk))
            elif edit.kind == "rename":
                members[i] = (edit.name, member)
            elif edit.kind == "add":
                members.insert(i, (edit.name, edit.junk))
            else:
                members[i] = (name, _replace(member, edit))
            return Pairs(tuple(members))
        items = list(value)
        i = path[0] % len(items)
        if len(path) > 1:
            items[i] = _edit_at(items[i], path[1:], edit)
        elif edit.kind == "delete":
            del items[i]
        elif edit.kind in ("duplicate", "duplicate_other"):
            items.insert(i, items[i] if edit.kind == "duplicate" else edit.junk)
        elif edit.kind == "add":
            items.insert(i, edit.junk)
        else:
            items[i] = _replace(items[i], edit)
        return items
    return _replace(value, edit)


def _replace(node: Any, edit: JsonEdit) -> Any:
    if edit.kind == "wrap_list":
        return [node]
    if edit.kind == "wrap_object":
        return Pairs(((edit.name, node),))
    if edit.kind == "empty":
        return Pairs(()) if isinstance(node, Pairs) else [] if isinstance(node, list) else ""
    return edit.junk


def json_mutated(text: str | bytes, *, max_edits: int = 3) -> st.SearchStrategy[str]:
    """Structure-aware mutations of a valid JSON document, written compact or pretty."""
    tree = json_tree(text)

    def build(args: tuple[list[JsonEdit], bool]) -> str:
        changes, pretty = args
        out = tree
        for change in changes:
            out = _edit_at(out, change.path, change)
        return dump_tree(out, pretty=pretty)

    return st.tuples(st.lists(json_edits, min_size=1, max_size=max_edits), st.booleans()).map(build)


def json_any(text: str | bytes) -> st.SearchStrategy[str | bytes]:
    """Everything a JSON reader should survive, around one valid document: the document
    mutated as JSON, as text and as bytes, plus arbitrary text and bytes."""
    raw = text.encode("utf-8") if isinstance(text, str) else text
    decoded = raw.decode("utf-8")
    return st.one_of(
        json_mutated(decoded),
        text_mutated(decoded, alphabet='{}[],:"0123456789-.eE'),
        mutated(raw),
        st.text(max_size=200),
        st.binary(max_size=200),
        st.sampled_from([dump_tree(x) for x in JSON_EXTREMES]),
    )


# --- CBOR -------------------------------------------------------------------------------------


def _head(major: int, argument: int) -> bytes:
    if argument < 24:
        return bytes([major << 5 | argument])
    for info, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if argument < 1 << (8 * size):
            return bytes([major << 5 | info]) + argument.to_bytes(size, "big")
    return bytes([major << 5 | 27]) + b"\xff" * 8


cbor_arguments = st.one_of(st.integers(0, 30), st.sampled_from(
    [23, 24, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**63, 2**64 - 1]))


def cbor_items(max_depth: int = 4) -> st.SearchStrategy[bytes]:
    """Raw CBOR items, mostly well-formed, with the edge cases strict decoders refuse: tags,
    indefinite lengths, lengths longer than the data, reserved additional information, simple
    values, half-precision floats, and (through `cbor_deep`) nesting past any sane limit."""
    leaf = st.one_of(
        st.builds(lambda a: _head(0, a), cbor_arguments),
        st.builds(lambda a: _head(1, a), cbor_arguments),
        st.binary(max_size=40).map(lambda b: _head(2, len(b)) + b),
        st.text(max_size=20).map(lambda s: _head(3, len(s.encode())) + s.encode()),
        st.binary(max_size=8).map(lambda b: _head(3, len(b)) + b),  # maybe invalid UTF-8
        st.sampled_from([b"\xf4", b"\xf5", b"\xf6", b"\xf7", b"\xf8\x10", b"\xf8\xff",
                         b"\xf9\x7c\x00", b"\xfa\x7f\xc0\x00\x00", b"\xfb" + b"\x00" * 8,
                         b"\xff", b"\x1c", b"\x5f\x41\x00\xff", b"\x7f\x61a\xff",
                         b"\x5f\x61a\xff", b"\x9f\xff", b"\xbf\xff", b"\xbf\x00\xff",
                         b"\xc2\x41\x01", b"\xd8\x1c\x00", b"\xd9\xd9\xf7\x00", b"\x1f",
                         b"\x9b" + b"\xff" * 8, b"\x5b" + b"\xff" * 8, b"\x7a\xff\xff\xff\xff"]),
    )

    def extend(inner: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
        return st.one_of(
            st.lists(inner, max_size=4).map(lambda xs: _head(4, len(xs)) + b"".join(xs)),
            st.lists(st.tuples(inner, inner), max_size=4).map(
                lambda kv: _head(5, len(kv)) + b"".join(k + v for k, v in kv)),
            st.lists(inner, max_size=4).map(lambda xs: b"\x9f" + b"".join(xs) + b"\xff"),
            st.tuples(st.integers(0, 2**64 - 1), inner).map(lambda t: _head(6, t[0]) + t[1]),
            st.tuples(cbor_arguments, st.lists(inner, max_size=3)).map(
                lambda t: _head(4, t[0]) + b"".join(t[1])),  # count disagrees with content
        )

    return st.recursive(leaf, extend, max_leaves=12)


def cbor_deep(depth: int) -> bytes:
    """An array nested `depth` deep (`81 81 … 00`): a recursion bomb of `depth` + 1 bytes."""
    return b"\x81" * depth + b"\x00"


# --- OpenPGP packets --------------------------------------------------------------------------


def _old_header(tag: int, body: bytes, form: int) -> bytes:
    tag &= 0x0F
    if form == 3:
        return bytes([0x80 | tag << 2 | 3]) + body
    size = (1, 2, 4)[form]
    length = len(body)
    if length >= 1 << (8 * size):
        size, form = 4, 2
    return bytes([0x80 | tag << 2 | form]) + length.to_bytes(size, "big") + body


def _partial_header(tag: int, body: bytes) -> bytes:
    out = bytearray([0xC0 | tag])
    rest = body
    while len(rest) > 512:  # partial chunks of 512 bytes, then the definite remainder
        out += bytes([0xE0 | 9]) + rest[:512]
        rest = rest[512:]
    return bytes(out + encode_length(len(rest)) + rest)


def encode_packet_as(tag: int, body: bytes, style: int) -> bytes:
    """A packet with one of several header encodings: 0 new-format, 1–3 old-format with
    1/2/4-byte lengths, 4 old-format indeterminate length, 5 new-format partial lengths."""
    tag = tag & 0x3F or 1
    if style == 0 or (tag > 15 and style in (1, 2, 3, 4)):
        return bytes([0xC0 | tag]) + encode_length(len(body)) + body
    if style in (1, 2, 3):
        return _old_header(tag, body, style - 1)
    if style == 4:
        return _old_header(tag, body, 3)
    return _partial_header(tag, body)


@dataclass(frozen=True)
class PacketEdit:
    index: int
    kind: str
    body_edits: tuple[Edit, ...]
    tag: int
    style: int
    extra: bytes


_PACKET_EDIT_KINDS = ("body", "body", "body", "drop", "duplicate", "swap", "retag", "insert",
                      "restyle", "truncate_body", "empty_body")

packet_edits = st.builds(
    PacketEdit,
    index=st.integers(0, 1000),
    kind=st.sampled_from(_PACKET_EDIT_KINDS),
    body_edits=st.lists(edits, min_size=1, max_size=3).map(tuple),
    tag=st.sampled_from([1, 2, 4, 5, 6, 7, 8, 10, 11, 12, 13, 14, 17, 18, 19, 20, 21, 60]),
    style=st.integers(0, 5),
    extra=st.binary(max_size=40),
)


def packet_mutated(data: bytes, *, max_edits: int = 3) -> st.SearchStrategy[bytes]:
    """Packet-aware mutations of a binary OpenPGP stream: each packet keeps valid framing
    (unless the edit is to its header style) while its body, order, tag or count changes, so
    the mutation reaches the key, signature and message parsers behind the framing."""
    original = [(p.tag, p.body) for p in parse_packets(data)]

    def build(args: tuple[list[PacketEdit], int]) -> bytes:
        changes, default_style = args
        stream = [(tag, body, default_style) for tag, body in original]
        for change in changes:
            if not stream:
                stream = [(change.tag, change.extra, change.style)]
                continue
            i = change.index % len(stream)
            tag, body, style = stream[i]
            if change.kind == "body":
                for edit in change.body_edits:
                    body = apply_edit(body, edit)
                stream[i] = (tag, body, style)
            elif change.kind == "drop":
                del stream[i]
            elif change.kind == "duplicate":
                stream.insert(i, stream[i])
            elif change.kind == "swap":
                j = (i + 1 + change.index) % len(stream)
                stream[i], stream[j] = stream[j], stream[i]
            elif change.kind == "retag":
                stream[i] = (change.tag, body, style)
            elif change.kind == "insert":
                stream.insert(i, (change.tag, change.extra, change.style))
            elif change.kind == "restyle":
                stream[i] = (tag, body, change.style)
            elif change.kind == "truncate_body":
                stream[i] = (tag, body[:change.index % (len(body) + 1)], style)
            else:
                stream[i] = (tag, b"", style)
        # An indeterminate length (style 4) swallows the rest: only the last packet keeps it.
        return b"".join(encode_packet_as(tag, body, style if style != 4 or k == len(stream) - 1
                                         else 0)
                        for k, (tag, body, style) in enumerate(stream))

    return st.tuples(st.lists(packet_edits, min_size=1, max_size=max_edits),
                     st.sampled_from([0, 0, 0, 1, 2, 5])).map(build)


def armored_packet_mutated(text: str | bytes, kind: str | None = None, *,
                           max_edits: int = 3) -> st.SearchStrategy[str]:
    """The armored blocks of `text`, each body packet-mutated and re-armored with a correct
    CRC, so the mutation is not simply refused by the armor checksum."""
    def rearmored(block_kind: str, data: bytes) -> st.SearchStrategy[str]:
        return packet_mutated(data, max_edits=max_edits).map(lambda d: armor(block_kind, d))

    blocks = dearmor_all(text)
    return st.tuples(*(rearmored(kind or b.kind, b.data) for b in blocks)).map("".join)


def openpgp_any(binary: bytes, armor_kind: str) -> st.SearchStrategy[bytes]:
    """Everything an OpenPGP reader should survive around one valid binary stream: packet
    and byte mutations, armored (with a right CRC) or not, and armor-text mutations."""
    armored_text = armor(armor_kind, binary)
    return st.one_of(
        packet_mutated(binary),
        packet_mutated(binary).map(lambda d: armor(armor_kind, d).encode()),
        mutated(binary),
        text_mutated(armored_text, alphabet="=+/-AZaz09").map(lambda s: s.encode("utf-8")),
        st.binary(max_size=300),
    )


def literal(body: bytes) -> bytes:
    """A literal data packet as this project writes one (format `b`, no name, date 0)."""
    return encode_packet(LITERAL, b"b\x00\x00\x00\x00\x00" + body)


def encrypt_raw(inner: bytes, recipient: PublicKey) -> bytes:
    """A wildcard PKESK + SEIPD around `inner` *as given*: unlike `message.encrypt`, no check
    that the inner packets read back, so a fuzzer can put anything behind a valid MDC (which
    is what anyone holding the recipient's public key can do)."""
    key = bytes(range(32))
    return (pkesk.build(recipient, pkesk.AES256, key, wildcard=True).packet()
            + encode_packet(SEIPD, seipd.encrypt(pkesk.AES256, key, inner)))
