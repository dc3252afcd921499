"""`overlay resize`: grow or shrink an image, all or nothing.

- **A failed resize changes nothing.**  The image is held under Apptainer's exclusive lock for
  the whole operation and checked before and after.  resize2fs is *not* atomic (one that runs
  out of disk space midway leaves a damaged filesystem), so it runs with an undo file
  (`resize2fs -z`); on failure `e2undo` replays it and the file gets its old length back.
  While resize2fs moves blocks it must not die, so it runs in a session of its own (a terminal
  Ctrl-C does not reach it) and our own SIGINT/SIGTERM/SIGHUP are deferred until it is done.
"""

from __future__ import annotations

import os
import re
import secrets
import tempfile
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

from condatainer import runner
from condatainer.errors import ImageError
from condatainer.image import check, e2fs, failures, files, locks, sizes
from condatainer.image.layout import PathLike
from condatainer.image.sizes import MIB, format_size
from condatainer.progress import SILENT, Progress


@dataclass(frozen=True)
class ResizeResult:
    """What `resize` did; `changed` is False for a no-op."""

    old_bytes: int
    new_bytes: int
    changed: bool
    notices: list[str] = field(default_factory=list)


def _minimum_size(image: Path, block_size: int) -> int:
    # -f: resize2fs otherwise refuses even to estimate when the image was mounted since its
    # last check; the estimate is only read, and the caller checks the filesystem itself.
    res = runner.run(["resize2fs", "-f", "-P", str(image)])
    m = re.search(r"minimum size of the filesystem:\s*(\d+)", res.stdout)
    if not res.ok or m is None:
        raise ImageError(
            f"{image}: cannot work out how small it can be:"
            f" resize2fs -P: {failures.tool_detail(res)}"
        )
    return int(m.group(1)) * block_size


def run_resize2fs(image: Path, size: int | None, *flags: str) -> runner.Result:
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
            files.allocate(fd, current, length - current)
    finally:
        os.close(fd)


def resize(path: PathLike, size_bytes: int, *, progress: Progress = SILENT) -> ResizeResult:
    """Grow or shrink the image at `path` to `size_bytes` (rounded up to whole blocks).

    Holds the exclusive lock throughout.  Grow: extend the file (preallocating the new part when
    the image was allocated; a sparse image stays sparse), then resize2fs.  Shrink: refuse below
    what the filesystem can shrink to (`resize2fs -P`: files, journal, metadata), else
    resize2fs, then truncate.  Same size: nothing happens (changed=False).

    The filesystem is checked before (see `check.check_before`) and after (`e2fsck -f -n`).  Having
    checked it ourselves, we run `resize2fs -f`: without it resize2fs insists on a fresh
    `e2fsck -f` stamp, which a read-only check does not leave.  `-f` also lifts resize2fs's own
    minimum-size guard, which is why the floor is enforced here first.  `progress` hears
    each stage (checks, allocating, resize2fs).
    """
    image = Path(path)
    sizes.image_size(size_bytes)
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
        progress.stage("checking the filesystem (e2fsck)")
        notices += check.check_before(image, sb, "resized")
        if notices and new < old:
            _refuse_below_floor(image, e2fs.superblock(image), new)  # e2fsck changed counts
        st = os.stat(image)
        old_length = st.st_size
        allocated = files.is_allocated(st)
        with runner.signals_deferred() as received:
            if new > old:
                _grow(image, old, old_length, new, allocated, notices, progress)
            else:
                progress.stage("moving blocks and shrinking the filesystem (resize2fs)")
                _shrink(image, old, old_length, new, allocated, notices)
        failures.raise_if_interrupted(
            received,
            image,
            f"the resize to {format_size(new)} was finished first so the image stays consistent",
            hint=f"condatainer overlay check {image}",
        )
        progress.stage("checking the result (e2fsck)")
        check.verify_after(image, f"resized to {format_size(new)}")
    return ResizeResult(old, new, True, notices)


def _refuse_below_floor(image: Path, sb: e2fs.Superblock, new: int) -> None:
    """Refuse to shrink below what resize2fs can shrink the filesystem to (`resize2fs -P`),
    saying what that minimum is made of."""
    minimum = _minimum_size(image, sb.block_size)
    if new < minimum:
        raise ImageError(
            f"cannot shrink {image} to {format_size(new)}: the smallest its filesystem can be"
            f" is {format_size(minimum)} (resize2fs -P): {_minimum_parts(image, sb, minimum)}",
            hint=f"condatainer overlay resize {image} -s {sizes.size_argument(minimum)}"
            " (or free space first, e.g. condatainer mm clean)",
        )


