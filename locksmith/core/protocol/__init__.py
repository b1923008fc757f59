"""The shard-submission protocol on TCP 49504 (protocol.md), sans-IO.

One concept, read from the wire inwards: `frame` (keyfork-frame), `messages` (the JSON of
messages 1-4), `transport` (the encryption of the share request), `session` (the holder's and
the enclave's state machines), `admission` (who gets a slot), `holders` (who signed a
submission) and `reconstitution` with `share_search` (the trusted set of shares that rebuilds
the secret). The asyncio server and the CLI client only move bytes and time.
"""
