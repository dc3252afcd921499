"""Cached package names of an image, so `mm-* <TAB>` never starts a program.

Per image (`cache_key`: a hash of its real path, which also names its shim directory):

    <cache>/pkgs/<key>.txt           installed names     (write_installed: with the shims at
                                                          activation, after mm operations)
    <cache>/pkgs/<key>.channel.txt   channel names       (refresh)

Installed names come from `upper/ext3/env/conda-meta/*.json` (`NAME-VERSION-BUILD.json`).

Decisions, and why:

- **The channel file sits next to the installed one, named after it.**  The hook knows the
  installed listing's path once an image is active (`_cnt_pkgs`), so the host `mm-*`
  completion finds this one with parameter expansion alone (`${_cnt_pkgs%.txt}.channel.txt`),
  without a fork, a hash in shell, or a second cache key scheme.
- **Channel names come from micromamba's repodata cache** `upper/ext3/env/pkgs/cache/*.json`
  (`*.state.json`, and conda's `*.info.json`, skipped): the `name` fields of the records
  in `packages` and `packages.conda`.  A conda-forge repodata file is hundreds of MB, so it is
  re-read only when the set of cache files (name, inode, size) changed since the last refresh
  (`<key>.channel.stamp`); TAB itself never reads the image for channel names.
- **Only names made of `[A-Za-z0-9_.+-]` are written, sorted in byte order, one per line.**
  The shell side binary-searches the sorted file, and an image may be someone else's: its
  contents are data that must never become shell syntax or a terminal escape sequence on the
  user's screen.
- **The channel listing is also split into prefix buckets** (`<key>.channel.d/nu`: every name
  starting with `nu`), so `mm-install nu<TAB>` reads a few hundred names of a 300k-name
  channel, not all of them (`write_buckets`).
- Writes are atomic (temporary file + rename).  Reading never writes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from condatainer import atomic, config
from condatainer.image import layout
from condatainer.image.layout import PathLike

if TYPE_CHECKING:  # pragma: no cover - typing only; e2fs is imported when an image is listed
    from condatainer.image import e2fs

#: Suffix of the channel listing, replacing the installed listing's `.txt` (see above).
CHANNEL_SUFFIX = ".channel.txt"
#: Suffix of the channel listing's prefix buckets (a symlink to the current directory of them).
BUCKETS_SUFFIX = ".channel.d"
BUCKET_CHARS = 2
_STAMP_SUFFIX = ".channel.stamp"

_SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*\Z")


def cache_key(image: PathLike) -> str:
    """The cache name of an image: sha256 of its real path (32 hex digits)."""
    real = os.path.realpath(os.fspath(image))
    return hashlib.sha256(os.fsencode(real)).hexdigest()[:32]


def installed_file(image: PathLike) -> Path:
    """The cached list of installed package names of `image`."""
    return config.paths()["cache"] / "pkgs" / f"{cache_key(image)}.txt"


def package_names(entries: Iterable[e2fs.Entry]) -> list[str]:
    """Package names from a conda-meta listing: `NAME-VERSION-BUILD.json` -> NAME, sorted."""
    names: set[str] = set()
    for entry in entries:
        file = entry.name
        if not file.endswith(".json"):
            continue
        parts = file[: -len(".json")].rsplit("-", 2)
        if len(parts) == 3 and all(parts):
            names.add(parts[0])
    return safe_names(names)  # plain names only, byte order: TAB bisects the file


def write_installed(image: PathLike) -> Path:
    """Write the installed-package cache of `image` from its conda-meta; return the file."""
    path = installed_file(image)
    path.parent.mkdir(parents=True, exist_ok=True)
    from condatainer.image import e2fs

    names = package_names(e2fs.try_list_dir(image, layout.META_DIR) or [])
    atomic.replace(path, "".join(f"{n}\n" for n in names), 0o644)
    return path


def _sibling(image: str | os.PathLike[str], suffix: str) -> Path:
    installed = installed_file(image)
    return installed.with_name(installed.name[: -len(".txt")] + suffix)


def channel_file(image: str | os.PathLike[str]) -> Path:
    """The cached listing of package names in `image`'s repodata cache."""
    return _sibling(image, CHANNEL_SUFFIX)


