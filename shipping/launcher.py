"""The zipapp's launcher: where site-packages is extracted, safely, and what is cleaned up.

build.sh puts this file into the archive twice: as `_locksmith_launcher.py` at its root, where the
archive's `__main__.py` (shipping/zip_main.py) checks the interpreter and calls `main()`, and in
its site-packages, so that every extraction holds it compiled for the fast start below. It takes
the place of shiv's `_bootstrap.bootstrap()` (shiv's extraction code, in the archive as
`_bootstrap`, still does the extraction) and keeps shiv's environment variables (SHIV_ROOT,
SHIV_FORCE_EXTRACT, SHIV_COMPILE_PYC, SHIV_COMPILE_WORKERS, SHIV_INTERPRETER, SHIV_ENTRY_POINT,
SHIV_PREPEND_PYTHONPATH, SHIV_EXTEND_PYTHONPATH), with these differences:

* Where: `$SHIV_ROOT` if set, else `$XDG_CACHE_HOME/locksmith`, else `~/.cache/locksmith`. A
  build goes to `<root>/locksmith_<build id>/` whatever the file is called (`caution`,
  `locksmith.pyz`, a personality's symlink), so a build is extracted once per root.
* Safety: the root is created with mode 0700, and its real path (symlinks resolved) must be a
  directory of this user that no other user can write to, below no directory that every user
  can write to without the sticky bit (a shared /tmp is fine; a directory that someone else
  planted there is not). Everything afterwards uses that real path.
* Cleaning: every running locksmith holds a shared lock on `<root>/locksmith_<build id>.lock`. An
  extraction of another build whose lock no process holds is removed, with its lock and shiv's
  leftovers: a new build replaces the old one's ~60 MB instead of adding to them. Only names of
  the form `locksmith_<64 hex digits>[.tmp|.old|.lock]` and `.locksmith_<64 hex digits>_lock`
  are ever touched.
* Byte-code: each Python version that runs an extraction compiles all of it once (a fat zipapp
  serves 3.11, 3.12 and 3.13 from one site-packages).
* Read-only: a root that cannot be written to (the lock file cannot be created) is used as it is
  if it holds this build's extraction: no lock, no cleaning, no compiling.
* Errors: a root that cannot be made or used gives one line naming SHIV_ROOT and exit status 1.

Fast start (issue 11: the boot's critical path). Once a build is extracted and compiled for an
interpreter, starting it again needs none of the archive: the shell preamble (shipping/
preamble.sh) execs that interpreter as `python -I -S -c FAST_START <build id> "$0" ARGS`.
FAST_START, a few lines compiled on each start, repeats every check above on the root without
creating anything (the interpreter, the root's owner and modes and those of its parents, this
build's extraction and its byte-code for this Python, no SHIV_* variable but SHIV_ROOT), then
imports this module from the extraction and calls `fast_main()`: the same lock, the same
cleaning, the same entry point. Anything unexpected hands over to the slow start, which says
what is wrong: the interpreter runs the archive itself (`python ARCHIVE ARGS`, i.e. `main()`),
or, for an interpreter the zipapp does not support, the preamble probes for another one.
Skipped are what a boot does not need: reading the archive's directory (~1,500 entries), shiv's
settings, `site` (the extraction has no .pth files: assemble.py refuses them) and runpy; `-I`
keeps the current directory and PYTHON* variables out, as in an enclave. The preamble takes the
fast start only with an interpreter (by its path on PATH) that the probe accepted once for this
extraction: `main()` records it in `<root>/locksmith_<build id>/interpreters`, one path a line;
the list decides nothing else, since FAST_START checks everything again.
"""

from __future__ import annotations

import os
import stat
import sys

TYPE_CHECKING = False  # typing is not imported at start-up (mypy reads this name as typing's)
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any, NoReturn

#: The running zipapp's build id (shiv's SHA-256 of its site-packages), set by `main()`.
BUILD_ID: str | None = None
#: The entry point; assemble.py checks that shiv's settings name this one.
ENTRY_POINT = "locksmith.__main__:main"
#: The list of interpreter paths (as found on PATH) that the preamble's probe accepted.
INTERPRETERS = "interpreters"
#: Set by the preamble's probe for `main()`: the path of the interpreter it accepted.
CANDIDATE = "_LOCKSMITH_CANDIDATE"

