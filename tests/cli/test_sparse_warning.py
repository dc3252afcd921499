"""A sparse image larger than the free space of its disk is made (that is what sparse is for),
with a notice naming both numbers -- at creation and when it grows.  On a small tmpfs, so the
free space is known."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support import cnt, ok

pytestmark = pytest.mark.root


def test_sparse_larger_than_the_free_space_warns(tmpfs: Callable[[str], Path]) -> None:
    disk = tmpfs("96M")
    res = ok(cnt("o", "big.img", "-s", "1G", "--sparse", cwd=disk))
    notes = [line for line in res.stderr.splitlines() if "is sparse and may grow" in line]
    assert len(notes) == 1, res.stderr
    assert notes[0].startswith("condatainer: note: big.img is sparse and may grow to 1G, but only")
    assert f"free on the filesystem of {disk}" in notes[0]
    assert (disk / "big.img").exists()

    res = ok(cnt("overlay", "resize", "big.img", "-s", "2G", cwd=disk))
    assert "big.img is sparse and may grow to 2G, but only" in res.stderr, res.stderr


def test_no_warning_when_it_fits_or_is_allocated(tmpfs: Callable[[str], Path]) -> None:
    disk = tmpfs("512M")
    res = ok(cnt("o", "small.img", "-s", "128M", "--sparse", cwd=disk))
    assert "may grow" not in res.stderr
    res = ok(cnt("o", "full.img", "-s", "128M", cwd=disk))
    assert "may grow" not in res.stderr
