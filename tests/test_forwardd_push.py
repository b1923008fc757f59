"""Pushing approvals to forwardd (docs/forwarding.md §4.4, §5.2a): a real provider process on
127.0.0.1 with a simulated NSM. What a push delivers lets a requester of the approved image in
without approvals of its own; what does not count is discarded with its reason and changes
nothing; the store stops at 1024 entries; an A1 is bounded from its header and must be the
connection's only message; every push is one rate-limited log line."""

from __future__ import annotations

import re
import socket
import time

import pytest

from locksmith.core.forwarding.approval import MALFORMED, PcrSet, Statement
from locksmith.core.forwarding.messages import (
    FIRST_CAP, HELLO_CAP, MAX_APPROVAL_BYTES, MAX_PUSHED, Discarded, Forwarded, Hello, Refused,
    Stored,
)
from locksmith.core.forwarding.store import CAPACITY, STORE_FULL
from tests.core.forwarding.approval_kit import signed, signing_key, stranger
from tests.forwardd_kit import (
    Served,
    DAY, Provider, Providers, Requester, approvals, enclave, other_pcrs, push,
)
from tests.locksmithd_kit import Sim


def _exchange(provider: Provider, sim: Sim, served: Served, pcrs: PcrSet,
              presented: tuple[str, ...] = ()) -> tuple[Forwarded | Refused | None,
                                                        bytearray | None]:
    with Requester(provider.address, sim, served.digest, nsm=enclave(sim, pcrs)) as requester:
        return requester.exchange(presented)


def _stored_line(n: int, sets: str, m: int) -> str:
    return (rf"forwardd: stored {n} approvals from 127\.0\.0\.1:\d+ \(PCR sets {sets}\); "
            rf"{m} discarded")


def test_pushed_approvals_let_other_pcrs_without_approvals_of_their_own_receive_the_secret(
        provider: Provider, sim: Sim, served: Served) -> None:
    pcrs = other_pcrs(0x70)
    assert push(provider.address, approvals(served.quorum, pcrs, (2, 0), served.digest)) \
        == Stored(2)
    provider.wait_for_log(_stored_line(2, pcrs.set_id, 0))
    answer, secret = _exchange(provider, sim, served, pcrs)
    assert isinstance(answer, Forwarded) and secret == served.quorum.secret
    provider.wait_for_log(r"PCR0 7070707070707070…, PCR1 7171717171717171…, "
                          r"PCR2 7272727272727272…, rule approved by holders 0, 2\)")


def test_a_pushed_and_a_presented_approval_count_together(
        provider: Provider, sim: Sim, served: Served) -> None:
    pcrs = other_pcrs(0x74)
    assert push(provider.address, approvals(served.quorum, pcrs, (1,), served.digest)) \
        == Stored(1)
    answer, _ = _exchange(provider, sim, served, pcrs)  # one holder is not enough ...
    assert answer == Refused("Requester PCRs are not approved (1 of 2 holder approvals)")
    again, _ = _exchange(provider, sim, served, pcrs,  # ... the same holder again neither ...
                         approvals(served.quorum, pcrs, (1,), served.digest))
    assert again == Refused("Requester PCRs are not approved (1 of 2 holder approvals)")
    both, secret = _exchange(provider, sim, served, pcrs,  # ... another holder's does it
                             approvals(served.quorum, pcrs, (0,), served.digest))
    assert isinstance(both, Forwarded) and secret == served.quorum.secret


def test_approvals_that_do_not_count_are_all_discarded_with_reasons_and_change_nothing(
        provider: Provider, sim: Sim, served: Served) -> None:
    pcrs = other_pcrs(0x78)
    now = int(time.time())
    expired = approvals(served.quorum, pcrs, (0,), served.digest, expires_in=-DAY)[0]
    foreign = signed(signing_key(stranger(), now), Statement(served.digest, pcrs, now + DAY),
                     created=now)
    other_bundle = approvals(served.quorum, pcrs, (1,), bytes(32))[0]
    answer = push(provider.address, [expired, foreign, other_bundle, "not an approval"])
    assert answer is not None and answer.stored == 0
    assert answer.discarded[0].index == 0
    assert re.fullmatch(r"expired \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", answer.discarded[0].reason)
    assert answer.discarded[1:] == (Discarded(1, "not signed by a holder of this bundle"),
                                    Discarded(2, "approval for another bundle"),
                                    Discarded(3, MALFORMED))
    provider.wait_for_log(_stored_line(0, "none", 4))
    refused, _ = _exchange(provider, sim, served, pcrs)
    assert refused == Refused("Requester PCRs are not approved (0 of 2 holder approvals)")


