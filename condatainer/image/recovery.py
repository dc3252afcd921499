"""Finishing or rolling back what an interrupted operation left: the other half of `records`.

Who calls what:

- Commands that create a file (`o`/create, unpack, pack's output) call `repair_target` on the
  name they are about to create, before they write their own record.
- Commands that write an image in place (resize, chown, `check --repair`) call `repair_image`
  while they hold its write lock; writable runs (`e`, `exec -w`, `mm install`, through
  `run.resolve`) call `repair_before_writing`, which takes the lock for the repair only.
- Read-only users (`exec`, shims, `mm list`, `overlay export`) call `refuse_if_interrupted`:
  one stat, and an error with the repair command when the image is half-changed.
- `overlay info` and `doctor` list `leftovers` with their size and the repair command.

What a repair does, by operation:

- create, unpack, pack: their output only ever appears whole (published with a hard link), so
  the dead record's temporary files are removed and that is all.
- resize, chown: the image itself was being written.  The undo file is replayed with e2undo
  (`undo.replay`): the image is as before.  Two exceptions, both decided from the image itself:
  a shrink whose file is already shorter than the old filesystem had finished (resize2fs cuts
  the file only after closing the filesystem; undoing would lose the cut-off blocks), so it is
  completed; and when e2undo refuses (the tool died between rewriting the superblock and
  updating its undo file, so the two disagree), the filesystem is checked and kept as it is --
  at the old size it was not resized, at the new one it was -- if e2fsck finds it sound.
  Anything else is left alone and reported with `overlay check --repair`.

Each repair is reported in one line through `notify`.  A record of another host is never
repaired automatically: the error names it and the command to run once its owner is gone
(`condatainer overlay check IMAGE --repair --from-host HOST`).  Every run imports this
module, so what only a repair needs (ctypes, e2undo's format) is imported where it is used.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from contextlib import suppress
from pathlib import Path

from condatainer import runner, signals
from condatainer.display import Notify
from condatainer.errors import CondatainerError, ImageError, LockError
from condatainer.image import e2fs, locks, records
from condatainer.image.sizes import format_size
from condatainer.record import Record


def _ignore(text: str) -> None:
    pass


class UndoFailed(ImageError):
    """A dead resize or chown could not be finished or rolled back; its record was kept."""


HALFWAY = "replaying the undo record stopped halfway"


def undo_failed(err: ImageError) -> bool:
    """Whether `err` says the record could not be settled *and* its undo file is no longer of
    use (so e2fsck may take over); a replay that stopped halfway is resumed instead."""
    return isinstance(err, UndoFailed) and HALFWAY not in err.message


def repair_command(target: Path, host: str | None = None) -> str:
    extra = f" --from-host {host}" if host else ""
    return f"condatainer overlay check {target} --repair{extra}"


def describe(found: records.Found, *, named: bool = True) -> str:
    """One line about a record: what it was doing (on which file, unless `named` is False),
    whose it is, what it left."""
    of = f" of {found.target}" if named else ""
    facts = found.facts
    if facts is None:
        what = f"unknown operation{of} (its record: {found.problem})"
    else:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(facts.started))
        what = f"{facts.op}{of} by {facts.where()}, started {when}"
    left = ", ".join(p.name for p, _ in found.files)
    size = f" ({format_size(found.leftover_bytes)})" if found.leftover_bytes else ""
    return f"{what}; it left {left or 'only its record'}{size}"


def _foreign_error(found: records.Found) -> ImageError:
    facts = found.facts
    if facts is None:
        return ImageError(
            f"{found.path}: named like a condatainer record, but not one it can use"
            f" ({found.problem}); nothing was changed",
            hint=f"if no condatainer command is working on {found.target}, remove it:"
            f" rm {found.path}",
        )
    return ImageError(
        f"{found.target}: an unfinished {describe(found, named=False)}; it may still be running"
        " there (its lock cannot be seen from here), so it is left alone",
        hint=f"once that process is gone: {repair_command(found.target, facts.host)}",
    )


def _live_error(found: records.Found) -> LockError:
    holders = locks.find_holders(found.path)
    who = holders[0].describe() if holders else found.facts.where() if found.facts else "a process"
    op = found.facts.op if found.facts else "an operation"
    return LockError(
        f"{found.target}: in use: {who} is still working on it ({op})",
        hint="wait until it finishes, then run the command again",
    )


def _remove(paths: Sequence[Path]) -> None:
    """Remove recorded leftovers (files; a `.tree-` one is a directory we populated)."""
    with signals.blocked():
        for p in paths:
            if p.is_dir() and not p.is_symlink():
                import shutil  # only when there is a leftover tree

                shutil.rmtree(p, ignore_errors=True)
            else:
                with suppress(FileNotFoundError):
                    os.unlink(p)


def _settle_temp_files(claim: records.Claim) -> str:
    """A dead create/pack/unpack: its output appeared whole or not at all; remove the rest."""
    found = claim.found
    names = [p.name for p, _ in found.files]
    _remove([p for p, _ in found.files])
    claim.done()
    if not names:
        return f"removed the record of an interrupted {found.op} of {found.target}"
    size = f" ({format_size(found.leftover_bytes)})" if found.leftover_bytes else ""
    return (
        f"removed what an interrupted {found.op} of {found.target} left: {', '.join(names)}{size}"
    )


def repair_target(
    target: Path, notify: Notify = _ignore, *, foreign_host: str | None = None
) -> None:
    """Before creating `target`: settle a dead record of an earlier operation on that name.

    A live record means another process is preparing the same name: LockError naming it.  A
    record of another host (or one we cannot read): ImageError naming it, unless
    `foreign_host` says its owner is known to be gone.  In-place records (resize, chown) of an
    existing `target` are left to `repair_image`, which needs the image's lock.
    """
    path = records.path_for(target)
    found = records.inspect(path)
    if found is None:
        return
    if found.state == records.LIVE:
        raise _live_error(found)
    if found.facts is not None and found.facts.undo is not None:
        return  # resize/chown of an existing image: repaired under its lock
    claim = records.claim(path, foreign_host=foreign_host)
    if claim is None:
        again = records.inspect(path)
        if again is not None:
            raise _not_claimed(again)
        return
    notify(_settle_temp_files(claim))


def _not_claimed(found: records.Found) -> CondatainerError:
    """Why a record could not be claimed for repair, as the error to show."""
    if found.state == records.LIVE:
        return _live_error(found)
    if found.state == records.FOREIGN:
        return _foreign_error(found)
    return ImageError(  # dead, but its record is not ours to change (another user's)
        f"{found.target}: an interrupted {describe(found, named=False)}; its record"
        f" {found.path.name} is not writable by you",
        hint=f"ask its owner (or root) to run: {repair_command(found.target)}",
    )


def begin(
    target: Path,
    op: str,
    *,
    files: Sequence[str] = (),
    undo: str | None = None,
    sizes: records.Sizes | None = None,
) -> records.Record:
    """Write the record of `op` on `target` (see `records.begin`); a record already there
    becomes the error that names its owner."""
    try:
        return records.begin(target, op, files=files, undo=undo, sizes=sizes)
    except (OSError, records.Busy) as exc:
        raise begin_error(target, op, exc) from None


def begin_error(target: str | Path, op: str, exc: OSError | records.Busy) -> CondatainerError:
    """What the user is told when the record of `op` on `target` cannot be written (`exc`
    from `records.begin`): the directory is not writable, or another record is there."""
    if isinstance(exc, OSError):
        where = os.path.dirname(os.path.abspath(target))
        return ImageError(
            f"cannot {op} {target}: the record that lets a later command undo an interrupted"
            f" {op} cannot be written in {where}: {exc.strerror}",
            hint="work on the image in a directory you can write",
        )
    found = exc.found
    if found.state == records.LIVE:
        return _live_error(found)
    if found.state == records.FOREIGN:
        return _foreign_error(found)
    return ImageError(
        f"{target}: an interrupted {describe(found, named=False)}",
        hint=repair_command(Path(target)),
    )


def repair_directory(
    directory: Path, notify: Notify = _ignore, *, skip: Path | None = None
) -> None:
    """Remove the leftovers of dead create/pack/unpack records in `directory` (one listing).

    Live and foreign records, and in-place ones (which need their image's lock), are left
    alone here: `overlay info` and `doctor` show them.
    """
    for found in records.scan(directory):
        if found.state != records.DEAD or found.path == skip:
            continue
        if found.facts is not None and found.facts.undo is not None:
            continue
        claim = records.claim(found.path)
        if claim is not None:
            notify(_settle_temp_files(claim))


def repair_image(
    image: Path,
    lock: locks.ImageLock,
    notify: Notify = _ignore,
    *,
    foreign_host: str | None = None,
) -> None:
    """Under the image's write lock: settle its dead record (resize, chown, or a create that
    died after publishing), then the dead temporary files beside it."""
    path = records.path_for(image)
    if os.path.lexists(path):
        claim = records.claim(path, foreign_host=foreign_host)
        if claim is None:
            found = records.inspect(path)
            # LIVE: a create finishing up after publishing; it removes its own record.
            if found is not None and found.state != records.LIVE:
                raise _not_claimed(found)
        elif claim.found.facts is not None and claim.found.facts.undo is not None:
            notify(settle_in_place(image, claim, lock))
        else:
            notify(_settle_temp_files(claim))
    repair_directory(image.parent, notify, skip=path)


def repair_before_writing(image: Path, notify: Notify = _ignore) -> None:
    """For a writable run: repair the image under its write lock, taken for the repair only.

    Cheap when there is nothing to do (one stat, one listing).  When the image is in use the
    repair is left to whoever holds it; the runtime's own lock then reports the holder.
    """
    if not os.path.lexists(records.path_for(image)):
        repair_directory(image.parent, notify)
        return
    try:
        lock = locks.acquire(image, write=True)
    except LockError:
        return
    try:
        repair_image(image, lock, notify)
    finally:
        lock.release()


def refuse_if_interrupted(image: Path) -> None:
    """For read-only users: refuse an image an interrupted resize or chown left half-changed.

    One stat when all is well.  Reports, never repairs (a reader must not write).
    """
    path = records.path_for(image)
    if not os.path.lexists(path):
        return
    found = records.inspect(path)
    if found is None or found.state == records.LIVE:
        return  # a live writer: the lock probe names it
    if found.facts is None or found.facts.undo is None:
        return  # a create that died after publishing: the image is whole
    host = None if found.state == records.DEAD else found.facts.host
    raise ImageError(
        f"{image}: an interrupted {describe(found, named=False)}; the image may be"
        " half-changed until that is undone",
        hint=repair_command(image, host),
    )


class Leftover(Record):
    """One record found beside an image, for `overlay info` and `doctor`."""

    record: Path
    state: str  # live, dead, foreign, unrecorded
    description: str
    size_bytes: int
    repair: str | None  # the command that repairs it (None: nothing to do, it is running)

    def render(self) -> str:
        text = f"{self.description} [{self.state}]"
        return f"{text}; repair: {self.repair}" if self.repair else text


def leftovers(directory: Path) -> list[Leftover]:
    """What interrupted operations left in `directory`, with sizes and repair commands."""
    found = records.scan(directory)
    out = []
    for f in found:
        if f.state == records.LIVE:
            holders = locks.find_holders(f.path)
            who = holders[0].describe() if holders else "a process"
            out.append(Leftover(f.path, "in progress", f"{f.op} of {f.target} by {who}", 0, None))
            continue
        host = f.facts.host if f.state == records.FOREIGN and f.facts else None
        repair = repair_command(f.target, host) if f.facts or f.problem == "empty" else None
        if repair is None:
            repair = f"rm {f.path}"
        out.append(Leftover(f.path, f.state, describe(f), f.leftover_bytes, repair))
    for path, size in records.unrecorded(directory, found):
        out.append(
            Leftover(
                path,
                "unrecorded",
                f"{path.name} ({format_size(size)}): a temporary file no record names"
                " (an older condatainer's)",
                size,
                f"rm {path}",
            )
        )
    return out


def drop_record(
    image: Path, lock: locks.ImageLock, *, foreign_host: str | None = None
) -> list[str]:
    """After e2fsck repaired an image whose record could not be settled: let the record go."""
    claim = records.claim(records.path_for(image), foreign_host=foreign_host)
    if claim is None:
        return []
    found = claim.found
    _remove([p for p, _ in found.files])
    claim.done()
    return [f"{image}: removed the record of an interrupted {describe(found, named=False)}"]


# --------------------------------------------------------------------------------------------
# In-place operations: resize and chown


def _fsck(image: Path, holding: Sequence[int], *, fix: bool) -> int:
    flags = ["-f", "-p"] if fix else ["-f", "-n"]
    res = runner.run(["e2fsck", *flags, str(image)], new_session=fix, holding=holding)
    return res.returncode


def _sound(image: Path, holding: Sequence[int]) -> bool:
    """Whether the filesystem is sound; a preen pass clears the flags a dead tool left set."""
    try:
        sb = e2fs.superblock(image)
    except ImageError:
        return False
    if sb.clean and _fsck(image, holding, fix=False) == 0:
        return True
    return _fsck(image, holding, fix=True) & ~3 == 0 and e2fs.superblock(image).clean


def set_length(image: Path, length: int, allocated: bool) -> None:
    """Give the image file `length` bytes, allocating regrown space when it was allocated."""
    from condatainer.image import files  # ctypes: not on the exec path, which only reports

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


def roll_back(image: Path, facts: records.Facts, holding: Sequence[int]) -> tuple[str | None, str]:
    """Finish or undo an in-place operation that stopped; (outcome, why not) where outcome is
    "rolled back", "finished" or None (could not: the image is left as it is).

    Used for dead records and by resize/chown themselves when their tool fails.  The caller
    holds the image's write lock and the record, and defers our signals.
    """
    from condatainer.image import undo  # only when there is something to roll back

    undo_file = image.with_name(facts.undo) if facts.undo else None
    sizes = facts.sizes
    shrinking = sizes is not None and sizes.new_bytes < sizes.old_bytes
    if shrinking and sizes is not None and os.stat(image).st_size < sizes.old_bytes:
        # resize2fs cuts the file only after closing the filesystem: the shrink was done.
        set_length(image, sizes.new_bytes, False)
        return ("finished", "") if _sound(image, holding) else (None, "e2fsck found problems")
    why = "no undo record"
    if undo_file is not None and os.path.exists(undo_file):
        done, why = undo.replay(image, undo_file, holding)
        if done == undo.CUT:  # partly written back: another replay finishes it (undo.py)
            done, why = undo.replay(image, undo_file, holding)
        if done == undo.CUT:
            return None, f"{HALFWAY} ({why}); the next repair resumes it"
        if done == undo.REPLAYED:
            if sizes is not None:
                set_length(image, sizes.old_length, sizes.allocated)
            if _sound(image, holding):
                return "rolled back", ""
            return None, "e2fsck found problems after the undo record was replayed"
    # Nothing replayed: the tool wrote nothing yet, or died between rewriting the
    # superblock and updating its undo file.  The filesystem says where it got to.
    try:
        sb = e2fs.superblock(image)
    except ImageError as err:
        return None, f"{why}; {err.message}"
    if sizes is None:
        return ("rolled back", "") if _sound(image, holding) else (None, why)
    if sb.size_bytes == sizes.old_bytes:
        set_length(image, sizes.old_length, sizes.allocated)
        outcome = "rolled back"
    elif sb.size_bytes == sizes.new_bytes:
        if shrinking:
            set_length(image, sizes.new_bytes, False)
        outcome = "finished"
    else:
        return None, f"{why}; the filesystem is {format_size(sb.size_bytes)}, neither size"
    return (outcome, "") if _sound(image, holding) else (None, f"{why}; e2fsck found problems")


def settle_in_place(image: Path, claim: records.Claim, lock: locks.ImageLock) -> str:
    """Repair a dead resize or chown of `image` (see the module docstring); one line."""
    from condatainer.image import failures

    facts = claim.found.facts
    assert facts is not None
    with signals.deferred() as received:
        outcome, why = roll_back(image, facts, (lock.fd, claim.fd))
        if outcome is not None:
            if facts.undo:
                _remove([image.with_name(facts.undo)])
            _remove([image.with_name(n) for n in facts.files])
            claim.done()
        else:
            claim.release()
    failures.raise_if_interrupted(
        received, image, "the repair of an interrupted operation was finished first"
    )
    if outcome is None:
        hint = f"condatainer overlay check {image} --repair"
        raise UndoFailed(
            f"{image}: an interrupted {facts.op} could not be undone automatically ({why});"
            " its record and undo file were kept",
            hint=hint if HALFWAY in why else f"{hint} (e2fsck then repairs what it can)",
        )
    sizes = facts.sizes
    if facts.op == "resize" and sizes is not None:
        target = sizes.new_bytes if outcome == "finished" else sizes.old_bytes
        change = f"from {format_size(sizes.old_bytes)} to {format_size(sizes.new_bytes)}"
        if outcome == "finished":
            return f"{image}: an interrupted resize {change} had done its work; completed it"
        return (
            f"{image}: rolled back an interrupted resize {change} with its undo record;"
            f" it is {format_size(target)} again"
        )
    return f"{image}: rolled back an interrupted {facts.op} with its undo record"
