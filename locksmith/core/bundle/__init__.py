"""Quorum bundles and what is read out of them (formats.md §2-§8, keymaker.md §8.2).

`model` holds the three bundle generations as strict typed values (with `keys`, the keyring
entries), `checks` adds the OpenPGP-level rules, `shardfile` reads Keyfork's shard format,
`own_share` checks a holder's decrypted share against its bundle, and `keymaker_proof` verifies
a V1 bundle's Keymaker proof: one concept, the bundle and the evidence it carries.
"""
