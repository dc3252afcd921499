"""Why an image operation failed, in one line: out of space, an OS error, a tool's complaint,
an interruption.

Every image-writing command (create, resize, pack, unpack) turns what stopped it into one
`ImageError` here, naming the file and the cause, with a hint the command can act on.  Build the
error after cleaning up, so the free space it reports is what the user really has.
"""

from __future__ import annotations

import errno
import os
import re
import signal
from collections.abc import Sequence
from pathlib import Path

from condatainer import runner, signals
from condatainer.errors import CondatainerError, ImageError
from condatainer.image.files import free_bytes
from condatainer.image.sizes import format_size

SPACE_ERRNOS = {errno.ENOSPC, errno.EDQUOT}


_SPACE_TEXT = ("No space left on device", "Disk quota exceeded")


class OutOfSpace(Exception):
    """A tool ran out of disk space (or quota); turned into `space_error` after cleanup."""

    def __init__(self, quota: bool):
        super().__init__(quota)
        self.quota = quota


_SPACE_HINTS = {
    "create": "free some space or choose a smaller size (-s)",
    "resize": "free some space or choose a smaller size (-s)",
    "pack": "free some space or write the packed file on another filesystem (-o)",
    "unpack": "free some space, write the image on another filesystem (-o),"
    " or choose a smaller size (-s)",
}


def space_error(
    command: str,
    action: str,
    directory: str | Path,
    needed: int,
    quota: bool,
    *,
    sparse: bool = False,
) -> ImageError:
    """The disk-full (or quota) error, naming the directory and the space needed.

    The hint names what `command` (a key of `_SPACE_HINTS`) can do about it; only
    `create` can make a sparse image instead.  Build it after cleaning up, so the free space
    it reports is what the user really has.
    """
    free = free_bytes(directory)
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
    return ImageError(
        f"{action}: {cause} in {shown} (needs {format_size(needed)}{have})", hint=hint
    )


def os_failure(
    command: str, action: str, directory: str | Path, exc: OSError, needed: int
) -> CondatainerError:
    """Turn an OSError of `command` (create, resize, pack, unpack) into the user-facing error."""
    if exc.errno in SPACE_ERRNOS:
        return space_error(command, action, directory, needed, exc.errno == errno.EDQUOT)
    if exc.errno in (errno.EACCES, errno.EPERM):
        return ImageError(
            f"{action}: permission denied in {os.path.abspath(directory)}",
            hint="choose a directory you can write",
        )
    if exc.errno == errno.EROFS:
        return ImageError(
            f"{action}: {os.path.abspath(directory)} is on a read-only filesystem",
            hint="choose a writable directory",
        )
    if exc.errno == errno.EFBIG:
        return ImageError(
            f"{action}: the filesystem of {os.path.abspath(directory)} cannot hold"
            f" a file of {format_size(needed)}",
            hint="choose a smaller size (-s)",
        )
    return ImageError(f"{action}: {exc.strerror or exc}")


_NOISE = re.compile(
    r"^(mke2fs|e2fsck|resize2fs|debugfs|e2image|e2undo|dumpe2fs) \d+\.\d+"  # version banners
    r"|^Please run 'e2fsck -fy|^after the aborted resize operation"  # we undo, not the user
)


def tool_detail(res: runner.Result) -> str:
    """One line saying why a tool failed: its first complaint on stderr, else its last word."""
    if res.returncode < 0:
        return f"killed by {signals.name(-res.returncode)}"

    def meaningful(text: str) -> list[str]:
        return [ln.strip() for ln in text.splitlines() if ln.strip() and not _NOISE.match(ln)]

    errors = meaningful(res.stderr)
    if errors:
        return errors[0]
    said = meaningful(res.stdout)
    return said[-1] if said else f"exit status {res.returncode}"


def out_of_space(res: runner.Result) -> bool | None:
    """None if the tool did not run out of space; else whether it was the quota."""
    text = res.stderr + res.stdout
    if _SPACE_TEXT[1] in text:
        return True
    if _SPACE_TEXT[0] in text:
        return False
    return None


def failure(
    command: str,
    action: str,
    exc: BaseException,
    output: str | Path,
    parent: str | Path,
    needed: int,
    *,
    sparse: bool,
    published: bool,
) -> BaseException:
    """What the user is told when `exc` stopped `command` (create, pack, unpack) writing
    `output`: interrupted, out of space, or an OS error, each as an ImageError; `exc` itself
    when it is already ours (or a bug).  Call it after the temporary files are gone, so the
    free space it reports is what the user really has."""
    if isinstance(exc, KeyboardInterrupt):
        return interrupted(output, signal.SIGINT, published)
    if isinstance(exc, signals.Terminated):
        return interrupted(output, exc.signum, published)
    if isinstance(exc, OutOfSpace):
        return space_error(command, action, parent, needed, exc.quota, sparse=sparse)
    if isinstance(exc, OSError):
        return os_failure(command, action, parent, exc, needed)
    return exc


def interrupted(final: str | Path, signum: int, published: bool) -> ImageError:
    name = signals.name(signum)
    if published:
        return ImageError(
            f"{final}: interrupted by {name} just after the image was created; it is complete",
            exit_code=128 + signum,
        )
    return ImageError(
        f"creating {final} was interrupted by {name}; nothing was created", exit_code=128 + signum
    )


def raise_if_interrupted(
    received: Sequence[int], image: object, what: str, hint: str | None = None
) -> None:
    """After work run under signals.deferred: a signal that arrived meanwhile becomes
    one ImageError saying what was finished first, with the shell's exit status 128+N."""
    if received:
        raise ImageError(
            f"{image}: interrupted by {signals.name(received[0])}; {what}",
            hint=hint,
            exit_code=128 + received[0],
        )


def left_at(err: CondatainerError, old: int) -> ImageError:
    return ImageError(
        f"{err.message}; the image was left as it was ({format_size(old)})", hint=err.hint
    )