def test_a_push_by_an_excluded_holder_is_discarded_as_excluded(
        providers: Providers, sim: Sim, served: Served) -> None:
    provider = providers.start(sim, served.bundle, served.quorum.secret,
                               extra=["--exclude-holder", served.quorum.holders[1].fingerprint])
    pcrs = other_pcrs(0x7c)
    assert push(provider.address, approvals(served.quorum, pcrs, (1, 2), served.digest)) == \
        Stored(1, (Discarded(0, "holder 1 is excluded"),))


def test_the_store_holds_1024_entries_then_discards_new_ones_but_still_replaces(
        provider: Provider, sim: Sim, served: Served) -> None:
    """342 PCR sets approved by all three holders: 1026 approvals, pushed 16 at a time."""
    now = int(time.time())
    keys = [holder.signing_key for holder in served.quorum.holders]
    sets = [PcrSet(i.to_bytes(2, "big") * 24, b"\x01" * 48, b"\x02" * 48) for i in range(342)]
    texts = [signed(key, Statement(served.digest, pcrs, now + DAY), created=now)
             for pcrs in sets for key in keys]
    answers = [push(provider.address, texts[i:i + MAX_PUSHED])
               for i in range(0, len(texts), MAX_PUSHED)]
    assert all(a is not None for a in answers)
    assert sum(a.stored for a in answers if a is not None) == CAPACITY == 1024
    assert answers[-1] == Stored(0, (Discarded(0, STORE_FULL), Discarded(1, STORE_FULL)))
    later = signed(keys[0], Statement(served.digest, sets[0], now + 2 * DAY), created=now)
    assert push(provider.address, [later]) == Stored(1)  # a replacement needs no new entry
    answer, secret = _exchange(provider, sim, served, sets[1])
    assert isinstance(answer, Forwarded) and secret == served.quorum.secret
    provider.wait_for_log(r"rule approved by holders 0, 1, 2\)")
    # 66 pushes in a few seconds: one line per second, the suppressed ones counted
    provider.wait_for_log(r"\(\d+ similar pushes suppressed\)")
    assert len(re.findall(r"forwardd: stored \d+ approvals", provider.log())) < 20


def test_the_largest_a1_is_answered_and_an_oversize_one_is_closed_from_its_header(
        provider: Provider) -> None:
    largest = ("A" * 63 + "\n") * (MAX_APPROVAL_BYTES // 64)
    answer = push(provider.address, [largest] * MAX_PUSHED)
    assert answer == Stored(0, tuple(Discarded(i, MALFORMED) for i in range(MAX_PUSHED)))
    header = (32 + FIRST_CAP + 1).to_bytes(4, "big")  # keyfork-frame: length, then the body
    with socket.create_connection(provider.address, timeout=5) as sock:
        sock.sendall(header + b'{"approvals":["' + b"A" * 1000)
        sock.settimeout(2.0)  # closed without waiting for the other 270 KiB
        try:
            assert sock.recv(65536) == b""
        except ConnectionResetError:
            pass
    provider.wait_for_log(f"limit hit: F1 or A1: frame payload of {FIRST_CAP + 1} bytes exceeds "
                          f"the {FIRST_CAP}-byte limit for this message; closed the connection")


def test_bytes_after_a1_close_the_connection_without_an_answer(
        provider: Provider, served: Served) -> None:
    texts = approvals(served.quorum, other_pcrs(0x7e), (0,), served.digest)
    assert push(provider.address, texts, after=b"\x00\x00\x00\x40") is None
    provider.wait_for_log(r"protocol violation: data after A1; closed the connection")


@pytest.mark.parametrize("payload, reason", [
    (b'{"approvals":[]}', "A1 carries no approval"),
    (b'{"approvals":["a"],"nonce":"00"}', "the first message is neither F1 nor A1"),
])
def test_a_malformed_a1_is_closed_without_an_answer(provider: Provider, payload: bytes,
                                                     reason: str) -> None:
    assert push(provider.address, payload=payload) is None
    provider.wait_for_log(f"protocol violation: {reason}; closed the connection")


def test_an_f1_padded_past_4_kib_is_closed_though_its_header_passed(
        provider: Provider, served: Served) -> None:
    hello = Hello(1, served.digest, bytes(32)).encode()
    padded = hello[:-1] + b" " * (HELLO_CAP + 1 - len(hello)) + b"}"
    assert push(provider.address, payload=padded) is None
    provider.wait_for_log(r"protocol violation: F1 is larger than 4096 bytes")