def _minimum_parts(image: Path, sb: e2fs.Superblock, minimum: int) -> str:
    """What resize2fs's minimum is made of, in words: the files, the journal, the metadata of
    the block groups it keeps (mostly inode tables: their size is fixed per group by the inode
    profile), and what resize2fs adds to be safe.

    The files are what is in use minus today's metadata and journal; the groups kept are those
    the minimum spans; what remains is resize2fs's margin.
    """
    bs, per_group = sb.block_size, sb.blocks_per_group
    try:
        fields = e2fs.header(image)
        journal = int(fields.get("Total journal blocks", "0")) * bs
    except (ImageError, ValueError):
        journal = 0
    if not per_group:
        return f"{format_size(sb.used_bytes)} of it is in use, metadata included"
    groups_now = -(-sb.block_count // per_group)
    groups_kept = max(1, -(-(minimum // bs) // per_group))
    files = max(0, sb.used_bytes - _metadata_blocks(sb, 0, groups_now) * bs - journal)
    metadata = _metadata_blocks(sb, 0, groups_kept) * bs
    spare = minimum - files - journal - metadata
    parts = [
        f"{format_size(files)} of files and directories",
        f"{format_size(journal)} of journal",
        f"{format_size(metadata)} of inode tables, bitmaps and superblock copies"
        f" ({groups_kept} block group{'s' if groups_kept != 1 else ''} of"
        f" {format_size(per_group * bs)})",
    ]
    if spare > 0:
        parts.append(f"{format_size(spare)} resize2fs keeps spare")
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def _grow(
    image: Path,
    old: int,
    old_length: int,
    new: int,
    allocated: bool,
    notices: list[str],
    progress: Progress,
) -> None:
    action = f"cannot grow {image} to {format_size(new)}"
    metadata = _grow_metadata_bytes(image, old, new)
    # The file's new part (allocated images), the new groups' metadata (sparse ones: resize2fs
    # zeroes the inode tables with fallocate, which allocates) and the undo record, plus slack.
    needed = (new - old_length if allocated else metadata) + metadata + 8 * MIB
    free = files.free_bytes(image.parent)
    if free is not None and free < needed:
        full = failures.space_error("resize", action, image.parent, needed, False)
        raise failures.left_at(full, old)
    if not allocated:
        warning = files.sparse_warning(image, new, files.allocated_bytes(image))
        if warning is not None:
            notices.append(warning)
    if new > old_length:
        if allocated:
            progress.stage(
                f"allocating {format_size(new - old_length)} more",
                total=new,
                measure=lambda: files.allocated_bytes(image),
            )
        fd = os.open(image, os.O_RDWR | os.O_CLOEXEC)
        try:
            try:
                if allocated and not files.allocate(fd, old_length, new - old_length):
                    notices.append(
                        f"the filesystem of {image} cannot preallocate space;"
                        " the added space is sparse"
                    )
                os.ftruncate(fd, new)
            except OSError as exc:
                os.ftruncate(fd, old_length)
                err = failures.os_failure("resize", action, image.parent, exc, new - old_length)
                raise failures.left_at(err, old) from exc
        finally:
            os.close(fd)
    progress.stage("growing the filesystem (resize2fs)")
    notices += _resize_or_undo(image, action, old, old_length, new, allocated, needed=new - old)


def _shrink(
    image: Path, old: int, old_length: int, new: int, allocated: bool, notices: list[str]
) -> None:
    action = f"cannot shrink {image} to {format_size(new)}"
    notices += _resize_or_undo(image, action, old, old_length, new, allocated, needed=0)
    if os.stat(image).st_size != new:  # resize2fs truncates regular files itself; make sure
        os.truncate(image, new)


def _grow_metadata_bytes(image: Path, old: int, new: int) -> int:
    """About how many bytes resize2fs writes when growing from `old` to `new` bytes: the
    metadata of the new block groups.  Used to refuse a grow the disk cannot take before
    writing anything."""
    try:
        sb = e2fs.superblock(image)
    except ImageError:
        return 0  # unknown layout: skip the estimate, the undo record still protects us
    if not sb.blocks_per_group:
        return 0
    bs, per_group = sb.block_size, sb.blocks_per_group
    old_groups = -(-(old // bs) // per_group)
    new_groups = -(-(new // bs) // per_group)
    return _metadata_blocks(sb, old_groups, new_groups, total_groups=new_groups) * bs


def _metadata_blocks(
    sb: e2fs.Superblock, first: int, end: int, *, total_groups: int | None = None
) -> int:
    """The metadata blocks of block groups `first` to `end - 1` of an ext3 filesystem with
    `total_groups` groups (default `end`).

    Each group has a block bitmap, an inode bitmap and its inode table; groups that carry a
    superblock backup (0, 1 and powers of 3, 5, 7) also have the descriptor table and the
    reserved GDT blocks.
    """
    total = end if total_groups is None else total_groups
    gdt = -(-(total * 32) // sb.block_size)

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

    backups = sum(1 for g in range(first, end) if has_backup(g))
    per_group = 2 + sb.inode_blocks_per_group
    return (end - first) * per_group + backups * (1 + gdt + sb.reserved_gdt_blocks)


def _undo_path(image: Path) -> Path:
    """Where resize2fs keeps its undo file: beside the image, else in TMPDIR."""
    name = f".{image.name}.undo-{secrets.token_hex(4)}"
    if os.access(image.parent, os.W_OK | os.X_OK):
        return image.with_name(name)
    return Path(tempfile.gettempdir()) / name


def _resize_or_undo(
    image: Path, action: str, old: int, old_length: int, new: int, allocated: bool, *, needed: int
) -> list[str]:
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
        res = run_resize2fs(image, new, "-f", "-z", str(undo))
        if res.ok:
            return []
        if _finished_anyway(image, new):
            return [
                f"resize2fs reported a failure after it had finished"
                f" ({failures.tool_detail(res)}); {image} checks clean at {format_size(new)}"
            ]
        restored = _undo(image, undo, old, old_length, allocated)
    finally:
        with suppress(FileNotFoundError):
            os.unlink(undo)
    if not restored:
        raise ImageError(
            f"{action}: resize2fs failed midway ({failures.tool_detail(res)}) and the image"
            " could not be fully restored from its undo record",
            hint=f"condatainer overlay check {image} --repair",
        )
    quota = failures.out_of_space(res)
    if quota is not None:
        full = failures.space_error("resize", action, image.parent, needed, quota)
        raise failures.left_at(full, old)
    failed = ImageError(f"{action}: resize2fs failed: {failures.tool_detail(res)}")
    raise failures.left_at(failed, old)


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
