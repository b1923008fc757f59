"""`caution procfile check` (cli.md §7.3, §8): exit codes, exact lines, which files it reads."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

import pytest

from locksmith.core.bundle.model import BundleV1
from tests.cli.clirun import Result, caution
from tests.conftest import CAUTION_V0
from tests.locksmithd_kit import Sim, v1_quorum

Capsys = pytest.CaptureFixture[str]

BUNDLE = ".caution/quorum-bundle.json"
BUNDLE_LINE = "ADD .caution/quorum-bundle.json /etc/caution/bundle.json\n"
SECRETS_LINE = "ADD .caution/secrets/ /etc/caution/secrets/\n"
POLICY_LINE = "ADD .caution/keymaker-pcr-policy.json /etc/caution/keymaker-pcr-policy.json\n"
V0_IMAGE = "FROM debian:bookworm\n" + BUNDLE_LINE + SECRETS_LINE
V1_IMAGE = V0_IMAGE + POLICY_LINE

NO_CONTAINERFILE = ("warning: no Containerfile or Dockerfile found; the image's ADD lines for "
                    "the quorum bundle and secrets were not checked")
TEST_SECRET = ("warning: this bundle's quorum key comes from the public test secret; anything "
               "encrypted to it can be read by anyone")


def missing_secrets(name: str) -> str:
    return (f'warning: {name} has no "ADD .caution/secrets/ /etc/caution/secrets/" (or COPY); '
            "locksmith-oneshot reads the encrypted secrets from /etc/caution/secrets/")


def missing_policy(name: str) -> str:
    return (f'warning: {name} has no "ADD .caution/keymaker-pcr-policy.json '
            '/etc/caution/keymaker-pcr-policy.json" (or COPY); locksmithd refuses a V1 bundle '
            "without the Keymaker PCR policy at /etc/caution/keymaker-pcr-policy.json")


def reserved(port: int) -> str:
    return (f"error: Port {port} is reserved for internal enclave services. Ports 49500-49600 "
            "are reserved; choose a different application port.")


@pytest.fixture(scope="module")
def v1_bundle(tmp_path_factory: pytest.TempPathFactory) -> BundleV1:
    bundle, _, _ = v1_quorum(Sim.create(tmp_path_factory.mktemp("nsm")), 2, 3)
    return bundle


def project(root: Path, procfile: str | bytes | None,
            files: Mapping[str, str | bytes] = MappingProxyType({})) -> Path:
    """A repository with this `Procfile` (None: without one) and these other files."""
    contents = {"Procfile": procfile, **files} if procfile is not None else dict(files)
    for name, content in contents.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return root


def check(capsys: Capsys, root: Path, *args: str) -> Result:
    result = caution(capsys, "--workdir", str(root), "procfile", "check", *args)
    assert result.out == ""  # every line is for a person: stderr only
    return result


def lines(result: Result) -> list[str]:
    return result.err.splitlines()


# --- outcome and exit codes ------------------------------------------------------------------


def test_a_clean_procfile_without_locksmith_says_ok_and_exits_0(capsys: Capsys,
                                                               tmp_path: Path) -> None:
    root = project(tmp_path, "run: ./app\nports: 8080\nhttp_port: 8080\n")
    result = check(capsys, root)
    assert (result.code, result.err) == (0, "Procfile OK (locksmith not enabled)\n")


def test_with_locksmith_and_a_complete_containerfile_it_says_ok(capsys: Capsys,
                                                               tmp_path: Path) -> None:
    root = project(tmp_path, "locksmith: true\nports: 443\n", {"Containerfile": V0_IMAGE})
    result = check(capsys, root)
    assert (result.code, result.err) == (0, "Procfile OK (locksmith enabled)\n")


def test_every_error_is_printed_and_the_exit_status_is_1(capsys: Capsys, tmp_path: Path) -> None:
    root = project(tmp_path, "binary: /app/srv\nlocksmith: True\nports: 80,49504,x\n"
                             "http_port: 8080\n", {"Containerfile": V0_IMAGE})
    result = check(capsys, root)
    assert result.code == 1
    assert lines(result) == [
        "error: Invalid port 'x' in ports",
        reserved(49504),
        "error: http_port 8080 must also be listed in ports",
        ("error: binary: cannot be combined with locksmith: true (binary: keeps only the binary's "
         "directory, so /etc/caution/ is lost and locksmithd cannot start). Remove one of them."),
    ]


@pytest.mark.parametrize(("port", "code"), [(49499, 0), (49500, 1), (49504, 1), (49600, 1),
                                            (49601, 0)])
def test_the_reserved_range_decides_the_exit_status(capsys: Capsys, tmp_path: Path, port: int,
                                                    code: int) -> None:
    result = check(capsys, project(tmp_path, f"ports: {port}\n"))
    assert result.code == code
    assert lines(result) == ([reserved(port)] if code else ["Procfile OK (locksmith not enabled)"])


def test_warnings_alone_exit_0_without_the_ok_line(capsys: Capsys, tmp_path: Path) -> None:
    root = project(tmp_path, "locksmith: true\n", {"Dockerfile": "FROM x\n" + BUNDLE_LINE})
    result = check(capsys, root)
    assert (result.code, lines(result)) == (0, [missing_secrets("Dockerfile")])


def test_errors_and_warnings_are_printed_together(capsys: Capsys, tmp_path: Path) -> None:
    root = project(tmp_path, "locksmith: true\nports: 49501\n")
    result = check(capsys, root)
    assert (result.code, lines(result)) == (1, [reserved(49501), NO_CONTAINERFILE])


def test_monkeypatched_directory_works_like_workdir(capsys: Capsys, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(project(tmp_path, "ports: 80\n"))
    result = caution(capsys, "procfile", "check")
    assert (result.code, result.err) == (0, "Procfile OK (locksmith not enabled)\n")


# --- the Procfile itself ---------------------------------------------------------------------


def test_a_missing_procfile_is_an_error_naming_it(capsys: Capsys, tmp_path: Path) -> None:
    result = check(capsys, project(tmp_path, None))
    assert (result.code, result.err) == (1, "error: Procfile not found: Procfile\n")
    result = check(capsys, tmp_path, "deploy/Procfile.prod")
    assert (result.code, result.err) == (1, "error: Procfile not found: deploy/Procfile.prod\n")


def test_another_procfile_path_is_checked_and_named_in_the_ok_line(capsys: Capsys,
                                                                   tmp_path: Path) -> None:
    root = project(tmp_path, None, {"deploy/Procfile": "ports: 80\n"})
    result = check(capsys, root, "deploy/Procfile")
    assert (result.code, result.err) == (0, "deploy/Procfile OK (locksmith not enabled)\n")


def test_a_procfile_that_is_not_utf8_is_an_error_naming_the_line(capsys: Capsys,
                                                                 tmp_path: Path) -> None:
    result = check(capsys, project(tmp_path, b"ports: 80\nrun: caf\xe9\n"))
    assert (result.code, result.err) == (
        1, "error: Procfile Procfile is not valid UTF-8 (line 2)\n")


def test_a_procfile_over_one_mebibyte_is_refused(capsys: Capsys, tmp_path: Path) -> None:
    result = check(capsys, project(tmp_path, "# padding\n" * 110_000))
    assert (result.code, result.err) == (1, "error: Procfile Procfile is larger than 1 MiB\n")


def test_a_directory_named_procfile_cannot_be_read(capsys: Capsys, tmp_path: Path) -> None:
    (tmp_path / "Procfile").mkdir()
    result = check(capsys, tmp_path)
    assert result.code == 1
    assert result.err.startswith("error: cannot read Procfile Procfile: ")


def test_a_malformed_line_is_an_error_with_its_line_number(capsys: Capsys,
                                                           tmp_path: Path) -> None:
    result = check(capsys, project(tmp_path, "ports: 80\nlocksmith true\n"))
    assert (result.code, result.err) == (
        1, 'error: invalid Procfile Procfile: line 2: expected "key: value"\n')


def test_a_utf8_byte_order_mark_is_not_part_of_the_first_key(capsys: Capsys,
                                                             tmp_path: Path) -> None:
    root = project(tmp_path, "\ufefflocksmith: true\n".encode(), {"Containerfile": V0_IMAGE})
    result = check(capsys, root)
    assert (result.code, result.err) == (0, "Procfile OK (locksmith enabled)\n")


# --- which Containerfile ---------------------------------------------------------------------


def test_without_locksmith_no_containerfile_is_read(capsys: Capsys, tmp_path: Path) -> None:
    root = project(tmp_path, "locksmith: yes\n", {"Containerfile": "FROM x\n"})
    assert check(capsys, root, "--containerfile", "nowhere").code == 0
    assert lines(check(capsys, root)) == ["Procfile OK (locksmith not enabled)"]


def test_neither_containerfile_nor_dockerfile_is_a_warning(capsys: Capsys,
                                                           tmp_path: Path) -> None:
    result = check(capsys, project(tmp_path, "locksmith: true\n"))
    assert (result.code, lines(result)) == (0, [NO_CONTAINERFILE])


def test_containerfile_is_preferred_to_dockerfile(capsys: Capsys, tmp_path: Path) -> None:
    root = project(tmp_path, "locksmith: true\n", {
        "Containerfile": "FROM x\n" + BUNDLE_LINE, "Dockerfile": V0_IMAGE})
    assert lines(check(capsys, root)) == [missing_secrets("Containerfile")]


def test_dockerfile_is_used_when_there_is_no_containerfile(capsys: Capsys,
                                                           tmp_path: Path) -> None:
    root = project(tmp_path, "locksmith: true\n", {"Dockerfile": "FROM x\n" + BUNDLE_LINE})
    assert lines(check(capsys, root)) == [missing_secrets("Dockerfile")]


def test_the_containerfile_option_names_the_file_to_check(capsys: Capsys,
                                                          tmp_path: Path) -> None:
    root = project(tmp_path, "locksmith: true\n", {
        "Containerfile": V0_IMAGE, "image/Containerfile_prod": "FROM x\n" + BUNDLE_LINE})
    result = check(capsys, root, "--containerfile", "image/Containerfile_prod")
    assert (result.code, lines(result)) == (0, [missing_secrets("image/Containerfile_prod")])


def test_a_containerfile_option_naming_no_file_is_an_error(capsys: Capsys,
                                                           tmp_path: Path) -> None:
    root = project(tmp_path, "locksmith: true\n", {"Containerfile": V0_IMAGE})
    result = check(capsys, root, "--containerfile", "Containerfile.missing")
    assert (result.code, result.err) == (
        1, "error: Containerfile not found: Containerfile.missing\n")


def test_a_containerfile_that_is_not_utf8_is_an_error(capsys: Capsys, tmp_path: Path) -> None:
    root = project(tmp_path, "locksmith: true\n", {"Dockerfile": b"FROM x\n\xff\n"})
    result = check(capsys, root)
    assert (result.code, result.err) == (
        1, "error: Containerfile Dockerfile is not valid UTF-8 (line 2)\n")


# --- the bundle: V1 needs the policy ---------------------------------------------------------


def test_a_v1_bundle_requires_the_policy_line(capsys: Capsys, tmp_path: Path,
                                              v1_bundle: BundleV1) -> None:
    root = project(tmp_path, "locksmith: true\n",
                   {"Containerfile": V0_IMAGE, BUNDLE: v1_bundle.to_json()})
    result = check(capsys, root)
    assert (result.code, lines(result)) == (0, [missing_policy("Containerfile")])


def test_a_v1_bundle_with_the_policy_line_is_ok(capsys: Capsys, tmp_path: Path,
                                                v1_bundle: BundleV1) -> None:
    root = project(tmp_path, "locksmith: true\n",
                   {"Containerfile": V1_IMAGE, BUNDLE: v1_bundle.to_json()})
    result = check(capsys, root)
    assert (result.code, result.err) == (0, "Procfile OK (locksmith enabled)\n")


def test_a_v0_bundle_needs_no_policy_but_its_test_secret_is_flagged(capsys: Capsys,
                                                                     tmp_path: Path) -> None:
    root = project(tmp_path, "locksmith: true\n", {
        "Containerfile": V0_IMAGE, BUNDLE: (CAUTION_V0 / "bundle.json").read_bytes()})
    result = check(capsys, root)
    assert (result.code, lines(result)) == (0, [TEST_SECRET])


def test_a_bundle_that_does_not_parse_is_a_warning_not_a_crash(capsys: Capsys,
                                                               tmp_path: Path) -> None:
    root = project(tmp_path, "locksmith: true\n", {"Containerfile": V0_IMAGE, BUNDLE: "{not json"})
    result = check(capsys, root)
    assert (result.code, lines(result)) == (0, [(
        "warning: could not read the quorum bundle .caution/quorum-bundle.json (could not parse "
        "quorum bundle JSON); whether the image also needs the Keymaker PCR policy (V1 bundles) "
        "was not checked")])


def test_a_bundle_failing_its_checks_is_a_warning_and_still_decides_the_policy(
        capsys: Capsys, tmp_path: Path, v1_bundle: BundleV1) -> None:
    raw = v1_bundle.to_dict()
    raw["data"]["public_key"] = "not a key"
    root = project(tmp_path, "locksmith: true\n",
                   {"Containerfile": V0_IMAGE, BUNDLE: json.dumps(raw)})
    result = check(capsys, root)
    assert result.code == 0
    assert lines(result)[0].startswith(
        "warning: invalid quorum bundle .caution/quorum-bundle.json: ")
    assert lines(result)[1:] == [missing_policy("Containerfile")]


def test_without_locksmith_the_bundle_is_not_read(capsys: Capsys, tmp_path: Path) -> None:
    root = project(tmp_path, "ports: 80\n", {BUNDLE: "{not json"})
    assert lines(check(capsys, root)) == ["Procfile OK (locksmith not enabled)"]
