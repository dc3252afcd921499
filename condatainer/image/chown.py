"""`overlay chown`: give the files of an image to another owner, without mounting it.

An image made by one user (or with `--fakeroot`, as 0:0) cannot be written by another: the
kernel checks the uid/gid stored in the image's inodes.  `chown` rewrites those fields.

How: the tree is listed breadth-first with one `debugfs` process per level (`e2fs.walk`), then
every inode whose owner differs is rewritten in ONE `debugfs -w` pass of `sif <N> uid U` /
`gid G` lines (`sif`: debugfs's short name for `set_inode_field`; 44,000 lines at 20k files).
The reference tool starts one debugfs per directory, which takes minutes on a conda
environment; this takes a third of a second at 20k files (bench/bench_chown.py).  The script
and debugfs's echo of it pass through files in memory, not pipes (`runner`).

What changes:
- no paths: every inode under `upper/`, plus `upper`, `work` and `work/work` themselves (the
  directories overlayfs needs to own to mount the image writable);
- `-p /ext3/env/pkgs`...: only those subtrees (`upper/ext3/env/pkgs` and everything below);
  the skeleton (`upper`, `work`) is left as it is, so a partial chown never hands over the
  whole image.

The image's write lock is held for the whole operation (no one may mount it meanwhile), and an
image that is not clean is refused: writing behind a journal that needs recovery would be
undone, or worse, when the journal is replayed.

All or nothing: the write pass runs with an undo file (`debugfs -z`), named first in a record
beside the image (`records`).  When debugfs reports an error the undo file is replayed at once;
when we are killed, debugfs dies with us (it holds the image's lock and the record's until it
does) and the next command that writes the image replays it (`recovery`).  So ownership is
never left half changed.
"""

from __future__ import annotations

import os
import posixpath
import time
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from condatainer import signals
from condatainer.display import Notify
from condatainer.errors import ImageError, UsageError
from condatainer.image import e2fs, failures, layout, locks, records, recovery
from condatainer.image.layout import CONTAINER_PREFIX, UPPER, WORK
from condatainer.progress import SILENT, Progress

_MAX_ID = 2**32 - 2  # 2**32 - 1 is (uid_t)-1, "no change" to chown(2); refuse it


@dataclass(frozen=True)
class ChownResult:
    """What a chown did: inodes rewritten, inodes looked at, and the time it took."""

    changed: int
    seconds: float
    examined: int = 0


def image_path(container_path: str) -> str:
    """Map an in-container path into the image: `/ext3/env/pkgs` -> `upper/ext3/env/pkgs`.

    Only absolute paths under `/ext3` are accepted (the rest of the container is not in the
    image), without `..`; UsageError otherwise.
    """
    hint = f"give an absolute in-container path under /ext3, e.g. -p {CONTAINER_PREFIX}/pkgs"
    if "\0" in container_path:
        raise UsageError(f"invalid path {container_path!r}: it holds a NUL byte", hint=hint)
    if not container_path.startswith("/"):
        raise UsageError(f"invalid path {container_path!r}: it must be absolute", hint=hint)
    parts = container_path.split("/")
    if ".." in parts:
        raise UsageError(f"invalid path {container_path!r}: '..' is not allowed", hint=hint)
    clean = posixpath.normpath(container_path)
    if clean.startswith("//"):
        clean = "/" + clean.lstrip("/")
    if clean != "/ext3" and not clean.startswith("/ext3/"):
        raise UsageError(
            f"invalid path {container_path!r}: only paths under /ext3 live in the image",
            hint=hint,
        )
    return layout.inner_path(clean)


