"""ext3 overlay images: create, resize, check, pack and unpack them with e2fsprogs.

Pure operations on plain values: no argparse, no printing.  Each returns a result dataclass whose
`notices` the CLI prints; every failure is a `CondatainerError` naming the image and the cause.
External programs run only through `runner`.

Promises kept here (design §1, §2, §7):

- **Nothing half-made is ever visible.**  `create` builds the image in a hidden temporary file in
  the target directory (`.<name>.tmp-<random>`), verifies it with `e2fsck -fn`, then publishes it
  with `link()` + `unlink()`, which fails rather than overwrite a file another process created in
  the meantime.  Ctrl-C, SIGTERM, SIGHUP, a full disk or a failing mke2fs remove the temporary
  file; the interruption comes back as an `ImageError` with exit status 128+N.
- **A failed resize changes nothing.**  The image is held under Apptainer's exclusive lock for
  the whole operation and checked before and after.  resize2fs is *not* atomic (one that runs
  out of disk space midway leaves a damaged filesystem), so it runs with an undo file
  (`resize2fs -z`); on failure `e2undo` replays it and the file gets its old length back.
  While resize2fs moves blocks it must not die, so it runs in a session of its own (a terminal
  Ctrl-C does not reach it) and our own SIGINT/SIGTERM/SIGHUP are deferred until it is done.
- **No operation writes an image another process holds** (`locks.hold`).

Decisions:

- Allocation uses Linux `fallocate(2)` directly (through ctypes), not glibc's `posix_fallocate`:
  where the filesystem cannot preallocate, glibc silently emulates it by writing one byte into
  every 4 KiB block (2.6 million writes for 10G, over NFS), while we want to fall back to a sparse
  file at once and say so.  Allocation is verified with `st_blocks`.
- Allocated images are made with `mke2fs -E nodiscard` (discard would punch holes and undo the
  allocation).  Sparse images are made *with* discard: the file is all holes anyway, and a
  successful discard tells mke2fs the blocks read back as zeros, so it skips writing the inode
  tables — a 10G `small` image then takes 68M of disk instead of 708M.
- The layout is Apptainer's: `upper/`, `work/` (the kernel creates `work/work` itself at mount
  time) and the conda prefix `upper/ext3/env`, all mode 0755, placed with `mke2fs -d` from a
  populated temporary tree.  Ownership: the caller's (or `uid`/`gid`), 0:0 with `fakeroot`.
  `mke2fs -d` copies owners from the tree, so as root (or when no change is needed) the tree is
  chowned; otherwise one batched `debugfs -w` pass of `set_inode_field` fixes every inode.  The
  root directory's owner is set with `-E root_owner=`.
- New image files get mode 0644 minus the umask (never group/world-writable because of a lax
  umask: such images are not trusted for activation).
- `pack` copies only the blocks in use (`e2image -ra`, sparse output; much faster than copying
  an allocated image and it drops the remains of deleted files), shrinks the copy to its
  minimum (`resize2fs -M`) and compresses it (`zstd -T0`).  The original size is recorded in a
  zstd *skippable frame* appended to the file: part of the zstd format, ignored by `zstd -d`, so
  the packed file is still a plain `.zst`.  `unpack` decompresses (sparse), grows back to the
  recorded size (allocated again if the original was), checks, and publishes without clobbering.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import re
import secrets
import signal
import struct
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from types import FrameType
from typing import Callable, Union

from condatainer import runner
from condatainer.errors import (
    CondatainerError,
    ImageError,
    ImageExistsError,
    SizeError,
    UsageError,
)
from condatainer.image import e2fs, locks
from condatainer.image.profiles import RESERVED_PERCENT, Profile, resolve_profile
from condatainer.image.sizes import MIB, MIN_IMAGE_BYTES, format_size

IMAGE_SUFFIXES = (".img", ".ext3")
"""Extensions an overlay image name may carry; any other name gets `.img` appended."""

BLOCK_SIZE = 4096
ENV_DIR = "upper/ext3/env"
"""Where the conda prefix lives inside the image (`/ext3/env` in the container)."""

LAYOUT_DIRS = ("upper", "work", "upper/ext3", ENV_DIR)
"""Directories every new image holds, parents first (Apptainer's overlay layout)."""

PACK_SUFFIX = ".zst"

PathLike = Union[str, "os.PathLike[str]"]


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class CreateResult:
    """A newly published image."""

    path: Path
    size_bytes: int
    profile: Profile
    sparse: bool  # True when requested, or when the filesystem could not preallocate
    allocated_bytes: int  # st_blocks * 512 of the published file
    notices: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ResizeResult:
    """What `resize` did; `changed` is False for a no-op."""

    old_bytes: int
    new_bytes: int
    changed: bool
    notices: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class CheckResult:
    """e2fsck's verdict: its exit code, whether the image is fit for use, and why, in words."""

    exit_code: int
    clean: bool
    explanation: str
    output: str
    notices: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class PackResult:
    """A packed image: `output` holds the zstd stream plus the size record."""

    image: Path
    output: Path
    original_bytes: int
    packed_bytes: int
    notices: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class UnpackResult:
    """An image restored from a packed file."""

    packed: Path
    output: Path
    size_bytes: int
    sparse: bool
    notices: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- names


def normalise_image_name(name: str) -> Path:
    """`env` -> `env.img`; names ending in `.img` or `.ext3` (any case) are kept as they are."""
    if not name or name.endswith(os.sep) or Path(name).name in ("", ".", ".."):
        raise ImageError(
            f"{name!r} is not an image file name",
            hint="name the image file, e.g. condatainer o env.img",
        )
    base = Path(name).name.lower()
    if any(base.endswith(s) and len(base) > len(s) for s in IMAGE_SUFFIXES):
        return Path(name)
    return Path(name + ".img")


# --------------------------------------------------------------------------- signals

_SIGNALS = runner.DEFERRED_SIGNALS


class Terminated(BaseException):
    """SIGTERM/SIGHUP arrived while we were creating an image (raised by our handler)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextmanager
def termination_raises() -> Iterator[None]:
    """Make SIGTERM and SIGHUP raise (like SIGINT does) so cleanup code runs.

    Only signals at their default action are taken over: a program that ignores SIGHUP
    (nohup) or handles SIGTERM itself keeps doing so.  Signal handlers belong to the main thread.
    """
    if not _in_main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        raise Terminated(signum)

    previous = {}
    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) is signal.SIG_DFL:
            previous[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextmanager
def _signals_blocked() -> Iterator[None]:
    """Hold SIGINT/SIGTERM/SIGHUP back for a few statements that must not be cut in two."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def raise_if_interrupted(received: Sequence[int], image: object, what: str,
                         hint: str | None = None) -> None:
    """After work run under runner.signals_deferred: a signal that arrived meanwhile becomes
    one ImageError saying what was finished first, with the shell's exit status 128+N."""
    if received:
        raise ImageError(f"{image}: interrupted by {_signal_name(received[0])}; {what}",
                         hint=hint, exit_code=128 + received[0])


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


