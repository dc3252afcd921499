"""The channel listing's prefix buckets: what TAB reads instead of a 300k-name file."""

from __future__ import annotations

import os
from pathlib import Path

from condatainer.hook import pkgcache


def test_buckets_hold_each_name_under_its_first_two_characters(tmp_path: Path) -> None:
    names = sorted(["a", "ab", "abc", "b+x", "numba", "numpy", "nu", "x.y", "x_1"])
    link = tmp_path / f"key{pkgcache.BUCKETS_SUFFIX}"
    pkgcache.write_buckets(link, names)
    assert link.is_symlink()
    buckets = {p.name: p.read_text().splitlines() for p in link.iterdir()}
    assert buckets == {
        "a": ["a"], "ab": ["ab", "abc"], "b+": ["b+x"], "nu": ["nu", "numba", "numpy"],
        "x.": ["x.y"], "x_": ["x_1"],
    }  # fmt: skip
    assert sorted(n for names in buckets.values() for n in names) == names


def test_rewriting_switches_the_link_and_removes_the_old_buckets(tmp_path: Path) -> None:
    link = tmp_path / f"key{pkgcache.BUCKETS_SUFFIX}"
    pkgcache.write_buckets(link, ["numpy"])
    first = link.resolve()
    pkgcache.write_buckets(link, ["numba", "scipy"])
    assert sorted(p.name for p in link.iterdir()) == ["nu", "sc"]
    assert not first.exists()
    leftovers = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("key"))
    assert leftovers == [link.name, os.readlink(link)]
