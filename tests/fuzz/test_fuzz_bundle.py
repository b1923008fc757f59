"""Quorum bundles of all three generations under hostile input: `parse_bundle` / `from_json`
(locksmith/core/bundle/model.py), then `check_bundle` (bundle/checks.py) and the hashes of
canonical_cbor.py that consumers take of a parsed bundle.

Allowed to escape: `BundleError` only, from every step (check_bundle maps the OpenPGP and
shardfile layers' errors to it). The canonical-CBOR hashes of a bundle that parsed must not
raise at all: the value model of a parsed bundle is always encodable.

tests/core/bundle/test_model.py already replaces JSON nodes of synthetic bundles (whose certificates
are placeholders) and feeds arbitrary text to `parse_bundle`. This adds the real reference
bundle, in each generation, with its JSON mutated structurally and its armored certificates
and shardfile mutated packet by packet (re-armored with a correct CRC), so the mutations reach
the certificate and shardfile checks behind the JSON.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from locksmith.core import canonical_cbor
from locksmith.core.bundle.checks import check_bundle
from locksmith.core.bundle.model import (
    Bundle, BundleError, BundleV0, BundleV1, BundleV1Data, ImportedV0, OpenPGPKey, WebAuthnKey,
    parse_bundle,
)
from locksmith.core.openpgp.certs import load_certificates
from locksmith.core.protocol.messages import submission_bundle_hash
from tests.conftest import CAUTION_V0
from tests.fuzz.strategies import (
    armored_packet_mutated, fuzz, json_any, only, outcome, text_mutated,
)

ALLOWED = (BundleError,)
V0_TEXT = (CAUTION_V0 / "bundle.json").read_text()
V0 = BundleV0.from_json(V0_TEXT)
HOLDER_CERTS = tuple(cert.armored() for cert in load_certificates(V0.keyring))
V1 = BundleV1(BundleV1Data(bytes(range(16)), {"name": "fuzz"},
                           tuple(OpenPGPKey(c) for c in HOLDER_CERTS), 2, 2, V0.shardfile,
                           V0.public_key), b"\x01" * 8)
V1_WEBAUTHN = BundleV1(BundleV1Data(bytes(16), {}, (OpenPGPKey(HOLDER_CERTS[0]),
                                                    WebAuthnKey(("cred",), HOLDER_CERTS[1])),
                                    1, 2, V0.shardfile, V0.public_key), b"\x02")
IMPORTED = ImportedV0(V0, 2, tuple(OpenPGPKey(c) for c in HOLDER_CERTS))
BUNDLES: dict[str, Bundle] = {"v0": V0, "V1": V1, "V1 WebAuthn": V1_WEBAUTHN,
                              "ImportedV0": IMPORTED}
TEXTS = {name: bundle.to_json() for name, bundle in BUNDLES.items()}


def _check(text: str | bytes) -> None:
    """What every consumer does with a bundle file: parse, check, hash; only BundleError."""
    bundle = only(ALLOWED, parse_bundle, text)
    if bundle is None:
        outcome("refused by parse_bundle")
        return
    submission_bundle_hash(bundle)  # canonical CBOR of the parsed value: must never raise
    if isinstance(bundle, ImportedV0):
        canonical_cbor.imported_v0_content_hash(bundle)
    checked = only(ALLOWED, check_bundle, bundle)
    outcome("refused by check_bundle" if checked is None else f"checked {checked.generation}")
    # The generation-specific readers agree with parse_bundle on what they accept.
    only(ALLOWED, type(bundle).from_json, text)


def test_fuzz_unmutated_bundles_pass_every_check() -> None:
    """The samples are right: each generation parses and checks as it is."""
    for name, text in TEXTS.items():
        checked = check_bundle(parse_bundle(text))
        assert checked.generation == BUNDLES[name].generation


@fuzz(deadline_ms=2000, scale=3)
@given(st.sampled_from(sorted(TEXTS)).flatmap(lambda name: json_any(TEXTS[name])))
def test_fuzz_mutated_bundle_json_raises_only_bundle_errors(text: str | bytes) -> None:
    _check(text)


def _with_field(bundle_dict: dict[str, Any], path: tuple[str | int, ...], value: str) -> str:
    node: Any = bundle_dict
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return json.dumps(bundle_dict, indent=2, ensure_ascii=False)


# Where each generation keeps its armored texts: (generation, path to the string, armor kind).
ARMORED_FIELDS: list[tuple[str, tuple[str | int, ...], str]] = [
    ("v0", ("keyring",), "PUBLIC KEY BLOCK"),
    ("v0", ("public_key",), "PUBLIC KEY BLOCK"),
    ("v0", ("shardfile",), "MESSAGE"),
    ("V1", ("data", "keyring", 0, "OpenPGP", "cert"), "PUBLIC KEY BLOCK"),
    ("V1", ("data", "keyring", 1, "OpenPGP", "cert"), "PUBLIC KEY BLOCK"),
    ("V1", ("data", "public_key"), "PUBLIC KEY BLOCK"),
    ("V1", ("data", "shardfile"), "MESSAGE"),
    ("V1 WebAuthn", ("data", "keyring", 1, "WebAuthn", "cert"), "PUBLIC KEY BLOCK"),
    ("ImportedV0", ("original", "keyring"), "PUBLIC KEY BLOCK"),
    ("ImportedV0", ("original", "public_key"), "PUBLIC KEY BLOCK"),
    ("ImportedV0", ("original", "shardfile"), "MESSAGE"),
    ("ImportedV0", ("keyring", 0, "OpenPGP", "cert"), "PUBLIC KEY BLOCK"),
]


def _field(name: str, path: tuple[str | int, ...]) -> str:
    node: Any = BUNDLES[name].to_dict()
    for key in path:
        node = node[key]
    assert isinstance(node, str)
    return node


@st.composite
def armored_field_mutations(draw: st.DrawFn) -> str:
    """A bundle whose JSON is valid and whose one armored field is packet-mutated (re-armored,
    correct CRC) or text-mutated. v0 and ImportedV0 `keyring_hash` is recomputed, so a
    mutated v0 keyring gets past the checksum to the certificate checks."""
    name, path, kind = draw(st.sampled_from(ARMORED_FIELDS))
    original = _field(name, path)
    value = draw(st.one_of(armored_packet_mutated(original, kind),
                           text_mutated(original, alphabet="=+/-ABCabc0189\n")))
    bundle_dict = BUNDLES[name].to_dict()
    text = _with_field(bundle_dict, path, value)
    if path[-1] == "keyring" and isinstance(value, str):
        target = bundle_dict if name == "v0" else bundle_dict["original"]
        try:
            target["keyring_hash"] = list(BundleV0.new({}, value, "", "").keyring_hash)
        except UnicodeEncodeError:
            pass
        text = json.dumps(bundle_dict, indent=2, ensure_ascii=False)
    return text


@fuzz(deadline_ms=3000, scale=3)
@given(armored_field_mutations())
def test_fuzz_mutated_certificates_and_shardfiles_raise_only_bundle_errors(text: str) -> None:
    _check(text.encode("utf-8", "surrogatepass"))