# --------------------------------------------------------------------------- allocation


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


def _allocate(fd: int, offset: int, length: int) -> bool:
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


def _allocated_bytes(path: PathLike) -> int:
    return os.stat(path).st_blocks * 512


def _is_allocated(st: os.stat_result) -> bool:
    return st.st_blocks * 512 >= st.st_size


def _free_bytes(directory: PathLike) -> int | None:
    try:
        vfs = os.statvfs(directory)
    except OSError:
        return None
    return vfs.f_bavail * vfs.f_frsize


_SPACE_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
_SPACE_TEXT = ("No space left on device", "Disk quota exceeded")


class _OutOfSpace(Exception):
    """A tool ran out of disk space (or quota); turned into `_space_error` after cleanup."""

    def __init__(self, quota: bool):
        super().__init__(quota)
        self.quota = quota


# What each command can do to need less space, for the disk-full hint.
_SPACE_HINTS = {
    "create": "free some space or choose a smaller size (-s)",
    "resize": "free some space or choose a smaller size (-s)",
    "pack": "free some space or write the packed file on another filesystem (-o)",
    "unpack": "free some space, write the image on another filesystem (-o),"
              " or choose a smaller size (-s)",
}


def _space_error(command: str, action: str, directory: Path, needed: int, quota: bool, *,
                 sparse: bool = False) -> ImageError:
    """The disk-full (or quota) error, naming the directory and the space needed.

    The hint names what `command` (a key of `_SPACE_HINTS`) can do about it; only
    `create` can make a sparse image instead.  Build it after cleaning up, so the free space
    it reports is what the user really has.
    """
    free = _free_bytes(directory)
    have = f", {format_size(free)} free" if free is not None and not quota else ""
    cause = "your disk quota is exceeded" if quota else "not enough space"
    shown = os.path.abspath(directory)
    hint = _SPACE_HINTS[command]
    if sparse:
        return ImageError(
            f"{action}: {cause} in {shown} even for the filesystem's metadata{have}"
            f" (as a sparse image it would take up to {format_size(needed)} as it fills)",
            hint=hint,
        )
    if command == "create":
        hint += "; a sparse image (--sparse) takes space only as it fills"
    return ImageError(f"{action}: {cause} in {shown} (needs {format_size(needed)}{have})",
                      hint=hint)


def _umask_mode(mode: int) -> int:
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


# --------------------------------------------------------------------------- temporary files


class _Temp:
    """A hidden file next to the target, created exclusively; removed unless published."""

    def __init__(self, final: Path, tag: str = "tmp"):
        self.final = final
        self.path = final.with_name(f".{final.name}.{tag}-{secrets.token_hex(4)}")
        self.created = False
        self.published = False

    def create(self) -> int:
        """Create the file (mode 0644 minus umask) and return an open read-write descriptor."""
        with _signals_blocked():  # `created` must be true exactly when the file is ours
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
            self.created = True
        return fd

    def discard(self) -> None:
        if self.created and not self.published:
            with _signals_blocked():
                with suppress(FileNotFoundError):
                    os.unlink(self.path)
                self.created = False

    def publish(self) -> None:
        """Give the file its final name; ImageExistsError if that name was taken meanwhile."""
        with _signals_blocked():
            _publish(self.path, self.final)
            self.published = True


def _publish(tmp: Path, final: Path) -> None:
    try:
        os.link(tmp, final)
    except FileExistsError:
        raise _exists_error(final, appeared=True) from None
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK,
                             errno.ENOSYS, errno.EXDEV):
            raise
        # No hard links on this filesystem (CIFS, some FUSE): rename after checking.  The window
        # between the check and the rename is the best such a filesystem allows.
        if os.path.lexists(final):
            raise _exists_error(final, appeared=True) from None
        os.rename(tmp, final)
        return
    os.unlink(tmp)


def _exists_error(final: Path, *, appeared: bool = False) -> ImageExistsError:
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


def _check_target(final: Path) -> Path:
    """Refuse an existing path or a parent we cannot write; return the parent directory."""
    if os.path.lexists(final):
        raise _exists_error(final)
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


def _os_failure(command: str, action: str, directory: Path, exc: OSError,
                needed: int) -> CondatainerError:
    """Turn an OSError of `command` (create, resize, pack, unpack) into the user-facing error."""
    if exc.errno in _SPACE_ERRNOS:
        return _space_error(command, action, directory, needed, exc.errno == errno.EDQUOT)
    if exc.errno in (errno.EACCES, errno.EPERM):
        return ImageError(f"{action}: permission denied in {os.path.abspath(directory)}",
                          hint="choose a directory you can write")
    if exc.errno == errno.EROFS:
        return ImageError(f"{action}: {os.path.abspath(directory)} is on a read-only filesystem",
                          hint="choose a writable directory")
    if exc.errno == errno.EFBIG:
        return ImageError(f"{action}: the filesystem of {os.path.abspath(directory)} cannot hold"
                          f" a file of {format_size(needed)}", hint="choose a smaller size (-s)")
    return ImageError(f"{action}: {exc.strerror or exc}")


