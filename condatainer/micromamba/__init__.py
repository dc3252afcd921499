"""micromamba belongs to condatainer: which binary is used, where it is kept, where it comes from.

Resolution order (`locate`, cheap: no network, no heavy import):

1. config `micromamba`: a site's own binary (a path; a bare name is looked up on PATH);
2. the cached binary `<fetch_dir>/micromamba/micromamba` (its origin beside it in
   `micromamba.json`); config `fetch_dir` defaults to `$XDG_DATA_HOME/condatainer`, so a login
   node can fetch once into a directory the compute nodes share;
3. otherwise `bootstrap.ensure` fetches it: the newest `micromamba` package of the pinned series
   (config `micromamba_version`, default `SERIES`) for this machine's platform from config
   `micromamba_channel` (default conda-forge; independent of an env's own channels), found
   through the channel's sharded index, checked against its sha256 and published atomically
   under a lock.  micromamba is a static binary, so one copy serves every base image.

Containers see it at `CONTAINER_BIN/micromamba`, a fixed path on PATH right after
`/ext3/env/bin` (`run.tools` binds it there, with the generated `mm-*` commands beside it).

The series is 2: the mm table (`run.mm`) is written and tested for micromamba 2's command line
(global `--rc-file` before the subcommand, `config list`/`config append --file`), and 1.x has
been out of maintenance since 2.0 (September 2024).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from condatainer import config
from condatainer.errors import MicromambaError

SERIES = config.Config().micromamba_version  # "2": the default lives with the other defaults
CONTAINER_BIN = "/opt/condatainer/bin"
CONTAINER_MICROMAMBA = f"{CONTAINER_BIN}/micromamba"
BINARY = "micromamba"
ORIGIN = "micromamba.json"
DEFAULT_CHANNEL_ALIAS = "https://conda.anaconda.org"

# conda's platform subdirs by machine (`uname -m`); micromamba is built for each of them.
SUBDIRS = {"x86_64": "linux-64", "aarch64": "linux-aarch64", "ppc64le": "linux-ppc64le"}


@dataclass(frozen=True)
class Located:
    """A usable micromamba binary on the host and where it came from ("config" or "cache")."""

    path: str
    source: str


def cache_dir(cfg: config.Config, env: Mapping[str, str] | None = None) -> Path:
    """Where condatainer keeps its micromamba: `<fetch_dir>/micromamba`, beside base images."""
    return config.fetch_dir(cfg, env) / "micromamba"


def cached_binary(cfg: config.Config, env: Mapping[str, str] | None = None) -> Path:
    return cache_dir(cfg, env) / BINARY


def _usable(path: Path) -> bool:
    try:
        return path.is_file() and path.stat().st_size > 0 and os.access(path, os.X_OK)
    except OSError:
        return False


def configured(cfg: config.Config) -> Located | None:
    """The binary config `micromamba` names; MicromambaError when it names nothing usable."""
    if not cfg.micromamba:
        return None
    given = os.path.expanduser(cfg.micromamba)
    found = given if os.sep in given else shutil.which(given)
    if found is None or not _usable(Path(found)):
        raise MicromambaError(
            f"config micromamba ({cfg.source('micromamba')}) is {cfg.micromamba!r}, which is"
            " not an executable file",
            hint="condatainer config set micromamba /path/to/micromamba  (or unset it, and"
            " condatainer fetches its own: condatainer config set micromamba '')",
        )
    return Located(os.path.realpath(found), "config")


def locate(cfg: config.Config, env: Mapping[str, str] | None = None) -> Located | None:
    """The micromamba to use, without fetching anything; None when it must be bootstrapped."""
    found = configured(cfg)
    if found is not None:
        return found
    cached = cached_binary(cfg, env)
    return Located(str(cached), "cache") if _usable(cached) else None


def subdir() -> str:
    """This machine's conda platform subdir (linux-64, linux-aarch64, ...)."""
    machine = os.uname().machine
    try:
        return SUBDIRS[machine]
    except KeyError:
        raise MicromambaError(
            f"no micromamba is built for this machine ({machine})",
            hint="install one yourself and point at it: condatainer config set micromamba PATH",
        ) from None


def channel_url(name: str) -> str:
    """A channel as a URL: URLs as they are, paths as file:// URLs, names under the alias."""
    if "://" in name:
        return name.rstrip("/")
    if name.startswith(("/", "./", "../", "~")):
        return Path(os.path.expanduser(name)).resolve().as_uri()
    return f"{DEFAULT_CHANNEL_ALIAS}/{name}"
