"""The shipped zipapp (README "The zipapp"): it builds reproducibly, names no path of the build
machine, runs the holder CLI on CPython 3.11, 3.12 and 3.13, and extracts itself safely.

The interpreters are found with pyenv (`pyenv prefix 3.X`, or `$PYENV_ROOT/versions/3.X.*`) or
as `python3.X` on PATH; a missing one fails its tests (CI must have all three: see README). Each
interpreter runs the zipapp with a fresh HOME of its own (so the default extraction root,
`~/.cache/locksmith`, is exercised); everything else is built once per test process (the
`zipapp` fixture).
"""

from __future__ import annotations

import base64
import fcntl
import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.conftest import CAUTION_V0, REPO

if TYPE_CHECKING:
    from tests.unlock_kit import World

VERSIONS = ("3.11", "3.12", "3.13")
# What the tests must not inherit: another extraction root, another interpreter's paths.
SCRUBBED = ("SHIV_", "XDG_CACHE_HOME", "PYTHONPATH", "PYTHONHOME", "LOCKSMITH", "KEYFORKD",
            "KEYMAKER", "CAUTION")
# Build paths of the upstream projects, compiled into their hash-pinned wheels: Rust crate sources
# (cbor2's and pydantic-core's extension modules) and a CI checkout named in pydantic-core's
# SBOM. Any other occurrence of a /tmp/, /root/, /work/ or .venv string is a leak of this build.
UPSTREAM_PATHS = re.compile(rb"/root/\.cargo/registry/src/|file:///home/runner/work/")
MACHINE_PATHS = re.compile(rb"/tmp/|/root/|/work/|\.venv")


def _scrubbed_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(SCRUBBED)}
    env.update(extra)
    return env


def _python(version: str) -> Path:
    """The CPython `version` interpreter of this machine; fails (never skips) when missing."""
    candidates: list[str] = []
    if shutil.which("pyenv"):
        prefix = subprocess.run(["pyenv", "prefix", version], capture_output=True, text=True)
        if prefix.returncode == 0:
            candidates += [os.path.join(p, "bin", f"python{version}")
                           for p in prefix.stdout.strip().split(":") if p]
    pyenv_root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    candidates += sorted(glob.glob(os.path.join(pyenv_root, "versions", f"{version}.*", "bin",
                                                f"python{version}")), reverse=True)
    candidates += [p for p in [shutil.which(f"python{version}")] if p]
    for candidate in candidates:
        probe = subprocess.run([candidate.strip(), "-c", "import sys; print(sys.executable)"],
                               capture_output=True, text=True)
        if probe.returncode == 0:
            real = subprocess.run([probe.stdout.strip(), "-c",
                                   "import sys; print('%d.%d' % sys.version_info[:2])"],
                                  capture_output=True, text=True).stdout.strip()
            if real == version:
                return Path(probe.stdout.strip())
    pytest.fail(f"CPython {version} not found (pyenv prefix {version}, $PYENV_ROOT/versions, "
                f"python{version} on PATH): install it with `pyenv install {version}`")


@dataclass
class Runner:
    """Runs the zipapp with one interpreter and a HOME of its own."""

    version: str
    python: Path
    home: Path
    zipapp: Path

    def env(self, **extra: str) -> dict[str, str]:
        return _scrubbed_env(HOME=str(self.home), **extra)

    def run(self, *args: str, cwd: Path | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.python), str(self.zipapp), *args], cwd=cwd,
                              env=env or self.env(), capture_output=True, text=True, timeout=120)

    def ok(self, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        result = self.run(*args, cwd=cwd)
        assert result.returncode == 0, f"{args} on {self.version}:\n{result.stderr}"
        return result


@pytest.fixture(scope="module")
def runners(zipapp: Path, tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Runner]:
    """One Runner (and HOME) per version for the whole module, made on first use."""
    made: dict[str, Runner] = {}

    def get(version: str) -> Runner:
        if version not in made:
            made[version] = Runner(version, _python(version),
                                   tmp_path_factory.mktemp(f"home-{version}"), zipapp)
        return made[version]
    return get


@pytest.fixture(scope="module", params=VERSIONS)
def runner(request: pytest.FixtureRequest, runners: Callable[[str], Runner]) -> Runner:
    return runners(request.param)


def _members(zipapp: Path) -> Iterator[tuple[str, bytes]]:
    with zipfile.ZipFile(zipapp) as zf:
        for info in zf.infolist():
            yield info.filename, zf.read(info)


def _build_id(zipapp: Path) -> str:
    with zipfile.ZipFile(zipapp) as zf:
        return str(json.loads(zf.read("environment.json"))["build_id"])


def _pins(lock: Path) -> dict[str, str]:
    pins = {}
    for line in lock.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^ \\;]+)", line)
        if match:
            pins[re.sub(r"[-_.]+", "-", match.group(1)).lower()] = match.group(2)
    return pins


