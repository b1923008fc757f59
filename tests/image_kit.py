"""The enclave images on this machine, without a container registry or a container runtime.

Bases come from Debian packages (`image/make-base.sh`, mmdebstrap, cached) and are
`podman import`ed; the Containerfile is built with `podman build --isolation=chroot`; a built
image is `podman export`ed and unpacked, and booted with `chroot` inside `unshare --mount --pid`:
/proc and /dev are mounted in a private mount namespace (never visible outside it, so removing
the unpacked tree can never reach the host's /dev), and every process of a boot lives in its own
PID namespace, so ending its first process ends them all (keyforkd included).

Podman runs with a storage of its own under the scratch directory, so every image made here,
the build stages' too, goes when the scratch directory goes.

`built_images` is the whole set-up of tests/test_image.py and bench/image.py: the Keymaker
image makes a V1 quorum (its one-shot service run in its unpacked tree, simulated NSM), the
host's CLI encrypts a `.env` to it, and the example application's image is built with that
`.caution/`; `unlock` boots it while two holders send their shards from the host.
"""

from __future__ import annotations

import json
import os
import select
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.unlock_kit import Quorum, World, keygen, make_quorum, send_with_keyring, world_in

REPO = Path(__file__).resolve().parents[1]
NAMES = ("caution", "keyforkd", "keymaker", "locksmith-oneshot", "locksmithd")
# The host's CA bundle, for pip in the build stage behind a TLS-inspecting proxy.
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")
TOOLS = {  # command -> Debian package
    "podman": "podman", "mmdebstrap": "mmdebstrap", "unshare": "util-linux",
    "chroot": "coreutils", "tar": "tar", "mount": "mount",
}


def missing_tools() -> str | None:
    """Why the image tests cannot run here (with what to install), or None."""
    if os.geteuid() != 0:
        return "the image tests need root (mmdebstrap, podman build, chroot, mounts)"
    missing = sorted({package for tool, package in TOOLS.items() if shutil.which(tool) is None})
    if missing:
        return (f"missing Debian packages for the image tests: {' '.join(missing)} "
                f"(`make apt` as root, or: apt-get install {' '.join(missing)})")
    return None


def run(args: Sequence[str], *, timeout: float = 900, **kwargs: object) -> str:
    """Run to completion; stdout as text. A failure raises with the command's stderr."""
    done = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout,
                          check=False, **kwargs)  # type: ignore[call-overload]
    if done.returncode != 0:
        raise RuntimeError(f"{shlex.join(args)} exited {done.returncode}:\n"
                           f"{done.stderr[-6000:]}")
    return str(done.stdout)


def mounts_under(path: Path) -> list[str]:
    """Mount points at or below `path` in this process's mount namespace."""
    prefix = str(path.resolve())
    found = []
    with open("/proc/self/mountinfo") as handle:
        for line in handle:
            point = line.split()[4].encode().decode("unicode_escape")
            if point == prefix or point.startswith(prefix + "/"):
                found.append(point)
    return found


def processes_rooted_in(rootfs: Path) -> list[int]:
    """Processes whose root directory is `rootfs` or below it (our chroot boots)."""
    prefix = str(rootfs.resolve())
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            root = os.readlink(f"/proc/{entry}/root")
        except OSError:
            continue
        if root == prefix or root.startswith(prefix + "/"):
            pids.append(int(entry))
    return pids


@dataclass
class Podman:
    """`podman` with a private storage (graph root and run root) under `home`."""

    home: Path

    def __call__(self, *args: str, timeout: float = 900) -> str:
        return run(["podman", "--root", str(self.home / "storage"),
                    "--runroot", str(self.home / "run"), *args], timeout=timeout,
                   env={**os.environ, "TMPDIR": str(self.home / "tmp")})

    def config(self, image: str) -> dict[str, object]:
        """The image's OCI config (Env, Entrypoint, Cmd, ExposedPorts, ...)."""
        inspected = json.loads(self("image", "inspect", image))
        config: dict[str, object] = inspected[0]["Config"]
        return config

    def size(self, image: str) -> int:
        return int(self("image", "inspect", "--format", "{{.Size}}", image).strip())

    def remove_all(self) -> None:
        """Every container and image of this storage (never `system reset`: that also clears
        podman's global state, such as /run/libpod and network definitions)."""
        try:
            self("rm", "--all", "--force", timeout=300)
        finally:
            self("rmi", "--all", "--force", timeout=300)


