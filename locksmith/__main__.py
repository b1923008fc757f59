"""Busybox-style entry point: one executable, five personalities.

The personality is chosen by the basename of argv[0] (`caution`, `locksmithd`, ... as symlinks to
the zipapp) or, for the generic names, by the first argument. Each personality module is imported
only when chosen: the enclave boot path must not import the CLI or HTTP stacks (spec README §2).
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Callable, Sequence

# name -> module path; each module exposes `main(argv: list[str]) -> int`. None: not built yet.
PERSONALITIES: dict[str, str | None] = {
    "caution": "locksmith.personalities.caution",
    "keyforkd": "locksmith.personalities.keyforkd",
    "keymaker": "locksmith.personalities.keymaker",
    "locksmith-oneshot": "locksmith.personalities.oneshot",
    "locksmithd": "locksmith.personalities.locksmithd",
}


def _personality_name(argv0: str) -> str | None:
    base = os.path.basename(argv0)
    return base if base in PERSONALITIES else None


def _unknown(name: str) -> int:
    valid = ", ".join(sorted(PERSONALITIES))
    print(f"unknown personality '{name}'; expected one of: {valid}", file=sys.stderr)
    return 2


def run(argv: Sequence[str]) -> int:
    """Dispatch `argv` (argv[0] included) and return the exit status."""
    args = list(argv)
    name = _personality_name(args[0]) if args else None
    if name is not None:
        rest = args[1:]
    else:
        if len(args) < 2:
            return _unknown("")
        name, rest = args[1], args[2:]
        if name not in PERSONALITIES:
            return _unknown(name)
    module_path = PERSONALITIES[name]
    if module_path is None:
        print(f"{name}: this personality is not built yet in this version of locksmith",
              file=sys.stderr)
        return 2
    entry: Callable[[list[str]], int] = importlib.import_module(module_path).main
    return entry(rest)


def main() -> None:
    sys.exit(run(sys.argv))


if __name__ == "__main__":
    # `python -m locksmith caution ...`: argv[0] is this file's path, so the first argument picks.
    main()
