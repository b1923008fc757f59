"""Atomic file publication (cli.md §1): a file is either absent, the old one, or complete.

The content goes to a fresh temporary file in the target's directory (O_EXCL, mode 0600, so a
secret is never briefly world-readable), is fsynced, then published with `link` when replacing
is not allowed — so an existing file is never overwritten, even one that appeared after an
earlier check — or with `replace` when it is. The directory is fsynced so the new name survives
a crash, and the temporary name is removed on every path.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def write_atomic(path: Path, data: bytes, *, mode: int = 0o600, replace: bool) -> None:
    """Publish `data` at `path` with permission bits `mode`.

    Raises `FileExistsError` when `replace` is false and `path` exists; any other `OSError`
    propagates. On failure nothing is left at `path` that was not there before.
    """
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    directory.mkdir(mode=0o755, parents=True, exist_ok=True)
    tmp = directory / f".{path.name}.{secrets.token_hex(6)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            if mode != 0o600:
                os.fchmod(fd, mode)
            os.fsync(fd)
        finally:
            os.close(fd)
        if replace:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)
        _fsync_directory(directory)
    finally:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
