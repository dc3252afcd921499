"""Apptainer-compatible image locks: OFD fcntl locks over the whole file, and who holds them.

Apptainer takes an open-file-description lock (`F_OFD_SETLK`) on an overlay image while it is
mounted: a write lock for a writable mount, a read lock for a read-only one.  We take the same
kind, so condatainer and Apptainer see each other; `flock(2)` would be blind to it.

`hold()` takes a lock for the life of a `with` block; `probe()` checks whether one could be taken
right now, without taking it.  Both raise `LockError` with one precise cause: the file is missing,
not writable, in use for writing (with the holder's PID and command when /proc shows it), or in
use for reading.  A missing or unwritable file is never reported as "in use".

A held lock always names what holds it.  The holder scan races with holders that are exiting,
so a conflict with no holder in sight is looked at again (a lock that is gone by then is simply
taken); a lock held by no process is held by a loop device whose mount is being torn down (the
device keeps the locked open file until it is detached), which is named too; only what /proc
cannot show (another user's process under hidepid, another container, another node) is "another
process".  `in_use` gives `overlay info` the same answer the probe would.  How a holder is
found and named (`condatainer e (PID 20988, pts/3, since 14:02)`) is `holders`' business,
imported when there is one to name.  `probe` and `acquire` can wait for a busy image
(`--wait-lock`): `_waiting`.

Every container start takes these locks, so the module imports only `os`, `fcntl` and
`struct`; what explains a failure (`e2fs.path_error`, the holder scan's `glob` and `time`) is
imported when one happens.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import struct

from condatainer.errors import ImageBusyError, LockError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (the exec path's rule)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TypeVar

    from condatainer.image.holders import Holder

    T = TypeVar("T")

# struct flock on Linux (x86_64, aarch64): short type, short whence, off_t start, off_t len,
# pid_t pid, padded to 32 bytes.
_FLOCK = struct.Struct("hhqqi4x")
_OFD_GETLK: int = getattr(fcntl, "F_OFD_GETLK", 36)
_OFD_SETLK: int = getattr(fcntl, "F_OFD_SETLK", 37)


class ImageLock:
    """An open image with an OFD lock on it; closing the descriptor releases the lock.  As a
    context manager (`hold`), released when the block ends."""

    def __init__(self, path: str, fd: int, write: bool):
        self.path = path
        self.fd = fd
        self.write = write

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> ImageLock:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def _flock(kind: int) -> bytes:
    return _FLOCK.pack(kind, os.SEEK_SET, 0, 0, 0)


def _open(path: str, write: bool) -> int:
    """Open the image for locking, turning OS errors into the precise LockError.

    O_NONBLOCK, so that a FIFO in the image's place cannot hang us; anything but a regular
    file gets `e2fs.path_error`'s precise message (missing, a directory, unreachable...)."""
    flags = (os.O_RDWR if write else os.O_RDONLY) | os.O_CLOEXEC | os.O_NONBLOCK
    try:
        fd = os.open(path, flags)
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError) as exc:
        _raise_path_error(path)
        if isinstance(exc, PermissionError):
            raise _not_accessible(path, write) from exc
        raise LockError(f"{path}: cannot open: {exc.strerror}") from exc
    except OSError as exc:
        if exc.errno == errno.EROFS:
            raise LockError(
                f"{path}: not writable: it is on a read-only filesystem",
                hint="use it read-only (condatainer exec without -w, or condatainer e -r)",
            ) from exc
        raise LockError(f"{path}: cannot open: {exc.strerror}") from exc
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        _raise_path_error(path)
        raise LockError(f"{path}: not a regular file")
    os.set_blocking(fd, True)
    return fd


def _raise_path_error(path: str) -> None:
    """Raise e2fs's precise LockError for a path that is no image file (if it is not one)."""
    from pathlib import Path

    from condatainer.image import e2fs

    problem = e2fs.path_error(Path(path), LockError)
    if problem is not None:
        raise problem


def _not_accessible(path: str, write: bool) -> LockError:
    st = os.stat(path)
    mode = f"owner uid {st.st_uid}, mode {st.st_mode & 0o7777:04o}"
    if write:
        return LockError(
            f"{path}: not writable by you ({mode})",
            hint="use it read-only (condatainer exec without -w, or condatainer e -r),"
            " or ask its owner to run: condatainer overlay chown " + path,
        )
    return LockError(
        f"{path}: not readable by you ({mode})", hint="ask the image's owner for access"
    )


_LOOKS = 6  # how often a conflict with no visible holder is looked at again


def _lock_kind(path: str, fd: int, write: bool) -> int:
    """The kind of lock (F_WRLCK, F_RDLCK, F_UNLCK) that would block a `write`/read lock."""
    want = fcntl.F_WRLCK if write else fcntl.F_RDLCK
    try:
        got = fcntl.fcntl(fd, _OFD_GETLK, _flock(want))
    except OSError as exc:  # a filesystem without these locks (Lustre noflock, some FUSE)
        raise LockError(
            f"{path}: cannot query its lock: {exc.strerror}",
            hint="this filesystem does not support the locks Apptainer uses; copy the image to"
            " a local or scratch filesystem",
        ) from exc
    kind: int = _FLOCK.unpack(got)[0]
    return kind


