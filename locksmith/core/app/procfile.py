"""Caution's Procfile rules (cli.md §8) and the Containerfile lines Locksmith needs: pure checks.

`caution procfile check` runs before an image is built. Every mistake it reports here would
otherwise surface much later and less clearly: an application port that collides with the
enclave's internal services, a `binary:` image that has lost `/etc/caution/`, or an image
without the bundle, secrets or Keymaker PCR policy, where locksmithd refuses to start and the
application never boots (enclave.md §1, §3.1). No I/O: the command reads the files and decides
whether the bundle is V1.

    parse_procfile(text) -> Procfile                    (ProcfileError for a malformed line)
    check_procfile(procfile) -> tuple[Finding, ...]     (errors and warnings, spec texts)
    check_containerfile(text, name, v1_bundle=...) -> tuple[Finding, ...]   (warnings only)

Procfile choices where §8 is silent: `#` comments may be indented; keys are case-sensitive; a
non-blank line without `:` (or with nothing before it) is a `ProcfileError`; a key given twice
keeps its last value, with a warning; an empty `ports:` lists no ports, while an empty item
(`80,,443`) is an invalid port; a port is ASCII digits only (leading zeros allowed); an invalid
`http_port` is reported as `Invalid port '<x>' in http_port`.

Containerfile equivalences (a required line counts when some `ADD`/`COPY` puts the context path
at the required image path, as BuildKit would):
* keywords are case-insensitive; `\\` continues a line; comment and blank lines inside a
  continuation are dropped; heredoc bodies (`<<EOF` … `EOF`) are skipped, never parsed;
* flags (`--chown=`, `--chmod=`, `--link`, …) are ignored, except that `--from=` (the files come
  from another stage or image, not the build context) and `--parents` (the source's directories
  are recreated under the destination) make the instruction not count;
* shell form is split at whitespace with shell quoting; the JSON-array form
  `COPY ["src", "dest"]` is read as JSON, and as shell form when it is not an array of strings,
  as Docker does;
* sources are context paths: `./`, a leading `/`, repeated or trailing `/` and `.` segments do
  not matter (`..` stops at the context root);
* a destination ending in `/` (or with several sources, where Docker requires that) is a
  directory: a file lands at `<dest>/<its name>`, so the bundle (renamed to `bundle.json`)
  needs an explicit file destination, while the policy may go to `/etc/caution/`;
* a directory source copies its contents, so `.caution/secrets` or `.caution/secrets/` to
  `/etc/caution/secrets` (with or without `/`) counts, and so does an ancestor directory
  (`COPY .caution/ /etc/caution/` installs the secrets and the policy, not the bundle);
* a relative destination is resolved against the stage's `WORKDIR`; before any `WORKDIR` in a
  stage it is unknown (the base image may set one) and does not count;
* every stage counts (no tracking of which stage ends up in the image). Not recognised, so
  reported missing: wildcard sources, `$VARIABLE`s, the `# escape=` directive.
"""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

RESERVED_PORTS = range(49500, 49601)  # 49500 STEVE, 49501 aux, 49502 bootproofd, 49504 Locksmith
BINARY_WITH_LOCKSMITH = (
    "binary: cannot be combined with locksmith: true (binary: keeps only the binary's directory, "
    "so /etc/caution/ is lost and locksmithd cannot start). Remove one of them."
)

Severity = Literal["error", "warning"]


class ProcfileError(ValueError):
    """The text is not a Procfile at all (a line that is not `key: value`); names the line."""


@dataclass(frozen=True)
class Finding:
    """One line of the report: `message` is the text after `error: ` or `warning: `."""

    severity: Severity
    message: str

    @classmethod
    def error(cls, message: str) -> Finding:
        return cls("error", message)

    @classmethod
    def warning(cls, message: str) -> Finding:
        return cls("warning", message)


# --- Procfile --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    key: str
    value: str
    line: int


@dataclass(frozen=True)
class Procfile:
    """The `key: value` lines in file order; the properties read the last value of a key."""

    entries: tuple[Entry, ...]

    def get(self, key: str) -> str | None:
        for entry in reversed(self.entries):
            if entry.key == key:
                return entry.value
        return None

    @property
    def locksmith_enabled(self) -> bool:
        value = self.get("locksmith")
        return value is not None and value.isascii() and value.lower() == "true"

    @property
    def ports(self) -> tuple[int, ...]:
        """The valid listed ports, in order (the invalid ones are `check_procfile` errors)."""
        return tuple(port for _, port in _port_items(self.get("ports")) if port is not None)

    @property
    def http_port(self) -> int | None:
        value = self.get("http_port")
        return parse_port(value) if value is not None else None

    @property
    def binary(self) -> str | None:
        return self.get("binary")

    def to_text(self) -> str:
        return "".join(f"{entry.key}: {entry.value}\n" for entry in self.entries)


