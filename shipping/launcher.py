"""The zipapp's launcher: where site-packages is extracted, safely, and what is cleaned up.

build.sh puts this file into the archive as `_locksmith_launcher.py`; the archive's `__main__.py`
(shipping/zip_main.py) checks the interpreter and calls `main()`. It takes the place of shiv's
`_bootstrap.bootstrap()` (shiv's extraction code, in the archive as `_bootstrap`, still does the
extraction) and keeps shiv's environment variables (SHIV_ROOT, SHIV_FORCE_EXTRACT,
SHIV_COMPILE_PYC, SHIV_COMPILE_WORKERS, SHIV_INTERPRETER, SHIV_ENTRY_POINT, SHIV_PREPEND_PYTHONPATH,
SHIV_EXTEND_PYTHONPATH), with these differences:

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
"""

from __future__ import annotations

import fcntl
import importlib
import json
import os
import re
import shutil
import stat
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NoReturn

#: The running zipapp's build id (shiv's SHA-256 of its site-packages), set by `main()`.
BUILD_ID: str | None = None

# The descriptor of the shared lock on this build's extraction, kept open (and so the lock held)
# for the life of the process.
_held: list[int] = []
_OURS = re.compile(r"\.?locksmith_([0-9a-f]{64})(\.tmp|\.old|\.lock|_lock)?")
_TRUE = ("yes", "true", "t", "1")


class CannotExtract(Exception):
    def __init__(self, directory: str | Path, reason: str) -> None:
        super().__init__(f"cannot extract to {directory}: {reason}")
        self.directory = str(directory)
        self.reason = reason


def extraction_root(environ: Mapping[str, str] = os.environ) -> Path:
    """`$SHIV_ROOT`, else `$XDG_CACHE_HOME/locksmith`, else `~/.cache/locksmith` (absolute)."""
    configured = environ.get("SHIV_ROOT")
    if configured:
        return Path(os.path.abspath(os.path.expanduser(configured)))
    cache = environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(cache):  # the XDG spec: a relative value is ignored
        home = environ.get("HOME")
        if home is None:
            home = os.path.expanduser("~")  # the password database
        if not os.path.isabs(home):
            raise CannotExtract("~/.cache/locksmith", "no home directory (HOME is unset or empty)")
        cache = os.path.join(home, ".cache")
    return Path(cache) / "locksmith"


def prepare_root(root: Path) -> Path:
    """Create `root` (mode 0700) if needed, check it, and return its real path."""
    try:
        os.makedirs(root, mode=0o700, exist_ok=True)
        real = Path(os.path.realpath(root))
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
    for parent in real.parents:
        mode = os.stat(parent).st_mode
        if mode & stat.S_IWOTH and not mode & stat.S_ISVTX:
            raise CannotExtract(root, f"every user can write to {parent} and it is not sticky")
    return real


def hold(root: Path, build_id: str) -> None:
    """Take (and keep) a shared lock on this build's extraction: no cleaner removes it now."""
    path = root / f"locksmith_{build_id}.lock"
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_SH)  # waits only while a cleaner removes this build
        try:
            current = os.stat(path, follow_symlinks=False)
        except FileNotFoundError:
            current = None
        opened = os.fstat(fd)
        if current is not None and (current.st_dev, current.st_ino) == (opened.st_dev, opened.st_ino):
            _held.append(fd)
            return
        os.close(fd)  # a cleaner removed the lock file after we opened it: take the new one


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


def clean_other_builds(root: Path, build_id: str) -> list[str]:
    """Remove the extractions of other builds that no running process uses; their build ids."""
    removed: list[str] = []
    try:
        names = os.listdir(root)
    except OSError:
        return removed
    others = sorted({m.group(1) for m in map(_OURS.fullmatch, names)
                     if m is not None and m.group(1) != build_id})
    for other in others:
        try:
            fd = os.open(root / f"locksmith_{other}.lock",
                         os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a process of that build is running (or extracting it)
            # Rename first (atomic), so that no process ever sees a half-removed extraction.
            extracted, old = root / f"locksmith_{other}", root / f"locksmith_{other}.old"
            _remove(old)
            if extracted.is_dir() and not extracted.is_symlink():
                os.rename(extracted, old)
            for name in (f"locksmith_{other}", f"locksmith_{other}.old",
                         f"locksmith_{other}.tmp", f".locksmith_{other}_lock",
                         f"locksmith_{other}.lock"):
                _remove(root / name)
            removed.append(other)
        except OSError:
            pass  # cleaning is best effort: it never stops a run
        finally:
            os.close(fd)
    return removed


def _die(error: CannotExtract) -> NoReturn:
    sys.stderr.write(f"locksmith: {error}; set SHIV_ROOT to a writable directory\n")
    sys.exit(1)


def _setting(settings: dict[str, Any], variable: str, key: str) -> Any:
    return os.environ.get(variable, settings.get(key))


def _extract(archive_path: str, target: Path, force: bool) -> None:
    import zipfile

    from _bootstrap import extract_site_packages  # shiv's, in the archive

    with zipfile.ZipFile(archive_path) as archive:
        extract_site_packages(archive, target, False, 0, force)


def _compile(site_packages: Path, settings: dict[str, Any]) -> None:
    """Byte-compile the extraction once for each Python version that runs it (a fat zipapp
    serves several; PYTHONDONTWRITEBYTECODE, if set, would otherwise leave every start to
    compile what it imports). Safe to run twice at once: pyc files are written atomically."""
    marker = site_packages.parent / f"compiled-{sys.implementation.cache_tag}"
    if marker.exists():
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
        marker.touch()
    except OSError:
        pass  # an optimisation only: modules are compiled when imported instead


def _activate(site_packages: Path, settings: dict[str, Any]) -> None:
    """shiv's sys.path set-up: our site-packages before any other site-packages directory, so
    that the standard library (always earlier on sys.path) wins over backports such as
    standard-imghdr on the Pythons that still have the module."""
    import site

    length = len(sys.path)
    index = next((i for i, entry in enumerate(sys.path)
                  if Path(entry).stem in ("site-packages", "dist-packages")), None) or length
    before = list(sys.path)
    site.addsitedir(str(site_packages))
    sys.path[:] = sys.path[:index] + sys.path[length:] + sys.path[index:length]
    prepend = _setting(settings, "SHIV_PREPEND_PYTHONPATH", "prepend_pythonpath")
    if prepend:
        sys.path.insert(0, prepend)
    if str(_setting(settings, "SHIV_EXTEND_PYTHONPATH", "extend_pythonpath")).lower() in _TRUE:
        from _bootstrap import extend_python_path

        extend_python_path(os.environ, [p for p in sys.path if p not in before])


def main() -> None:
    global BUILD_ID
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

    root: Path | str = "~/.cache/locksmith"
    try:
        root = extraction_root()
        real = prepare_root(root)
        site_packages = real / f"locksmith_{build_id}" / "site-packages"
        force = str(_setting(settings, "SHIV_FORCE_EXTRACT", "always_write_cache")).lower() in _TRUE
        try:
            hold(real, build_id)
        except OSError as error:
            # A root we cannot write (a read-only image) is fine if this build is extracted.
            if force or not site_packages.is_dir():
                raise CannotExtract(root, error.strerror or str(error)) from None
        else:
            clean_other_builds(real, build_id)
            if force or not site_packages.is_dir():
                _extract(archive_path, site_packages.parent, force)
            _compile(site_packages, settings)
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
    module_name, _, attribute = entry_point.partition(":")
    target: Any = importlib.import_module(module_name)
    for part in attribute.split(".") if attribute else ():
        target = getattr(target, part)
    sys.exit(target())
