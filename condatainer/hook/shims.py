"""Host-side shims: one link per executable of an image's env, to one dispatcher script.

While the cd hook has a project active, `PATH` starts with the image's shim directory.  It holds
one POSIX sh script, the dispatcher `.cnt-shim` rendered from `shell/shim.sh.j2`, and a hard
link to it named after each executable; the dispatcher takes the name from `$0` and runs

    exec <condatainer> exec -o IMAGE -- NAME "$@"

so typing `python` in the project runs the env's python in its container, read-only (many at
once, like jobs).  Inside a container (`IN_CONDATAINER` set: `condatainer e` started from an
active project) a shim steps aside and runs the next NAME on PATH instead of nesting containers.
Either way it first removes its own directory from PATH, so the command it starts never finds
the shims again.

Decisions:

- **Which condatainer the shims (and the hook) run** (`launcher`): the absolute path of the
  running console script when we were started as one (`condatainer`/`cnt`), else
  `sys.executable -m condatainer`.  An absolute path keeps shims working when PATH changes and
  costs no PATH search; it pins them to the installation that wrote them, so the launcher is
  part of the cache stamp (and of the hook file): a reinstall elsewhere rewrites both.  A
  checkout run as `python -m condatainer` with PYTHONPATH needs that PYTHONPATH in the shell
  too, which is how it was started anyway.
- **What gets a shim** (`shim_names`): entries of `upper/ext3/env/bin` (listed with debugfs,
  no mount) that are symlinks or regular files with an execute bit, minus the configured
  deny-list `shim_exclude` (shells, coreutils and friends must keep meaning the host's
  programs), minus names starting with `.` or `-` and names holding control characters or
  bytes that are not UTF-8 (nobody types them; they would only be a hazard as file names).
- **One script and hard links, not a script per program**: the first cd into an env with
  5,000 executables writes one file and 5,000 directory entries for it.  Hard links, not
  symlinks: a symlink is an inode of its own, and on a busy ext4 home 5,000 of them took
  2-4 s (0.4-0.7 ms each) where 5,000 links took 70-130 ms.  A filesystem that refuses hard
  links gets symlinks instead.  A link is current when it is the dispatcher's inode (read
  from the directory listing, no stat); the dispatcher is rewritten only when its text
  changes (the image's path, the shim directory or the launcher), and then every link is
  replaced through a temporary name, so a running shell never finds a shim missing.
- **Cache** (`ensure`): `<cache>/shims/<key>/bin/` holds the shims, `<key>/stamp` what they
  were built from: the image's device, inode, size and mtime (the loop device and Apptainer
  update the mtime when they write), the deny-list, the launcher and the condatainer version.
  `key` is the sha256 of the image's real path.  A warm `ensure` is one stat and one small
  read; a stale one relists the image.  The directory keeps its path across rebuilds (it is
  on the PATH of running shells): the dispatcher is replaced atomically, stale links removed,
  the stamp is written last, all under an flock on `<key>/lock` (our own cache file, not an
  image: the image locks are OFD locks, see locks.py).
- **Installed packages** (`pkgs_file`): `<cache>/pkgs/<key>.txt`, one package name per line,
  sorted in byte order, from the names of `upper/ext3/env/conda-meta/*.json` (plain package
  names only: `pkgcache.safe_names`, the rule of its channel listing too).  Rebuilt with the
  shims and after every `mm` operation that changes the env (`after_mm`, which also refreshes
  pkgcache's channel listing).  The hook's mm-* TAB completion reads it without starting any
  process.
"""

from __future__ import annotations

import contextlib
import os
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from condatainer import __version__, atomic, config
from condatainer.hook import launcher, pkgcache
from condatainer.image import layout
from condatainer.image.layout import PathLike

if TYPE_CHECKING:  # pragma: no cover - typing only; e2fs is imported when an image is listed
    from condatainer.image.e2fs import Entry


#: Bump when the shim template or the cache layout changes: old caches are then rebuilt.
FORMAT = 3
#: The one script of a shim directory; every shim is a hard link to it (it reads its name
#: from $0).  Starts with a dot, which no shimmed name does.
DISPATCHER = ".cnt-shim"


def root() -> Path:
    """Where all shim directories live: `<cache>/shims`."""
    return config.paths()["cache"] / "shims"


def shim_dir(image: PathLike) -> Path:
    """The directory put first on PATH while `image` is active."""
    return root() / pkgcache.cache_key(image) / "bin"


# --------------------------------------------------------------------------------------------
# Pure decisions


def _typable(name: str) -> bool:
    if not name or name.startswith((".", "-")) or "/" in name:
        return False
    if any("\udc80" <= c <= "\udcff" for c in name):
        return False  # surrogate escape: the name is not valid UTF-8
    return not any(unicodedata.category(c) == "Cc" for c in name)


def shim_names(entries: Iterable[Entry], exclude: Iterable[str]) -> list[str]:
    """Names in a bin/ listing that get a shim, sorted."""
    excluded = set(exclude)
    return sorted({
        e.name for e in entries
        if (e.is_symlink or (e.is_file and e.mode & 0o111))
        and e.name not in excluded and _typable(e.name)
    })  # fmt: skip


