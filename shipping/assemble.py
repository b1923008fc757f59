"""build.sh's steps between pip and shiv, and after shiv (README "The zipapp").

    assemble.py split-lock LOCK OUTDIR NAME...
        Writes OUTDIR/source.req (the blocks of the hash-pinned LOCK for the packages NAME...,
        which PyPI has only as sdists) and OUTDIR/binary.req (every other block).
    assemble.py site-packages SITE [--merge DIR]... [--add VERSION=SITE]... [--forbid TEXT]...
        Makes SITE (pip --target output for the build's Python, plus the packages of each
        --merge DIR, pip --target output of the wheels built here) ready for shiv: drops pip's
        console scripts (bin/, with their absolute #! lines) and direct_url.json files with
        their RECORD lines, adds from each `--add` site-packages (the same pins installed for
        another CPython) its version-specific extension modules after checking that everything
        else is identical, checks that every extension module either is abi3 or exists for
        every version of the zipapp, adds shipping/launcher.py as _locksmith_launcher.py (the
        fast start imports it from the extraction), refuses .pth files (the fast start does not
        run `site`), sets fixed permissions, and fails if any file contains one of the --forbid
        strings (the build's own paths).
    assemble.py finish SHIV_PYZ OUTPUT (--preamble FILE | --shebang INTERPRETER)
        Writes OUTPUT: the preamble (or a #! line), then shiv's archive with its __main__.py
        replaced by shipping/zip_main.py and shipping/launcher.py added as
        _locksmith_launcher.py, every entry stored (not deflated: deflate output depends on the
        zlib build, so compressed archives from different machines can differ). The preamble's
        @BUILD_ID@ becomes shiv's build id and @FAST_START@ the launcher's FAST_START; shiv's
        settings must be the ones the fast start assumes (the launcher's entry point, no
        extended or prepended PYTHONPATH).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import re
import shutil
import sys
import zipfile
from pathlib import Path
from typing import NoReturn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import launcher  # noqa: E402  (shipping/launcher.py: FAST_START and the entry point)

REQUIREMENT = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==")
# An extension module built for one CPython version: name.cpython-3XY-<platform>.so
VERSIONED = re.compile(r"^(?P<stem>.+)\.cpython-(?P<tag>3\d+)(?P<abi>[a-z]*)-(?P<platform>[^/]+)\.so$")


def fail(message: str) -> NoReturn:
    sys.exit(f"build: {message}")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def split_lock(lock: Path, outdir: Path, source_only: list[str]) -> None:
    wanted = {canonical(n) for n in source_only}
    blocks: dict[bool, list[str]] = {True: [], False: []}
    current: bool | None = None
    seen: set[str] = set()
    for line in lock.read_text().splitlines():
        match = REQUIREMENT.match(line)
        if match:
            name = canonical(match.group(1))
            current = name in wanted
            seen.add(name)
        if current is not None and not line.lstrip().startswith("#"):
            blocks[current].append(line)
    missing = wanted - seen
    if missing:
        fail(f"{lock} pins no {', '.join(sorted(missing))}")
    outdir.mkdir(parents=True, exist_ok=True)
    (outdir / "source.req").write_text("\n".join(blocks[True]) + "\n")
    (outdir / "binary.req").write_text("\n".join(blocks[False]) + "\n")


def files_of(site: Path) -> dict[str, Path]:
    return {p.relative_to(site).as_posix(): p for p in sorted(site.rglob("*"))
            if p.is_file() or p.is_symlink()}


def record_hash(path: Path) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(path.read_bytes()).digest()).rstrip(b"=")
    return f"sha256={digest.decode()}"


def drop_installer_leftovers(site: Path) -> None:
    """Console scripts (bin/: #! lines naming the build venv) and direct_url.json (the path of
    a local wheel), and their RECORD lines; byte-code caches."""
    if (site / "bin").exists():
        shutil.rmtree(site / "bin")
    for cache in sorted(site.rglob("__pycache__"), reverse=True):
        shutil.rmtree(cache)
    for dist_info in sorted(site.glob("*.dist-info")):
        (dist_info / "direct_url.json").unlink(missing_ok=True)
        record = dist_info / "RECORD"
        if not record.exists():
            continue
        kept = []
        for line in record.read_text().splitlines(keepends=True):
            path = line.split(",", 1)[0]
            if (path.startswith(("../", "bin/")) or path.endswith("/direct_url.json")
                    or "/__pycache__/" in path or path.startswith("__pycache__/")):
                continue
            kept.append(line)
        record.write_text("".join(kept))


def python_tag(site: Path) -> str:
    tags = {m.group("tag") + m.group("abi") for rel in files_of(site)
            if (m := VERSIONED.match(rel))}
    if len(tags) > 1:
        fail(f"{site} holds extension modules of several Pythons: {sorted(tags)}")
    return tags.pop() if tags else ""


def add_version(site: Path, other: Path, version: str) -> list[str]:
    """Copy `other`'s extension modules for `version` into `site`; everything else must match."""
    ours, theirs = files_of(site), files_of(other)
    tag = version.replace(".", "")
    shared_tops = {rel.split("/", 1)[0] for rel in theirs}
    added = []
    for rel, path in theirs.items():
        top = rel.split("/", 1)[0]
        if top.endswith(".dist-info"):
            if top not in {r.split("/", 1)[0] for r in ours}:
                fail(f"{version} installs {top}, which the zipapp's site-packages lacks")
            continue
        match = VERSIONED.match(rel)
        if match:
            if match.group("tag") + match.group("abi") != tag:
                fail(f"{version}'s site-packages holds {rel}, built for another Python")
            target = site / rel
            if not (site / f"{match.group('stem')}").parent.is_dir():
                fail(f"{rel} has no package in the zipapp's site-packages")
            shutil.copyfile(path, target)
            added.append(rel)
            continue
        if rel not in ours:
            fail(f"{version} installs {rel}, which the zipapp's site-packages lacks: its "
                 "packages differ between Python versions")
        if ours[rel].read_bytes() != path.read_bytes():
            fail(f"{rel} differs between the {version} and the build's installation: a single "
                 "site-packages cannot serve both")
    for rel in ours:
        top = rel.split("/", 1)[0]
        if top in shared_tops and not top.endswith(".dist-info") and rel not in theirs \
                and not VERSIONED.match(rel):
            fail(f"{rel} is not installed for {version}: its packages differ between versions")
    # RECORD lines for the added files, in their distribution's RECORD.
    for dist_info in sorted(other.glob("*.dist-info")):
        record = dist_info / "RECORD"
        lines = [line for line in record.read_text().splitlines(keepends=True)
                 if line.split(",", 1)[0] in added] if record.exists() else []
        if lines:
            with open(site / dist_info.name / "RECORD", "a") as out:
                out.writelines(lines)
    return added


