"""The shard-submission protocol under hostile input: the JSON codecs of
locksmith/core/protocol/messages.py and the sans-IO sessions of
locksmith/core/protocol/session.py.

Allowed to escape:
* the message parsers (`parse_nonce`, `parse_attestation`, `parse_submission`,
  `parse_signed_payload`, `parse_share_request`, `parse_verdict`): `RemoteProtocolError` only;
* `EnclaveSession` and `HolderSession`, driven correctly by their caller: nothing at all. A
  peer's mistake is an event (`ProtocolViolation`, `ConnectionClosed`, `UnexpectedAnswer`) or a
  `ShareRejected` from `open_submission`; an exception there would kill locksmithd's connection
  handler or send-shard with a traceback instead of the protocol's answer;
* `ReconstitutionRound.admit`, given any Q from an identified holder: nothing; every
  submission gets an `AdmitResult`, and a recovered secret is always the bundle's.

tests/core/protocol/test_messages.py and tests/core/protocol/test_session.py already feed short
random bytes and random JSON; this adds mutations of *valid* messages at every layer, including
the inner ones only a real holder can reach: a P signed by a bundle holder, and a Q sealed to the
session's own enclave key, so the fuzzed bytes get past the signature and the AEAD.
"""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives.asymmetric import x25519
from hypothesis import given
from hypothesis import strategies as st

from locksmith.core.attestation.verify import Attestation
from locksmith.core.protocol import frame
from locksmith.core.protocol.holders import BundleHolders
from locksmith.core.protocol.messages import (
    AttestationMessage, NonceMessage, RemoteProtocolError, ShareRequest, SignedPayload,
    SubmissionMessage, parse_attestation, parse_nonce, parse_share_request,
    parse_signed_payload, parse_submission, parse_verdict, submission_bundle_hash,
)
from locksmith.core.protocol.reconstitution import (
    BundleTampered, QuorumReached, ReconstitutionRound, RecoveryFailed, ShareAccepted,
)
from locksmith.core.protocol.session import (
    NEED_DATA, Accepted, AttestationReceived, ConnectionClosed, EnclaveSession, HolderSession,
    NonceReceived, ProtocolViolation, Rejected, ShareRejected, ShareSubmitted,
    SubmissionReceived, UnexpectedAnswer,
)
from locksmith.core.protocol.transport import seal
from tests.core.protocol_kit import NOW, fixture_quorum, generated_quorum
from tests.fuzz.strategies import (
    armored_packet_mutated, chunked, fuzz, json_any, json_mutated, mutated, only, outcome,
    text_mutated,
)

ALLOWED = (RemoteProtocolError,)
QUORUM = fixture_quorum()
HOLDERS = BundleHolders.from_bundle(QUORUM.checked)
ALICE = QUORUM.holders[0]
ENCLAVE_SECRET = bytes(range(1, 33))
ENCLAVE_PUBLIC = x25519.X25519PrivateKey.from_private_bytes(ENCLAVE_SECRET).public_key() \
    .public_bytes_raw()
NONCE = "000102030405060708090a0b"

VALID_Q = ShareRequest(bytearray(ALICE.share), 2).encode()
VALID_P = SignedPayload(b"\x01" * 48, bytes(range(32))).encode()
VALID_SIGNATURE = ALICE.sign(VALID_P.encode("utf-8")).decode("ascii")
VALID_MESSAGE3 = SubmissionMessage(VALID_P, VALID_SIGNATURE).encode()
SAMPLES: dict[str, bytes] = {
    "nonce": NonceMessage(NONCE).encode(),
    "attestation": AttestationMessage(bytes(range(40))).encode(),
    "submission": VALID_MESSAGE3,
    "signed payload": VALID_P.encode("utf-8"),
    "share request": VALID_Q,
    "accepted": Accepted(3).encode(),
    "rejected": Rejected("Unknown holder").encode(),
}


def _as_text(data: str | bytes) -> str:
    return data if isinstance(data, str) else data.decode("utf-8", errors="surrogateescape")