class Stamp(NamedTuple):
    """What a shim directory was built from; any difference means: rebuild."""

    image: str
    dev: int
    ino: int
    size: int
    mtime_ns: int
    exclude: tuple[str, ...]
    launcher: tuple[str, ...]
    version: str
    format: int

    @classmethod
    def of(cls, image: PathLike, st: os.stat_result, exclude: Sequence[str]) -> Stamp:
        return cls(
            image=os.path.realpath(os.fspath(image)),
            dev=st.st_dev,
            ino=st.st_ino,
            size=st.st_size,
            mtime_ns=st.st_mtime_ns,
            exclude=tuple(sorted(set(exclude))),
            launcher=launcher.argv(),
            version=__version__,
            format=FORMAT,
        )

    def text(self) -> str:
        """The stamp file's content.  Only ever compared, never parsed back."""
        return repr(tuple(self)) + "\n"


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


# --------------------------------------------------------------------------------------------
# Building


def shim_text(image: PathLike, directory: PathLike) -> str:
    """The text of an image's shim dispatcher (shell/shim.sh.j2, every value quoted)."""
    from condatainer import shellgen

    return shellgen.render(
        "shim", "sh",
        launcher=list(launcher.argv()),
        image=os.path.realpath(os.fspath(image)),
        dispatcher=DISPATCHER,
        shims=os.fspath(directory),
    )  # fmt: skip


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    import fcntl

    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _listing(image: PathLike, inner: str) -> list[Entry]:
    from condatainer.image import e2fs

    entries = e2fs.try_list_dir(image, inner)
    return list(entries or ())


def _build(image: PathLike, stamp: Stamp) -> None:
    """List the image and rewrite its shim directory and package cache (caller holds the lock).

    The directory keeps its path (running shells have it on PATH): a changed dispatcher is
    replaced atomically and every link with it, a missing link is created (creating a link is
    atomic), and links to programs that are gone go.
    """
    directory = shim_dir(image)
    directory.mkdir(parents=True, exist_ok=True)
    dispatcher = directory / DISPATCHER
    text = shim_text(image, directory)
    if _read_text(dispatcher) != text:
        atomic.replace(dispatcher, text, 0o755)
    target = os.stat(dispatcher).st_ino
    wanted = set(shim_names(_listing(image, layout.BIN_DIR), stamp.exclude))
    current: set[str] = set()
    for entry in os.scandir(directory):
        if entry.name == DISPATCHER:
            continue
        if entry.name in wanted and _is_link_to(entry, target):
            current.add(entry.name)
        elif entry.name not in wanted:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)
    link = _linker(directory)
    for name in sorted(wanted - current):
        link(name)
    pkgcache.write_installed(image)
    atomic.replace(directory.parent / "stamp", stamp.text(), 0o644)


def _is_link_to(entry: os.DirEntry[str], target: int) -> bool:
    """Whether a shim directory entry is the current dispatcher: a hard link to its inode (the
    listing says, no stat), or a symlink to it where hard links could not be made."""
    if entry.is_symlink():
        try:
            return os.readlink(entry.path) == DISPATCHER
        except OSError:
            return False
    return entry.inode() == target


def _linker(directory: Path) -> Callable[[str], None]:
    """What makes (or atomically replaces) the shim `name`: a hard link to the dispatcher,
    or a symlink on a filesystem without hard links."""
    dispatcher = os.fspath(directory / DISPATCHER)
    temp = os.fspath(directory / f".cnt-new-{os.getpid()}")
    hard = True

    def put(at: str) -> None:
        nonlocal hard
        if hard:
            try:
                os.link(dispatcher, at)
                return
            except FileExistsError:
                raise
            except OSError:  # EPERM/ENOTSUP/EXDEV: a filesystem without hard links
                hard = False
        os.symlink(DISPATCHER, at)

    def make(name: str) -> None:
        path = os.fspath(directory / name)
        try:
            put(path)  # a new name: one atomic link
        except FileExistsError:  # an old entry: replaced in one rename
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
            put(temp)
            os.replace(temp, path)

    return make


def _stat_image(image: PathLike) -> os.stat_result:
    from condatainer.errors import ImageError

    try:
        return os.stat(image)
    except OSError as exc:
        raise ImageError(f"{os.fspath(image)}: cannot read: {exc.strerror}") from None


def ensure(image: PathLike, exclude: Sequence[str]) -> Path:
    """The shim directory of `image`, rebuilt first when its stamp does not match the image."""
    stamp = Stamp.of(image, _stat_image(image), exclude)
    directory = shim_dir(image)
    stamp_file = directory.parent / "stamp"
    if _read_text(stamp_file) == stamp.text():
        return directory
    with _locked(directory.parent):
        if _read_text(stamp_file) != stamp.text():  # another shell may have won
            _build(image, stamp)
    return directory


def refresh(image: PathLike, exclude: Sequence[str]) -> Path:
    """Rebuild the shims and the package cache of `image` now (after an mm operation)."""
    directory = shim_dir(image)
    with _locked(directory.parent):
        _build(image, Stamp.of(image, _stat_image(image), exclude))
    return directory


def after_mm(image: PathLike, exclude: Sequence[str]) -> str | None:
    """Refresh after a writable `mm` operation: shims, installed and channel listings.

    The channel listing (pkgcache.py) follows the repodata cache micromamba keeps in the image,
    which install/update refresh.  The package operation itself already succeeded or failed on
    its own terms: a cache that cannot be refreshed must not change its exit status, so this
    returns a one-line note instead of raising.
    """
    from condatainer.errors import CondatainerError

    try:
        refresh(image, exclude)
        pkgcache.refresh(image)
    except (CondatainerError, OSError) as exc:
        return f"could not refresh the shims of {os.fspath(image)}: {exc}"
    return None
