"""Finding micromamba in a channel's index: hand-made CEP 16 indexes and repodata.json files,
for what py-rattler's indexer does not write (another base_url or shards_base_url, removed
files, hex checksums, a damaged shard), read over file:// with the real zstd and msgpack."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

import msgpack
import pytest

from condatainer.micromamba.channel import ChannelError, find, in_series
from condatainer.micromamba.fetch import Damaged, Fetcher

SHA = "ab" * 32


def record(version: str, build_number: int = 0, sha: object = bytes.fromhex(SHA)) -> dict[str, Any]:
    return {
        "name": "micromamba",
        "version": version,
        "build": str(build_number),
        "build_number": build_number,
        "sha256": sha,
        "size": 10,
        "subdir": "linux-64",
    }


def zstd(data: bytes) -> bytes:
    return subprocess.run(["zstd", "-q", "-c"], input=data, capture_output=True, check=True).stdout


def sharded(
    root: Path,
    shard: dict[str, Any],
    *,
    info: dict[str, Any] | None = None,
    shards_dir: str = "shards",
) -> str:
    """A channel at `root` whose linux-64 has only a sharded index; returns its URL."""
    subdir = root / "linux-64"
    (subdir / shards_dir).mkdir(parents=True, exist_ok=True)
    packed = zstd(msgpack.packb(shard))
    digest = hashlib.sha256(packed).digest()
    (subdir / shards_dir / f"{digest.hex()}.msgpack.zst").write_bytes(packed)
    index = {
        "version": 1,
        "info": {"subdir": "linux-64", "base_url": "", "shards_base_url": f"./{shards_dir}/"}
        | (info or {}),
        "shards": {"micromamba": digest, "other": b"\0" * 32},
    }
    (subdir / "repodata_shards.msgpack.zst").write_bytes(zstd(msgpack.packb(index)))
    return f"file://{root}"


def choose(url: str, tmp_path: Path, series: str = "2") -> Any:
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    return find(url, "linux-64", series, Fetcher(), work)


@pytest.mark.parametrize(
    ("version", "series", "fits"),
    [
        ("2.3.3", "2", True),
        ("2.3.3", "2.3", True),
        ("2.3.3", "2.3.3", True),
        ("2.30.1", "2.3", False),
        ("1.5.10", "2", False),
        ("2.0.0rc1", "2", False),  # only plain releases
        ("12.0", "1", False),
    ],
)
def test_series(version: str, series: str, fits: bool) -> None:
    assert in_series(version, series) is fits


def test_newest_of_the_series_then_build_number_then_conda(tmp_path: Path) -> None:
    shard = {
        "packages": {
            "micromamba-2.3.1-0.tar.bz2": record("2.3.1"),
            "micromamba-2.3.1-1.tar.bz2": record("2.3.1", 1),
            "micromamba-3.0.0-0.tar.bz2": record("3.0.0"),
        },
        "packages.conda": {"micromamba-2.3.1-1.conda": record("2.3.1", 1)},
        "removed": [],
    }
    choice = choose(sharded(tmp_path / "c", shard), tmp_path)
    assert choice.sharded
    assert choice.record.filename == "micromamba-2.3.1-1.conda"
    assert choice.record.sha256 == SHA
    assert choice.record.url == f"file://{tmp_path}/c/linux-64/micromamba-2.3.1-1.conda"


def test_removed_files_and_records_without_a_checksum_are_skipped(tmp_path: Path) -> None:
    shard = {
        "packages": {
            "micromamba-2.9.0-0.tar.bz2": record("2.9.0"),  # removed
            "micromamba-2.8.0-0.tar.bz2": record("2.8.0", sha=None),  # no sha256
            "micromamba-2.1.0-0.tar.bz2": record("2.1.0", sha=SHA),  # hex text is fine too
        },
        "removed": ["micromamba-2.9.0-0.tar.bz2"],
    }
    choice = choose(sharded(tmp_path / "c", shard), tmp_path)
    assert choice.record.version == "2.1.0"
    assert choice.record.sha256 == SHA


@pytest.mark.parametrize(
    ("base_url", "expected"),
    [
        ("", "{root}/linux-64/"),
        ("/", "{root}/linux-64/"),  # libmamba's reading: the index's own directory
        ("../pkgs/", "{root}/pkgs/"),
        ("https://mirror.example/cf/linux-64/", "https://mirror.example/cf/linux-64/"),
    ],
)
def test_base_url_is_relative_to_the_index(tmp_path: Path, base_url: str, expected: str) -> None:
    shard = {"packages": {"micromamba-2.1.0-0.tar.bz2": record("2.1.0")}}
    url = sharded(tmp_path / "c", shard, info={"base_url": base_url})
    want = expected.format(root=f"file://{tmp_path}/c") + "micromamba-2.1.0-0.tar.bz2"
    assert choose(url, tmp_path).record.url == want


def test_shards_may_live_elsewhere(tmp_path: Path) -> None:
    shard = {"packages": {"micromamba-2.1.0-0.tar.bz2": record("2.1.0")}}
    url = sharded(tmp_path / "c", shard, shards_dir="by-hash")
    assert choose(url, tmp_path).record.version == "2.1.0"


def test_a_damaged_shard_is_refused(tmp_path: Path) -> None:
    shard = {"packages": {"micromamba-2.1.0-0.tar.bz2": record("2.1.0")}}
    url = sharded(tmp_path / "c", shard)
    (stored,) = (tmp_path / "c" / "linux-64" / "shards").iterdir()
    stored.write_bytes(zstd(msgpack.packb({"packages": {}})))
    with pytest.raises(Damaged, match="does not match its sha256 name"):
        choose(url, tmp_path)


def test_an_index_without_micromamba(tmp_path: Path) -> None:
    url = sharded(tmp_path / "c", {"packages": {}})
    index = tmp_path / "c" / "linux-64" / "repodata_shards.msgpack.zst"
    index.write_bytes(zstd(msgpack.packb({"info": {}, "shards": {}})))
    with pytest.raises(ChannelError, match="has no micromamba package for linux-64"):
        choose(url, tmp_path)


def test_an_unknown_index_version_is_refused(tmp_path: Path) -> None:
    url = sharded(tmp_path / "c", {"packages": {}})
    index = tmp_path / "c" / "linux-64" / "repodata_shards.msgpack.zst"
    index.write_bytes(zstd(msgpack.packb({"version": 2, "info": {}, "shards": {}})))
    with pytest.raises(ChannelError, match="version 2 is not supported"):
        choose(url, tmp_path)


def test_garbage_instead_of_an_index(tmp_path: Path) -> None:
    (tmp_path / "c" / "linux-64").mkdir(parents=True)
    (tmp_path / "c" / "linux-64" / "repodata_shards.msgpack.zst").write_bytes(b"not zstd")
    with pytest.raises(ChannelError, match="zstd cannot decompress it"):
        choose(f"file://{tmp_path}/c", tmp_path)


def test_repodata_json_with_a_base_url(tmp_path: Path) -> None:
    subdir = tmp_path / "c" / "linux-64"
    subdir.mkdir(parents=True)
    repodata = {
        "info": {"subdir": "linux-64", "base_url": "https://pkgs.example/linux-64/"},
        "packages": {"micromamba-2.2.0-0.tar.bz2": record("2.2.0", sha=SHA)},
        "packages.conda": {"other-1-0.conda": {"name": "other", "version": "1", "sha256": SHA}},
        "repodata_version": 2,
    }
    (subdir / "repodata.json").write_text(json.dumps(repodata))
    choice = choose(f"file://{tmp_path}/c", tmp_path)
    assert not choice.sharded
    assert choice.record.url == "https://pkgs.example/linux-64/micromamba-2.2.0-0.tar.bz2"


def test_not_a_channel(tmp_path: Path) -> None:
    with pytest.raises(ChannelError, match="is it a conda channel"):
        choose(f"file://{tmp_path}/empty", tmp_path)
