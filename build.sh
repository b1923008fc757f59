#!/usr/bin/env bash
# Build dist/locksmith.pyz: one shiv zipapp holding locksmith and its pinned dependencies
# (README "The zipapp").
#
# Usage: ./build.sh [--with-card] [OUTPUT]   (default dist/locksmith.pyz)
# Environment: PYTHON, the CPython 3.11 to build with (default: python3.11 on PATH).
# Prints `sha256 <hex>  OUTPUT` on stdout; progress goes to stderr.
#
# Without --with-card (the reproducible build: `make build`, `make demo`, `make install-cli`, the
# tests): from a clean clone, with nothing but PYTHON, its venv module and PyPI, the same sources
# give the same bytes in any directory and on any Linux x86_64 machine:
#   * a throw-away venv from PYTHON gets the tools of requirements/build.lock (pip, setuptools,
#     wheel, shiv), hash-checked;
#   * the dependencies are requirements/runtime.lock, hash-checked, as manylinux (glibc <= 2.28)
#     wheels whatever this host's glibc; the packages that PyPI has only as sdists (PGPy) and
#     locksmith itself (from a copy of pyproject.toml and locksmith/) are built into wheels here
#     by the pinned setuptools, without build isolation;
#   * one fat site-packages for CPython 3.11, 3.12 and 3.13: the pure Python code is the same for
#     the three (checked), and the extension modules that are version-specific (cffi's
#     _cffi_backend, cbor2, pydantic-core) are added for each version; cryptography's is abi3.
#     The build fails if any compiled module lacks a version;
#   * no path of this machine: pip's console scripts (bin/) and direct_url.json are dropped
#     with their RECORD lines, and the build fails if any file still contains the build
#     directory, this tree's path or PYTHON's prefix;
#   * fixed timestamps (SOURCE_DATE_EPOCH=1700000000, whatever the caller's), fixed
#     permissions, entries in sorted order and stored, not deflated (zlib builds deflate
#     differently); shiv's build id is the hash of the contents;
#   * a POSIX sh preamble instead of a #! python line (shipping/preamble.sh), so that the file runs
#     with whichever supported python3 the machine has.
#
# --with-card (`make install-cli-untrusted`, cli.md §9): the zipapp also holds the `card` extra,
# pyscard, which has no Linux wheel: pip compiles its hash-pinned sdist (requirements/card.lock)
# on this host against this host's PC/SC library and the headers of PYTHON (any of 3.11-3.13).
# The zipapp then holds the site-packages of that one version, and its #! line is the absolute
# path of PYTHON's base interpreter, because the compiled extension belongs to it: a python3
# found at run time could be another one. Such a zipapp is for this host only and is not
# reproducible.
set -euo pipefail
cd "$(dirname "$0")"
repo="$(pwd -P)"

with_card=0
if [ "${1:-}" = --with-card ]; then
    with_card=1
    shift
fi
case "${1:-}" in
    -*) echo "usage: ./build.sh [--with-card] [OUTPUT]" >&2; exit 2 ;;
esac
[ "$#" -le 1 ] || { echo "usage: ./build.sh [--with-card] [OUTPUT]" >&2; exit 2; }
out="${1:-dist/locksmith.pyz}"

python="${PYTHON:-python3.11}"
if ! command -v "$python" >/dev/null 2>&1; then
    echo "error: $python not found: build.sh needs CPython 3.11 (set PYTHON=/path/to/python3.11)" >&2
    exit 1
fi
read -r version interpreter prefix < <("$python" -c 'import sys
print("%d.%d" % sys.version_info[:2], getattr(sys, "_base_executable", "") or sys.executable,
      sys.base_prefix)') || { echo "error: $python does not run" >&2; exit 1; }
if [ "$with_card" = 0 ] && [ "$version" != 3.11 ]; then
    echo "error: the reproducible build runs on CPython 3.11; $python is $version (set PYTHON=/path/to/python3.11)" >&2
    exit 1
fi
case "$version" in
    3.11 | 3.12 | 3.13) ;;
    *) echo "error: $python is Python $version; locksmith supports CPython 3.11 to 3.13" >&2; exit 1 ;;
