"""The OpenPGP smart-card application (card spec 3.4) as pure functions over bytes.

Nothing here talks to a reader: `session.OpenPGPCard` takes a `Transmit` callable (raw command
APDU in, raw response APDU out) from the caller, so the whole card protocol is tested with
scripted fake cards and the pyscard transport stays a few lines elsewhere.
"""
