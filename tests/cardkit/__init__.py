"""Smart-card test harness: a real pcscd, the real vpcd reader driver, and a third-party virtual
OpenPGP card (jcecard) behind it, so card code is tested over genuine PC/SC.

    pyscard / scdaemon ──PC/SC──▶ pcscd (one per test process) ──vpcd driver──TCP──▶ bridge ──▶ jcecard

* `stack`: starts that pcscd, isolated from any other pcscd on the machine, and inserts or
  removes virtual cards (one bridge subprocess per card).
* `bridge`: the vpcd ↔ jcecard bridge (`python -m tests.cardkit.bridge`).
* `provision`: puts keys on a card with raw APDUs (independent of the project's card code, so
  it can serve as an oracle), and reads or patches jcecard's saved state.
* `gnupg`: the path a real holder takes: GnuPG's own `keytocard`.
* `fixtures`: the pytest fixtures (`card_stack`, `virtual_card`, `virtual_cards`).

This package is imported by the bridge subprocess too: keep it free of imports at package level.
"""