esac
if [ "$with_card" = 1 ]; then
    case "$interpreter" in
        /*) ;;
        *) echo "error: cannot tell the absolute path of $python's interpreter (got '$interpreter')" >&2; exit 1 ;;
    esac
    if [[ "$interpreter" =~ [[:space:]] ]] || [ "${#interpreter}" -gt 120 ]; then
        echo "error: $interpreter cannot be named in a #! line (spaces, or longer than 120 bytes)" >&2
        exit 1
    fi
    [ -x "$interpreter" ] || { echo "error: $interpreter is not an executable" >&2; exit 1; }
fi
mkdir -p "$(dirname "$out")"

# Take turns with other builds of this tree (parallel test processes, make -j).
exec 9>".build.lock"
flock 9

export SOURCE_DATE_EPOCH=1700000000 PYTHONDONTWRITEBYTECODE=1
umask 022
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
step() { echo "build: $*" >&2; }

step "a throw-away venv from $python with requirements/build.lock"
if ! "$python" -m venv "$tmp/venv" >&2; then
    echo "error: $python cannot make a virtual environment (Debian/Ubuntu: apt-get install python$version-venv)" >&2
    exit 1
fi
py="$tmp/venv/bin/python"
pip=("$py" -m pip --disable-pip-version-check --quiet)
"${pip[@]}" install --require-hashes --no-deps -r requirements/build.lock

# The pins of runtime.lock that PyPI has only as sdists: built into wheels here.
source_only=(pgpy)
step "wheels built here: ${source_only[*]} (sdists of runtime.lock) and locksmith"
"$py" shipping/assemble.py split-lock requirements/runtime.lock "$tmp/req" "${source_only[@]}"
mkdir -p "$tmp/src" "$tmp/wheels"
cp pyproject.toml "$tmp/src/"
tar -cf - --exclude=__pycache__ --exclude='*.pyc' locksmith | tar -xf - -C "$tmp/src"
# --no-cache-dir: never a wheel that pip built earlier with other tools.
"${pip[@]}" wheel --no-cache-dir --no-deps --no-build-isolation --require-hashes \
    -r "$tmp/req/source.req" -w "$tmp/wheels"
"${pip[@]}" wheel --no-deps --no-build-isolation "$tmp/src" -w "$tmp/wheels"
if [ "$with_card" = 1 ]; then
    step "pyscard compiled here (requirements/card.lock: its sdist, hash-checked)"
    "${pip[@]}" wheel --no-cache-dir --no-deps --no-build-isolation --require-hashes \
        -r requirements/card.lock -w "$tmp/wheels"
fi
"${pip[@]}" install --no-compile --no-deps --no-index --target "$tmp/local" "$tmp"/wheels/*.whl

# Wheels for CPython VERSION on manylinux x86_64 up to glibc 2.28, whatever this host is.
platforms=()
for glibc in $(seq 28 -1 5); do platforms+=(--platform "manylinux_2_${glibc}_x86_64"); done
platforms+=(--platform manylinux2014_x86_64 --platform manylinux2010_x86_64 --platform manylinux1_x86_64)
install_for() { # VERSION TARGET
    "${pip[@]}" install --no-compile --no-deps --require-hashes --only-binary=:all: \
        "${platforms[@]}" --implementation cp --python-version "$1" --abi "cp${1/./}" \
        --abi abi3 --abi none --target "$2" -r "$tmp/req/binary.req"
}
step "site-packages for CPython $version (requirements/runtime.lock)"
install_for "$version" "$tmp/site"
others=()
if [ "$with_card" = 0 ]; then
    for other in 3.12 3.13; do
        step "extension modules for CPython $other"
        install_for "$other" "$tmp/site-$other"
        others+=(--add "$other=$tmp/site-$other")
    done
fi
# No file may name this build's directories, this tree or PYTHON's installation (unless that is
# the system's /usr, which upstream binaries name too). Not checked with --with-card: pyscard,
# compiled here, names this host's Python headers, and that zipapp stays on this host.
forbid=()
if [ "$with_card" = 0 ]; then
    forbid+=(--forbid "$tmp" --forbid "$repo")
    case "$prefix" in /usr | /usr/local | /) ;; *) forbid+=(--forbid "$prefix") ;; esac
fi
"$py" shipping/assemble.py site-packages "$tmp/site" --merge "$tmp/local" ${others[@]+"${others[@]}"} \
    ${forbid[@]+"${forbid[@]}"}

step "shiv"
"$tmp/venv/bin/shiv" --site-packages "$tmp/site" --reproducible --uncompressed --compile-pyc \
    --entry-point locksmith.__main__:main --python /bin/sh --output-file "$tmp/shiv.pyz" >&2
if [ "$with_card" = 1 ]; then
    "$py" shipping/assemble.py finish "$tmp/shiv.pyz" "$tmp/locksmith.pyz" --shebang "$interpreter"
else
    "$py" shipping/assemble.py finish "$tmp/shiv.pyz" "$tmp/locksmith.pyz" --preamble shipping/preamble.sh
fi
mv -f "$tmp/locksmith.pyz" "$out"
sha="$("$py" -c 'import hashlib, sys; print(hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest())' "$out")"
echo "sha256 $sha  $out"