@dataclass
class Images:
    """Scratch directory, podman storage, and the names of the images built in them."""

    work: Path
    podman: Podman
    tag: str  # unique repository name of this run's images

    def name(self, what: str) -> str:
        return f"localhost/{self.tag}:{what}"


@contextmanager
def images_scratch() -> Iterator[Images]:
    """A scratch directory with a private podman storage; both removed afterwards."""
    why = missing_tools()
    if why:
        raise RuntimeError(why)
    work = Path(tempfile.mkdtemp(prefix="lsimg", dir="/var/tmp"))
    (work / "tmp").mkdir()
    podman = Podman(work / "podman")
    (podman.home / "tmp").mkdir(parents=True)
    try:
        yield Images(work, podman, f"locksmith-image-test-{uuid.uuid4().hex[:10]}")
    finally:
        try:
            podman.remove_all()
        finally:
            # An interrupted build can leave its overlay mounts in our storage: ours to undo.
            for point in sorted(mounts_under(work), key=len, reverse=True):
                subprocess.run(["umount", "--lazy", point], check=False, capture_output=True)
            left = mounts_under(work)
            if left:  # never remove a tree something is mounted in
                raise RuntimeError(f"mounts left under {work}: {left}")
            shutil.rmtree(work, ignore_errors=True)


def import_bases(images: Images) -> dict[str, str]:
    """The runtime and build bases, made (or taken from the cache) and imported."""
    names = {}
    for kind in ("runtime", "build"):
        tarball = run([str(REPO / "image" / "make-base.sh"), kind], timeout=1200).strip()
        name = images.name(f"base-{kind}")
        # What the Debian images on a registry set too: a PATH, and a shell by default.
        images.podman("import", "--change",
                      "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                      "--change", 'CMD ["/bin/sh"]', tarball, name)
        names[kind] = name
    return names


def context_sources(containerfile: Path = REPO / "Containerfile") -> list[str]:
    """The top-level names of this checkout that the Containerfile's COPY and ADD lines read
    (not `--from` a stage, not `.caution/`), and the Containerfile itself."""
    names = {containerfile.name}
    for line in containerfile.read_text().splitlines():
        words = line.split()
        if not words or words[0] not in ("COPY", "ADD"):
            continue
        if any(word.startswith("--from") for word in words):
            continue
        sources = [word for word in words[1:-1] if not word.startswith("--")]
        names.update(Path(source).parts[0] for source in sources)
    names.discard(".caution")
    return sorted(names)


def build_context(dest: Path, caution: Path | None = None) -> Path:
    """This checkout's sources the Containerfile reads, and an application's `.caution/`."""
    dest.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in context_sources():
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, dest / name, ignore=ignore, symlinks=True)
        else:
            shutil.copy2(source, dest / name)
    if caution is not None:
        shutil.copytree(caution, dest / ".caution", symlinks=True)
    return dest


def build(images: Images, bases: Mapping[str, str], context: Path, target: str,
          name: str) -> float:
    """`podman build --target TARGET` of the Containerfile; seconds taken."""
    args = ["build", "--isolation=chroot", "--pull=never", "--target", target,
            "--build-arg", f"BASE={bases['runtime']}",
            "--build-arg", f"BUILD_BASE={bases['build']}", "--tag", name,
            "--file", str(context / "Containerfile")]
    if HOST_CA.is_file():
        args += ["--volume", f"{HOST_CA}:/run/pip-ca.crt:ro",
                 "--build-arg", "PIP_CERT=/run/pip-ca.crt"]
    start = time.monotonic()
    images.podman(*args, str(context), timeout=1800)
    return time.monotonic() - start


def export_rootfs(images: Images, image: str, dest: Path) -> Path:
    """`podman create` + `podman export` of `image`, unpacked into `dest`."""
    dest.mkdir(parents=True)
    container = images.podman("create", image).strip()
    try:
        tar = images.work / "tmp" / f"{container}.tar"
        images.podman("export", "--output", str(tar), container)
        run(["tar", "--numeric-owner", "-xpf", str(tar), "-C", str(dest)])
        tar.unlink()
    finally:
        images.podman("rm", "--force", container)
    return dest