def _parse_all(data: str | bytes) -> None:
    raw = data.encode("utf-8", errors="surrogatepass") if isinstance(data, str) else data
    for parser in (parse_nonce, parse_attestation, parse_submission, parse_share_request,
                   parse_verdict):
        only(ALLOWED, parser, raw)
    only(ALLOWED, parse_signed_payload, _as_text(data))


@fuzz(deadline_ms=1000, scale=3)
@given(st.sampled_from(sorted(SAMPLES)).flatmap(lambda name: json_any(SAMPLES[name])))
def test_fuzz_mutated_messages_raise_only_remote_protocol_errors(data: str | bytes) -> None:
    _parse_all(data)


# --- the enclave's session --------------------------------------------------------------------


def _enclave() -> EnclaveSession:
    """A session whose key is fixed, so a test can seal Q to it before connecting."""
    return EnclaveSession(HOLDERS, random=lambda n: ENCLAVE_SECRET[:n])


def _drive_enclave(session: EnclaveSession, chunks: list[bytes], *, eof: bool = True
                   ) -> list[object]:
    """Play locksmithd's connection handler: feed bytes, attest, open, answer. Returns the
    events; any exception is the session's, and fails the test."""
    pending = list(chunks)
    events: list[object] = []
    while True:
        event = session.next_event()
        events.append(event)
        if event is NEED_DATA:
            if pending:
                session.receive_data(pending.pop(0))
                continue
            if eof:
                session.receive_data(b"")
                eof = False
                continue
            return events
        if isinstance(event, NonceReceived):
            assert event.user_data == ENCLAVE_PUBLIC and 1 <= len(event.nonce) <= 512
            session.send_attestation(b"\xa0")  # the NSM's document; its content is not read
            continue
        if isinstance(event, SubmissionReceived):
            result = session.open_submission(NOW)
            assert isinstance(result, (ShareSubmitted, ShareRejected))
            outcome("open_submission: " + (result.verdict.reason if isinstance(
                result, ShareRejected) else "submitted"))
            events.append(result)
            verdict = result.verdict if isinstance(result, ShareRejected) else Accepted(1)
            answer = session.send_verdict(verdict)
            decoder = frame.FrameDecoder()
            decoder.feed(answer)
            assert parse_verdict(decoder.next_payload() or b"") == verdict
            return events
        assert isinstance(event, (ProtocolViolation, ConnectionClosed)), event
        outcome(f"closed: {getattr(event, 'reason', 'connection closed')}")
        return events


def _framed(payload: bytes) -> bytes:
    return frame.encode(payload)


MESSAGE1 = _framed(SAMPLES["nonce"])


@fuzz(deadline_ms=1000, scale=2)
@given(st.one_of(
    json_any(SAMPLES["nonce"]).map(lambda d: _framed(d if isinstance(d, bytes)
                                                     else d.encode("utf-8", "surrogatepass"))),
    mutated(MESSAGE1 + _framed(VALID_MESSAGE3)),
).flatmap(chunked), st.booleans())
def test_fuzz_enclave_session_turns_any_first_bytes_into_events(chunks: list[bytes],
                                                                eof: bool) -> None:
    _drive_enclave(_enclave(), chunks, eof=eof)


def _message3(p_text: str, signature: str | None = None) -> bytes:
    sig = signature if signature is not None else ALICE.sign(p_text.encode("utf-8")).decode()
    return SubmissionMessage(p_text, sig).encode()


def _sealed_p(q: bytes) -> str:
    sealed = seal(ENCLAVE_PUBLIC, q)
    return SignedPayload(sealed.ciphertext, sealed.client_public).encode()


def _submit(payload: bytes, chunks: list[bytes] | None = None) -> list[object]:
    session = _enclave()
    data = MESSAGE1 + _framed(payload)
    return _drive_enclave(session, chunks if chunks is not None else [data])


