"""The Containerfile's images, built and booted on this machine (enclave.md §1–§2).

One module-wide set-up (about a minute with a warm base cache, a few more the first time):
Debian bases from mmdebstrap, the `keymaker`, `runtime` and `example-app` targets built with
podman, each exported and unpacked (tests/image_kit.py). The Keymaker *image* then makes a V1
quorum of three holders (its one-shot service run in its unpacked tree, simulated NSM), the
host's CLI encrypts a `.env` to it, and the example application's image is built from this
checkout plus that `.caution/`. The application image boots with `chroot`: locksmith-run waits,
two holders send their shards from the host, and the application prints what it received.

Needs root, podman and mmdebstrap (`make apt`); never skipped: without them the set-up fails and
says what to install. Run by `make image-test`, not by `make test`.
"""

from __future__ import annotations

import json
import stat
import subprocess
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import image_kit as kit
from tests.unlock_kit import free_port

pytestmark = [pytest.mark.slow, pytest.mark.image]

VALUES, ENV_FILE = kit.EXAMPLE_VALUES, kit.EXAMPLE_ENV_FILE


@pytest.fixture(scope="module")
def built() -> Iterator[kit.Built]:
    why = kit.missing_tools()
    if why:
        pytest.fail(why)
    with kit.built_images(ENV_FILE) as state:
        yield state


def test_image_example_app_boots_unlocks_and_gets_every_secret(built: kit.Built) -> None:
    done = kit.unlock(built, "example-app", list(VALUES), free_port())
    assert done.said == ["Shard accepted, 1 remaining shards until reconstitution",
                         "Shard accepted, 0 remaining shards until reconstitution"], done.log
    assert done.status == 0, done.log
    lines = done.stdout.splitlines()
    assert len(lines) == 2, f"{done.stdout!r}\n{done.log}"
    assert lines[0] == kit.MARKER
    assert json.loads(lines[1]) == VALUES
    assert "V1 bundle verified" in done.log
    assert f"locksmith-oneshot: exported {len(VALUES)} variables" in done.log
    for value in VALUES.values():  # names are logged, values never
        assert value.splitlines()[0] not in done.log


def test_image_boot_stops_before_the_app_on_a_corrupted_secret(built: kit.Built) -> None:
    done = kit.unlock(built, "corrupted", list(VALUES), free_port())
    assert done.said[-1] == "Shard accepted, 0 remaining shards until reconstitution", done.log
    assert done.status != 0, done.log
    assert done.stdout == "", done.log  # the application never started: no marker, no values
    assert "locksmith-run: locksmith-oneshot failed; not starting the application" in done.log


def test_image_layout_follows_the_spec(built: kit.Built) -> None:
    """enclave.md §1: paths, modes, the links, SHIV_ROOT, no compiler in the runtime."""
    rootfs = built.rootfs["example-app"]
    usr_bin = rootfs / "usr" / "bin"
    zipapp = usr_bin / "locksmith"
    assert stat.S_IMODE(zipapp.stat().st_mode) == 0o755
    # The zipapp's first line starts it with a Python 3 of the image (a `#!` line, or a POSIX sh
    # preamble that looks for python3, python3.13, python3.12, python3.11).
    first = zipapp.read_bytes().split(b"\n", 1)[0].decode()
    assert first.startswith("#!"), first
    assert (usr_bin / "python3.11").exists()
    for link in kit.NAMES:
        path = usr_bin / link
        assert path.is_symlink() or link == "locksmithd"  # locksmithd: the development wrapper
        if path.is_symlink():
            assert (path.parent / path.readlink()).resolve() == zipapp.resolve()
    keymaker_bin = built.rootfs["keymaker"] / "usr" / "bin"
    for link in kit.NAMES:
        assert (keymaker_bin / link).readlink() == Path("locksmith")
    run_sh = usr_bin / "locksmith-run"
    assert stat.S_IMODE(run_sh.stat().st_mode) == 0o755
    assert run_sh.read_bytes() == (built.context / "locksmith" / "scripts" / "run.sh").read_bytes()
    caution = rootfs / "etc" / "caution"
    for name in ("bundle.json", "keymaker-pcr-policy.json"):
        assert stat.S_IMODE((caution / name).stat().st_mode) == 0o644
    assert (caution / "bundle.json").read_bytes() == (
        built.quorum.app_dir / ".caution" / "quorum-bundle.json").read_bytes()
    secrets = caution / "secrets"
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o755
    assert sorted(p.name for p in secrets.iterdir()) == sorted(f"{n}.asc" for n in VALUES)
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o644 for p in secrets.iterdir())
    for target in ("runtime", "keymaker", "example-app"):
        assert kit.image_env(built.configs[target])["SHIV_ROOT"] == "/opt/locksmith/shiv"
    # Extracted at build time, for this very zipapp (shiv's build id), with bytecode.
    with zipfile.ZipFile(zipapp) as archive:
        build_id = json.loads(archive.read("environment.json"))["build_id"]
    site_packages = rootfs / "opt" / "locksmith" / "shiv" / f"locksmith_{build_id}" / "site-packages"
    assert (site_packages / "locksmith" / "__pycache__" / "__main__.cpython-311.pyc").is_file()
    sources = list(site_packages.rglob("*.py"))
    compiled = [p for p in sources
                if (p.parent / "__pycache__" / f"{p.stem}.cpython-311.pyc").is_file()]
    assert len(compiled) == len(sources) > 100
    # Only the image's Python's extension modules (those of the zipapp's other versions removed).
    extensions = [p.name for p in site_packages.rglob("*.cpython-3*.so")]
    assert extensions
    assert all(name.endswith(".cpython-311-x86_64-linux-gnu.so") for name in extensions)
    compilers = [p.name for p in usr_bin.iterdir()
                 if p.name in ("cc", "gcc", "c++", "g++", "clang", "ld")
                 or p.name.startswith(("gcc-", "x86_64-linux-gnu-gcc"))]
    assert compilers == []
    assert kit.entrypoint(built.configs["example-app"]) == ["/usr/bin/locksmith-run", "/app/app.sh"]


