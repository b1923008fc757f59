"""OpenPGP for locksmith: what Caution's formats need, exactly.

Layers, bottom up:
  * `armor`, `packets`, `keys`: the wire vocabulary (ASCII armor, packet framing, v4 key
    packets and their `cryptography` key objects). Pure, no PGPy.
  * message-level crypto (PKESK + SEIPD v1) and the deterministic quorum key, also without PGPy,
    so the boot-path `locksmith-oneshot` can decrypt without importing it.
  * the certificate layer (`certs`, `validity`, `secretkeys`, `holder_signature`, `normalise`):
    holders' certificates and keys, and the validity checks PGPy does not make itself
    (self-signatures, back-signatures, expiry, revocation, hash and critical-subpacket policy).
    PGPy unlocks passphrase-protected secret keys (imported lazily, only then) and serves as an
    independent oracle in tests; see `certs` for why parsing and checking are our own.
"""
