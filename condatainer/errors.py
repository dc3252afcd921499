"""The one error family users see.

Every failure a user can cause or fix is a `CondatainerError`: a message that names the file and
the cause, an optional `hint` (the next command to run) and an exit code.  `cli.main` is the only
place that turns them into text and exit status; nothing else prints errors or calls `sys.exit`.
"""

from __future__ import annotations


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