_DIGITS = re.compile(r"[0-9]+")


def parse_port(text: str) -> int | None:
    """An integer 1..65535 written in ASCII digits, or None."""
    if not _DIGITS.fullmatch(text):
        return None
    digits = text.lstrip("0")
    if len(digits) > 5:  # also keeps int() away from its digit limit
        return None
    port = int(digits or "0")
    return port if 1 <= port <= 65535 else None


def _port_items(value: str | None) -> list[tuple[str, int | None]]:
    if not value:
        return []
    return [(item, parse_port(item)) for item in (raw.strip() for raw in value.split(","))]


def parse_procfile(text: str) -> Procfile:
    entries: list[Entry] = []
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, colon, value = line.partition(":")
        if not colon:
            raise ProcfileError(f'line {number}: expected "key: value"')
        if not key.strip():
            raise ProcfileError(f'line {number}: no key before ":"')
        entries.append(Entry(key.strip(), value.strip(), number))
    return Procfile(tuple(entries))


def check_procfile(procfile: Procfile) -> tuple[Finding, ...]:
    """The §8 rules in the spec's order, then one warning per key given more than once."""
    findings: list[Finding] = []
    listed: list[int] = []
    for item, port in _port_items(procfile.get("ports")):
        if port is None:
            findings.append(Finding.error(f"Invalid port '{item}' in ports"))
        else:
            listed.append(port)
    for port in dict.fromkeys(listed):
        if port in RESERVED_PORTS:
            findings.append(Finding.error(
                f"Port {port} is reserved for internal enclave services. Ports 49500-49600 are "
                "reserved; choose a different application port."))
    http = procfile.get("http_port")
    if http is not None:
        port = parse_port(http)
        if port is None:
            findings.append(Finding.error(f"Invalid port '{http}' in http_port"))
        elif port not in listed:
            findings.append(Finding.error(f"http_port {port} must also be listed in ports"))
    if procfile.binary is not None and procfile.locksmith_enabled:
        findings.append(Finding.error(BINARY_WITH_LOCKSMITH))
    lines: dict[str, list[int]] = {}
    for entry in procfile.entries:
        lines.setdefault(entry.key, []).append(entry.line)
    for key, numbers in lines.items():
        if len(numbers) > 1:
            where = ", ".join(str(n) for n in numbers)
            findings.append(Finding.warning(
                f"{key} is set more than once (lines {where}); the last value is used"))
    return tuple(findings)


# --- Containerfile ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Install:
    """A line the image needs: `source` (build context) must end up at `target` (image)."""

    source: str
    target: str
    directory: bool
    consequence: str

    @property
    def line(self) -> str:
        return f"ADD {self.source} {self.target}"


BUNDLE = Install(".caution/quorum-bundle.json", "/etc/caution/bundle.json", False,
                 "locksmithd reads the quorum bundle from /etc/caution/bundle.json")
SECRETS = Install(".caution/secrets/", "/etc/caution/secrets/", True,
                  "locksmith-oneshot reads the encrypted secrets from /etc/caution/secrets/")
POLICY = Install(".caution/keymaker-pcr-policy.json", "/etc/caution/keymaker-pcr-policy.json",
                 False, "locksmithd refuses a V1 bundle without the Keymaker PCR policy at "
                        "/etc/caution/keymaker-pcr-policy.json")


def _absolute(path: str) -> str:
    """`path` from `/`, normalised (no `.`, `..` clamped at `/`, no repeated or final `/`).

    Sources are read the same way with the build context as `/`: Docker takes `/x` and `./x`
    both as the context's `x`."""
    return posixpath.normpath("/" + path.lstrip("/"))


@dataclass(frozen=True)
class ContextCopy:
    """An `ADD`/`COPY` from the build context; paths normalised, sources from the context root."""

    line: int
    sources: tuple[str, ...]
    destination: str
    into_directory: bool

    def lands_at(self, path: str, *, directory: bool) -> str | None:
        """Where the context path `path` (a file, or a directory's contents) ends up."""
        wanted = _absolute(path)
        for source in self.sources:
            if source == wanted:
                if directory or not self.into_directory:
                    return self.destination
                return posixpath.join(self.destination, posixpath.basename(wanted))
            prefix = source if source.endswith("/") else source + "/"
            if wanted.startswith(prefix):
                return posixpath.join(self.destination, wanted[len(prefix):])
        return None

    def installs(self, install: Install) -> bool:
        target = _absolute(install.target)
        return self.lands_at(install.source, directory=install.directory) == target


_KEYWORD = re.compile(r"(\S+)\s*(.*)", re.DOTALL)
_FLAG = re.compile(r"(--\S+)\s*")
_HEREDOC = re.compile(r"<<(-?)([\"']?)([A-Za-z_][A-Za-z0-9_]*)\2")
_HEREDOC_KEYWORDS = ("RUN", "COPY", "ADD")
_NOT_FROM_CONTEXT = ("--from", "--parents")


