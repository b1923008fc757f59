#!/usr/bin/env bash
# Regenerate the hash-pinned lock files that build.sh installs from (--require-hashes):
#   runtime.lock  the zipapp's payload: ../pyproject.toml's dependencies + runtime.in, resolved for
#                 CPython 3.11 at the versions of ../constraints.txt, with the hashes of every file
#                 PyPI has for each pinned version (build.sh also takes the cp312/cp313 wheels of
#                 the compiled packages from these pins).
#   card.lock     pyscard (the `card` extra), whose sdist build.sh --with-card compiles here.
#   build.lock    the tools of build.sh's throw-away venv (pip, setuptools, wheel, shiv, click).
# pip-tools runs in a throw-away venv of its own; PyPI must be reachable. Run this after changing
# a dependency or a pin, then rebuild and commit the lock files with the change.
set -euo pipefail
cd "$(dirname "$0")"
python="${PYTHON:-python3.11}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$python" -m venv "$work/venv"
"$work/venv/bin/python" -m pip install --quiet --disable-pip-version-check pip-tools==7.6.2
# Only PyPI: no local find-links or extra indexes of this machine in the hashes.
export PIP_CONFIG_FILE=/dev/null
unset PIP_FIND_LINKS PIP_EXTRA_INDEX_URL PIP_INDEX_URL PIP_CONSTRAINT
compile() {
    "$work/venv/bin/pip-compile" --quiet --generate-hashes --allow-unsafe --strip-extras \
        --no-emit-index-url --no-emit-find-links --resolver=backtracking \
        --cache-dir "$work/pip-tools-cache" "$@"
}
compile --output-file runtime.lock ../pyproject.toml runtime.in
compile --output-file card.lock card.in
compile --output-file build.lock build.in
echo "wrote requirements/runtime.lock, card.lock and build.lock" >&2
