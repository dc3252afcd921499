"""memo's stamps and entry names: the same in every process, and telling edits apart."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from condatainer import memo


def test_entry_names_are_the_same_in_another_process() -> None:
    words = ["/a/project", "-o", "env.img", "\u00e9\udc80"]
    here = memo.entry_name(words, ".plan")
    code = f"from condatainer import memo; print(memo.entry_name({words!r}, '.plan'))"
    for seed in ("0", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        ).stdout.strip()
        assert out == here


@given(st.binary(max_size=64), st.binary(max_size=64))
def test_different_data_has_different_digests(a: bytes, b: bytes) -> None:
    if a != b:
        assert memo._digest(a) != memo._digest(b)


def test_swapped_pieces_count() -> None:
    a, b = bytes(range(61)), bytes(range(100, 161))
    assert memo._digest(a + b) != memo._digest(b + a)
    a, b = b"x" * 8, b"y" * 8
    assert memo._digest(a + b) != memo._digest(b + a)


def test_zero_bytes_at_either_end_count() -> None:
    assert len({memo._digest(d) for d in (b"a", b"\0a", b"a\0", b"", b"\0")}) == 5
    assert memo.entry_name(["a", ""], ".x") != memo.entry_name(["a"], ".x")


def test_an_edit_that_keeps_size_and_times_changes_the_stamp(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("size: 10G\n")
    before = memo.stamp(str(path))
    st = path.stat()
    path.write_text("size: 20G\n")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    after = memo.stamp(str(path))
    assert before is not None and after is not None
    assert after[2:4] == before[2:4]  # size and mtime as they were
    assert after[5] != before[5]
    assert not memo.unchanged(((str(path), False, before),))
    assert memo.unchanged(((str(path), False, after),))