_NOISE = re.compile(
    r"^(mke2fs|e2fsck|resize2fs|debugfs|e2image|e2undo|dumpe2fs) \d+\.\d+"  # version banners
    r"|^Please run 'e2fsck -fy|^after the aborted resize operation"  # we undo, not the user
)


def _tool_detail(res: runner.Result) -> str:
    """One line saying why a tool failed: its first complaint on stderr, else its last word."""
    if res.returncode < 0:
        return f"killed by {_signal_name(-res.returncode)}"

    def meaningful(text: str) -> list[str]:
        return [ln.strip() for ln in text.splitlines() if ln.strip() and not _NOISE.match(ln)]

    errors = meaningful(res.stderr)
    if errors:
        return errors[0]
    said = meaningful(res.stdout)
    return said[-1] if said else f"exit status {res.returncode}"


def _out_of_space(res: runner.Result) -> bool | None:
    """None if the tool did not run out of space; else whether it was the quota."""
    text = res.stderr + res.stdout
    if _SPACE_TEXT[1] in text:
        return True
    if _SPACE_TEXT[0] in text:
        return False
    return None


# --------------------------------------------------------------------------- create


def _image_size(size_bytes: int) -> int:
    if size_bytes < MIN_IMAGE_BYTES:
        raise SizeError(
            f"size {format_size(size_bytes)} is below the minimum of"
            f" {format_size(MIN_IMAGE_BYTES)} (Apptainer refuses smaller overlay images)",
            hint=f"use at least -s {format_size(MIN_IMAGE_BYTES)}",
        )
    return -(-size_bytes // BLOCK_SIZE) * BLOCK_SIZE


def _owner(fakeroot: bool, uid: int | None, gid: int | None) -> tuple[int, int]:
    if fakeroot:
        if (uid or 0) != 0 or (gid or 0) != 0:
            raise UsageError("--fakeroot makes the image owned by 0:0; do not also give an owner")
        return 0, 0
    caller_uid, caller_gid = caller()
    return (caller_uid if uid is None else uid, caller_gid if gid is None else gid)


def caller() -> tuple[int, int]:
    """Who "the caller" is: under sudo, the user who ran sudo (SUDO_UID/SUDO_GID) — the one
    the builtin runtime drops to, so that `sudo condatainer o` makes an image that user can
    write — else the effective ids."""
    if os.geteuid() == 0:
        sudo_uid, sudo_gid = os.environ.get("SUDO_UID", ""), os.environ.get("SUDO_GID", "")
        if sudo_uid.isdigit() and sudo_gid.isdigit():
            return int(sudo_uid), int(sudo_gid)
    return os.geteuid(), os.getegid()


def _env_files(files: Mapping[str, bytes | str]) -> dict[PurePosixPath, bytes]:
    """Validate `files` keys (relative to the env prefix) and encode the contents."""
    checked: dict[PurePosixPath, bytes] = {}
    for key, data in files.items():
        rel = PurePosixPath(key)
        bad = (not key or rel.is_absolute() or ".." in rel.parts or str(rel) == "."
               or any(c in key for c in "\n\r\0"))
        if bad:
            raise ImageError(
                f"cannot place {key!r} in a new image: give a path inside the environment,"
                " relative to its prefix (like .condarc or conda-meta/pinned)"
            )
        checked[rel] = data.encode() if isinstance(data, str) else bytes(data)
    return checked


def _populate(root: Path, files: Mapping[PurePosixPath, bytes]) -> list[str]:
    """Build Apptainer's layout plus `files` under `root`; return every path made, parents first."""
    made: list[str] = []

    def mkdir(rel: str) -> None:
        if rel in made:
            return
        (root / rel).mkdir()
        os.chmod(root / rel, 0o755)  # not subject to the umask
        made.append(rel)

    root.mkdir(mode=0o755)
    os.chmod(root, 0o755)
    for rel in LAYOUT_DIRS:
        mkdir(rel)
    for rel_file, data in files.items():
        parts = rel_file.parts
        for i in range(1, len(parts)):
            mkdir("/".join((ENV_DIR, *parts[:i])))
        target = f"{ENV_DIR}/{rel_file}"
        (root / target).write_bytes(data)
        os.chmod(root / target, 0o644)
        made.append(target)
    return made


def _chown_tree(root: Path, paths: list[str], uid: int, gid: int) -> bool:
    """Give every populated path the wanted owner; False if we may not (not root)."""
    for rel in paths:
        st = os.lstat(root / rel)
        if (st.st_uid, st.st_gid) == (uid, gid):
            continue
        try:
            os.lchown(root / rel, uid, gid)
        except PermissionError:
            return False
    return True


def _set_owner_debugfs(image: Path, final: Path, paths: list[str], uid: int, gid: int) -> None:
    """One `debugfs -w` pass setting uid and gid on every populated inode."""
    lines = [
        f"set_inode_field {e2fs.quote(rel)} {field} {value}"
        for rel in paths
        for field, value in (("uid", uid), ("gid", gid))
    ]
    try:
        e2fs.debugfs_script(image, lines, write=True)
    except ImageError as err:
        raise ImageError(
            f"cannot create {final}: setting the owner with debugfs failed: {err.message}"
        ) from None


def _make_filesystem(tmp: Path, final: Path, profile: Profile, owner: tuple[int, int],
                     files: Mapping[PurePosixPath, bytes], *, discard: bool) -> None:
    uid, gid = owner
    with tempfile.TemporaryDirectory(prefix="condatainer-create-") as scratch:
        root = Path(scratch) / "root"
        paths = _populate(root, files)
        by_debugfs = not _chown_tree(root, paths, uid, gid)
        ext_opts = f"{'discard' if discard else 'nodiscard'},root_owner={uid}:{gid}"
        res = runner.run([
            "mke2fs", "-q", "-F", "-t", "ext3", "-b", str(BLOCK_SIZE), "-E", ext_opts,
            "-i", str(profile.bytes_per_inode), "-m", str(RESERVED_PERCENT),
            "-d", str(root), str(tmp),
        ])
        if not res.ok:
            quota = _out_of_space(res)
            if quota is not None:
                raise _OutOfSpace(quota)
            raise ImageError(f"cannot create {final}: mke2fs failed: {_tool_detail(res)}")
        if by_debugfs:
            _set_owner_debugfs(tmp, final, paths, uid, gid)
    res = runner.run(["e2fsck", "-f", "-n", str(tmp)])
    if not res.ok:
        raise ImageError(
            f"cannot create {final}: the new filesystem failed its check"
            f" (e2fsck exit {res.returncode}: {_tool_detail(res)})",
            hint="please report this with the output of: condatainer doctor",
        )


def create(
    path: PathLike,
    size_bytes: int,
    profile: Profile | str,
    *,
    sparse: bool = False,
    fakeroot: bool = False,
    files: Mapping[str, bytes | str] | None = None,
    uid: int | None = None,
    gid: int | None = None,
) -> CreateResult:
    """Create an ext3 overlay image at `path` (`.img` appended when it has no image extension).

    `files` maps paths relative to the env prefix (`.condarc`) to their contents; they land in
    `upper/ext3/env`.  The image and its directories belong to the caller, or to `uid`/`gid`, or
    to 0:0 with `fakeroot`.  An existing path (even a dangling symlink) is an ImageExistsError;
    on any failure or interruption nothing is left behind.
    """
    final = normalise_image_name(os.fspath(path))
    prof = profile if isinstance(profile, Profile) else resolve_profile(profile)
    size = _image_size(size_bytes)
    owner = _owner(fakeroot, uid, gid)
    env_files = _env_files(files or {})
    parent = _check_target(final)
    for tool in ("mke2fs", "e2fsck"):
        runner.require(tool)

    action = f"cannot create {final}"
    notices: list[str] = []
    temp = _Temp(final)
    allocated = False
    try:
        with termination_raises():
            fd = temp.create()
            try:
                if sparse:
                    os.ftruncate(fd, size)
                    allocated = False
                else:
                    allocated = _allocate(fd, 0, size)
                    if not allocated:
                        os.ftruncate(fd, size)
                        notices.append(
                            f"the filesystem of {os.path.abspath(parent)} cannot preallocate"
                            f" space, so {final} is sparse: it takes disk space as it fills,"
                            " and writes fail if the disk fills up first"
                        )
            finally:
                os.close(fd)
            _make_filesystem(temp.path, final, prof, owner, env_files, discard=not allocated)
            if allocated and _allocated_bytes(temp.path) < size:
                # mke2fs zeroes the inode tables with fallocate(ZERO_RANGE); where that is
                # missing (tmpfs) it punches holes instead.  Fill them again.
                fd = os.open(temp.path, os.O_RDWR | os.O_CLOEXEC)
                try:
                    _allocate(fd, 0, size)
                finally:
                    os.close(fd)
                if _allocated_bytes(temp.path) < size:
                    notices.append(
                        f"only {format_size(_allocated_bytes(temp.path))} of {final}'s"
                        f" {format_size(size)} could be preallocated"
                    )
            os.chmod(temp.path, _umask_mode(0o644))
            temp.publish()
    except BaseException as exc:
        temp.discard()
        err = _failure("create", action, exc, final, parent, size, sparse=not allocated,
                       published=temp.published)
        if err is exc:
            raise
        raise err from exc
    return CreateResult(
        path=final,
        size_bytes=size,
        profile=prof,
        sparse=not allocated,
        allocated_bytes=_allocated_bytes(final),
        notices=notices,
    )


def _failure(command: str, action: str, exc: BaseException, output: Path, parent: Path,
             needed: int, *, sparse: bool, published: bool) -> BaseException:
    """What the user is told when `exc` stopped `command` (create, pack, unpack) writing
    `output`: interrupted, out of space, or an OS error, each as an ImageError; `exc` itself
    when it is already ours (or a bug).  Call it after the temporary files are gone, so the
    free space it reports is what the user really has."""
    if isinstance(exc, KeyboardInterrupt):
        return _interrupted(output, signal.SIGINT, published)
    if isinstance(exc, Terminated):
        return _interrupted(output, exc.signum, published)
    if isinstance(exc, _OutOfSpace):
        return _space_error(command, action, parent, needed, exc.quota, sparse=sparse)
    if isinstance(exc, OSError):
        return _os_failure(command, action, parent, exc, needed)
    return exc


def _interrupted(final: Path, signum: int, published: bool) -> ImageError:
    name = _signal_name(signum)
    if published:
        return ImageError(f"{final}: interrupted by {name} just after the image was created;"
                          " it is complete", exit_code=128 + signum)
    return ImageError(f"creating {final} was interrupted by {name}; nothing was created",
                      exit_code=128 + signum)


# --------------------------------------------------------------------------- e2fsck words

_FSCK_BITS = (
    (1, "errors were found and corrected"),
    (2, "errors were corrected (e2fsck asks for a reboot, which only matters for a mounted"
        " root filesystem; nothing more to do for an image)"),
    (4, "errors were left uncorrected"),
    (8, "e2fsck could not do its job (an operational error: see its output)"),
    (16, "e2fsck was called wrongly (a usage error: please report it)"),
    (32, "the check was cancelled"),
    (128, "e2fsck failed to load a shared library (reinstall e2fsprogs)"),
)


def explain_fsck_exit(code: int) -> str:
    """e2fsck's exit code in words; codes are bit masks, so several reasons may apply."""
    if code == 0:
        return "no errors found"
    if code < 0:  # killed (the OOM killer, scancel): no e2fsck verdict at all
        return f"e2fsck was killed by {_signal_name(-code)} before it finished"
    parts = [text for bit, text in _FSCK_BITS if code & bit]
    if code & 2:  # "2" already says "corrected"; don't repeat bit 1's sentence
        parts = [p for p in parts if p != _FSCK_BITS[0][1]]
    unknown = code & ~sum(bit for bit, _ in _FSCK_BITS)
    if unknown or not parts:
        parts.append(f"unexpected exit status {code}")
    return "; ".join(parts)


def _check_before(image: Path, sb: e2fs.Superblock, before: str) -> list[str]:
    """Make sure the filesystem is sound before changing it, writing to it only if it is not.

    A clean superblock gets a read-only full check (`e2fsck -f -n`): a refused or failed
    operation then leaves the file byte-for-byte as it was (a preen would at least stamp the
    check time).  A journal to replay, a "not clean" flag or errors found get `e2fsck -f -p`,
    which fixes what is safe to fix unattended; what it will not fix is refused with the
    `--repair` hint.
    """
    if sb.clean:
        res = runner.run(["e2fsck", "-f", "-n", str(image)])
        if res.ok:
            return []
    with runner.signals_deferred() as received:  # a preen cut in two would do harm
        res = runner.run(["e2fsck", "-f", "-p", str(image)], new_session=True)
    raise_if_interrupted(received, image, "e2fsck was finished first; nothing was resized")
    if res.returncode & ~3:
        raise ImageError(
            f"{image}: e2fsck found problems it will not fix unattended, so it was not"
            f" {before} (e2fsck exit {res.returncode}: {explain_fsck_exit(res.returncode)};"
            f" {_tool_detail(res)})",
            hint=f"condatainer overlay check {image} --repair",
        )
    if "needs_recovery" in sb.features:
        return [f"e2fsck replayed the journal of {image} before it was {before}"]
    return [f"e2fsck checked and corrected {image} before it was {before}"]


def _verify_after(image: Path, done: str) -> None:
    res = runner.run(["e2fsck", "-f", "-n", str(image)])
    if not res.ok:
        raise ImageError(
            f"{image}: {done}, but e2fsck now reports problems"
            f" (exit {res.returncode}: {_tool_detail(res)})",
            hint=f"condatainer overlay check {image} --repair",
        )


# --------------------------------------------------------------------------- resize


def _size_arg(nbytes: int) -> str:
    """A `-s` value at least `nbytes` (whole MiB, at least the image minimum)."""
    mib = max(-(-nbytes // MIB), MIN_IMAGE_BYTES // MIB)
    return f"{mib}M"


def _minimum_size(image: Path, block_size: int) -> int:
    # -f: resize2fs otherwise refuses even to estimate when the image was mounted since its
    # last check; the estimate is only read, and the caller checks the filesystem itself.
    res = runner.run(["resize2fs", "-f", "-P", str(image)])
    m = re.search(r"minimum size of the filesystem:\s*(\d+)", res.stdout)
    if not res.ok or m is None:
        raise ImageError(f"{image}: cannot work out how small it can be:"
                         f" resize2fs -P: {_tool_detail(res)}")
    return int(m.group(1)) * block_size


def _resize2fs(image: Path, size: int | None, *flags: str) -> runner.Result:
    """Run `resize2fs [flags] IMAGE [SIZE]` in its own session.

    A terminal's Ctrl-C goes to the whole foreground process group; resize2fs killed while it
    moves blocks leaves a broken filesystem, so it gets a session of its own and the
    caller defers our own signals until it is done.
    """
    resize2fs = runner.require("resize2fs")
    argv = [resize2fs, *flags, str(image)] + ([f"{size // 1024}K"] if size is not None else [])
    return runner.run(argv, new_session=True)


def _set_length(image: Path, length: int, allocated: bool) -> None:
    """Give the file `length` bytes again (after a failure), allocating regrown space."""
    current = os.stat(image).st_size
    if current == length:
        return
    fd = os.open(image, os.O_RDWR | os.O_CLOEXEC)
    try:
        os.ftruncate(fd, length)
        if allocated and length > current:
            _allocate(fd, current, length - current)
    finally:
        os.close(fd)


def resize(path: PathLike, size_bytes: int) -> ResizeResult:
    """Grow or shrink the image at `path` to `size_bytes` (rounded up to whole blocks).

    Holds the exclusive lock throughout.  Grow: extend the file (preallocating the new part when
    the image was allocated; a sparse image stays sparse), then resize2fs.  Shrink: refuse below
    what the filesystem can shrink to (`resize2fs -P`, never less than the space in use), else
    resize2fs, then truncate.  Same size: nothing happens (changed=False).

    The filesystem is checked before (see `_check_before`) and after (`e2fsck -f -n`).  Having
    checked it ourselves, we run `resize2fs -f`: without it resize2fs insists on a fresh
    `e2fsck -f` stamp, which a read-only check does not leave.  `-f` also lifts resize2fs's own
    minimum-size guard, which is why the floor is enforced here first.
    """
    image = Path(path)
    _image_size(size_bytes)
    for tool in ("e2fsck", "resize2fs", "e2undo"):
        runner.require(tool)
    notices: list[str] = []
    with locks.hold(image, write=True):
        sb = e2fs.superblock(image)
        bs = sb.block_size
        new = -(-size_bytes // bs) * bs
        old = sb.size_bytes
        if new == old:
            return ResizeResult(old, new, False, [])
        if new < old:
            _refuse_below_floor(image, sb, new)  # before anything is written
        notices += _check_before(image, sb, "resized")
        if notices and new < old:
            _refuse_below_floor(image, e2fs.superblock(image), new)  # e2fsck changed counts
        st = os.stat(image)
        old_length = st.st_size
        allocated = _is_allocated(st)
        with runner.signals_deferred() as received:
            if new > old:
                _grow(image, old, old_length, new, allocated, notices)
            else:
                _shrink(image, old, old_length, new, allocated, notices)
        raise_if_interrupted(
            received, image,
            f"the resize to {format_size(new)} was finished first so the image stays consistent",
            hint=f"condatainer overlay check {image}",
        )
        _verify_after(image, f"resized to {format_size(new)}")
    return ResizeResult(old, new, True, notices)


def _refuse_below_floor(image: Path, sb: e2fs.Superblock, new: int) -> None:
    """Refuse to shrink below what is in use or below what resize2fs can shrink to."""
    minimum = _minimum_size(image, sb.block_size)
    floor = max(minimum, sb.used_bytes)
    if new < floor:
        raise ImageError(
            f"cannot shrink {image} to {format_size(new)}: {format_size(sb.used_bytes)}"
            f" of it is in use, and its filesystem cannot be made smaller than"
            f" {format_size(floor)}",
            hint=f"condatainer overlay resize {image} -s {_size_arg(floor)}"
            " (or free space first, e.g. condatainer mm clean)",
        )


def _grow(image: Path, old: int, old_length: int, new: int, allocated: bool,
          notices: list[str]) -> None:
    action = f"cannot grow {image} to {format_size(new)}"
    metadata = _grow_metadata_bytes(image, old, new)
    # The file's new part (allocated images), the new groups' metadata (sparse ones: resize2fs
    # zeroes the inode tables with fallocate, which allocates) and the undo record, plus slack.
    needed = (new - old_length if allocated else metadata) + metadata + 8 * MIB
    free = _free_bytes(image.parent)
    if free is not None and free < needed:
        raise _left_at(_space_error("resize", action, image.parent, needed, False), old)
    if new > old_length:
        fd = os.open(image, os.O_RDWR | os.O_CLOEXEC)
        try:
            try:
                if allocated and not _allocate(fd, old_length, new - old_length):
                    notices.append(f"the filesystem of {image} cannot preallocate space;"
                                   " the added space is sparse")
                os.ftruncate(fd, new)
            except OSError as exc:
                os.ftruncate(fd, old_length)
                err = _os_failure("resize", action, image.parent, exc, new - old_length)
                raise _left_at(err, old) from exc
        finally:
            os.close(fd)
    notices += _resize_or_undo(image, action, old, old_length, new, allocated,
                               needed=new - old)


def _shrink(image: Path, old: int, old_length: int, new: int, allocated: bool,
            notices: list[str]) -> None:
    action = f"cannot shrink {image} to {format_size(new)}"
    notices += _resize_or_undo(image, action, old, old_length, new, allocated, needed=0)
    if os.stat(image).st_size != new:  # resize2fs truncates regular files itself; make sure
        os.truncate(image, new)


def _grow_metadata_bytes(image: Path, old: int, new: int) -> int:
    """About how many bytes resize2fs writes when growing from `old` to `new` bytes.

    Each new block group gets a block bitmap, an inode bitmap and its inode table; groups that
    carry a superblock backup (0, 1 and powers of 3, 5, 7) also get the descriptor table and
    the reserved GDT blocks.  Used to refuse a grow the disk cannot take before writing anything.
    """
    try:
        sb = e2fs.superblock(image)
    except ImageError:
        return 0  # unknown layout: skip the estimate, the undo record still protects us
    bs, per_group, itable = sb.block_size, sb.blocks_per_group, sb.inode_blocks_per_group
    reserved_gdt = sb.reserved_gdt_blocks
    if not per_group:
        return 0
    old_groups = -(-(old // bs) // per_group)
    new_groups = -(-(new // bs) // per_group)
    gdt = -(-(new_groups * 32) // bs)

    def has_backup(g: int) -> bool:
        if g <= 1:
            return True
        for base in (3, 5, 7):
            n = base
            while n < g:
                n *= base
            if n == g:
                return True
        return False

    backups = sum(1 for g in range(old_groups, new_groups) if has_backup(g))
    blocks = (new_groups - old_groups) * (2 + itable) + backups * (1 + gdt + reserved_gdt)
    return blocks * bs


def _undo_path(image: Path) -> Path:
    """Where resize2fs keeps its undo file: beside the image, else in TMPDIR."""
    name = f".{image.name}.undo-{secrets.token_hex(4)}"
    if os.access(image.parent, os.W_OK | os.X_OK):
        return image.with_name(name)
    return Path(tempfile.gettempdir()) / name


def _resize_or_undo(image: Path, action: str, old: int, old_length: int, new: int,
                    allocated: bool, *, needed: int) -> list[str]:
    """Run resize2fs with an undo file; on failure replay it so nothing has changed.

    resize2fs is not atomic: one that fails midway (a full disk or quota while it writes the
    new groups' metadata, an I/O error, a kill) leaves a damaged filesystem and asks for
    `e2fsck -fy`.  With `-z UNDO` it first saves every block it overwrites; `e2undo` puts them
    back, and the file gets its old length again.  The undo file lives beside the image (the
    user's own space, no surprise RAM use in a tmpfs /tmp) and holds about what resize2fs
    writes: the new groups' inode tables when growing, the moved blocks when shrinking.  If
    saving a block fails, resize2fs stops before overwriting it.
    """
    undo = _undo_path(image)
    try:
        res = _resize2fs(image, new, "-f", "-z", str(undo))
        if res.ok:
            return []
        if _finished_anyway(image, new):
            return [f"resize2fs reported a failure after it had finished ({_tool_detail(res)});"
                    f" {image} checks clean at {format_size(new)}"]
        restored = _undo(image, undo, old, old_length, allocated)
    finally:
        with suppress(FileNotFoundError):
            os.unlink(undo)
    if not restored:
        raise ImageError(
            f"{action}: resize2fs failed midway ({_tool_detail(res)}) and the image could not"
            " be fully restored from its undo record",
            hint=f"condatainer overlay check {image} --repair",
        )
    quota = _out_of_space(res)
    if quota is not None:
        raise _left_at(_space_error("resize", action, image.parent, needed, quota), old)
    raise _left_at(ImageError(f"{action}: resize2fs failed: {_tool_detail(res)}"), old)


def _finished_anyway(image: Path, new: int) -> bool:
    """resize2fs failed *after* finishing (superblock written, e.g. killed before it exited).

    The filesystem is then whole at its new size.  Undoing is no longer possible after a
    shrink (resize2fs has already cut the moved blocks' old places off the file), and not
    needed: the resize counts as done.
    """
    try:
        if e2fs.superblock(image).size_bytes != new:
            return False
    except ImageError:
        return False
    return runner.run(["e2fsck", "-f", "-n", str(image)]).ok


def _undo(image: Path, undo: Path, old: int, old_length: int, allocated: bool) -> bool:
    """Replay resize2fs's undo file and restore the length; True if the image is as before.

    e2undo may complain about blocks past the old end (on a full disk it cannot write their
    old zeros back); they are cut off anyway, so the verdict is the superblock and a read-only
    `e2fsck -f -n`, not e2undo's exit status.
    """
    if undo.exists() and undo.stat().st_size > 0:
        runner.run(["e2undo", str(undo), str(image)])
    _set_length(image, old_length, allocated)
    try:
        sb = e2fs.superblock(image)
    except ImageError:
        return False
    if sb.size_bytes != old or not runner.run(["e2fsck", "-f", "-n", str(image)]).ok:
        return False
    if not sb.clean:
        # An incomplete undo record (resize2fs killed, or a quota hit while saving) makes
        # e2undo mark the filesystem "not clean"; the full check above found nothing wrong,
        # so a preen pass only sets the flag back.
        return runner.run(["e2fsck", "-f", "-p", str(image)]).returncode & ~3 == 0
    return True


def _left_at(err: CondatainerError, old: int) -> ImageError:
    return ImageError(f"{err.message}; the image was left as it was ({format_size(old)})",
                      hint=err.hint)


# --------------------------------------------------------------------------- check


def _superblock_or_none(image: Path) -> e2fs.Superblock | None:
    try:
        return e2fs.superblock(image)
    except ImageError:
        return None


def check(path: PathLike, *, force: bool = False, repair: bool = False) -> CheckResult:
    """Run e2fsck on the image and say in words what it found.

    Without `repair`: `e2fsck -n` under a read lock (nothing is written).  With `repair`:
    `e2fsck -p` under the exclusive lock, then `e2fsck -y` if preen mode gives up.  `force` adds
    `-f`: without it e2fsck trusts a filesystem marked clean and does not look further.

    A read-only check cannot replay a journal that needs recovery (e2fsck -n even calls such an
    image "clean"); the superblock is read to say so, and such an image is never `clean` here.
    """
    image = Path(path)
    runner.require("e2fsck")
    with locks.hold(image, write=repair):
        if not e2fs.looks_like_ext(image):
            raise ImageError(
                f"{image}: not an ext3 image (no ext2/3/4 superblock)",
                hint="overlay images are made with: condatainer o IMAGE",
            )
        before = _superblock_or_none(image)
        flags = ["-f"] if force else []
        outputs: list[str] = []
        if repair:
            # A repair cut in two leaves a worse filesystem: its own session, our signals
            # deferred until it is done.
            with runner.signals_deferred() as received:
                res = runner.run(["e2fsck", *flags, "-p", str(image)], new_session=True)
                outputs.append(res.stdout + res.stderr)
                if res.returncode & 4:  # preen gave up: UNEXPECTED INCONSISTENCY
                    res = runner.run(["e2fsck", *flags, "-y", str(image)], new_session=True)
                    outputs.append(res.stdout + res.stderr)
            raise_if_interrupted(received, image, "the repair was finished first",
                                 hint=f"condatainer overlay check {image}")
        else:
            res = runner.run(["e2fsck", *flags, "-n", str(image)])
            outputs.append(res.stdout + res.stderr)
        after = _superblock_or_none(image)

    code = res.returncode
    output = "\n".join(o.rstrip("\n") for o in outputs)
    words = [f"{image}: {explain_fsck_exit(code)}"]
    clean = (code & ~3) == 0 and after is not None and after.clean
    if code & 4 and not repair:
        words.append(f"to fix them, run: condatainer overlay check {image} --repair")
    elif code & 4:
        words.append("e2fsck could not fix everything; copy out what you need"
                     " (condatainer overlay export) and build a new image")
    if not repair and before is not None:
        if "needs_recovery" in before.features:
            words.append(
                "its journal needs recovery (it was not unmounted cleanly); a read-only check"
                " cannot replay it, and a read-only mount would fail; replay it with:"
                f" condatainer overlay check {image} --repair")
        elif before.state != "clean":
            words.append(
                f"its filesystem is marked '{before.state}'; mark it clean with:"
                f" condatainer overlay check {image} --repair")
    if (code == 0 and not force and before is not None and before.clean
            and re.search(r":\s*clean,", output)):
        words.append("e2fsck trusted the clean flag and skipped the full check;"
                     " add -f to force one")
    return CheckResult(exit_code=code, clean=clean, explanation="\n".join(words), output=output)


# --------------------------------------------------------------------------- pack / unpack

_SKIPPABLE_MAGIC = 0x184D2A5E  # one of the 16 zstd skippable-frame magics (0x184D2A50..5F)
_RECORD_PAYLOAD = 248  # fixed, so the record is the last 256 bytes of the file
_RECORD_KIND = "condatainer-pack"


def _size_record(size: int, allocated: bool) -> bytes:
    """The skippable zstd frame that carries the original size (fixed length: read back from
    the end of the file).  No file name in it: unpack names the image after the packed file,
    and a name could make the payload overflow its fixed size."""
    data = {"kind": _RECORD_KIND, "version": 1, "size_bytes": size, "allocated": allocated}
    payload = json.dumps(data, sort_keys=True).encode()
    assert len(payload) <= _RECORD_PAYLOAD
    return struct.pack("<II", _SKIPPABLE_MAGIC, _RECORD_PAYLOAD) + payload.ljust(_RECORD_PAYLOAD)


def read_pack_record(packed: PathLike) -> dict[str, object] | None:
    """The record `pack` appended to a packed image, or None for a plain `.zst` file."""
    total = 8 + _RECORD_PAYLOAD
    try:
        with open(packed, "rb") as f:
            f.seek(0, os.SEEK_END)
            if f.tell() < total:
                return None
            f.seek(-total, os.SEEK_END)
            raw = f.read(total)
    except OSError:
        return None
    magic, length = struct.unpack("<II", raw[:8])
    if magic != _SKIPPABLE_MAGIC or length != _RECORD_PAYLOAD:
        return None
    try:
        data = json.loads(raw[8:].decode())
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("kind") != _RECORD_KIND:
        return None
    return data


def pack(path: PathLike, out: PathLike | None = None) -> PackResult:
    """Shrink a copy of the image to its minimum and compress it to `out` (default IMAGE.zst).

    The original is only read, under a read lock, while its blocks in use are copied; it must be
    clean.  `out` is never overwritten.
    """
    image = Path(path)
    output = Path(out) if out is not None else image.with_name(image.name + PACK_SUFFIX)
    for tool in ("e2image", "e2fsck", "resize2fs", "zstd"):
        runner.require(tool)
    parent = _check_target(output)
    copy = _Temp(output, "copy")
    temp = _Temp(output)
    action = f"cannot pack {image} into {output}"
    needed = 0
    try:
        with termination_raises():
            with locks.hold(image, write=False):
                e2fs.require_clean(image)
                sb = e2fs.superblock(image)
                needed = sb.used_bytes
                allocated = _is_allocated(os.stat(image))
                os.close(copy.create())
                res = runner.run(["e2image", "-ra", str(image), str(copy.path)])
                if not res.ok:
                    raise _pack_failure(action, "e2image", res)
            res = runner.run(["e2fsck", "-f", "-p", str(copy.path)])
            if res.returncode & ~3:
                raise ImageError(f"{action}: the copy failed its check: {_tool_detail(res)}",
                                 hint=f"condatainer overlay check {image} -f")
            res = _resize2fs(copy.path, None, "-M")
            if not res.ok:
                raise _pack_failure(action, "resize2fs", res)
            os.close(temp.create())
            res = runner.run(["zstd", "-T0", "-q", "-f", str(copy.path), "-o", str(temp.path)])
            if not res.ok:
                raise _pack_failure(action, "zstd", res)
            copy.discard()
            with open(temp.path, "ab") as f:
                f.write(_size_record(sb.size_bytes, allocated))
            os.chmod(temp.path, _umask_mode(0o644))
            temp.publish()
    except BaseException as exc:
        copy.discard()
        temp.discard()
        err = _failure("pack", action, exc, output, parent, needed, sparse=False,
                       published=temp.published)
        if err is exc:
            raise
        raise err from exc
    return PackResult(image=image, output=output, original_bytes=sb.size_bytes,
                      packed_bytes=os.stat(output).st_size)


def _pack_failure(action: str, tool: str, res: runner.Result) -> Exception:
    quota = _out_of_space(res)
    if quota is not None:
        return _OutOfSpace(quota)
    return ImageError(f"{action}: {tool} failed: {_tool_detail(res)}")


def _unpacked_name(packed: Path) -> Path:
    if not packed.name.lower().endswith(PACK_SUFFIX) or len(packed.name) <= len(PACK_SUFFIX):
        raise ImageError(f"{packed}: the name does not end in {PACK_SUFFIX}, so the image name"
                         " cannot be derived from it", hint="name the output: -o IMAGE.img")
    return normalise_image_name(str(packed)[: -len(PACK_SUFFIX)])


def unpack(packed: PathLike, out: PathLike | None = None, *,
           size_bytes: int | None = None) -> UnpackResult:
    """Restore an image from `pack`'s output: `out` defaults to the packed name minus `.zst`.

    The image grows back to `size_bytes`, else to the size recorded at pack time (allocated again
    if the original was).  A plain `.zst` of an image (no record) needs `size_bytes`.  `out` is
    never overwritten; on any failure nothing is left behind.
    """
    src = Path(packed)
    if not src.is_file():
        raise ImageError(f"{src}: no such packed image" if not src.exists()
                         else f"{src}: not a file")
    output = normalise_image_name(os.fspath(out)) if out is not None else _unpacked_name(src)
    for tool in ("zstd", "e2fsck", "resize2fs"):
        runner.require(tool)
    record = read_pack_record(src)
    target_size = size_bytes
    if target_size is None:
        recorded = record.get("size_bytes") if record else None
        if not isinstance(recorded, int):
            raise ImageError(f"{src}: holds no size record (it was not made by condatainer"
                             " overlay pack)", hint="give the size of the unpacked image: -s SIZE")
        target_size = recorded
    target_size = _image_size(target_size)
    allocated = bool(record.get("allocated")) if record else False
    parent = _check_target(output)
    temp = _Temp(output)
    action = f"cannot unpack {src} into {output}"
    notices: list[str] = []
    try:
        with termination_raises():
            os.close(temp.create())
            res = runner.run(["zstd", "-d", "-q", "-f", "--sparse", str(src), "-o",
                              str(temp.path)])
            if not res.ok:
                raise _pack_failure(action, "zstd", res)
            sb = e2fs.superblock(temp.path)
            if target_size < sb.size_bytes:
                raise ImageError(f"{action}: it holds a filesystem of {format_size(sb.size_bytes)},"
                                 f" more than the requested {format_size(target_size)}",
                                 hint=f"give at least -s {_size_arg(sb.size_bytes)}")
            if allocated:
                fd = os.open(temp.path, os.O_RDWR | os.O_CLOEXEC)
                try:
                    if not _allocate(fd, 0, target_size):
                        allocated = False
                        notices.append(f"the filesystem of {os.path.abspath(parent)} cannot"
                                       f" preallocate space, so {output} is sparse")
                finally:
                    os.close(fd)
            if target_size > sb.size_bytes:
                res = runner.run(["e2fsck", "-f", "-p", str(temp.path)])
                if res.returncode & ~3:
                    raise ImageError(f"{action}: the packed filesystem failed its check:"
                                     f" {_tool_detail(res)}")
                res = _resize2fs(temp.path, target_size)
                if not res.ok:
                    raise _pack_failure(action, "resize2fs", res)
            res = runner.run(["e2fsck", "-f", "-n", str(temp.path)])
            if not res.ok:
                raise ImageError(f"{action}: the unpacked filesystem failed its check"
                                 f" (e2fsck exit {res.returncode}: {_tool_detail(res)})")
            os.chmod(temp.path, _umask_mode(0o644))
            temp.publish()
    except BaseException as exc:
        temp.discard()
        err = _failure("unpack", action, exc, output, parent, target_size,
                       sparse=not allocated, published=temp.published)
        if err is exc:
            raise
        raise err from exc
    return UnpackResult(packed=src, output=output, size_bytes=target_size,
                        sparse=not allocated, notices=notices)
