# locksmith zipapp: its __main__.py (build.sh copies shipping/zip_main.py here).
# Written so that any Python can parse it: it turns an unsupported interpreter away in one line
# (`python3.10 locksmith.pyz` or `python3.14 locksmith.pyz` called directly, bypassing the shell
# preamble) before the launcher, which needs 3.11+, is imported.
import sys

_version = sys.version_info
_impl = getattr(getattr(sys, "implementation", None), "name", "Python")
if not (_impl == "cpython" and (_version[0], _version[1]) in ((3, 11), (3, 12), (3, 13))
        and not getattr(sys, "abiflags", "")):
    _names = {"cpython": "CPython", "pypy": "PyPy"}
    sys.stderr.write("locksmith needs CPython 3.11, 3.12 or 3.13; found: %s %d.%d.%d%s (%s)\n" % (
        _names.get(_impl, _impl), _version[0], _version[1], _version[2],
        getattr(sys, "abiflags", ""), sys.executable))
    sys.exit(1)

import _locksmith_launcher  # noqa: E402

_locksmith_launcher.main()
