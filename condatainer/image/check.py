"""`overlay check`: e2fsck on an image, its verdict in words; and the checks other operations
run before and after they change an image.

`check --repair` is also the repair command for what an interrupted operation left
(`recovery`): it settles the image's dead record before e2fsck runs, or, when the image does not
exist, the leftovers of an interrupted create of that name.  Should the record's own repair
fail, e2fsck repairs what it can and the record goes: the image is then whatever e2fsck made
of it, which is said.  `--from-host HOST` repairs a record written on HOST, once the user knows
its process is gone.  Without `--repair` the check only reports such a record.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from condatainer import runner, signals
from condatainer.errors import ImageError
from condatainer.image import e2fs, failures, locks, records, recovery
from condatainer.image.layout import PathLike
from condatainer.progress import SILENT, Progress


@dataclass(frozen=True)
class CheckResult:
    """e2fsck's verdict: its exit code, whether the image is fit for use, and why, in words."""

    exit_code: int
    clean: bool
    explanation: str
    output: str
    notices: list[str] = field(default_factory=list)


def _superblock_or_none(image: Path) -> e2fs.Superblock | None:
    try:
        return e2fs.superblock(image)
    except ImageError:
        return None


def _repair_missing(image: Path, from_host: str | None) -> CheckResult:
    """`check --repair` of an image that does not exist: only its leftovers may."""
    done: list[str] = []
    recovery.repair_target(image, done.append, foreign_host=from_host)
    problem = e2fs.path_error(image)
    if not done and problem is not None:
        raise problem
    text = "\n".join([f"{image}: does not exist", *done])
    return CheckResult(exit_code=0, clean=True, explanation=text, output="", notices=done)


def _report_record(image: Path) -> list[str]:
    """For a read-only check: what an interrupted operation left on the image, in words."""
    found = records.inspect(records.path_for(image))
    if found is None or found.state == records.LIVE:
        return []
    host = found.facts.host if found.state == records.FOREIGN and found.facts else None
    return [
        f"an interrupted {recovery.describe(found, named=False)}; repair it with:"
        f" {recovery.repair_command(image, host)}"
    ]


def check(
    path: PathLike,
    *,
    force: bool = False,
    repair: bool = False,
    from_host: str | None = None,
    progress: Progress = SILENT,
) -> CheckResult:
    """Run e2fsck on the image and say in words what it found.

    Without `repair`: `e2fsck -n` under a read lock (nothing is written).  With `repair`:
    `e2fsck -p` under the exclusive lock, then `e2fsck -y` if preen mode gives up.  `force` adds
    `-f`: without it e2fsck trusts a filesystem marked clean and does not look further.

    A read-only check cannot replay a journal that needs recovery (e2fsck -n even calls such an
    image "clean"); the superblock is read to say so, and such an image is never `clean` here.
    `progress` hears which e2fsck pass runs.  The repairs of interrupted operations come back
    as `notices` (see the module docstring).
    """
    image = Path(path)
    runner.require("e2fsck")
    if repair and not os.path.lexists(image):
        return _repair_missing(image, from_host)
    repaired: list[str] = []
    leftover: list[str] = []
    with locks.hold(image, write=repair) as lock:
        if repair:
            try:
                recovery.repair_image(image, lock, repaired.append, foreign_host=from_host)
            except ImageError as err:
                if not recovery.undo_failed(err):
                    raise
                repaired.append(f"{err.message}; e2fsck repairs what it can instead")
        else:
            leftover = _report_record(image)
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
            # deferred until it is done; it holds our lock, and dies with us.
            held = (lock.fd,)
            with signals.deferred() as received:
                progress.stage("repairing what is safe (e2fsck -p)")
                argv = ["e2fsck", *flags, "-p", str(image)]
                res = runner.run(argv, new_session=True, holding=held)
                outputs.append(res.stdout + res.stderr)
                if res.returncode & 4:  # preen gave up: UNEXPECTED INCONSISTENCY
                    progress.stage("repairing the rest (e2fsck -y)")
                    argv = ["e2fsck", *flags, "-y", str(image)]
                    res = runner.run(argv, new_session=True, holding=held)
                    outputs.append(res.stdout + res.stderr)
            failures.raise_if_interrupted(
                received,
                image,
                "the repair was finished first",
                hint=f"condatainer overlay check {image}",
            )
            if res.returncode & ~3 == 0:
                repaired += recovery.drop_record(image, lock, foreign_host=from_host)
        else:
            progress.stage("reading the filesystem (e2fsck -n)")
            res = runner.run(["e2fsck", *flags, "-n", str(image)])
            outputs.append(res.stdout + res.stderr)
        after = _superblock_or_none(image)

    code = res.returncode
    output = "\n".join(o.rstrip("\n") for o in outputs)
    words = [*repaired, f"{image}: {explain_fsck_exit(code)}", *leftover]
    clean = (code & ~3) == 0 and after is not None and after.clean and not leftover
    if code & 4 and not repair:
        words.append(f"to fix them, run: condatainer overlay check {image} --repair")
    elif code & 4:
        words.append(
            "e2fsck could not fix everything; copy out what you need"
            " (condatainer overlay export) and build a new image"
        )
    if not repair and before is not None:
        if "needs_recovery" in before.features:
            words.append(
                "its journal needs recovery (it was not unmounted cleanly); a read-only check"
                " cannot replay it, and a read-only mount would fail; replay it with:"
                f" condatainer overlay check {image} --repair"
            )
        elif before.state != "clean":
            words.append(
                f"its filesystem is marked '{before.state}'; mark it clean with:"
                f" condatainer overlay check {image} --repair"
            )
    if (
        code == 0
        and not force
        and before is not None
        and before.clean
        and re.search(r":\s*clean,", output)
    ):
        words.append(
            "e2fsck trusted the clean flag and skipped the full check; add -f to force one"
        )
    return CheckResult(
        exit_code=code,
        clean=clean,
        explanation="\n".join(words),
        output=output,
        notices=repaired,
    )


