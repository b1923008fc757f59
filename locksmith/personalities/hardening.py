"""Process hardening shared by the daemons that hold the master secret (enclave.md §3.1, §4.1).

A core dump of locksmithd or keyforkd would write the master secret to disk, so both refuse to
be dumpable before any secret exists in memory: `RLIMIT_CORE` 0 stops ordinary core files, and
`PR_SET_DUMPABLE` 0 also stops core-pattern pipes and same-uid ptrace / `/proc/<pid>/mem`.
"""

from __future__ import annotations

import ctypes
import os
import resource

__all__ = ["disable_core_dumps"]

_PR_SET_DUMPABLE = 4


def disable_core_dumps() -> None:
    """Raise `OSError` (with errno) if either protection cannot be applied."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    # The interpreter itself links libc; `CDLL(None)` avoids find_library's subprocesses.
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
