"""keymaker.md §3–§4: which answer a request body gets, without a server.

Parsing gives 400 (JSON, duplicates, non-object, version) or 422 (shape); validation gives 400
with the spec's reasons: the V1 per-holder table a–i in holder order, and for v0 one entry per
ineligible certificate.
"""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from locksmith.core.bundle.model import OpenPGPKey, WebAuthnKey
from locksmith.core.canonical_cbor import bundle_hash, proof_nonce
from locksmith.core.keymaker import request as km
from locksmith.core.keymaker.quorum import Quorum
from locksmith.core.openpgp.certs import load_certificates
from tests.core.test_canonical_cbor import DERIVED_HASH, DERIVED_NONCE
from tests.keymaker_helpers import Holder, custom_cert, keygen_holders, shared_storage_key

V1_BASE: dict[str, Any] = {"version": "V1", "bundle_id": list(range(16)), "label": {},
                           "keyring": [{"OpenPGP": {"cert": "C"}}], "threshold": 1, "max": 1}
V0_BASE: dict[str, Any] = {"label": {}, "threshold": 1, "max": 1, "keyring": "K"}
PARAMETERS = ("invalid quorum parameters: threshold={t}, max={m}, holders={n} "
              "(need 1 <= threshold <= max <= 254 and max == number of holders)")
REQUIREMENTS = ("requires a public certificate with live signing, authentication and "
                "storage-encryption keys")


@pytest.fixture(scope="module")
def holders() -> list[Holder]:
    return keygen_holders(3, "req")


def refusal(body: bytes | dict[str, Any]) -> km.Refusal:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    with pytest.raises(km.Refusal) as info:
        km.parse_request(raw)
    return info.value


def v1(**changes: Any) -> dict[str, Any]:
    return {**V1_BASE, **changes}


def v0(**changes: Any) -> dict[str, Any]:
    return {**V0_BASE, **changes}


def test_invalid_json_is_400_with_the_parser_message() -> None:
    refused = refusal(b'{"label": {}')
    assert refused.status == 400 and refused.errors[0] == "invalid JSON body"
    assert len(refused.errors) == 2 and refused.errors[1]


@pytest.mark.parametrize("body,errors", [
    (b'{"label":{},"label":{}}', ["duplicate member 'label'"]),
    (b'{"version":"V1","label":{"a":"1","a":"2"}}', ["duplicate member 'a'"]),
    (b"[]", ["request body must be a JSON object"]),
    (b'"V1"', ["request body must be a JSON object"]),
    (b'{"version":"V2"}', ["version: unsupported request version"]),
    (b'{"version":1,"threshold":1}', ["version: unsupported request version"]),
    (b'{"version":null}', ["version: unsupported request version"]),
])
def test_bad_bodies_are_400(body: bytes, errors: list[str]) -> None:
    refused = refusal(body)
    assert (refused.status, refused.errors) == (400, errors)


@pytest.mark.parametrize("body,detail", [
    ({"label": {}, "threshold": 1, "max": 1}, "request: missing member 'keyring'"),
    (v0(threshold=256), "threshold: expected an integer 0..255"),
    (v0(threshold=-1), "threshold: expected an integer 0..255"),
    (v0(max=True), "max: expected an integer 0..255"),
    (v0(max=1.0), "max: expected an integer 0..255"),
    (v0(keyring=["K"]), "keyring: expected a string"),
    (v0(label={"name": 1}), "label.name: expected a string"),
    (v0(label=[]), "label: expected an object"),
    (v1(extra=1), "request: unknown member 'extra'"),
    ({k: v for k, v in V1_BASE.items() if k != "max"}, "request: missing member 'max'"),
    (v1(bundle_id=list(range(15))), "bundle_id: expected an array of 16 integers 0..255"),
    (v1(bundle_id=[256] + list(range(15))), "bundle_id[0]: expected an integer 0..255"),
    (v1(keyring={}), "keyring: expected an array"),
    (v1(keyring=[{"Foo": {}}]), "keyring[0]: unknown member 'Foo'"),
    (v1(keyring=[{}]), "keyring[0]: expected exactly one member, OpenPGP or WebAuthn"),
    (v1(keyring=[{"OpenPGP": {"cert": "C", "x": 1}}]), "keyring[0].OpenPGP: unknown member 'x'"),
    (v1(keyring=[{"OpenPGP": {"cert": 1}}]), "keyring[0].OpenPGP.cert: expected a string"),
    (v1(keyring=[{"WebAuthn": {"cert": "C"}}]), "keyring[0].WebAuthn: missing member 'credential'"),
    (v1(threshold=300), "threshold: expected an integer 0..255"),
])
def test_wrong_shapes_are_422_naming_the_field(body: dict[str, Any], detail: str) -> None:
    refused = refusal(body)
    assert (refused.status, refused.errors) == (422, ["could not parse request", detail])


