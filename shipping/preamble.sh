#!/bin/sh
# locksmith: a zipapp for CPython 3.11, 3.12 and 3.13 (README "The zipapp"). What follows this
# shell preamble is a zip archive, which Python finds from the end of the file: `python3.12
# locksmith.pyz ARGS` runs it directly. Started as a program, the preamble runs it with the first
# of python3, python3.13, python3.12, python3.11 on PATH that is a supported CPython, exec'ing the
# interpreter that one names (a pyenv shim is asked once, not twice).
# Fast start (shipping/launcher.py, FAST_START): when this build is already extracted in its root
# and the first of those names on PATH is an interpreter the probe below accepted for it before,
# that interpreter is exec'd at once with `-I -S` and a short program that checks the root and
# runs the extraction, without asking it first and without reading the archive. It hands anything
# unexpected back to the normal start (with _LOCKSMITH_PROBE set: back to this probe).
build=@BUILD_ID@
if [ -n "${_LOCKSMITH_PROBE:-}" ]; then
    unset _LOCKSMITH_PROBE
else
    if [ -n "${SHIV_ROOT:-}" ]; then
        root=$SHIV_ROOT
    else
        case "${XDG_CACHE_HOME:-}" in
            /*) root=$XDG_CACHE_HOME/locksmith ;;
            *) root=${HOME:-}/.cache/locksmith ;;
        esac
    fi
    if [ -f "$root/locksmith_$build/interpreters" ]; then
        for candidate in python3 python3.13 python3.12 python3.11; do
            path=$(command -v "$candidate" 2>/dev/null) || continue
            while IFS= read -r known; do
                [ "$known" != "$path" ] || exec "$path" -I -S -c '@FAST_START@' "$build" "$0" "$@"
            done < "$root/locksmith_$build/interpreters"
            break  # only the candidate that the probe would ask first
        done
    fi
fi
probe='import sys
v = sys.version_info
i = getattr(getattr(sys, "implementation", None), "name", "python")
if i == "cpython" and (v[0], v[1]) in ((3, 11), (3, 12), (3, 13)) and not getattr(sys, "abiflags", "") and sys.executable:
    sys.stdout.write(sys.executable)
else:
    sys.stdout.write("%s %d.%d.%d%s" % ({"cpython": "CPython"}.get(i, i), v[0], v[1], v[2], getattr(sys, "abiflags", "")))
    sys.exit(3)'
found=""
for candidate in python3 python3.13 python3.12 python3.11; do
    path=$(command -v "$candidate" 2>/dev/null) || continue
    answer=$("$candidate" -S -c "$probe" 2>/dev/null) && {
        # For the launcher, which lists it for the fast start (an absolute path only).
        case "$path" in /*) _LOCKSMITH_CANDIDATE=$path; export _LOCKSMITH_CANDIDATE ;; esac
        exec "$answer" "$0" "$@"
    }
    [ $? -eq 3 ] || answer="does not run"
    found="${found:+$found, }$candidate ($answer)"
done
echo "locksmith needs CPython 3.11, 3.12 or 3.13; found: ${found:-no python3, python3.13, python3.12 or python3.11 on PATH}" >&2
exit 1
