"""Holder approvals under hostile input: locksmith/core/forwarding/approval.py.

An approval text reaches forwardd inside F3 from a requester nobody has authenticated yet (up to
254 of them, 16 KiB each), and `caution secret approvals check` reads whatever a repository
holds. Allowed to escape:

* `parse_statement`: `ApprovalError` only;
* `statement_of`: nothing (a text is a statement or None);
* `approval_file`, given any armor: `ApprovalError` only;
* `count_approvals`, given any texts: nothing. Every text is either counted or discarded with
  one of §4.3's reasons, and a text that counts names exactly the statement a holder signed:
  no mutation of a signed file makes it count for another bundle, PCR set or expiry.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from locksmith.core.forwarding.approval import (
    DEBUG_SET, MALFORMED, NOT_A_HOLDER, OTHER_BUNDLE, ApprovalError, approval_file,
    parse_statement, statement_of,
)
from tests.core.forwarding.approval_kit import SET_A, approval_quorum
from tests.fuzz.strategies import armored_packet_mutated, fuzz, only, outcome, text_mutated

Q = approval_quorum(2, 3)
STATEMENT = Q.statement(SET_A)
SIGNED = Q.approve(0, SET_A)
HEAD, _, SIGNATURE_BLOCK = SIGNED.partition("-----BEGIN PGP SIGNATURE-----")
SIGNATURE_BLOCK = "-----BEGIN PGP SIGNATURE-----" + SIGNATURE_BLOCK
FIXED_REASONS = {MALFORMED, OTHER_BUNDLE, NOT_A_HOLDER, DEBUG_SET}


def _known_reason(reason: str) -> bool:
    return (reason in FIXED_REASONS or reason.startswith(("not an approval (statement: ",
                                                          "expired ", "duplicate approval by ")))


@fuzz(deadline_ms=500, scale=3)
@given(text_mutated(STATEMENT.text(), alphabet="0123456789abcdefABCDEF-:TZ "))
def test_fuzz_mutated_statements_parse_or_raise_approval_errors(text: str) -> None:
    statement = only((ApprovalError,), parse_statement, text)
    if statement is not None:
        assert statement.text() == text  # the exact form has one spelling


@fuzz(deadline_ms=1000, scale=3)
@given(st.one_of(
    text_mutated(SIGNED, alphabet="-=+/ABCDEFabcdef0123456789:\r\n"),
    armored_packet_mutated(SIGNATURE_BLOCK, "SIGNATURE").map(lambda block: HEAD + block),
    st.text(max_size=300),
))
def test_fuzz_mutated_approvals_are_counted_for_their_signed_statement_or_discarded(
        text: str) -> None:
    peek = statement_of(text)
    tally = Q.count([("fuzzed", text)])
    if tally.discarded:
        (discarded,) = tally.discarded
        assert _known_reason(discarded.reason), discarded.reason
        outcome(discarded.reason.split(" (")[0])
        return
    (counted,) = [c for approvals in tally.counted.values() for c in approvals]
    assert counted.holder == 0 and counted.expires == STATEMENT.expires
    assert peek == STATEMENT and list(tally.counted) == [SET_A]
    outcome("counted")


@fuzz(deadline_ms=500, scale=2)
@given(st.one_of(armored_packet_mutated(SIGNATURE_BLOCK, "SIGNATURE"),
                 text_mutated(SIGNATURE_BLOCK, alphabet="-=+/AZaz09")))
def test_fuzz_approval_file_takes_one_signature_or_raises_an_approval_error(armored: str) -> None:
    text = only((ApprovalError,), approval_file, STATEMENT, armored)
    if text is not None:
        assert statement_of(text) == STATEMENT
