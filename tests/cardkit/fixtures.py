"""pytest fixtures for smart-card tests (registered in tests/conftest.py).

* `card_stack` (session): this test process's pcscd with two virtual readers (`CardStack`).
* `virtual_card`: a fresh, empty card in slot 0, removed after the test.
* `virtual_cards`: fresh cards in slots 0 and 1.

Skip rule: card tests are never skipped on the CI machine (root). They skip only when we are not
root and the Debian pieces (pcscd, the vpcd driver) are absent; anything else missing is a
failure that says what to install.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.cardkit.stack import (
    INSTALL_HINT,
    SKIP_MESSAGE,
    CardStack,
    VirtualCard,
    missing_python_pieces,
    missing_system_pieces,
)


def require_card_stack() -> None:
    """Skip or fail, per the skip rule, when the card stack cannot run here."""
    system = missing_system_pieces()
    if system and os.geteuid() != 0:
        pytest.skip(reason=SKIP_MESSAGE)
    missing = system + missing_python_pieces()
    if missing:
        pytest.fail(f"card tests need {', '.join(missing)}: {INSTALL_HINT}", pytrace=False)


@pytest.fixture(scope="session")
def card_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CardStack]:
    """pcscd for this test process; sets PCSCLITE_CSOCK_NAME in os.environ for the session."""
    require_card_stack()
    stack = CardStack.start(tmp_path_factory.mktemp("pcsc"))
    try:
        yield stack
    finally:
        stack.close()


@pytest.fixture
def virtual_card(card_stack: CardStack) -> Iterator[VirtualCard]:
    """A fresh card (default PINs 123456 / 12345678, no keys) in reader slot 0."""
    card = card_stack.insert(0, name="virtual_card")
    try:
        yield card
    finally:
        card.remove()


@pytest.fixture
def virtual_cards(card_stack: CardStack) -> Iterator[tuple[VirtualCard, VirtualCard]]:
    """Two fresh cards, in reader slots 0 and 1."""
    first = card_stack.insert(0, name="virtual_cards0")
    try:
        second = card_stack.insert(1, name="virtual_cards1")
        try:
            yield first, second
        finally:
            second.remove()
    finally:
        first.remove()
