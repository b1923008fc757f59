"""Deadlines that name the limit they enforce, and a peer's printable address.

A server's limits (message deadlines, the per-connection backstop) are nested `deadline`
blocks; the one that expires raises `LimitHit` with its kind (the rate-limited log's key) and
its text (the log line), so the handler logs which limit was hit without tracking timers.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

__all__ = ["LimitHit", "deadline", "peer_name"]


class LimitHit(Exception):
    def __init__(self, kind: str, text: str) -> None:
        super().__init__(text)
        self.kind = kind
        self.text = text


@contextlib.asynccontextmanager
async def deadline(when: float, kind: str, text: str) -> AsyncIterator[None]:
    """`asyncio.timeout_at` whose expiry names the limit that was hit. Nested deadlines work:
    an outer expiry passes through an inner one as a cancellation."""
    try:
        async with asyncio.timeout_at(when):
            yield
    except TimeoutError:
        raise LimitHit(kind, text) from None


def peer_name(writer: asyncio.StreamWriter) -> str:
    """`host:port` or `[v6]:port` of the connection's peer."""
    peer = writer.get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2:
        host, port = peer[0], peer[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return "unknown peer"
