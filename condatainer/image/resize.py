"""`overlay resize`: grow or shrink an image, all or nothing.

- **A failed resize changes nothing.**  The image is held under Apptainer's exclusive lock for
  the whole operation and checked before and after.  resize2fs is *not* atomic (one that runs
  out of disk space midway leaves a damaged filesystem), so it runs with an undo file
  (`resize2fs -z`); on failure `e2undo` replays it and the file gets its old length back.
  While resize2fs moves blocks it must not die, so it runs in a session of its own (a terminal
  Ctrl-C does not reach it) and our own SIGINT/SIGTERM/SIGHUP are deferred until it is done.
- **A killed resize is undone by the next command.**  Before the file is touched, a record
  (`records`: the sizes and the undo file's name) is written beside the image.  resize2fs
  holds the image's lock and the record's while it runs and dies with us, so a SIGKILL never
  leaves it writing an unlocked image; the next command that writes the image finishes or
  rolls back what was left (`recovery`).  The undo file and the record live beside the image,
  so its directory must be writable.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

from condatainer import runner, signals
from condatainer.display import Notify
from condatainer.errors import ImageError
from condatainer.image import check, e2fs, failures, files, locks, records, recovery, sizes
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


def run_resize2fs(
    image: str | Path, size: int | None, *flags: str, holding: Sequence[int]
) -> runner.Result:
    """Run `resize2fs [flags] IMAGE [SIZE]` in its own session, holding `holding`.

    A terminal's Ctrl-C goes to the whole foreground process group; resize2fs killed while it
    moves blocks leaves a broken filesystem, so it gets a session of its own and the
    caller defers our own signals until it is done.  It inherits the locked descriptors in
    `holding` (the image's, the record's) and dies with us.
    """
    resize2fs = runner.require("resize2fs")
    argv = [resize2fs, *flags, str(image)] + ([f"{size // 1024}K"] if size is not None else [])
    return runner.run(argv, new_session=True, holding=holding)


class _Kept(ImageError):
    """The resize failed and could not be undone here: its record stays for the next repair."""


def resize(
    path: PathLike,
    size_bytes: int,
    *,
    progress: Progress = SILENT,
    notify: Notify | None = None,
) -> ResizeResult:
    """Grow or shrink the image at `path` to `size_bytes` (rounded up to whole blocks).

    Holds the exclusive lock throughout.  Grow: extend the file (preallocating the new part when
    the image was allocated; a sparse image stays sparse), then resize2fs.  Shrink: refuse below
    what the filesystem can shrink to (`resize2fs -P`: files, journal, metadata), else
    resize2fs, then truncate.  Same size: nothing happens (changed=False).

    The filesystem is checked before (see `check.check_before`) and after (`e2fsck -f -n`).  Having
    checked it ourselves, we run `resize2fs -f`: without it resize2fs insists on a fresh
    `e2fsck -f` stamp, which a read-only check does not leave.  `-f` also lifts resize2fs's own
    minimum-size guard, which is why the floor is enforced here first.  `progress` hears
    each stage (checks, allocating, resize2fs).  What an interrupted operation left on the
    image is repaired first and reported through `notify` (default: the result's notices).
    """
    image = Path(path)
    sizes.image_size(size_bytes)
    for tool in ("e2fsck", "resize2fs", "e2undo"):
        runner.require(tool)
    notices: list[str] = []
    with locks.hold(image, write=True) as lock:
        recovery.repair_image(image, lock, notify or notices.append)
        sb = e2fs.superblock(image)
        bs = sb.block_size
        new = -(-size_bytes // bs) * bs
        old = sb.size_bytes
        if new == old:
            return ResizeResult(old, new, False, notices)
        _require_writable_directory(image, new > old)
        if new < old:
            _refuse_below_floor(image, sb, new)  # before anything is written
        progress.stage("checking the filesystem (e2fsck)")
        checked = check.check_before(image, sb, "resized", lock)
        notices += checked
        if checked and new < old:
            _refuse_below_floor(image, e2fs.superblock(image), new)  # e2fsck changed counts
        st = os.stat(image)
        plan = records.Sizes(st.st_size, old, new, files.is_allocated(st))
        undo = records.temp_name(image, "undo")
        record = recovery.begin(image, "resize", undo=undo, sizes=plan)
        try:
            with signals.deferred() as received:
                if new > old:
                    notices += _grow(image, record, (lock.fd, record.fd), progress)
                else:
                    progress.stage("moving blocks and shrinking the filesystem (resize2fs)")
                    notices += _shrink(image, record, (lock.fd, record.fd))
        except _Kept:
            os.close(record.fd)  # dead now: the next command repairs it
            raise
        except BaseException:
            record.end()
            raise
        record.end()
        failures.raise_if_interrupted(
            received,
            image,
            f"the resize to {format_size(new)} was finished first so the image stays consistent",
            hint=f"condatainer overlay check {image}",
        )
        progress.stage("checking the result (e2fsck)")
        check.verify_after(image, f"resized to {format_size(new)}")
    return ResizeResult(old, new, True, notices)


def _require_writable_directory(image: Path, grow: bool) -> None:
    """The undo file and the record live beside the image: its directory must take them."""
    parent = image.parent
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ImageError(
            f"cannot {'grow' if grow else 'shrink'} {image}: its directory"
            f" {os.path.abspath(parent)} is not writable by you, and the undo record that"
            " makes a resize safe is kept beside the image",
            hint="move the image into a directory you can write, then resize it there",
        )


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
    image: Path, record: records.Record, holding: Sequence[int], progress: Progress
) -> list[str]:
    plan = record.facts.sizes
    assert plan is not None
    old, old_length, new = plan.old_bytes, plan.old_length, plan.new_bytes
    allocated = plan.allocated
    action = f"cannot grow {image} to {format_size(new)}"
    metadata = _grow_metadata_bytes(image, old, new)
    # The file's new part (allocated images), the new groups' metadata (sparse ones: resize2fs
    # zeroes the inode tables with fallocate, which allocates) and the undo record, plus slack.
    needed = (new - old_length if allocated else metadata) + metadata + 8 * MIB
    free = files.free_bytes(image.parent)
    if free is not None and free < needed:
        full = failures.space_error("resize", action, image.parent, needed, False)
        raise failures.left_at(full, old)
    notices: list[str] = []
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
    return notices + _resize_or_undo(image, action, record, holding, needed=new - old)


def _shrink(image: Path, record: records.Record, holding: Sequence[int]) -> list[str]:
    plan = record.facts.sizes
    assert plan is not None
    action = f"cannot shrink {image} to {format_size(plan.new_bytes)}"
    notices = _resize_or_undo(image, action, record, holding, needed=0)
    if os.stat(image).st_size != plan.new_bytes:  # resize2fs truncates regular files itself
        os.truncate(image, plan.new_bytes)
    return notices


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


def _resize_or_undo(
    image: Path, action: str, record: records.Record, holding: Sequence[int], *, needed: int
) -> list[str]:
    """Run resize2fs with an undo file; on failure replay it so nothing has changed.

    resize2fs is not atomic: one that fails midway (a full disk or quota while it writes the
    new groups' metadata, an I/O error, a kill) leaves a damaged filesystem and asks for
    `e2fsck -fy`.  With `-z UNDO` it first saves every block it overwrites; `e2undo` puts them
    back, and the file gets its old length again (`recovery.roll_back`, the same steps the next
    command takes after a SIGKILL).  The undo file lives beside the image (the user's own
    space, no surprise RAM use in a tmpfs /tmp) and holds about what resize2fs writes: the new
    groups' inode tables when growing, the moved blocks when shrinking.  If saving a block
    fails, resize2fs stops before overwriting it.
    """
    facts = record.facts
    plan = facts.sizes
    assert plan is not None and facts.undo is not None
    undo = record.file(facts.undo)
    res = run_resize2fs(image, plan.new_bytes, "-f", "-z", str(undo), holding=holding)
    if res.ok or _finished_anyway(image, plan.new_bytes):
        with suppress(FileNotFoundError):
            os.unlink(undo)
        if res.ok:
            return []
        return [
            f"resize2fs reported a failure after it had finished"
            f" ({failures.tool_detail(res)}); {image} checks clean at"
            f" {format_size(plan.new_bytes)}"
        ]
    outcome, why = recovery.roll_back(image, facts, holding)
    if outcome != "rolled back":
        raise _Kept(
            f"{action}: resize2fs failed midway ({failures.tool_detail(res)}) and the image"
            f" could not be fully restored from its undo record ({why or outcome})",
            hint=f"condatainer overlay check {image} --repair",
        )
    with suppress(FileNotFoundError):
        os.unlink(undo)
    quota = failures.out_of_space(res)
    if quota is not None:
        full = failures.space_error("resize", action, image.parent, needed, quota)
        raise failures.left_at(full, plan.old_bytes)
    failed = ImageError(f"{action}: resize2fs failed: {failures.tool_detail(res)}")
    raise failures.left_at(failed, plan.old_bytes)


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
