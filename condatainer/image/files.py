"""Files that must appear whole or not at all: hidden temporary files, publishing them, and
allocating their space.

- `Temp`: a hidden file next to its final name (`.<name>.<tag>-<random>`), created exclusively
  and removed unless it was published.  The operation's record (`records`) names it before it
  exists, so a SIGKILL that leaves it behind is cleaned up by the next command.  `publish()`
  gives it the final name with `link()` + `unlink()`, which fails rather than overwrite a file
  another process created meanwhile; where the filesystem has no hard links (CIFS, some FUSE)
  it falls back to a rename after a check, the best such a filesystem allows.  Creating,
  discarding and publishing run with SIGINT/SIGTERM/SIGHUP blocked, so `created`/`published`
  are true exactly when it happened.
- Allocation uses Linux `fallocate(2)` directly (through ctypes), not glibc's `posix_fallocate`:
  where the filesystem cannot preallocate, glibc silently emulates it by writing one byte into
  every 4 KiB block (2.6 million writes for 10G, over NFS), while we want to fall back to a
  sparse file at once and say so.  Allocation is verified with `st_blocks`.
- New image files get mode 0644 minus the umask (`umask_mode`), never group/world-writable
  because of a lax umask: such images are not trusted for activation.
"""

from __future__ import annotations

import ctypes
import errno
import os
import secrets
from contextlib import suppress
from pathlib import Path
from typing import Callable

from condatainer import signals
from condatainer.errors import ImageError, ImageExistsError
from condatainer.image import e2fs, records
from condatainer.image.layout import PathLike


def _load_fallocate() -> Callable[[int, int, int], None] | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.fallocate64 if hasattr(libc, "fallocate64") else libc.fallocate
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    fn.restype = ctypes.c_int

    def fallocate(fd: int, offset: int, length: int) -> None:
        while fn(fd, 0, offset, length) != 0:
            err = ctypes.get_errno()
            if err != errno.EINTR:  # on EINTR a pending Python handler runs before the retry
                raise OSError(err, os.strerror(err))

    return fallocate


_fallocate = _load_fallocate()


_NO_FALLOCATE = {errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL, errno.ENOSYS}


def allocate(fd: int, offset: int, length: int) -> bool:
    """Preallocate `length` bytes at `offset` (extending the file); False if unsupported here."""
    try:
        if _fallocate is not None:
            _fallocate(fd, offset, length)
        else:  # pragma: no cover - not Linux/glibc
            os.posix_fallocate(fd, offset, length)
    except OSError as exc:
        if exc.errno in _NO_FALLOCATE:
            return False
        raise
    return True


def allocated_bytes(path: PathLike) -> int:
    return os.stat(path).st_blocks * 512


def is_allocated(st: os.stat_result) -> bool:
    return st.st_blocks * 512 >= st.st_size


def free_bytes(directory: PathLike) -> int | None:
    try:
        vfs = os.statvfs(directory)
    except OSError:
        return None
    return vfs.f_bavail * vfs.f_frsize


def sparse_warning(image: Path, size: int, on_disk: int = 0) -> str | None:
    """A warning when a sparse `image` of `size` bytes (`on_disk` of them already allocated)
    could grow past the free space of its filesystem; None when it fits."""
    from condatainer.image.sizes import format_size

    directory = image.parent
    free = free_bytes(directory)
    if free is None or size - on_disk <= free:
        return None
    return (
        f"{image} is sparse and may grow to {format_size(size)}, but only {format_size(free)}"
        f" are free on the filesystem of {os.path.abspath(directory)}; once that is full,"
        " writes into the env fail"
    )


def umask_mode(mode: int) -> int:
    """`mode` minus the process umask, read without changing it where /proc allows."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return mode & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    old = os.umask(0o022)  # pragma: no cover - kernels before 4.7
    os.umask(old)
    return mode & ~old


class Temp:
    """A hidden file next to the target, created exclusively; removed unless published."""

    def __init__(self, final: Path, tag: str = "tmp"):
        self.final = final
        self.path = final.with_name(records.temp_name(final, tag, secrets.token_hex(4)))
        self.created = False
        self.published = False

    def create(self) -> int:
        """Create the file (mode 0644 minus umask) and return an open read-write descriptor."""
        with signals.blocked():  # `created` must be true exactly when the file is ours
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
            self.created = True
        return fd

    def discard(self) -> None:
        if self.created and not self.published:
            with signals.blocked():
                with suppress(FileNotFoundError):
                    os.unlink(self.path)
                self.created = False

    def publish(self, *, replace: bool = False) -> None:
        """Give the file its final name; ImageExistsError if that name was taken meanwhile.

        `replace`: take the name even if a file has it (one atomic rename; a process that has
        the old file open keeps reading the old one)."""
        with signals.blocked():
            if replace:
                os.rename(self.path, self.final)
            else:
                publish(self.path, self.final)
            self.published = True


def publish(tmp: Path, final: Path) -> None:
    try:
        os.link(tmp, final)
    except FileExistsError:
        raise exists_error(final, appeared=True) from None
    except OSError as exc:
        if exc.errno not in (
            errno.EPERM,
            errno.EOPNOTSUPP,
            errno.ENOTSUP,
            errno.EMLINK,
            errno.ENOSYS,
            errno.EXDEV,
        ):
            raise
        # No hard links on this filesystem (CIFS, some FUSE): rename after checking.  The window
        # between the check and the rename is the best such a filesystem allows.
        if os.path.lexists(final):
            raise exists_error(final, appeared=True) from None
        os.rename(tmp, final)
        return
    os.unlink(tmp)


def exists_error(final: Path, *, appeared: bool = False) -> ImageExistsError:
    if appeared:
        return ImageExistsError(
            f"{final}: already exists (another process created it while this one was working);"
            " it was left as it is",
            hint="choose another name, or look at it: condatainer overlay info " + str(final),
        )
    if final.is_symlink():
        target = os.readlink(final)
        dangling = "" if final.exists() else ", which points to nothing"
        what = f"a symbolic link to {target}{dangling}"
    elif final.is_dir():
        what = "a directory"
    elif e2fs.looks_like_ext(final):
        return ImageExistsError(
            f"{final}: already exists (an ext image)",
            hint=f"use it as it is, grow it with: condatainer overlay resize {final} -s SIZE,"
            " or choose another name",
        )
    else:
        what = "a file"
    return ImageExistsError(
        f"{final}: already exists ({what})",
        hint="choose another name, or move it out of the way first",
    )


def check_target(final: Path) -> Path:
    """Refuse an existing path or a parent we cannot write; return the parent directory."""
    if os.path.lexists(final):
        raise exists_error(final)
    parent = final.parent
    shown = os.path.abspath(parent)
    if not parent.exists():
        raise ImageError(
            f"cannot create {final}: directory {shown} does not exist",
            hint=f"create it first: mkdir -p {shown}",
        )
    if not parent.is_dir():
        raise ImageError(f"cannot create {final}: {shown} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ImageError(
            f"cannot create {final}: directory {shown} is not writable by you",
            hint="create the image in a directory you can write, e.g.:"
            f" condatainer o $HOME/{final.name}",
        )
    return parent
