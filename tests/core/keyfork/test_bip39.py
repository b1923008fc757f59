"""BIP-39 against formats.md §9.5 and the official English vectors (passphrase TREZOR)."""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from locksmith.core.keyfork import bip39
from locksmith.core.keyfork.bip39 import (
    Bip39Error,
    entropy_to_mnemonic,
    mnemonic_to_entropy,
    mnemonic_to_seed,
    wordlist,
)

VECTORS_FILE = Path(__file__).resolve().parents[2] / "vectors" / "bip39_english_trezor.json"
TREZOR: dict[str, Any] = json.loads(VECTORS_FILE.read_text("utf-8"))

SPEC_MNEMONIC = (
    "alpha deal scrub asthma idea logic bright thought alpha deal scrub asthma "
    "idea logic bright thought alpha deal scrub asthma idea logic bright truly"
)
SPEC_SEED = bytes.fromhex(
    "ebc263234e1cabe47b4fbdaddc354ea21e11d4832ee301a45a3f77a35057a4f2"
    "b8469f6d848109c3cd7822cb93e4b59fa2739e589a49e13b6a2e13d5f41060dd"
)
CANONICAL_WORDLIST_SHA256 = "2f5eed53a4727b4bf8880d8f3f199efc90e58503646d9ff8eff3a2ed3b24dbda"


def test_packaged_wordlist_is_the_canonical_english_list() -> None:
    raw = (resources.files("locksmith") / "data" / "bip39-english.txt").read_bytes()
    assert hashlib.sha256(raw).hexdigest() == CANONICAL_WORDLIST_SHA256
    words = wordlist()
    assert len(words) == 2048 and len(set(words)) == 2048
    assert (words[0], words[-1]) == ("abandon", "zoo")


def test_wordlist_is_loaded_once_per_process() -> None:
    assert wordlist() is wordlist()
    assert bip39.wordlist.cache_info().misses <= 1


def test_spec_entropy_sevens_gives_the_spec_mnemonic_and_seed() -> None:
    entropy = bytes([0x07]) * 32
    assert entropy_to_mnemonic(entropy) == SPEC_MNEMONIC
    assert mnemonic_to_entropy(SPEC_MNEMONIC) == entropy
    assert mnemonic_to_seed(SPEC_MNEMONIC) == SPEC_SEED


def test_vector_file_holds_all_24_official_english_vectors() -> None:
    assert TREZOR["passphrase"] == "TREZOR"
    assert len(TREZOR["vectors"]) == 24


@pytest.mark.parametrize("vector", TREZOR["vectors"], ids=lambda v: v["entropy"][:8])
def test_official_vector_entropy_mnemonic_and_seed(vector: dict[str, str]) -> None:
    entropy = bytes.fromhex(vector["entropy"])
    assert entropy_to_mnemonic(entropy) == vector["mnemonic"]
    assert mnemonic_to_entropy(vector["mnemonic"]) == entropy
    assert mnemonic_to_seed(vector["mnemonic"], "TREZOR") == bytes.fromhex(vector["seed"])


def test_seed_uses_nfkd_for_mnemonic_and_passphrase() -> None:
    composed, decomposed = "caf\u00e9", "cafe\u0301"
    assert mnemonic_to_seed(SPEC_MNEMONIC, composed) == mnemonic_to_seed(SPEC_MNEMONIC, decomposed)
    assert mnemonic_to_seed(SPEC_MNEMONIC, composed) != mnemonic_to_seed(SPEC_MNEMONIC)


def test_seed_is_taken_from_the_sentence_as_given() -> None:
    # BIP-39 hashes the text itself; no checksum check and no whitespace clean-up.
    assert mnemonic_to_seed("not a valid mnemonic") != mnemonic_to_seed("not a  valid mnemonic")


def test_decoding_accepts_any_whitespace_between_words() -> None:
    spaced = "  " + SPEC_MNEMONIC.replace(" ", "\n\t ", 3) + "\n"
    assert mnemonic_to_entropy(spaced) == bytes([0x07]) * 32


@pytest.mark.parametrize("length", [0, 15, 17, 31, 33, 64])
def test_entropy_of_non_standard_length_is_rejected(length: int) -> None:
    with pytest.raises(Bip39Error, match=f"got {length}"):
        entropy_to_mnemonic(bytes(length))


@pytest.mark.parametrize("count", [0, 1, 11, 13, 23, 25])
def test_mnemonic_with_wrong_word_count_is_rejected(count: int) -> None:
    with pytest.raises(Bip39Error, match=f"got {count}"):
        mnemonic_to_entropy(" ".join(["abandon"] * count))


def test_unknown_word_is_rejected_by_position_without_quoting_it() -> None:
    words = SPEC_MNEMONIC.split()
    words[4] = "secretword"
    with pytest.raises(Bip39Error) as info:
        mnemonic_to_entropy(" ".join(words))
    assert str(info.value) == "mnemonic word 5 is not in the BIP-39 English word list"


def test_uppercase_word_is_not_a_list_word() -> None:
    with pytest.raises(Bip39Error, match="word 1 is not"):
        mnemonic_to_entropy(SPEC_MNEMONIC.replace("alpha", "ALPHA", 1))


def test_bad_checksum_is_rejected() -> None:
    words = SPEC_MNEMONIC.split()
    words[-1] = "abandon"
    with pytest.raises(Bip39Error, match="checksum does not match"):
        mnemonic_to_entropy(" ".join(words))


def test_swapped_words_fail_the_checksum() -> None:
    words = ["abandon"] * 11 + ["about"]
    words[0], words[-1] = words[-1], words[0]
    with pytest.raises(Bip39Error, match="checksum"):
        mnemonic_to_entropy(" ".join(words))


@given(st.sampled_from([16, 20, 24, 28, 32]).flatmap(lambda n: st.binary(min_size=n, max_size=n)))
def test_any_standard_entropy_round_trips_through_its_mnemonic(entropy: bytes) -> None:
    mnemonic = entropy_to_mnemonic(entropy)
    assert len(mnemonic.split()) == len(entropy) * 3 // 4
    assert mnemonic_to_entropy(mnemonic) == entropy