@fuzz(deadline_ms=1500, scale=2)
@given(json_any(VALID_MESSAGE3))
def test_fuzz_mutated_message_3_gives_only_events_and_verdicts(data: str | bytes) -> None:
    payload = data if isinstance(data, bytes) else data.encode("utf-8", "surrogatepass")
    if len(payload) <= 256 * 1024:
        _submit(payload)


@fuzz(deadline_ms=1500, scale=2)
@given(st.one_of(json_mutated(VALID_P), text_mutated(VALID_P, alphabet='{}[],:"0123456789af')))
def test_fuzz_holder_signed_mutated_p_is_rejected_as_malformed_not_raised(p_text: str) -> None:
    """A real holder's signature over a broken P: identification succeeds, step 3 must then
    answer `Malformed share request` (or accept, if the edit happened to keep P valid)."""
    if any(0xD800 <= ord(c) <= 0xDFFF for c in p_text):
        return  # P is signed as UTF-8: a holder cannot produce this one
    events = _submit(_message3(p_text))
    assert any(isinstance(e, (ShareSubmitted, ShareRejected)) for e in events), events


@fuzz(deadline_ms=1500, scale=2)
@given(json_any(VALID_Q))
def test_fuzz_sealed_mutated_q_is_rejected_as_malformed_not_raised(q: str | bytes) -> None:
    """A Q that decrypts under this session's key, signed by a holder: everything after the
    AEAD is `parse_share_request` on bytes an attacker with a holder key fully controls."""
    raw = q if isinstance(q, bytes) else q.encode("utf-8", "surrogatepass")
    events = _submit(_message3(_sealed_p(raw)))
    results = [e for e in events if isinstance(e, (ShareSubmitted, ShareRejected))]
    assert len(results) == 1, events


VALID_SEALED_P = _sealed_p(VALID_Q)
VALID_SEALED_SIGNATURE = ALICE.sign(VALID_SEALED_P.encode("utf-8")).decode("ascii")


@fuzz(deadline_ms=1500, scale=2)
@given(st.one_of(
    armored_packet_mutated(VALID_SEALED_SIGNATURE, "SIGNATURE"),
    text_mutated(VALID_SEALED_SIGNATURE, alphabet="=+/-ABCabc0189\n"),
))
def test_fuzz_mutated_holder_signature_gives_a_rejection_not_an_exception(signature: str) -> None:
    """A valid P with its signature packet corrupted: every field of the v4 signature, the
    subpacket areas and the MPIs reach holder identification."""
    _submit(_message3(VALID_SEALED_P, signature))


def test_fuzz_valid_submission_is_accepted_by_the_driver() -> None:
    """The driver and samples above are right: the unmutated submission reaches the round."""
    events = _submit(_message3(VALID_SEALED_P, VALID_SEALED_SIGNATURE))
    assert any(isinstance(e, ShareSubmitted) and e.holder == ALICE.index for e in events), events


# --- the holder's session ---------------------------------------------------------------------


def _holder_after_nonce() -> HolderSession:
    holder = HolderSession(nonce=NONCE)
    holder.send_nonce()
    return holder


def _drain_holder(holder: HolderSession, chunks: list[bytes]) -> list[object]:
    pending = list(chunks) + [b""]
    events: list[object] = []
    while True:
        event = holder.next_event()
        events.append(event)
        if event is NEED_DATA and pending:
            holder.receive_data(pending.pop(0))
            continue
        assert event is not NEED_DATA or not pending
        assert isinstance(event, (AttestationReceived, Accepted, Rejected, UnexpectedAnswer,
                                  ConnectionClosed, ProtocolViolation)) or event is NEED_DATA, event
        return events


@fuzz(deadline_ms=1000, scale=2)
@given(st.one_of(
    json_any(SAMPLES["attestation"]).map(
        lambda d: _framed(d if isinstance(d, bytes) else d.encode("utf-8", "surrogatepass"))),
    mutated(_framed(SAMPLES["attestation"])),
).flatmap(chunked))
def test_fuzz_holder_session_turns_any_message_2_into_events(chunks: list[bytes]) -> None:
    _drain_holder(_holder_after_nonce(), chunks)