def tree_state(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_mtime_ns, p.stat().st_size)
            for p in root.rglob("*") if not p.is_symlink()}


def test_image_personalities_run_from_the_pre_extracted_zipapp(built: kit.Built) -> None:
    """Every personality starts in the image, and none extracts or compiles anything; the
    extraction also serves a read-only SHIV_ROOT."""
    rootfs = built.rootfs["example-app"]
    env = kit.image_env(built.configs["example-app"])
    shiv_root = rootfs / env["SHIV_ROOT"].lstrip("/")
    before = tree_state(shiv_root)
    root_home = tree_state(rootfs / "root")
    for name in kit.NAMES:
        done = kit.run_in(rootfs, env, [name, "--help"])
        assert done.returncode == 0, f"{name} --help: {done.stderr}"
        assert "usage" in (done.stdout + done.stderr).lower()
    after = tree_state(shiv_root)
    assert {k: v for k, v in after.items() if not k.endswith(".lock")} == {
        k: v for k, v in before.items() if not k.endswith(".lock")}  # the launcher's lock file
    assert tree_state(rootfs / "root") == root_home  # no ~/.cache/locksmith either
    for name in ("locksmith-oneshot", "locksmithd"):
        done = kit.run_in(rootfs, env, [name, "--help"], read_only=[env["SHIV_ROOT"]])
        assert done.returncode == 0, f"{name} --help, read-only SHIV_ROOT: {done.stderr}"


def test_image_keymaker_entrypoint_help_and_quorum(built: kit.Built) -> None:
    """The Keymaker image: `keymaker --one-shot` as its entrypoint, its --help, and the quorum
    of this module, which its one-shot service made (simulated NSM) and then exited."""
    config = built.configs["keymaker"]
    assert kit.entrypoint(config) == ["/usr/bin/keymaker", "--one-shot"]
    ports = config.get("ExposedPorts")
    assert isinstance(ports, dict) and "8080/tcp" in ports
    rootfs = built.rootfs["keymaker"]
    done = kit.run_in(rootfs, kit.image_env(config), ["keymaker", "--help"])
    assert done.returncode == 0, done.stderr
    assert "--one-shot" in done.stdout
    assert "listening on 127.0.0.1:" in built.world.log("keymaker")
    bundle = json.loads((built.quorum.app_dir / ".caution" / "quorum-bundle.json").read_text())
    assert bundle["data"]["version"] == "V1"
    assert not (rootfs / "etc" / "caution").exists()  # the Keymaker image carries no bundle


def test_image_zipapp_is_the_reproducible_build(built: kit.Built, tmp_path: Path) -> None:
    """The image's /usr/bin/locksmith, built by build.sh in the Containerfile's build stage (Debian's
    Python 3.11, in /usr/src/locksmith), has the bytes that build.sh gives on this host (the
    python3.11 on PATH, elsewhere) from the same sources (README "The zipapp")."""
    out = tmp_path / "locksmith.pyz"
    done = subprocess.run([str(built.context / "build.sh"), str(out)], cwd=built.context,
                          capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stderr
    in_image = built.rootfs["example-app"] / "usr" / "bin" / "locksmith"
    assert in_image.read_bytes() == out.read_bytes()