def read(path: Path) -> list[str]:
    """The names in a listing file; [] when it does not exist or cannot be read."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    return [line for line in text.splitlines() if line]


def safe_names(names: Iterable[str]) -> list[str]:
    """Sorted (byte order) unique names, without anything that is not a plain package name."""
    return sorted({n for n in names if _SAFE_NAME.match(n)})


def repodata_names(data: bytes) -> list[str]:
    """Package names of one repodata.json; [] when it is not one."""
    try:
        doc = json.loads(data)
    except ValueError:
        return []
    if not isinstance(doc, dict):
        return []
    names: set[str] = set()
    for key in ("packages", "packages.conda"):
        records = doc.get(key)
        if isinstance(records, dict):
            for record in records.values():
                if isinstance(record, dict) and isinstance(record.get("name"), str):
                    names.add(record["name"])
    return safe_names(names)


def is_repodata(filename: str) -> bool:
    """A repodata file of micromamba's cache (not its `.state.json` / `.info.json` sidecar)."""
    return (
        filename.endswith(".json")
        and not filename.endswith(".state.json")
        and not filename.endswith(".info.json")
    )


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic.replace(path, text, 0o644)


def refresh(image: str | os.PathLike[str]) -> Path:
    """Rewrite the channel listing of `image` from its repodata cache; return the file.

    Reads the image with debugfs (no mount).  Raises ImageError when the image cannot be
    read; callers refreshing after an mm operation should report that as a note, since a
    stale listing only costs TAB accuracy.
    """
    from condatainer.image import e2fs

    entries = e2fs.try_list_dir(image, layout.REPODATA_DIR) or []
    files = sorted((e for e in entries if e.is_file and is_repodata(e.name)), key=lambda e: e.name)
    stamp = "".join(f"{e.name} {e.inode} {e.size}\n" for e in files)
    target = channel_file(image)
    stamp_file = _sibling(image, _STAMP_SUFFIX)
    if target.exists() and read_stamp(stamp_file) == stamp:
        return target
    names: set[str] = set()
    for entry in files:
        names.update(repodata_names(e2fs.read_inode(image, entry.inode)))
    ordered = sorted(names)
    _write(target, "".join(f"{n}\n" for n in ordered))
    write_buckets(_sibling(image, BUCKETS_SUFFIX), ordered)
    _write(stamp_file, stamp)
    return target


def write_buckets(link: Path, names: list[str]) -> None:
    """Split sorted `names` into one file per first BUCKET_CHARS characters, under `link`.

    TAB in bash cannot seek in a file without starting a program, and reading a 300k-name
    listing costs it half a second; with buckets it reads only the names sharing the typed
    prefix's first two characters.  The buckets of one listing are a directory of their own;
    `link` (a symlink) is switched to a new one atomically, so a TAB never sees half of them.
    """
    import glob  # only when a listing changes: kept off the cd path
    import itertools
    import shutil

    link.parent.mkdir(parents=True, exist_ok=True)
    fresh = link.with_name(f"{link.name}.{os.getpid()}.{os.urandom(4).hex()}")
    fresh.mkdir(mode=0o755)
    for key, group in itertools.groupby(names, key=lambda n: n[:BUCKET_CHARS]):
        (fresh / key).write_text("".join(f"{n}\n" for n in group), encoding="utf-8")
    pointer = link.with_name(f".{link.name}.{os.getpid()}.tmp")
    pointer.unlink(missing_ok=True)
    os.symlink(fresh.name, pointer)
    os.replace(pointer, link)
    for old in link.parent.glob(f"{glob.escape(link.name)}.*"):
        if old != fresh and old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)


def channel_names(image: PathLike, prefix: str) -> list[str]:
    """The channel names starting with `prefix`: from the prefix's bucket when it has one
    (a 300k-name listing is not read for `nump<TAB>`), else from the whole listing."""
    buckets = _sibling(image, BUCKETS_SUFFIX)
    if len(prefix) >= BUCKET_CHARS and "/" not in prefix and buckets.is_dir():
        source = buckets / prefix[:BUCKET_CHARS]
    else:
        source = channel_file(image)
    return [name for name in read(source) if name.startswith(prefix)]


def read_stamp(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
