"""Which container runtime runs Plans here: the one place that decides (`select`).

Each runtime says itself whether it can work here (`builtin.probes()`, a binary on PATH for
Apptainer); `select` asks them, and `doctor` reports the same answers, so doctor never says
"ok" for a runtime that `e` then finds unusable.

`runtime: auto` takes apptainer (or `apptainer_bin`), else singularity, else the builtin runtime
when it can work here.  An explicit choice that cannot work here is a RuntimeUnavailableError
rather than a silent fallback.  The builtin runtime's module is imported only when needed: an
Apptainer user never pays for its ctypes setup.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import NamedTuple

from condatainer import runner
from condatainer.config import Config
from condatainer.errors import RuntimeUnavailableError
from condatainer.run.runtime import INSTALL_APPTAINER


class Selected(NamedTuple):
    """The runtime that will run Plans here, and its binary (None for the builtin runtime)."""

    name: str  # "apptainer", "singularity" or "builtin"
    binary: str | None
    how: str  # why this one, for doctor


def container_binary(cfg: Config, name: str) -> str | None:
    """The path of `apptainer` or `singularity`: `apptainer_bin` from the config when set
    (a path, or a name looked up on PATH), else `name` on PATH.  None when not found."""
    if cfg.apptainer_bin:
        if os.sep in cfg.apptainer_bin:
            path = cfg.apptainer_bin
            return path if os.path.isfile(path) and os.access(path, os.X_OK) else None
        return runner.which(cfg.apptainer_bin)
    return runner.which(name)


def watched(cfg: Config, environ: Mapping[str, str]) -> list[str]:
    """The paths whose state `select` depends on besides the config (for `run.replay`): the
    directories it searches (an apptainer added to one changes their mtime) and a configured
    binary.  The builtin runtime's probes are not here: that runtime runs them every time."""
    dirs = [d for d in environ.get("PATH", "").split(os.pathsep) if d]
    # A trailing "/": their entries matter (`replay.stamp`).
    found = [os.path.join(d, "") for d in (*dirs, *runner.SBIN)]
    if cfg.apptainer_bin:
        found.append(cfg.apptainer_bin)
    return found


def binary_flavour(path: str) -> str:
    """A configured binary named singularity* is run as singularity, anything else as apptainer."""
    return "singularity" if os.path.basename(path).startswith("singularity") else "apptainer"


def builtin_unavailable() -> str | None:
    """Why the builtin runtime cannot work here (its own probes), or None."""
    from condatainer.run.runtime import builtin

    return builtin.available()


def select(cfg: Config) -> Selected:
    """The container runtime to use (see the module docstring); RuntimeUnavailableError if none.

    Besides the config, the choice depends on PATH and on the builtin runtime's probes
    (root, loop devices, overlayfs, CAP_SYS_ADMIN).
    """
    choice = cfg.runtime
    source = cfg.source("runtime")
    if choice in ("apptainer", "singularity"):
        path = container_binary(cfg, choice)
        if path is None:
            what = f"apptainer_bin {cfg.apptainer_bin!r}" if cfg.apptainer_bin else choice
            raise RuntimeUnavailableError(
                f"runtime is set to {choice} ({source}), but {what} is not installed"
                " or not executable",
                hint=f"{INSTALL_APPTAINER}; or use another runtime: condatainer config set"
                " runtime auto",
            )
        return Selected(choice, path, f"runtime: {choice} ({source})")
    if choice == "builtin":
        reason = builtin_unavailable()
        if reason is not None:
            raise RuntimeUnavailableError(
                f"runtime is set to builtin ({source}), which cannot run here: {reason}",
                hint="run as root (sudo condatainer ...), or "
                + INSTALL_APPTAINER
                + " and run: condatainer config set runtime auto",
            )
        return Selected("builtin", None, f"runtime: builtin ({source})")
    # auto
    if cfg.apptainer_bin:
        path = container_binary(cfg, "apptainer")
        if path is None:
            raise RuntimeUnavailableError(
                f"apptainer_bin is {cfg.apptainer_bin!r} ({cfg.source('apptainer_bin')}),"
                " which is not an executable file or not on PATH",
                hint="fix it with: condatainer config set apptainer_bin /path/to/apptainer",
            )
        return Selected(binary_flavour(path), path, f"runtime: auto ({source}); apptainer_bin")
    for name in ("apptainer", "singularity"):
        path = runner.which(name)
        if path:
            return Selected(name, path, f"runtime: auto ({source}); {name} on PATH")
    reason = builtin_unavailable()
    if reason is None:
        return Selected(
            "builtin", None, f"runtime: auto ({source}); no apptainer found and running as root"
        )
    raise RuntimeUnavailableError(
        "no container runtime: neither apptainer nor singularity is on PATH, and the builtin"
        f" runtime cannot run here ({reason})",
        hint=f"{INSTALL_APPTAINER}; or run as root (sudo) to use the builtin runtime;"
        " then check with: condatainer doctor",
    )
