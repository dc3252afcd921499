"""Decisions written down and replayed while nothing they read has changed: the stamps, the entry
files and the cache directory that the exec fast path (run/replay.py) and the warm cd
(hook/replay.py) share.

A decision that is a function of some files and some environment variables can be replayed
from an *entry* when a stamp of each of those files (`stamp`) is as it was when the entry was
written.  The caller owns the key (what identifies the question) and the answer; this module
owns how an entry is stored and checked:

- an entry is a `marshal` file of plain values (built in, no import; loading runs no code),
  written atomically, at most `MAX_ENTRIES` per directory (oldest dropped), read only when it
  is the user's own and not writable by others;
- its `stamps` are `(path, changes, stamp)` triples: `unchanged` re-stamps each path and
  compares.  `changes=True` asks for a large file's size and mtime too (an image whose
  content decides the answer, such as the shims the cd hook lists from it).

This module is on the exec path and the cd path: it imports nothing beyond what Python has
loaded at start (a test holds the import lists).
"""

from __future__ import annotations

import marshal
import os
import stat

from condatainer import xdg

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    Stamp = tuple[int, int, int, int, int, int] | None
    Stamps = tuple[tuple[str, bool, Stamp], ...]

MAX_ENTRIES = 256
SMALL_FILE = 64 * 1024  # files up to this size are stamped with a digest of their content


def stamp(path: str, changes: bool = False) -> Stamp:
    """What identifies the state of `path` (symlinks followed); None when it is missing.

    A small file (a sidecar, the config file, an allow record): device, inode, size, mtime,
    ctime and a digest of its content (file times tick in jiffies, so an edit that keeps the size
    within a few milliseconds of the last could otherwise go unseen).  A large file (an image,
    a base, micromamba): which file it is, its owner and mode -- what a decision and the trust
    check read of it -- and, with `changes`, its size and mtime (otherwise its content may
    change under a running container without changing the decision).  A directory: which one
    it is, since a bind or working directory whose files come and go is the same decision,
    unless its entries matter (one of PATH's, where an apptainer may appear): then it is named
    with a trailing `/` and stamped with its times."""
    listing = path.endswith("/") and len(path) > 1
    try:
        st = os.stat(path)
    except OSError:
        return None
    if stat.S_ISDIR(st.st_mode) and not listing:
        return (st.st_dev, st.st_ino, st.st_mode, st.st_uid, 0, -1)
    if st.st_size > SMALL_FILE:
        if changes:
            return (st.st_dev, st.st_ino, st.st_mode, st.st_uid, st.st_size, st.st_mtime_ns)
        return (st.st_dev, st.st_ino, st.st_mode, st.st_uid, 0, -1)
    digest = -1
    if stat.S_ISREG(st.st_mode):
        try:
            with open(path, "rb") as f:
                digest = _digest(f.read(SMALL_FILE + 1))
        except OSError:
            digest = -2
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, digest)


def stamps(paths: Iterable[str], changing: Iterable[str] = ()) -> Stamps:
    """The stamps of `paths` (each once), those in `changing` with their size and mtime."""
    watch = dict.fromkeys(paths, False)
    watch.update(dict.fromkeys(changing, True))
    return tuple((path, changes, stamp(path, changes)) for path, changes in watch.items())


def unchanged(recorded: object) -> bool:
    """Whether every path of an entry's `stamps` is as it was (False for anything malformed)."""
    if not isinstance(recorded, tuple):
        return False
    for item in recorded:
        if not (isinstance(item, tuple) and len(item) == 3 and isinstance(item[0], str)):
            return False
        path, changes, was = item
        if stamp(path, changes is True) != was:
            return False
    return True


def environ_key(
    environ: Mapping[str, str], names: Iterable[str], prefixes: tuple[str, ...]
) -> tuple[tuple[str, str], ...]:
    """The variables of `environ` a decision reads (`names`, and every name with one of
    `prefixes`), sorted: part of its key."""
    wanted = frozenset(names)
    return tuple(
        sorted((k, v) for k, v in environ.items() if k in wanted or k.startswith(prefixes))
    )


def entry_name(words: Iterable[str], suffix: str) -> str:
    """A short file name for the entry of `words` (a digest: the key inside decides a hit)."""
    return f"{_digest(chr(0).join(words).encode('utf-8', 'surrogateescape')):016x}{suffix}"


_PRIME = (1 << 64) - 59  # the largest prime below 2**64; not a Mersenne prime, modulo which
# the digest would be a sum of 61-bit pieces (two of them swapped would go unseen)


def _digest(data: bytes) -> int:
    """A 64-bit digest of `data` that is the same in every process: `data` as a number (after a
    1 byte, so that leading zero bytes count) modulo a prime.  Not a cryptographic hash: it tells
    an edited file or another key from the one written down.  Built from int alone: zlib's
    CRC32 made every run of the exec and cd paths, and of `o`, load a shared library (about
    0.3 ms where Python has zlib as one).  About 4 us per KiB."""
    return int.from_bytes(b"\x01" + data, "big") % _PRIME


def load(path: str) -> dict[str, object] | None:
    """The entry at `path`, or None (missing, unreadable, not ours alone, not an entry)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if st.st_uid != os.geteuid() or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            return None  # not ours alone: never trusted
        data = os.read(fd, 1 << 20)
    except OSError:
        return None
    finally:
        os.close(fd)
    try:
        entry = marshal.loads(data)
    except (EOFError, ValueError, TypeError):
        return None
    return entry if isinstance(entry, dict) else None


def store(path: str, entry: dict[str, object]) -> None:
    """Write `entry` at `path` atomically, then keep the newest MAX_ENTRIES entries of its
    directory (those with the same suffix).  Best effort: a cache that cannot be written only
    costs speed, so this never raises."""
    try:
        data = marshal.dumps(entry)
        directory, name = os.path.split(path)
        os.makedirs(directory, mode=0o700, exist_ok=True)
        tmp = f"{path}.{os.getpid()}.{os.urandom(4).hex()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        _prune(directory, os.path.splitext(name)[1])
    except (OSError, ValueError):
        return


def _prune(directory: str, suffix: str) -> None:
    """Keep the newest MAX_ENTRIES entries ending in `suffix`."""
    with os.scandir(directory) as found:
        entries = [(e.stat().st_mtime_ns, e.path) for e in found if e.name.endswith(suffix)]
    entries.sort()
    for _, path in entries[: max(0, len(entries) - MAX_ENTRIES)]:
        try:
            os.unlink(path)
        except OSError:  # another process pruned it (contextlib is not imported here)
            continue


def cache_dir(environ: Mapping[str, str]) -> str:
    """`config.paths(environ)["cache"]`, without importing pathlib."""
    return xdg.directory("cache", environ)
