"""locksmith-oneshot end to end: a real keyforkd, real files, a real POSIX shell (enclave.md §5)."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from locksmith.core.keyfork import ipc as keyfork_ipc
from locksmith.core.openpgp import message, quorumkey
from locksmith.core.openpgp.armor import armor
from locksmith.core.openpgp.packets import PKESK, SYMMETRIC_NO_MDC, encode_packet, parse_packets
from locksmith.core.protocol import frame
from locksmith.personalities import oneshot as personality
from tests import keyforkd_util as util
from tests.keyforkd_util import PYTHON, SECRET_07, Keyforkd

QUORUM_FPR = "15B0E570536A4B00A90151DB726E3FCA18892D05"  # formats.md §9.5, secret 07×32
FORBIDDEN = ("pgpy", "typer", "httpx", "uvicorn", "click", "starlette")

VALUES = {
    "API_KEY": "s3cr3t",
    "QUOTES": "it's \"quoted\" # not a comment",
    "SUBST": "$(touch /tmp/pwned) `id` ${HOME}",
    "MULTI": "-----BEGIN KEY-----\nline two\n  indented -----END KEY-----\n",
    "UNICODE": "grüße ☃ 日本",
    "SPACES": "  padded value  ",
    "EMPTY": "",
    "_lower": "x",
}


@pytest.fixture(scope="module")
def keys() -> quorumkey.QuorumKeys:
    return quorumkey.quorum_keys(SECRET_07)


@pytest.fixture(scope="module")
def daemon() -> Iterator[Keyforkd]:
    for directory in util.short_dir():
        running = util.start_keyforkd(directory)
        try:
            yield running
        finally:
            running.stop()


@pytest.fixture
def secrets(tmp_path: Path) -> Path:
    directory = tmp_path / "secrets"
    directory.mkdir()
    return directory


def encrypt(value: bytes | str, keys: quorumkey.QuorumKeys, *, armored: bool = True,
            wildcard: bool = False) -> bytes:
    data = value.encode() if isinstance(value, str) else value
    binary = message.encrypt(data, [keys.encrypt.public], wildcard=wildcard)
    return armor("MESSAGE", binary).encode() if armored else binary


def oneshot(*args: str, env: Mapping[str, str] | None = None,
            timeout: float = 30) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([PYTHON, "-m", "locksmith", "locksmith-oneshot", *args],
                          capture_output=True, env=dict(env) if env is not None else None,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def run_against(daemon: Keyforkd, secrets: Path, *extra: str) -> subprocess.CompletedProcess[bytes]:
    return oneshot("--socket", str(daemon.socket), "--secrets-dir", str(secrets), *extra)


def stderr_lines(result: subprocess.CompletedProcess[bytes]) -> list[str]:
    return result.stderr.decode().splitlines()


def shell_values(exports: bytes, names: list[str]) -> dict[str, bytes]:
    """Evaluate the exports in /bin/sh (dash) and read each variable back from the environment."""
    script = 'eval "$exports"; for n in ' + " ".join(names) \
        + '; do printenv "$n"; printf "\\0"; done'
    out = subprocess.run(["/bin/sh", "-c", script], env={"exports": os.fsdecode(exports),
                                                         "PATH": "/usr/bin:/bin"},
                         capture_output=True, check=True).stdout
    # printenv adds a newline after each value
    return {n: v[:-1] for n, v in zip(names, out.split(b"\0")[:-1])}


# --- success ---------------------------------------------------------------------------------


def test_tricky_values_are_exported_byte_exactly_and_sorted(
        daemon: Keyforkd, secrets: Path, keys: quorumkey.QuorumKeys) -> None:
    for index, (name, value) in enumerate(VALUES.items()):
        (secrets / f"{name}.asc").write_bytes(encrypt(value, keys, armored=index % 2 == 0))
    (secrets / "README").write_text("not a secret")
    (secrets / "notes.ASC").write_text("case matters")
    (secrets / "DIR.asc").mkdir()
    (secrets / "DANGLING.asc").symlink_to(secrets / "nowhere")
    (secrets / "LINKED.asc").symlink_to(secrets / "API_KEY.asc")
    result = run_against(daemon, secrets)
    assert result.returncode == 0, result.stderr
    names = sorted([*VALUES, "LINKED"], key=str.encode)
    lines = result.stdout.decode().split("\nexport ")
    assert result.stdout.startswith(b"export API_KEY='s3cr3t'\nexport EMPTY=''\n")
    assert [line.removeprefix("export ").split("=", 1)[0] for line in lines] == names
    expected = {**VALUES, "LINKED": VALUES["API_KEY"]}
    assert shell_values(result.stdout, names) == {n: expected[n].encode() for n in names}
    assert stderr_lines(result) == [
        f"locksmith-oneshot: derived quorum key {QUORUM_FPR}",
        f"locksmith-oneshot: exported {len(names)} variables: {' '.join(names)}",
    ]
    assert b"s3cr3t" not in result.stderr


def test_signed_and_wildcard_messages_are_accepted(
        daemon: Keyforkd, secrets: Path, keys: quorumkey.QuorumKeys) -> None:
    signer = quorumkey.quorum_keys(b"\x01" * 32).sign
    inner = message.signed_literal(b"signed value", signer, created=int(time.time()))
    (secrets / "SIGNED.asc").write_bytes(
        message.encrypt(b"signed value", [keys.encrypt.public], inner=inner))
    (secrets / "WILD.asc").write_bytes(encrypt("wildcard", keys, wildcard=True))
    result = run_against(daemon, secrets)
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"export SIGNED='signed value'\nexport WILD='wildcard'\n"


def test_the_environment_supplies_socket_and_directory(
        daemon: Keyforkd, secrets: Path, keys: quorumkey.QuorumKeys) -> None:
    (secrets / "FROM_ENV.asc").write_bytes(encrypt("yes", keys))
    env = {"PATH": os.environ["PATH"], "KEYFORKD_SOCKET_PATH": str(daemon.socket),
           "LOCKSMITH_SECRETS_DIR": str(secrets)}
    result = oneshot(env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"export FROM_ENV='yes'\n"


def test_an_empty_directory_exports_nothing_and_succeeds(daemon: Keyforkd, secrets: Path) -> None:
    (secrets / "other.txt").write_text("ignored")
    (secrets / "SUB.asc").mkdir()
    result = run_against(daemon, secrets)
    assert result.returncode == 0
    assert result.stdout == b""
    assert stderr_lines(result) == [
        f"locksmith-oneshot: derived quorum key {QUORUM_FPR}",
        f"locksmith-oneshot: no secrets in {secrets}",
        "locksmith-oneshot: exported 0 variables",
    ]


def test_it_waits_for_keyforkd_and_says_so_once(secrets: Path,
                                                keys: quorumkey.QuorumKeys) -> None:
    (secrets / "LATE.asc").write_bytes(encrypt("arrived", keys))
    for directory in util.short_dir():
        sock = directory / "k.sock"
        process = subprocess.Popen([PYTHON, "-m", "locksmith", "locksmith-oneshot", "--socket",
                                    str(sock), "--secrets-dir", str(secrets), "--timeout", "20"],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            time.sleep(1.0)
            running = util.start_keyforkd(directory)
            try:
                out, err = process.communicate(timeout=20)
            finally:
                running.stop()
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert process.returncode == 0, err
    assert out == b"export LATE='arrived'\n"
    assert err.decode().count(f"locksmith-oneshot: waiting for keyforkd at {sock}\n") == 1


# --- failures: nothing on stdout, one line per failure, exit 1 ------------------------------


def test_every_failed_file_is_reported_and_nothing_is_exported(
        daemon: Keyforkd, secrets: Path, keys: quorumkey.QuorumKeys) -> None:
    other = quorumkey.quorum_keys(b"\x02" * 32)
    no_mdc = parse_packets(encrypt("x", keys, armored=False))
    files = {
        "GOOD.asc": encrypt("fine", keys),
        "A.B.asc": encrypt("v", keys),
        ".hidden.asc": encrypt("v", keys),
        "1X.asc": encrypt("v", keys),
        ".asc": encrypt("v", keys),
        "GARBAGE.asc": b"this is not OpenPGP",
        "BADARMOR.asc": b"-----BEGIN PGP MESSAGE-----\n\n!!!!\n-----END PGP MESSAGE-----\n",
        "OTHER.asc": message.encrypt(b"v", [other.encrypt.public]),
        "OTHER_WILD.asc": message.encrypt(b"v", [other.encrypt.public], wildcard=True),
        "NOMDC.asc": encode_packet(PKESK, no_mdc[0].body)
        + encode_packet(SYMMETRIC_NO_MDC, no_mdc[1].body[1:]),
        "LATIN1.asc": encrypt(b"caf\xe9", keys),
        "NUL.asc": encrypt(b"a\x00b", keys),
        "BIG.asc": encrypt(b"x" * 131072, keys, armored=False),
        "PROCMEM.asc": b"",
    }
    for name, data in files.items():
        (secrets / name).write_bytes(data)
    (secrets / "PROCMEM.asc").unlink()
    (secrets / "PROCMEM.asc").symlink_to("/proc/self/mem")  # a regular file that cannot be read
    result = run_against(daemon, secrets)
    assert result.returncode == 1
    assert result.stdout == b""
    assert stderr_lines(result) == [
        f"locksmith-oneshot: derived quorum key {QUORUM_FPR}",
        "locksmith-oneshot: .asc: not a valid shell variable name",
        "locksmith-oneshot: .hidden.asc: not a valid shell variable name",
        "locksmith-oneshot: 1X.asc: not a valid shell variable name",
        "locksmith-oneshot: A.B.asc: not a valid shell variable name",
        "locksmith-oneshot: BADARMOR.asc: malformed message",
        "locksmith-oneshot: BIG.asc: value too large for a process environment",
        "locksmith-oneshot: GARBAGE.asc: malformed message",
        "locksmith-oneshot: LATIN1.asc: value is not valid UTF-8",
        "locksmith-oneshot: NOMDC.asc: message is not integrity protected",
        "locksmith-oneshot: NUL.asc: value contains a NUL character",
        "locksmith-oneshot: OTHER.asc: no recipient matches the quorum key",
        "locksmith-oneshot: OTHER_WILD.asc: decryption failed",
        "locksmith-oneshot: PROCMEM.asc: cannot read file: Input/output error",
    ]


@pytest.mark.parametrize("name", ["PATH", "IFS", "LD_PRELOAD", "LD_LIBRARY_PATH", "PYTHONPATH",
                                  "BASH_ENV", "ENV", "SHELLOPTS"])
def test_names_that_would_take_over_the_boot_are_refused(
        daemon: Keyforkd, secrets: Path, keys: quorumkey.QuorumKeys, name: str) -> None:
    (secrets / "GOOD.asc").write_bytes(encrypt("fine", keys))
    (secrets / f"{name}.asc").write_bytes(encrypt("/tmp/evil", keys))
    result = run_against(daemon, secrets)
    assert result.returncode == 1 and result.stdout == b""
    assert f"locksmith-oneshot: {name}.asc: reserved name: it would change how the boot shell, " \
           "the program loader or the runtime behaves" in stderr_lines(result)


def _allow_core_files() -> None:
    """Start with core files allowed, so that the test shows the oneshot turning them off."""
    import resource
    resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))


def test_the_oneshot_cannot_dump_core(secrets: Path) -> None:
    """It holds the quorum key and every secret: checked while it waits for keyforkd."""
    for directory in util.short_dir():
        process = subprocess.Popen([PYTHON, "-m", "locksmith", "locksmith-oneshot", "--socket",
                                    str(directory / "absent.sock"), "--secrets-dir", str(secrets),
                                    "--timeout", "10"], stderr=subprocess.PIPE,
                                   preexec_fn=_allow_core_files)
        try:
            assert process.stderr is not None
            assert b"waiting for keyforkd" in process.stderr.readline()
            limits = Path(f"/proc/{process.pid}/limits").read_text()
        finally:
            process.kill()
            process.wait()
    line = next(x for x in limits.splitlines() if x.startswith("Max core file size"))
    assert line.split()[4:6] == ["0", "0"]


def test_unreachable_keyforkd_fails_after_the_timeout(secrets: Path) -> None:
    missing = secrets / "no.sock"
    started = time.monotonic()
    result = oneshot("--socket", str(missing), "--secrets-dir", str(secrets), "--timeout", "0.5")
    assert 0.4 < time.monotonic() - started < 10
    assert result.returncode == 1
    assert result.stdout == b""
    assert stderr_lines(result) == [
        f"locksmith-oneshot: waiting for keyforkd at {missing}",
        f"locksmith-oneshot: cannot reach keyforkd at {missing}: No such file or directory",
    ]


def test_a_missing_secrets_directory_fails(daemon: Keyforkd, tmp_path: Path) -> None:
    result = run_against(daemon, tmp_path / "absent")
    assert result.returncode == 1 and result.stdout == b""
    assert stderr_lines(result)[-1] == (f"locksmith-oneshot: cannot read secrets directory "
                                        f"{tmp_path / 'absent'}: No such file or directory")


def test_a_failed_write_of_the_exports_fails(daemon: Keyforkd, secrets: Path,
                                             keys: quorumkey.QuorumKeys) -> None:
    (secrets / "X.asc").write_bytes(encrypt("v", keys))
    with open("/dev/full", "wb") as full:
        result = subprocess.run([PYTHON, "-m", "locksmith", "locksmith-oneshot", "--socket",
                                 str(daemon.socket), "--secrets-dir", str(secrets)],
                                stdout=full, stderr=subprocess.PIPE, timeout=30)
    assert result.returncode == 1
    assert result.stderr.decode().splitlines()[-1] == \
        "locksmith-oneshot: cannot write exports: No space left on device"


def _fake_keyforkd(path: Path, reply: bytes | None) -> threading.Thread:
    """A server that answers one request with `reply` (a raw frame), or closes if None."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen()

    def serve() -> None:
        with listener:
            conn, _ = listener.accept()
            with conn:
                conn.settimeout(10)
                conn.recv(65536)
                if reply is not None:
                    conn.sendall(reply)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize(("reply", "line"), [
    (frame.encode(keyfork_ipc.encode_error("nope!")),
     "locksmith-oneshot: keyforkd refused the derivation: nope!"),
    (frame.encode(b"\xa0"), "locksmith-oneshot: malformed response from keyforkd"),
    (frame.encode(b"\x00" * 10)[:20], "locksmith-oneshot: malformed response from keyforkd"),
    (b"\xff\xff\xff\xff", "locksmith-oneshot: malformed response from keyforkd"),
    (None, "locksmith-oneshot: malformed response from keyforkd"),
], ids=["error-map", "empty-map", "truncated-frame", "huge-header", "closed"])
def test_bad_answers_from_keyforkd(secrets: Path, reply: bytes | None, line: str) -> None:
    for directory in util.short_dir():
        thread = _fake_keyforkd(directory / "fake.sock", reply)
        result = oneshot("--socket", str(directory / "fake.sock"), "--secrets-dir", str(secrets))
        thread.join(10)
    assert result.returncode == 1 and result.stdout == b""
    assert stderr_lines(result) == [line]


