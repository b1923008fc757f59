"""The Procfile rules of cli.md §8, and the Containerfile lines Locksmith needs in the image."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from locksmith.core.app.procfile import (
    BINARY_WITH_LOCKSMITH, BUNDLE, POLICY, SECRETS, Entry, Finding, Install, Procfile,
    ProcfileError, check_containerfile, check_procfile, containerfile_copies, missing_installs,
    parse_port, parse_procfile,
)


def findings(text: str) -> tuple[Finding, ...]:
    return check_procfile(parse_procfile(text))


def errors(text: str) -> list[str]:
    return [f.message for f in findings(text) if f.severity == "error"]


def reserved(port: int) -> str:
    return (f"Port {port} is reserved for internal enclave services. Ports 49500-49600 are "
            "reserved; choose a different application port.")


# --- format ----------------------------------------------------------------------------------


def test_keys_and_values_are_trimmed_and_kept_in_file_order() -> None:
    procfile = parse_procfile("  build :  make all  \nrun:./app --flag\n")
    assert procfile.entries == (Entry("build", "make all", 1), Entry("run", "./app --flag", 2))


def test_a_value_keeps_everything_after_the_first_colon() -> None:
    procfile = parse_procfile("run: ./app --listen 0.0.0.0:8080\n")
    assert procfile.get("run") == "./app --listen 0.0.0.0:8080"


def test_comments_and_blank_lines_are_ignored_but_counted_in_line_numbers() -> None:
    procfile = parse_procfile("# header: not a key\n\n   \n  # indented: comment\nports: 80\n")
    assert procfile.entries == (Entry("ports", "80", 5),)


def test_crlf_line_endings_are_trimmed_like_other_whitespace() -> None:
    procfile = parse_procfile("locksmith: true\r\nports: 80\r\n")
    assert procfile.locksmith_enabled and procfile.ports == (80,)


def test_an_empty_procfile_has_no_entries_and_no_findings() -> None:
    assert parse_procfile("").entries == ()
    assert findings("\n# only a comment\n") == ()


def test_a_line_without_a_colon_is_a_parse_error_naming_the_line() -> None:
    with pytest.raises(ProcfileError, match=r'^line 2: expected "key: value"$'):
        parse_procfile("ports: 80\nlocksmith true\n")


def test_a_line_with_nothing_before_the_colon_is_a_parse_error() -> None:
    with pytest.raises(ProcfileError, match=r'^line 1: no key before ":"$'):
        parse_procfile("  : 80\n")


def test_keys_are_case_sensitive() -> None:
    assert not parse_procfile("Locksmith: true\n").locksmith_enabled


def test_a_repeated_key_keeps_its_last_value_with_a_warning() -> None:
    text = "ports: 49504\nlocksmith: true\nports: 80\n"
    procfile = parse_procfile(text)
    assert procfile.ports == (80,)
    assert findings(text) == (Finding.warning(
        "ports is set more than once (lines 1, 3); the last value is used"),)


# --- locksmith -------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["true", "TRUE", "True", "tRuE"])
def test_locksmith_true_in_any_case_enables_locksmith(value: str) -> None:
    assert parse_procfile(f"locksmith: {value}\n").locksmith_enabled


@pytest.mark.parametrize("value", ["yes", "1", "on", "false", "", "true!", "\"true\"", "t rue"])
def test_any_other_locksmith_value_disables_it(value: str) -> None:
    assert not parse_procfile(f"locksmith: {value}\n").locksmith_enabled


def test_without_a_locksmith_key_locksmith_is_not_enabled() -> None:
    assert not parse_procfile("ports: 80\n").locksmith_enabled


# --- ports -----------------------------------------------------------------------------------


def test_ports_are_comma_separated_integers_with_spaces_allowed() -> None:
    procfile = parse_procfile("ports: 80, 443 ,8080\n")
    assert procfile.ports == (80, 443, 8080)
    assert findings("ports: 80, 443 ,8080\n") == ()


@pytest.mark.parametrize("item", ["x", "0", "65536", "", "-1", "+80", "8o", "80.0", "1_000",
                                  "٣", "99999999999999999999999999"])
def test_an_item_that_is_not_a_port_is_invalid_and_named(item: str) -> None:
    assert errors(f"ports: 80,{item},443\n") == [f"Invalid port '{item}' in ports"]


def test_an_empty_item_between_commas_or_at_the_end_is_an_invalid_port() -> None:
    assert errors("ports: 80,,443,\n") == ["Invalid port '' in ports"] * 2


def test_an_empty_ports_value_lists_no_ports() -> None:
    assert parse_procfile("ports:\n").ports == ()
    assert findings("ports:\n") == ()


@pytest.mark.parametrize("port", [1, 65535, 49499, 49601])
def test_ports_at_the_edges_of_the_allowed_ranges_are_accepted(port: int) -> None:
    assert findings(f"ports: {port}\n") == ()


@pytest.mark.parametrize("port", [49500, 49501, 49502, 49504, 49550, 49600])
def test_ports_of_the_reserved_range_are_refused(port: int) -> None:
    assert errors(f"ports: 80, {port}\n") == [reserved(port)]


def test_each_reserved_port_is_reported_once_in_listing_order() -> None:
    assert errors("ports: 49600, 49504, 49600\n") == [reserved(49600), reserved(49504)]


def test_leading_zeros_are_the_same_port() -> None:
    assert parse_procfile("ports: 0080\n").ports == (80,)
    assert errors("ports: 049504\n") == [reserved(49504)]


def test_parse_port_accepts_only_ascii_digits_in_range() -> None:
    assert [parse_port(t) for t in ("1", "65535", "00443", "0", "65536", " 80", "")] == [
        1, 65535, 443, None, None, None, None]


# --- http_port -------------------------------------------------------------------------------


def test_http_port_listed_in_ports_is_accepted() -> None:
    procfile = parse_procfile("ports: 80, 443\nhttp_port: 443\n")
    assert procfile.http_port == 443
    assert findings("ports: 80, 443\nhttp_port: 443\n") == ()


def test_http_port_not_listed_in_ports_is_an_error() -> None:
    assert errors("ports: 80\nhttp_port: 8080\n") == ["http_port 8080 must also be listed in ports"]


def test_http_port_without_any_ports_is_an_error() -> None:
    assert errors("http_port: 80\n") == ["http_port 80 must also be listed in ports"]


def test_http_port_matching_only_an_invalid_ports_item_is_not_listed() -> None:
    assert errors("ports: x\nhttp_port: 80\n") == [
        "Invalid port 'x' in ports", "http_port 80 must also be listed in ports"]


@pytest.mark.parametrize("value", ["web", "0", "65536", ""])
def test_an_http_port_that_is_not_a_port_is_invalid(value: str) -> None:
    assert parse_procfile(f"http_port: {value}\n").http_port is None
    assert errors(f"ports: 80\nhttp_port: {value}\n") == [f"Invalid port '{value}' in http_port"]


# --- binary ----------------------------------------------------------------------------------


def test_binary_with_locksmith_true_is_an_error_with_the_spec_text() -> None:
    assert errors("binary: /app/server\nlocksmith: True\n") == [BINARY_WITH_LOCKSMITH]
    assert BINARY_WITH_LOCKSMITH == (
        "binary: cannot be combined with locksmith: true (binary: keeps only the binary's "
        "directory, so /etc/caution/ is lost and locksmithd cannot start). Remove one of them.")


def test_binary_without_locksmith_is_fine() -> None:
    assert parse_procfile("binary: /app/server\n").binary == "/app/server"
    assert findings("binary: /app/server\nlocksmith: false\n") == ()


def test_an_empty_binary_key_still_counts_as_binary() -> None:
    assert errors("binary:\nlocksmith: true\n") == [BINARY_WITH_LOCKSMITH]


def test_every_error_is_reported_in_the_spec_order() -> None:
    text = "locksmith: true\nbinary: x\nhttp_port: 9\nports: 49504, y\n"
    assert errors(text) == ["Invalid port 'y' in ports", reserved(49504),
                            "http_port 9 must also be listed in ports", BINARY_WITH_LOCKSMITH]


# --- property tests --------------------------------------------------------------------------

_KEY_CHARS = st.characters(codec="utf-8", exclude_characters=":\n")
_VALUE_CHARS = st.characters(codec="utf-8", exclude_characters="\n")
keys = st.text(_KEY_CHARS, min_size=1, max_size=12).filter(
    lambda k: k == k.strip() and k != "" and not k.startswith("#"))
values = st.text(_VALUE_CHARS, max_size=20).filter(lambda v: v == v.strip())
allowed_ports = st.integers(1, 65535).filter(lambda p: p not in range(49500, 49601))


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_the_parser_raises_only_its_own_error_on_arbitrary_text(text: str) -> None:
    try:
        procfile = parse_procfile(text)
    except ProcfileError:
        return
    check_procfile(procfile)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(keys, values), max_size=8))
def test_rendered_entries_parse_back_to_the_same_entries(pairs: list[tuple[str, str]]) -> None:
    procfile = Procfile(tuple(Entry(k, v, n) for n, (k, v) in enumerate(pairs, start=1)))
    assert parse_procfile(procfile.to_text()) == procfile


@settings(max_examples=200, deadline=None)
@given(locksmith=st.booleans(), ports=st.lists(allowed_ports, min_size=1, max_size=6),
       pick=st.integers(0, 5), binary=st.booleans())
def test_a_generated_valid_procfile_round_trips_without_findings(
        locksmith: bool, ports: list[int], pick: int, binary: bool) -> None:
    http_port = ports[pick % len(ports)]
    lines = [f"locksmith: {'true' if locksmith else 'false'}",
             f"ports: {', '.join(str(p) for p in ports)}", f"http_port: {http_port}"]
    if binary and not locksmith:
        lines.append("binary: /app/server")
    procfile = parse_procfile("\n".join(lines) + "\n")
    assert (procfile.locksmith_enabled, procfile.ports, procfile.http_port) == (
        locksmith, tuple(ports), http_port)
    assert procfile.binary == ("/app/server" if binary and not locksmith else None)
    assert check_procfile(procfile) == ()
    assert parse_procfile(procfile.to_text()).entries == procfile.entries


# --- Containerfile ---------------------------------------------------------------------------

ALL_THREE = (
    "FROM debian:bookworm\n"
    "ADD .caution/quorum-bundle.json /etc/caution/bundle.json\n"
    "ADD .caution/secrets/ /etc/caution/secrets/\n"
    "ADD .caution/keymaker-pcr-policy.json /etc/caution/keymaker-pcr-policy.json\n"
)


def missing(text: str, v1: bool = True) -> set[Install]:
    return set(missing_installs(text, v1_bundle=v1))


def test_the_spec_lines_install_everything() -> None:
    assert missing(ALL_THREE) == set()


def test_an_empty_containerfile_misses_bundle_and_secrets_and_the_policy_only_for_v1() -> None:
    assert missing_installs("FROM x\n", v1_bundle=False) == (BUNDLE, SECRETS)
    assert missing_installs("FROM x\n", v1_bundle=True) == (BUNDLE, SECRETS, POLICY)


def test_missing_lines_are_warnings_that_name_the_line_and_the_file() -> None:
    assert check_containerfile("FROM x\n", "Dockerfile", v1_bundle=True) == (
        Finding.warning('Dockerfile has no "ADD .caution/quorum-bundle.json '
                        '/etc/caution/bundle.json" (or COPY); locksmithd reads the quorum bundle '
                        'from /etc/caution/bundle.json'),
        Finding.warning('Dockerfile has no "ADD .caution/secrets/ /etc/caution/secrets/" (or '
                        'COPY); locksmith-oneshot reads the encrypted secrets from '
                        '/etc/caution/secrets/'),
        Finding.warning('Dockerfile has no "ADD .caution/keymaker-pcr-policy.json '
                        '/etc/caution/keymaker-pcr-policy.json" (or COPY); locksmithd refuses a '
                        'V1 bundle without the Keymaker PCR policy at '
                        '/etc/caution/keymaker-pcr-policy.json'),
    )


def test_a_complete_containerfile_gives_no_findings() -> None:
    assert check_containerfile(ALL_THREE, "Containerfile", v1_bundle=True) == ()


@pytest.mark.parametrize("line", [
    "COPY .caution/quorum-bundle.json /etc/caution/bundle.json",
    "copy .caution/quorum-bundle.json /etc/caution/bundle.json",
    "Add ./.caution/quorum-bundle.json /etc/caution/bundle.json",
    "COPY /.caution/quorum-bundle.json /etc/caution/bundle.json",
    "COPY .caution//quorum-bundle.json /etc/caution/./bundle.json",
    "  COPY   .caution/quorum-bundle.json\t/etc/caution/bundle.json  ",
    "COPY --chown=0:0 --chmod=0644 .caution/quorum-bundle.json /etc/caution/bundle.json",
    "COPY --link .caution/quorum-bundle.json /etc/caution/bundle.json",
    'COPY [".caution/quorum-bundle.json", "/etc/caution/bundle.json"]',
    'COPY --chown=1:1 [".caution/quorum-bundle.json","/etc/caution/bundle.json"]',
    "COPY '.caution/quorum-bundle.json' \"/etc/caution/bundle.json\"",
    "COPY .caution/quorum-bundle.json \\\n    /etc/caution/bundle.json",
    ("COPY \\\n  # a comment inside the continuation\n\n  .caution/quorum-bundle.json \\\n"
     "  /etc/caution/bundle.json"),
    "COPY . /ctx/\nCOPY .caution/quorum-bundle.json /etc/caution/bundle.json",
])
def test_equivalent_forms_install_the_bundle(line: str) -> None:
    assert BUNDLE not in missing(f"FROM x\n{line}\n")


@pytest.mark.parametrize("line", [
    "COPY --from=build .caution/quorum-bundle.json /etc/caution/bundle.json",
    "COPY --from=build /src/.caution/quorum-bundle.json /etc/caution/bundle.json",
    "COPY --parents .caution/quorum-bundle.json /etc/caution/bundle.json",
    "COPY .caution/quorum-bundle.json /etc/caution/",
    "COPY .caution/quorum-bundle.json /etc/caution/bundle.json/",
    "COPY .caution/quorum-bundle.json other.json /etc/caution/bundle.json",
    "COPY .caution/quorum-bundle.json /etc/caution/quorum-bundle.json",
    "COPY .caution/bundle.json /etc/caution/bundle.json",
    "COPY .caution/*.json /etc/caution/bundle.json",
    "COPY $BUNDLE /etc/caution/bundle.json",
    "COPY .caution/quorum-bundle.json",
    "COPY 'unterminated /etc/caution/bundle.json",
    "# COPY .caution/quorum-bundle.json /etc/caution/bundle.json",
    "RUN cp .caution/quorum-bundle.json /etc/caution/bundle.json",
    "RUN <<EOF\nCOPY .caution/quorum-bundle.json /etc/caution/bundle.json\nEOF",
    "RUN <<-'END' bash\n\tCOPY .caution/quorum-bundle.json /etc/caution/bundle.json\n\tEND",
    "COPY .caution/quorum-bundle.json bundle.json",
])
def test_forms_that_do_not_put_the_bundle_at_its_path_do_not_count(line: str) -> None:
    assert BUNDLE in missing(f"FROM x\n{line}\n")


def test_the_heredoc_body_is_skipped_and_parsing_resumes_after_it() -> None:
    text = ("FROM x\nRUN <<EOF\nADD .caution/secrets/ /etc/caution/secrets/\nEOF\n"
            "COPY .caution/quorum-bundle.json /etc/caution/bundle.json\n")
    assert missing(text, v1=False) == {SECRETS}


def test_a_relative_destination_follows_workdir_and_is_unknown_before_one() -> None:
    assert BUNDLE not in missing(
        "FROM x\nWORKDIR /etc\nWORKDIR caution\nCOPY .caution/quorum-bundle.json bundle.json\n")
    assert BUNDLE in missing(
        "FROM x\nWORKDIR /etc/caution\nFROM y\nCOPY .caution/quorum-bundle.json bundle.json\n")
    assert BUNDLE in missing("FROM x\nWORKDIR rel\nCOPY .caution/quorum-bundle.json bundle.json\n")


@pytest.mark.parametrize("line", [
    "ADD .caution/secrets/ /etc/caution/secrets/",
    "ADD .caution/secrets /etc/caution/secrets/",
    "COPY ./.caution/secrets /etc/caution/secrets",
    "COPY .caution/secrets/ other/ /etc/caution/secrets/",
    'COPY [".caution/secrets/", "/etc/caution/secrets/"]',
    "COPY .caution/ /etc/caution/",
    "COPY . /app/\nCOPY .caution /etc/caution",
])
def test_equivalent_forms_install_the_secrets(line: str) -> None:
    assert SECRETS not in missing(f"FROM x\n{line}\n")


@pytest.mark.parametrize("line", [
    "COPY .caution/secrets/ /etc/caution/",
    "COPY .caution/secrets/*.asc /etc/caution/secrets/",
    "COPY --from=0 .caution/secrets/ /etc/caution/secrets/",
    "COPY .caution/secrets/ other/ /etc/caution/secrets",
    "COPY . /etc/caution/",
])
def test_forms_that_do_not_put_the_secrets_at_their_path_do_not_count(line: str) -> None:
    assert SECRETS in missing(f"FROM x\n{line}\n")


@pytest.mark.parametrize("line", [
    "COPY .caution/keymaker-pcr-policy.json /etc/caution/keymaker-pcr-policy.json",
    "COPY .caution/keymaker-pcr-policy.json /etc/caution/",
    "COPY .caution/keymaker-pcr-policy.json .caution/quorum-bundle.json /etc/caution/",
    "COPY .caution/ /etc/caution/",
])
def test_equivalent_forms_install_the_policy(line: str) -> None:
    assert POLICY not in missing(f"FROM x\n{line}\n")


def test_copying_the_whole_caution_directory_misses_only_the_renamed_bundle() -> None:
    assert missing("FROM x\nCOPY .caution/ /etc/caution/\n") == {BUNDLE}


def test_copies_record_line_numbers_and_normalised_paths() -> None:
    copies = containerfile_copies(
        "FROM x\n\nCOPY --chown=1 ./a//b/ c \\\n /dst/./x/\nCOPY --from=s a /b\n")
    assert [(c.line, c.sources, c.destination, c.into_directory) for c in copies] == [
        (3, ("/a/b", "/c"), "/dst/x", True)]


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_the_containerfile_reader_never_raises_on_arbitrary_text(text: str) -> None:
    missing_installs(text, v1_bundle=True)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([
    "FROM x", "COPY ", "ADD ", "[", "]", '"', "'", "\\", "\n", " ", "--from=a", "--chown=1",
    "<<EOF", "EOF", "#", ".caution/secrets/", "/etc/caution/secrets/", "WORKDIR", "/", ".",
    "[[[[[[[[[[[[", ",",
]), max_size=40).map("".join))
def test_the_containerfile_reader_never_raises_on_dockerfile_like_noise(text: str) -> None:
    missing_installs(text, v1_bundle=True)


def test_a_megabyte_long_word_is_read_quickly() -> None:
    """`shlex` needs seconds for this; the reader must stay linear on a 1 MiB file."""
    import time
    started = time.monotonic()
    for text in ("COPY " + "a" * 2**20, "COPY " + "[" * 2**20, "COPY '" + "x" * 2**20):
        assert BUNDLE in missing(text)
    assert time.monotonic() - started < 5
