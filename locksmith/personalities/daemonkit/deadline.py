"""Deadlines that name the limit they enforce, and printable socket addresses.

A server's limits (message deadlines, the per-connection backstop) are nested `deadline`
blocks; the one that expires raises `LimitHit` with its kind (the rate-limited log's key) and
its text (the log line), so the handler logs which limit was hit without tracking timers.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator

__all__ = ["LimitHit", "deadline", "peer_name", "socket_name"]


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
        return _host_port(peer[0], peer[1])
    return "unknown peer"


def socket_name(sock: socket.socket) -> str:
    """The address a socket is bound to, as `peer_name` prints peers (`--listen HOST:0` then
    shows the port it got)."""
    host, port = sock.getsockname()[:2]
    return _host_port(host, port)


def _host_port(host: object, port: object) -> str:
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
