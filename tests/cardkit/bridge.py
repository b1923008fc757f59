"""The card side of one vpcd reader slot: jcecard's OpenPGP card behind vpcd's TCP protocol.

    python -m tests.cardkit.bridge --port P --storage DIR [--atr HEX] [--init-only]

vpcd (the pcscd reader driver) is the TCP *server*: it listens on port P for its reader slot 0
and P+1 for slot 1, on all interfaces (that is vpcd's doing, not ours); a card is "inserted" by
connecting to it and "removed" by closing the connection. This bridge is the client: it connects
to 127.0.0.1:P, retrying for up to `--connect-timeout` seconds because pcscd may still be
starting. jcecard ships no vpcd client of its own (its `tcp_server` speaks another protocol).

Framing (vsmartcard's vpcd): every message is a 2-byte big-endian length and a payload. A 1-byte
payload is a control code: 0x00 power off, 0x01 power on, 0x02 reset (no answer), 0x04 get ATR
(answered with the ATR). Any longer payload is a command APDU, answered with the response APDU.

jcecard keeps the whole card (keys, PIN hashes, counters) as JSON in `DIR/card_state.json` and
rewrites it after every change. Its `main` module configures the root logger at INFO on import
and logs PINs and key material at INFO, so logging is pointed at `DIR/jcecard.log` at WARNING
before jcecard is imported: nothing secret reaches the test output or that file.

Exits 0 when vpcd closes the connection (pcscd stopped) or on SIGTERM (the card is "removed");
the state file is never left half written, because the signal only shuts the socket down and the
loop ends between two APDUs. `DIR/bridge.pid` exists while the bridge runs, so that the state is
not edited under its feet (`provision.edit_card_state`).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import socket
import struct
import sys
import time
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from jcecard.main import OpenPGPCard

CTRL_POWER_OFF = 0x00
CTRL_POWER_ON = 0x01
CTRL_RESET = 0x02
CTRL_GET_ATR = 0x04

STATE_FILE = "card_state.json"
PID_FILE = "bridge.pid"
LOG_FILE = "jcecard.log"

log = logging.getLogger("cardkit.bridge")


def configure_logging(storage: Path) -> None:
    """Root logging to `storage/jcecard.log` at WARNING, set before jcecard is imported (its
    `logging.basicConfig(level=INFO)` is then a no-op)."""
    handler = logging.FileHandler(storage / LOG_FILE)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    logging.basicConfig(level=logging.WARNING, handlers=[handler], force=True)


def load_card(storage: Path, atr: bytes | None) -> OpenPGPCard:
    """jcecard's card on `storage`, with its loggers held at WARNING (they log PINs at INFO)."""
    from jcecard.main import OpenPGPCard

    logging.getLogger().setLevel(logging.WARNING)
    logging.getLogger("jcecard").setLevel(logging.WARNING)
    card = OpenPGPCard(storage_path=storage) if atr is None else OpenPGPCard(atr=atr,
                                                                              storage_path=storage)
    card.save_state()  # a fresh card writes its initial state at once, so it can be inspected
    return card


def _recv_exact(sock: socket.socket, size: int) -> bytes | None:
    """`size` bytes, or None when the peer closed the connection (or we shut it down)."""
    buf = bytearray()
    while len(buf) < size:
        try:
            # vpcd writes the length and the payload separately with Nagle on: without an
            # immediate ACK of the length, its payload waits for our delayed ACK (~40 ms per
            # APDU). Linux clears QUICKACK after use, so it is set before every read.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
            chunk = sock.recv(size - len(buf))
        except OSError:
            return None
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def _send(sock: socket.socket, payload: bytes) -> None:
    sock.sendall(struct.pack(">H", len(payload)) + payload)


def serve(sock: socket.socket, card: OpenPGPCard) -> None:
    """Answer vpcd until the connection closes."""
    while True:
        header = _recv_exact(sock, 2)
        if header is None:
            return
        (length,) = struct.unpack(">H", header)
        payload = _recv_exact(sock, length) if length else b""
        if payload is None:
            return
        if len(payload) == 1:
            code = payload[0]
            if code == CTRL_POWER_OFF:
                card.power_off()
            elif code == CTRL_POWER_ON:
                card.power_on()
            elif code == CTRL_RESET:
                card.reset()
            elif code == CTRL_GET_ATR:
                _send(sock, card.get_atr())
            else:
                log.warning("unknown vpcd control code 0x%02x ignored", code)
        elif payload:
            _send(sock, card.process_apdu(payload))


def connect(port: int, deadline: float, stopping: list[bool]) -> socket.socket | None:
    """Connect to vpcd on 127.0.0.1:`port`, retrying while pcscd starts; None if stopped first."""
    while not stopping:
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=1.0)
        except OSError as exc:
            if time.monotonic() > deadline:
                raise SystemExit(f"bridge: vpcd did not accept a connection on 127.0.0.1:{port}: "
                                 f"{exc}") from exc
            time.sleep(0.05)  # bounded: pcscd opens the port within a few hundred ms of starting
            continue
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.cardkit.bridge", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, help="vpcd's TCP port for the reader slot")
    parser.add_argument("--storage", type=Path, required=True, help="jcecard state directory")
    parser.add_argument("--atr", help="ATR as hex (default: jcecard's)")
    parser.add_argument("--connect-timeout", type=float, default=20.0)
    parser.add_argument("--init-only", action="store_true",
                        help="write the initial card state to STORAGE and exit")
    args = parser.parse_args(argv)
    if args.port is None and not args.init_only:
        parser.error("--port is required")
    storage: Path = args.storage
    storage.mkdir(parents=True, exist_ok=True)
    configure_logging(storage)
    atr = bytes.fromhex(args.atr) if args.atr else None

    if args.init_only:
        load_card(storage, atr)
        return 0

    stopping: list[bool] = []
    conn: list[socket.socket] = []

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        stopping.append(True)
        for sock in conn:  # wakes `recv`; the loop ends between two APDUs
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    signal.signal(signal.SIGTERM, on_sigterm)
    signal.signal(signal.SIGINT, on_sigterm)
    pid_file = storage / PID_FILE
    pid_file.write_text(f"{os.getpid()}\n")
    try:
        card = load_card(storage, atr)
        sock = connect(args.port, time.monotonic() + args.connect_timeout, stopping)
        if sock is None:
            return 0
        conn.append(sock)
        if stopping:  # SIGTERM between connecting and registering the socket
            sock.close()
            return 0
        try:
            serve(sock, card)
        except OSError as exc:  # vpcd went away mid-answer
            log.warning("connection to vpcd lost: %s", exc)
        finally:
            sock.close()
            card.save_state()
        return 0
    finally:
        pid_file.unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(main())