def check_extensions(site: Path, tags: list[str]) -> list[str]:
    """Every compiled module is abi3, or exists once for each of `tags` (e.g. 311, 312, 313)."""
    variants: dict[str, set[str]] = {}
    report = []
    for rel in files_of(site):
        if not rel.endswith(".so") and ".so." not in rel:
            continue
        top = rel.split("/", 1)[0]
        if top.endswith(".libs"):  # libraries that auditwheel bundled: not importable modules
            report.append(f"{rel} (bundled library)")
            continue
        if rel.endswith(".abi3.so"):
            report.append(f"{rel} (abi3: every CPython 3)")
            continue
        match = VERSIONED.match(rel)
        if not match:
            fail(f"{rel} is a compiled module without a Python version tag: it cannot be "
                 "checked against the Pythons the zipapp runs on")
        variants.setdefault(match.group("stem"), set()).add(match.group("tag") + match.group("abi"))
    for stem, found in sorted(variants.items()):
        if found != set(tags):
            fail(f"{stem} is compiled for {sorted(found)} but the zipapp runs on {tags}")
        report.append(f"{stem} (cpython-{', '.join(sorted(found))})")
    return report


def normalise_permissions(site: Path) -> None:
    for path in site.rglob("*"):
        if path.is_symlink():
            fail(f"{path.relative_to(site)} is a symbolic link")
        path.chmod(0o755 if path.is_dir() or path.suffix == ".so" or ".so." in path.name
                   else 0o644)


def forbid(site: Path, needles: list[str]) -> None:
    encoded = [n.encode() for n in needles if n]
    for rel, path in files_of(site).items():
        data = path.read_bytes()
        for needle in encoded:
            if needle in data:
                fail(f"{rel} contains {needle.decode()!r}, a path of this build")


def merge(site: Path, other: Path) -> None:
    """Move the packages pip installed into `other` (the wheels built here) into `site`."""
    for entry in sorted(other.iterdir()):
        if entry.name == "bin":
            continue
        if (site / entry.name).exists():
            fail(f"{entry.name} is installed twice")
        shutil.move(str(entry), str(site / entry.name))


