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


def test_channel_names_read_the_prefix_bucket(tmp_path: Path) -> None:
    image = tmp_path / "env.img"
    names = sorted(["numba", "numpy", "nu", "python", "pytest", "scipy"])
    listing = pkgcache.channel_file(image)
    listing.parent.mkdir(parents=True)
    listing.write_text("".join(f"{n}\n" for n in names))
    assert pkgcache.channel_names(image, "nu") == ["nu", "numba", "numpy"]  # no buckets yet
    buckets = listing.with_name(listing.name.replace(pkgcache.CHANNEL_SUFFIX, "")
                                + pkgcache.BUCKETS_SUFFIX)  # fmt: skip
    pkgcache.write_buckets(buckets, names)
    listing.write_text("")  # the buckets alone must answer a prefix of two or more
    assert pkgcache.channel_names(image, "num") == ["numba", "numpy"]
    assert pkgcache.channel_names(image, "py") == ["pytest", "python"]
    assert pkgcache.channel_names(image, "zz") == []
    assert pkgcache.channel_names(image, "../x") == []
    listing.write_text("".join(f"{n}\n" for n in names))
    assert pkgcache.channel_names(image, "p") == ["pytest", "python"]  # one char: the listing
