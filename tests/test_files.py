"""Atomic publication never replaces without permission and never leaves temporary files."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from locksmith.personalities.files import write_atomic


def test_new_file_gets_requested_mode_and_no_temporary_remains(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "dir" / "out.asc"
    write_atomic(target, b"hello", mode=0o644, replace=False)
    assert target.read_bytes() == b"hello"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.asc"]


def test_existing_file_is_never_replaced_without_permission(tmp_path: Path) -> None:
    target = tmp_path / "bundle.json"
    target.write_bytes(b"old")
    with pytest.raises(FileExistsError):
        write_atomic(target, b"new", replace=False)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["bundle.json"]


def test_replacing_a_file_enforces_private_mode(tmp_path: Path) -> None:
    target = tmp_path / "key.private.asc"
    target.write_bytes(b"old")
    target.chmod(0o644)
    write_atomic(target, b"secret", replace=True)
    assert target.read_bytes() == b"secret"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
