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
- **Import-light up to mke2fs.**  `begin` does everything up to a running mke2fs with this
  module's own imports, which load no `re`, `pathlib`, `dataclasses`, `json` or `subprocess`
  (a test holds the list); `Making.finish` imports little more while mke2fs works (the check
  of the result; error messages only on an error; no pathlib: `CreateResult.file` is a str):
  a burst of imports on the other core slows mke2fs itself.  `condatainer o` reaches `begin`
  without the CLI (`newenv`), so a small image takes little more than mke2fs itself
  (bench/bench_image.py).
"""

from __future__ import annotations

import os

from condatainer import runner, signals
from condatainer.errors import ImageError, UsageError
from condatainer.image import layout, records, sizes
from condatainer.image.files import (
    Temp,
    allocate,
    allocated_bytes,
    check_target,
    free_bytes,
    umask_mode,
)
from condatainer.image.profiles import RESERVED_PERCENT, Profile, resolve_profile
from condatainer.progress import SILENT, Progress
from condatainer.record import Record

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from pathlib import Path
    from types import TracebackType
    from typing import NoReturn

    from condatainer.display import Notify
    from condatainer.image.layout import PathLike


class CreateResult(Record):
    """A newly published image."""

    file: str  # its path (`path`, without importing pathlib)
    size_bytes: int
    profile: Profile
    sparse: bool  # True when requested, or when the filesystem could not preallocate
    allocated_bytes: int  # st_blocks * 512 of the published file
    notices: Sequence[str] = ()

    @property
    def path(self) -> Path:
        from pathlib import Path

        return Path(self.file)


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


def _env_files(files: Mapping[str, bytes | str]) -> dict[str, bytes]:
    """Validate `files` keys (relative to the env prefix, normalised as pathlib would) and
    encode the contents."""
    checked: dict[str, bytes] = {}
    for key, data in files.items():
        root, parts = layout.posix_parts(key)
        bad = not key or bool(root) or ".." in parts or not parts or any(c in key for c in "\n\r\0")
        if bad:
            raise ImageError(
                f"cannot place {key!r} in a new image: give a path inside the environment,"
                " relative to its prefix (like .condarc or conda-meta/pinned)"
            )
        checked["/".join(parts)] = data.encode() if isinstance(data, str) else bytes(data)
    return checked


def _populate(root: str, files: Mapping[str, bytes]) -> list[str]:
    """Build Apptainer's layout plus `files` under `root`; return every path made, parents first."""
    made: list[str] = []

    def mkdir(rel: str) -> None:
        if rel in made:
            return
        where = os.path.join(root, rel)
        os.mkdir(where)
        os.chmod(where, 0o755)  # not subject to the umask
        made.append(rel)

    os.mkdir(root, 0o755)
    os.chmod(root, 0o755)
    for rel in layout.LAYOUT_DIRS:
        mkdir(rel)
    for rel_file, data in files.items():
        parts = rel_file.split("/")
        for i in range(1, len(parts)):
            mkdir("/".join((layout.ENV_DIR, *parts[:i])))
        target = f"{layout.ENV_DIR}/{rel_file}"
        fd = os.open(os.path.join(root, target), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        os.chmod(os.path.join(root, target), 0o644)
        made.append(target)
    return made


def _chown_tree(root: str, paths: list[str], uid: int, gid: int) -> bool:
    """Give every populated path the wanted owner; False if we may not (not root)."""
    for rel in paths:
        where = os.path.join(root, rel)
        st = os.lstat(where)
        if (st.st_uid, st.st_gid) == (uid, gid):
            continue
        try:
            os.lchown(where, uid, gid)
        except PermissionError:
            return False
    return True


def _remove_tree(tree: str, made: Sequence[str] = ()) -> None:
    """Remove the populated tree; best effort.  By name when `made` is what `_populate` made
    (the usual case, a few system calls); otherwise (part of it made, say) by walking it."""
    try:
        for rel in reversed(made):
            _remove(os.path.join(tree, rel))
        os.rmdir(tree)
        return
    except OSError:
        pass  # not all of it was made, or not only that: walk it
    for where, dirs, names in os.walk(tree, topdown=False):
        for name in (*names, *dirs):  # a symlink to a directory is among `dirs`: unlinked
            _try(_remove, os.path.join(where, name))
    _try(os.rmdir, tree)


def _remove(path: str) -> None:
    """Remove an empty directory, or anything else that is not a directory."""
    try:
        os.rmdir(path)
    except NotADirectoryError:
        os.unlink(path)


def _try(remove: Callable[[str], None], path: str) -> None:
    try:  # noqa: SIM105  (contextlib is not imported here: see the module docstring)
        remove(path)
    except OSError:
        pass


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
    with begin(
        path, size_bytes, profile, sparse=sparse, fakeroot=fakeroot, files=files, uid=uid,
        gid=gid, progress=progress, notify=notify,
    ) as making:  # fmt: skip
        return making.finish(prepare)


def begin(
    path: PathLike,
    size_bytes: int,
    profile: Profile | str,
    *,
    sparse: bool = False,
    fakeroot: bool = False,
    files: Mapping[str, bytes | str] | None = None,
    uid: int | None = None,
    gid: int | None = None,
    progress: Progress = SILENT,
    notify: Notify | None = None,
) -> Making:
    """The first half of `create` (the same arguments): everything up to a running mke2fs.

    Returns the create under way, to be used in `with`: its `finish` completes it, and
    anything raised in the block before that (an interruption while the caller imports, say)
    removes everything, as a failure of `create` itself would.
    """
    final = layout.image_name(os.fspath(path))
    prof = profile if isinstance(profile, Profile) else resolve_profile(profile)
    size = sizes.image_size(size_bytes)
    owner = _owner(fakeroot, uid, gid)
    env_files = _env_files(files or {})
    notices: list[str] = []
    if os.path.lexists(records.path_for(final)):  # what an earlier create left, if anything
        from pathlib import Path

        from condatainer.image import recovery

        recovery.repair_target(Path(final), notify or notices.append)
    parent = check_target(final)
    runner.require("mke2fs")

    if not sparse:
        free = free_bytes(parent)
        if free is not None and free < size:
            # Refused before anything is allocated: fallocate would fill the disk to the last
            # block (for every other user of it too) before it gave up.
            from condatainer.image import failures

            action = f"cannot create {final}"
            raise failures.space_error("create", action, parent, size, False)
    temp = Temp(final)
    tree = records.sibling(final, records.temp_name(final, "tree"))
    try:
        record = records.begin(final, "create", files=[temp.name, os.path.basename(tree)])
    except (OSError, records.Busy) as exc:
        from condatainer.image import recovery

        raise recovery.begin_error(final, "create", exc) from None
    making = Making(final, parent, size, prof, owner, temp, tree, record, notices)
    making.start(env_files, sparse, progress)
    return making


class Making:
    """A create under way: its record, its hidden file and tree, and mke2fs while it runs.

    From `start` to the end of `finish`, SIGTERM and SIGHUP raise (like Ctrl-C) and every
    failure removes what was made (`_raise_failed`), in `finish` or anywhere in the `with`
    block around it.
    """

    def __init__(
        self,
        final: str,
        parent: str,
        size: int,
        profile: Profile,
        owner: tuple[int, int],
        temp: Temp,
        tree: str,
        record: records.Record,
        notices: list[str],
    ):
        self.final, self.parent, self.size, self.profile = final, parent, size, profile
        self.owner, self.temp, self.tree, self.record = owner, temp, tree, record
        self.notices = notices
        self.allocated = False
        self.paths: list[str] = []
        self.by_debugfs = False
        self.mke2fs: runner.Running | None = None
        self._signals = signals.termination_raises()
        self._over = False  # finished, or failed and cleaned up

    def __enter__(self) -> Making:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self._over:
            self._raise_failed(exc or RuntimeError("an image create was left unfinished"))

    def start(self, files: Mapping[str, bytes], sparse: bool, progress: Progress) -> None:
        """Allocate the hidden file, populate the tree, start mke2fs."""
        self._signals.__enter__()
        try:
            self._allocate(sparse, progress)
            progress.stage("making the filesystem (mke2fs)")
            uid, gid = self.owner
            self.paths = _populate(self.tree, files)
            self.by_debugfs = not _chown_tree(self.tree, self.paths, uid, gid)
            discard = "nodiscard" if self.allocated else "discard"
            self.mke2fs = runner.start(
                [
                    "mke2fs",
                    "-q",
                    "-F",
                    "-t",
                    "ext3",
                    "-b",
                    str(sizes.BLOCK),
                    "-E",
                    f"{discard},root_owner={uid}:{gid}",
                    "-i",
                    str(self.profile.bytes_per_inode),
                    "-m",
                    str(RESERVED_PERCENT),
                    "-d",
                    self.tree,
                    os.fspath(self.temp.path),
                ],
                holding=(self.record.fd,),
            )
        except BaseException as exc:
            self._raise_failed(exc)

    def _allocate(self, sparse: bool, progress: Progress) -> None:
        fd = self.temp.create()
        try:
            if sparse:
                os.ftruncate(fd, self.size)
                return
            progress.stage(
                f"allocating {sizes.format_size(self.size)}",
                total=self.size,
                measure=lambda: allocated_bytes(self.temp.path),
            )
            self.allocated = allocate(fd, 0, self.size)
            if not self.allocated:
                os.ftruncate(fd, self.size)
                self.notices.append(
                    f"the filesystem of {os.path.abspath(self.parent)} cannot preallocate"
                    f" space, so {self.final} is sparse: it takes disk space as it fills,"
                    " and writes fail if the disk fills up first"
                )
        finally:
            os.close(fd)

    def finish(self, prepare: Callable[[Path], None] | None = None) -> CreateResult:
        """Wait for mke2fs, check and publish the image (after `prepare(hidden file)`)."""
        mode = umask_mode(0o644)
        try:
            self._filesystem_made()
            temp = self.temp.path
            if self.allocated and allocated_bytes(temp) < self.size:
                # mke2fs zeroes the inode tables with fallocate(ZERO_RANGE); where that is
                # missing (tmpfs) it punches holes instead.  Fill them again.
                fd = os.open(temp, os.O_RDWR | os.O_CLOEXEC)
                try:
                    allocate(fd, 0, self.size)
                finally:
                    os.close(fd)
                if allocated_bytes(temp) < self.size:
                    self.notices.append(
                        f"only {sizes.format_size(allocated_bytes(temp))} of {self.final}'s"
                        f" {sizes.format_size(self.size)} could be preallocated"
                    )
            os.chmod(temp, mode)
            if prepare is not None:
                from pathlib import Path

                prepare(Path(temp))
            self.temp.publish()
            self.record.end()
        except BaseException as exc:
            self._raise_failed(exc)
        finally:
            self._signals.__exit__(None, None, None)
        self._over = True
        return CreateResult(
            file=self.final,
            size_bytes=self.size,
            profile=self.profile,
            sparse=not self.allocated,
            allocated_bytes=allocated_bytes(self.final),
            notices=self.notices,
        )

    def _filesystem_made(self) -> None:
        """mke2fs has finished and made a filesystem that checks out; the tree is gone."""
        from condatainer.image import clean  # imported while mke2fs works

        assert self.mke2fs is not None
        try:
            res = self.mke2fs.wait()
            self.mke2fs = None
            if not res.ok:
                from condatainer.image import failures

                quota = failures.out_of_space(res)
                if quota is not None:
                    raise failures.OutOfSpace(quota)
                raise ImageError(
                    f"cannot create {self.final}: mke2fs failed: {failures.tool_detail(res)}"
                )
            if self.by_debugfs:
                self._set_owner_debugfs()
        finally:
            with signals.blocked():
                _remove_tree(self.tree, self.paths)
        problem = clean.made_problem(self.temp.path)
        if problem is not None:
            raise ImageError(
                f"cannot create {self.final}: the new filesystem failed its check ({problem})",
                hint="please report this with the output of: condatainer doctor",
            )

    def _set_owner_debugfs(self) -> None:
        """One `debugfs -w` pass setting uid and gid on every populated inode."""
        from condatainer.image import e2fs

        uid, gid = self.owner
        lines = [
            f"set_inode_field {e2fs.quote(rel)} {field} {value}"
            for rel in self.paths
            for field, value in (("uid", uid), ("gid", gid))
        ]
        try:
            e2fs.debugfs_script(self.temp.path, lines, write=True, holding=(self.record.fd,))
        except ImageError as err:
            raise ImageError(
                f"cannot create {self.final}: setting the owner with debugfs failed: {err.message}"
            ) from None

    def _raise_failed(self, exc: BaseException) -> NoReturn:
        """Remove what was made, let go of the record, and raise what the user is told about
        `exc` (`exc` itself when it is already ours)."""
        from condatainer.image import failures

        self._over = True
        if self.mke2fs is not None:
            self.mke2fs.stop()
            self.mke2fs = None
        with signals.blocked():
            _remove_tree(self.tree, self.paths)
        self.temp.discard()
        self.record.end()
        self._signals.__exit__(None, None, None)
        err = failures.failure(
            "create",
            f"cannot create {self.final}",
            exc,
            self.final,
            self.parent,
            self.size,
            sparse=not self.allocated,
            published=self.temp.published,
        )
        if err is exc:
            raise exc
        raise err from exc
