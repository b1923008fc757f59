"""`keymaker`: the quorum-generation HTTP service (spec keymaker.md).

    keymaker [--listen HOST:PORT] [--nsm device|simulated|none] [--nsm-dir DIR] [--one-shot]
             [--max-body BYTES]

Modules: `settings` (options, environment, start-up refusals), `service` (one generation, in a
worker thread), `app` (the Starlette routes and error bodies), `server` (uvicorn). The HTTP
stack is imported only when this personality runs, never by the enclave boot path.
"""

from __future__ import annotations


def main(argv: list[str]) -> int:
    from locksmith.personalities.keymaker.server import run

    return run(argv)