def site_packages(args: argparse.Namespace) -> None:
    site = Path(args.site)
    for other in args.merge:
        merge(site, Path(other))
    drop_installer_leftovers(site)
    primary = python_tag(site)
    tags = [primary] if primary else []
    for spec in args.add:
        version, _, other = spec.partition("=")
        drop_installer_leftovers(Path(other))
        added = add_version(site, Path(other), version)
        tags.append(version.replace(".", ""))
        print(f"build: added {len(added)} extension modules for CPython {version}", file=sys.stderr)
    for line in check_extensions(site, sorted(set(tags))):
        print(f"build: compiled: {line}", file=sys.stderr)
    pth = sorted(p.name for p in site.glob("*.pth"))
    if pth:
        fail(f"site-packages has .pth files, which the fast start would not run: {pth}")
    if (site / "_locksmith_launcher.py").exists():
        fail("_locksmith_launcher.py is installed twice")
    shutil.copyfile(HERE / "launcher.py", site / "_locksmith_launcher.py")
    normalise_permissions(site)
    forbid(site, args.forbid)


def preamble(template: Path, settings: dict[str, object]) -> bytes:
    """The sh preamble with this build's id and the launcher's FAST_START filled in."""
    if settings.get("entry_point") != launcher.ENTRY_POINT or settings.get("prepend_pythonpath") \
            or settings.get("extend_pythonpath"):
        fail(f"shiv's settings differ from what the fast start assumes: {settings}")
    build_id = str(settings["build_id"])
    if len(build_id) != 64 or build_id.strip("0123456789abcdef"):
        fail(f"unexpected build id {build_id!r}")
    if "'" in launcher.FAST_START:
        fail("FAST_START holds a single quote; the preamble quotes it with single quotes")
    text = template.read_text()
    for placeholder in ("@BUILD_ID@", "@FAST_START@"):
        if text.count(placeholder) != 1:
            fail(f"the preamble must hold {placeholder} exactly once")
    return text.replace("@BUILD_ID@", build_id).replace("@FAST_START@", launcher.FAST_START).encode()


def finish(args: argparse.Namespace) -> None:
    with zipfile.ZipFile(args.shiv_pyz) as source:
        settings = json.loads(source.read("environment.json"))
    if args.preamble:
        prefix = preamble(Path(args.preamble), settings)
    else:
        prefix = f"#!{args.shebang}\n".encode()
    replaced = {
        "__main__.py": (HERE / "zip_main.py").read_bytes(),
        "_locksmith_launcher.py": (HERE / "launcher.py").read_bytes(),
    }
    output = Path(args.output)
    with zipfile.ZipFile(args.shiv_pyz) as source, open(output, "wb") as out:
        out.write(prefix)
        with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as target:
            date_time = source.getinfo("__main__.py").date_time
            for info in source.infolist():
                if info.filename in replaced:
                    continue
                copy = zipfile.ZipInfo(info.filename, date_time=info.date_time)
                copy.external_attr = info.external_attr
                copy.compress_type = zipfile.ZIP_STORED
                target.writestr(copy, source.read(info))
            for name, data in replaced.items():
                entry = zipfile.ZipInfo(name, date_time=date_time)
                entry.external_attr = 0o100644 << 16
                entry.compress_type = zipfile.ZIP_STORED
                target.writestr(entry, data)
    output.chmod(0o755)


def main() -> None:
    parser = argparse.ArgumentParser(prog="assemble.py")
    commands = parser.add_subparsers(dest="command", required=True)
    split = commands.add_parser("split-lock")
    split.add_argument("lock")
    split.add_argument("outdir")
    split.add_argument("source_only", nargs="*")
    site = commands.add_parser("site-packages")
    site.add_argument("site")
    site.add_argument("--merge", action="append", default=[], metavar="SITE")
    site.add_argument("--add", action="append", default=[], metavar="VERSION=SITE")
    site.add_argument("--forbid", action="append", default=[])
    done = commands.add_parser("finish")
    done.add_argument("shiv_pyz")
    done.add_argument("output")
    how = done.add_mutually_exclusive_group(required=True)
    how.add_argument("--preamble")
    how.add_argument("--shebang")
    args = parser.parse_args()
    if args.command == "split-lock":
        split_lock(Path(args.lock), Path(args.outdir), args.source_only)
    elif args.command == "site-packages":
        site_packages(args)
    else:
        finish(args)


if __name__ == "__main__":
    os.umask(0o022)
    main()
