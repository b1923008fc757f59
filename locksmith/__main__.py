"""Busybox-style entry point: one executable, six personalities.

The personality is chosen by the basename of argv[0] (`caution`, `locksmithd`, ... as symlinks to
the zipapp) or, for the generic names, by the first argument (`forwardd`, which only locksmithd
starts, has no symlink). Each personality module is imported only when chosen: the enclave boot
path must not import the CLI or HTTP stacks (spec README §2).
Under a generic name, `--help` lists the personalities and `--version` names the version, the
zipapp's build id and the Python running it.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # `typing` is not loaded just to start (issue 11); mypy reads this name
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

# name -> module path; each module exposes `main(argv: list[str]) -> int`. None: not built yet.
PERSONALITIES: dict[str, str | None] = {
    "caution": "locksmith.personalities.caution",
    "forwardd": "locksmith.personalities.forwardd",
    "keyforkd": "locksmith.personalities.keyforkd",
    "keymaker": "locksmith.personalities.keymaker",
    "locksmith-oneshot": "locksmith.personalities.oneshot",
    "locksmithd": "locksmith.personalities.locksmithd",
}
# Personalities whose exit is on the boot's critical path (issue 11): locksmith-run waits for
# locksmithd to exit after the quorum, and for the oneshot's output to end. Their exit skips the
# interpreter's teardown, milliseconds of freeing what the kernel frees anyway (modules,
# OpenSSL's state, idle worker threads). A personality listed here finishes all its work before
# its main() returns: no atexit work, no thread still doing something, every file it wrote
# closed; stdout and stderr are flushed below.
QUICK_EXIT = frozenset({"locksmith-oneshot", "locksmithd"})
SUMMARIES = {
    "caution": "holder/developer CLI: keys, quorums, secrets, send-shard, attestations, cards",
    "forwardd": "key-forwarding provider on TCP 49505, started by locksmithd after the unlock",
    "keyforkd": "holds the secret in memory, answers derivations on a 0600 Unix socket",
    "keymaker": "quorum-generation HTTP service",
    "locksmith-oneshot": "decrypts the app's secrets, prints `export NAME='value'` lines",
    "locksmithd": "shard receiver on TCP 49504; recovers the secret and starts keyforkd",
}


def _personality_name(argv0: str) -> str | None:
    base = os.path.basename(argv0)
    return base if base in PERSONALITIES else None


def _unknown(name: str) -> int:
    valid = ", ".join(sorted(PERSONALITIES))
    print(f"unknown personality '{name}'; expected one of: {valid}", file=sys.stderr)
    return 2


def _help(program: str) -> int:
    print(f"usage: {program} PERSONALITY [ARGS...]   (or a symlink named like the personality)\n"
          "\npersonalities:")
    width = max(map(len, PERSONALITIES))
    for name in sorted(PERSONALITIES):
        print(f"  {name:<{width}}  {SUMMARIES.get(name, '')}".rstrip())
    print("\noptions:\n  --help     this list\n  --version  version, build id and Python\n"
          f"\n`{program} PERSONALITY --help` describes a personality.")
    return 0


def build_id() -> str | None:
    """The zipapp's build id (shiv's SHA-256 of its site-packages); None outside a zipapp."""
    launcher = sys.modules.get("_locksmith_launcher")  # the zipapp's launcher (shipping/)
    value = getattr(launcher, "BUILD_ID", None)
    return value if isinstance(value, str) else None


def _version() -> int:
    import platform

    from locksmith import __version__

    build = build_id()
    where = f"build {build}" if build else "not a zipapp build"
    python = f"{platform.python_implementation()} {platform.python_version()}"
    print(f"locksmith {__version__} ({where}; {python})")
    return 0


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
        if name in ("--help", "-h"):
            program = os.path.basename(args[0])
            return _help("python -m locksmith" if program == "__main__.py" else program or "locksmith")
        if name == "--version":
            return _version()
        if name not in PERSONALITIES:
            return _unknown(name)
    module_path = PERSONALITIES[name]
    if module_path is None:
        print(f"{name}: this personality is not built yet in this version of locksmith",
              file=sys.stderr)
        return 2
    __import__(module_path)  # what importlib.import_module does, without loading importlib
    entry: Callable[[list[str]], int] = sys.modules[module_path].main
    return entry(rest)


def main() -> None:
    status = run(sys.argv)
    name = _personality_name(sys.argv[0]) if sys.argv else None
    if name is None and len(sys.argv) > 1:
        name = sys.argv[1]
    if name not in QUICK_EXIT:
        sys.exit(status)
    for stream in (sys.stdout, sys.stderr):  # None when started with the descriptor closed
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):  # as the interpreter's own exit would: 120 if it was 0
            status = status or 120
    os._exit(status)


if __name__ == "__main__":
    # `python -m locksmith caution ...`: argv[0] is this file's path, so the first argument picks.
    main()
