#!/usr/bin/env bash
# Install the holder CLI as `caution` (cli.md §9). `make install-cli` and
# `make install-cli-untrusted` call this script; it is separate so that the tests can run it.
#
# Usage: ./install-cli.sh reproducible|untrusted DIR
#   reproducible  the reproducible zipapp of build.sh: everything except smart cards
#   untrusted     the zipapp with the `card` extra (pyscard) compiled on this host
# Environment: PYTHON, the Python 3.11 to build with (default: python3.11 on PATH).
#
# Steps: preflight (every missing tool is named with its package per distribution; exit 1 and
# nothing is built), the install directory's checks, the build (build.sh, in a throw-away virtual
# environment of its own, from the hash-pinned requirements/*.lock; its `sha256 HEX  FILE` line
# goes to stderr), then an atomic install: a temporary file in DIR, mode 0755, fsynced, renamed to
# DIR/caution.
set -euo pipefail

usage() {
    echo "usage: $0 reproducible|untrusted DIR" >&2
    exit 2
}
[ "$#" -eq 2 ] || usage
mode="$1"
dir="$2"
case "$mode" in
    reproducible | untrusted) ;;
    *) usage ;;
esac
[ -n "$dir" ] || usage
repo="$(cd "$(dirname "$0")" && pwd)"

# --- preflight --------------------------------------------------------------------------------

missing=0
need() { # need PROBLEM DEBIAN FEDORA MACOS: one line naming what is missing and its packages
    echo "Error: $1. Install: Debian/Ubuntu: $2; Fedora: $3; macOS: $4." >&2
    missing=1
}

python="${PYTHON:-}"
[ -n "$python" ] || python="$(command -v python3.11 || true)"
if [ -z "$python" ] || ! command -v "$python" >/dev/null; then
    need "Python 3.11 (python3.11) is missing" \
        "apt-get install python3.11" "dnf install python3.11" "brew install python@3.11"
    python=""
elif ! "$python" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' 2>/dev/null; then
    echo "Error: $python is not Python 3.11 ($("$python" --version 2>&1 || true)); set PYTHON=/path/to/python3.11." >&2
    missing=1
else
    "$python" -c 'import ensurepip, venv' 2>/dev/null ||
        need "$python has no venv module (the build runs in a throw-away virtual environment)" \
            "apt-get install python3.11-venv" "dnf install python3.11" "brew install python@3.11"
    if [ "$mode" = untrusted ] &&
        ! "$python" -c 'import os, sys, sysconfig; sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")) else 1)'; then
        need "$python has no C headers (Python.h; pip compiles pyscard against them)" \
            "apt-get install python3.11-dev" "dnf install python3.11-devel" "brew install python@3.11"
    fi
fi
command -v flock >/dev/null ||
    need "flock is missing (build.sh takes turns with other builds of this tree)" \
        "apt-get install util-linux" "dnf install util-linux" "brew install flock"

if [ "$mode" = reproducible ]; then
    # The installed caution runs with the first supported one of these (shipping/preamble.sh).
    runs=0
    for candidate in python3 python3.13 python3.12 python3.11; do
        if "$candidate" -c 'import sys; sys.exit(0 if sys.implementation.name == "cpython" and (3, 11) <= sys.version_info[:2] <= (3, 13) else 1)' >/dev/null 2>&1; then
            runs=1
            break
        fi
    done
    [ "$runs" = 1 ] ||
        need "no CPython 3.11, 3.12 or 3.13 on PATH as python3, python3.13, python3.12 or python3.11 (the installed caution runs with the first of them)" \
            "apt-get install python3" "dnf install python3" "brew install python@3.13"
