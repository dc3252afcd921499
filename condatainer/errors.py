"""The one error family users see, and the one way they are shown.

Every failure a user can cause or fix is a `CondatainerError`: a message that names the file and
the cause, an optional `hint` (the next command to run) and an exit code.  `guarded` (which the
command line and the exec fast path run every command in) is the only place that turns them
into text and exit status (`report`); nothing else prints errors or calls `sys.exit`.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (the exec path's rule)
if TYPE_CHECKING:
    from collections.abc import Callable

PROG = "condatainer"


class CondatainerError(Exception):
    """A failure explained to the user: `condatainer: error: <message>` then `hint: <hint>`."""

    exit_code: int = 1

    def __init__(self, message: str, hint: str | None = None, *, exit_code: int | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        if exit_code is not None:
            self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message


class UsageError(CondatainerError):
    """The command line itself is wrong (exit 2, like argparse)."""

    exit_code = 2


class SizeError(UsageError):
    """A size string that is not a valid image size."""


class ProfileError(UsageError):
    """An unknown inode profile."""


class ImageError(CondatainerError):
    """An image is missing, not an image, corrupt, too full, or an e2fsprogs step failed."""


class ImageExistsError(ImageError):
    """Creating an image where a path already exists."""


class LockError(CondatainerError):
    """An image cannot be locked: missing, not writable, or in use by another process."""


class ImageBusyError(LockError):
    """An image is in use by another process (the one lock error that waiting can end)."""


class EnvFileError(CondatainerError):
    """A sidecar `<image>.env` file (or environment.yml) cannot be read or parsed."""


class ConfigError(CondatainerError):
    """The configuration file or a `CNT_*` variable holds a bad value."""


class ToolMissingError(CondatainerError):
    """An external program we need (mke2fs, zstd, apptainer, ...) is not installed."""


class MicromambaError(CondatainerError):
    """condatainer's micromamba cannot be found, fetched or used (names the channel and cause)."""


class RuntimeUnavailableError(CondatainerError):
    """No container runtime can run this Plan here."""


class BaseImageError(CondatainerError):
    """A base image is missing, cannot be fetched, or is not one the runtime can use."""


class ContainerError(CondatainerError):
    """The container runtime failed before the user's command ran (Apptainer's FATAL, mounts)."""


class DirectiveError(CondatainerError):
    """A job script's #DEP/#CNT/#SBATCH header is wrong or names something missing."""


class ShellError(CondatainerError):
    """Shell integration cannot proceed (unknown shell, rc file unwritable)."""


class TrustError(CondatainerError):
    """An image is not allowed to be activated or run."""


def guarded(call: Callable[[], int]) -> int:
    """Run a command; its exit status, with every expected failure shown as `report` shows it.

    A CondatainerError is reported; a reader that went away ends quietly (128+SIGPIPE); any
    other OSError that slipped through still gets one line naming the file, no traceback;
    Ctrl-C is `condatainer: interrupted`, 130.
    """
    try:
        return call()
    except CondatainerError as err:
        return report(err)
    except BrokenPipeError:
        # The reader went away (`condatainer config show | head`): end quietly, like cat.
        # Point stdout at /dev/null so the interpreter's final flush does not complain again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 128 + 13  # SIGPIPE
    except OSError as exc:
        # Last resort: every expected failure is a CondatainerError raised where it happens;
        # an OS error that slipped through still gets one line naming the file, no traceback.
        where = f"{exc.filename}: " if exc.filename else ""
        return report(
            CondatainerError(
                f"{where}{exc.strerror or exc}", hint="CONDATAINER_DEBUG=1 shows where it happened"
            ),
            cause=exc,
        )
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


def report(err: CondatainerError, cause: BaseException | None = None) -> int:
    """Print a CondatainerError the one way users see errors; return its exit code.

    Messages quote paths, image contents and tools' output: control characters in them are
    shown, not sent to the terminal (display.printable).  With CONDATAINER_DEBUG=1 the
    traceback of `cause` (the exception the error stands for, when it was made from one
    caught at the last resort), else of `err` itself, shows where it happened.
    """
    from condatainer.colour import paint, wants_colour
    from condatainer.display import printable

    if os.environ.get("CONDATAINER_DEBUG") == "1":
        import traceback

        shown = cause if cause is not None else err
        traceback.print_exception(type(shown), shown, shown.__traceback__)
    error, hint = f"{PROG}: error:", "hint:"
    if wants_colour(sys.stderr):  # the prefixes in colour on a terminal, unless NO_COLOR
        error, hint = paint(error, "error"), paint(hint, "hint")
    print(f"{error} {printable(err.message, lines=True)}", file=sys.stderr)
    if err.hint:
        print(f"{hint} {printable(err.hint, lines=True)}", file=sys.stderr)
    return err.exit_code
