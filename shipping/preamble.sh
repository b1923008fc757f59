#!/bin/sh
# locksmith: a zipapp for CPython 3.11, 3.12 and 3.13 (README "The zipapp"). What follows this
# shell preamble is a zip archive, which Python finds from the end of the file: `python3.12
# locksmith.pyz ARGS` runs it directly. Started as a program, the preamble runs it with the first
# of python3, python3.13, python3.12, python3.11 on PATH that is a supported CPython, exec'ing the
# interpreter that one names (a pyenv shim is asked once, not twice).
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
    command -v "$candidate" >/dev/null 2>&1 || continue
    answer=$("$candidate" -S -c "$probe" 2>/dev/null) && exec "$answer" "$0" "$@"
    [ $? -eq 3 ] || answer="does not run"
    found="${found:+$found, }$candidate ($answer)"
done
echo "locksmith needs CPython 3.11, 3.12 or 3.13; found: ${found:-no python3, python3.13, python3.12 or python3.11 on PATH}" >&2
exit 1