@pytest.mark.parametrize("args", [["--timeout", "-1"], ["--timeout", "soon"], ["--bogus"],
                                  ["--socket", ""]])
def test_usage_errors_exit_2(args: list[str]) -> None:
    result = oneshot(*args)
    assert result.returncode == 2 and result.stdout == b""


# --- many secrets: two processes ---------------------------------------------------------


def test_many_secrets_are_decrypted_by_two_processes_with_the_same_output(
        daemon: Keyforkd, secrets: Path, keys: quorumkey.QuorumKeys) -> None:
    """From PARALLEL_FROM secrets on, a forked child decrypts the second half (issue 11): the
    output is the same single sorted write, every value exact."""
    values = {f"S{i:03d}": f"value {i} it's\n{'x' * i}"
              for i in range(personality.PARALLEL_FROM + 9)}
    for name, value in values.items():
        (secrets / f"{name}.asc").write_bytes(encrypt(value, keys))
    result = run_against(daemon, secrets)
    assert result.returncode == 0, result.stderr
    names = sorted(values)
    assert shell_values(result.stdout, names) == {n: values[n].encode() for n in names}
    assert result.stdout.count(b"\nexport ") == len(names) - 1
    assert stderr_lines(result)[-1] == (
        f"locksmith-oneshot: exported {len(names)} variables: {' '.join(names)}")