# The program that the preamble runs with `python -I -S -c`; argv: build id, archive, args. It
# must parse on any Python 3 (an unsupported python3 may run it) and holds no single quote (the
# preamble quotes it). Each check mirrors `extraction_root` and `prepare_root` below.
FAST_START = r"""
import os, sys
def slow(probe):
    if probe:
        os.environ["_LOCKSMITH_PROBE"] = "1"
        os.execv("/bin/sh", ["/bin/sh"] + sys.argv[2:])
    os.execv(sys.executable, [sys.executable] + sys.argv[2:])
v = sys.version_info
if (getattr(getattr(sys, "implementation", None), "name", "") != "cpython"
        or (v[0], v[1]) not in ((3, 11), (3, 12), (3, 13))
        or getattr(sys, "abiflags", "") or not sys.executable):
    slow(1)
e = os.environ
if [k for k in e if k.startswith("SHIV_") and k != "SHIV_ROOT"]:
    slow(0)
r = e.get("SHIV_ROOT")
if r:
    r = os.path.abspath(os.path.expanduser(r))
else:
    c = e.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(c):
        h = e.get("HOME")
        if h is None or not os.path.isabs(h):
            slow(0)
        c = os.path.join(h, ".cache")
    r = os.path.join(c, "locksmith")
r = os.path.realpath(r)
b = os.path.join(r, "locksmith_" + sys.argv[1])
try:
    s = os.stat(r)
    if s.st_mode & 0o170000 != 0o040000 or s.st_uid != os.geteuid() or s.st_mode & 0o022:
        slow(0)
    p = r
    while p != "/":
        p = os.path.dirname(p)
        m = os.stat(p).st_mode
        if m & 0o002 and not m & 0o1000:
            slow(0)
    os.stat(os.path.join(b, "compiled-" + sys.implementation.cache_tag))
except OSError:
    slow(0)
sys.path.append(os.path.join(b, "site-packages"))
import _locksmith_launcher
_locksmith_launcher.fast_main(r, sys.argv[1], sys.argv[2], sys.argv[3:])
"""

# The descriptor of the shared lock on this build's extraction, kept open (and so the lock held)
# for the life of the process.
_held: list[int] = []
_TRUE = ("yes", "true", "t", "1")
_HEX = "0123456789abcdef"
_started_fast = False


class CannotExtract(Exception):
    def __init__(self, directory: str, reason: str) -> None:
        super().__init__(f"cannot extract to {directory}: {reason}")
        self.directory = directory
        self.reason = reason


def extraction_root(environ: Mapping[str, str] = os.environ) -> str:
    """`$SHIV_ROOT`, else `$XDG_CACHE_HOME/locksmith`, else `~/.cache/locksmith` (absolute)."""
    configured = environ.get("SHIV_ROOT")
    if configured:
        return os.path.abspath(os.path.expanduser(configured))
    cache = environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(cache):  # the XDG spec: a relative value is ignored
        home = environ.get("HOME")
        if home is None:
            home = os.path.expanduser("~")  # the password database
        if not os.path.isabs(home):
            raise CannotExtract("~/.cache/locksmith", "no home directory (HOME is unset or empty)")
        cache = os.path.join(home, ".cache")
    return os.path.join(cache, "locksmith")


def prepare_root(root: str) -> str:
    """Create `root` (mode 0700) if needed, check it, and return its real path."""
    try:
        os.makedirs(root, mode=0o700, exist_ok=True)
        real = os.path.realpath(root)
        status = os.stat(real)
    except FileExistsError:
        raise CannotExtract(root, "it exists and is not a directory") from None
    except OSError as error:
        raise CannotExtract(root, error.strerror or str(error)) from None
    if not stat.S_ISDIR(status.st_mode):
        raise CannotExtract(root, "it is not a directory")
    uid = os.geteuid()
    if status.st_uid != uid:
        raise CannotExtract(root, f"{real} belongs to uid {status.st_uid}, not to this user "
                                  f"(uid {uid})")
    if status.st_mode & 0o022:
        raise CannotExtract(root, f"other users can write to {real} "
                                  f"(mode {stat.S_IMODE(status.st_mode):04o})")
    parent = real
    while parent != "/":
        parent = os.path.dirname(parent)
        mode = os.stat(parent).st_mode
        if mode & stat.S_IWOTH and not mode & stat.S_ISVTX:
            raise CannotExtract(root, f"every user can write to {parent} and it is not sticky")
    return real


def hold(root: str, build_id: str) -> None:
    """Take (and keep) a shared lock on this build's extraction: no cleaner removes it now."""
    import fcntl

    path = os.path.join(root, f"locksmith_{build_id}.lock")
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_SH)  # waits only while a cleaner removes this build
        try:
            current: os.stat_result | None = os.stat(path, follow_symlinks=False)
        except FileNotFoundError:
            current = None
        opened = os.fstat(fd)
        if current is not None and (current.st_dev, current.st_ino) == (opened.st_dev, opened.st_ino):
            _held.append(fd)
            return
        os.close(fd)  # a cleaner removed the lock file after we opened it: take the new one


