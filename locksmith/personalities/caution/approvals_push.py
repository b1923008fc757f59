"""`caution secret approvals push`: deliver approvals to a running provider (docs/forwarding.md
§4.4, §7).

Approvals cannot travel inside the image they approve (they would change its PCRs), so they
reach a provider over its forwarding port instead: A1 with up to 16 approval texts, A2 with
what the provider stored and why it did not store the others. The approvals are counted here
first, exactly as the provider will count them (`count_approvals`), and only those that count
are sent: a holder's typo or an expired file is reported before anything leaves the machine.

No attestation is asked for: approvals are public and self-authenticating, so the connection
has nothing to keep secret and nothing to vouch for — a man in the middle can only drop them.
The provider's answer is therefore not authenticated either; what proves the delivery is a
requester of the approved image booting. Texts from the peer (discard reasons) reach the
terminal only through `ui`, which escapes control characters.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Optional

import typer

from locksmith.core.forwarding.approval import count_approvals
from locksmith.core.forwarding.messages import (
    DEFAULT_PORT, MAX_PUSHED, PUSH_CAP, STORED_CAP, MessageError, Push, Stored, parse_stored,
)
from locksmith.core.protocol import frame
from locksmith.personalities.caution import ui
from locksmith.personalities.caution.approvals import (
    DEFAULT_DIR, forwarding_bundle, read_approvals, approvals_app,
)
from locksmith.personalities.caution.bundles import (
    ALLOW_DEBUG_OPTION, DEFAULT_BUNDLE, POLICY_OPTION, TRUST_ROOT_OPTION, ProofOptions,
)
from locksmith.personalities.caution.shard_client import Address, parse_address
from locksmith.personalities.caution.ui import CliError, UsageError

CONNECT_TIMEOUT = 10.0  # seconds
ANSWER_TIMEOUT = 30.0  # seconds from A1 sent to A2 read
NOTHING_COUNTS = "no approval in {dir} counts for this bundle; nothing was sent"
NO_ANSWER = "no answer from the provider at {addr} within {seconds:g} s"
NOT_A_PROVIDER = "{addr} did not answer the push; is it a forwarding provider (port 49505)?"
STORED_BEFORE = "; {n} approvals were stored before"
NONE_STORED = "the provider at {addr} stored none of the {m} approvals"
_RECV = 65536


def parse_push_address(text: str) -> Address:
    """`send-shard --address` syntax, but a bare host or `[IPv6]` means port 49505."""
    try:
        address = parse_address(text)
    except ValueError as exc:
        raise UsageError(f"invalid --address '{text}': {exc}") from None
    bare = text.endswith("]") if text.startswith("[") else text.count(":") != 1
    return Address(address.host, DEFAULT_PORT) if bare else address


def batches(texts: Sequence[str]) -> Iterator[list[int]]:
    """Indices of `texts` in order, at most 16 per batch and each batch's A1 within its cap."""
    batch: list[int] = []
    for index in range(len(texts)):
        candidate = [*batch, index]
        if batch and (len(candidate) > MAX_PUSHED or len(
                Push(tuple(texts[i] for i in candidate)).encode()) > PUSH_CAP):
            yield batch
            candidate = [index]
        batch = candidate
    if batch:
        yield batch


class _PushFailed(Exception):
    """One batch could not be delivered; `str()` is the error line."""


def _reason(exc: OSError) -> str:
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "timed out"
    return exc.strerror or str(exc)


def _read_answer(sock: socket.socket, address: Address) -> bytes:
    decoder = frame.FrameDecoder()
    deadline = time.monotonic() + ANSWER_TIMEOUT
    while True:
        try:
            payload = decoder.next_payload(STORED_CAP)
        except frame.FrameError:
            raise _PushFailed(NOT_A_PROVIDER.format(addr=address)) from None
        if payload is not None:
            return payload
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _PushFailed(NO_ANSWER.format(addr=address, seconds=ANSWER_TIMEOUT))
        sock.settimeout(remaining)
        try:
            data = sock.recv(_RECV)
        except (socket.timeout, TimeoutError):
            raise _PushFailed(NO_ANSWER.format(addr=address, seconds=ANSWER_TIMEOUT)) from None
        except OSError:  # reset by the peer: as good as closed
            data = b""
        if not data:
            raise _PushFailed(NOT_A_PROVIDER.format(addr=address))
        decoder.feed(data)


def push_batch(address: Address, texts: Sequence[str]) -> Stored:
    """One connection: A1 with `texts`, then the provider's A2 (checked against the A1)."""
    try:
        sock = socket.create_connection((address.host, address.port), timeout=CONNECT_TIMEOUT)
    except OSError as exc:
        raise _PushFailed(f"Failed to connect to {address}: {_reason(exc)}") from None
    with sock:
        try:
            sock.settimeout(ANSWER_TIMEOUT)
            sock.sendall(frame.encode(Push(tuple(texts)).encode()))
            payload = _read_answer(sock, address)
        except OSError as exc:
            raise _PushFailed(f"connection to {address} failed: {_reason(exc)}") from None
    try:
        answer = parse_stored(payload)
    except MessageError:
        raise _PushFailed(NOT_A_PROVIDER.format(addr=address)) from None
    if not answer.answers(len(texts)):
        raise _PushFailed(NOT_A_PROVIDER.format(addr=address))
    return answer


@approvals_app.command("push")
def push(
    address: str = typer.Option(..., "--address", metavar="HOST[:PORT]",
                                help="A forwarding provider (default port 49505)."),
    directory: Path = typer.Option(DEFAULT_DIR, "--dir", metavar="DIR",
                                   help="Directory of approval files (*.asc)."),
    bundle: Path = typer.Option(DEFAULT_BUNDLE, "--bundle", metavar="PATH",
                                help="Quorum bundle (V1 or ImportedV0)."),
    keymaker_pcr_policy: Optional[Path] = POLICY_OPTION,
    trust_root: Optional[Path] = TRUST_ROOT_OPTION,
    allow_debug_enclave: bool = ALLOW_DEBUG_OPTION,
) -> None:
    """Send the approvals that count to a running forwarding provider, which keeps them."""
    target = parse_push_address(address)
    checked, digest, holders = forwarding_bundle(
        bundle, ProofOptions(keymaker_pcr_policy, trust_root, allow_debug_enclave))
    assert checked.threshold is not None
    files, unread = read_approvals(directory)
    tally = count_approvals(files, holders=holders, bundle_hash=digest,
                            threshold=checked.threshold, now=int(time.time()))
    for skipped in sorted([*tally.discarded, *unread], key=lambda d: d.source):
        ui.info(f"{skipped.source}: {skipped.reason}")
    counting = {c.source for approvals in tally.counted.values() for c in approvals}
    chosen = [(source, text) for source, text in files if source in counting]
    if not chosen:
        raise CliError(NOTHING_COUNTS.format(dir=directory))
    texts = [text for _, text in chosen]
    stored = 0
    discarded: list[tuple[str, str]] = []
    for batch in batches(texts):
        try:
            answer = push_batch(target, [texts[i] for i in batch])
        except _PushFailed as exc:
            more = STORED_BEFORE.format(n=stored) if stored else ""
            raise CliError(f"{exc}{more}") from None
        stored += answer.stored
        discarded += [(chosen[batch[d.index]][0], d.reason) for d in answer.discarded]
    ui.info(f"Provider at {target} stored {stored} approvals")
    for source, reason in discarded:
        ui.info(f"{source}: {reason}")
    if not stored:
        raise CliError(NONE_STORED.format(addr=target, m=len(texts)))
