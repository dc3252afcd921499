"""The one prompt marker: what the cd hook and `condatainer e` put in front of the prompt.

`marker(name, level)` is `(cnt:NAME) ` -- the same text whether the env is active on the host
(the cd hook, level 0) or the shell runs inside its container (`e`, level 1) -- and
`(cnt[N]:NAME) ` in a container started from inside another one (level N >= 2, the container's
`CNT_LEVEL`), so a nested shell says how deep it is.  Control characters in NAME are shown as
`?`; the templates that insert the marker escape it for the prompt options in force (bash
promptvars, zsh prompt_subst/prompt_percent; fish prints it), so a directory called
`$(touch x)` is shown, never run.

`env_name(image)` is the NAME: the project directory for the names the hook looks for
(`env.img`, `env-$USER.img`, also in `overlay/` or `src/overlay/` below the project), else the
image's file name without its suffix (`torch.img` -> `torch`).  The hook names the project
directory it found the image from, which is the same directory.
"""

from __future__ import annotations

import os

from condatainer import display
from condatainer.image import layout


def marker(name: str | None, level: int = 0) -> str:
    """`(cnt:NAME) `, `(cnt[N]:NAME) ` when nested (N >= 2); `(cnt) ` without a name."""
    tag = f"cnt[{level}]" if level >= 2 else "cnt"
    if not name:
        return f"({tag}) "
    return f"({tag}:{display.printable(name)}) "


def project_name(project: str) -> str:
    """The NAME of a project directory (its last component; `/` for the root)."""
    return os.path.basename(project.rstrip("/")) or "/"


def env_name(image: str) -> str:
    """The NAME `condatainer e` shows for `image` (see the module docstring)."""
    directory, name = os.path.split(os.path.normpath(image))
    prefix, suffix = layout.AUTOLOAD_USER_NAME
    if name == layout.AUTOLOAD_NAME or (name.startswith(prefix) and name.endswith(suffix)):
        for sub in sorted(layout.AUTOLOAD_SUBDIRS, key=len, reverse=True):
            if sub and directory.endswith("/" + sub):
                directory = directory[: -len(sub) - 1]
                break
        return project_name(directory or "/")
    for known in layout.IMAGE_SUFFIXES:
        if name.endswith(known) and len(name) > len(known):
            return name[: -len(known)]
    return name


def level(value: str | None) -> int:
    """A nesting level read from the environment (`CNT_LEVEL`); 0 for anything else."""
    try:
        return max(0, int(value or 0))
    except ValueError:
        return 0
