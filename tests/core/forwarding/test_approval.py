"""Holder approvals (docs/forwarding.md §4): the statement, the cleartext signed file, and the
counting procedure with every discard reason of §4.3 and the duplicate rule. GnuPG and Sequoia
are the oracles for the file format, in both directions."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from locksmith.core.forwarding.approval import (
    LATEST_TIME, MAX_APPROVAL_BYTES, ApprovalError, PcrSet, Statement, approval_file,
    approval_name, format_time, parse_statement, parse_time, statement_of,
)
from locksmith.core.openpgp import signature as sigmod
from locksmith.core.openpgp.armor import armor
from locksmith.core.openpgp.secretkeys import load_secret_keys
from tests.core.forwarding.approval_kit import (
    DAY, DEBUG, NOW, SET_A, SET_B, approval_quorum, signed, signing_key, stranger,
)
from tests.oracles import gpg_home, sq

Q = approval_quorum(2, 3)
GOLDEN = Statement(b"\x11" * 32, PcrSet(b"\x00" * 47 + b"\x01", b"\xab" * 48, b"\xff" * 48),
                   1767225600)
GOLDEN_TEXT = (
    "locksmith forwarding approval v1\n"
    "bundle: " + "11" * 32 + "\n"
    "pcr0: " + "00" * 47 + "01\n"
    "pcr1: " + "ab" * 48 + "\n"
    "pcr2: " + "ff" * 48 + "\n"
    "expires: 2026-01-01T00:00:00Z\n"
    "purpose: release the quorum secret to enclaves measured with these PCRs")


# --- the statement ----------------------------------------------------------------------------


def test_the_statement_is_exactly_the_seven_lines_of_the_design() -> None:
    assert GOLDEN.text() == GOLDEN_TEXT
    assert parse_statement(GOLDEN_TEXT) == GOLDEN


def test_the_signed_bytes_are_the_lines_joined_with_crlf_without_a_final_line_end() -> None:
    assert GOLDEN.signed_bytes() == GOLDEN_TEXT.replace("\n", "\r\n").encode()
    assert not GOLDEN.signed_bytes().endswith(b"\n")


@given(st.binary(min_size=32, max_size=32), st.binary(min_size=144, max_size=144),
       st.integers(0, LATEST_TIME))
def test_every_statement_parses_back_from_its_own_text(digest: bytes, pcrs: bytes,
                                                       expires: int) -> None:
    statement = Statement(digest, PcrSet(pcrs[:48], pcrs[48:96], pcrs[96:]), expires)
    assert parse_statement(statement.text()) == statement


@given(st.integers(0, LATEST_TIME))
def test_times_round_trip_through_the_expires_form(seconds: int) -> None:
    assert parse_time(format_time(seconds)) == seconds


def _line(index: int, text: str) -> str:
    lines = GOLDEN_TEXT.split("\n")
    lines[index] = text
    return "\n".join(lines)


@pytest.mark.parametrize("text,which", [
    (GOLDEN_TEXT + "\n", "8 lines, expected 7"),
    ("\n".join(GOLDEN_TEXT.split("\n")[:6]), "6 lines, expected 7"),
    (_line(0, "locksmith forwarding approval v2"), "title line"),
    (_line(0, "locksmith forwarding approval v1 "), "title line"),
    (_line(0, "locksmith forwarding approval v1\r"), "title line"),
    (_line(1, "bundle: " + "11" * 31 + "1A"), "bundle line"),
    (_line(1, "bundle:  " + "11" * 32), "bundle line"),
    (_line(2, "pcr0: " + "00" * 47 + "1"), "pcr0 line"),
    (_line(2, "pcr1: " + "ab" * 48), "pcr0 line"),
    (_line(3, "pcr1: " + "AB" * 48), "pcr1 line"),
    (_line(4, "pcr2: " + "ff" * 49), "pcr2 line"),
    (_line(5, "expires: 2026-02-30T00:00:00Z"), "expires line"),
    (_line(5, "expires: 2026-12-31T23:59:60Z"), "expires line"),
    (_line(5, "expires: 2026-01-01T00:00:00+00:00"), "expires line"),
    (_line(5, "expires: 2026-01-01"), "expires line"),
    (_line(5, "expires: 1969-12-31T23:59:59Z"), "expires line"),
    (_line(5, "expires: ２026-01-01T00:00:00Z"), "expires line"),
    (_line(6, "purpose: release the quorum secret"), "purpose line"),
])
def test_a_statement_not_in_the_exact_form_names_the_line_that_is_wrong(text: str,
                                                                       which: str) -> None:
    with pytest.raises(ApprovalError) as raised:
        parse_statement(text)
    assert str(raised.value) == f"not an approval (statement: {which})"


def test_values_a_statement_cannot_carry_are_refused_when_it_is_made() -> None:
    with pytest.raises(ApprovalError):
        Statement(b"\x11" * 31, SET_A, NOW)
    with pytest.raises(ApprovalError):
        Statement(b"\x11" * 32, SET_A, -1)
    with pytest.raises(ApprovalError):
        Statement(b"\x11" * 32, SET_A, LATEST_TIME + 1)
    with pytest.raises(ApprovalError):
        PcrSet(b"\x00" * 32, b"\x00" * 48, b"\x00" * 48)


# --- PCR sets ---------------------------------------------------------------------------------


def test_the_set_id_is_the_first_16_hex_of_sha256_over_the_three_pcrs() -> None:
    expected = hashlib.sha256(SET_A.pcr0 + SET_A.pcr1 + SET_A.pcr2).hexdigest()[:16]
    assert SET_A.set_id == expected
    assert approval_name("AB" * 20, SET_A) == f"{'AB' * 20}-{expected}.asc"


def test_only_an_all_zero_set_is_a_debug_set() -> None:
    assert DEBUG.is_debug
    assert not PcrSet(bytes(48), bytes(48), b"\x00" * 47 + b"\x01").is_debug
    assert not SET_A.is_debug


def test_a_set_is_taken_from_an_attestation_pcr_map_ignoring_the_other_pcrs() -> None:
    pcrs = {0: SET_A.pcr0, 1: SET_A.pcr1, 2: SET_A.pcr2, 3: b"\x09" * 48, 8: b"\x08" * 48}
    assert PcrSet.from_pcrs(pcrs) == SET_A
    with pytest.raises(ApprovalError, match="PCR2 is missing"):
        PcrSet.from_pcrs({0: SET_A.pcr0, 1: SET_A.pcr1})
    with pytest.raises(ApprovalError, match="PCR1 must be 48 bytes"):
        PcrSet.from_pcrs({0: SET_A.pcr0, 1: b"\x01" * 32, 2: SET_A.pcr2})


# --- the file ---------------------------------------------------------------------------------


def test_an_approval_file_is_a_cleartext_signed_message_around_the_statement() -> None:
    text = Q.approve(0)
    head = ["-----BEGIN PGP SIGNED MESSAGE-----", "Hash: SHA512", ""]
    lines = text.split("\n")
    assert lines[:3] == head
    assert "\n".join(lines[3:10]) == Q.statement().text()
    assert lines[10] == "-----BEGIN PGP SIGNATURE-----"
    assert text.endswith("-----END PGP SIGNATURE-----\n")
    assert statement_of(text) == Q.statement()


@pytest.mark.parametrize("algorithm,name", [(sigmod.SHA256, "SHA256"),
                                            (sigmod.SHA384, "SHA384"),
                                            (sigmod.SHA512, "SHA512")])
def test_the_hash_header_names_the_hash_the_signature_uses(algorithm: int, name: str) -> None:
    text = Q.approve(1, hash_algorithm=algorithm)
    assert text.split("\n")[1] == f"Hash: {name}"
    assert Q.count([text]).holders_for(SET_A) == (1,)


def test_only_one_text_mode_signature_with_an_accepted_hash_makes_a_file() -> None:
    key = signing_key(Q.privates[0])
    data = sigmod.document(Q.statement().signed_bytes())
    for sig in (sigmod.create(key, data, sigmod.BINARY, created=NOW),
                sigmod.create(key, data, sigmod.TEXT, created=NOW, hash_algorithm=sigmod.SHA1)):
        with pytest.raises(ApprovalError):
            approval_file(Q.statement(), armor("SIGNATURE", sig.packet()))
    with pytest.raises(ApprovalError):
        approval_file(Q.statement(), "-----BEGIN PGP SIGNATURE-----\n\nAAAA\n-----END PGP "
                                     "SIGNATURE-----\n")


def test_the_unverified_statement_is_readable_for_choosing_what_to_present() -> None:
    forged = signed(signing_key(stranger()), Q.statement(SET_B))
    assert statement_of(forged) == Q.statement(SET_B)
    assert statement_of("hello") is None
    assert statement_of(forged.replace("pcr0: b0", "pcr0: B0")) is None


# --- counting ---------------------------------------------------------------------------------


def test_two_distinct_holders_of_a_2_of_3_bundle_approve_a_set_and_one_does_not() -> None:
    one = Q.count([Q.approve(2)])
    assert one.holders_for(SET_A) == (2,) and not one.approves(SET_A)
    two = Q.count([Q.approve(2), Q.approve(0)])
    assert two.holders_for(SET_A) == (0, 2) and two.approves(SET_A)
    assert [(c.holder, c.fingerprint, c.source) for c in two.counted[SET_A]] == [
        (0, Q.fingerprint(0), "file1"), (2, Q.fingerprint(2), "file0")]
    assert two.discarded == () and two.threshold == 2
    assert not two.approves(SET_B) and two.holders_for(SET_B) == ()


def test_approvals_count_only_for_exactly_the_set_they_name() -> None:
    tally = Q.count([Q.approve(0, SET_A), Q.approve(1, SET_B), Q.approve(0, SET_B)])
    assert tally.holders_for(SET_A) == (0,) and tally.holders_for(SET_B) == (0, 1)
    assert tally.approves(SET_B) and not tally.approves(SET_A)
    assert tally.discarded == ()


def _edited(old: str, new: str) -> Callable[[], str]:
    return lambda: Q.approve(0).replace(old, new, 1)


def _with_lines(edit: Callable[[list[str]], list[str]]) -> Callable[[], str]:
    return lambda: "\n".join(edit(Q.approve(0).split("\n")))


def _two_packets() -> str:
    key = signing_key(Q.privates[0])
    sig = sigmod.create(key, sigmod.document(Q.statement().signed_bytes()), sigmod.TEXT,
                        created=NOW)
    block = armor("SIGNATURE", sig.packet() + sig.packet())
    return Q.approve(0).split("-----BEGIN PGP SIGNATURE-----")[0] + block


MALFORMED_CASES: dict[str, Callable[[], str]] = {
    "empty": lambda: "",
    "plain text": lambda: Q.statement().text(),
    "detached signature only": lambda: Q.approve(0).split("\n", 10)[-1],
    "two hash headers": _edited("Hash: SHA512\n", "Hash: SHA512\nHash: SHA512\n"),
    "a list of hashes": _edited("Hash: SHA512\n", "Hash: SHA256, SHA512\n"),
    "SHA-1 named": _edited("Hash: SHA512\n", "Hash: SHA1\n"),
    "header naming another hash": _edited("Hash: SHA512\n", "Hash: SHA256\n"),
    "another armor header": _edited("Hash: SHA512\n", "Comment: hi\n"),
    "no empty line": _edited("Hash: SHA512\n\n", "Hash: SHA512\n"),
    "a dash line in the text": _edited("purpose:", "-purpose:"),
    "no signature": lambda: Q.approve(0).split("-----BEGIN PGP SIGNATURE-----")[0],
    "no END line": lambda: Q.approve(0).replace("-----END PGP SIGNATURE-----\n", ""),
    "text after the signature": lambda: Q.approve(0) + "trailing\n",
    "a second signature block": lambda: Q.approve(0) + Q.approve(1).split("\n", 10)[-1],
    "two signature packets": _two_packets,
    "a broken checksum": lambda: _with_lines(lambda ls: ls[:-3] + ["=AAAA"] + ls[-2:])(),
    "a binary signature": lambda: _binary_signature_file(),
    "over 16 KiB": lambda: _padded(Q.approve(0), MAX_APPROVAL_BYTES + 1),
    "a lone surrogate": lambda: Q.approve(0) + "\ud800",
}


def _padded(text: str, size: int) -> str:
    """`text` with empty lines after the signature (allowed) up to `size` UTF-8 bytes."""
    return text + "\n" * (size - len(text.encode()))


def _sha224_without_header() -> str:
    """A SHA-224 signature, which protocol.md §6 does not accept, with no `Hash:` header to
    give it away before the signature check."""
    key = signing_key(Q.privates[0])
    sig = sigmod.create(key, sigmod.document(Q.statement().signed_bytes()), sigmod.TEXT,
                        created=NOW, hash_algorithm=sigmod.SHA224)
    head = Q.approve(0).split("-----BEGIN PGP SIGNATURE-----")[0].replace("Hash: SHA512\n", "")
    return head + armor("SIGNATURE", sig.packet())


def _binary_signature_file() -> str:
    """A 0x00 signature spliced into an otherwise correct file (approval_file refuses to)."""
    key = signing_key(Q.privates[0])
    sig = sigmod.create(key, sigmod.document(Q.statement().signed_bytes()), sigmod.BINARY,
                        created=NOW)
    return Q.approve(0).split("-----BEGIN PGP SIGNATURE-----")[0] + armor("SIGNATURE",
                                                                          sig.packet())


@pytest.mark.parametrize("case", sorted(MALFORMED_CASES))
def test_a_text_that_is_not_one_cleartext_signed_message_is_discarded_as_malformed(
        case: str) -> None:
    tally = Q.count([Q.approve(1), MALFORMED_CASES[case]()])
    assert [(d.source, d.reason) for d in tally.discarded] == [
        ("file1", "not an approval (malformed cleartext signed message)")]
    assert tally.holders_for(SET_A) == (1,)


def test_a_file_of_exactly_16_kib_is_still_read() -> None:
    padded = _padded(Q.approve(0), MAX_APPROVAL_BYTES)
    assert len(padded.encode()) == MAX_APPROVAL_BYTES
    assert Q.count([padded]).holders_for(SET_A) == (0,)


@pytest.mark.parametrize("name,make", [
    ("crlf line ends", lambda: Q.approve(0).replace("\n", "\r\n")),
    ("no hash header", lambda: Q.approve(0).replace("Hash: SHA512\n", "")),
    ("armor headers in the signature block", lambda: Q.approve(0).replace(
        "-----BEGIN PGP SIGNATURE-----\n", "-----BEGIN PGP SIGNATURE-----\nVersion: x\n")),
    ("dash-escaped statement line", lambda: Q.approve(0).replace("purpose:", "- purpose:")),
])
def test_variants_rfc_4880_allows_are_read(name: str, make: Callable[[], str]) -> None:
    assert Q.count([make()]).holders_for(SET_A) == (0,)


def _retimed(text: str, expires: int) -> str:
    return text.replace(f"expires: {format_time(NOW + DAY)}", f"expires: {format_time(expires)}")


@pytest.mark.parametrize("make,reason", [
    (lambda: Q.approve(0).replace("pcr0: a0", "pcr0: A0"),
     "not an approval (statement: pcr0 line)"),
    (lambda: signed(signing_key(Q.privates[0]), Q.statement(bundle_hash=b"\x22" * 32)),
     "approval for another bundle"),
    (lambda: signed(signing_key(stranger()), Q.statement()),
     "not signed by a holder of this bundle"),
    (lambda: _retimed(Q.approve(0), NOW + 2 * DAY), "not signed by a holder of this bundle"),
    (lambda: signed(load_secret_keys(Q.privates[0]).keys[0].unlock(), Q.statement()),
     "not signed by a holder of this bundle"),  # the certify-only primary key
    (lambda: Q.approve(0, created=NOW + 61), "not signed by a holder of this bundle"),
    (lambda: _sha224_without_header(), "not signed by a holder of this bundle"),
    (lambda: Q.approve(0, expires=NOW), f"expired {format_time(NOW)}"),
    (lambda: Q.approve(0, DEBUG), "approval of a debug-mode PCR set"),
], ids=["statement", "another bundle", "a stranger's key", "an edited statement",
        "a non-signing key", "more than 60 s ahead", "an unaccepted hash", "expired",
        "debug set"])
def test_each_failed_check_discards_the_text_with_its_reason(make: Callable[[], str],
                                                             reason: str) -> None:
    tally = Q.count([make(), Q.approve(1)])
    assert [(d.source, d.reason) for d in tally.discarded] == [("file0", reason)]
    assert tally.holders_for(SET_A) == (1,)
    assert all(tally.holders_for(s) == () for s in (SET_B, DEBUG))


def test_a_signature_up_to_60_s_ahead_and_an_approval_until_one_second_ahead_count() -> None:
    tally = Q.count([Q.approve(0, created=NOW + 60), Q.approve(1, expires=NOW + 1)])
    assert tally.holders_for(SET_A) == (0, 1) and tally.discarded == ()


def test_an_excluded_holder_is_discarded_and_named() -> None:
    tally = Q.count([Q.approve(0), Q.approve(1), Q.approve(2)], excluded={1})
    assert [d.reason for d in tally.discarded] == ["holder 1 is excluded"]
    assert tally.holders_for(SET_A) == (0, 2)


@pytest.mark.parametrize("make,reason", [
    (lambda: signed(signing_key(Q.privates[0]),
                    Q.statement(expires=NOW - 1, bundle_hash=b"\x22" * 32)),
     "approval for another bundle"),
    (lambda: signed(signing_key(stranger()), Q.statement(DEBUG, expires=NOW - 1)),
     "not signed by a holder of this bundle"),
    (lambda: Q.approve(0, DEBUG, expires=NOW - 1), f"expired {format_time(NOW - 1)}"),
])
def test_the_first_failed_check_decides_the_reason(make: Callable[[], str], reason: str) -> None:
    assert [d.reason for d in Q.count([make()]).discarded] == [reason]


def test_the_clock_is_the_callers_now() -> None:
    text = Q.approve(0, expires=NOW + DAY)
    assert Q.count([text], now=NOW + DAY - 1).holders_for(SET_A) == (0,)
    assert [d.reason for d in Q.count([text], now=NOW + DAY).discarded] == [
        f"expired {format_time(NOW + DAY)}"]


# --- one holder, one vote per set -------------------------------------------------------------


def test_a_second_approval_by_one_holder_is_discarded_keeping_the_later_expiring() -> None:
    early, late = Q.approve(0, expires=NOW + DAY), Q.approve(0, expires=NOW + 2 * DAY)
    for texts, loser in (([early, late], "file0"), ([late, early], "file1")):
        tally = Q.count(texts)
        assert [(d.source, d.reason) for d in tally.discarded] == [
            (loser, "duplicate approval by holder 0")]
        assert [(c.holder, c.expires) for c in tally.counted[SET_A]] == [(0, NOW + 2 * DAY)]
        assert not tally.approves(SET_A)


def test_of_two_approvals_expiring_together_the_later_in_input_order_is_discarded() -> None:
    tally = Q.count([("b.asc", Q.approve(1)), ("a.asc", Q.approve(1)),
                     ("c.asc", Q.approve(1, created=NOW - 5))])
    assert [(d.source, d.reason) for d in tally.discarded] == [
        ("a.asc", "duplicate approval by holder 1"), ("c.asc", "duplicate approval by holder 1")]
    assert [c.source for c in tally.counted[SET_A]] == ["b.asc"]


def test_one_holder_approving_two_sets_counts_once_in_each() -> None:
    tally = Q.count([Q.approve(2, SET_A), Q.approve(2, SET_B)])
    assert tally.holders_for(SET_A) == (2,) and tally.holders_for(SET_B) == (2,)
    assert tally.discarded == ()


def test_discarded_texts_are_reported_in_input_order() -> None:
    texts = [("x", "junk"), ("y", Q.approve(0)), ("z", Q.approve(0, DEBUG)), ("w", "junk"),
             ("v", Q.approve(0, expires=NOW + 2 * DAY))]
    assert [d.source for d in Q.count(texts).discarded] == ["x", "y", "z", "w"]


def test_counting_needs_a_threshold() -> None:
    from locksmith.core.forwarding.approval import count_approvals
    with pytest.raises(ValueError):
        count_approvals([], holders=Q.holders, bundle_hash=Q.bundle_hash, threshold=0, now=NOW)


# --- GnuPG and Sequoia ------------------------------------------------------------------------


def _certificate(k: int) -> str:
    return load_secret_keys(Q.privates[k]).certificates[0].public().armored()


@pytest.mark.interop
def test_gnupg_verifies_our_approval_file_with_the_holders_certificate(tmp_path: Path) -> None:
    path = tmp_path / "approval.asc"
    path.write_text(Q.approve(0))
    with gpg_home() as gpg:
        gpg.import_(_certificate(0))
        result = gpg.run("--verify", str(path), status=True)
    status = result.status.decode()
    assert "[GNUPG:] GOODSIG" in status and f" {Q.fingerprint(0)}\n" in status + "\n", status
    assert "VALIDSIG" in status and " 01 " in status  # a text-mode (0x01) signature


@pytest.mark.interop
def test_gnupg_rejects_our_approval_file_once_the_statement_is_edited(tmp_path: Path) -> None:
    path = tmp_path / "approval.asc"
    path.write_text(_retimed(Q.approve(0), NOW + 2 * DAY))
    with gpg_home() as gpg:
        gpg.import_(_certificate(0))
        result = gpg.run("--verify", str(path), status=True, check=False)
    assert result.returncode != 0 and "[GNUPG:] BADSIG" in result.status.decode()


@pytest.mark.interop
def test_sequoia_verifies_our_approval_file_and_outputs_the_statement(tmp_path: Path) -> None:
    (tmp_path / "cert.asc").write_text(_certificate(2))
    (tmp_path / "approval.asc").write_text(Q.approve(2))
    result = sq("verify", "--signer-cert", str(tmp_path / "cert.asc"),
                str(tmp_path / "approval.asc"))
    assert result.stdout.decode().rstrip("\n") == Q.statement().text()
    assert "1 good signature" in result.stderr.decode()


@pytest.mark.interop
@pytest.mark.parametrize("digest", ["SHA512", "SHA384", "SHA256"])
def test_an_approval_gnupg_clearsigned_with_a_holder_key_is_counted(digest: str) -> None:
    with gpg_home() as gpg:
        gpg.import_(Q.privates[1])
        made = gpg.run("--clearsign", "--digest-algo", digest, "--local-user", Q.fingerprint(1),
                       input=Q.statement().text(), faked=str(NOW)).stdout.decode()
    assert made.split("\n")[1] == f"Hash: {digest}"
    tally = Q.count([made, Q.approve(0)])
    assert tally.discarded == () and tally.holders_for(SET_A) == (0, 1)
    assert tally.approves(SET_A)
