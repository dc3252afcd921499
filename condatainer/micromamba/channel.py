"""Find the `micromamba` package in a conda channel without reading the channel's whole index.

conda-forge's `linux-64/repodata.json` is hundreds of MB; the sharded index of CEP 16 lets a
client read only what it needs:

1. `<channel>/<subdir>/repodata_shards.msgpack.zst`: zstd-compressed msgpack,
   `{"info": {"base_url", "shards_base_url", ...}, "shards": {name: sha256 (32 raw bytes)}}`;
2. the one shard `<shards_base_url><sha256 hex>.msgpack.zst`: `{"packages": {filename: record},
   "packages.conda": {...}, "removed": [...]}` with each record's `sha256`/`md5` as raw bytes.
   A shard is named after the sha256 of its (compressed) bytes, which is checked.

Both URLs in `info` are relative to the index's own URL (an empty one, or ".", "./", "/", mean
its directory, as in libmamba).  Only where a channel has no sharded index (404, or no such file
on a `file://` mirror) is `<subdir>/repodata.json` read instead (CEP 15's `info.base_url`
honoured).  Any other failure (refused, timed out, bad TLS) is an error, not a reason to fall
back to the big file.

Of the records, those whose version lies in the pinned series (`2` = 2.*, `2.3` = 2.3.*) and is
a plain release (numbers and dots) are candidates; the newest wins (then the highest build
number, then `.conda` over `.tar.bz2`).

zstd comes from the `zstd` program condatainer already uses for `overlay pack` (through
`runner`, decompressing file to file); msgpack from the PyPI package `msgpack` (maintained by the
msgpack project, pure-Python fallback, no dependencies), since the standard library has neither.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

from condatainer import runner
from condatainer.micromamba.fetch import Damaged, Fetcher, NotFound

PACKAGE = "micromamba"
SHARD_INDEX = "repodata_shards.msgpack.zst"
REPODATA = "repodata.json"
_RELEASE = re.compile(r"^\d+(?:\.\d+)*$")
_SAME_DIR = ("", ".", "./", "/")


class ChannelError(Exception):
    """The channel cannot provide micromamba; `str()` is one line saying why."""


@dataclass(frozen=True)
class Record:
    """One micromamba package file the channel offers."""

    filename: str
    url: str
    version: str
    build: str
    build_number: int
    sha256: str  # hex
    size: int | None
    subdir: str

    @property
    def version_key(self) -> tuple[int, ...]:
        return tuple(int(part) for part in self.version.split("."))

    def rank(self) -> tuple[tuple[int, ...], int, bool]:
        return (self.version_key, self.build_number, self.filename.endswith(".conda"))


@dataclass(frozen=True)
class Choice:
    """The record chosen, and from which index (for messages and `micromamba info`)."""

    record: Record
    index_url: str
    sharded: bool


def in_series(version: str, series: str) -> bool:
    """Whether a plain release `version` lies in `series` ("2" holds 2.3.1; "2.3" holds 2.3.1)."""
    if not _RELEASE.match(version):
        return False
    want = series.split(".")
    return version.split(".")[: len(want)] == want


def find(channel: str, subdir: str, series: str, fetcher: Fetcher, work: Path) -> Choice:
    """The newest micromamba of `series` for `subdir` in `channel` (a URL without trailing /).

    `work` is a private directory for the decompressed index files.  Raises ChannelError when
    the channel has no such package, FetchError when it cannot be read.
    """
    base = f"{channel.rstrip('/')}/{subdir}/"
    index_url = base + SHARD_INDEX
    try:
        raw_index = fetcher.get(index_url)
    except NotFound:
        repodata_url = base + REPODATA
        try:
            raw = fetcher.get(repodata_url)
        except NotFound:
            raise ChannelError(
                f"{channel} has no {subdir} index ({SHARD_INDEX} or {REPODATA}):"
                " is it a conda channel?"
            ) from None
        records = _from_repodata(raw, repodata_url, subdir)
        return Choice(_choose(records, channel, subdir, series), repodata_url, sharded=False)
    records = _from_shards(raw_index, index_url, subdir, fetcher, work)
    return Choice(_choose(records, channel, subdir, series), index_url, sharded=True)


def _from_shards(
    raw_index: bytes, index_url: str, subdir: str, fetcher: Fetcher, work: Path
) -> list[Record]:
    index = _mapping(_unpack(raw_index, work, "index"), index_url)
    version = index.get("version", 1)  # rattler omits it; CEP 16 defines version 1
    if version != 1:
        raise ChannelError(f"{index_url}: sharded index version {version!r} is not supported")
    info = index.get("info") or {}
    shards = index.get("shards")
    if not isinstance(info, Mapping) or not isinstance(shards, Mapping):
        raise ChannelError(f"{index_url}: not a sharded index (no info/shards mappings)")
    digest = shards.get(PACKAGE)
    if digest is None:
        return []
    hex_digest = digest.hex() if isinstance(digest, bytes) else str(digest).lower()
    if not re.fullmatch(r"[0-9a-f]{64}", hex_digest):
        raise ChannelError(f"{index_url}: the {PACKAGE} entry is not a sha256")
    shard_url = _join(index_url, str(info.get("shards_base_url") or ""), directory=True)
    shard_url += f"{hex_digest}.msgpack.zst"
    raw_shard = fetcher.get(shard_url)
    if hashlib.sha256(raw_shard).hexdigest() != hex_digest:
        raise Damaged(shard_url, "its content does not match its sha256 name")
    shard = _mapping(_unpack(raw_shard, work, "shard"), shard_url)
    packages_url = _join(index_url, str(info.get("base_url") or ""), directory=True)
    return _records(shard, packages_url, subdir, shard_url)


def _from_repodata(raw: bytes, url: str, subdir: str) -> list[Record]:
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise ChannelError(f"{url}: not valid JSON ({exc})") from None
    data = _mapping(data, url)
    info = data.get("info") or {}
    base = info.get("base_url") if isinstance(info, Mapping) else None
    packages_url = _join(url, str(base or ""), directory=True)
    return _records(data, packages_url, subdir, url)


def _records(data: Mapping[str, Any], packages_url: str, subdir: str, where: str) -> list[Record]:
    removed = set(data.get("removed") or ())
    found: list[Record] = []
    for key in ("packages", "packages.conda"):
        entries = data.get(key) or {}
        if not isinstance(entries, Mapping):
            raise ChannelError(f"{where}: {key!r} is not a mapping")
        for filename, entry in entries.items():
            if filename in removed or not isinstance(entry, Mapping):
                continue
            if entry.get("name") != PACKAGE:
                continue
            record = _record(str(filename), entry, packages_url, subdir)
            if record is not None:
                found.append(record)
    return found


def _record(
    filename: str, entry: Mapping[str, Any], packages_url: str, subdir: str
) -> Record | None:
    sha = entry.get("sha256")
    sha_hex = sha.hex() if isinstance(sha, bytes) else str(sha or "").lower()
    if not re.fullmatch(r"[0-9a-f]{64}", sha_hex) or "/" in filename:
        return None  # without a checksum a package is never used
    size = entry.get("size")
    build_number = entry.get("build_number", 0)
    return Record(
        filename=filename,
        url=packages_url + filename,
        version=str(entry.get("version", "")),
        build=str(entry.get("build", "")),
        build_number=build_number if isinstance(build_number, int) else 0,
        sha256=sha_hex,
        size=size if isinstance(size, int) and not isinstance(size, bool) else None,
        subdir=str(entry.get("subdir") or subdir),
    )


def _choose(records: Iterable[Record], channel: str, subdir: str, series: str) -> Record:
    records = [r for r in records if r.filename.endswith((".conda", ".tar.bz2"))]
    if not records:
        raise ChannelError(f"{channel} has no {PACKAGE} package for {subdir}")
    fitting = [r for r in records if in_series(r.version, series)]
    if not fitting:
        versions = sorted({r.version for r in records}, key=_loose_key, reverse=True)
        shown = ", ".join(versions[:5]) + (", ..." if len(versions) > 5 else "")
        raise ChannelError(f"{channel} has no {PACKAGE} {series}.* for {subdir} (it has {shown})")
    return max(fitting, key=Record.rank)


def _loose_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", version))


def _join(base: str, relative: str, *, directory: bool) -> str:
    """`relative` resolved against `base` (a file's URL); a directory URL ends with "/"."""
    url = urljoin(base, "./") if relative in _SAME_DIR else urljoin(base, relative)
    if directory and not url.endswith("/"):
        url += "/"
    return url


def _mapping(data: object, where: str) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise ChannelError(f"{where}: expected a mapping, found a {type(data).__name__}")
    return data


def _unpack(compressed: bytes, work: Path, name: str) -> object:
    """Decompress (zstd) and decode (msgpack) one index file."""
    import msgpack  # imported only when a channel is actually read

    packed = work / f"{name}.msgpack.zst"
    plain = work / f"{name}.msgpack"
    packed.write_bytes(compressed)
    decompress_zstd(packed, plain)
    try:
        return msgpack.unpackb(plain.read_bytes(), raw=False, strict_map_key=False)
    except (ValueError, msgpack.UnpackException) as exc:
        raise ChannelError(f"{name} is not valid msgpack ({exc})") from None
    finally:
        packed.unlink(missing_ok=True)
        plain.unlink(missing_ok=True)


def decompress_zstd(src: Path, dst: Path) -> None:
    """`zstd -d` from file to file; ChannelError with zstd's own words when it fails."""
    res = runner.run(["zstd", "-d", "-q", "-f", str(src), "-o", str(dst)])
    if not res.ok:
        lines = [line for line in res.stderr.strip().splitlines() if line.strip()]
        why = lines[-1] if lines else f"exit status {res.returncode}"
        if "No space left" in why:
            raise OSError(28, "No space left on device", str(dst))
        raise ChannelError(f"{src.name}: zstd cannot decompress it ({why})")
