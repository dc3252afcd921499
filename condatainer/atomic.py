"""Atomic file replacement: the one way condatainer writes a file that others may be reading.

`replace(path, data)` writes `data` to a new temporary file beside `path` (same directory, so
the rename cannot cross filesystems), gives it its mode (and owner), then renames it over
`path`.  A reader sees the old file or the new one, never a part; a failure or an interrupt at
any point leaves the old file as it was and no temporary file behind.  Errors are OSErrors:
each caller turns them into its own message, naming what it was writing.

`durable=True` also syncs the file before the rename and the directory after it, for what the
user would lose with a crash (rc files, the config, trust records); caches skip it.  `tempfile`
is not used: importing it costs more than a warm shell activation is allowed to.

Editing a user's file in place (an rc file, a job script) is `read` -> compute a `Change` ->
`apply`: `apply` refuses (`Conflict`) when the file changed since it was read, follows symlinks
(the link's target is rewritten, the link stays), keeps the file's mode, and keeps its owner
when root edits another user's file.  Computing a change writes nothing, so a `--dry-run` can
show it.

Imports nothing beyond os and stat (`Change` is a `record.Record`; pathlib only where a change
is read): `condatainer o` writes the allow record and the hook's stamp with `replace` while its
mke2fs runs on the other core, where a burst of imports slows mke2fs itself.
"""

from __future__ import annotations

import os
import stat

from condatainer.record import Record

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from pathlib import Path

TEMP_SUFFIX = ".cnt-tmp"
NEW_FILE_MODE = 0o644


def default_mode() -> int:
    """0o666 minus the umask: the mode a plain new file would get."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def replace(
    path: str | os.PathLike[str],
    data: bytes | str,
    mode: int | None = None,
    *,
    owner: tuple[int, int] | None = None,
    durable: bool = False,
) -> None:
    """Replace `path` by `data` (str is written as UTF-8, surrogates as the bytes they were).

    `mode`: the new file's permission bits; default: the existing file's, else `default_mode()`.
    `owner`: (uid, gid) to give the new file (root writing a user's file).  `path` itself is
    replaced: a symlink there is replaced too, so callers that edit through symlinks resolve
    them first.
    """
    target = os.fspath(path)
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogateescape")
    if mode is None:
        try:
            mode = os.stat(target).st_mode & 0o7777
        except FileNotFoundError:
            mode = default_mode()
    parent, name = os.path.split(target)
    tmp = os.path.join(parent, f".{name}.{os.getpid()}.{os.urandom(4).hex()}{TEMP_SUFFIX}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if owner is not None:
                os.fchown(fd, *owner)
            os.fchmod(fd, mode)  # after fchown, which clears setuid/setgid bits
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException:
        try:  # noqa: SIM105  (contextlib is not imported here: see the module docstring)
            os.unlink(tmp)
        except OSError:
            pass
        raise
    if durable:
        sync_directory(parent or ".")


def sync_directory(directory: str | os.PathLike[str]) -> None:
    """Make a rename in `directory` durable; some filesystems cannot fsync one, which is fine."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class Change(Record):
    """What a file holds now (`old`) and what it should hold (`new`).

    `path` is the path as given (for messages and diffs), `target` the file actually written
    (symlinks resolved).  `old_exists`/`new_exists` distinguish "empty" from "no file":
    `new_exists=False` means `apply` deletes the file.
    """

    path: Path
    target: Path
    old: bytes
    new: bytes
    old_exists: bool
    new_exists: bool

    @property
    def changed(self) -> bool:
        return self.old != self.new or self.old_exists != self.new_exists


class Conflict(Exception):
    """The file changed between reading it and applying a change to it."""


def read(path: Path) -> tuple[Path, bytes, bool]:
    """Resolve symlinks and read the file: (target, content, exists); OSError otherwise."""
    from pathlib import Path

    target = Path(os.path.realpath(path))
    try:
        return target, target.read_bytes(), True
    except FileNotFoundError:
        return target, b"", False


def apply(change: Change) -> None:
    """Carry out `change` (see the module docstring); Conflict or OSError when it cannot."""
    if not change.changed:
        return
    _, current, exists = read(change.path)
    if current != change.old or exists != change.old_exists:
        raise Conflict(change.path)
    target = change.target
    if not change.new_exists:
        target.unlink(missing_ok=True)
        return
    try:
        st: os.stat_result | None = target.stat()
    except FileNotFoundError:
        st = None
    mode = stat.S_IMODE(st.st_mode) if st is not None else NEW_FILE_MODE
    # Root editing another user's file must leave it theirs.
    owner = (st.st_uid, st.st_gid) if st is not None and os.geteuid() == 0 else None
    replace(target, change.new, mode, owner=owner, durable=True)