# --- the artifact ------------------------------------------------------------------------------


def test_lock_files_pin_the_versions_of_constraints_txt() -> None:
    constraints = _pins(REPO / "constraints.txt")
    for lock in ("runtime.lock", "card.lock"):
        for name, version in _pins(REPO / "requirements" / lock).items():
            assert constraints.get(name) == version, f"{lock}: {name}=={version}"
    build = _pins(REPO / "requirements" / "build.lock")
    assert build["shiv"] == constraints["shiv"]


def _clone(destination: Path, files: list[str]) -> Path:
    for name in files:
        source = REPO / name
        if source.is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)
    return destination


def _build(tree: Path, out: Path) -> str:
    built = subprocess.run([str(tree / "build.sh"), str(out)], cwd=tree, capture_output=True,
                           text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-4000:]
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    assert built.stdout == f"sha256 {digest}  {out}\n"
    return digest


@pytest.mark.slow
def test_two_builds_in_different_directories_are_byte_identical(tmp_path: Path) -> None:
    # Two copies of the checkout's files, taken at once (the checkout may be edited meanwhile),
    # at paths of different lengths, as clean clones would be: no .venv, no earlier build.
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=REPO, capture_output=True, check=True).stdout
    files = sorted(set(listed.decode().split("\0")) - {"", ".build.lock"})
    short = _clone(tmp_path / "a", files)
    long = _clone(tmp_path / "b" / "a" / "much" / "longer" / "path" / "to" / "the" / "clone", files)
    assert not (short / ".venv").exists() and (long / "build.sh").exists()
    digest = _build(short, tmp_path / "short.pyz")
    assert _build(long, tmp_path / "long.pyz") == digest
    # Neither build's directory is named anywhere in it.
    for name, data in _members(tmp_path / "long.pyz"):
        assert str(short).encode() not in data and str(long).encode() not in data, name


@pytest.mark.slow
def test_artifact_names_no_path_of_the_build_machine(zipapp: Path) -> None:
    with zipfile.ZipFile(zipapp) as zf:
        records: dict[str, str] = {}
        for name in zf.namelist():
            if name.endswith(".dist-info/RECORD"):
                for line in zf.read(name).decode().splitlines():
                    path, digest = line.split(",")[:2]
                    records[f"site-packages/{path}"] = digest
    for name, data in _members(zipapp):
        if UPSTREAM_PATHS.search(data):
            # Only in files exactly as their (hash-pinned) wheels have them.
            expected = records.get(name, "")
            actual = hashlib.sha256(data).digest()
            assert expected == "sha256=" + base64.urlsafe_b64encode(actual).rstrip(b"=").decode(), name
        leaked = MACHINE_PATHS.search(UPSTREAM_PATHS.sub(b"", data))
        assert leaked is None, f"{name} names {data[leaked.start() - 40:leaked.end() + 40]!r}"
    names = [n for n, _ in _members(zipapp)]
    assert not any(n.startswith("site-packages/bin/") or n.endswith("/direct_url.json")
                   for n in names)


def test_every_compiled_module_has_a_build_for_each_supported_python(zipapp: Path) -> None:
    with zipfile.ZipFile(zipapp) as zf:
        libraries = [n for n in zf.namelist() if n.endswith(".so")]
    variants: dict[str, set[str]] = {}
    for name in libraries:
        if name.endswith(".abi3.so"):
            continue
        match = re.match(r"^(.+)\.cpython-(3\d+)-x86_64-linux-gnu\.so$", name)
        assert match, f"{name}: neither abi3 nor a CPython 3.11-3.13 extension"
        variants.setdefault(match.group(1), set()).add(match.group(2))
    assert variants, "no version-specific extension at all: the scan is broken"
    for stem, found in variants.items():
        assert found == {"311", "312", "313"}, stem


