"""The two sessions of protocol.md, fed bytes as the sockets would (h11 style), and the
whole exchange end to end in memory with real attestation documents."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from hypothesis import given, settings
from hypothesis import strategies as st

from locksmith.core.attestation import verify as attestation
from locksmith.core.attestation.chain import TrustAnchor
from locksmith.core.attestation.nsm_simulated import SimulatedNsm
from locksmith.core.attestation.pcr_policy import TrustedHashes
from locksmith.core.openpgp.holder_signature import (
    REJECT_CLOCK_SKEW, REJECT_MULTIPLE_HOLDERS, REJECT_NO_HOLDER, armor_signature,
    prepare_detached_text,
)
from locksmith.core.protocol import frame
from locksmith.core.protocol.holders import BundleHolders
from locksmith.core.protocol.messages import (
    MALFORMED_SHARE_REQUEST, SignedPayload, SubmissionMessage, parse_submission,
    submission_bundle_hash,
)
from locksmith.core.protocol.reconstitution import AdmitResult, QuorumReached, ReconstitutionRound, ShareAccepted
from locksmith.core.protocol.session import (
    NEED_DATA, PAUSED, Accepted, AttestationReceived, ConnectionClosed, EnclaveSession,
    HolderSession, LocalProtocolError, NonceReceived, ProtocolViolation, Rejected,
    ShareRejected, ShareSubmitted, SubmissionReceived, UnexpectedAnswer,
)
from locksmith.core.protocol.transport import seal
from tests.core.protocol_kit import (
    FIXTURE_SECRET, NOW, Holder, Quorum, fixture_quorum, generated_quorum, share_request_json,
)
from tests.core.protocol.test_transport import C, C_SECRET, CT, Q, S, S_SECRET, _fixed

NONCE = "000102030405060708090a0b"
NONCE_FRAME = bytes.fromhex(
    "00000044" "cbfde7d9ab64fc7db08e0e21c800f91a186fff3202eb74c869e949eb92fdf2b6"
    "7b226e6f6e6365223a22303030313032303330343035303630373038303930613062227d")
ALICE, BOB = 0, 1


def _events(session: EnclaveSession | HolderSession, data: bytes = b"") -> list[object]:
    """Feed `data`, then collect events until the session needs data or our turn comes."""
    if data:
        session.receive_data(data)
    out: list[object] = []
    while True:
        event = session.next_event()
        out.append(event)
        if event is NEED_DATA or event is PAUSED or isinstance(
                event, (ConnectionClosed, ProtocolViolation, UnexpectedAnswer, Accepted, Rejected)):
            return out


def _holders(quorum: Quorum | None = None) -> BundleHolders:
    return BundleHolders.from_bundle((quorum or fixture_quorum()).checked)


def _at_submission(quorum: Quorum | None = None) -> tuple[EnclaveSession, bytes]:
    """An enclave session that has answered message 1 and awaits message 3; and its S."""
    session = EnclaveSession(_holders(quorum))
    (event, paused) = _events(session, NONCE_FRAME)
    assert isinstance(event, NonceReceived) and paused is PAUSED
    session.send_attestation(b"document")
    return session, event.user_data


def _message3(enclave_public: bytes, holder: Holder, *, q: bytes | None = None,
              p: str | None = None, created: int = NOW, signature: str | None = None) -> bytes:
    if p is None:
        sealed = seal(enclave_public, q if q is not None else share_request_json(holder.share, 2))
        p = SignedPayload(sealed.ciphertext, sealed.client_public).encode()
    if signature is None:
        signature = holder.sign(p.encode(), created).decode()
    return frame.encode(SubmissionMessage(p, signature).encode())


def _submit(message3: bytes, session: EnclaveSession) -> ShareSubmitted | ShareRejected:
    assert _events(session, message3) == [SubmissionReceived(), PAUSED]
    return session.open_submission(NOW)


# --- message 1 and the attestation request (enclave) ------------------------------------------------


def test_holder_nonce_frame_is_the_spec_vector() -> None:
    assert HolderSession(nonce=NONCE).send_nonce() == NONCE_FRAME


def test_holder_nonce_is_lowercase_hex_of_12_random_bytes() -> None:
    assert re.fullmatch("[0-9a-f]{24}", HolderSession().nonce)
    assert HolderSession(random=_fixed(bytes(range(12)))).nonce == NONCE


def test_valid_nonce_asks_for_an_attestation_of_a_fresh_key() -> None:
    session = EnclaveSession(_holders(), random=_fixed(S_SECRET))
    assert _events(session, NONCE_FRAME) == [NonceReceived(NONCE.encode(), S), PAUSED]
    reply = session.send_attestation(b"\x01\xff")
    assert reply == frame.encode(b'{"attestation":[1,255]}')
    assert session.next_event() is NEED_DATA


def test_each_connection_gets_its_own_key() -> None:
    first, second = (_events(EnclaveSession(_holders()), NONCE_FRAME)[0] for _ in range(2))
    assert isinstance(first, NonceReceived) and isinstance(second, NonceReceived)
    assert first.user_data != second.user_data


def test_frames_split_at_every_byte_give_the_same_events() -> None:
    session = EnclaveSession(_holders(), random=_fixed(S_SECRET))
    for byte in NONCE_FRAME[:-1]:
        session.receive_data(bytes([byte]))
        assert session.next_event() is NEED_DATA
    assert _events(session, NONCE_FRAME[-1:]) == [NonceReceived(NONCE.encode(), S), PAUSED]


@pytest.mark.parametrize("payload", [
    b"", b'{"nonce":""}', b'{"nonce":"' + b"x" * 513 + b'"}', b'{"nonce":"\\ud800"}',
    b'{"nonce":7}', b'{"nonce":"a","x":1}', b'{"nonce":"a","nonce":"a"}', b"[]",
])
def test_bad_message_1_closes_without_response(payload: bytes) -> None:
    session = EnclaveSession(_holders())
    (event,) = _events(session, frame.encode(payload))
    assert isinstance(event, ProtocolViolation)
    with pytest.raises(LocalProtocolError):
        session.next_event()


def test_message_1_over_4_kib_is_refused_from_the_header_alone() -> None:
    session = EnclaveSession(_holders())
    (event,) = _events(session, frame.encode(b" " * 4097)[:4])
    assert event == ProtocolViolation("frame payload of 4097 bytes exceeds the 4096-byte limit "
                                      "for this message")


@pytest.mark.parametrize("length", [0, 31, 1048577])
def test_bad_frame_length_is_refused_from_the_header_alone(length: int) -> None:
    (event,) = _events(EnclaveSession(_holders()), length.to_bytes(4, "big"))
    assert event == ProtocolViolation(f"frame body length {length} is outside 32..=1048576")


def test_checksum_mismatch_closes_without_response() -> None:
    bad = bytearray(NONCE_FRAME)
    bad[10] ^= 1
    assert _events(EnclaveSession(_holders()), bytes(bad)) == [
        ProtocolViolation("frame checksum mismatch")]


@pytest.mark.parametrize("data", [b"", NONCE_FRAME[:3], NONCE_FRAME[:-1]])
def test_eof_before_message_1_is_connection_closed(data: bytes) -> None:
    session = EnclaveSession(_holders())
    session.receive_data(data)
    session.receive_data(b"")
    assert _events(session) == [ConnectionClosed()]


def test_flood_is_cut_off_without_buffering_it() -> None:
    """More than message 1 plus a full-size message 3 cannot come from an honest holder."""
    session = EnclaveSession(_holders())
    session.receive_data(NONCE_FRAME + b"x" * 300_000)
    assert session._decoder.buffered == 0  # white box: nothing was kept
    assert _events(session) == [ProtocolViolation("peer sent more data than the protocol allows")]
    session = EnclaveSession(_holders())
    assert isinstance(_events(session, NONCE_FRAME)[0], NonceReceived)
    session.receive_data(b"x" * (36 + 256 * 1024))  # while attesting: a message 3's worth fits
    session.receive_data(b"x")
    session.send_attestation(b"d")
    assert _events(session) == [ProtocolViolation("peer sent more data than the protocol allows")]


def test_methods_out_of_order_are_local_errors() -> None:
    session = EnclaveSession(_holders())
    with pytest.raises(LocalProtocolError):
        session.send_attestation(b"d")
    with pytest.raises(LocalProtocolError):
        session.open_submission(NOW)
    with pytest.raises(LocalProtocolError):
        session.send_verdict(Accepted(1))


# --- message 3: parsing, holder identification, P and Q (enclave) -----------------------------------


def test_message_3_over_256_kib_is_refused_from_the_header_alone() -> None:
    session, _ = _at_submission()
    (event,) = _events(session, (32 + 256 * 1024 + 1).to_bytes(4, "big"))
    assert isinstance(event, ProtocolViolation) and "262144-byte limit" in event.reason


@pytest.mark.parametrize("payload", [
    b'{"signed_payload":"P"}', b'{"signed_payload":"P","signature":"S","x":1}',
    b'{"signed_payload":"P","signature":"S","signature":"S"}', b'{"signed_payload":1,"signature":"S"}',
    b"", b'{"signed_payload":"\\udc00","signature":"S"}',
])
def test_bad_message_3_closes_without_response(payload: bytes) -> None:
    session, _ = _at_submission()
    (event,) = _events(session, frame.encode(payload))
    assert isinstance(event, ProtocolViolation)


def test_eof_before_message_3_is_connection_closed() -> None:
    session, _ = _at_submission()
    session.receive_data(b"")
    assert _events(session) == [ConnectionClosed()]


def test_valid_submission_identifies_the_holder_and_decrypts_q() -> None:
    quorum = fixture_quorum()
    session, key = _at_submission()
    result = _submit(_message3(key, quorum.holders[BOB]), session)
    assert isinstance(result, ShareSubmitted)
    assert (result.holder, result.fingerprint) == (BOB, quorum.holders[BOB].fingerprint)
    assert bytes(result.request.shard) == quorum.holders[BOB].share
    assert (result.request.threshold, result.request.bundle_hash) == (2, None)
    assert session.send_verdict(Accepted(1)) == frame.encode(b'{"Accepted":{"remaining":1}}')
    assert result.request.shard == bytearray(33)  # wiped once answered


def test_anything_after_message_3_is_ignored() -> None:
    session, key = _at_submission()
    session.receive_data(_message3(key, fixture_quorum().holders[ALICE]) + b"trailing junk")
    assert _events(session) == [SubmissionReceived(), PAUSED]
    session.receive_data(b"more junk")
    session.receive_data(b"")
    assert isinstance(session.open_submission(NOW), ShareSubmitted)


def _rejected(result: ShareSubmitted | ShareRejected, reason: str, log: str) -> None:
    assert result == ShareRejected(Rejected(reason), (log,))


def test_signature_by_a_key_outside_the_bundle_is_rejected() -> None:
    outsider = generated_quorum(2, 3).holders[0]
    session, key = _at_submission()
    _rejected(_submit(_message3(key, outsider), session), REJECT_NO_HOLDER,
              "holder signature verification failed: invalid holder signature")


def test_signature_more_than_60s_ahead_is_a_clock_skew_rejection() -> None:
    alice = fixture_quorum().holders[ALICE]
    session, key = _at_submission()
    _rejected(_submit(_message3(key, alice, created=NOW + 61), session), REJECT_CLOCK_SKEW,
              "holder signature verification failed: signature clock skew")
    session, key = _at_submission()
    assert isinstance(_submit(_message3(key, alice, created=NOW + 60), session), ShareSubmitted)


def test_signature_matching_several_holders_is_rejected() -> None:
    alice_cert = fixture_quorum().checked.holders[ALICE]
    session = EnclaveSession(BundleHolders([alice_cert, alice_cert]))
    (event, _) = _events(session, NONCE_FRAME)
    assert isinstance(event, NonceReceived)
    session.send_attestation(b"d")
    _rejected(_submit(_message3(event.user_data, fixture_quorum().holders[ALICE]), session),
              REJECT_MULTIPLE_HOLDERS, "holder signature verification failed: invalid holder signature")


@pytest.mark.parametrize("signature,category", [
    ("not armor", "invalid signature armor"), ("", "invalid signature count"),
])
def test_malformed_armor_is_rejected(signature: str, category: str) -> None:
    session, key = _at_submission()
    result = _submit(_message3(key, fixture_quorum().holders[ALICE], signature=signature), session)
    _rejected(result, REJECT_NO_HOLDER, f"holder signature verification failed: {category}")


def test_signature_over_other_bytes_is_rejected() -> None:
    alice = fixture_quorum().holders[ALICE]
    session, key = _at_submission()
    other = alice.sign(b'{"encrypted_payload":"00","public_key":[]}').decode()
    result = _submit(_message3(key, alice, signature=other), session)
    assert result.verdict == Rejected(REJECT_NO_HOLDER)  # type: ignore[union-attr]


PK = list(range(1, 33))
BAD_P = [
    "", "not json", "[]", json.dumps({"encrypted_payload": "ab"}),
    json.dumps({"encrypted_payload": "abc", "public_key": PK}),
    json.dumps({"encrypted_payload": "ab", "public_key": PK[:31]}),
    json.dumps({"encrypted_payload": "ab", "public_key": [256] + PK[1:]}),
    json.dumps({"encrypted_payload": "ab", "public_key": PK, "x": 1}),
    '{"encrypted_payload":"ab","encrypted_payload":"ab","public_key":' + json.dumps(PK) + "}",
    json.dumps({"encrypted_payload": CT.hex(), "public_key": list(C)}),  # sealed to another S
    json.dumps({"encrypted_payload": "", "public_key": list(C)}),
    json.dumps({"encrypted_payload": "00" * 40, "public_key": [0] * 32}),  # all-zero Z
]


@pytest.mark.parametrize("p", BAD_P)
def test_malformed_p_is_a_malformed_share_request(p: str) -> None:
    session, key = _at_submission()
    _rejected(_submit(_message3(key, fixture_quorum().holders[ALICE], p=p), session),
              MALFORMED_SHARE_REQUEST, f"rejected submission: {MALFORMED_SHARE_REQUEST}")


@pytest.mark.parametrize("q", [
    b"", b"[]", b'{"shard":[1]}', b'{"shard":[1],"threshold":2,"x":0}',
    b'{"shard":[1],"threshold":true}', b'{"shard":[1],"threshold":2.0}',
    b'{"shard":[300],"threshold":2}', b'{"shard":[1],"threshold":2,"bundle_hash":1}',
    b'{"shard":[1],"threshold":2,"threshold":2}', b"\xff\xfe",
])
def test_malformed_q_is_a_malformed_share_request(q: bytes) -> None:
    session, key = _at_submission()
    _rejected(_submit(_message3(key, fixture_quorum().holders[ALICE], q=q), session),
              MALFORMED_SHARE_REQUEST, f"rejected submission: {MALFORMED_SHARE_REQUEST}")


def test_tampered_ciphertext_is_malformed_and_the_round_keeps_serving() -> None:
    quorum = fixture_quorum()
    rnd = ReconstitutionRound.from_bundle(quorum.checked)
    session, key = _at_submission()
    sealed = seal(key, share_request_json(quorum.holders[ALICE].share, 2))
    flipped = bytes([sealed.ciphertext[0] ^ 1]) + sealed.ciphertext[1:]
    p = SignedPayload(flipped, sealed.client_public).encode()
    result = _submit(_message3(key, quorum.holders[ALICE], p=p), session)
    assert result.verdict == Rejected(MALFORMED_SHARE_REQUEST)  # type: ignore[union-attr]
    assert rnd.remaining(2) == 2
    for holder in quorum.holders:  # the same holder and the other one carry on
        session, key = _at_submission()
        submitted = _submit(_message3(key, holder), session)
        assert isinstance(submitted, ShareSubmitted)
        outcome = rnd.admit(submitted.request, submitted.holder)
        session.send_verdict(outcome.verdict)
    assert isinstance(outcome, QuorumReached) and bytes(outcome.secret) == FIXTURE_SECRET


# --- the holder's end --------------------------------------------------------------------------------


def _holder_at_attestation(document: bytes = b"doc") -> HolderSession:
    holder = HolderSession(nonce=NONCE)
    holder.send_nonce()
    event = _events(holder, frame.encode(b'{"attestation":%s}' % json.dumps(list(document)).encode()))
    assert event == [AttestationReceived(document, NONCE.encode()), PAUSED]
    return holder


def test_message_2_with_unknown_members_is_read() -> None:
    holder = HolderSession(nonce=NONCE)
    holder.send_nonce()
    assert _events(holder, frame.encode(b'{"v":{"w":1},"attestation":[7]}'))[0] == \
        AttestationReceived(b"\x07", NONCE.encode())


@pytest.mark.parametrize("payload", [b"{}", b'{"attestation":[1.0]}', b"junk"])
def test_bad_message_2_means_close_and_send_nothing(payload: bytes) -> None:
    holder = HolderSession(nonce=NONCE)
    holder.send_nonce()
    (event,) = _events(holder, frame.encode(payload))
    assert isinstance(event, ProtocolViolation)
    with pytest.raises(LocalProtocolError):
        holder.next_event()


def test_eof_before_message_2_is_connection_closed() -> None:
    holder = HolderSession(nonce=NONCE)
    holder.send_nonce()
    holder.receive_data(b"")
    assert _events(holder) == [ConnectionClosed()]


@pytest.fixture(scope="module")
def nsm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SimulatedNsm, TrustAnchor, dict[int, bytes]]]:
    directory = tmp_path_factory.mktemp("nsm")
    device = SimulatedNsm.open(directory)
    anchor = TrustAnchor.from_pem((Path(directory) / "root.pem").read_bytes())
    pcrs = TrustedHashes.from_json((Path(directory) / "trusted_hashes.json").read_bytes()).pcrs
    yield device, anchor, pcrs


def _verify(document: bytes, nonce: bytes, nsm: tuple[SimulatedNsm, TrustAnchor, dict[int, bytes]]
            ) -> attestation.Attestation:
    """What the CLI does (cli.md §5.2 step 5)."""
    _, anchor, pcrs = nsm
    return attestation.verify(document, trust_root=anchor, now_ms=int(time.time() * 1000),
                              pcrs=pcrs, nonce=nonce, user_data_length=32)


def test_holder_builds_the_spec_p_with_injected_randomness(nsm: tuple[SimulatedNsm, TrustAnchor, dict[int, bytes]]) -> None:
    alice = fixture_quorum().holders[ALICE]
    holder = _holder_at_attestation(nsm[0].attest(user_data=S, nonce=NONCE.encode()))
    holder._random = _fixed(C_SECRET)  # the §5 vector's client key (white box)
    doc = nsm[0].attest(user_data=S, nonce=NONCE.encode())
    data = holder.submit(_verify(doc, NONCE.encode(), nsm), share=alice.share, threshold=2,
                         bundle_hash=None, sign=alice.signing_key, signed_at=NOW)
    message = parse_submission(data[36:])
    assert message.signed_payload == ('{"encrypted_payload":"' + CT.hex() + '","public_key":['
                                      + ",".join(map(str, C)) + "]}")
    assert message.signature.startswith("-----BEGIN PGP SIGNATURE-----\n")
    enclave = EnclaveSession(_holders(), random=_fixed(S_SECRET))
    _events(enclave, NONCE_FRAME)
    enclave.send_attestation(doc)
    submitted = _submit(data, enclave)
    assert isinstance(submitted, ShareSubmitted) and submitted.request.encode() == Q


def test_submit_refuses_an_attestation_for_another_nonce(nsm: tuple[SimulatedNsm, TrustAnchor, dict[int, bytes]]) -> None:
    alice = fixture_quorum().holders[ALICE]
    holder = _holder_at_attestation()
    other = _verify(nsm[0].attest(user_data=S, nonce=b"other"), b"other", nsm)
    with pytest.raises(LocalProtocolError, match="nonce"):
        holder.submit(other, share=alice.share, threshold=2, bundle_hash=None,
                      sign=alice.signing_key, signed_at=NOW)
    right = _verify(nsm[0].attest(user_data=S, nonce=NONCE.encode()), NONCE.encode(), nsm)
    with pytest.raises(LocalProtocolError):
        holder.submit(right, share=alice.share[:32], threshold=2, bundle_hash=None,
                      sign=alice.signing_key, signed_at=NOW)
    with pytest.raises(LocalProtocolError, match="signed_at"):
        holder.submit(right, share=alice.share, threshold=2, bundle_hash=None, sign=alice.signing_key)


def _holder_awaiting_verdict(nsm: tuple[SimulatedNsm, TrustAnchor, dict[int, bytes]]) -> HolderSession:
    alice = fixture_quorum().holders[ALICE]
    holder = _holder_at_attestation()
    att = _verify(nsm[0].attest(user_data=S, nonce=NONCE.encode()), NONCE.encode(), nsm)
    holder.submit(att, share=alice.share, threshold=2, bundle_hash=None, sign=alice.signing_key,
                  signed_at=NOW)
    return holder


@pytest.mark.parametrize("payload,expected", [
    (b'{"Accepted":{"remaining":1}}', Accepted(1)),
    (b'{"Rejected":{"reason":"Unknown holder"},"x":1}', Rejected("Unknown holder")),
    (b'{"Accepted":{"remaining":1},"Rejected":{"reason":"x"}}',
     UnexpectedAnswer("message 4 is neither one Accepted nor one Rejected")),
    (b'{"Accepted":{"remaining":-1}}', UnexpectedAnswer("remaining must be an unsigned integer")),
    (b"", UnexpectedAnswer("message 4 is not valid JSON")),
])
def test_message_4_outcomes(payload: bytes, expected: object,
                            nsm: tuple[SimulatedNsm, TrustAnchor, dict[int, bytes]]) -> None:
    holder = _holder_awaiting_verdict(nsm)
    assert _events(holder, frame.encode(payload)) == [expected]


def test_no_verdict_and_broken_verdict_frames(nsm: tuple[SimulatedNsm, TrustAnchor, dict[int, bytes]]) -> None:
    holder = _holder_awaiting_verdict(nsm)
    holder.receive_data(frame.encode(b'{"Accepted":{"remaining":1}}')[:-1])
    holder.receive_data(b"")
    assert _events(holder) == [ConnectionClosed()]
    holder = _holder_awaiting_verdict(nsm)
    bad = bytearray(frame.encode(b'{"Accepted":{"remaining":1}}'))
    bad[-2] ^= 1
    assert _events(holder, bytes(bad)) == [UnexpectedAnswer("frame checksum mismatch")]


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=120))
def test_enclave_session_yields_only_events_on_arbitrary_bytes(data: bytes) -> None:
    session = EnclaveSession(_holders())
    for chunk in (data[:7], data[7:]):
        session.receive_data(chunk)
        event = session.next_event()
        assert event is NEED_DATA or event is PAUSED or isinstance(
            event, (ProtocolViolation, NonceReceived, ConnectionClosed))
        if event is not NEED_DATA:
            return


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=120))
def test_holder_yields_only_events_on_arbitrary_verdict_bytes(data: bytes) -> None:
    holder = HolderSession(nonce=NONCE)
    holder.send_nonce()
    holder.receive_data(frame.encode(b'{"attestation":[]}'))
    assert isinstance(holder.next_event(), AttestationReceived)
    holder._state = holder._state.__class__.AWAIT_VERDICT  # white box: skip the crypto
    holder.receive_data(data)
    holder.receive_data(b"")
    event = holder.next_event()
    assert isinstance(event, (Accepted, Rejected, UnexpectedAnswer, ConnectionClosed))


# --- end to end, in memory -----------------------------------------------------------------------------


def _exchange(holder_data: Holder, quorum: Quorum, rnd: ReconstitutionRound,
              nsm: tuple[SimulatedNsm, TrustAnchor, dict[int, bytes]], *,
              threshold: int, sign: object = None) -> tuple[AdmitResult, object]:
    """One connection: bytes move between the two sessions as the sockets would carry them."""
    holder, enclave = HolderSession(), EnclaveSession(BundleHolders.from_bundle(quorum.checked))
    (request, _) = _events(enclave, holder.send_nonce())
    assert isinstance(request, NonceReceived)
    document = nsm[0].attest(user_data=request.user_data, nonce=request.nonce)  # the "NSM"
    (received, _) = _events(holder, enclave.send_attestation(document))
    assert isinstance(received, AttestationReceived)
    verified = _verify(received.document, received.nonce, nsm)
    message3 = holder.submit(verified, share=holder_data.share, threshold=threshold,
                             bundle_hash=submission_bundle_hash(quorum.checked.bundle),
                             sign=sign or holder_data.signing_key,  # type: ignore[arg-type]
                             signed_at=NOW)
    submitted = _submit(message3, enclave)
    assert isinstance(submitted, ShareSubmitted)
    result = rnd.admit(submitted.request, submitted.holder)  # under the server's round lock
    (verdict,) = _events(holder, enclave.send_verdict(result.verdict))
    return result, verdict


def test_fixture_holders_unlock_07_end_to_end(nsm: tuple[SimulatedNsm, TrustAnchor, dict[int, bytes]]) -> None:
    quorum = fixture_quorum()
    rnd = ReconstitutionRound.from_bundle(quorum.checked)
    result, verdict = _exchange(quorum.holders[BOB], quorum, rnd, nsm, threshold=2)
    assert isinstance(result, ShareAccepted) and verdict == Accepted(1)
    result, verdict = _exchange(quorum.holders[ALICE], quorum, rnd, nsm, threshold=2)
    assert isinstance(result, QuorumReached) and verdict == Accepted(0)
    assert bytes(result.secret) == FIXTURE_SECRET


def test_v1_holders_with_a_smart_card_signer_end_to_end(nsm: tuple[SimulatedNsm, TrustAnchor, dict[int, bytes]]) -> None:
    quorum = generated_quorum(2, 3, "V1")
    rnd = ReconstitutionRound.from_bundle(quorum.checked)
    card_holder = quorum.holders[2]

    def card(data: bytes) -> bytes:  # the card signs the digest; the host assembles the packet
        prepared = prepare_detached_text(card_holder.signing_key.public, data, NOW)
        private = card_holder.signing_key.private
        assert isinstance(private, ed25519.Ed25519PrivateKey)
        raw = private.sign(prepared.digest)
        return armor_signature(prepared.finish([raw[:32], raw[32:]]))

    result, verdict = _exchange(card_holder, quorum, rnd, nsm, threshold=2, sign=card)
    assert verdict == Accepted(1) and not result.log[0].startswith("share request")  # hash sent
    result, verdict = _exchange(quorum.holders[0], quorum, rnd, nsm, threshold=2)
    assert isinstance(result, QuorumReached) and bytes(result.secret) == quorum.secret


def test_protocol_import_leaves_out_pgpy_typer_httpx_uvicorn() -> None:
    code = ("import sys, locksmith.core.protocol.session, locksmith.core.protocol.reconstitution; "
            "print(sorted(m for m in ('pgpy', 'typer', 'httpx', 'uvicorn') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
