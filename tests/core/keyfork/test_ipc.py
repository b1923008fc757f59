"""keyforkd's CBOR IPC (enclave.md §4.3) and the socket-path resolution order (enclave.md §3)."""

from __future__ import annotations

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from locksmith.core.keyfork import bip39, slip10
from locksmith.core.keyfork import ipc as keyfork_ipc
from locksmith.core.keyfork.ipc import (
    IpcError, KeyforkdRefused, MalformedResponse, answer, decode_response, encode_request,
    parse_path, parse_request, resolve_socket_location, resolve_socket_path,
)

SPEC_REQUEST = bytes.fromhex(
    "a2 64 70617468 6d 6d2f37333636353132272f3027 69 616c676f726974686d 67 65643235353139"
    .replace(" ", ""))
X_PRIV = "7eb0d92a15f1898a47f5190ee3dd5d4a214031eb7eb94f86cc42d969b9c3fc42"
X_CHAIN = "39fa90d84212c4f2f3bb6af7468b672dca054beba631c51320321a0392a6920b"


@pytest.fixture(scope="module")
def master() -> slip10.ExtendedKey:
    seed = bip39.mnemonic_to_seed(bip39.entropy_to_mnemonic(b"\x07" * 32))
    return slip10.master_key(seed)


def _error(reply: keyfork_ipc.Reply) -> str:
    assert reply.close
    decoded = cbor2.loads(reply.payload)
    assert set(decoded) == {"error"}
    return str(decoded["error"])


def test_request_encoding_matches_the_spec_example_and_cbor2_canonical() -> None:
    assert encode_request("m/7366512'/0'") == SPEC_REQUEST
    assert cbor2.dumps({"path": "m/7366512'/0'", "algorithm": "ed25519"}, canonical=True) \
        == SPEC_REQUEST


def test_either_key_order_is_accepted() -> None:
    swapped = cbor2.dumps({"algorithm": "ed25519", "path": "m/7366512'/0'"})
    assert swapped != SPEC_REQUEST
    assert parse_request(swapped) == parse_request(SPEC_REQUEST) \
        == keyfork_ipc.Request("m/7366512'/0'", "ed25519")


def test_secret_07_gives_the_formats_9_5_account_node(master: slip10.ExtendedKey) -> None:
    reply = answer(SPEC_REQUEST, master)
    assert not reply.close
    decoded = cbor2.loads(reply.payload)
    assert decoded == {"private_key": bytes.fromhex(X_PRIV), "chain_code": bytes.fromhex(X_CHAIN),
                       "depth": 2}
    assert reply.payload == cbor2.dumps(decoded, canonical=True)
    node = decode_response(reply.payload)
    assert (node.private_key.hex(), node.chain_code.hex(), node.depth) == (X_PRIV, X_CHAIN, 2)
    assert reply.log == "derivation m/7366512'/0' (OpenPGP quorum key)"
    assert X_PRIV not in reply.log and X_CHAIN not in reply.log


def test_deeper_paths_derive_like_slip10(master: slip10.ExtendedKey) -> None:
    seed = bip39.mnemonic_to_seed(bip39.entropy_to_mnemonic(b"\x07" * 32))
    node = decode_response(answer(encode_request("m/7366512'/0'/2'"), master).payload)
    assert node == slip10.derive_path(seed, "m/7366512'/0'/2'")
    assert node.depth == 3


@pytest.mark.parametrize("payload", [
    b"",
    b"\xa2",  # truncated
    cbor2.dumps(["m/1'/2'", "ed25519"]),
    cbor2.dumps({"path": "m/1'/2'"}),
    cbor2.dumps({"path": "m/1'/2'", "algorithm": "ed25519", "extra": "x"}),
    cbor2.dumps({"path": b"m/1'/2'", "algorithm": "ed25519"}),
    cbor2.dumps({"path": "m/1'/2'", "algorithm": 1}),
    cbor2.dumps({1: "m/1'/2'", "algorithm": "ed25519"}),
    SPEC_REQUEST + b"\x00",  # trailing bytes
    b"\xbf" + SPEC_REQUEST[1:] + b"\xff",  # indefinite-length map
    cbor2.dumps(cbor2.CBORTag(55799, {"path": "m/1'/2'", "algorithm": "ed25519"})),
    # a duplicate key: three entries whose dict would be the two expected keys
    bytes([0xa3]) + cbor2.dumps("path")[0:] + cbor2.dumps("m/1'/2'")
    + cbor2.dumps("path") + cbor2.dumps("m/1'/2'")
    + cbor2.dumps("algorithm") + cbor2.dumps("ed25519"),
    bytes([0xa2, 0x64]) + b"pa\xfft" + cbor2.dumps("m") + cbor2.dumps("algorithm")
    + cbor2.dumps("ed25519"),  # key not UTF-8
])
def test_malformed_requests(payload: bytes, master: slip10.ExtendedKey) -> None:
    with pytest.raises(IpcError, match="^malformed request$"):
        parse_request(payload)
    reply = answer(payload, master)
    assert _error(reply) == "malformed request"