def _is_comment_or_blank(line: str) -> bool:
    stripped = line.strip()
    return not stripped or stripped.startswith("#")


def _instructions(text: str) -> Iterator[tuple[int, str, str]]:
    """(first line number, upper-case keyword, arguments) of each instruction."""
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    i = 0
    while i < len(lines):
        number, current = i + 1, lines[i]
        i += 1
        if _is_comment_or_blank(current):
            continue
        parts: list[str] = []
        while True:
            body = current.rstrip()
            if not body.endswith("\\"):
                parts.append(body)
                break
            parts.append(body[:-1])
            while i < len(lines) and _is_comment_or_blank(lines[i]):
                i += 1
            if i == len(lines):
                break
            current = lines[i]
            i += 1
        match = _KEYWORD.fullmatch("".join(parts).strip())
        if match is None:
            continue
        keyword, args = match.group(1).upper(), match.group(2)
        yield number, keyword, args
        heredocs = _HEREDOC.finditer(args) if keyword in _HEREDOC_KEYWORDS else iter(())
        for heredoc in heredocs:  # skip each body, in order
            strip_tabs, word = heredoc.group(1) == "-", heredoc.group(3)
            while i < len(lines):
                line = lines[i].lstrip("\t") if strip_tabs else lines[i]
                i += 1
                if line == word:
                    break


def _words(args: str) -> list[str] | None:
    if args.startswith("["):
        try:
            value = json.loads(args)
        except (ValueError, RecursionError):
            value = None
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
    return _shell_words(args)


def _shell_words(text: str) -> list[str] | None:
    """Words split at whitespace with shell quoting (`'…'`, `"…"`, backslash), or None if a
    quote is left open. Written out because `shlex` takes seconds on one long word."""
    words: list[str] = []
    word: list[str] = []
    in_word, quote = False, ""
    chars = iter(text)
    for char in chars:
        if quote == "'":
            if char == "'":
                quote = ""
            else:
                word.append(char)
        elif quote:
            if char == '"':
                quote = ""
            elif char == "\\":
                escaped = next(chars, "")
                word.append(escaped if escaped in '"\\$`' else char + escaped)
            else:
                word.append(char)
        elif char.isspace():
            if in_word:
                words.append("".join(word))
                word, in_word = [], False
        else:
            in_word = True
            if char in "'\"":
                quote = char
            elif char == "\\":
                word.append(next(chars, ""))
            else:
                word.append(char)
    if quote:
        return None
    if in_word:
        words.append("".join(word))
    return words


def _copy(number: int, args: str, workdir: str | None) -> ContextCopy | None:
    position = 0  # flags are matched in place: slicing per flag made long lines quadratic
    while (flag := _FLAG.match(args, position)) is not None:
        if flag.group(1).split("=", 1)[0] in _NOT_FROM_CONTEXT:
            return None
        position = flag.end()
    words = _words(args[position:].strip())
    if words is None or len(words) < 2:
        return None
    *sources, destination = words
    into_directory = destination.endswith(("/", "/.")) or destination == "."
    if len(sources) > 1 and not into_directory:
        return None  # Docker refuses several sources into a non-directory
    if not destination.startswith("/"):
        if workdir is None:
            return None
        destination = posixpath.join(workdir, destination)
    return ContextCopy(number, tuple(_absolute(s) for s in sources),
                       _absolute(destination), into_directory)


def containerfile_copies(text: str) -> tuple[ContextCopy, ...]:
    """Every `ADD`/`COPY` of the text that copies from the build context. Never raises."""
    copies: list[ContextCopy] = []
    workdir: str | None = None
    for number, keyword, args in _instructions(text):
        if keyword == "FROM":
            workdir = None
        elif keyword == "WORKDIR":
            path = args.strip()
            if path.startswith("/"):
                workdir = _absolute(path)
            elif workdir is not None and path:
                workdir = _absolute(posixpath.join(workdir, path))
        elif keyword in ("ADD", "COPY"):
            copy = _copy(number, args, workdir)
            if copy is not None:
                copies.append(copy)
    return tuple(copies)


def missing_installs(text: str, *, v1_bundle: bool) -> tuple[Install, ...]:
    copies = containerfile_copies(text)
    required = (BUNDLE, SECRETS, POLICY) if v1_bundle else (BUNDLE, SECRETS)
    return tuple(need for need in required if not any(c.installs(need) for c in copies))


def check_containerfile(text: str, name: str, *, v1_bundle: bool) -> tuple[Finding, ...]:
    """One warning per missing line (not an error: an image may install the files otherwise)."""
    return tuple(Finding.warning(f'{name} has no "{need.line}" (or COPY); {need.consequence}')
                 for need in missing_installs(text, v1_bundle=v1_bundle))
