#!/usr/bin/env bash
# image/make-base.sh runtime|build — a Debian 12 (bookworm) root filesystem with Python 3.11, made
# with mmdebstrap from Debian packages alone (no container registry), for `podman import` as the
# Containerfile's BASE (runtime) or BUILD_BASE (build). Prints the tarball's path on stdout.
#
#   runtime  the enclave base: Debian's essential set + python3.11-minimal, libpython3.11-stdlib
#            and python3-minimal; no apt, no compiler, no documentation (about 90 MB)
#   build    the same + python3.11-venv (venv and ensurepip, which build.sh needs)
#
# Tarballs are cached in $LOCKSMITH_IMAGE_CACHE (default /var/cache/locksmith-image), named by a
# hash of everything that goes into them (this recipe: suite, sources, packages, options), and
# made again when older than $LOCKSMITH_IMAGE_MAX_AGE_DAYS (default 7) so that Debian's security
# updates reach the images. Needs root and the Debian package mmdebstrap.
set -euo pipefail

kind="${1:-}"
case "$kind" in
    runtime) extra=() ;;
    build) extra=(python3.11-venv) ;;
    *) echo "usage: image/make-base.sh runtime|build" >&2; exit 2 ;;
esac
command -v mmdebstrap >/dev/null || {
    echo "error: mmdebstrap not found (Debian package: mmdebstrap; \`make apt\` installs it)" >&2
    exit 1
}
[ "$(id -u)" = 0 ] || { echo "error: image/make-base.sh runs mmdebstrap as root" >&2; exit 1; }

suite=bookworm
mirror="${LOCKSMITH_DEBIAN_MIRROR:-http://deb.debian.org}"
packages=(python3.11-minimal libpython3.11-stdlib python3-minimal "${extra[@]}")
sources=(
    "deb $mirror/debian $suite main"
    "deb $mirror/debian $suite-updates main"
    "deb $mirror/debian-security $suite-security main"
)
options=(
    --variant=essential
    # merged /usr set up by mmdebstrap itself, so the usrmerge package (and perl) stays out
    --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr
    --include="$(IFS=,; echo "${packages[*]}")"
    # like debian:*-slim: no manual pages, documentation (copyright files kept) or translations
    --dpkgopt='path-exclude=/usr/share/man/*'
    --dpkgopt='path-exclude=/usr/share/doc/*'
    --dpkgopt='path-include=/usr/share/doc/*/copyright'
    --dpkgopt='path-exclude=/usr/share/locale/*'
    --dpkgopt='path-exclude=/usr/share/info/*'
)

cache="${LOCKSMITH_IMAGE_CACHE:-/var/cache/locksmith-image}"
max_age="${LOCKSMITH_IMAGE_MAX_AGE_DAYS:-7}"
key="$(printf '%s\n' "$suite" "${sources[@]}" "${options[@]}" "$(mmdebstrap --version)" \
    | sha256sum | cut -c1-16)"
tarball="$cache/$kind-$suite-$key.tar"
mkdir -p "$cache"

# One maker at a time per cache (parallel test processes ask for the same tarball).
exec 9>"$cache/.lock"
flock 9
if [ -f "$tarball" ] && [ -z "$(find "$tarball" -mtime +"$max_age")" ]; then
    echo "$tarball"
    exit 0
fi

tmp="$(mktemp "$cache/.$kind.XXXXXX.tar")"
trap 'rm -f "$tmp"' EXIT
echo "image/make-base.sh: making the $kind base with mmdebstrap (cached in $cache)" >&2
# mmdebstrap logs to stderr; keep it for a failure only.
if ! mmdebstrap --quiet "${options[@]}" "$suite" "$tmp" "${sources[@]}" 2>"$tmp.log"; then
    cat "$tmp.log" >&2
    rm -f "$tmp.log"
    echo "error: mmdebstrap failed (is the Debian mirror $mirror reachable?)" >&2
    exit 1
fi
rm -f "$tmp.log"
chmod 0644 "$tmp"
mv "$tmp" "$tarball"
# Older tarballs of this kind (another recipe, or expired) are not needed any more.
find "$cache" -maxdepth 1 -name "$kind-*.tar" ! -name "$(basename "$tarball")" -delete
echo "$tarball"