def test_unsupported_algorithm_is_checked_before_the_path(master: slip10.ExtendedKey) -> None:
    reply = answer(encode_request("m", "secp256k1"), master)
    assert _error(reply) == "unsupported algorithm: secp256k1"


@pytest.mark.parametrize(("path", "error"), [
    ("m", "derivation path needs at least 2 components, got 0"),
    ("m/1'", "derivation path needs at least 2 components, got 1"),
    ("m/1/2", "ed25519 derivation requires hardened indices"),
    ("m/1'/2", "ed25519 derivation requires hardened indices"),
    ("m/1", "ed25519 derivation requires hardened indices"),
    ("m/" + "/".join(["1'"] * 256), "derivation path is too deep"),
    ("m/" + "/".join(["1"] * 256), "ed25519 derivation requires hardened indices"),
    ("", "invalid derivation path"),
    ("M/1'/2'", "invalid derivation path"),
    ("m/", "invalid derivation path"),
    ("m/1'/2'/", "invalid derivation path"),
    ("m/1'/2'\n", "invalid derivation path"),
    ("m/1h/2'", "invalid derivation path"),
    ("m/1''/2'", "invalid derivation path"),
    ("m/01'/2'", "invalid derivation path"),
    ("m/00'/2'", "invalid derivation path"),
    ("m/2147483648'/2'", "invalid derivation path"),
    ("m/99999999999'/2'", "invalid derivation path"),
    ("m/" + "9" * 5000 + "'/1'", "invalid derivation path"),
    ("m/\u0661'/2'", "invalid derivation path"),  # ARABIC-INDIC DIGIT ONE is not ASCII
    (" m/1'/2'", "invalid derivation path"),
    ("m/01/2", "invalid derivation path"),  # syntax is checked before hardening
])
def test_path_errors_in_the_spec_order(path: str, error: str, master: slip10.ExtendedKey) -> None:
    with pytest.raises(IpcError) as raised:
        parse_path(path)
    assert str(raised.value) == error
    assert _error(answer(encode_request(path), master)) == error


def test_path_limits_that_are_accepted() -> None:
    assert parse_path("m/0'/2147483647'") == (slip10.HARDENED, 0xFFFF_FFFF)
    assert len(parse_path("m/" + "/".join(["1'"] * 255))) == 255


def test_error_log_lines_escape_control_characters(master: slip10.ExtendedKey) -> None:
    reply = answer(encode_request("m/1'\nFAKE LOG LINE"), master)
    assert "\n" not in reply.log
    assert reply.log.startswith("refused request for m/1'\\nFAKE")


@given(st.text(max_size=40), st.text(max_size=20))
def test_request_round_trip(path: str, algorithm: str) -> None:
    encoded = encode_request(path, algorithm)
    assert encoded == cbor2.dumps({"path": path, "algorithm": algorithm}, canonical=True)
    assert parse_request(encoded) == keyfork_ipc.Request(path, algorithm)


@given(st.binary(max_size=64))
def test_arbitrary_payloads_never_raise(payload: bytes) -> None:
    seed = bytes(64)
    reply = answer(payload, slip10.master_key(seed))
    assert isinstance(reply.payload, bytes)


@given(st.binary(min_size=32, max_size=32), st.binary(min_size=32, max_size=32),
       st.integers(0, 255))
def test_success_response_round_trip(key: bytes, chain: bytes, depth: int) -> None:
    node = slip10.ExtendedKey(private_key=key, chain_code=chain, depth=depth)
    encoded = keyfork_ipc.encode_success(node)
    assert encoded == cbor2.dumps({"private_key": key, "chain_code": chain, "depth": depth},
                                  canonical=True)
    assert decode_response(encoded) == node