def test_zipapp_starts_with_a_sh_preamble_and_stores_its_entries(zipapp: Path) -> None:
    assert zipapp.read_bytes().startswith(b"#!/bin/sh\n")
    assert os.access(zipapp, os.X_OK)
    with zipfile.ZipFile(zipapp) as zf:
        infos = zf.infolist()
        assert {i.compress_type for i in infos} == {zipfile.ZIP_STORED}
        assert {i.date_time for i in infos} == {infos[0].date_time}
        assert {"__main__.py", "_locksmith_launcher.py", "environment.json"} <= set(zf.namelist())


# --- on each supported Python ------------------------------------------------------------------


@pytest.mark.slow
def test_caution_help_runs_on_each_python(runner: Runner) -> None:
    result = runner.ok("caution", "--help")
    assert "secret" in result.stdout


@pytest.mark.slow
def test_preamble_starts_the_zipapp_with_the_python3_on_path(runner: Runner,
                                                            tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").symlink_to(runner.python)
    link = tmp_path / "locksmith.pyz"
    link.symlink_to(runner.zipapp)
    env = runner.env(PATH=f"{bin_dir}:{os.environ['PATH']}")
    result = subprocess.run([str(link), "--version"], env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("locksmith ")
    assert f"build {_build_id(runner.zipapp)}; CPython {runner.version}." in result.stdout


@pytest.mark.slow
def test_stdlib_imghdr_wins_until_3_13_and_the_backport_serves_3_13(runner: Runner) -> None:
    code = "import imghdr, pgpy, sys; print(imghdr.__file__); print(sys.version_info[1])"
    result = runner.run("-c", code, env=runner.env(SHIV_INTERPRETER="1"))
    assert result.returncode == 0, result.stderr
    location = result.stdout.splitlines()[0]
    in_zipapp = "/site-packages/imghdr/" in location and ".cache/locksmith/" in location
    assert in_zipapp == (runner.version == "3.13"), location


@pytest.mark.slow
def test_secret_keygen_writes_a_key_pair_on_each_python(runner: Runner, tmp_path: Path) -> None:
    runner.ok("caution", "secret", "keygen", "carol.asc", "--name", "Carol", "--email",
              "carol@example.org", "--shoot-self-in-foot", cwd=tmp_path)
    assert (tmp_path / "carol.asc").read_text().startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----")
    assert "PRIVATE KEY BLOCK" in (tmp_path / "carol.private.asc").read_text()


@pytest.mark.slow
def test_secret_inspect_reads_the_reference_bundle_on_each_python(runner: Runner) -> None:
    result = runner.ok("caution", "secret", "inspect", str(CAUTION_V0 / "bundle.json"), "--json")
    summary = json.loads(result.stdout)
    assert summary["quorum_fingerprint"] == "15B0E570536A4B00A90151DB726E3FCA18892D05"
    assert summary["keyring_hash_ok"] is True


@pytest.mark.slow
def test_secret_encrypt_and_send_shard_unlock_an_enclave_on_each_python(runner: Runner,
                                                                      world: World) -> None:
    """The reference v0 quorum: the zipapp encrypts a .env, the enclave (locksmith-run from the
    source tree, simulated NSM) boots, Alice and Bob send their shards with the zipapp's
    `send-shard --keyring`, and the application gets the value."""
    from locksmith.core.attestation.nsm_simulated import SimulatedNsm
    from tests.unlock_kit import application_view, boot

    nsm = world.root / "nsm"
    SimulatedNsm.open(nsm)
    app_dir = world.root / "app"
    (app_dir / ".caution").mkdir(parents=True)
    shutil.copy(CAUTION_V0 / "bundle.json", app_dir / ".caution" / "quorum-bundle.json")
    (app_dir / ".env").write_text(f"GREETING='sent from CPython {runner.version}'\n")
    encrypted = runner.ok("caution", "secret", "encrypt", cwd=app_dir)
    assert "encrypted GREETING -> .caution/secrets/GREETING.asc" in encrypted.stderr

    enclave, port = boot(world, app_dir, ["GREETING"], nsm=nsm, v1=False)
    for holder in ("alice", "bob"):
        said = runner.ok("caution", "secret", "send-shard", "--address", f"127.0.0.1:{port}",
                         "--keyring", str(CAUTION_V0 / f"{holder}.private.asc"),
                         "--trusted-hashes", str(nsm / "trusted_hashes.json"),
                         "--trust-root", str(nsm / "root.pem"), cwd=app_dir)
    assert said.stderr.splitlines()[-1] == (
        "Shard accepted, 0 remaining shards until reconstitution")
    assert application_view(enclave, world) == {"GREETING": f"sent from CPython {runner.version}"}


# --- extraction --------------------------------------------------------------------------------


@pytest.mark.slow
def test_extraction_goes_to_a_private_directory_in_the_user_cache(runner: Runner,
                                                                 tmp_path: Path) -> None:
    runner.ok("--version")
    root = runner.home / ".cache" / "locksmith"
    assert (root / f"locksmith_{_build_id(runner.zipapp)}" / "site-packages").is_dir()
    assert root.stat().st_mode & 0o777 == 0o700


@pytest.mark.slow
def test_xdg_cache_home_replaces_the_user_cache(runners: Callable[[str], Runner],
                                                tmp_path: Path) -> None:
    runner = runners(VERSIONS[0])
    cache = tmp_path / "xdg"
    result = runner.run("--version", env=runner.env(XDG_CACHE_HOME=str(cache)))
    assert result.returncode == 0, result.stderr
    assert (cache / "locksmith" / f"locksmith_{_build_id(runner.zipapp)}").is_dir()


@pytest.mark.slow
def test_unwritable_home_gives_one_line_naming_shiv_root(runner: Runner, tmp_path: Path) -> None:
    not_a_directory = tmp_path / "home-is-a-file"
    not_a_directory.write_text("")
    result = runner.run("caution", "--help", env=_scrubbed_env(HOME=str(not_a_directory)))
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == (f"locksmith: cannot extract to {not_a_directory}/.cache/locksmith: "
                             "Not a directory; set SHIV_ROOT to a writable directory\n")


@pytest.mark.slow
def test_extractions_of_other_builds_are_removed_unless_a_process_uses_them(
        runners: Callable[[str], Runner]) -> None:
    runner = runners(VERSIONS[0])
    runner.ok("--version")
    root = runner.home / ".cache" / "locksmith"
    idle, busy = "a" * 64, "b" * 64
    for build in (idle, busy):
        (root / f"locksmith_{build}" / "site-packages").mkdir(parents=True)
        (root / f".locksmith_{build}_lock").write_text("")
    (root / f"locksmith_{idle}.tmp").mkdir()
    foreign = [root / "locksmith_not-a-build-id", root / f"other_{idle}", root / "notes.txt"]
    foreign[0].mkdir()
    foreign[1].mkdir()
    foreign[2].write_text("mine")
    with open(root / f"locksmith_{busy}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_SH)  # a running process of that build
        runner.ok("--version")
    names = set(os.listdir(root))
    assert not {n for n in names if idle in n and not n.startswith("other_")}, names
    assert {f"locksmith_{busy}", f".locksmith_{busy}_lock", f"locksmith_{busy}.lock"} <= names
    assert all(path.exists() for path in foreign)
    assert f"locksmith_{_build_id(runner.zipapp)}" in names


@pytest.mark.slow
def test_roots_that_others_could_write_to_are_refused(runners: Callable[[str], Runner],
                                                     tmp_path: Path) -> None:
    runner = runners(VERSIONS[0])
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)  # writable by everyone, not sticky: a root below it could be swapped
    result = runner.run("--version", env=runner.env(SHIV_ROOT=str(shared / "root")))
    assert result.returncode == 1
    assert result.stderr == (f"locksmith: cannot extract to {shared}/root: every user can write "
                             f"to {shared} and it is not sticky; set SHIV_ROOT to a writable "
                             "directory\n")
    if os.geteuid() == 0:  # a directory of another user, planted behind a symlink
        theirs = tmp_path / "theirs"
        theirs.mkdir(mode=0o700)
        os.chown(theirs, 65534, 65534)
        planted = tmp_path / "planted"
        planted.symlink_to(theirs)
        result = runner.run("--version", env=runner.env(SHIV_ROOT=str(planted)))
        assert result.returncode == 1
        assert result.stderr == (f"locksmith: cannot extract to {planted}: {theirs} belongs to "
                                 f"uid 65534, not to this user (uid 0); set SHIV_ROOT to a "
                                 "writable directory\n")


def _logging_python3(runner: Runner, tmp_path: Path) -> tuple[Path, Path]:
    """A `python3` on PATH that notes its first argument, then runs `runner`'s interpreter."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    python3 = bin_dir / "python3"
    python3.write_text(f'#!/bin/sh\necho "$1" >> "{calls}"\nexec "{runner.python}" "$@"\n')
    python3.chmod(0o755)
    return python3, calls


@pytest.mark.slow
def test_once_extracted_the_preamble_execs_the_listed_interpreter_at_once(
        runner: Runner, tmp_path: Path) -> None:
    """The first start probes python3 and lists it for the extraction; later starts exec it
    at once with `-I -S` and the launcher's FAST_START, which runs the extraction without the
    archive (shipping/launcher.py; issue 11), with the same result."""
    python3, calls = _logging_python3(runner, tmp_path)
    link = tmp_path / "locksmith-oneshot"
    link.symlink_to(runner.zipapp)
    root = tmp_path / "root"
    env = runner.env(PATH=f"{python3.parent}:{os.environ['PATH']}", SHIV_ROOT=str(root))

    def start() -> str:
        done = subprocess.run([str(link), "--help"], env=env, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout

    first = start()
    assert calls.read_text() == "-S\n"  # the probe; then the interpreter it named, directly
    extraction = root / f"locksmith_{_build_id(runner.zipapp)}"
    assert (extraction / "interpreters").read_text() == f"{python3}\n"
    assert start() == first
    assert calls.read_text() == "-S\n-I\n"


@pytest.mark.slow
def test_the_fast_start_refuses_a_root_as_the_launcher_does(runners: Callable[[str], Runner],
                                                            tmp_path: Path) -> None:
    """A root that others may write to since its extraction: the fast start hands over to the
    launcher, which refuses it with its one line."""
    runner = runners(VERSIONS[0])
    python3, calls = _logging_python3(runner, tmp_path)
    root = tmp_path / "root"
    env = runner.env(PATH=f"{python3.parent}:{os.environ['PATH']}", SHIV_ROOT=str(root))
    first = subprocess.run([str(runner.zipapp), "--version"], env=env, capture_output=True,
                           text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    root.chmod(0o777)
    try:
        refused = subprocess.run([str(runner.zipapp), "--version"], env=env,
                                 capture_output=True, text=True, timeout=120)
    finally:
        root.chmod(0o700)
    assert calls.read_text() == "-S\n-I\n"
    assert refused.returncode == 1
    assert refused.stdout == ""
    assert refused.stderr == (f"locksmith: cannot extract to {root}: other users can write to "
                              f"{root} (mode 0777); set SHIV_ROOT to a writable directory\n")


@pytest.mark.slow
def test_without_a_supported_python_the_preamble_says_what_it_found(zipapp: Path,
                                                                    tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    broken = bin_dir / "python3"
    broken.write_text("#!/bin/sh\nexit 1\n")
    broken.chmod(0o755)
    result = subprocess.run([str(zipapp), "--version"], env=_scrubbed_env(PATH=str(bin_dir)),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr == ("locksmith needs CPython 3.11, 3.12 or 3.13; found: python3 (does "
                             "not run)\n")
    empty = tmp_path / "empty"
    empty.mkdir()
    result = subprocess.run([str(zipapp), "--version"], env=_scrubbed_env(PATH=str(empty)),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr == ("locksmith needs CPython 3.11, 3.12 or 3.13; found: no python3, "
                             "python3.13, python3.12 or python3.11 on PATH\n")
