"""Keyless peers that connect, send their opening bytes (or nothing), read and discard whatever
comes and idle: the slot-holding attacker of docs/security.md F1, for both 49504 and the
forwarding port. One thread and non-blocking sockets for any number of them."""

from __future__ import annotations

import selectors
import socket
import threading
import time
from collections.abc import Callable
from typing import Self

__all__ = ["IdlePeers"]


class IdlePeers:
    """`count` peers that connect, send `opening()` (b"": nothing), read and discard whatever
    comes and idle; when the server cuts one it reconnects at once (`reconnect=False`: a cut
    peer stays away). `stop()` closes everything. Counters: `attested` (connections that
    received bytes), `cut` (connections the server closed), `refused` (cut before any byte)."""

    def __init__(self, address: tuple[str, int], count: int, *, opening: Callable[[], bytes],
                 reconnect: bool = True) -> None:
        self.address = address
        self.count = count
        self.opening = opening
        self.reconnect = reconnect
        self.attested = 0
        self.cut = 0
        self.refused = 0
        self._selector = selectors.DefaultSelector()
        self._got: dict[socket.socket, bool] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Self:
        for _ in range(self.count):
            self._open()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    @property
    def holding(self) -> int:
        """Connections open now that have received their first answer (message 2, F2)."""
        return sum(self._got.values())

    @property
    def open(self) -> int:
        return len(self._got)

    def wait_attested(self, at_least: int, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while self.holding < at_least:
            assert time.monotonic() < deadline, (
                f"only {self.holding} of {at_least} idle connections were attested")
            time.sleep(0.02)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        for sock in list(self._got):
            self._selector.unregister(sock)
            sock.close()
        self._got.clear()
        self._selector.close()

    def _open(self) -> None:
        sock = socket.create_connection(self.address, timeout=5)
        opening = self.opening()
        if opening:
            sock.sendall(opening)
        sock.setblocking(False)
        self._got[sock] = False
        self._selector.register(sock, selectors.EVENT_READ)

    def _run(self) -> None:
        while not self._stop.is_set():
            for key, _ in self._selector.select(timeout=0.05):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                try:
                    data = sock.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if data:
                    if not self._got[sock]:
                        self._got[sock] = True
                        self.attested += 1
                    continue
                self.cut += 1
                self.refused += not self._got.pop(sock)
                self._selector.unregister(sock)
                sock.close()
                if self.reconnect and not self._stop.is_set():
                    try:
                        self._open()
                    except OSError:
                        pass  # the server is gone: the run is over