def image_env(config: Mapping[str, object]) -> dict[str, str]:
    """The image's `Env` as a mapping."""
    env_list = config.get("Env") or []
    assert isinstance(env_list, list)
    return dict(str(item).split("=", 1) for item in env_list)


def chroot_command(rootfs: Path, env: Mapping[str, str], argv: Sequence[str],
                   binds: Sequence[Path] = (), read_only: Sequence[str] = ()) -> list[str]:
    """The host command that runs `argv` in `rootfs` with exactly `env`.

    A private mount namespace gets /proc (of a new PID namespace), the host's /dev, `binds`
    (host directories, at the same path inside) and `read_only` (directories of the image made
    read-only); `--kill-child` ends the PID namespace, so every process of the boot, when
    unshare itself is killed."""
    script = ['set -eu; root=$1; shift', 'mount --bind /dev "$root/dev"']
    for bind in binds:
        quoted = shlex.quote(str(bind))
        script += [f'mkdir -p "$root"{quoted}', f'mount --bind {quoted} "$root"{quoted}']
    for inside in read_only:
        quoted = '"$root"' + shlex.quote(inside)
        script += [f"mount --bind {quoted} {quoted}", f"mount -o remount,bind,ro {quoted}"]
    script.append('exec chroot "$root" "$@"')
    return ["unshare", "--mount", "--pid", "--fork", "--kill-child", "--propagation", "private",
            f"--mount-proc={rootfs}/proc", "--", "/bin/sh", "-c", "; ".join(script), "sh",
            str(rootfs), "/usr/bin/env", "-i", *(f"{k}={v}" for k, v in env.items()), *argv]


@dataclass
class Boot:
    """A boot of an exported image (`chroot_command`) and its logs."""

    process: subprocess.Popen[bytes]
    rootfs: Path
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log():
            if self.process.poll() is not None:
                raise AssertionError(f"the boot ended (exit {self.process.returncode}) before "
                                     f"logging {text!r}:\n{self.log()}")
            assert time.monotonic() < deadline, f"never logged {text!r}:\n{self.log()}"
            time.sleep(0.05)

    def stop(self) -> None:
        """Kill the boot (its PID namespace with it) and check that nothing of it is left."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=30)
        if self.process.stdout is not None:
            self.process.stdout.close()
        deadline = time.monotonic() + 10
        while processes_rooted_in(self.rootfs) and time.monotonic() < deadline:
            time.sleep(0.05)
        left = processes_rooted_in(self.rootfs)
        for pid in left:
            os.kill(pid, signal.SIGKILL)
        assert not left, f"processes of the boot left running: {left}"


@contextmanager
def booted(rootfs: Path, env: Mapping[str, str], argv: Sequence[str],
           binds: Sequence[Path] = ()) -> Iterator[Boot]:
    """Start `argv` in the unpacked image; stopped (with all its processes) afterwards."""
    log_path = rootfs.parent / f"{rootfs.name}.boot.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(chroot_command(rootfs, env, argv, binds),
                                   stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log,
                                   start_new_session=True)
    boot = Boot(process, rootfs, log_path)
    try:
        yield boot
    finally:
        boot.stop()


def run_in(rootfs: Path, env: Mapping[str, str], argv: Sequence[str], timeout: float = 60,
           read_only: Sequence[str] = ()) -> subprocess.CompletedProcess[str]:
    """Run `argv` in the unpacked image to completion (output captured, any exit status)."""
    return subprocess.run(chroot_command(rootfs, env, argv, read_only=read_only),
                          stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=timeout, check=False)


def install_wrapper(rootfs: Path, name: str, text: str) -> None:
    """Replace /usr/bin/NAME of an unpacked image by a shell script (development set-ups)."""
    path = rootfs / "usr" / "bin" / name
    path.unlink()
    path.write_text(text)
    path.chmod(0o755)


# --- the example application's quorum, images and boots ---------------------------------------

MARKER = "example-app: started with the secrets of the quorum"  # image/example-app.sh
# A .env with what tends to break (quotes, $(...), backticks, #, newlines, non-ASCII) and what
# the example application must print for it.
EXAMPLE_VALUES = {
    "DATABASE_URL": "postgres://app:s3cr3t@db.internal:5432/app",
    "API_TOKEN": "it's a \"quoted\" token # with $(no) `expansion`",
    "TLS_KEY": "-----BEGIN DEMO KEY-----\nbXVsdGktbGluZSBzZWNyZXQ=\n-----END DEMO KEY-----",
    "GREETING": "grüße ☃",
}
EXAMPLE_ENV_FILE = """\
DATABASE_URL="postgres://app:s3cr3t@db.internal:5432/app"
API_TOKEN='it'"'"'s a "quoted" token # with $(no) `expansion`'
TLS_KEY="-----BEGIN DEMO KEY-----
bXVsdGktbGluZSBzZWNyZXQ=
-----END DEMO KEY-----"
GREETING=grüße\\ ☃
"""
NSM_IN_IMAGE = Path("/nsm")  # the simulated NSM's files, copied into an unpacked image


@dataclass
class Built:
    world: World
    holders: list[tuple[Path, Path]]  # (certificate, private keyring) of each holder
    quorum: Quorum
    images: Images
    configs: dict[str, dict[str, object]]  # target -> OCI config
    rootfs: dict[str, Path]  # "keymaker", "example-app" (, "corrupted") -> unpacked image
    seconds: dict[str, float]  # how long each step of the set-up took
    context: Path  # the build context: the sources the images were built from


def keymaker_wrapper(world: World, rootfs: Path, env: Mapping[str, str]) -> None:
    """`keymaker` on the World's PATH runs the Keymaker image's /usr/bin/keymaker instead.

    The simulated NSM's directory (a host path, given with --nsm-dir) is bind-mounted at the
    same path inside, so the host's CLI reads its root and PCRs afterwards."""
    nsm = world.root / "nsm"
    nsm.mkdir()
    command = chroot_command(rootfs, env, ["/usr/bin/keymaker"], binds=[nsm])
    (world.root / "bin" / "keymaker").write_text(f'#!/bin/sh\nexec {shlex.join(command)} "$@"\n')


