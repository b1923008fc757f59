"""Keymaker's request bodies (locksmith/core/keymaker/request.py) under hostile input: the
parser and then the holder validation a request gets before any key is generated.

Allowed to escape: `Refusal` only (an HTTP 400/422 with its `errors` array). The Keymaker
takes these bodies from the network; anything else is a 500 and a traceback in its log.

tests/core/keymaker/test_request.py already fuzzes `parse_request` with random JSON around the
request's members; this adds real holder certificates, packet-mutated and re-armored, so the
mutations reach `validate` (certificate parsing, liveness, eligibility, conflicts).
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from locksmith.core.keymaker import request as km
from locksmith.core.openpgp.armor import armor
from tests.core.protocol_kit import NOW
from tests.fuzz.strategies import (
    armored_packet_mutated, fuzz, json_any, only, outcome, text_mutated,
)
from tests.fuzz.test_fuzz_bundle import HOLDER_CERTS
from tests.fuzz.test_fuzz_openpgp import _public, p256_holder, rsa_holder

ALLOWED = (km.Refusal,)


def _holders() -> list[str]:
    return [*HOLDER_CERTS, armor("PUBLIC KEY BLOCK", _public(rsa_holder()[0])),
            armor("PUBLIC KEY BLOCK", _public(p256_holder()[0]))]


def v0_body(keyring: str, holders: int) -> bytes:
    return json.dumps({"label": {"name": "fuzz"}, "threshold": 1, "max": holders,
                       "keyring": keyring}).encode()


def v1_body(certs: list[str]) -> bytes:
    return json.dumps({"version": "V1", "bundle_id": list(range(16)), "label": {},
                       "keyring": [{"OpenPGP": {"cert": c}} for c in certs],
                       "threshold": 1, "max": len(certs)}).encode()


def _handle(body: bytes) -> None:
    """What the service does with a body before generating anything."""
    request = only(ALLOWED, km.parse_request, body)
    if request is None:
        outcome("refused by parse_request")
        return
    holders = only(ALLOWED, km.validate, request, now=NOW)
    outcome("refused by validate" if holders is None else f"{len(holders)} holders valid")


def test_fuzz_the_unmutated_requests_validate() -> None:
    certs = _holders()
    assert len(km.validate(km.parse_request(v1_body(certs)), now=NOW)) == len(certs)
    assert len(km.validate(km.parse_request(v0_body("".join(certs), len(certs))), now=NOW)) \
        == len(certs)


@st.composite
def mutated_requests(draw: st.DrawFn) -> bytes:
    certs = list(draw(st.lists(st.sampled_from(_holders()), min_size=1, max_size=4)))
    i = draw(st.integers(0, len(certs) - 1))
    certs[i] = draw(st.one_of(armored_packet_mutated(certs[i], "PUBLIC KEY BLOCK"),
                              text_mutated(certs[i], alphabet="=+/-ABab019\n")))
    if draw(st.booleans()):
        return v1_body(certs)
    return v0_body("".join(certs), draw(st.sampled_from([len(certs), len(certs) + 1, 1])))


@fuzz(deadline_ms=3000, scale=3)
@given(st.deferred(mutated_requests))
def test_fuzz_requests_with_mutated_holders_raise_only_refusals(body: bytes) -> None:
    _handle(body)


@fuzz(deadline_ms=3000, scale=2)
@given(st.deferred(lambda: json_any(v1_body(_holders()[:2]))))
def test_fuzz_mutated_request_json_raises_only_refusals(body: str | bytes) -> None:
    raw: Any = body if isinstance(body, bytes) else body.encode("utf-8", "surrogatepass")
    _handle(raw)
