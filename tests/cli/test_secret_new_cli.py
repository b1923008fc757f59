"""`caution secret new` (cli.md §3) against a real keymaker process (simulated NSM), and its
client's checks of a Keymaker response (keymaker.md §8.3) against crafted responses."""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from locksmith.core.attestation.nsm_simulated import SimulatedNsm
from locksmith.core.bundle.model import BundleV0, BundleV1, OpenPGPKey
from locksmith.core.keymaker import request as km
from locksmith.core.openpgp.armor import armor
from locksmith.core.openpgp.certs import load_certificates
from locksmith.personalities.caution.keymaker_client import (
    QuorumRequest, check_response, post_request,
)
from locksmith.personalities.caution.ui import CliError
from locksmith.personalities.keymaker.service import KeymakerService
from tests.cli.clirun import Result, caution
from tests.keymaker_helpers import (
    Holder, KeymakerProcess, custom_cert, keygen_holders, recovered_secret, running_keymaker,
)
from tests.oracles import GpgKey, gpg_home

Capsys = pytest.CaptureFixture[str]
NO_POLICY = ("warning: no Keymaker PCR policy; the proof was checked against the trust root but "
             "not against expected Keymaker code")


@pytest.fixture(scope="module")
def nsm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("nsm")
    SimulatedNsm.open(path)
    return path


@pytest.fixture(scope="module")
def keymaker(nsm_dir: Path) -> Iterator[KeymakerProcess]:
    with running_keymaker("--nsm", "simulated", "--nsm-dir", str(nsm_dir)) as process:
        yield process


@pytest.fixture(scope="module")
def holders() -> list[Holder]:
    return keygen_holders(3, "new")


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, keymaker: KeymakerProcess) -> KeymakerProcess:
    monkeypatch.setenv("KEYMAKER_URL", keymaker.url + "/")
    return keymaker


def _keyring(tmp_path: Path, *texts: str) -> Path:
    path = tmp_path / "keyring.asc"
    path.write_text("".join(texts))
    return path


def _repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "Procfile").write_text("web: app\n")
    return repo


def new(capsys: Capsys, workdir: Path, *args: str) -> Result:
    return caution(capsys, "--workdir", str(workdir), "secret", "new", *args)


def _trusted(nsm_dir: Path, policy: bool = True) -> list[str]:
    args = ["--trust-root", str(nsm_dir / "root.pem")]
    return args + (["--keymaker-pcr-policy", str(nsm_dir / "keymaker-pcr-policy.json")]
                   if policy else [])


