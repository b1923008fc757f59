"""Key forwarding under hostile input: the F1–F4 and A1–A2 codecs of
locksmith/core/forwarding/messages.py, the secret's opening in binding.py, the provider's
decision in provider.py and its approval store in store.py.

Allowed to escape:
* the message parsers (`parse_first`, `parse_hello`, `parse_challenge`, `parse_request`,
  `parse_answer`, `parse_stored`): `MessageError` only, whatever the bytes — forwardd closes
  the connection on it, and anything else would end its connection handler with a traceback;
* the store (`judge_push` then `ApprovalStore.add`) on any A1: nothing — every text is stored
  or discarded with a reason, and only texts a holder really signed are stored;
* `RequesterKey.open_secret` on any (E, C): `ForwardingCryptoError` only;
* `judge_request` on any F3 document and approvals: nothing — every F3 gets `Allowed` or
  `Denied`, and `Allowed` only for a document that verifies for this exchange.

tests/core/forwarding/test_messages.py pins the strict rules one by one; this adds mutations of
valid messages at every layer, including documents that really chain to the trusted root.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from locksmith.core.attestation.nsm_simulated import SimulatedNsm
from locksmith.core.attestation.pcr_policy import TrustedHashes
from locksmith.core.attestation.verify import TrustAnchor
from locksmith.core.forwarding.approval import PcrSet
from locksmith.core.forwarding.binding import (
    ForwardingCryptoError, RequesterKey, requester_binding, seal_secret,
)
from locksmith.core.forwarding.messages import (
    Challenge, Discarded, Forwarded, Hello, MessageError, Push, Refused, Request, Stored,
    parse_answer, parse_challenge, parse_first, parse_hello, parse_request, parse_stored,
)
from locksmith.core.forwarding.provider import Allowed, Denied, judge_request
from locksmith.core.forwarding.store import ApprovalStore, judge_push
from locksmith.core.protocol import frame
from tests.core.forwarding.approval_kit import NOW, SET_A, approval_quorum
from tests.fuzz.strategies import chunked, fuzz, json_any, mutated, only, outcome

ALLOWED = (MessageError,)
H = bytes(range(32))
NR = bytes(range(32, 64))
NP = bytes(range(64, 96))
QUORUM = approval_quorum(2, 3)
APPROVAL = QUORUM.approve(0)
SAMPLES: dict[str, bytes] = {
    "F1": Hello(1, H, NR).encode(),
    "F2": Challenge(NP, bytes(range(200))).encode(),
    "F3": Request(bytes(range(100)), (APPROVAL, "second")).encode(),
    "F4 forwarded": Forwarded(H, bytes(48)).encode(),
    "F4 refused": Refused("Requester runs a different bundle").encode(),
    "A1": Push((APPROVAL, "second")).encode(),
    "A2": Stored(1, (Discarded(1, "not an approval (malformed cleartext signed message)"),)
                 ).encode(),
}


def _parse_all(data: str | bytes) -> None:
    raw = data.encode("utf-8", errors="surrogatepass") if isinstance(data, str) else data
    for parser in (parse_first, parse_hello, parse_challenge, parse_request, parse_answer,
                   parse_stored):
        result = only(ALLOWED, parser, raw)
        outcome(f"{parser.__name__}: {'parsed' if result is not None else 'closed'}")


@fuzz(deadline_ms=1000, scale=3)
@given(st.sampled_from(sorted(SAMPLES)).flatmap(lambda name: json_any(SAMPLES[name])))
def test_fuzz_mutated_messages_raise_only_message_errors(data: str | bytes) -> None:
    _parse_all(data)


@fuzz(deadline_ms=1000, scale=2)
@given(st.sampled_from(sorted(SAMPLES)).flatmap(
    lambda name: mutated(frame.encode(SAMPLES[name])).flatmap(chunked)))
def test_fuzz_framed_messages_in_pieces_decode_to_a_message_a_frame_error_or_nothing(
        chunks: list[bytes]) -> None:
    """As forwardd reads: frame header checked against the cap, then the parser."""
    decoder = frame.FrameDecoder()
    for chunk in chunks:
        decoder.feed(chunk)
        try:
            payload = decoder.next_payload(1 << 20)
        except frame.FrameError:
            outcome("frame error")
            return
        if payload is not None:
            _parse_all(payload)
            return


@fuzz(deadline_ms=500, scale=2)
@given(st.binary(min_size=0, max_size=40), st.binary(min_size=0, max_size=80))
def test_fuzz_any_provider_key_and_ciphertext_open_to_the_secret_or_a_crypto_error(
        public: bytes, ciphertext: bytes) -> None:
    key = RequesterKey.generate()
    only((ForwardingCryptoError,), key.open_secret, public, ciphertext, bundle_hash=H,
         requester_nonce=NR, provider_nonce=NP)


REQUESTER = RequesterKey.generate(random=lambda n: b"\x01" * n)
SEALED = b"".join(seal_secret(bytes(range(32)), REQUESTER.public_bytes(), bundle_hash=H,
                              requester_nonce=NR, provider_nonce=NP,
                              random=lambda n: b"\x02" * n))


@fuzz(deadline_ms=500)
@given(mutated(SEALED, max_edits=3))
def test_fuzz_a_mutated_forwarded_secret_never_opens(blob: bytes) -> None:
    """Any edit of a real (E, C) is refused by the X25519 check or the AEAD."""
    opened = only((ForwardingCryptoError,), REQUESTER.open_secret, blob[:32], blob[32:],
                  bundle_hash=H, requester_nonce=NR, provider_nonce=NP)
    assert opened is None or (blob == SEALED and opened == bytes(range(32)))


# --- the provider's decision on real, mutated documents --------------------------------------


class _Fleet:
    def __init__(self, directory: Path) -> None:
        self.nsm = SimulatedNsm.open(directory, clock=lambda: NOW)
        self.other = SimulatedNsm.open(directory, clock=lambda: NOW, pcr_overrides=SET_A.as_pcrs())
        self.anchor = TrustAnchor.from_pem((directory / "root.pem").read_bytes())
        self.own = PcrSet.from_pcrs(TrustedHashes.from_json(
            (directory / "trusted_hashes.json").read_bytes()).pcrs)
        self.key = RequesterKey.generate().public_bytes()
        binding = requester_binding(QUORUM.bundle_hash)
        self.same = self.nsm.attest(user_data=binding, nonce=NP, public_key=self.key)
        self.approved = self.other.attest(user_data=binding, nonce=NP, public_key=self.key)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> _Fleet:
    return _Fleet(tmp_path_factory.mktemp("fuzz-fleet"))


def _judge(fleet: _Fleet, document: bytes, approvals: tuple[str, ...]) -> Allowed | Denied:
    started = time.monotonic()
    decision = judge_request(Request(document, approvals), anchor=fleet.anchor,
                             now_ms=NOW * 1000, provider_nonce=NP,
                             bundle_hash=QUORUM.bundle_hash, own_pcrs=fleet.own,
                             holders=QUORUM.holders, threshold=QUORUM.threshold)
    assert time.monotonic() - started < 2.0
    assert isinstance(decision, (Allowed, Denied))
    outcome(decision.rule if isinstance(decision, Allowed) else
            decision.reason.split(":")[0].split("(")[0])
    return decision


@fuzz(deadline_ms=3000, scale=1)
@given(data=st.data())
def test_fuzz_a_mutated_document_is_allowed_only_if_it_still_verifies(
        fleet: _Fleet, data: st.DataObject) -> None:
    original = data.draw(st.sampled_from(["same", "approved"]))
    document = data.draw(mutated(fleet.same if original == "same" else fleet.approved))
    approvals = (QUORUM.approve(0), QUORUM.approve(1)) if original == "approved" else ()
    decision = _judge(fleet, document, approvals)
    if isinstance(decision, Allowed):
        # A COSE signature covers every field: only an unchanged payload can pass.
        assert decision.requester_public == fleet.key
        assert decision.pcrs == (fleet.own if original == "same" else SET_A)


@fuzz(deadline_ms=3000, scale=1)
@given(data=st.data())
def test_fuzz_mutated_approvals_never_approve_more_than_the_signatures_do(
        fleet: _Fleet, data: st.DataObject) -> None:
    """One real approval plus any edits of it: never two holders, so never approved."""
    approvals = tuple(data.draw(st.lists(
        st.one_of(st.just(APPROVAL), mutated(APPROVAL.encode()).map(
            lambda b: b.decode("utf-8", "replace"))), min_size=1, max_size=4)))
    decision = _judge(fleet, fleet.approved, approvals)
    assert isinstance(decision, Denied)
    assert decision.reason in ("Requester PCRs are not approved (0 of 2 holder approvals)",
                               "Requester PCRs are not approved (1 of 2 holder approvals)")


@fuzz(deadline_ms=3000, scale=1)
@given(data=st.data())
def test_fuzz_mutated_pushes_store_only_what_the_signatures_allow(data: st.DataObject) -> None:
    """One real approval plus any edits of it, pushed: each text is accounted for once, and the
    store holds at most the one (holder, PCR set) entry that the real signature gives."""
    texts = tuple(data.draw(st.lists(
        st.one_of(st.just(APPROVAL), mutated(APPROVAL.encode()).map(
            lambda b: b.decode("utf-8", "replace"))), min_size=1, max_size=16)))
    push = Push(texts)
    tally = judge_push(push, holders=QUORUM.holders, bundle_hash=QUORUM.bundle_hash,
                       threshold=QUORUM.threshold, now=NOW)
    store = ApprovalStore(capacity=4)
    result = store.add(push, tally, NOW)
    assert result.answer.answers(len(texts))
    assert len(store) <= 1 and result.sets in ((), (SET_A.set_id,))
    outcome(f"stored {min(result.answer.stored, 2)}")
