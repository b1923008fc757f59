"""`--pin-file` (cli.md §5.3): the first line of a file only its owner can read."""

from __future__ import annotations

from pathlib import Path

import pytest

from locksmith.personalities.caution.card.holder import read_pin_file
from locksmith.personalities.caution.ui import CliError


def _pin_file(tmp_path: Path, content: bytes, mode: int = 0o600) -> Path:
    path = tmp_path / "pin"
    path.write_bytes(content)
    path.chmod(mode)
    return path


@pytest.mark.parametrize("content", [b"123456", b"123456\n", b"123456\r\n", b"123456\nrest\n"])
def test_the_card_pin_is_the_first_line_without_its_line_end(tmp_path: Path, content: bytes) -> None:
    assert read_pin_file(_pin_file(tmp_path, content)) == bytearray(b"123456")


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644])
def test_a_card_pin_file_readable_by_group_or_others_is_refused(tmp_path: Path, mode: int) -> None:
    path = _pin_file(tmp_path, b"123456\n", mode)
    with pytest.raises(CliError) as caught:
        read_pin_file(path)
    assert str(caught.value) == f"{path} must not be readable by group or others"


def test_a_card_pin_file_that_is_a_symlink_or_missing_is_refused(tmp_path: Path) -> None:
    target = _pin_file(tmp_path, b"123456\n")
    link = tmp_path / "link"
    link.symlink_to(target)
    with pytest.raises(CliError, match="cannot read PIN file"):
        read_pin_file(link)
    with pytest.raises(CliError, match="cannot read PIN file"):
        read_pin_file(tmp_path / "absent")


def test_a_card_pin_file_that_is_a_directory_is_refused(tmp_path: Path) -> None:
    directory = tmp_path / "dir"
    directory.mkdir(mode=0o700)
    with pytest.raises(CliError, match="not a regular file|cannot read PIN file"):
        read_pin_file(directory)