def test_failures_in_both_halves_are_all_reported_in_file_order(
        daemon: Keyforkd, secrets: Path, keys: quorumkey.QuorumKeys) -> None:
    count = personality.PARALLEL_FROM + 4
    for i in range(count):
        (secrets / f"S{i:03d}.asc").write_bytes(encrypt(f"v{i}", keys))
    for i in (1, count // 2 + 1, count - 1):
        (secrets / f"S{i:03d}.asc").write_bytes(b"garbage")
    result = run_against(daemon, secrets)
    assert result.returncode == 1
    assert result.stdout == b""
    assert stderr_lines(result)[1:] == [f"locksmith-oneshot: S{i:03d}.asc: malformed message"
                                        for i in (1, count // 2 + 1, count - 1)]


def test_without_fork_one_process_decrypts_everything(
        secrets: Path, keys: quorumkey.QuorumKeys, monkeypatch: pytest.MonkeyPatch) -> None:
    files = [f"S{i:03d}.asc" for i in range(personality.PARALLEL_FROM)]
    for i, name in enumerate(files):
        (secrets / name).write_bytes(encrypt(f"v{i}", keys))

    def no_fork() -> int:
        raise BlockingIOError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(os, "fork", no_fork)
    results = personality.decrypt_all(str(secrets), files, keys.encrypt)
    assert results == [(name, name[:-4], f"v{i}") for i, name in enumerate(files)]


def test_a_second_process_that_fails_fails_the_run(
        secrets: Path, keys: quorumkey.QuorumKeys, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail closed: the child dying (here: exiting 3 instead of delivering) is an error, never
    a shorter list of results."""
    files = [f"S{i:03d}.asc" for i in range(personality.PARALLEL_FROM)]
    for i, name in enumerate(files):
        (secrets / name).write_bytes(encrypt(f"v{i}", keys))
    parent = os.getpid()
    decrypt_files = personality.decrypt_files

    def dies_in_the_child(directory: str, names: list[str], key: object) -> object:
        if os.getpid() != parent:
            os._exit(3)
        return decrypt_files(directory, names, key)  # type: ignore[arg-type]

    monkeypatch.setattr(personality, "decrypt_files", dies_in_the_child)
    with pytest.raises(personality.Failure, match="^internal error: the second decryption process "
                                              "failed$"):
        personality.decrypt_all(str(secrets), files, keys.encrypt)


def test_its_quick_exit_still_delivers_what_it_printed() -> None:
    """The oneshot ends without the interpreter's teardown (locksmith.__main__.QUICK_EXIT;
    issue 11): what it printed into a pipe through sys.stdout's buffer (the help) must still
    arrive whole, with its exit status."""
    result = oneshot("--help")
    assert result.returncode == 0
    text = result.stdout.decode()
    assert text.startswith("usage: locksmith-oneshot") and text.endswith("\n")
    assert "--timeout SECONDS" in text


# --- the boot-path import rule ---------------------------------------------------------------


INSTRUMENTED = """\
import sys
from locksmith.__main__ import run
code = run(sys.argv[1:])
sys.stderr.write("\\nMODULES " + " ".join(sorted(sys.modules)) + "\\n")
sys.exit(code)
"""


def _loaded_modules(*args: str) -> tuple[int, set[str]]:
    result = subprocess.run([PYTHON, "-c", INSTRUMENTED, "locksmith", "locksmith-oneshot", *args],
                            capture_output=True, timeout=30)
    modules = result.stderr.decode().rsplit("\nMODULES ", 1)[1].split()
    return result.returncode, set(modules)


@pytest.mark.parametrize("case", ["success", "bad file", "no keyforkd"])
def test_no_cli_or_http_library_is_ever_imported(
        daemon: Keyforkd, secrets: Path, keys: quorumkey.QuorumKeys, case: str) -> None:
    (secrets / "OK.asc").write_bytes(encrypt("v", keys))
    sock = str(daemon.socket)
    if case == "bad file":
        (secrets / "BAD.asc").write_bytes(b"garbage")
        (secrets / "1BAD.asc").write_bytes(b"garbage")
    if case == "no keyforkd":
        sock = str(secrets / "absent.sock")
    code, modules = _loaded_modules("--socket", sock, "--secrets-dir", str(secrets),
                                    "--timeout", "0.3")
    assert code == (0 if case == "success" else 1)
    assert not {m for m in modules if m.split(".")[0] in FORBIDDEN}
    assert not {"locksmith.core.openpgp.certs", "locksmith.core.openpgp.validity", "cbor2",
                "asyncio", "locksmith.personalities.caution"} & modules


def test_as_the_boot_script_calls_it_it_loads_only_what_decrypting_needs(
        daemon: Keyforkd, secrets: Path, keys: quorumkey.QuorumKeys,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """No arguments (the paths in the environment), as locksmith-run calls it: the run between
    the last shard and the application (issue 11) loads no argument parser, and none of the
    modules that used to cost most of its start (dataclasses with inspect, hashlib with the
    system's libcrypto, importlib.resources, the socket module's enums)."""
    (secrets / "OK.asc").write_bytes(encrypt("v", keys))
    monkeypatch.setenv("KEYFORKD_SOCKET_PATH", str(daemon.socket))
    monkeypatch.setenv("LOCKSMITH_SECRETS_DIR", str(secrets))
    code, modules = _loaded_modules()
    assert code == 0
    assert not {"argparse", "dataclasses", "inspect", "hashlib", "_hashlib",
                "importlib.resources", "socket"} & modules