def _conflict(path: str, fd: int, write: bool) -> LockError | None:
    """The LockError describing a lock that would block ours, or None if there is none (any
    more: a holder that left while we looked is no conflict)."""
    import time  # only when there is a conflict

    for attempt in range(_LOOKS):
        kind = _lock_kind(path, fd, write)
        if kind == fcntl.F_UNLCK:
            return None
        holders = [h for h in find_holders(path) if h.write == (kind == fcntl.F_WRLCK)]
        holders = _topmost(holders)
        if holders:
            break
        time.sleep(0.005 * (attempt + 1))  # an exiting holder: its lock goes with its files
    who = [h.describe() for h in holders] or [unseen_holder(path)]
    wait = "the same command with --wait-lock[=SECONDS] (e, exec, run, mm) waits"
    if kind == fcntl.F_WRLCK:
        return ImageBusyError(
            f"{path}: in use for writing by {who[0]}",
            hint="an image being written can be used by no one else, read-only included;"
            f" {wait} until it is free",
        )
    return ImageBusyError(
        f"{path}: in use for reading by {', '.join(who[:3])}; writing needs it to be unused",
        hint=f"a read-only shell works alongside them: condatainer e -r {path} (exec without"
        f" -w); or {wait} for them to finish",
    )


def _topmost(found: list[Holder]) -> list[Holder]:
    from condatainer.image import holders

    return holders.topmost(found)


def in_use(path: str | os.PathLike[str]) -> list[str]:
    """Who holds a lock on `path`, one line each (what `overlay info` shows; agrees with
    `probe`: a lock no visible process holds is named by `unseen_holder`)."""
    held = [
        f"for {'writing' if h.write else 'reading'} by {h.describe()}"
        for h in _topmost(find_holders(path))
    ]
    if held:
        return held
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return []
    try:
        for want, kind in ((False, "writing"), (True, "reading")):
            if _lock_kind(os.fspath(path), fd, want) != fcntl.F_UNLCK:
                return [f"for {kind} by {unseen_holder(path)}"]
    except LockError:
        return []
    finally:
        os.close(fd)
    return []


def probe(
    path: str | os.PathLike[str],
    *,
    write: bool,
    wait: float | None = None,
    notify: Callable[[str], None] | None = None,
) -> None:
    """Raise LockError unless a `write`/read lock on `path` could be taken right now (or, with
    `wait`, within that many seconds: see `_waiting`)."""
    _waiting(lambda: _probe(os.fspath(path), write), wait, notify)


def _probe(p: str, write: bool) -> None:
    fd = _open(p, write)
    try:
        err = _conflict(p, fd, write)
    finally:
        os.close(fd)
    if err is not None:
        raise err


def acquire(
    path: str | os.PathLike[str],
    *,
    write: bool,
    inheritable: bool = False,
    wait: float | None = None,
    notify: Callable[[str], None] | None = None,
) -> ImageLock:
    """Take the lock now (or, with `wait`, within that many seconds: see `_waiting`) or raise
    LockError; the caller must `release()` it."""
    return _waiting(lambda: _acquire(os.fspath(path), write, inheritable), wait, notify)


def _acquire(p: str, write: bool, inheritable: bool) -> ImageLock:
    fd = _open(p, write)
    try:
        for _ in range(_LOOKS):
            try:
                fcntl.fcntl(fd, _OFD_SETLK, _flock(fcntl.F_WRLCK if write else fcntl.F_RDLCK))
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise LockError(f"{p}: cannot lock: {exc.strerror}") from exc
                err = _conflict(p, fd, write)
                if err is not None:
                    raise err from exc
                continue  # its holder just left: try again
            os.set_inheritable(fd, inheritable)
            return ImageLock(p, fd, write)
    except BaseException:
        os.close(fd)
        raise
    os.close(fd)
    raise ImageBusyError(
        f"{p}: in use: every time we looked, its holder had just left and another had taken it",
        hint="try again in a moment",
    )


def _waiting(
    attempt: Callable[[], T], wait: float | None, notify: Callable[[str], None] | None
) -> T:
    """`attempt()` again while the image is busy, for up to `wait` seconds (inf: until it is
    free; None: not at all), with a notice naming the holder when waiting starts, when the
    holder changes, and every minute.  Only "in use" waits: a missing or unwritable image
    fails at once."""
    if wait is None:
        return attempt()
    import time  # only when waiting

    tell = notify or (lambda text: None)
    start = last = time.monotonic()
    told = ""
    while True:
        try:
            return attempt()
        except ImageBusyError as err:
            now = time.monotonic()
            waited = now - start
            if waited >= wait:
                raise ImageBusyError(
                    f"{err.message}; gave up after waiting {_duration(waited)}"
                    f" (--wait-lock={wait:g})",
                    hint="wait longer (--wait-lock without a number waits until it is free),"
                    " or use the image read-only (condatainer e -r, exec without -w)",
                ) from None
            if err.message != told:
                limit = f"up to {_duration(wait)}; " if wait != float("inf") else ""
                tell(f"{err.message}; waiting for it ({limit}Ctrl-C to stop)")
                told, last = err.message, now
            elif now - last >= 60:
                tell(f"still waiting for the lock ({_duration(waited)} so far)")
                last = now
            time.sleep(min(0.2, wait - waited))


def _duration(seconds: float) -> str:
    seconds = int(seconds + 0.5)
    if seconds < 120:
        return f"{seconds}s"
    return (
        f"{seconds // 60} min"
        if seconds < 7200
        else f"{seconds // 3600} h {seconds % 3600 // 60} min"
    )


def hold(path: str | os.PathLike[str], *, write: bool) -> ImageLock:
    """`with hold(path, write=...) as lock:` holds an OFD lock on `path` for the block."""
    return acquire(path, write=write)


def find_holders(path: str | os.PathLike[str]) -> list[Holder]:
    """Processes whose open files hold a lock on `path` (`holders.find_holders`)."""
    from condatainer.image import holders

    return holders.find_holders(path)


def unseen_holder(path: str | os.PathLike[str]) -> str:
    """Who holds a lock no visible process holds (`holders.unseen_holder`)."""
    from condatainer.image import holders

    return holders.unseen_holder(path)