def test_error_response_is_raised_with_its_text() -> None:
    with pytest.raises(KeyforkdRefused, match="^derivation path is too deep$"):
        decode_response(keyfork_ipc.encode_error("derivation path is too deep"))


@pytest.mark.parametrize("payload", [
    b"",
    cbor2.dumps({"private_key": b"\x01" * 31, "chain_code": b"\x02" * 32, "depth": 2}),
    cbor2.dumps({"private_key": b"\x01" * 32, "chain_code": b"\x02" * 33, "depth": 2}),
    cbor2.dumps({"private_key": b"\x01" * 32, "chain_code": b"\x02" * 32}),
    cbor2.dumps({"private_key": b"\x01" * 32, "chain_code": b"\x02" * 32, "depth": -1}),
    cbor2.dumps({"private_key": "x" * 32, "chain_code": b"\x02" * 32, "depth": 2}),
    cbor2.dumps({"private_key": b"\x01" * 32, "chain_code": b"\x02" * 32, "depth": 2,
                 "error": "x"}),
    cbor2.dumps({"error": 5}),
    cbor2.dumps([1, 2]),
])
def test_malformed_responses(payload: bytes) -> None:
    with pytest.raises(MalformedResponse):
        decode_response(payload)


# --- socket path -----------------------------------------------------------------------------


@pytest.mark.parametrize(("option", "env", "expected", "runtime_dir"), [
    ("/opt/k.sock", {"KEYFORKD_SOCKET_PATH": "/env.sock", "XDG_RUNTIME_DIR": "/run/user/0"},
     "/opt/k.sock", None),
    (None, {"KEYFORKD_SOCKET_PATH": "/env.sock", "XDG_RUNTIME_DIR": "/run/user/0"},
     "/env.sock", None),
    (None, {"KEYFORKD_SOCKET_PATH": "", "XDG_RUNTIME_DIR": "/run/user/0"},
     "/run/user/0/keyforkd/keyforkd.sock", "/run/user/0/keyforkd"),
    (None, {"XDG_RUNTIME_DIR": ""}, "/keyforkd.sock", None),
    (None, {}, "/keyforkd.sock", None),
    ("", {}, "/keyforkd.sock", None),
    # the XDG default given explicitly (boot script export, locksmithd's --socket) is still it
    ("/run/user/0/keyforkd/keyforkd.sock", {"XDG_RUNTIME_DIR": "/run/user/0"},
     "/run/user/0/keyforkd/keyforkd.sock", "/run/user/0/keyforkd"),
    (None, {"KEYFORKD_SOCKET_PATH": "/run/user/0/keyforkd/keyforkd.sock",
            "XDG_RUNTIME_DIR": "/run/user/0"},
     "/run/user/0/keyforkd/keyforkd.sock", "/run/user/0/keyforkd"),
    ("/keyforkd.sock", {}, "/keyforkd.sock", None),
])
def test_socket_resolution_order(option: str | None, env: dict[str, str], expected: str,
                                 runtime_dir: str | None) -> None:
    location = resolve_socket_location(option, env)
    assert (location.path, location.runtime_dir) == (expected, runtime_dir)
    assert resolve_socket_path(option, env) == expected


def test_a_refused_quorum_path_is_an_error_reply_and_other_paths_are_served() -> None:
    from locksmith.core.keyfork import slip10
    master = slip10.ExtendedKey(private_key=b"\x01" * 32, chain_code=b"\x02" * 32)
    for path in ("m/7366512'/0'", "m/7366512'/0'/0'/5'"):
        reply = keyfork_ipc.answer(keyfork_ipc.encode_request(path), master,
                                   quorum_available=False)
        assert reply.close and not reply.quorum
        assert reply.payload == keyfork_ipc.encode_error(keyfork_ipc.QUORUM_ALREADY_SERVED)
    served = keyfork_ipc.answer(keyfork_ipc.encode_request("m/7366512'/0'"), master)
    assert served.quorum and not served.close
    sibling = keyfork_ipc.answer(keyfork_ipc.encode_request("m/7366512'/1'"), master,
                                 quorum_available=False)
    assert not sibling.quorum and not sibling.close
