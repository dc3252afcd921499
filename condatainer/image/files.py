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
- Allocation uses Linux `fallocate(2)` directly (through ctypes, looked up when something is
  first allocated), not glibc's `posix_fallocate`:
  where the filesystem cannot preallocate, glibc silently emulates it by writing one byte into
  every 4 KiB block (2.6 million writes for 10G, over NFS), while we want to fall back to a
  sparse file at once and say so.  Allocation is verified with `st_blocks`.
- New image files get mode 0644 minus the umask (`umask_mode`), never group/world-writable
  because of a lax umask: such images are not trusted for activation.
"""

from __future__ import annotations

import errno
import os

from condatainer import signals
from condatainer.errors import ImageError, ImageExistsError
from condatainer.image import records

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (`o`'s import-light path)
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Callable

    from condatainer.image.layout import PathLike


def _load_fallocate() -> Callable[[int, int, int], None] | None:
    import ctypes  # when something is allocated: a sparse create never needs it

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


def _first_fallocate(fd: int, offset: int, length: int) -> None:
    """`_fallocate` until it is first used: loads the real one (ctypes), then calls it."""
    global _fallocate
    _fallocate = _load_fallocate()
    if _fallocate is not None:
        _fallocate(fd, offset, length)
    else:  # pragma: no cover - not Linux/glibc
        os.posix_fallocate(fd, offset, length)


_fallocate: Callable[[int, int, int], None] | None = _first_fallocate


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


def sparse_warning(image: str | Path, size: int, on_disk: int = 0) -> str | None:
    """A warning when a sparse `image` of `size` bytes (`on_disk` of them already allocated)
    could grow past the free space of its filesystem; None when it fits."""
    from condatainer.image.sizes import format_size

    directory = parent_of(image)
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
        with open("/proc/self/status") as status:
            lines = status.read().splitlines()
        for line in lines:
            if line.startswith("Umask:"):
                return mode & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    old = os.umask(0o022)  # pragma: no cover - kernels before 4.7
    os.umask(old)
    return mode & ~old


class Temp:
    """A hidden file next to the target, created exclusively; removed unless published."""

    def __init__(self, final: str | Path, tag: str = "tmp"):
        self.final = final
        self.path = records.sibling(final, records.temp_name(final, tag))
        self.created = False
        self.published = False

    @property
    def name(self) -> str:
        """The hidden file's name (what the operation's record names)."""
        return os.path.basename(self.path)

    def create(self) -> int:
        """Create the file (mode 0644 minus umask) and return an open read-write descriptor."""
        with signals.blocked():  # `created` must be true exactly when the file is ours
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
            self.created = True
        return fd

    def discard(self) -> None:
        if self.created and not self.published:
            with signals.blocked():
                try:  # noqa: SIM105  (contextlib is not imported on `o`'s import-light path)
                    os.unlink(self.path)
                except FileNotFoundError:
                    pass
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


def publish(tmp: str | Path, final: str | Path) -> None:
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


def exists_error(final: str | Path, *, appeared: bool = False) -> ImageExistsError:
    if appeared:
        return ImageExistsError(
            f"{final}: already exists (another process created it while this one was working);"
            " it was left as it is",
            hint="choose another name, or look at it: condatainer overlay info " + str(final),
        )
    from condatainer.image import e2fs  # only to say what is in the way

    if os.path.islink(final):
        target = os.readlink(final)
        dangling = "" if os.path.exists(final) else ", which points to nothing"
        what = f"a symbolic link to {target}{dangling}"
    elif os.path.isdir(final):
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


def parent_of(path: str | Path) -> str:
    """The directory `path` is in (`.` for a bare name, like `Path.parent`)."""
    return os.path.dirname(str(path)) or "."


def check_target(final: str | Path) -> str:
    """Refuse an existing path or a parent we cannot write; return the parent directory."""
    if os.path.lexists(final):
        raise exists_error(final)
    parent = parent_of(final)
    shown = os.path.abspath(parent)
    if not os.path.exists(parent):
        raise ImageError(
            f"cannot create {final}: directory {shown} does not exist",
            hint=f"create it first: mkdir -p {shown}",
        )
    if not os.path.isdir(parent):
        raise ImageError(f"cannot create {final}: {shown} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ImageError(
            f"cannot create {final}: directory {shown} is not writable by you",
            hint="create the image in a directory you can write, e.g.:"
            f" condatainer o $HOME/{os.path.basename(final)}",
        )
    return parent
