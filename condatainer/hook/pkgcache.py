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
  The shell side binary-searches the sorted file (a 30k-name listing costs a few ms in bash),
  and an image may be someone else's: its contents are data that must never become shell
  syntax or a terminal escape sequence on the user's screen.
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
    _write(target, "".join(f"{n}\n" for n in sorted(names)))
    _write(stamp_file, stamp)
    return target


def read_stamp(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