def test_v0_ignores_unknown_members_and_v1_keeps_every_entry_as_sent() -> None:
    assert km.parse_request(json.dumps(v0(note={"any": [1]})).encode()) == km.V0Request(
        {}, "K", 1, 1)
    entries = [{"OpenPGP": {"cert": "A\r\n"}}, {"WebAuthn": {"credential": ["x"], "cert": "B"}}]
    parsed = km.parse_request(json.dumps(v1(keyring=entries, max=2)).encode())
    assert isinstance(parsed, km.V1Request)
    assert parsed.keyring == (OpenPGPKey("A\r\n"), WebAuthnKey(("x",), "B"))


def test_the_service_hashes_what_the_spec_hashes() -> None:
    body = {"version": "V1", "bundle_id": list(range(16)), "label": {"name": "t", "env": "dev"},
            "keyring": [{"OpenPGP": {"cert": "C"}}, {"WebAuthn": {"credential": ["x"], "cert": "D"}}],
            "threshold": 1, "max": 2}
    parsed = km.parse_request(json.dumps(body).encode())
    assert isinstance(parsed, km.V1Request)
    data = km.v1_data(parsed, Quorum(shardfile="S", public_key="P", fingerprint="F"))
    assert list(data.label) == ["env", "name"]  # written sorted by name
    assert bundle_hash(data).hex() == DERIVED_HASH
    assert proof_nonce(bundle_hash(data)).hex() == DERIVED_NONCE


@given(st.dictionaries(st.text(), st.text(), max_size=5))
def test_labels_round_trip_and_are_sorted_bytewise(label: dict[str, str]) -> None:
    parsed = km.parse_request(json.dumps(v0(label=label)).encode())
    assert parsed.label == label
    names = list(km.sorted_label(label))
    assert [n.encode() for n in names] == sorted(n.encode() for n in names)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 300) | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12)


@given(st.one_of(
    st.binary(max_size=64),
    _JSON.map(lambda v: json.dumps(v).encode()),
    st.dictionaries(st.sampled_from(list(V1_BASE) + ["x"]), _JSON).map(
        lambda d: json.dumps({**V1_BASE, **d}).encode()),
    st.dictionaries(st.sampled_from(list(V0_BASE) + ["x"]), _JSON).map(
        lambda d: json.dumps({**V0_BASE, **d}).encode()),
))
def test_any_body_gives_a_request_or_a_400_or_422(body: bytes) -> None:
    try:
        parsed = km.parse_request(body)
    except km.Refusal as refused:
        assert refused.status in (400, 422) and refused.errors and all(refused.errors)
    else:
        assert isinstance(parsed, (km.V0Request, km.V1Request))
        assert 0 <= parsed.threshold <= 255 and 0 <= parsed.max <= 255


# --- validation (§4) ---------------------------------------------------------------------------


def _v1_request(certs: list[str], threshold: int = 1, max_: int | None = None) -> km.V1Request:
    return km.V1Request(bytes(16), {}, tuple(OpenPGPKey(c) for c in certs), threshold,
                        len(certs) if max_ is None else max_)


def _invalid(request: km.Request) -> list[str]:
    with pytest.raises(km.Refusal) as info:
        km.validate(request, now=int(time.time()))
    assert info.value.status == 400 and info.value.errors[0] == "could not generate quorum"
    return info.value.errors[1:]