else
    # The compiler pip's build of pyscard runs: $CC, else the one Python was built with.
    cc="${CC:-}"
    if [ -z "$cc" ] && [ -n "$python" ]; then
        cc="$("$python" -c 'import sysconfig; print(sysconfig.get_config_var("CC") or "")' 2>/dev/null || true)"
    fi
    cc="${cc%% *}"
    cc="${cc:-cc}"
    command -v "$cc" >/dev/null ||
        need "the C compiler $cc is missing (pip compiles pyscard with it)" \
            "apt-get install gcc" "dnf install gcc" "xcode-select --install"
    command -v swig >/dev/null ||
        need "swig is missing (pyscard's build generates its PC/SC bindings with it)" \
            "apt-get install swig" "dnf install swig" "brew install swig"
    if [ "$(uname -s)" != Darwin ]; then # macOS: PC/SC is the system's PCSC.framework
        if ! command -v pkg-config >/dev/null; then
            need "pkg-config is missing (it finds the PC/SC headers for pyscard's build)" \
                "apt-get install pkg-config" "dnf install pkgconf-pkg-config" "not needed"
        elif ! pkg-config --exists libpcsclite; then
            need "pkg-config cannot find libpcsclite, the PC/SC headers (pyscard links against it)" \
                "apt-get install libpcsclite-dev" "dnf install pcsc-lite-devel" "built in (PCSC.framework)"
        fi
    fi
fi
[ "$missing" = 0 ] || exit 1

# --- the install directory --------------------------------------------------------------------

if [ ! -e "$dir" ]; then
    echo "Error: $dir does not exist." >&2
    exit 1
elif [ ! -d "$dir" ]; then
    echo "Error: $dir is not a directory." >&2
    exit 1
elif [ ! -w "$dir" ]; then
    echo "Error: $dir is not writable." >&2
    exit 1
elif [ -d "$dir/caution" ] && [ ! -L "$dir/caution" ]; then
    echo "Error: $dir/caution is a directory." >&2
    exit 1
fi
dir="$(cd "$dir" && pwd)"

# --- build ------------------------------------------------------------------------------------

work="$(mktemp -d)"
staged=""
cleanup() {
    rm -rf "$work"
    if [ -n "$staged" ]; then rm -f "$staged"; fi
}
trap cleanup EXIT

echo "Building the $mode caution zipapp ..." >&2
if [ "$mode" = untrusted ]; then
    PYTHON="$python" "$repo/build.sh" --with-card "$work/caution.pyz" >&2
else
    PYTHON="$python" "$repo/build.sh" "$work/caution.pyz" >&2
fi

# --- atomic install ---------------------------------------------------------------------------

staged="$(mktemp "$dir/.caution.XXXXXXXX")"
cat "$work/caution.pyz" >"$staged"
chmod 0755 "$staged"
# fsync the file, rename(2) it over DIR/caution (a symlink there is replaced, never followed), and
# fsync the directory. Python for portability (GNU mv -T and sync FILE are not on macOS).
"$python" - "$staged" "$dir/caution" "$dir" <<'PY'
import os, sys
staged, target, directory = sys.argv[1:]
def fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
fsync(staged)
os.replace(staged, target)
fsync(directory)
PY
staged=""

if [ "$mode" = untrusted ]; then
    echo "Installed untrusted caution to $dir/caution"
    echo
    echo "\"Untrusted\": this caution was built on this machine with its compiler, its C library, its"
    echo "PC/SC library (pyscard is compiled here and talks to this host's pcscd) and the Python"
    echo "packages pip fetched here, so it carries the supply-chain risk of all of them. Unlike the"
    echo "reproducible zipapp of 'make install-cli', its bytes cannot be compared with anyone else's"
    echo "build. It is what sends shards from an OpenPGP smart card: use it only on a machine you"
    echo "already trust with that card."
else
    echo "Installed caution to $dir/caution"
    echo
    echo "This is the reproducible zipapp of build.sh: pinned dependencies, no C code compiled on this"
    echo "machine. It has no smart-card support: to send shards from an OpenPGP card, install with"
    echo "'make install-cli-untrusted' instead."
fi
case ":$PATH:" in
    *":$dir:"*) ;;
    *) echo "Note: $dir is not on your PATH." ;;
esac
