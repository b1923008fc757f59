#!/usr/bin/env bash
# Build dist/locksmith.pyz: one shiv zipapp holding locksmith and its pinned dependencies.
#
# Usage: ./build.sh [OUTPUT]   (default dist/locksmith.pyz)
# The card extra (pyscard, a C extension linked against the host's PC/SC library) is not part
# of this build; see cli.md §9 and the README.
set -euo pipefail
cd "$(dirname "$0")"

out="${1:-dist/locksmith.pyz}"
python="${PYTHON:-.venv/bin/python}"
[ -x "$python" ] || python="$(command -v python3.11)"
mkdir -p "$(dirname "$out")"

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
    --python '/usr/bin/env python3.11' \
    --entry-point locksmith.__main__:main \
    --output-file "$tmp/locksmith.pyz" \
    --disable-pip-version-check --quiet \
    --constraint constraints.txt \
    . >&2
mv "$tmp/locksmith.pyz" "$out"
echo "built $out" >&2