def build_of(name: str) -> str | None:
    """The build id in a name this launcher or shiv made, else None: `locksmith_<id>`, with an
    optional leading dot and an optional `.tmp`, `.old`, `.lock` or `_lock` (shiv's lock)."""
    rest = name[1:] if name.startswith(".") else name
    if not rest.startswith("locksmith_"):
        return None
    build, suffix = rest[10:74], rest[74:]
    if len(build) != 64 or build.strip(_HEX) or suffix not in ("", ".tmp", ".old", ".lock",
                                                                "_lock"):
        return None
    return build


def _remove(path: str) -> None:
    if os.path.islink(path) or os.path.isfile(path):
        os.unlink(path)
    elif os.path.isdir(path):
        import shutil

        shutil.rmtree(path)


def clean_other_builds(root: str, build_id: str) -> list[str]:
    """Remove the extractions of other builds that no running process uses; their build ids."""
    removed: list[str] = []
    try:
        names = os.listdir(root)
    except OSError:
        return removed
    others = sorted({b for b in map(build_of, names) if b is not None and b != build_id})
    if not others:
        return removed
    import fcntl

    for other in others:
        try:
            fd = os.open(os.path.join(root, f"locksmith_{other}.lock"),
                         os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a process of that build is running (or extracting it)
            # Rename first (atomic), so that no process ever sees a half-removed extraction.
            extracted = os.path.join(root, f"locksmith_{other}")
            old = os.path.join(root, f"locksmith_{other}.old")
            _remove(old)
            if os.path.isdir(extracted) and not os.path.islink(extracted):
                os.rename(extracted, old)
            for name in (f"locksmith_{other}", f"locksmith_{other}.old",
                         f"locksmith_{other}.tmp", f".locksmith_{other}_lock",
                         f"locksmith_{other}.lock"):
                _remove(os.path.join(root, name))
            removed.append(other)
        except OSError:
            pass  # cleaning is best effort: it never stops a run
        finally:
            os.close(fd)
    return removed


def record_interpreter(extraction: str, candidate: str | None) -> None:
    """Add the preamble's accepted interpreter to the extraction's list (best effort): from
    now on the preamble starts this build with it without asking it first (FAST_START)."""
    if not candidate or not os.path.isabs(candidate) or "\n" in candidate:
        return
    path = os.path.join(extraction, INTERPRETERS)
    try:
        with open(path, "rb") as handle:
            if candidate.encode() in handle.read().split(b"\n"):
                return
    except FileNotFoundError:
        pass
    except OSError:
        return
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600)
    except OSError:
        return
    try:
        os.write(fd, candidate.encode() + b"\n")  # one short write: appends do not interleave
    except OSError:
        pass
    finally:
        os.close(fd)


def _die(error: CannotExtract) -> NoReturn:
    sys.stderr.write(f"locksmith: {error}; set SHIV_ROOT to a writable directory\n")
    sys.exit(1)


def _setting(settings: dict[str, Any], variable: str, key: str) -> Any:
    return os.environ.get(variable, settings.get(key))


def _extract(archive_path: str, target: str, force: bool) -> None:
    import zipfile
    from pathlib import Path

    from _bootstrap import extract_site_packages  # shiv's, in the archive

    with zipfile.ZipFile(archive_path) as archive:
        extract_site_packages(archive, Path(target), False, 0, force)


def _compile(site_packages: str, settings: dict[str, Any]) -> None:
    """Byte-compile the extraction once for each Python version that runs it (a fat zipapp
    serves several; PYTHONDONTWRITEBYTECODE, if set, would otherwise leave every start to
    compile what it imports). Safe to run twice at once: pyc files are written atomically.
    The marker it leaves is what FAST_START requires for this Python."""
    marker = os.path.join(os.path.dirname(site_packages),
                          f"compiled-{sys.implementation.cache_tag}")
    if os.path.exists(marker):
        return
    if str(_setting(settings, "SHIV_COMPILE_PYC", "compile_pyc")).lower() not in _TRUE:
        return
    import compileall

    try:
        workers = int(os.environ.get("SHIV_COMPILE_WORKERS", 0))
    except ValueError:
        workers = 0
    try:
        try:
            compileall.compile_dir(site_packages, quiet=2, workers=workers)
        except (OSError, ImportError, NotImplementedError):
            # No process pool here (no /dev/shm, no sem_open): one process does it.
            compileall.compile_dir(site_packages, quiet=2, workers=1)
        with open(marker, "a"):
            pass
    except OSError:
        pass  # an optimisation only: modules are compiled when imported instead


