"""SLIP-10 Ed25519 against formats.md §9.5 and SLIP-0010 test vectors 1 and 2."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given
from hypothesis import strategies as st

from locksmith.core.keyfork.bip39 import entropy_to_mnemonic, mnemonic_to_seed
from locksmith.core.keyfork.slip10 import (
    HARDENED,
    ExtendedKey,
    Slip10Error,
    derive_child,
    derive_path,
    format_path,
    master_key,
    parse_path,
)

VECTORS_FILE = Path(__file__).resolve().parents[2] / "vectors" / "slip10_ed25519.json"
SLIP10: dict[str, Any] = json.loads(VECTORS_FILE.read_text("utf-8"))

ACCOUNT_PATH = "m/7366512'/0'"
SPEC_X_PRIV = "7eb0d92a15f1898a47f5190ee3dd5d4a214031eb7eb94f86cc42d969b9c3fc42"
SPEC_X_CHAIN = "39fa90d84212c4f2f3bb6af7468b672dca054beba631c51320321a0392a6920b"
SPEC_COMPONENT_PRIV = [
    "292d0932efe712653f5bd6b6a9098a41e9e646a090aca23ba5f1e30f43c99288",
    "bf0088bde33c8bec5982b59f4f8b759d78f840ac45cdac24d3b8d63a7dc609c5",
    "003ec2602b92419dc360f26474d59e3c8f9652bd7ab86bcbb5bbc0f17035893d",
    "e0ac1c290f797d0080e59089856c6091bddf518c6134ab9bb791dfb811e503da",
]
SPEC_ED25519_PUB = {  # components 0', 1', 3' are Ed25519 seeds (2' is an X25519 scalar)
    0: "769329c0cbae1f52e6757382d97787b54676d7e5cf9cb8249e4ae0fefa618949",
    1: "21bb3a144741b59b7aaee3435aa60aa7720ea84f71a018ad14f1672caa2def88",
    3: "75015e05f31be6054b48aaf2bb4871233d75283c5a576b3078d3181d28fe3855",
}


def ed25519_public(private_key: bytes) -> str:
    key = Ed25519PrivateKey.from_private_bytes(private_key).public_key()
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw).hex()


def spec_seed() -> bytes:
    return mnemonic_to_seed(entropy_to_mnemonic(bytes([0x07]) * 32))


def test_spec_account_node_from_the_bip39_seed_of_sevens() -> None:
    node = derive_path(spec_seed(), ACCOUNT_PATH)
    assert node.private_key.hex() == SPEC_X_PRIV
    assert node.chain_code.hex() == SPEC_X_CHAIN
    assert node.depth == 2


@pytest.mark.parametrize("n", range(4))
def test_spec_component_keys_are_hardened_children_of_the_account_node(n: int) -> None:
    account = derive_path(spec_seed(), ACCOUNT_PATH)
    child = derive_child(account, n | HARDENED)
    assert child.private_key.hex() == SPEC_COMPONENT_PRIV[n]
    assert child.depth == 3
    assert derive_path(spec_seed(), f"{ACCOUNT_PATH}/{n}'") == child
    if n in SPEC_ED25519_PUB:
        assert ed25519_public(child.private_key) == SPEC_ED25519_PUB[n]


def test_spec_second_vector_raw_seed_of_0x56() -> None:
    node = derive_path(bytes([0x56]) * 32, ACCOUNT_PATH)
    assert node.private_key.hex() == "8b4cc92653ab978723978139ade620ee3b6dec623b0a37739859a940aeb6b9d0"
    assert node.chain_code.hex() == "ae994c2521540ead8fb5aaf6dd4d41c35f0dd322d22042483db4fc0914340ce4"


def test_raw_entropy_instead_of_the_bip39_seed_gives_a_different_account_node() -> None:
    assert derive_path(bytes([0x07]) * 32, ACCOUNT_PATH).private_key.hex() != SPEC_X_PRIV


def test_vector_file_holds_slip10_vectors_1_and_2() -> None:
    assert [v["name"] for v in SLIP10["vectors"]] == [
        "SLIP-0010 test vector 1 for ed25519",
        "SLIP-0010 test vector 2 for ed25519",
    ]


CHAIN_STEPS = [
    pytest.param(v["seed"], step, id=f"vector{i}:{step['path']}")
    for i, v in enumerate(SLIP10["vectors"], start=1)
    for step in v["chain"]
]


@pytest.mark.parametrize(("seed_hex", "step"), CHAIN_STEPS)
def test_slip10_official_vector(seed_hex: str, step: dict[str, Any]) -> None:
    node = derive_path(bytes.fromhex(seed_hex), step["path"])
    assert node.private_key.hex() == step["private_key"]
    assert node.chain_code.hex() == step["chain_code"]
    assert node.depth == step["depth"]
    assert "00" + ed25519_public(node.private_key) == step["public_key"]


def test_step_by_step_derivation_matches_path_derivation() -> None:
    vector = SLIP10["vectors"][1]
    node = master_key(bytes.fromhex(vector["seed"]))
    for step in vector["chain"][1:]:
        node = derive_child(node, parse_path(step["path"])[-1])
        assert node == derive_path(bytes.fromhex(vector["seed"]), step["path"])


def test_key_material_is_not_shown_in_repr() -> None:
    node = derive_path(bytes([0x56]) * 32, ACCOUNT_PATH)
    assert node.private_key.hex() not in repr(node)
    assert repr(node) == "ExtendedKey(depth=2)"


def test_extended_key_is_frozen() -> None:
    node = master_key(bytes(32))
    with pytest.raises(AttributeError):  # a NamedTuple (a dataclass raised a subclass of it)
        node.depth = 5  # type: ignore[misc]


def test_account_path_parses_to_the_pgp_root() -> None:
    assert parse_path(ACCOUNT_PATH) == (0x706770 | HARDENED, HARDENED)
    assert parse_path("m") == ()
    assert format_path(()) == "m"


@pytest.mark.parametrize("path", ["m/0", "m/0'/1", "m/7366512'/0"])
def test_non_hardened_path_component_is_rejected(path: str) -> None:
    with pytest.raises(Slip10Error, match="non-hardened"):
        parse_path(path)


@pytest.mark.parametrize(
    "path",
    [
        "", "M/0'", "0'", "/0'", "m/", "m//0'", "m/0'/", "m/0''", "m/-1'", "m/+1'", "m/01'",
        "m/ 0'", "m/0' ", "m/0h", "m/0H", "m/x'", "m/1_0'", "m/\u0661'", "m/2147483648'",
        "m/99999999999'",
    ],
)
def test_malformed_path_is_rejected(path: str) -> None:
    with pytest.raises(Slip10Error, match="malformed derivation path"):
        parse_path(path)


def test_largest_hardened_index_is_accepted() -> None:
    assert parse_path("m/2147483647'") == (0xFFFF_FFFF,)


@pytest.mark.parametrize("index", [0, 1, HARDENED - 1])
def test_deriving_a_non_hardened_child_is_rejected(index: int) -> None:
    with pytest.raises(Slip10Error, match="non-hardened index"):
        derive_child(master_key(bytes(32)), index)


@pytest.mark.parametrize("index", [-1, 2**32])
def test_child_index_outside_32_bits_is_rejected(index: int) -> None:
    with pytest.raises(Slip10Error, match="out of range"):
        derive_child(master_key(bytes(32)), index)


@pytest.mark.parametrize("indices", [[0], [HARDENED, 5], [2**32]])
def test_formatting_a_non_hardened_index_is_rejected(indices: list[int]) -> None:
    with pytest.raises(Slip10Error):
        format_path(indices)


@pytest.mark.parametrize("length", [0, 15, 65])
def test_seed_length_outside_16_to_64_bytes_is_rejected(length: int) -> None:
    with pytest.raises(Slip10Error, match=f"got {length}"):
        master_key(bytes(length))


def test_derivation_past_depth_255_is_rejected() -> None:
    node = ExtendedKey(private_key=bytes(32), chain_code=bytes(32), depth=255)
    with pytest.raises(Slip10Error, match="deeper"):
        derive_child(node, HARDENED)


@given(st.lists(st.integers(HARDENED, 0xFFFF_FFFF), max_size=12))
def test_any_hardened_index_list_round_trips_through_path_text(indices: list[int]) -> None:
    text = format_path(indices)
    assert parse_path(text) == tuple(indices)
    assert format_path(parse_path(text)) == text