def corrupt(secret: Path) -> None:
    """Change one character in the middle of an armored message's longest base64 line."""
    lines = secret.read_text().split("\n")
    index = max(range(len(lines)), key=lambda i: len(lines[i]))
    line = lines[index]
    middle = len(line) // 2
    lines[index] = line[:middle] + ("A" if line[middle] != "A" else "B") + line[middle + 1:]
    secret.write_text("\n".join(lines))


def prepare_for_development_boot(rootfs: Path, nsm: Path) -> None:
    """What a development boot needs beyond the image: the simulated NSM's files, and the
    development root of trust for locksmithd.

    locksmithd takes `--trust-root` as an option only, never from the environment (enclave.md
    §3: a production image trusts the AWS root alone), so, as demo/demo.sh does, a wrapper
    replaces the `locksmithd` link in the unpacked tree."""
    shutil.copytree(nsm, rootfs / NSM_IN_IMAGE.relative_to("/"))
    install_wrapper(rootfs, "locksmithd",
                    "#!/bin/sh\nexec /usr/bin/locksmith locksmithd "
                    f'--trust-root {NSM_IN_IMAGE}/root.pem "$@"\n')


@contextmanager
def built_images(env_file: str, *, with_corrupted: bool = True) -> Iterator[Built]:
    """Bases, the `keymaker` and `runtime` images, a quorum made by the Keymaker image, the
    `example-app` image with `env_file` encrypted to it (and, `with_corrupted`, the same with
    one secret corrupted), each exported and unpacked. Everything is removed afterwards."""
    with ExitStack() as stack:
        images = stack.enter_context(images_scratch())
        world = stack.enter_context(contextmanager(world_in)())
        seconds: dict[str, float] = {}
        start = time.monotonic()
        bases = import_bases(images)
        seconds["bases"] = time.monotonic() - start
        context = build_context(images.work / "context")
        configs: dict[str, dict[str, object]] = {}
        rootfs: dict[str, Path] = {}
        for target in ("keymaker", "runtime"):
            seconds[f"build_{target}"] = build(images, bases, context, target,
                                               images.name(target))
            configs[target] = images.podman.config(images.name(target))
        start = time.monotonic()
        rootfs["keymaker"] = export_rootfs(images, images.name("keymaker"),
                                           images.work / "keymaker")
        seconds["export_keymaker"] = time.monotonic() - start

        start = time.monotonic()
        keymaker_wrapper(world, rootfs["keymaker"], image_env(configs["keymaker"]))
        holders = [keygen(world, name) for name in ("alice", "bob", "carol")]
        quorum = make_quorum(world, [public for public, _ in holders], 2, env_file)
        seconds["quorum"] = time.monotonic() - start

        # The same context plus .caution/: every layer before the example-app's is cached.
        shutil.copytree(quorum.app_dir / ".caution", context / ".caution")
        seconds["build_example-app"] = build(images, bases, context, "example-app",
                                             images.name("example-app"))
        configs["example-app"] = images.podman.config(images.name("example-app"))
        start = time.monotonic()
        rootfs["example-app"] = export_rootfs(images, images.name("example-app"),
                                              images.work / "app")
        seconds["export_example-app"] = time.monotonic() - start
        prepare_for_development_boot(rootfs["example-app"], quorum.nsm)
        if with_corrupted:
            corrupt(sorted((context / ".caution" / "secrets").glob("*.asc"))[0])
            seconds["build_corrupted"] = build(images, bases, context, "example-app",
                                               images.name("corrupted"))
            rootfs["corrupted"] = export_rootfs(images, images.name("corrupted"),
                                                images.work / "corrupted")
            prepare_for_development_boot(rootfs["corrupted"], quorum.nsm)
        yield Built(world, holders, quorum, images, configs, rootfs, seconds, context)


