"""Keymaker's HTTP surface (keymaker.md §2, §3, §6, §7) as a Starlette app.

    create_app(service, one_shot=..., max_body=..., on_quorum=...) -> Starlette

Thin on purpose: the body is read here (with the size limit, from `Content-Length` and while
streaming), everything else is `core.keymaker.request` and `KeymakerService`, which run in a
worker thread so `/health` answers during a generation. Every non-2xx answer, including the
framework's own 404/405 and an unexpected exception, is `{"errors": [...]}`.

One-shot (§6): a generation is in progress from validation until the response is sent (after a
success, until the process exits); a request meanwhile gets 503 before its body is read. After
the first success the response is sent in full, then `on_quorum()` asks the server to exit.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Sequence

from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from locksmith.core.keymaker import request as km
from locksmith.core.keymaker.quorum import GenerationError
from locksmith.personalities.keymaker.service import KeymakerService
from locksmith.personalities.keymaker.settings import DEFAULT_MAX_BODY

log = logging.getLogger("keymaker")

HEALTH = b'{"service":"keymaker","status":"ok"}'
JSON = "application/json"


def json_error(status: int, errors: Sequence[str],
               headers: dict[str, str] | None = None) -> Response:
    return Response(km.error_body(errors), status_code=status, headers=headers, media_type=JSON)


class OneShotGate:
    """At most one generation in flight; used only from the event loop thread."""

    def __init__(self) -> None:
        self.busy = False

    def take(self) -> bool:
        if self.busy:
            return False
        self.busy = True
        return True

    def release(self) -> None:
        self.busy = False


def _check_content_type(request: Request) -> None:
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != JSON:
        raise km.Refusal(415, [km.WRONG_CONTENT_TYPE])


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, or `Refusal(413)` as soon as it is known to exceed `limit`."""
    too_large = km.Refusal(413, [km.TOO_LARGE.format(limit=limit)])
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large
    return bytes(body)


Handler = Callable[[Request], Awaitable[Response]]


def _guarded(handler: Handler) -> Handler:
    """An unexpected exception becomes a 500 here, logged by type only: left to the framework,
    it would reach uvicorn's traceback logger with a message that could sit next to secrets."""
    @functools.wraps(handler)
    async def guarded(request: Request) -> Response:
        try:
            return await handler(request)
        except Exception as exc:
            return await _internal_error(request, exc)
    return guarded


def create_app(service: KeymakerService, *, one_shot: bool = False,
               max_body: int = DEFAULT_MAX_BODY,
               on_quorum: Callable[[], None] | None = None) -> Starlette:
    gate = OneShotGate() if one_shot else None

    async def health(request: Request) -> Response:
        return Response(HEALTH, media_type=JSON)

    async def generate_quorum(request: Request) -> Response:
        if gate is not None and gate.busy:
            return _refused(km.Refusal(503, [km.BUSY]))
        try:
            _check_content_type(request)
            parsed = km.parse_request(await read_body(request, max_body))
            if isinstance(parsed, km.V1Request) and not service.proofs:
                raise km.Refusal(503, [km.NO_NSM])
            holders = await run_in_threadpool(service.validate, parsed)
        except km.Refusal as refusal:
            return _refused(refusal)
        if gate is not None and not gate.take():
            return _refused(km.Refusal(503, [km.BUSY]))
        succeeded = False
        try:
            body = await run_in_threadpool(service.generate, parsed, holders)
            succeeded = True
        except GenerationError as exc:
            log.error("generation failed: %s", exc)
            return json_error(500, [km.COULD_NOT_GENERATE, str(exc)])
        finally:
            if gate is not None and not succeeded:
                gate.release()  # a failed generation does not consume the one shot
        background = None
        if gate is not None and on_quorum is not None:
            background = BackgroundTask(_finish, on_quorum)
        return Response(body, media_type=JSON, background=background)

    return Starlette(
        routes=[Route("/health", _guarded(health), methods=["GET"]),
                Route("/generate_quorum", _guarded(generate_quorum), methods=["POST"])],
        exception_handlers={HTTPException: _http_error, Exception: _internal_error},
    )


def _refused(refusal: km.Refusal) -> Response:
    log.info("refused request: %d %s", refusal.status, "; ".join(refusal.errors))
    return json_error(refusal.status, refusal.errors)


def _finish(on_quorum: Callable[[], None]) -> None:
    log.info("one-shot: the quorum was sent; exiting")
    on_quorum()


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    known = {404: km.NOT_FOUND, 405: km.METHOD_NOT_ALLOWED}
    message = known.get(exc.status_code, str(exc.detail).lower())
    return json_error(exc.status_code, [message], dict(exc.headers or {}))


async def _internal_error(request: Request, exc: Exception) -> Response:
    # The exception's text is not logged: it could come from next to secret material.
    log.error("internal error (%s) on %s %s", type(exc).__name__, request.method,
              request.url.path)
    return json_error(500, ["internal error"])