@pytest.mark.parametrize("t,m,n", [(0, 1, 1), (2, 1, 1), (1, 2, 1), (1, 0, 0), (1, 255, 255)])
def test_v1_reference_parameter_cases_fail(t: int, m: int, n: int) -> None:
    assert _invalid(_v1_request(["C"] * n, t, m)) == [PARAMETERS.format(t=t, m=m, n=n)]


def _no_self_signature(text: str) -> str:
    cert = load_certificates(text)[0]
    return dataclasses.replace(cert, components=tuple(
        dataclasses.replace(c, signatures=()) for c in cert.components)).armored()


def test_v1_holder_reasons_follow_the_table(holders: list[Holder]) -> None:
    good = holders[0].public
    shared = shared_storage_key()
    cases = {
        "missing certificate": [" \n\t"],
        "malformed certificate": ["not a certificate"],
        "each holder must contain exactly one certificate": [holders[1].public + holders[2].public],
        REQUIREMENTS: [holders[1].private.decode()],
        "certificate does not satisfy policy": [_no_self_signature(holders[1].public)],
        "certificate is expired or revoked": [custom_cert("Old", created=int(time.time()) - 1000,
                                                          key_expiration=100)],
        "duplicate holder certificate": [good],
        "holders must not share an encryption key": [custom_cert("Twin", storage=shared)],
    }
    for reason, (second,) in cases.items():
        first = custom_cert("Twin0", storage=shared) if "share" in reason else good
        assert _invalid(_v1_request([first, second])) == [
            f"invalid certificate at index 1: {reason}"], reason
    assert _invalid(_v1_request([custom_cert("NoAuth", roles=("sign", "storage"))])) == [
        f"invalid certificate at index 0: {REQUIREMENTS}"]


def test_v1_reports_the_first_holder_in_order(holders: list[Holder]) -> None:
    a, b = holders[0].public, holders[1].public
    assert _invalid(_v1_request([a, a, "junk"])) == [
        "invalid certificate at index 1: duplicate holder certificate"]
    assert _invalid(_v1_request([a, "junk", a])) == [
        "invalid certificate at index 1: malformed certificate"]
    assert _invalid(_v1_request([a, b, "", b])) == [
        "invalid certificate at index 2: missing certificate"]


def test_v1_accepts_webauthn_entries_on_their_cert_and_keeps_order(holders: list[Holder]) -> None:
    request = km.V1Request(bytes(16), {}, (WebAuthnKey(("cred",), holders[2].public),
                                           OpenPGPKey(holders[0].public)), 2, 2)
    certs = km.validate(request, now=int(time.time()))
    assert [c.fingerprint for c in certs] == [holders[2].fingerprint, holders[0].fingerprint]


def test_v0_refuses_every_ineligible_certificate_with_one_entry_each(holders: list[Holder]) -> None:
    no_auth = custom_cert("NoAuth", roles=("sign", "storage"))
    old = custom_cert("Old", created=int(time.time()) - 1000, key_expiration=100)
    keyring = holders[0].public + no_auth + old
    fprs = [load_certificates(c)[0].fingerprint for c in (no_auth, old)]
    assert _invalid(km.V0Request({}, keyring, 1, 3)) == [
        "keyring contains no Keymaker-eligible public certificates",
        f"certificate {fprs[0]} is not Keymaker-eligible: missing authentication",
        f"certificate {fprs[1]} is not Keymaker-eligible: primary key is expired or revoked",
    ]


@pytest.mark.parametrize("keyring_of,reason", [
    (lambda h: "", "keyring contains no Keymaker-eligible public certificates"),
    (lambda h: h[0].private.decode(), "keyring contains secret key material"),
    (lambda h: h[0].public + h[0].public, "duplicate holder certificate"),
    (lambda h: h[0].public + h[1].public, PARAMETERS.format(t=3, m=2, n=2)),
])
def test_v0_validation_reasons(holders: list[Holder], keyring_of: Any, reason: str) -> None:
    assert _invalid(km.V0Request({}, keyring_of(holders), 3, 2)) == [reason]


def test_v0_unparsable_keyring_names_the_problem() -> None:
    (reason,) = _invalid(km.V0Request({}, "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n!!\n", 1, 1))
    assert reason.startswith("could not parse keyring: ")
