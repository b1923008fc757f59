"""Keyfork compatibility: deriving keys from the master secret and serving them.

`bip39` (mnemonics and seeds) and `slip10` (hardened Ed25519 derivation) reproduce Keyfork's
derivation bit for bit (formats.md §9); `ipc` is keyforkd's wire format and socket-path
resolution (enclave.md §3, §4.3). One concept: what keyforkd does with the secret once it holds it.
"""
