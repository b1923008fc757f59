"""keyforkd's connection handling (enclave.md §4.2–4.3): asyncio moves frames, `keyfork_ipc` answers.

Every limit here exists because the socket is the one door to the master secret inside the
enclave: the peer's uid is checked on each connection (the 0600 mode already keeps others out;
the check also holds if the mode is ever loosened), connections are capped at 16 and refused
rather than queued, a request must arrive whole within 10 s, and a frame header announcing
more than 64 KiB closes the connection before any body byte is buffered. After an error
response the connection is closed, so a confused client cannot keep probing on one connection.

The quorum key (`m/7366512'/0'` and below) is served once, to locksmith-oneshot during boot;
afterwards the application, which runs with the same uid, gets a refusal: it has its secrets
in its environment and no use for the key that opens all of them.
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
from collections.abc import Callable

from locksmith.core.keyfork import ipc as keyfork_ipc
from locksmith.core.keyfork import slip10
from locksmith.core.protocol import frame

__all__ = ["KeyforkServer", "MasterNode", "peer_uid"]

_UCRED = struct.Struct("=iII")  # struct ucred {pid_t pid; uid_t uid; gid_t gid;}: uid_t unsigned


def peer_uid(sock: socket.socket) -> int:
    """The uid of the process that connected (`SO_PEERCRED`, fixed at connect time)."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    return int(_UCRED.unpack(raw)[1])


class MasterNode:
    """The SLIP-10 master node in wipeable buffers: the daemon's one long-lived copy of secret
    material (the node is equivalent to the secret for every derivation it serves). Each request
    gets a transient immutable copy, which Python cannot wipe; that is the "best effort"."""

    def __init__(self, node: slip10.ExtendedKey) -> None:
        self._key = bytearray(node.private_key)
        self._chain = bytearray(node.chain_code)

    def node(self) -> slip10.ExtendedKey:
        return slip10.ExtendedKey(private_key=bytes(self._key), chain_code=bytes(self._chain))

    def wipe(self) -> None:
        self._key[:] = bytes(len(self._key))
        self._chain[:] = bytes(len(self._chain))


class KeyforkServer:
    """Serves derivations from `master` on an already bound and listening Unix socket."""

    def __init__(self, master: MasterNode, log: Callable[[str], None], *,
                 request_timeout: float = 10.0, max_connections: int = 16,
                 max_payload: int = keyfork_ipc.MAX_PAYLOAD,
                 quorum_once: bool = True) -> None:
        self._master = master
        self._quorum_once = quorum_once  # serve m/7366512'/0' (and below) to one request only
        self._quorum_served = False
        self._log = log
        self._request_timeout = request_timeout
        self._max_connections = max_connections
        self._max_payload = max_payload
        self._allowed_uids = {0, os.getuid()}
        self._writers: set[asyncio.StreamWriter] = set()

    async def serve(self, listener: socket.socket, stop: asyncio.Event) -> None:
        """Accept until `stop` is set, then close the listener and every open connection."""
        server = await asyncio.start_unix_server(self._connection, sock=listener)
        try:
            await stop.wait()
        finally:
            server.close()
            for writer in list(self._writers):
                writer.close()
            await server.wait_closed()

    async def _connection(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        try:
            if self._admit(writer):
                self._writers.add(writer)
                try:
                    await self._exchange(reader, writer)
                finally:
                    self._writers.discard(writer)
        except (ConnectionError, OSError):
            pass  # the peer went away; nothing to answer
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except (ConnectionError, OSError):
                pass

    def _admit(self, writer: asyncio.StreamWriter) -> bool:
        if len(self._writers) >= self._max_connections:
            self._log(f"connection limit reached ({self._max_connections}); "
                      "closing a new connection")
            return False
        sock = writer.get_extra_info("socket")
        try:
            uid = peer_uid(sock)
        except OSError as exc:
            self._log(f"cannot read peer credentials: {exc.strerror or exc}; closing connection")
            return False
        if uid not in self._allowed_uids:
            self._log(f"rejected connection from uid {uid}")
            return False
        return True

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        decoder = frame.FrameDecoder()
        while True:
            try:
                async with asyncio.timeout(self._request_timeout):
                    payload = await self._read_frame(reader, decoder)
            except TimeoutError:
                self._log(f"no complete request within {self._request_timeout:g} s; "
                          "closing connection")
                return
            except frame.FrameError as exc:
                self._log(f"bad frame: {exc}; closing connection")
                return
            if payload is None:
                return
            reply = keyfork_ipc.answer(
                payload, self._master.node(),
                quorum_available=not (self._quorum_once and self._quorum_served))
            self._quorum_served |= reply.quorum
            self._log(reply.log)
            writer.write(frame.encode(reply.payload))
            await writer.drain()
            if reply.close:
                return

    async def _read_frame(self, reader: asyncio.StreamReader,
                          decoder: frame.FrameDecoder) -> bytes | None:
        """The next request payload, or None at end of stream (checks the header first)."""
        while True:
            payload = decoder.next_payload(self._max_payload)
            if payload is not None:
                return payload
            data = await reader.read(min(decoder.needed(self._max_payload), 65536))
            if not data:
                if decoder.buffered:
                    self._log("connection closed in the middle of a request")
                return None
            decoder.feed(data)
