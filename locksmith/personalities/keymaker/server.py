"""Keymaker start-up: settings, refusals, the NSM, then uvicorn on a socket we bind ourselves.

Binding the socket here (rather than letting uvicorn do it) lets `--listen 127.0.0.1:0` work
and lets the log say the real address, which the end-to-end tests read.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from collections.abc import Mapping

from locksmith.core.attestation.nsm import NsmError
from locksmith.personalities.keymaker import settings as cfg
from locksmith.personalities.nsm_device import open_nsm

log = logging.getLogger("keymaker")


def _configure_logging() -> None:
    """One line per event on stderr; uvicorn's loggers propagate here (log_config=None)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)


def _bind(host: str, port: int) -> socket.socket:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
        sock.set_inheritable(True)
    except OSError:
        sock.close()
        raise
    return sock


def run(argv: list[str], env: Mapping[str, str] | None = None) -> int:
    environment = dict(os.environ if env is None else env)
    try:
        settings = cfg.resolve(argv, environment)
    except cfg.UsageError as exc:
        print(f"keymaker: error: {exc}", file=sys.stderr)
        return 2
    except cfg.StartupError as exc:
        print(f"keymaker: error: {exc}", file=sys.stderr)
        return 1
    try:  # refusals are printed before logging is set up, so they never depend on it
        warnings = cfg.check_environment(settings, environment)
        if settings.nsm.warning is not None:
            warnings.append(settings.nsm.warning)
        nsm = open_nsm(settings.nsm)
    except cfg.StartupError as exc:
        print(f"keymaker: error: {exc}", file=sys.stderr)
        return 1
    except NsmError as exc:
        print(f"keymaker: error: cannot open the NSM: {exc}", file=sys.stderr)
        return 1
    _configure_logging()
    for warning in warnings:
        log.warning(warning)
    if settings.unsafe_fixed_entropy:
        log.warning("%s=1: every quorum uses the PUBLIC test entropy 07x32 (development only)",
                    cfg.E2E_VARIABLE)
    elif environment.get(cfg.E2E_VARIABLE):
        log.warning("%s is ignored: it is honoured only with --nsm simulated", cfg.E2E_VARIABLE)
    try:
        try:
            sock = _bind(settings.host, settings.port)
        except OSError as exc:
            log.error("cannot listen on %s:%d: %s", settings.host, settings.port,
                      exc.strerror or exc)
            return 1
        try:
            return _serve(settings, nsm, sock)
        finally:
            sock.close()
    finally:
        if nsm is not None:
            nsm.close()


def _serve(settings: cfg.Settings, nsm: object, sock: socket.socket) -> int:
    import uvicorn

    from locksmith.core.attestation.nsm import Nsm
    from locksmith.personalities.keymaker.app import create_app
    from locksmith.personalities.keymaker.service import KeymakerService

    assert nsm is None or isinstance(nsm, Nsm)
    service = KeymakerService(nsm, settings.nsm.kind, settings.expire,
                              settings.unsafe_fixed_entropy)
    servers: list[uvicorn.Server] = []

    def exit_after_quorum() -> None:
        servers[0].should_exit = True

    app = create_app(service, one_shot=settings.one_shot, max_body=settings.max_body,
                     on_quorum=exit_after_quorum)
    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="off",
                            http="h11", loop="asyncio", ws="none", interface="asgi3",
                            server_header=False, timeout_graceful_shutdown=10)
    server = uvicorn.Server(config)
    servers.append(server)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    mode = " (one-shot)" if settings.one_shot else ""
    log.info("listening on %s:%d%s, NSM %s", shown, port, mode, settings.nsm.kind)
    server.run(sockets=[sock])
    log.info("stopped")
    return 0