def _holder_awaiting_verdict() -> HolderSession:
    """A holder that really submitted (the attestation is a stand-in: `submit` reads only its
    nonce and user_data)."""
    holder = _holder_after_nonce()
    holder.receive_data(_framed(AttestationMessage(b"\xa0").encode()))
    assert isinstance(holder.next_event(), AttestationReceived)
    stand_in: Any = None  # no certificate: `submit` never reads it
    attestation = Attestation(module_id="m", timestamp=1, digest="SHA384", pcrs={},
                              public_key=None, user_data=ENCLAVE_PUBLIC,
                              nonce=holder.nonce_bytes, certificate=stand_in)
    holder.submit(attestation, share=ALICE.share, threshold=2, bundle_hash=None,
                  sign=ALICE.signing_key, signed_at=NOW)
    return holder


VERDICTS = [SAMPLES["accepted"], SAMPLES["rejected"]]


@fuzz(deadline_ms=1000, scale=2)
@given(st.one_of(
    st.sampled_from(VERDICTS).flatmap(json_any).map(
        lambda d: _framed(d if isinstance(d, bytes) else d.encode("utf-8", "surrogatepass"))),
    st.sampled_from(VERDICTS).map(_framed).flatmap(mutated),
).flatmap(chunked))
def test_fuzz_holder_session_turns_any_verdict_into_an_answer(chunks: list[bytes]) -> None:
    events = _drain_holder(_holder_awaiting_verdict(), chunks)
    assert isinstance(events[-1], (Accepted, Rejected, UnexpectedAnswer, ConnectionClosed))


# --- the round that Q reaches -----------------------------------------------------------------

ROUNDS = {"v0": QUORUM, "V1": generated_quorum(2, 3, "V1")}


@st.composite
def submissions(draw: st.DrawFn, generation: str) -> list[tuple[int, ShareRequest]]:
    """What identified holders send, in order: their real share, or a mutated or random one,
    with a true or false threshold and bundle hash."""
    quorum = ROUNDS[generation]
    real_hash = submission_bundle_hash(quorum.checked.bundle)
    out = []
    for _ in range(draw(st.integers(1, 6))):
        holder = draw(st.integers(-1, len(quorum.holders)))
        real = quorum.holders[holder].share if 0 <= holder < len(quorum.holders) else bytes(33)
        shard = draw(st.one_of(st.just(real), mutated(real, max_edits=2), st.binary(max_size=40)))
        threshold = draw(st.sampled_from([quorum.threshold or 2, 1, 2, 3, 0, 255, 2**64 - 1]))
        bundle_hash = draw(st.sampled_from([None if real_hash is None else real_hash.hex(),
                                            None, "", "00" * 32, "zz", "A" * 64]))
        out.append((holder, ShareRequest(bytearray(shard), threshold, bundle_hash)))
    return out


@fuzz(deadline_ms=3000, scale=2)
@given(st.sampled_from(sorted(ROUNDS)).flatmap(
    lambda generation: submissions(generation).map(lambda subs: (generation, subs))))
def test_fuzz_the_round_answers_any_share_and_never_recovers_a_wrong_secret(
        case: tuple[str, list[tuple[int, ShareRequest]]]) -> None:
    """Q's content after a holder is identified: any shard, threshold and bundle hash, from
    any holder, in any order. Every submission gets an answer; a secret is only ever the
    bundle's."""
    generation, subs = case
    quorum = ROUNDS[generation]
    round_ = ReconstitutionRound.from_bundle(quorum.checked)
    for holder, request in subs:
        result = round_.admit(request, holder)
        assert isinstance(result, (ShareRejected, ShareAccepted, QuorumReached, RecoveryFailed,
                                   BundleTampered)), result
        outcome(f"{generation}: {type(result).__name__}")
        if isinstance(result, QuorumReached):
            assert bytes(result.secret) == quorum.secret
        if round_.finished or isinstance(result, BundleTampered):
            break
