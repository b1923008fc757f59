"""BIP-39 mnemonics and seeds with the standard English word list (formats.md §9.1).

The quorum key is derived from the master secret through its BIP-39 seed (not the raw secret),
exactly as Keyfork does, so this must be bit-for-bit standard BIP-39. The word list is package
data (the canonical list, SHA-256 2f5eed53…dbda) rather than a dependency, read once per process
on first use so that importing this module costs nothing on boot paths that never need it.

Error messages never quote a word of the mnemonic: a mnemonic is the secret itself, and the CLI
rule is that secrets never appear in messages. They name the word's position instead.

keyforkd derives the seed before it can say READY and locksmithd after the last shard, both on
the boot's critical path (issue 11): the hashes come from `cryptography`, which both have loaded
anyway (`hashlib` would load the system's libcrypto as well), and the word list through
`pkgutil.get_data` (`importlib.resources` costs several milliseconds to import).
"""

from __future__ import annotations

import pkgutil
import unicodedata
from functools import cache

from cryptography.hazmat.primitives import hashes

__all__ = [
    "Bip39Error",
    "entropy_to_mnemonic",
    "mnemonic_to_entropy",
    "mnemonic_to_seed",
    "wordlist",
]

_ENTROPY_LENGTHS = (16, 20, 24, 28, 32)
_WORD_COUNTS = (12, 15, 18, 21, 24)
_PBKDF2_ROUNDS = 2048


class Bip39Error(ValueError):
    """Entropy or a mnemonic that BIP-39 does not accept (message holds no secret material)."""


def _sha256(data: bytes) -> bytes:
    digest = hashes.Hash(hashes.SHA256())
    digest.update(data)
    return digest.finalize()


@cache
def wordlist() -> tuple[str, ...]:
    """The 2048 English words in index order."""
    data = pkgutil.get_data("locksmith", "data/bip39-english.txt")
    words = tuple(data.decode("utf-8").split()) if data is not None else ()
    if len(words) != 2048:  # a damaged install must not silently produce wrong mnemonics
        raise RuntimeError(f"BIP-39 word list has {len(words)} words, expected 2048")
    return words


@cache
def _word_index() -> dict[str, int]:
    return {word: index for index, word in enumerate(wordlist())}


def entropy_to_mnemonic(entropy: bytes) -> str:
    """Encode 16/20/24/28/32 bytes as 12..24 words (checksum = first len/4 bits of SHA-256)."""
    if len(entropy) not in _ENTROPY_LENGTHS:
        raise Bip39Error(
            f"entropy must be 16, 20, 24, 28 or 32 bytes, got {len(entropy)}"
        )
    checksum_bits = len(entropy) * 8 // 32
    checksum = _sha256(entropy)[0] >> (8 - checksum_bits)
    bits = (int.from_bytes(entropy, "big") << checksum_bits) | checksum
    count = (len(entropy) * 8 + checksum_bits) // 11
    words = wordlist()
    return " ".join(words[(bits >> (11 * (count - 1 - i))) & 0x7FF] for i in range(count))


def mnemonic_to_entropy(mnemonic: str) -> bytes:
    """Decode a mnemonic back to its entropy, verifying word list membership and checksum.

    Words may be separated by any whitespace; they must be the lowercase list words (after
    NFKD, which leaves the ASCII English list unchanged).
    """
    words = unicodedata.normalize("NFKD", mnemonic).split()
    if len(words) not in _WORD_COUNTS:
        raise Bip39Error(f"mnemonic must have 12, 15, 18, 21 or 24 words, got {len(words)}")
    index = _word_index()
    bits = 0
    for position, word in enumerate(words, start=1):
        value = index.get(word)
        if value is None:
            raise Bip39Error(f"mnemonic word {position} is not in the BIP-39 English word list")
        bits = (bits << 11) | value
    checksum_bits = len(words) * 11 // 33
    entropy_bits = len(words) * 11 - checksum_bits
    entropy = (bits >> checksum_bits).to_bytes(entropy_bits // 8, "big")
    expected = _sha256(entropy)[0] >> (8 - checksum_bits)
    if bits & ((1 << checksum_bits) - 1) != expected:
        raise Bip39Error("mnemonic checksum does not match (a word is wrong or out of order)")
    return entropy


def mnemonic_to_seed(mnemonic: str, passphrase: str = "") -> bytes:
    """The 64-byte BIP-39 seed: PBKDF2-HMAC-SHA512(NFKD(mnemonic), "mnemonic"+NFKD(passphrase)).

    As BIP-39 specifies, the sentence is used as given (no checksum check, no whitespace
    clean-up): callers derive it from entropy with `entropy_to_mnemonic`, whose output is
    already single-space joined.
    """
    password = unicodedata.normalize("NFKD", mnemonic).encode("utf-8")
    salt = ("mnemonic" + unicodedata.normalize("NFKD", passphrase)).encode("utf-8")
    from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

    return PBKDF2HMAC(hashes.SHA512(), 64, salt, _PBKDF2_ROUNDS).derive(password)
