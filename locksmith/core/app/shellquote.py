"""locksmith-oneshot's output: `export NAME='value'` lines for `eval` (enclave.md §5 steps 4, 6, 8).

This is the one place where secrets meet shell syntax, so it is kept to the one quoting form
whose rules fit in a sentence: POSIX single quotes, inside which every byte is literal except
`'` itself, written as `'\\''` (close, escaped quote, reopen). Newlines, `$`, backticks, `\\`
and non-ASCII stay as they are, so the shell hands the application the exact bytes. NUL is
the one byte a process environment cannot carry; it is refused rather than truncated. Names
are checked here too because a name is spliced into shell code unquoted.

Some names are refused although they are valid shell names: set by `eval` in the boot script
they would change how the rest of that script, the shell, the program loader or the Python
runtime behave (`PATH`, `IFS`, `LD_PRELOAD`, `PYTHONPATH`, ...), so a secret could take over the
application it is meant for. Stricter than the reference, on purpose.

Public API: `quote(value)`, `is_env_key(name)`, `check_name(name)`, `reserved_name(name)`,
`check_value(name, raw) -> str`, `render_exports(values) -> bytes`, `ExportError` (message =
the spec's reason text).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

__all__ = ["ENV_STRING_LIMIT", "ExportError", "RESERVED_NAME", "check_name", "check_value",
           "is_env_key", "quote", "render_exports", "reserved_name"]

# Linux MAX_ARG_STRLEN: one `NAME=value` string with its NUL must fit in 32 pages.
ENV_STRING_LIMIT = 131072
# Here rather than in `envfile` (which re-exports it) so that locksmith-oneshot does not load
# the .env parser just for this check.
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*", re.ASCII)


RESERVED_NAME = ("reserved name: it would change how the boot shell, the program loader or "
                 "the runtime behaves")
_RESERVED = frozenset({"PATH", "IFS", "ENV", "BASH_ENV", "SHELLOPTS", "BASHOPTS", "PS4",
                       "CDPATH", "GCONV_PATH"})
_RESERVED_PREFIXES = ("LD_", "PYTHON", "BASH_FUNC_")


class ExportError(ValueError):
    """A name or value that cannot be exported; `str(exc)` is the enclave.md §5 reason."""


def quote(value: str) -> str:
    """POSIX single quoting: `it's` -> `'it'\\''s'`, empty -> `''`."""
    return "'" + value.replace("'", "'\\''") + "'"


def is_env_key(name: str) -> bool:
    """`[A-Za-z_][A-Za-z0-9_]*`, ASCII only (unlike `str.isidentifier`)."""
    return _KEY.fullmatch(name) is not None


def reserved_name(name: str) -> bool:
    """Names the boot must not set from a secret (see the module docstring)."""
    return name in _RESERVED or name.startswith(_RESERVED_PREFIXES)


def check_name(name: str) -> None:
    if not is_env_key(name):
        raise ExportError("not a valid shell variable name")
    if reserved_name(name):
        raise ExportError(RESERVED_NAME)


def check_value(name: str, raw: bytes) -> str:
    """The exported text of a decrypted value, checked in the spec's order (no trimming)."""
    try:
        value = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ExportError("value is not valid UTF-8") from None
    if "\0" in value:
        raise ExportError("value contains a NUL character")
    if len(name.encode("utf-8")) + 1 + len(raw) >= ENV_STRING_LIMIT:
        raise ExportError("value too large for a process environment")
    return value


def render_exports(values: Mapping[str, str]) -> bytes:
    """All export lines, sorted by NAME bytewise, as the bytes of one write."""
    lines = []
    for name in sorted(values, key=lambda n: n.encode("utf-8")):
        check_name(name)
        if "\0" in values[name]:
            raise ExportError("value contains a NUL character")
        lines.append(f"export {name}={quote(values[name])}\n")
    return "".join(lines).encode("utf-8")
