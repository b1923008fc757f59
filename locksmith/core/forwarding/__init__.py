"""Attested key forwarding between enclaves, and holder approvals (docs/forwarding.md).

Pure, like the rest of `core/`: the F1–F4 messages and their bindings (`messages`, `binding`),
the holders' approval statements and their counting (`approval`), and the two sans-IO
decisions — the provider's (`provider`, §5.2) and the requester's (`requester`, §6). The
programs that move the bytes are `personalities/forwardd` and locksmithd's requester task.
"""
