"""atomic.replace: readers see the old file or the new one; a failure leaves the old one and
no temporary file; the mode is kept, given, or the umask's."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from condatainer import atomic


def test_new_file_gets_the_umask_mode(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        atomic.replace(tmp_path / "f", "text\n")
    finally:
        os.umask(old)
    assert (tmp_path / "f").read_text() == "text\n"
    assert (tmp_path / "f").stat().st_mode & 0o777 == 0o640


def test_existing_mode_is_kept_unless_given(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_text("old")
    f.chmod(0o600)
    atomic.replace(f, b"new", durable=True)
    assert f.read_bytes() == b"new" and f.stat().st_mode & 0o777 == 0o600
    atomic.replace(f, "x", 0o755)
    assert f.stat().st_mode & 0o777 == 0o755


def test_surrogates_are_written_as_the_bytes_they_were(tmp_path: Path) -> None:
    name = b"caf\xe9".decode("utf-8", "surrogateescape")  # a Latin-1 file name
    atomic.replace(tmp_path / "f", f"image={name}\n")
    assert (tmp_path / "f").read_bytes() == b"image=caf\xe9\n"


def test_a_failure_leaves_the_old_file_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = tmp_path / "d"
    d.mkdir()
    f = d / "f"
    f.write_text("old")

    def interrupted(src: object, dst: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        atomic.replace(f, "new")
    assert f.read_text() == "old"
    assert os.listdir(d) == ["f"]


@pytest.mark.root
def test_owner_is_given_to_the_new_file(tmp_path: Path) -> None:
    atomic.replace(tmp_path / "f", "x", 0o4755, owner=(1234, 5678))
    st = (tmp_path / "f").stat()
    assert (st.st_uid, st.st_gid) == (1234, 5678)
    assert st.st_mode & 0o7777 == 0o4755  # set after the chown, which would clear it


def test_missing_directory_is_a_file_not_found_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        atomic.replace(tmp_path / "missing" / "f", "x")
