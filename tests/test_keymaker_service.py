"""The keymaker personality over HTTP: in-process (httpx ASGI transport) and a real uvicorn.

Every generation is checked by recovering the secret from the holders' shares (every
threshold-subset recovers it, no smaller one does) and, for V1, by verifying the proof.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from locksmith.core.attestation.nsm_simulated import SimulatedNsm
from locksmith.core.bundle.checks import TEST_SECRET_FINGERPRINT, check_bundle
from locksmith.core.bundle.keymaker_proof import verify_keymaker_proof
from locksmith.core.bundle.model import BundleV0, BundleV1
from locksmith.personalities.keymaker.app import create_app
from locksmith.personalities.keymaker.service import KeymakerService
from tests.keymaker_helpers import (
    Holder, KeymakerProcess, keygen_holders, policy_and_root, recovered_secret, running_keymaker,
)

JSON = {"content-type": "application/json"}
CASES = [(1, 1), (2, 2), (2, 4), (3, 5)]
MiB = 1024 * 1024
ClientFactory = Callable[[], httpx.AsyncClient]


@pytest.fixture(scope="module")
def holders() -> list[Holder]:
    return keygen_holders(5, "svc")


@pytest.fixture(scope="module")
def nsm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("nsm")
    SimulatedNsm.open(path)
    return path


def service(nsm_dir: Path, **kwargs: Any) -> KeymakerService:
    return KeymakerService(SimulatedNsm.open(nsm_dir), "simulated", **kwargs)


def asgi(app: Any) -> ClientFactory:
    return lambda: httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://keymaker", timeout=60)


@pytest.fixture(scope="module")
def server(nsm_dir: Path) -> Iterator[KeymakerProcess]:
    with running_keymaker("--nsm", "simulated", "--nsm-dir", str(nsm_dir),
                          "--max-body", str(64 * 1024)) as process:
        yield process


@pytest.fixture(params=["asgi", "socket"])
def clients(request: pytest.FixtureRequest, nsm_dir: Path) -> ClientFactory:
    if request.param == "asgi":
        return asgi(create_app(service(nsm_dir)))
    url = request.getfixturevalue("server").url
    return lambda: httpx.AsyncClient(base_url=url, timeout=60)


def v0_body(holders: list[Holder], threshold: int, label: dict[str, str] | None = None) -> bytes:
    return json.dumps({"keyring": "".join(h.public for h in holders), "label": label or {},
                       "max": len(holders), "threshold": threshold}).encode()


def v1_body(holders: list[Holder], threshold: int, label: dict[str, str] | None = None) -> bytes:
    return json.dumps({"version": "V1", "bundle_id": list(range(100, 116)), "label": label or {},
                       "keyring": [{"OpenPGP": {"cert": h.public}} for h in holders],
                       "threshold": threshold, "max": len(holders)}).encode()


async def _post(client: httpx.AsyncClient, body: bytes | Any,
                headers: dict[str, str] = JSON) -> httpx.Response:
    return await client.post("/generate_quorum", content=body, headers=headers)


def post(clients: ClientFactory, body: bytes, headers: dict[str, str] = JSON) -> httpx.Response:
    async def go() -> httpx.Response:
        async with clients() as client:
            return await _post(client, body, headers)
    return asyncio.run(go())


def test_health(clients: ClientFactory) -> None:
    async def go() -> httpx.Response:
        async with clients() as client:
            return await client.get("/health")
    response = asyncio.run(go())
    assert response.status_code == 200
    assert response.content == b'{"service":"keymaker","status":"ok"}'
    assert response.headers["content-type"] == "application/json"


@pytest.mark.parametrize("version", ["v0", "V1"])
@pytest.mark.parametrize("threshold,count", CASES)
def test_generation_recovers_from_every_threshold_subset_and_no_smaller_one(
        clients: ClientFactory, holders: list[Holder], nsm_dir: Path, version: str,
        threshold: int, count: int) -> None:
    chosen = holders[:count]
    body = (v0_body if version == "v0" else v1_body)(chosen, threshold)
    response = post(clients, body)
    assert response.status_code == 200, response.text
    bundle: BundleV0 | BundleV1
    if version == "v0":
        bundle = BundleV0.from_json(response.content)
    else:
        bundle = BundleV1.from_json(response.content)
        policy, root = policy_and_root(nsm_dir)
        assert verify_keymaker_proof(bundle, policy, trust_root=root).set_index == 0
    recovered_secret(bundle, chosen, threshold)


def test_v1_response_is_compact_echoes_the_request_and_carries_a_proof(
        nsm_dir: Path, holders: list[Holder]) -> None:
    response = post(asgi(create_app(service(nsm_dir))), v1_body(holders[:2], 2, {"z": "1", "a": "2"}))
    text = response.text
    assert text.startswith('{"data":{"version":"V1","bundle_id":[100,101,')
    raw = json.loads(text)
    assert text == json.dumps(raw, separators=(",", ":"), ensure_ascii=False)  # compact
    assert list(raw) == ["data", "necroproof"]
    assert list(raw["data"]) == ["version", "bundle_id", "label", "keyring", "threshold", "max",
                                 "shardfile", "public_key"]
    assert list(raw["data"]["label"]) == ["a", "z"]
    assert [e["OpenPGP"]["cert"] for e in raw["data"]["keyring"]] == [h.public for h in holders[:2]]
    assert raw["necroproof"][:6] == [0x84, 0x44, 0xA1, 0x01, 0x38, 0x22]
    assert raw["data"]["public_key"].startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n")


def test_v0_response_has_the_reference_member_order_and_keyring_hash(
        nsm_dir: Path, holders: list[Holder]) -> None:
    body = json.loads(v0_body(holders[:1], 1, {"name": "x"}))
    body["unknown"] = {"ignored": True}
    response = post(asgi(create_app(service(nsm_dir))), json.dumps(body).encode())
    raw = json.loads(response.text)
    assert response.text == json.dumps(raw, separators=(",", ":"), ensure_ascii=False)
    assert list(raw) == ["label", "keyring", "keyring_hash", "shardfile", "public_key", "necroproof"]
    assert raw["label"] == {"name": "x"} and raw["keyring"] == holders[0].public
    assert bytes(raw["keyring_hash"]) == hashlib.sha256(holders[0].public.encode()).digest()
    assert raw["necroproof"] == []


@pytest.mark.parametrize("method,path,body,headers,status,errors", [
    ("GET", "/nope", b"", {}, 404, ["not found"]),
    ("POST", "/health", b"", {}, 405, ["method not allowed"]),
    ("GET", "/generate_quorum", b"", {}, 405, ["method not allowed"]),
    ("POST", "/generate_quorum", b"{}", {"content-type": "text/plain"}, 415,
     ["expected Content-Type: application/json"]),
    ("POST", "/generate_quorum", b"{}", {}, 415, ["expected Content-Type: application/json"]),
    ("POST", "/generate_quorum", b'{"a":1,"a":2}', {"content-type": "application/json; charset=utf-8"},
     400, ["duplicate member 'a'"]),
    ("POST", "/generate_quorum", b'{"version":"V9"}', JSON, 400, ["version: unsupported request version"]),
    ("POST", "/generate_quorum", b'{"label":{}}', JSON, 422,
     ["could not parse request", "request: missing member 'threshold'"]),
    ("POST", "/generate_quorum", b'{"label":{},"threshold":1,"max":1,"keyring":""}', JSON, 400,
     ["could not generate quorum", "keyring contains no Keymaker-eligible public certificates"]),
])
def test_errors_have_the_spec_status_and_body(clients: ClientFactory, method: str, path: str,
                                              body: bytes, headers: dict[str, str], status: int,
                                              errors: list[str]) -> None:
    async def go() -> httpx.Response:
        async with clients() as client:
            return await client.request(method, path, content=body, headers=headers)
    response = asyncio.run(go())
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"errors": errors}


def test_a_body_over_the_limit_is_413_from_content_length_and_while_streaming(
        clients: ClientFactory, request: pytest.FixtureRequest) -> None:
    limit = 64 * 1024 if "socket" in request.node.callspec.id else 4 * MiB
    expected = {"errors": [f"request body too large (limit {limit} bytes)"]}

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(limit // 8192 + 2):
            yield b" " * 8192

    async def go() -> list[httpx.Response]:
        async with clients() as client:
            declared = await _post(client, b" " * (limit + 1))
        async with clients() as client:
            streamed = await _post(client, chunks())
        async with clients() as client:
            at_limit = await _post(client, b" " * (limit - 2) + b"[]")
        return [declared, streamed, at_limit]

    declared, streamed, at_limit = asyncio.run(go())
    assert (declared.status_code, declared.json()) == (413, expected)
    assert (streamed.status_code, streamed.json()) == (413, expected)
    assert at_limit.status_code == 400  # exactly the limit is read and parsed


def test_eight_concurrent_requests_get_eight_distinct_quorum_keys(
        clients: ClientFactory, holders: list[Holder]) -> None:
    async def go() -> list[httpx.Response]:
        async with clients() as client:
            return await asyncio.gather(*(_post(client, v0_body(holders[:1], 1))
                                          for _ in range(8)))
    responses = asyncio.run(go())
    assert [r.status_code for r in responses] == [200] * 8
    keys = {check_bundle(BundleV0.from_json(r.content)).quorum_certificate.fingerprint
            for r in responses}
    assert len(keys) == 8


class Gate:
    """An OS random source that blocks until released, to hold a generation open."""

    def __init__(self, fail: bool = False) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.fail = fail

    def __call__(self, size: int) -> bytes:
        self.entered.set()
        assert self.release.wait(30)
        if self.fail:
            raise OSError("no entropy")
        return bytes(range(size))


async def _until(event: threading.Event) -> None:
    for _ in range(3000):
        if event.is_set():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the generation did not start")


def test_one_shot_answers_busy_before_reading_and_exits_only_after_a_success(
        nsm_dir: Path, holders: list[Holder]) -> None:
    failing, blocking = Gate(fail=True), Gate()
    sources = iter([failing, blocking])
    service_ = service(nsm_dir, os_random=lambda n: next(sources)(n))
    quits: list[float] = []
    app = create_app(service_, one_shot=True, on_quorum=lambda: quits.append(time.time()))

    async def go() -> None:
        async with asgi(app)() as client:
            refused = await _post(client, b'{"label":{},"threshold":1,"max":1,"keyring":""}')
            assert refused.status_code == 400  # validation failure: no generation started
            first = asyncio.create_task(_post(client, v0_body(holders[:1], 1)))
            await _until(failing.entered)
            busy = await _post(client, b"not even json", {"content-type": "text/plain"})
            assert (busy.status_code, busy.json()) == (503, {"errors": ["keymaker is busy"]})
            assert (await client.get("/health")).status_code == 200
            failing.release.set()
            failed = await first
            assert failed.json() == {"errors": ["could not generate quorum", "entropy failed"]}
            assert failed.status_code == 500 and not quits  # a 500 does not spend the one shot
            second = asyncio.create_task(_post(client, v0_body(holders[:1], 1)))
            await _until(blocking.entered)
            assert (await _post(client, v0_body(holders[:1], 1))).status_code == 503
            blocking.release.set()
            assert (await second).status_code == 200
            assert len(quits) == 1
            assert (await _post(client, v0_body(holders[:1], 1))).status_code == 503

    asyncio.run(go())


def test_one_shot_process_answers_one_quorum_then_exits(nsm_dir: Path, holders: list[Holder]) -> None:
    with running_keymaker("--one-shot", "--nsm", "simulated", "--nsm-dir", str(nsm_dir)) as km:
        async def go() -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=km.url, timeout=60) as a, \
                    httpx.AsyncClient(base_url=km.url, timeout=60) as b:
                assert (await _post(a, b"{}")).status_code == 422  # not spent by a bad request
                await b.get("/health")  # both connections open before the race
                return list(await asyncio.gather(_post(a, v1_body(holders[:3], 2)),
                                                 _post(b, v1_body(holders[:3], 2))))
        responses = asyncio.run(go())
        assert sorted(r.status_code for r in responses) == [200, 503]
        assert [r.json() for r in responses if r.status_code == 503] == [
            {"errors": ["keymaker is busy"]}]
        assert km.proc.wait(timeout=30) == 0
        assert km.count("generated quorum: version=V1") == 1


def test_health_answers_while_a_generation_runs(nsm_dir: Path, holders: list[Holder]) -> None:
    blocking = Gate()
    app = create_app(service(nsm_dir, os_random=blocking))

    async def go() -> None:
        async with asgi(app)() as client:
            pending = asyncio.create_task(_post(client, v0_body(holders[:1], 1)))
            await _until(blocking.entered)
            assert (await client.get("/health")).status_code == 200
            blocking.release.set()
            assert (await pending).status_code == 200

    asyncio.run(go())


def test_without_an_nsm_v1_is_503_and_v0_still_works(holders: list[Holder]) -> None:
    clients = asgi(create_app(KeymakerService(None, "none")))
    refused = post(clients, v1_body(holders[:1], 1))
    assert (refused.status_code, refused.json()) == (503, {"errors": [
        "proofed (V1) bundles need an NSM; this Keymaker runs with --nsm none"]})
    assert post(clients, v0_body(holders[:1], 1)).status_code == 200


def test_nsm_failure_is_a_500_without_detail(nsm_dir: Path, holders: list[Holder]) -> None:
    broken = service(nsm_dir)
    broken.nsm.attest = lambda **_: (_ for _ in ()).throw(RuntimeError("secret detail"))  # type: ignore[method-assign, union-attr]
    response = post(asgi(create_app(broken)), v1_body(holders[:1], 1))
    assert (response.status_code, response.json()) == (
        500, {"errors": ["could not generate quorum", "NSM failed"]})


def test_e2e_hook_uses_the_public_test_secret_and_logs_no_secret(
        nsm_dir: Path, holders: list[Holder], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO")
    response = post(asgi(create_app(service(nsm_dir, unsafe_fixed_entropy=True))),
                    v1_body(holders[:2], 2))
    bundle = BundleV1.from_json(response.content)
    assert check_bundle(bundle).quorum_certificate.fingerprint == TEST_SECRET_FINGERPRINT
    secret = recovered_secret(bundle, holders[:2], 2)
    log = "\n".join(r.getMessage() for r in caplog.records)
    assert "PUBLIC test entropy" in log
    assert f"generated quorum: version=V1 threshold=2 max=2 holders={holders[0].fingerprint}," in log
    assert f"quorum={TEST_SECRET_FINGERPRINT}" in log and "bundle_hash=" in log
    assert secret.hex() not in log.lower() and "legal winner" not in log


def test_an_unexpected_error_is_a_500_that_logs_no_detail(
        nsm_dir: Path, holders: list[Holder], caplog: pytest.LogCaptureFixture) -> None:
    broken = service(nsm_dir)
    broken.validate = lambda request: (_ for _ in ()).throw(ValueError("secret detail"))  # type: ignore[method-assign]
    response = post(asgi(create_app(broken)), v0_body(holders[:1], 1))
    assert (response.status_code, response.json()) == (500, {"errors": ["internal error"]})
    assert "secret detail" not in caplog.text and "ValueError" in caplog.text


def test_a_128_of_254_quorum_meets_the_performance_target(nsm_dir: Path) -> None:
    many = keygen_holders(254, "perf")
    clients = asgi(create_app(service(nsm_dir)))
    started = time.monotonic()
    response = post(clients, v1_body(many, 128))
    elapsed = time.monotonic() - started
    assert response.status_code == 200, response.text[:300]
    bundle = BundleV1.from_json(response.content)
    assert (bundle.threshold, len(check_bundle(bundle).holders)) == (128, 254)
    assert elapsed < 5.0, f"{elapsed:.1f} s"
