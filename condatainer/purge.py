"""What condatainer keeps for itself, listed with sizes, and removed (`install.sh --uninstall
--purge`, through the hidden `condatainer _purge [--dry-run]`).

condatainer's own, and so removed:
- its cache directory (`$XDG_CACHE_HOME/condatainer`: shims, package listings, the tools
  bound into containers, the parsed config, rc files);
- the micromamba it fetched (`<fetch_dir>/micromamba`, and the default place if fetch_dir
  moved it);
- the base images it pulled or built (`<fetch_dir>/images`, the same: the `.sif` files and
  its hidden lock and temporary files; anything else found there is left and named);
- the allow list of the cd hook (`$XDG_DATA_HOME/condatainer/allowed`), hook files `init`
  left behind, and the state directory;
- then the data directory itself, when nothing else is left in it (install.sh's venv aside,
  which install.sh removes after this).

Never removed: a user's images (they live in projects, never in these directories), and the
config file, which the user wrote (it is named, so that they can remove it).  The paths come
from the same functions the rest of condatainer uses, so `fetch_dir` and the XDG variables are
honoured; a config file that cannot be read leaves `fetch_dir` at its default, and says so.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from condatainer import config
from condatainer.errors import ConfigError
from condatainer.micromamba import cache_dir as micromamba_dir
from condatainer.run.baseimage import images_dir


@dataclass(frozen=True)
class Item:
    """One thing of condatainer's own: what it is, where, and how much disk it takes."""

    what: str
    paths: tuple[Path, ...]
    bytes: int


@dataclass(frozen=True)
class Survey:
    """What a purge would remove, and what it leaves on purpose."""

    items: tuple[Item, ...]
    kept: tuple[str, ...]  # sentences: the config file, strangers in the images directory
    prune: tuple[Path, ...]  # directories removed afterwards if nothing is left in them


def _disk_usage(path: Path) -> int:
    """Bytes on disk under `path` (allocated blocks: a sparse file counts what it holds)."""
    try:
        st = os.lstat(path)
    except OSError:
        return 0
    total = st.st_blocks * 512
    if path.is_dir() and not path.is_symlink():
        for root, dirs, names in os.walk(path):
            for name in dirs + names:
                with contextlib.suppress(OSError):  # gone meanwhile
                    total += os.lstat(os.path.join(root, name)).st_blocks * 512
    return total


def _exists(path: Path) -> bool:
    return os.path.lexists(path)


def survey(env: Mapping[str, str] | None = None) -> Survey:
    """What `_purge` would remove (only what exists), with sizes."""
    env = os.environ if env is None else env
    kept: list[str] = []
    try:
        cfg = config.load(env)
    except ConfigError as exc:
        cfg = config.Config()  # the defaults
        kept.append(f"the config file cannot be read ({exc.message}): fetch_dir is the default")
    where = config.paths(env)
    data = where["data"]
    items: list[Item] = []

    def add(what: str, *paths: Path) -> None:
        present = tuple(p for p in paths if _exists(p))
        if present:
            items.append(Item(what, present, sum(_disk_usage(p) for p in present)))

    # What it fetched: where config fetch_dir says, and where it is kept by default (a
    # fetch_dir set later leaves the earlier fetches there).
    default = config.Config()
    add("caches (shims, package listings, container tools)", where["cache"])
    add(
        "condatainer's micromamba",
        *dict.fromkeys((micromamba_dir(cfg, env), micromamba_dir(default, env))),
    )
    image_dirs = tuple(dict.fromkeys((images_dir(cfg, env), images_dir(default, env))))
    pulled: list[Path] = []
    for images in image_dirs:
        if images.is_dir():
            for entry in sorted(images.iterdir()):
                if entry.name.endswith(".sif") or entry.name.startswith("."):
                    pulled.append(entry)
                else:
                    kept.append(f"{entry}: not a base image condatainer made; left alone")
    count = sum(1 for p in pulled if p.name.endswith(".sif"))
    add(f"base images it pulled or built ({count})", *pulled)
    add("the allow list of the cd hook", data / "allowed")
    add("shell hook files", *sorted(data.glob("hook.*")))
    add("state", where["state"])
    if where["config"].exists():
        kept.append(f"your config file {where['config']} (remove it yourself if you like)")
    kept.append("your env images, wherever you made them")
    return Survey(tuple(items), tuple(kept), (*image_dirs, data))


def remove(found: Survey) -> list[str]:
    """Remove everything `found` lists; return what to tell the user, one line each."""
    said: list[str] = []
    for item in found.items:
        for path in item.paths:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
        said.append(f"removed {item.what}: {', '.join(map(str, item.paths))}")
    for directory in found.prune:
        with contextlib.suppress(OSError):
            directory.rmdir()  # only when empty: anything left in it stays
    return said
