#!/usr/bin/env bash
# Build dist/locksmith.pyz: one shiv zipapp holding locksmith and its pinned dependencies.
#
# Usage: ./build.sh [--with-card] [OUTPUT]   (default dist/locksmith.pyz)
#
# Without --with-card (the reproducible build, used by `make build`, `make demo` and the tests):
# no C extension of our own choosing is compiled here, and the shebang is `/usr/bin/env python3.11`.
#
# --with-card (`make install-cli-untrusted`, cli.md §9): the zipapp also holds the `card` extra,
# pyscard, which has no Linux wheel: pip compiles it on this host against this host's PC/SC
# library and the headers of the interpreter that runs this script. The shebang is then the
# absolute path of that interpreter (the base interpreter when PYTHON is a venv's), because the
# compiled extension belongs to it: `/usr/bin/env python3.11` could find another 3.11 at run time
# (a pyenv shim can even pick another version per directory), which would silently lose smart-card
# support. Such a zipapp is for this host only and is not reproducible.
set -euo pipefail
cd "$(dirname "$0")"

with_card=0
if [ "${1:-}" = --with-card ]; then
    with_card=1
    shift
fi
case "${1:-}" in
    -*) echo "usage: ./build.sh [--with-card] [OUTPUT]" >&2; exit 2 ;;
esac
out="${1:-dist/locksmith.pyz}"
python="${PYTHON:-.venv/bin/python}"
[ -x "$python" ] || python="$(command -v python3.11)"
mkdir -p "$(dirname "$out")"

if [ "$with_card" = 1 ]; then
    target='.[card]'
    interpreter="$("$python" -c 'import sys; print(getattr(sys, "_base_executable", "") or sys.executable)')"
    case "$interpreter" in
        /*) ;;
        *) echo "error: cannot tell the absolute path of $python's interpreter (got '$interpreter')" >&2; exit 1 ;;
    esac
    if [[ "$interpreter" =~ [[:space:]] ]] || [ "${#interpreter}" -gt 120 ]; then
        echo "error: $interpreter cannot be named in a #! line (spaces, or longer than 120 bytes)" >&2
        exit 1
    fi
    [ -x "$interpreter" ] || { echo "error: $interpreter is not an executable" >&2; exit 1; }
else
    target='.'
    interpreter='/usr/bin/env python3.11'
fi

# Fixed timestamps so that the same sources and pins give the same bytes (reproducible build).
export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-1700000000}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# pip builds the project in place (build/, *.egg-info next to pyproject.toml), so two builds of
# this tree at once (parallel tests) would trample each other: take turns.
exec 9>".build.lock"
flock 9

"$python" -m shiv \
    --reproducible \
    --compressed \
    --compile-pyc \
    --python "$interpreter" \
    --entry-point locksmith.__main__:main \
    --output-file "$tmp/locksmith.pyz" \
    --disable-pip-version-check --quiet \
    --constraint constraints.txt \
    "$target" >&2
mv "$tmp/locksmith.pyz" "$out"
echo "built $out" >&2
