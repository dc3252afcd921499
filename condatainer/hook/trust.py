"""Which images this user has allowed to run: the allow/deny store (design §4, Trust).

Starting a container with someone else's image runs their code as you, so an image is only
activated (cd hook) or started without asking once it is *allowed*:

- `condatainer o` allows the image it creates (`auto_allow`), unless the result is not safe
  (see below): then the user is told to run `condatainer allow` themselves.
- Any other image needs `condatainer allow IMAGE` (`allow`); `condatainer deny IMAGE` (`deny`)
  forgets it again.

A record holds what identifies *this file at this place*, not its content (mm-install changes the
content): the real path, st_dev, st_ino, st_uid, and the group/world write bits the user accepted.
`status` compares the image with its record:

- `ALLOWED`     the record matches: same device, inode and owner, and no write bit for group or
                others that the user did not accept when allowing it.
- `NOT_ALLOWED` no record for this real path; the image is ours and not writable by others.
- `UNSAFE`      not owned by us, or group/world-writable, and no matching record (including a
                record whose accepted write bits no longer cover the file's): never activated
                without an explicit `allow`, which then accepts exactly what it saw.
- `REPLACED`    there is a record for the path but device, inode or owner differ: the file was
                replaced (or the record is for a file that was moved away).  A moved image has
                a new real path, so it is simply `NOT_ALLOWED`/`UNSAFE` at its new place.
- `MISSING`     no such file.

Each change (allow, auto_allow, deny) also rewrites the hook's stamp (stamp.py), so a shell in
that directory picks it up at its next prompt.

Store layout: `$XDG_DATA_HOME/condatainer/allowed/<sha256 of the real path>`, one small JSON
file per image (directory 0700, files 0600), written atomically.  One file per image means no
read-modify-write of a shared list (two shells allowing at once cannot lose an entry) and a check
costs one realpath, one stat and one small read -- well under a millisecond.  The store lives
only in the user's data directory, never in a project.  Its files (names, writing, and
`auto_allow` itself) are allowed.py's, import-light for `condatainer o`.

Limits, stated plainly: st_dev of a network filesystem can change when it is remounted (the
image then reads as REPLACED and needs `allow` again), and a deleted file's inode number can be
reused by a new file at the same path; the owner check still holds in that case.
"""

from __future__ import annotations

import enum
import json
import os
from pathlib import Path
from typing import NamedTuple

from condatainer.errors import TrustError
from condatainer.hook import allowed, stamp
from condatainer.image.layout import PathLike


class TrustStatus(enum.Enum):
    """How an image stands with the user's allow store; see the module docstring."""

    ALLOWED = "allowed"
    NOT_ALLOWED = "not allowed"
    UNSAFE = "unsafe"
    REPLACED = "replaced"
    MISSING = "missing"


class Record(NamedTuple):
    """One allowed image, as stored."""

    path: str
    dev: int
    ino: int
    uid: int
    write_bits: int  # group/world write bits accepted when allowing (0 for a safe image)
    how: str  # "allow" (explicit) or "auto" (created by `condatainer o`)


def store_dir() -> Path:
    """The directory holding one record per allowed image."""
    return Path(allowed.store_dir())


def record_path(path: PathLike) -> Path:
    """Where the allow record of the image at `path` lives (it may not exist).

    The shell hook watches this file so that `allow`/`deny` take effect at the next prompt.
    """
    return _record_file(store_dir(), allowed.real_path(path))


def _record_file(store: Path, real: str) -> Path:
    return Path(allowed.record_file(store, real))


def _load(store: Path, real: str) -> Record | None:
    try:
        data = json.loads(_record_file(store, real).read_bytes())
        record = Record(**data)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError):
        return None  # an unreadable or foreign record allows nothing
    ints = (record.dev, record.ino, record.uid, record.write_bits)
    if not all(type(value) is int for value in ints) or record.path != real:
        return None
    return record


def status(path: PathLike, *, store: Path | None = None) -> TrustStatus:
    """How `path` stands: allowed, not allowed, unsafe, replaced or missing."""
    real = allowed.real_path(path)
    st = allowed.stat_of(path, real)
    if st is None:
        return TrustStatus.MISSING
    record = _load(store_dir() if store is None else store, real)
    if record is None:
        return TrustStatus.UNSAFE if allowed.unsafe(st) else TrustStatus.NOT_ALLOWED
    if (record.dev, record.ino, record.uid) != (st.st_dev, st.st_ino, st.st_uid):
        return TrustStatus.REPLACED
    if st.st_mode & allowed.OTHERS_WRITE & ~record.write_bits:
        return TrustStatus.UNSAFE  # became writable by others after it was allowed
    return TrustStatus.ALLOWED


def _save(store: Path, record: Record) -> None:
    allowed.save(store, record._asdict())


def allow(path: PathLike, *, store: Path | None = None) -> Record:
    """Allow the image at `path` as it is now (accepting its owner and write bits)."""
    real = allowed.real_path(path)
    st = allowed.image_stat(path, real)
    record = Record(
        path=real,
        dev=st.st_dev,
        ino=st.st_ino,
        uid=st.st_uid,
        write_bits=st.st_mode & allowed.OTHERS_WRITE,
        how="allow",
    )
    _save(store_dir() if store is None else store, record)
    stamp.touch()
    return record


def auto_allow(path: PathLike, *, store: Path | None = None) -> TrustStatus:
    """Allow an image `condatainer o` just created -- only if it is ours and safe.

    Returns ALLOWED, or UNSAFE when the new file is group/world-writable (a umask like 002)
    or not ours (`allowed.auto_allow`, which `condatainer o` calls itself).
    """
    ok = allowed.auto_allow(path, store=store)
    return TrustStatus.ALLOWED if ok else TrustStatus.UNSAFE


def deny(path: PathLike, *, store: Path | None = None) -> bool:
    """Forget the image at `path` (the file need not exist).  True if there was a record."""
    store = store_dir() if store is None else store
    target = _record_file(store, allowed.real_path(path))
    try:
        target.unlink()
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise TrustError(f"cannot remove {target}: {exc.strerror}") from None
    stamp.touch()
    return True


def explain(path: PathLike, state: TrustStatus) -> str:
    """One sentence for the user about an image that is not allowed."""
    name = os.fspath(path)
    return {
        TrustStatus.ALLOWED: f"{name} is allowed",
        TrustStatus.NOT_ALLOWED: f"{name} is not allowed",
        TrustStatus.UNSAFE: (
            f"{name} is not owned by you or can be changed by others, and is not allowed"
        ),
        TrustStatus.REPLACED: f"{name} was replaced since it was allowed",
        TrustStatus.MISSING: f"{name}: no such image",
    }[state]


def require_allowed(path: PathLike, *, store: Path | None = None) -> None:
    """Raise TrustError (with the `condatainer allow` hint) unless `path` is allowed."""
    state = status(path, store=store)
    if state is TrustStatus.ALLOWED:
        return
    if state is TrustStatus.MISSING:
        raise TrustError(explain(path, state))
    raise TrustError(
        explain(path, state),
        hint=f"check who can change it, then run: condatainer allow {_shell_word(path)}",
    )


def _shell_word(path: PathLike) -> str:
    from condatainer import shellgen  # only for a hint

    return shellgen.quote(os.fspath(path))
