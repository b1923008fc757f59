"""The `.env` parser of `caution secret encrypt` (cli.md §6).

Values are secrets that end up encrypted byte-for-byte, so the parser is deliberately small and
literal: POSIX-shell quoting for the first word of the value, quoted values may span lines
(docker compose style), and nothing is expanded. Anything that would silently lose data (an
unterminated quote, a trailing backslash) is an error instead of a truncated value — the
reference's silent `''` for an unterminated quote is the data-loss bug this replaces.

Values never appear in warnings, errors or `repr`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from locksmith.core.app.shellquote import is_env_key

__all__ = ["EnvAssignment", "EnvFileError", "EnvParse", "is_env_key", "parse_env"]

_BLANK = " \t"
_DOUBLE_ESCAPABLE = '$`"\\'


class EnvFileError(ValueError):
    """A fatal parse error; the message is the exact cli.md §6 text."""


@dataclass(frozen=True)
class EnvAssignment:
    """One distinct key: its last assigned value and the line of that assignment."""

    key: str
    value: str = field(repr=False)
    line: int


@dataclass(frozen=True)
class EnvParse:
    """Assignments in order of first appearance (last value wins) and warnings in file order."""

    assignments: tuple[EnvAssignment, ...]
    warnings: tuple[str, ...]

    def as_dict(self) -> dict[str, str]:
        return {a.key: a.value for a in self.assignments}


class _Scanner:
    def __init__(self, text: str, path: str) -> None:
        self.text = text
        self.path = path
        self.pos = 0
        self.line = 1  # physical line number of self.pos

    def advance_to(self, end: int) -> None:
        self.line += self.text.count("\n", self.pos, end)
        self.pos = end

    def line_end(self) -> int:
        end = self.text.find("\n", self.pos)
        return len(self.text) if end < 0 else end

    def read_word(self, start_line: int) -> tuple[str, bool]:
        """Read one shell word from self.pos; returns (value, any quoting used)."""
        text, p, quoted = self.text, self.pos, False
        out: list[str] = []
        if p < len(text) and text[p] == "#":
            return "", False  # `#` opening the word is a comment: empty value
        while p < len(text):
            c = text[p]
            if c in " \t\n":
                break
            if c == "'":
                quoted = True
                close = text.find("'", p + 1)
                if close < 0:
                    raise EnvFileError(f"{self.path}:{start_line}: unterminated single quote")
                out.append(text[p + 1 : close])
                p = close + 1
            elif c == '"':
                quoted = True
                p = self._read_double(p + 1, out, start_line)
            elif c == "\\":
                if p + 1 >= len(text):
                    raise EnvFileError(f"{self.path}:{start_line}: dangling backslash")
                if text[p + 1] != "\n":  # backslash-newline vanishes; the word goes on
                    out.append(text[p + 1])
                p += 2
            else:
                out.append(c)
                p += 1
        self.advance_to(p)
        return "".join(out), quoted

    def _read_double(self, p: int, out: list[str], start_line: int) -> int:
        text = self.text
        while True:
            if p >= len(text):
                raise EnvFileError(f"{self.path}:{start_line}: unterminated double quote")
            c = text[p]
            if c == '"':
                return p + 1
            if c == "\\" and p + 1 < len(text):
                following = text[p + 1]
                if following in _DOUBLE_ESCAPABLE:
                    out.append(following)
                    p += 2
                    continue
                if following == "\n":
                    p += 2
                    continue
            out.append(c)  # any other backslash is literal
            p += 1


def parse_env(data: str | bytes, path: str) -> EnvParse:
    """Parse `.env` content; `path` is used only to word messages."""
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise EnvFileError(f"{path}: not valid UTF-8") from None
    else:
        text = data
    text = text.removeprefix("\ufeff").replace("\r\n", "\n")

    scanner = _Scanner(text, path)
    values: dict[str, EnvAssignment] = {}
    warnings: list[str] = []
    repeated: set[str] = set()
    while scanner.pos < len(text):
        line_no = scanner.line
        start, end = scanner.pos, scanner.line_end()
        line = text[start:end]
        body = line.lstrip(_BLANK)
        if body == "" or body.startswith("#"):
            scanner.advance_to(min(end + 1, len(text)))
            continue
        if body.startswith("export") and body[6:7] in ("\t", " "):
            body = body[6:].lstrip(_BLANK)
        offset = start + len(line) - len(body)
        equals = text.find("=", offset, end)
        if equals < 0:
            warnings.append(f"{path}:{line_no}: ignored (no '=')")
            scanner.advance_to(min(end + 1, len(text)))
            continue
        key = text[offset:equals].strip(_BLANK)
        if not is_env_key(key):
            warnings.append(f"{path}:{line_no}: ignored (invalid variable name)")
            scanner.advance_to(min(end + 1, len(text)))
            continue

        value_start = equals + 1
        while value_start < end and text[value_start] in _BLANK:
            value_start += 1
        scanner.pos = value_start
        value, quoted = scanner.read_word(line_no)
        tail_end = scanner.line_end()
        tail = text[scanner.pos : tail_end].lstrip(_BLANK)
        if not quoted and tail and not tail.startswith("#"):
            warnings.append(
                f"{path}:{line_no}: {key}: unquoted value stops at the first space; "
                "quote it to keep the rest"
            )
        scanner.advance_to(min(tail_end + 1, len(text)))

        if key in values and key not in repeated:  # one warning per key, at its 2nd assignment
            repeated.add(key)
            warnings.append(f"{path}: {key} assigned more than once; using the last value")
        values[key] = EnvAssignment(key, value, line_no)  # dict keeps first-appearance order
    return EnvParse(assignments=tuple(values.values()), warnings=tuple(warnings))
