"""Procfiles and Containerfiles (locksmith/core/app/procfile.py) under hostile input.

Allowed to escape:
* `parse_procfile`: `ProcfileError` only; `check_procfile` of what parsed: nothing;
* `check_containerfile` / `containerfile_copies` / `missing_installs`: nothing at all (the
  module promises "never raises": a Containerfile it cannot read yields warnings).

tests/core/app/test_procfile.py already feeds arbitrary text to both readers; this adds mutations
of realistic files, token-level Containerfiles built from the constructs the reader handles
specially (flags, JSON arrays, quotes, heredocs, continuations, WORKDIR), and large inputs.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from locksmith.core.app.procfile import (
    ProcfileError, check_containerfile, check_procfile, containerfile_copies, parse_procfile,
)
from tests.fuzz.strategies import bounded, fuzz, only, outcome, text_mutated

PROCFILE = ("# enclave app\nlocksmith: true\nports: 8080, 443,0080\nhttp_port: 8080\n"
            "binary: /app/server\nports: 49504\n  # indented comment\nhttp_port: x\n")
CONTAINERFILE = (
    "# syntax=docker/dockerfile:1\n"
    "FROM debian:bookworm AS build\n"
    "WORKDIR /app\n"
    "COPY --chown=0:0 [\".caution/quorum-bundle.json\", \"/etc/caution/bundle.json\"]\n"
    "ADD --link .caution/secrets/ /etc/caution/secrets/\n"
    "COPY \\\n  # comment inside\n  .caution/keymaker-pcr-policy.json \\\n  /etc/caution/\n"
    "RUN <<EOF\ncat > x\nEOF\n"
    "COPY <<-'END' /etc/thing\n\tADD .caution/ /etc/caution/\n\tEND\n"
    "FROM build\nCOPY --from=build /app /app\nCOPY 'a b' \"c\\\"d\" ./rel/\n"
)


def _procfile(text: str) -> None:
    procfile = only((ProcfileError,), parse_procfile, text)
    outcome("refused" if procfile is None else "parsed")
    if procfile is not None:
        check_procfile(procfile)
        procfile.to_text()


def _containerfile(text: str) -> None:
    for v1 in (False, True):
        findings = check_containerfile(text, "Containerfile", v1_bundle=v1)
        outcome(f"{len(findings)} findings")
    containerfile_copies(text)


def test_fuzz_the_samples_read() -> None:
    assert parse_procfile(PROCFILE).entries and check_procfile(parse_procfile(PROCFILE))
    assert containerfile_copies(CONTAINERFILE)


@fuzz(deadline_ms=500, scale=3)
@given(st.one_of(
    text_mutated(PROCFILE, alphabet=":#,0123456789 \t\nabhlnoprst_-/", max_edits=6),
    st.lists(st.tuples(
        st.sampled_from(["locksmith", "ports", "http_port", "binary", "", " ", "#x", "ports "]),
        st.sampled_from([":", ": ", "", "::"]),
        st.sampled_from(["true", "false", "8080", "49504", "0", "65536", "1,2,,3", " 80 , 443",
                         "0" * 30 + "1", "9" * 5000, "٨٠", "/bin/x", ""]),
    ), max_size=12).map(lambda lines: "\n".join("".join(parts) for parts in lines)),
))
def test_fuzz_procfiles_raise_only_procfile_errors(text: str) -> None:
    _procfile(text)


containerfile_lines = st.lists(st.tuples(
    st.sampled_from(["FROM", "COPY", "ADD", "copy", "WORKDIR", "RUN", "ENV", "#", "", "  COPY"]),
    st.lists(st.sampled_from([
        "--from=build", "--parents", "--chown=1:1", "--link", "--", "--=", ".caution/",
        ".caution/quorum-bundle.json", "/etc/caution/bundle.json", "/etc/caution/", "./", "/",
        "..", "../..", "a b", "'", '"', "\\", "\\\n", '["a", "b"]', "[", '["x"', "[1, 2]",
        "<<EOF", "<<-'END'", "EOF", "\tEND", "$VAR", "*", "rel/", ".", "é",
    ]), max_size=6).map(" ".join),
), max_size=12).map(lambda lines: "\n".join(f"{k} {a}" for k, a in lines))


@fuzz(deadline_ms=500, scale=3)
@given(st.one_of(
    text_mutated(CONTAINERFILE, alphabet="\\\"'[]<>-=/.# \t\nACDFOPRYaceu", max_edits=6),
    containerfile_lines,
))
def test_fuzz_containerfiles_never_raise(text: str) -> None:
    _containerfile(text)


def test_fuzz_large_files_are_read_in_bounded_time() -> None:
    """Half a MiB in the shapes that stress each reader: many lines and ports, one endless
    continuation, unterminated heredocs and quotes, a JSON array nested past the recursion
    limit."""
    size = 1 << 19
    bounded(_procfile, "ports: 1\n" * (size // 9), seconds=2.0)
    bounded(_procfile, "ports: " + "80," * (size // 3), seconds=2.0)
    for text in ("COPY " + "\\\n" * (size // 2) + "a b\n",
                 "RUN <<EOF\n" + "x\n" * (size // 2),
                 "COPY " + "'" * size + "\n",
                 "COPY [" + "[" * size + "\n",
                 "COPY a b\n" * (size // 9),
                 "WORKDIR " + "../" * (size // 3) + "\n"):
        bounded(_containerfile, text, seconds=2.0)


def test_fuzz_an_instruction_with_many_flags_is_read_in_linear_time() -> None:
    # 1 MiB: ~0.1 s when linear, ~4 s when each flag copies the rest of the line
    text = "COPY " + "--x " * (1024 * 1024 // 4) + "a b\n"
    bounded(containerfile_copies, text, seconds=1.5)