_FSCK_BITS = (
    (1, "errors were found and corrected"),
    (
        2,
        "errors were corrected (e2fsck asks for a reboot, which only matters for a mounted"
        " root filesystem; nothing more to do for an image)",
    ),
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
        return f"e2fsck was killed by {signals.name(-code)} before it finished"
    parts = [text for bit, text in _FSCK_BITS if code & bit]
    if code & 2:  # "2" already says "corrected"; don't repeat bit 1's sentence
        parts = [p for p in parts if p != _FSCK_BITS[0][1]]
    unknown = code & ~sum(bit for bit, _ in _FSCK_BITS)
    if unknown or not parts:
        parts.append(f"unexpected exit status {code}")
    return "; ".join(parts)


def check_before(image: Path, sb: e2fs.Superblock, before: str, lock: locks.ImageLock) -> list[str]:
    """Make sure the filesystem is sound before changing it, writing to it only if it is not.

    A clean superblock gets a read-only full check (`e2fsck -f -n`): a refused or failed
    operation then leaves the file byte-for-byte as it was (a preen would at least stamp the
    check time).  A journal to replay, a "not clean" flag or errors found get `e2fsck -f -p`,
    which fixes what is safe to fix unattended; what it will not fix is refused with the
    `--repair` hint.  The caller holds the image's write `lock`; a preen holds it too, and dies
    with us.
    """
    if sb.clean:
        res = runner.run(["e2fsck", "-f", "-n", str(image)])
        if res.ok:
            return []
    with signals.deferred() as received:  # a preen cut in two would do harm
        argv = ["e2fsck", "-f", "-p", str(image)]
        res = runner.run(argv, new_session=True, holding=(lock.fd,))
    failures.raise_if_interrupted(received, image, "e2fsck was finished first; nothing was resized")
    if res.returncode & ~3:
        raise ImageError(
            f"{image}: e2fsck found problems it will not fix unattended, so it was not"
            f" {before} (e2fsck exit {res.returncode}: {explain_fsck_exit(res.returncode)};"
            f" {failures.tool_detail(res)})",
            hint=f"condatainer overlay check {image} --repair",
        )
    if "needs_recovery" in sb.features:
        return [f"e2fsck replayed the journal of {image} before it was {before}"]
    return [f"e2fsck checked and corrected {image} before it was {before}"]


def verify_after(image: Path, done: str) -> None:
    res = runner.run(["e2fsck", "-f", "-n", str(image)])
    if not res.ok:
        raise ImageError(
            f"{image}: {done}, but e2fsck now reports problems"
            f" (exit {res.returncode}: {failures.tool_detail(res)})",
            hint=f"condatainer overlay check {image} --repair",
        )