def entrypoint(config: Mapping[str, object]) -> list[str]:
    value = config.get("Entrypoint")
    assert isinstance(value, list), f"no Entrypoint in {config}"
    return [str(part) for part in value]


def boot_env(config: Mapping[str, object], port: int) -> dict[str, str]:
    """The image's environment plus the development settings of a boot on loopback."""
    return {**image_env(config), "LOCKSMITH_NSM": "simulated",
            "LOCKSMITH_NSM_DIR": str(NSM_IN_IMAGE), "LOCKSMITHD_LISTEN_ADDR": f"127.0.0.1:{port}"}


def read_line(process: subprocess.Popen[bytes], timeout: float) -> bytes:
    """The next line of the process's stdout (b"" at its end), waiting at most `timeout`."""
    assert process.stdout is not None
    fd = process.stdout.fileno()
    deadline = time.monotonic() + timeout
    line = b""
    while not line.endswith(b"\n"):
        left = deadline - time.monotonic()
        assert left > 0, f"no complete line on stdout within {timeout} s (got {line!r})"
        if not select.select([fd], [], [], left)[0]:
            continue
        chunk = os.read(fd, 1)
        if not chunk:
            break
        line += chunk
    return line


@dataclass
class Unlock:
    status: int
    stdout: str
    log: str  # the boot's stderr: locksmith-run, locksmithd, keyforkd, locksmith-oneshot
    said: list[str]  # each holder's last line
    listening_s: float  # boot started -> locksmithd listening
    last_shard_to_app_s: float | None  # last send-shard returned -> the app's first line


def unlock(built: Built, which: str, names: Sequence[str], port: int) -> Unlock:
    """Boot the unpacked image `which` with its entrypoint and `names` as the command, while
    the first two holders send their shards from the host; until the boot ends."""
    config = built.configs["example-app"]
    rootfs = built.rootfs[which]
    start = time.monotonic()
    with booted(rootfs, boot_env(config, port), [*entrypoint(config), *names]) as boot:
        boot.wait_for_log(f"listening on 127.0.0.1:{port}")
        listening = time.monotonic() - start
        said = []
        for _, private in built.holders[:2]:
            try:
                out = send_with_keyring(built.world, built.quorum.app_dir, port, private,
                                        built.quorum.nsm)
            except AssertionError as error:  # send-shard failed: what did the enclave say?
                raise AssertionError(f"{error}\nthe boot's log:\n{boot.log()}") from None
            said.append(out.splitlines()[-1])
        last_shard = time.monotonic()
        first = read_line(boot.process, 60)
        after = time.monotonic() - last_shard if first else None
        rest, _ = boot.process.communicate(timeout=60)
        status = boot.process.returncode
    return Unlock(status, (first + rest).decode(errors="replace"), boot.log(), said, listening,
                  after)
