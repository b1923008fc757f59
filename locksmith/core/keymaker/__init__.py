"""Keymaker's pure core (keymaker.md §3-§5): one concept, generating a quorum on request.

`request` decides which answer a request body gets and what a success looks like; `quorum`
validates a holder keyring and generates the quorum. The HTTP service and the NSM stay
in `locksmith.personalities.keymaker`.
"""
