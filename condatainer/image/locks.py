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
process".  `in_use` gives `overlay info` the same answer the probe would.

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

from condatainer.errors import LockError
from condatainer.record import Record

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (the exec path's rule)
if TYPE_CHECKING:
    from typing import Any

# struct flock on Linux (x86_64, aarch64): short type, short whence, off_t start, off_t len,
# pid_t pid, padded to 32 bytes.
_FLOCK = struct.Struct("hhqqi4x")
_OFD_GETLK: int = getattr(fcntl, "F_OFD_GETLK", 36)
_OFD_SETLK: int = getattr(fcntl, "F_OFD_SETLK", 37)


class Holder(Record):
    """A process found holding a lock on the image."""

    pid: int
    command: str
    write: bool

    def describe(self) -> str:
        return f"PID {self.pid} ({self.command})" if self.command else f"PID {self.pid}"


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
        if holders:
            break
        time.sleep(0.005 * (attempt + 1))  # an exiting holder: its lock goes with its files
    who = [h.describe() for h in holders] or [unseen_holder(path)]
    if kind == fcntl.F_WRLCK:
        return LockError(
            f"{path}: in use for writing by {who[0]}",
            hint="wait until that process (a shell, job or mm command) finishes; a writable"
            " image can be used by one process at a time",
        )
    return LockError(
        f"{path}: in use for reading by {', '.join(who[:3])}; writing needs it to be unused",
        hint="wait for the read-only jobs to finish, or use the image read-only"
        " (condatainer exec without -w, or condatainer e -r)",
    )


def unseen_holder(path: str | os.PathLike[str]) -> str:
    """Who holds a lock that no process visible in /proc holds: a loop device, or someone
    /proc does not show."""
    devices = loop_devices(path)
    if devices:
        return (
            f"loop device {', '.join(devices)} (a mount of the image, still attached; it is"
            " released when that mount goes)"
        )
    return "another process (one /proc does not show: another user's, container's or node's)"


def loop_devices(path: str | os.PathLike[str]) -> list[str]:
    """Loop devices attached to `path` (they keep its open file, and with it any OFD lock)."""
    import glob  # only to explain a lock

    found = []
    for backing in sorted(glob.glob("/sys/block/loop*/loop/backing_file")):
        try:
            with open(backing) as f:
                name = f.read().strip()
            if os.path.samefile(name, path):
                found.append("/dev/" + backing.split("/")[3])
        except OSError:
            continue
    return found


def in_use(path: str | os.PathLike[str]) -> list[str]:
    """Who holds a lock on `path`, one line each (what `overlay info` shows; agrees with
    `probe`: a lock no visible process holds is named by `unseen_holder`)."""
    held = [
        f"for {'writing' if h.write else 'reading'} by {h.describe()}" for h in find_holders(path)
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


def probe(path: str | os.PathLike[str], *, write: bool) -> None:
    """Raise LockError unless a `write`/read lock on `path` could be taken right now."""
    p = os.fspath(path)
    fd = _open(p, write)
    try:
        err = _conflict(p, fd, write)
    finally:
        os.close(fd)
    if err is not None:
        raise err


def acquire(path: str | os.PathLike[str], *, write: bool, inheritable: bool = False) -> ImageLock:
    """Take the lock now or raise LockError; the caller must `release()` it."""
    p = os.fspath(path)
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
    raise LockError(
        f"{p}: in use: every time we looked, its holder had just left and another had taken it",
        hint="try again in a moment",
    )


def hold(path: str | os.PathLike[str], *, write: bool) -> ImageLock:
    """`with hold(path, write=...) as lock:` holds an OFD lock on `path` for the block."""
    return acquire(path, write=write)


def _locks_on(dev: int, ino: int) -> list[tuple[str, bool]]:
    """Lock lines of /proc/locks on (dev, ino): (kind, is_write) for each lock."""
    want = f"{os.major(dev):02x}:{os.minor(dev):02x}:{ino}"
    found = []
    try:
        with open("/proc/locks") as f:
            text = f.read()
    except OSError:
        return []
    for line in text.splitlines():
        parts = line.split()
        if want in parts:
            kind = parts[1] if parts[1] != "->" else parts[2]
            found.append((kind, "WRITE" in parts))
    return found


def find_holders(path: str | os.PathLike[str]) -> list[Holder]:
    """Processes whose open files hold a lock on `path` (those /proc lets us see).

    OFD locks show PID -1 in /proc/locks; the owner is found through the `lock:` lines in
    /proc/PID/fdinfo/FD of a descriptor open on the same device and inode.
    """
    try:
        st = os.stat(path)
    except OSError:
        return []
    if not _locks_on(st.st_dev, st.st_ino):
        return []
    holders: list[Holder] = []
    me = os.getpid()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        fd_dir = f"/proc/{entry.name}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                fst = os.stat(f"{fd_dir}/{fd}")
                if (fst.st_dev, fst.st_ino) != (st.st_dev, st.st_ino):
                    continue
                with open(f"/proc/{entry.name}/fdinfo/{fd}") as f:
                    info = f.read()
            except OSError:
                continue
            for line in info.splitlines():
                if line.startswith("lock:"):
                    holders.append(Holder(int(entry.name), _command(entry.name), "WRITE" in line))
                    break
    return holders


def _command(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except OSError:
        return ""
    words = [w.decode("utf-8", "replace") for w in raw.split(b"\0") if w]
    text = " ".join(words)
    return text if len(text) <= 80 else text[:77] + "..."