def _check_id(kind: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_ID:
        raise UsageError(
            f"invalid {kind} {value!r}: it must be a number from 0 to {_MAX_ID}",
            hint="give a numeric id, e.g. -u $(id -u) -g $(id -g), or --root for 0:0",
        )
    return value


def chown(
    path: str | os.PathLike[str],
    uid: int | None = None,
    gid: int | None = None,
    inner_paths: Sequence[str] = (),
    *,
    progress: Progress = SILENT,
    notify: Notify | None = None,
) -> ChownResult:
    """Make `uid:gid` (default: the caller's) own the env files of image `path`.

    `inner_paths` are in-container paths (`/ext3/env/pkgs`); without them the whole of
    `upper/` plus the `upper`/`work`/`work/work` directories change.  Only inodes whose owner
    differs are rewritten, so a second run changes nothing.  Raises UsageError for a bad id or
    path, LockError when the image is in use, ImageError when it is not clean, not an overlay
    image, or a path is missing from it.  `progress` hears the listing and the write pass.
    """
    started = time.monotonic()
    uid = _check_id("uid", os.getuid() if uid is None else uid)
    gid = _check_id("gid", os.getgid() if gid is None else gid)
    targets = [image_path(p) for p in inner_paths]
    image = Path(path)
    with locks.hold(image, write=True) as lock:
        recovery.repair_image(image, lock, notify or (lambda text: None))
        e2fs.require_clean(image)
        progress.stage("listing the files (debugfs)")
        found = _targets(image, targets) if targets else _whole(image)
        lines: list[str] = []
        changed = 0
        for entry in found.values():
            if entry.uid == uid and entry.gid == gid:
                continue
            changed += 1
            if entry.uid != uid:
                lines.append(f"sif <{entry.inode}> uid {uid}")
            if entry.gid != gid:
                lines.append(f"sif <{entry.inode}> gid {gid}")
        if lines:
            progress.stage(f"giving {changed} inodes to {uid}:{gid} (debugfs -w)")
            _write_pass(image, lock, lines)
    return ChownResult(changed, time.monotonic() - started, len(found))


def _write_pass(image: Path, lock: locks.ImageLock, lines: list[str]) -> None:
    """One `debugfs -w -z UNDO` pass under a record; undone on error, so all or nothing."""
    undo_name = records.temp_name(image, "undo")
    record = recovery.begin(image, "chown", undo=undo_name)
    undo = record.file(undo_name)
    holding = (lock.fd, record.fd)
    failed: ImageError | None = None
    kept = False
    with signals.deferred() as received:
        try:
            e2fs.debugfs_script(image, lines, write=True, undo=undo, holding=holding)
        except ImageError as err:
            failed = err
            outcome, why = recovery.roll_back(image, record.facts, holding)
            if outcome != "rolled back":
                kept = True
                failed = ImageError(
                    f"{err.message}; the ownership pass could not be undone ({why}), its"
                    " record was kept",
                    hint=f"condatainer overlay check {image} --repair",
                )
        finally:
            if kept:
                os.close(record.fd)  # dead now: the next command repairs it
            else:
                with suppress(FileNotFoundError):
                    os.unlink(undo)
                record.end()
    if failed is not None:
        raise ImageError(
            f"{failed.message}; no owner was changed" if not kept else failed.message,
            hint=failed.hint,
        )
    failures.raise_if_interrupted(
        received,
        image,
        "the ownership pass was finished first so the image stays consistent",
        hint=f"condatainer overlay info {image}",
    )


def _whole(path: str | os.PathLike[str]) -> dict[int, e2fs.Entry]:
    """Every inode under upper/, plus the skeleton directories, by inode number."""
    root = {e.name: e for e in e2fs.list_dir(path, "/")}
    upper = root.get(UPPER)
    if upper is None or not upper.is_dir:
        raise ImageError(
            f"{path}: not an overlay image: it has no upper/ directory",
            hint="overlay images are made with: condatainer o IMAGE",
        )
    found: dict[int, e2fs.Entry] = {upper.inode: upper}
    work = root.get(WORK)
    if work is not None and work.is_dir:
        found[work.inode] = work
        inner = next((e for e in e2fs.list_dir(path, WORK) if e.name == WORK), None)
        if inner is not None:
            found[inner.inode] = inner
    for entry in e2fs.walk_entries(path, [upper]):
        found.setdefault(entry.inode, entry)
    return found


def _targets(path: str | os.PathLike[str], targets: Sequence[str]) -> dict[int, e2fs.Entry]:
    """The given subtrees (each root and everything below), by inode number."""
    roots: list[e2fs.Entry] = []
    for target in targets:
        entry = e2fs.stat(path, target)
        if entry is None:
            shown = target[len(UPPER) :]
            raise ImageError(
                f"{path}: {shown} does not exist in the image (looked for {target})",
                hint=f"condatainer overlay info {path}",
            )
        roots.append(entry)
    found = {r.inode: r for r in roots}
    for entry in e2fs.walk_entries(path, roots):
        found.setdefault(entry.inode, entry)
    return found
