"""`overlay create`: a new ext3 overlay image, made whole in a hidden file and then published.

- **Nothing half-made is ever visible.**  The image is built in a hidden temporary file in the
  target directory (`Temp`: `.<name>.tmp-<random>`), verified from its superblock (clean, a
  journal, filling the file: `clean.made_problem`; mke2fs's exit status is trusted for the
  rest, where a full `e2fsck -f` took 2.3 s at 100G), then published without clobbering a
  file another process created meanwhile.  A record (`records`) names the temporary file
  first, so even a SIGKILL leaves nothing the next command does not remove (`recovery`);
  mke2fs and friends hold the record's lock while they run and die with us.  Ctrl-C, SIGTERM,
  SIGHUP, a full disk or a failing mke2fs remove the temporary file; the interruption comes
  back as an `ImageError` with exit status 128+N.  A caller that must do more before the image
  may be seen (install an env into it: `condatainer o -- PKGS`) passes `prepare`, which runs on
  the finished temporary file just before it is published, under the same promises.
- Allocated images are made with `mke2fs -E nodiscard` (discard would punch holes and undo the
  allocation).  Sparse images are made *with* discard: the file is all holes anyway, and a
  successful discard tells mke2fs the blocks read back as zeros, so it skips writing the inode
  tables — a 10G `small` image then takes 68M of disk instead of 708M.
- The layout is Apptainer's (`layout`), all directories mode 0755, placed with `mke2fs -d` from
  a populated temporary tree.  Ownership: the caller's (or `uid`/`gid`), 0:0 with `fakeroot`.
  `mke2fs -d` copies owners from the tree, so as root (or when no change is needed) the tree is
  chowned; otherwise one batched `debugfs -w` pass of `set_inode_field` fixes every inode.  The
  root directory's owner is set with `-E root_owner=`.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable

from condatainer import runner, signals
from condatainer.display import Notify
from condatainer.errors import ImageError, UsageError
from condatainer.image import clean, e2fs, failures, layout, records, recovery, sizes
from condatainer.image.files import (
    Temp,
    allocate,
    allocated_bytes,
    check_target,
    free_bytes,
    umask_mode,
)
from condatainer.image.layout import PathLike
from condatainer.image.profiles import RESERVED_PERCENT, Profile, resolve_profile
from condatainer.image.sizes import format_size
from condatainer.progress import SILENT, Progress


@dataclass(frozen=True)
class CreateResult:
    """A newly published image."""

    path: Path
    size_bytes: int
    profile: Profile
    sparse: bool  # True when requested, or when the filesystem could not preallocate
    allocated_bytes: int  # st_blocks * 512 of the published file
    notices: list[str] = field(default_factory=list)


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
        bad = (
            not key
            or rel.is_absolute()
            or ".." in rel.parts
            or str(rel) == "."
            or any(c in key for c in "\n\r\0")
        )
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
    for rel in layout.LAYOUT_DIRS:
        mkdir(rel)
    for rel_file, data in files.items():
        parts = rel_file.parts
        for i in range(1, len(parts)):
            mkdir("/".join((layout.ENV_DIR, *parts[:i])))
        target = f"{layout.ENV_DIR}/{rel_file}"
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


def _set_owner_debugfs(
    image: Path, final: Path, paths: list[str], uid: int, gid: int, holding: tuple[int, ...]
) -> None:
    """One `debugfs -w` pass setting uid and gid on every populated inode."""
    lines = [
        f"set_inode_field {e2fs.quote(rel)} {field} {value}"
        for rel in paths
        for field, value in (("uid", uid), ("gid", gid))
    ]
    try:
        e2fs.debugfs_script(image, lines, write=True, holding=holding)
    except ImageError as err:
        raise ImageError(
            f"cannot create {final}: setting the owner with debugfs failed: {err.message}"
        ) from None


def _make_filesystem(
    tmp: Path,
    final: Path,
    profile: Profile,
    owner: tuple[int, int],
    files: Mapping[PurePosixPath, bytes],
    *,
    discard: bool,
    holding: tuple[int, ...],
    tree: Path,
) -> None:
    """mke2fs the image file `tmp` from a tree populated at `tree` (a recorded temporary
    directory beside the image: a SIGKILL leaves it to the next command, not to /tmp)."""
    uid, gid = owner
    try:
        root = tree
        paths = _populate(root, files)
        by_debugfs = not _chown_tree(root, paths, uid, gid)
        ext_opts = f"{'discard' if discard else 'nodiscard'},root_owner={uid}:{gid}"
        res = runner.run(
            [
                "mke2fs",
                "-q",
                "-F",
                "-t",
                "ext3",
                "-b",
                str(sizes.BLOCK),
                "-E",
                ext_opts,
                "-i",
                str(profile.bytes_per_inode),
                "-m",
                str(RESERVED_PERCENT),
                "-d",
                str(root),
                str(tmp),
            ],
            holding=holding,
        )
        if not res.ok:
            quota = failures.out_of_space(res)
            if quota is not None:
                raise failures.OutOfSpace(quota)
            raise ImageError(f"cannot create {final}: mke2fs failed: {failures.tool_detail(res)}")
        if by_debugfs:
            _set_owner_debugfs(tmp, final, paths, uid, gid, holding)
    finally:
        with signals.blocked():
            shutil.rmtree(tree, ignore_errors=True)
    problem = clean.made_problem(tmp)
    if problem is not None:
        raise ImageError(
            f"cannot create {final}: the new filesystem failed its check ({problem})",
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
    prepare: Callable[[Path], None] | None = None,
    progress: Progress = SILENT,
    notify: Notify | None = None,
) -> CreateResult:
    """Create an ext3 overlay image at `path` (`.img` appended when it has no image extension).

    `files` maps paths relative to the env prefix (`.condarc`) to their contents; they land in
    `upper/ext3/env`.  The image and its directories belong to the caller, or to `uid`/`gid`, or
    to 0:0 with `fakeroot`.  `prepare(temporary_path)` runs on the finished image before it is
    published (its errors and interruptions remove the image like any other failure).  An
    existing path (even a dangling symlink) is an ImageExistsError; on any failure or
    interruption nothing is left behind.  `progress` hears each stage (allocating, mke2fs).
    What an earlier, interrupted create of the same name left is removed first and reported
    through `notify` (default: the result's notices).
    """
    final = layout.normalise_image_name(os.fspath(path))
    prof = profile if isinstance(profile, Profile) else resolve_profile(profile)
    size = sizes.image_size(size_bytes)
    owner = _owner(fakeroot, uid, gid)
    env_files = _env_files(files or {})
    notices: list[str] = []
    recovery.repair_target(final, notify or notices.append)
    parent = check_target(final)
    runner.require("mke2fs")

    action = f"cannot create {final}"
    free = free_bytes(parent)
    if not sparse and free is not None and free < size:
        # Refused before anything is allocated: fallocate would fill the disk to the last
        # block (for every other user of it too) before it gave up.
        raise failures.space_error("create", action, parent, size, False)
    temp = Temp(final)
    tree = final.with_name(records.temp_name(final, "tree", secrets.token_hex(4)))
    record = recovery.begin(final, "create", files=[temp.path.name, tree.name])
    holding = (record.fd,)
    allocated = False
    try:
        with signals.termination_raises():
            fd = temp.create()
            try:
                if sparse:
                    os.ftruncate(fd, size)
                    allocated = False
                else:
                    progress.stage(
                        f"allocating {format_size(size)}",
                        total=size,
                        measure=lambda: allocated_bytes(temp.path),
                    )
                    allocated = allocate(fd, 0, size)
                    if not allocated:
                        os.ftruncate(fd, size)
                        notices.append(
                            f"the filesystem of {os.path.abspath(parent)} cannot preallocate"
                            f" space, so {final} is sparse: it takes disk space as it fills,"
                            " and writes fail if the disk fills up first"
                        )
            finally:
                os.close(fd)
            progress.stage("making the filesystem (mke2fs)")
            _make_filesystem(
                temp.path,
                final,
                prof,
                owner,
                env_files,
                discard=not allocated,
                holding=holding,
                tree=tree,
            )
            if allocated and allocated_bytes(temp.path) < size:
                # mke2fs zeroes the inode tables with fallocate(ZERO_RANGE); where that is
                # missing (tmpfs) it punches holes instead.  Fill them again.
                fd = os.open(temp.path, os.O_RDWR | os.O_CLOEXEC)
                try:
                    allocate(fd, 0, size)
                finally:
                    os.close(fd)
                if allocated_bytes(temp.path) < size:
                    notices.append(
                        f"only {format_size(allocated_bytes(temp.path))} of {final}'s"
                        f" {format_size(size)} could be preallocated"
                    )
            os.chmod(temp.path, umask_mode(0o644))
            if prepare is not None:
                prepare(temp.path)
            temp.publish()
            record.end()
    except BaseException as exc:
        temp.discard()
        record.end()
        err = failures.failure(
            "create",
            action,
            exc,
            final,
            parent,
            size,
            sparse=not allocated,
            published=temp.published,
        )
        if err is exc:
            raise
        raise err from exc
    return CreateResult(
        path=final,
        size_bytes=size,
        profile=prof,
        sparse=not allocated,
        allocated_bytes=allocated_bytes(final),
        notices=notices,
    )