def _activate(site_packages: str, settings: dict[str, Any]) -> None:
    """shiv's sys.path set-up: our site-packages before any other site-packages directory, so
    that the standard library (always earlier on sys.path) wins over backports such as
    standard-imghdr on the Pythons that still have the module."""
    import site

    def stem(entry: str) -> str:
        return os.path.splitext(os.path.basename(entry.rstrip("/")))[0]

    length = len(sys.path)
    index = next((i for i, entry in enumerate(sys.path)
                  if stem(entry) in ("site-packages", "dist-packages")), None) or length
    before = list(sys.path)
    site.addsitedir(site_packages)
    sys.path[:] = sys.path[:index] + sys.path[length:] + sys.path[index:length]
    prepend = _setting(settings, "SHIV_PREPEND_PYTHONPATH", "prepend_pythonpath")
    if prepend:
        sys.path.insert(0, prepend)
    if str(_setting(settings, "SHIV_EXTEND_PYTHONPATH", "extend_pythonpath")).lower() in _TRUE:
        from _bootstrap import extend_python_path

        extend_python_path(os.environ, [p for p in sys.path if p not in before])


def _run(entry_point: str) -> NoReturn:
    module_name, _, attribute = entry_point.partition(":")
    __import__(module_name)
    target: Any = sys.modules[module_name]
    for part in attribute.split(".") if attribute else ():
        target = getattr(target, part)
    sys.exit(target())


def start_command(archive: str, *args: str) -> list[str] | None:
    """The command that starts this zipapp again as this process was started, when that was
    the fast start (e.g. locksmithd starting keyforkd on the boot's critical path): the same
    interpreter, FAST_START, this build and `archive`. None after a slow start."""
    if not _started_fast or BUILD_ID is None or not sys.executable:
        return None
    return [sys.executable, "-I", "-S", "-c", FAST_START, BUILD_ID, archive, *args]


def fast_main(root: str, build_id: str, archive: str, args: list[str]) -> NoReturn:
    """FAST_START's hand-over, once it has checked the interpreter, the root (its real path,
    `root`) and this build's compiled extraction: lock, clean, run the entry point."""
    global BUILD_ID, _started_fast
    BUILD_ID = build_id
    _started_fast = True
    try:
        hold(root, build_id)
    except OSError:
        pass  # a read-only root: FAST_START found this build's extraction in it
    else:
        clean_other_builds(root, build_id)
    os.environ.pop(CANDIDATE, None)
    sys.argv[:] = [archive, *args]
    _run(ENTRY_POINT)


def main() -> None:
    global BUILD_ID
    import json

    candidate = os.environ.pop(CANDIDATE, None)  # the preamble's, not for the children
    loader = globals().get("__loader__")
    archive_path = str(getattr(loader, "archive", "") or sys.argv[0])
    # Through zipimport's loader, which has already read the archive's directory.
    get_data = getattr(loader, "get_data", None)
    if get_data is not None:
        data = get_data("environment.json")
    else:
        import zipfile

        with zipfile.ZipFile(archive_path) as archive:
            data = archive.read("environment.json")
    settings: dict[str, Any] = json.loads(data)
    build_id = str(settings["build_id"])
    BUILD_ID = build_id

    root = "~/.cache/locksmith"
    try:
        root = extraction_root()
        real = prepare_root(root)
        extraction = os.path.join(real, f"locksmith_{build_id}")
        site_packages = os.path.join(extraction, "site-packages")
        force = str(_setting(settings, "SHIV_FORCE_EXTRACT", "always_write_cache")).lower() in _TRUE
        try:
            hold(real, build_id)
        except OSError as error:
            # A root we cannot write (a read-only image) is fine if this build is extracted.
            if force or not os.path.isdir(site_packages):
                raise CannotExtract(root, error.strerror or str(error)) from None
        else:
            clean_other_builds(real, build_id)
            if force or not os.path.isdir(site_packages):
                _extract(archive_path, extraction, force)
            _compile(site_packages, settings)
            record_interpreter(extraction, candidate)
    except CannotExtract as error:
        _die(error)
    except OSError as error:
        _die(CannotExtract(root, error.strerror or str(error)))
    # Extracted: the processes this one starts need not extract again.
    os.environ.pop("SHIV_FORCE_EXTRACT", None)
    _activate(site_packages, settings)

    if os.environ.get("SHIV_INTERPRETER"):
        from _bootstrap.interpreter import execute_interpreter

        execute_interpreter()
        return
    entry_point = str(os.environ.get("SHIV_ENTRY_POINT")
                      or os.environ.get("SHIV_MODULE") or settings["entry_point"])
    for variable in ("SHIV_MODULE", "SHIV_ENTRY_POINT", "SHIV_CONSOLE_SCRIPT"):
        os.environ.pop(variable, None)  # as shiv: not for the processes this one starts
    _run(entry_point)
