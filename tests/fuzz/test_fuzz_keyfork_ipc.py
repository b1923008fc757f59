"""keyforkd's IPC (locksmith/core/keyfork/ipc.py) under hostile payloads.

Allowed to escape:
* `parse_request`, `parse_path`: `IpcError`;
* `answer` (the server's whole reply to one frame): nothing; it always returns a `Reply`, and
  a refusal is an error map whose text is one of the table's;
* `decode_response` (the client): `MalformedResponse`, or `KeyforkdRefused` for an error map.

tests/core/keyfork/test_ipc.py already answers short random payloads and round-trips valid
requests; this adds hand-built CBOR maps with the wrong types, extra, missing and duplicate
keys, lengths longer than the data, and path texts at every limit of the grammar (depth,
index size, leading zeros, unhardened components), where keyforkd then derives.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from locksmith.core.keyfork import slip10
from locksmith.core.keyfork.ipc import (
    ALGORITHM, MAX_PAYLOAD, IpcError, KeyforkdRefused, MalformedResponse, _encode_map, answer,
    decode_response, encode_error, encode_request, encode_success, parse_path, parse_request,
)
from tests.fuzz.strategies import bounded, cbor_items, fuzz, mutated, only, outcome

MASTER = slip10.master_key(bytes(range(64)))
SCALARS = st.one_of(st.integers(0, 2**64 - 1), st.binary(max_size=40), st.text(max_size=40))
components = st.tuples(
    st.sampled_from(["0", "1", "7366512", "2147483647", "2147483648", "4294967295",
                     "99999999999", "01", "00", "", "1" * 50]) | st.integers(0, 2**33).map(str),
    st.sampled_from(["'", "'", "", "h", "''"]),
).map("".join)
paths = st.one_of(
    st.lists(st.integers(0, 2**31 - 1), min_size=2, max_size=8).map(
        lambda xs: "m/" + "/".join(f"{x}'" for x in xs)),
    st.lists(components, max_size=8).map(lambda cs: "/".join(["m", *cs])),
    st.integers(0, 300).map(lambda n: "m" + "/1'" * n),
    st.sampled_from(["m", "m/", "M/1'/2'", "m//1'", "m/1'/2'/", " m/1'/2'", "m/1'/2'\n",
                     "m/７'/1'", "m/7366512'/0'", "m/7366512'/0'/1'"]),
    st.text(max_size=30),
)


@fuzz(deadline_ms=500, scale=3)
@given(paths)
def test_fuzz_path_texts_raise_only_ipc_errors(text: str) -> None:
    indices = only((IpcError,), parse_path, text)
    outcome("path accepted" if indices is not None else "path refused")
    if indices is not None:
        assert 2 <= len(indices) <= 255 and all(i >= slip10.HARDENED for i in indices)


def _check_reply(payload: bytes, quorum_available: bool = True) -> None:
    reply = answer(payload, MASTER, quorum_available=quorum_available)
    assert isinstance(reply.payload, bytes) and len(reply.payload) <= MAX_PAYLOAD
    assert "\n" not in reply.log and "\r" not in reply.log
    # The reply is one the client can read: a node, or a refusal with a text.
    try:
        node = decode_response(reply.payload)
    except KeyforkdRefused:
        assert reply.close
        outcome("refused")
    else:
        assert not reply.close and len(node.private_key) == 32
        outcome("derived")


request_maps = st.dictionaries(
    st.sampled_from(["path", "algorithm", "error", "x", ""]),
    st.one_of(paths, st.sampled_from([ALGORITHM, "ED25519", "secp256k1", ""]), SCALARS),
    max_size=4,
)


@fuzz(deadline_ms=1000, scale=3)
@given(st.one_of(
    request_maps.map(_encode_map),
    st.tuples(paths, st.sampled_from([ALGORITHM, "x"])).map(lambda pa: encode_request(*pa)),
    mutated(encode_request("m/7366512'/0'")),
    cbor_items(),
    st.binary(max_size=100),
), st.booleans())
def test_fuzz_any_request_payload_gets_a_reply_never_an_exception(payload: bytes,
                                                                  quorum: bool) -> None:
    only((IpcError,), parse_request, payload)
    _check_reply(payload, quorum)


def test_fuzz_largest_requests_are_answered_in_bounded_time() -> None:
    """A 64 KiB path of a valid shape: 21,000 components, refused (too deep) without deriving,
    in memory linear in the payload (a few Python objects per component, about 5 MiB); and
    the deepest accepted path, derived in well under the deadline."""
    long_path = "m" + "/1'" * ((MAX_PAYLOAD - 32) // 3)
    bounded(_check_reply, encode_request(long_path), seconds=1.0, peak_bytes=256 * MAX_PAYLOAD)
    bounded(_check_reply, encode_request("m" + "/2147483647'" * 255), seconds=1.0)


response_maps = st.dictionaries(
    st.sampled_from(["private_key", "chain_code", "depth", "error", "x"]),
    st.one_of(SCALARS, st.binary(min_size=32, max_size=32), st.integers(0, 300)),
    max_size=5,
)


@fuzz(deadline_ms=500, scale=3)
@given(st.one_of(
    response_maps.map(_encode_map),
    mutated(encode_success(MASTER)),
    mutated(encode_error("derivation path is too deep")),
    cbor_items(),
    st.binary(max_size=100),
))
def test_fuzz_any_response_payload_raises_only_client_errors(payload: bytes) -> None:
    node = only((MalformedResponse, KeyforkdRefused), decode_response, payload)
    if node is not None:
        assert len(node.private_key) == 32 and len(node.chain_code) == 32 and node.depth <= 255
