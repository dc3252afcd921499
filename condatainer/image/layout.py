"""Where things are: inside an image, inside the container, and the image files themselves.

The one home of these names; everything else (the runtimes, the hook and its templates, the
shims, `info`, `chown`) takes them from here.

Inside an image (Apptainer's overlay layout):

    upper/                 overlayfs' upper directory: what the container wrote
        ext3/env/          the conda prefix, seen as /ext3/env in the container
    work/                  overlayfs' work directory (the kernel adds work/work)

Image files: a name ending in `.img` or `.ext3` (any case) is kept, any other gets `.img`;
`overlay pack` appends `.zst`.  Autoload (`find_image`): at each directory from the start
upwards, `env-$USER.img` then `env.img`, each looked for in the directory itself, `overlay/`
and `src/overlay/`; the search stops after `$HOME` (inclusive), at `/`, or at a directory
listed in `CNT_CEILING_DIRS`.  The cd hook does the same search in pure shell, with the names
and subdirectories below passed to its template as data (a test holds the two to the same
answers).

Cheap to import (the cd hook, every exec and `condatainer o` read it): os only; the functions
that return a `Path` import pathlib when they are called.
"""

from __future__ import annotations

import os

from condatainer.errors import ImageError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path
    from typing import Union

    PathLike = Union[str, "os.PathLike[str]"]
    """What every function taking a file path accepts."""
else:
    PathLike = "str | os.PathLike[str]"  # for annotations, which are never evaluated

CONTAINER_PREFIX = "/ext3/env"
"""Where the conda prefix of an overlay appears inside the container."""

UPPER = "upper"
WORK = "work"
ENV_DIR = UPPER + CONTAINER_PREFIX  # upper/ext3/env
"""Where the conda prefix lives inside the image."""

LAYOUT_DIRS = (UPPER, WORK, f"{UPPER}/ext3", ENV_DIR)
"""Directories every new image holds, parents first."""

BIN_DIR = f"{ENV_DIR}/bin"
META_DIR = f"{ENV_DIR}/conda-meta"
REPODATA_DIR = f"{ENV_DIR}/pkgs/cache"
"""micromamba's repodata cache (channel package names for TAB)."""

CONDARC = f"{CONTAINER_PREFIX}/.condarc"
PINNED = f"{CONTAINER_PREFIX}/conda-meta/pinned"
"""Container paths of the env's channel list and pins."""

IMAGE_SUFFIXES = (".img", ".ext3")
"""Extensions an overlay image name may carry; any other name gets `.img` appended."""

PACK_SUFFIX = ".zst"

AUTOLOAD_NAME = "env.img"
AUTOLOAD_USER_NAME = ("env-", ".img")  # env-$USER.img: prefix and suffix around the user
AUTOLOAD_SUBDIRS = ("", "overlay", "src/overlay")


def normalise_image_name(name: str) -> Path:
    """`env` -> `env.img`; names ending in `.img` or `.ext3` (any case) are kept as they are."""
    from pathlib import Path

    return Path(image_name(name))


def image_name(name: str) -> str:
    """`normalise_image_name` as a string, without pathlib: the same path, spelled the way
    `str(Path(...))` spells it (`a//b/./c.img` -> `a/b/c.img`)."""
    root, parts = posix_parts(name)
    if not name or name.endswith(os.sep) or not parts or parts[-1] == "..":
        raise ImageError(
            f"{name!r} is not an image file name",
            hint="name the image file, e.g. condatainer o env.img",
        )
    base = parts[-1].lower()
    if not any(base.endswith(s) and len(base) > len(s) for s in IMAGE_SUFFIXES):
        root, parts = posix_parts(name + ".img")  # `a/.` -> `a/..img`, as pathlib has it
    return root + "/".join(parts)


def posix_parts(path: str) -> tuple[str, list[str]]:
    """(root, names) of `path` as pathlib reads a POSIX path: empty and `.` names dropped, and
    a root of exactly two slashes kept (POSIX leaves its meaning to the system)."""
    root = ""
    if path.startswith("/"):
        root = "//" if path.startswith("//") and not path.startswith("///") else "/"
    return root, [part for part in path.split("/") if part and part != "."]


def inner_path(container_path: str) -> str:
    """Where an in-container path under /ext3 is in the image: `/ext3/env/x` -> `upper/ext3/env/x`.

    The caller has checked it is absolute, normalised and under /ext3.
    """
    return UPPER + container_path


def autoload_names(environ: Mapping[str, str]) -> list[str]:
    """The file names autoload looks for, in order: env-$USER.img (when USER is known), env.img."""
    user = environ.get("USER") or environ.get("LOGNAME") or ""
    prefix, suffix = AUTOLOAD_USER_NAME
    return ([f"{prefix}{user}{suffix}"] if user else []) + [AUTOLOAD_NAME]


def find_image(start: Path, environ: Mapping[str, str]) -> Path | None:
    """The image autoload would pick from `start`, or None (see the module docstring)."""
    names = autoload_names(environ)
    # Stops compare as strings, exactly like the hook's pure-shell search; callers walk from
    # the logical working directory (logical_cwd), so a symlinked $HOME, as typed, still stops
    # the search.
    home = environ.get("HOME", "")
    ceilings = {c for c in environ.get("CNT_CEILING_DIRS", "").split(":") if c}
    here = start
    while True:
        for name in names:
            for sub in AUTOLOAD_SUBDIRS:
                candidate = here / sub / name if sub else here / name
                if candidate.is_file():
                    return candidate
        if str(here) == home or str(here) in ceilings or here.parent == here:
            return None
        here = here.parent


def logical_cwd(environ: Mapping[str, str] | None = None) -> Path:
    """The working directory as the shell names it ($PWD, symlinks kept) when $PWD really is
    the working directory, else the physical one: the autoload search and the cd hook then see
    the same path, and a $HOME reached through a symlink stops both."""
    from pathlib import Path

    env = os.environ if environ is None else environ
    pwd = env.get("PWD", "")
    if pwd.startswith("/"):
        try:
            if os.path.samefile(pwd, "."):
                return Path(pwd)
        except OSError:
            pass
    return Path(os.getcwd())