def test_keymaker_url_is_required_before_the_keyring_is_read(
        capsys: Capsys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KEYMAKER_URL", raising=False)
    result = new(capsys, tmp_path, str(tmp_path / "absent.asc"))
    assert result.code == 1
    assert result.err.strip() == "error: KEYMAKER_URL environment variable is required"


def test_v1_bundle_is_saved_verified_and_inspect_rejects_any_tampering(
        capsys: Capsys, tmp_path: Path, env: KeymakerProcess, nsm_dir: Path,
        holders: list[Holder]) -> None:
    repo = _repo(tmp_path)
    keyring = _keyring(tmp_path, *(h.public for h in holders))
    result = new(capsys, repo, str(keyring), "--threshold", "2", "--max", "3", "--name", "demo",
                 "--label", "env=dev", "--no-upload", *_trusted(nsm_dir))
    assert result.code == 0, result.err
    lines = result.err.splitlines()
    assert "Generating quorum (threshold=2, max=3)..." in lines
    assert any(line.startswith("Keymaker proof verified (PCR set 0, generated 20") for line in lines)
    assert lines[-1] == f"Saved to: {Path('.caution/quorum-bundle.json')}"
    assert result.out == ""
    saved = repo / ".caution" / "quorum-bundle.json"
    assert stat.S_IMODE(saved.stat().st_mode) == 0o644
    text = saved.read_text()
    assert not text.endswith("\n") and text.startswith('{\n  "data": {\n    "version": "V1",')
    bundle = BundleV1.from_json(text)
    assert dict(bundle.data.label) == {"env": "dev", "name": "demo"}
    assert bundle.data.bundle_id[6] >> 4 == 4  # UUIDv4 version bits
    recovered_secret(bundle, holders, 2)

    def inspect(path: Path) -> Result:
        return caution(capsys, "secret", "inspect", str(path), *_trusted(nsm_dir))

    assert inspect(saved).code == 0
    raw = json.loads(text)
    tampered: list[dict[str, Any]] = [
        {**raw["data"], "label": {**raw["data"]["label"], "name": "evil"}},
        {**raw["data"], "threshold": 1},
        {**raw["data"], "keyring": [raw["data"]["keyring"][i] for i in (1, 0, 2)]},
    ]
    for index, data in enumerate(tampered):
        path = tmp_path / f"tampered{index}.json"
        path.write_text(json.dumps({"data": data, "necroproof": raw["necroproof"]}, indent=2))
        result = inspect(path)
        assert result.code == 1, data
        assert ("error: keymaker necroproof did not match any PCR set valid at the necroproof "
                "timestamp (1 attempts): set 0: nonce did not match") in result.err


def test_without_a_policy_new_refuses_before_the_keymaker_is_called(
        capsys: Capsys, tmp_path: Path, env: KeymakerProcess, nsm_dir: Path,
        holders: list[Holder]) -> None:
    keyring = _keyring(tmp_path, holders[0].public)
    before = env.count("generated quorum")
    result = new(capsys, tmp_path, str(keyring), "--output", str(tmp_path / "b.json"),
                 *_trusted(nsm_dir, False))
    assert result.code == 1
    assert result.err.splitlines()[-1] == (
        "error: no Keymaker PCR policy: the bundle's Keymaker attestation would be checked "
        "against the trust root only, so any Nitro enclave could have made it; pass "
        "--keymaker-pcr-policy FILE (or commit .caution/keymaker-pcr-policy.json), or "
        "--unsafe-no-keymaker-policy to accept that risk")
    assert env.count("generated quorum") == before and not (tmp_path / "b.json").exists()


def test_with_the_unsafe_option_the_proof_is_still_checked_against_the_trust_root(
        capsys: Capsys, tmp_path: Path, env: KeymakerProcess, nsm_dir: Path,
        holders: list[Holder]) -> None:
    keyring = _keyring(tmp_path, holders[0].public)
    out = tmp_path / "bundle.json"
    result = new(capsys, tmp_path, str(keyring), "--output", str(out), *_trusted(nsm_dir, False),
                 "--unsafe-no-keymaker-policy")
    assert result.code == 0, result.err
    assert NO_POLICY in result.err.splitlines()
    assert BundleV1.from_json(out.read_text()).data.threshold == 1  # one holder: 1-of-1
    # The repository's default policy file is used when present.
    repo = _repo(tmp_path)
    (repo / ".caution").mkdir()
    (repo / ".caution" / "keymaker-pcr-policy.json").write_bytes(
        (nsm_dir / "keymaker-pcr-policy.json").read_bytes())
    result = new(capsys, repo, str(keyring), *_trusted(nsm_dir, False))
    assert result.code == 0 and "Keymaker proof verified (PCR set 0" in result.err


def test_a_proof_from_an_untrusted_root_is_refused_and_nothing_is_saved(
        capsys: Capsys, tmp_path: Path, env: KeymakerProcess, nsm_dir: Path,
        holders: list[Holder]) -> None:
    repo = _repo(tmp_path)
    result = new(capsys, repo, str(_keyring(tmp_path, holders[0].public)),
                 "--keymaker-pcr-policy", str(nsm_dir / "keymaker-pcr-policy.json"))
    assert result.code == 1
    assert result.err.splitlines()[-2:] == [
        "error: keymaker necroproof did not match any PCR set valid at the necroproof timestamp "
        "(1 attempts): set 0: certificate chain does not lead to the trusted root",
        "  caused by: this document comes from a simulated (development) NSM: pass --trust-root "
        "<its NSM directory>/root.pem to trust that root"]
    assert not (repo / ".caution").exists()


def test_outside_a_repository_the_bundle_goes_to_stdout(
        capsys: Capsys, tmp_path: Path, env: KeymakerProcess, nsm_dir: Path,
        holders: list[Holder]) -> None:
    result = new(capsys, tmp_path, str(_keyring(tmp_path, *(h.public for h in holders[:2]))),
                 "--threshold", "1", "--max", "2", *_trusted(nsm_dir))
    assert result.code == 0, result.err
    said = result.err.splitlines()
    warning = said.index("Warning: not in a Caution repository, outputting bundle to stdout")
    assert said[warning + 1].startswith("A Caution repository has a Procfile, caution.hcl or "
                                        ".caution/deployment.json")
    assert "--output FILE" in said[warning + 1] and ".caution/quorum-bundle.json" in said[warning + 1]
    assert BundleV1.from_json(result.out).data.max == 2


def test_an_unreachable_keymaker_is_named_with_its_url(
        capsys: Capsys, tmp_path: Path, holders: list[Holder],
        monkeypatch: pytest.MonkeyPatch) -> None:
    import socket
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("KEYMAKER_URL", f"http://127.0.0.1:{port}")
    result = new(capsys, _repo(tmp_path), str(_keyring(tmp_path, holders[0].public)),
                 "--format", "v0")
    assert result.code == 1
    said = result.err.splitlines()
    assert said[-3] == "error: Failed to connect to Keymaker service"
    assert said[-2].startswith(f"  caused by: http://127.0.0.1:{port}/generate_quorum: ")
    assert said[-1] == "  caused by: is KEYMAKER_URL right, and is the Keymaker running?"


def test_an_existing_bundle_is_refused_before_the_keymaker_is_called(
        capsys: Capsys, tmp_path: Path, env: KeymakerProcess, nsm_dir: Path,
        holders: list[Holder]) -> None:
    repo = _repo(tmp_path)
    (repo / ".caution").mkdir()
    existing = repo / ".caution" / "quorum-bundle.json"
    existing.write_text("old")
    before = env.count("generated quorum")
    keyring = str(_keyring(tmp_path, holders[0].public))
    result = new(capsys, repo, keyring, *_trusted(nsm_dir))
    assert result.code == 1
    assert result.err.splitlines()[-1] == (
        f"error: {Path('.caution/quorum-bundle.json')} already exists; pass --force to replace "
        "it (the old bundle is needed to decrypt secrets encrypted to it)")
    assert existing.read_text() == "old" and env.count("generated quorum") == before
    assert new(capsys, repo, keyring, "--force", *_trusted(nsm_dir)).code == 0
    assert BundleV1.from_json(existing.read_text()).data.max == 1


def test_a_gnupg_exported_keyring_of_two_armor_blocks_works(
        capsys: Capsys, tmp_path: Path, env: KeymakerProcess, nsm_dir: Path,
        gpg_ed25519_holder: GpgKey, gpg_rsa_holder: GpgKey) -> None:
    keys = (gpg_ed25519_holder, gpg_rsa_holder)
    with gpg_home() as gpg:
        for key in keys:
            gpg.import_(key.public)
        keyring = b"".join(gpg.run("--export", "--armor", key.fingerprint).stdout for key in keys)
    assert keyring.count(b"-----BEGIN PGP PUBLIC KEY BLOCK-----") == 2
    path = tmp_path / "k"
    path.write_bytes(keyring)
    out = tmp_path / "bundle.json"
    result = new(capsys, tmp_path, str(path), "--threshold", "2", "--max", "2",
                 "--output", str(out), *_trusted(nsm_dir))
    assert result.code == 0, result.err
    holders = [Holder(k.fingerprint, armor("PUBLIC KEY BLOCK", k.public), k.secret) for k in keys]
    recovered_secret(BundleV1.from_json(out.read_text()), holders, 2)


def test_a_certificate_without_an_authentication_key_is_refused_naming_it(
        capsys: Capsys, tmp_path: Path, env: KeymakerProcess) -> None:
    keyring = _keyring(tmp_path, custom_cert("NoAuth", roles=("sign", "storage")))
    result = new(capsys, tmp_path, str(keyring))
    assert result.code == 1
    assert result.err.splitlines() == [
        "Keyring has no Keymaker-eligible certificates (each needs signing + authentication + "
        "storage-encryption subkeys):",
        "  - NoAuth <noauth@example.org> \u2014 missing: authentication",
        "error: keyring contains no Keymaker-eligible public certificates (each certificate "
        "needs signing, authentication, and storage-encryption keys)",
    ]


def test_ineligible_certificates_are_really_excluded_and_v0_works(
        capsys: Capsys, tmp_path: Path, env: KeymakerProcess, holders: list[Holder]) -> None:
    keyring = _keyring(tmp_path, holders[0].public, custom_cert("Sig", roles=("sign",)),
                       holders[1].private.decode())
    result = new(capsys, tmp_path, str(keyring), "--threshold", "2", "--max", "2",
                 "--format", "v0", "--output", str(tmp_path / "b.json"))
    assert result.code == 0, result.err
    lines = result.err.splitlines()
    assert f"warning: {keyring} contains secret key material; only the public parts are used" in lines
    assert ("Warning: 1 certificate(s) in the keyring lack required subkeys and will be excluded "
            "from the quorum:") in lines
    assert "  - Sig <sig@example.org> \u2014 missing: authentication, storage-encryption" in lines
    assert ("warning: v0 bundles carry no Keymaker proof; the result is only as trustworthy as "
            "the connection to KEYMAKER_URL") in lines
    bundle = BundleV0.from_json((tmp_path / "b.json").read_text())
    assert bundle.keyring.count("-----BEGIN PGP PUBLIC KEY BLOCK-----") == 1  # normalised
    recovered_secret(bundle, holders[:2], 2)


@pytest.mark.parametrize("args,message", [
    ([], "--threshold is required when the keyring has more than one holder"),
    (["--threshold", "1"], "--threshold requires --max"),
    (["--max", "2"], "--max requires --threshold"),
    (["--threshold", "1", "--max", "3"], "--max (3) must match the number of Keymaker-eligible "
     "public certificates in the keyring (2); use --max 2, or pass a keyring with exactly 3 "
     "eligible certificate(s)"),
    (["--threshold", "3", "--max", "2"], "--threshold must be between 1 and --max (got "
     "threshold=3, max=2)"),
    (["--threshold", "0", "--max", "2"], "--threshold must be between 1 and --max (got "
     "threshold=0, max=2)"),
    (["--label", "novalue"], "--label 'novalue' must be KEY=VALUE"),
    (["--label", "a=1", "--label", "a=2"], "--label key 'a' given more than once"),
    (["--name", "x", "--label", "name=y"], "--name and --label name=... cannot both be given"),
    (["--format", "v2"], "invalid --format value 'v2' (expected v1 or v0)"),
])
def test_parameter_errors_are_usage_errors(capsys: Capsys, tmp_path: Path, env: KeymakerProcess,
                                           holders: list[Holder], args: list[str],
                                           message: str) -> None:
    before = env.count("generated quorum")
    result = new(capsys, tmp_path, str(_keyring(tmp_path, holders[0].public, holders[1].public)),
                 *args)
    assert (result.code, result.err.strip()) == (2, f"error: {message}")
    assert env.count("generated quorum") == before


# --- the client's checks, against crafted responses -------------------------------------------


def _transport(status: int, body: bytes) -> httpx.MockTransport:
    return httpx.MockTransport(lambda request: httpx.Response(status, content=body))


def test_keymaker_errors_are_quoted_escaped_and_cut() -> None:
    request = QuorumRequest.v1({}, 1, 1, ["C"])
    body = b"bad\x01\x7f\xc2\x85 \xff" + b"x" * 600
    with pytest.raises(CliError) as info:
        post_request("http://keymaker", request, _transport(400, body))
    assert info.value.message == (
        "Keymaker error (400 Bad Request): bad\\x01\\x7f\\x85 \ufffd" + "x" * 492
        + " (if this Keymaker only speaks the v0 API, retry with --format v0)")
    with pytest.raises(CliError) as info:
        post_request("http://keymaker", request, _transport(503, b'{"errors":["x"]}'))
    assert info.value.message == 'Keymaker error (503 Service Unavailable): {"errors":["x"]}'


def test_an_unreachable_keymaker_is_a_connection_failure() -> None:
    with pytest.raises(CliError) as info:
        post_request("http://127.0.0.1:9", QuorumRequest.v0({}, 1, 1, "K"))
    assert info.value.message == "Failed to connect to Keymaker service"


def _response(nsm_dir: Path, request: QuorumRequest, holders: list[Holder]) -> dict[str, Any]:
    service = KeymakerService(SimulatedNsm.open(nsm_dir), "simulated")
    parsed = km.parse_request(request.body())
    certs = [load_certificates(h.public)[0] for h in holders]
    return dict(json.loads(service.generate(parsed, certs)))


def _refused(request: QuorumRequest, body: dict[str, Any] | bytes) -> str:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    with pytest.raises(CliError) as info:
        check_response(request, raw)
    return info.value.message


def test_v1_responses_must_echo_the_request_and_have_the_keymaker_shape(
        nsm_dir: Path, holders: list[Holder]) -> None:
    request = QuorumRequest.v1({"name": "n"}, 1, 2, [h.public for h in holders[:2]])
    good = _response(nsm_dir, request, holders[:2])
    assert isinstance(check_response(request, json.dumps(good).encode()), BundleV1)
    data = good["data"]
    single = _response(nsm_dir, QuorumRequest.v1({}, 1, 1, [holders[0].public]), holders[:1])
    cases = {
        "Keymaker response does not match the request (bundle_id)": {"bundle_id": [0] * 16},
        "Keymaker response does not match the request (label)": {"label": {}},
        "Keymaker response does not match the request (keyring)":
            {"keyring": data["keyring"][::-1]},
        "Keymaker response is invalid: public_key is not a Keymaker quorum certificate":
            {"public_key": holders[0].public},
        "Keymaker response is invalid: shardfile has 2 messages, expected 3":
            {"shardfile": single["data"]["shardfile"]},
    }
    for message, change in cases.items():
        assert _refused(request, {"data": {**data, **change}, "necroproof": [1]}) == message
    assert _refused(request, b"<html>") == "Failed to parse Keymaker response"
    assert _refused(request, {**good, "extra": 1}) == "Failed to parse Keymaker response"


def test_v0_responses_must_echo_the_keyring_hash_it_and_carry_no_proof(
        nsm_dir: Path, holders: list[Holder]) -> None:
    keyring = holders[0].public
    request = QuorumRequest.v0({}, 1, 1, keyring)
    good = _response(nsm_dir, request, holders[:1])
    assert isinstance(check_response(request, json.dumps({**good, "extra": 1}).encode()), BundleV0)
    assert _refused(request, {**good, "keyring_hash": [0] * 32}) == (
        "Keymaker response is invalid: keyring_hash does not match keyring")
    assert _refused(request, {**good, "necroproof": [1]}) == (
        "Keymaker response is invalid: necroproof is not empty")
    other = _response(nsm_dir, QuorumRequest.v0({}, 1, 1, holders[1].public), holders[1:2])
    assert _refused(request, other) == "Keymaker response does not match the request (keyring)"
    assert _refused(request, {**good, "label": {"x": "y"}}) == (
        "Keymaker response does not match the request (label)")


def test_the_request_bodies_have_the_spec_shapes(holders: list[Holder]) -> None:
    v1 = json.loads(QuorumRequest.v1({"a": "b"}, 1, 1, [holders[0].public]).body())
    assert list(v1) == ["version", "bundle_id", "label", "keyring", "threshold", "max"]
    assert v1["keyring"] == [OpenPGPKey(holders[0].public).to_dict()]
    v0 = json.loads(QuorumRequest.v0({}, 1, 1, "K").body())
    assert list(v0) == ["keyring", "label", "max", "threshold"]


def test_a_public_test_secret_bundle_is_flagged(capsys: Capsys, tmp_path: Path, nsm_dir: Path,
                                                holders: list[Holder],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    with running_keymaker("--nsm", "simulated", "--nsm-dir", str(nsm_dir),
                          env={"CAUTION_UNSAFE_KEY_SERVICE_E2E": "1"}) as hooked:
        monkeypatch.setenv("KEYMAKER_URL", hooked.url)
        result = new(capsys, tmp_path, str(_keyring(tmp_path, holders[0].public)),
                     "--output", str(tmp_path / "b.json"), *_trusted(nsm_dir))
    assert result.code == 0, result.err
    assert ("warning: this bundle's quorum key comes from the public test secret; anything "
            "encrypted to it can be read by anyone") in result.err.splitlines()
    assert hooked.count("PUBLIC test entropy") >= 2  # at start and for the request


@pytest.mark.parametrize("url,warned", [
    ("http://keymaker.example:8080", True), ("https://keymaker.example", False),
    ("http://127.0.0.1:8080", False), ("http://localhost:8080", False), ("http://[::1]:1", False),
])
def test_plain_http_to_a_remote_host_is_warned_about(capsys: Capsys, url: str,
                                                     warned: bool) -> None:
    from locksmith.personalities.caution.new import _warn_if_unauthenticated

    _warn_if_unauthenticated(url, "v0")
    err = capsys.readouterr().err
    assert bool(err) == warned
    if warned:
        assert err.startswith("warning: KEYMAKER_URL uses plain http:// to keymaker.example")
        assert "--format v0 nothing else protects the result" in err
