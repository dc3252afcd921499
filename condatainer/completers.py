"""What TAB offers for `condatainer` arguments (argcomplete completers, as plain functions).

`cli` wires these to its arguments through thin wrappers that import this module only when
argcomplete asks, so a TAB press pays for it and an ordinary run does not.  Every function takes
the word typed so far (`prefix`) and returns the candidates that start with it; none of them
raises: a completer that fails offers nothing rather than a traceback in the user's prompt.

- `images`: `*.img` / `*.ext3` files, and directories (with a trailing `/`) to descend into;
  hidden entries only when the prefix's last component starts with a dot; `~` is expanded for
  listing but kept in what is offered.
- `scripts`: for `run SCRIPT` (and `header --insert`): job scripts -- files with a script
  suffix (`.sh`, `.slurm`, `.sbatch`, `.py`, ...), executable files, or files starting with
  `#!` -- and directories; never images, packed images or sidecars.
- `profiles`, `shells`, `mm_ops`: fixed words from `profiles.names()`, `shellgen.SHELLS` and
  the mm table (with each operation's summary as its description).
- `config_keys`, `config_values`: `config get|set KEY` completes the keys (each with its
  current value, cut to 40 characters, as description); `config set KEY VALUE` the key's
  allowed values where it has a fixed set (`gpu`: auto on off), files or directories for the
  path keys, else the value it has now (`default_size` -> `10G`), so TAB never falls back
  to unrelated file names.
- `mm_args`: for `condatainer mm OP ...`: the operation's options (`mm.Op.options`), the actions
  of `channels`, installed package names for operations marked `completes_installed`
  (remove/update/pin) and channel package names for `completes_channel` (install/search).
  Names come from the listings kept per image (`pkgcache.installed_file`, `pkgcache.channel_file`);
  the image is `-o IMG`, else `$CNT_OVERLAY`, else the one autoload would find.  With no
  installed-names listing yet, the image is read once with debugfs (a few ms); channel names
  are never read from the image at TAB time, since a conda-forge repodata file is hundreds
  of MB.

`autocomplete(parser)` is what `cli.main` calls when the shell asks (`_ARGCOMPLETE` set):
argcomplete's finder, with two decisions of ours:

- options are offered only once a `-` is typed (`always_complete_options=False`):
  `condatainer overlay resize <TAB>` lists images, not `-h --help -s --size` among them;
- after `condatainer mm OP`, a word starting with `-` belongs to OP (argparse hands everything
  after OP to it), so OP's options are offered there instead of `mm`'s own `-o/--overlay`;
  argcomplete alone only asks the completer once the remainder has a first word.

Nothing here imports jinja2; yaml only when a config completer reads a config file that has
no parsed copy in the cache yet.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import argparse


def _matching(words: Iterable[str], prefix: str) -> list[str]:
    return [w for w in words if w.startswith(prefix)]


def images(prefix: str, cwd: str | os.PathLike[str] | None = None) -> list[str]:
    """Image files and directories below the directory part of `prefix`, sorted."""
    from condatainer.image import layout

    typed_dir, _, entries = _entries(prefix, cwd)
    dirs: list[str] = []
    files: list[str] = []
    for entry in entries:
        try:
            if entry.is_dir():
                dirs.append(f"{typed_dir}{entry.name}/")
            elif entry.name.endswith(layout.IMAGE_SUFFIXES) and entry.is_file():
                files.append(typed_dir + entry.name)
        except OSError:
            continue
    return sorted(files) + sorted(dirs)


#: File name endings of job scripts (`run`'s script argument).
SCRIPT_SUFFIXES = (
    ".sh", ".bash", ".zsh", ".ksh", ".csh", ".tcsh", ".fish", ".slurm", ".sbatch", ".job",
    ".pbs", ".qsub", ".lsf", ".bsub", ".py", ".R", ".r", ".jl", ".pl", ".rb", ".nf", ".smk",
)  # fmt: skip
#: Never a script: images, packed images, sidecars, base images.
_NOT_SCRIPTS = (".img", ".ext3", ".zst", ".env", ".sif", ".sqsh", ".squashfs")
_SNIFF_LIMIT = 200  # files read for a `#!` line per TAB, at most
_DESCRIPTION = 40  # characters of a value shown beside its key (zsh, fish)


def _entries(
    prefix: str, cwd: str | os.PathLike[str] | None
) -> tuple[str, str, list[os.DirEntry[str]]]:
    """(typed directory part, name part, directory entries matching it) for a path prefix;
    hidden entries only when the name part starts with a dot."""
    head, slash, tail = prefix.rpartition("/")
    typed_dir = head + slash  # "" | "/" | "sub/" | "~/x/"
    listed = os.path.expanduser(typed_dir) if typed_dir else "."
    if cwd is not None and not os.path.isabs(listed):
        listed = os.path.join(os.fspath(cwd), listed)
    found: list[os.DirEntry[str]] = []
    try:
        with os.scandir(listed) as it:
            for entry in it:
                name = entry.name
                if name.startswith(tail) and (tail.startswith(".") or not name.startswith(".")):
                    found.append(entry)
    except OSError:
        return typed_dir, tail, []
    return typed_dir, tail, found


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def _shebang(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(2) == b"#!"
    except OSError:
        return False


def scripts(prefix: str, cwd: str | os.PathLike[str] | None = None) -> list[str]:
    """Job scripts and directories below the directory part of `prefix`, sorted."""
    typed_dir, _, entries = _entries(prefix, cwd)
    dirs: list[str] = []
    files: list[str] = []
    sniffed = 0
    for entry in entries:
        name = entry.name
        if _is_dir(entry):
            dirs.append(f"{typed_dir}{name}/")
            continue
        try:
            if not entry.is_file() or name.endswith(_NOT_SCRIPTS):
                continue
            script = name.endswith(SCRIPT_SUFFIXES) or bool(entry.stat().st_mode & 0o111)
        except OSError:
            continue
        if not script and sniffed < _SNIFF_LIMIT:
            sniffed += 1
            script = _shebang(entry.path)
        if script:
            files.append(typed_dir + name)
    return sorted(files) + sorted(dirs)


def paths(
    prefix: str, *, dirs_only: bool = False, cwd: str | os.PathLike[str] | None = None
) -> list[str]:
    """Files (unless `dirs_only`) and directories below the directory part of `prefix`."""
    typed_dir, _, entries = _entries(prefix, cwd)
    dirs = [f"{typed_dir}{e.name}/" for e in entries if _is_dir(e)]
    files = [] if dirs_only else [typed_dir + e.name for e in entries if not _is_dir(e)]
    return sorted(files) + sorted(dirs)


#: Config keys whose value is a file or a directory (True: a directory).
_PATH_KEYS = {
    "base_image": False,
    "ca_bundle": False,
    "micromamba": False,
    "apptainer_bin": False,
    "fetch_dir": True,
    "logs_dir": True,
}


def config_keys(prefix: str) -> dict[str, str]:
    """The config keys starting with `prefix`, each with its current value as description."""
    from condatainer import config

    try:
        cfg: Any = config.load(os.environ)
    except Exception:  # a broken config file: still offer the keys (`config set` fixes it)
        cfg = None
    found: dict[str, str] = {}
    for key in sorted(config.KEYS):
        if key.startswith(prefix):
            now = ", ".join(config.get(cfg, key).splitlines()) if cfg is not None else ""
            found[key] = now if len(now) <= _DESCRIPTION else now[: _DESCRIPTION - 3] + "..."
    return found


def config_values(prefix: str, key: str | None) -> list[str]:
    """What `config set KEY <TAB>` offers (see the module docstring)."""
    from condatainer import config

    if key not in config.KEYS:
        return []
    allowed = config.choices(key)
    if allowed:
        return _matching(allowed, prefix)
    if key in _PATH_KEYS:
        return paths(prefix, dirs_only=_PATH_KEYS[key])
    try:
        now = config.get(config.load(os.environ), key)
    except Exception:  # a broken config file: nothing to show
        return []
    value = ",".join(now.splitlines())  # a list key, as `config set` takes it
    return [value] if value and value.startswith(prefix) else []


def profiles(prefix: str) -> list[str]:
    """Inode profile names and their aliases."""
    from condatainer.image import profiles as profiles_mod

    return _matching(profiles_mod.names(), prefix)


def shells(prefix: str) -> list[str]:
    """The shells condatainer integrates with (init, hook, completion)."""
    from condatainer.shellgen import SHELLS

    return _matching(SHELLS, prefix)


def mm_ops(prefix: str) -> dict[str, str]:
    """The mm operation names, each with its summary (zsh shows it next to the name)."""
    from condatainer.run import mm

    return {op.name: op.summary for op in mm.TABLE.values() if op.name.startswith(prefix)}


def mm_image(
    overlay: str | None, environ: Mapping[str, str] | None = None, cwd: Path | None = None
) -> Path | None:
    """The image `condatainer mm` would act on: `-o`, else $CNT_OVERLAY, else autoload."""
    environ = os.environ if environ is None else environ
    chosen = overlay or environ.get("CNT_OVERLAY")
    if chosen:
        return Path(os.path.expanduser(chosen))  # `-o ~/x.img` reaches us unexpanded
    from condatainer.image.layout import find_image

    return find_image(cwd or Path.cwd(), environ)


def installed(image: Path | None, prefix: str) -> list[str]:
    """Installed package names of `image`: its cached listing, else read from the image."""
    if image is None:
        return []
    from condatainer.hook import pkgcache

    listing = pkgcache.installed_file(image)
    if listing.exists():
        return _matching(pkgcache.read(listing), prefix)
    try:
        from condatainer.image import e2fs, layout

        entries = e2fs.try_list_dir(image, layout.META_DIR) or []
        return _matching(pkgcache.package_names(entries), prefix)
    except Exception:  # an unreadable image, missing debugfs: offer nothing, never a traceback
        return []


def channel(image: Path | None, prefix: str) -> list[str]:
    """Package names in `image`'s repodata cache, from the cached listing only."""
    if image is None:
        return []
    from condatainer.hook import pkgcache

    return pkgcache.channel_names(image, prefix)


def mm_args(
    prefix: str,
    op: str | None,
    overlay: str | None = None,
    previous: Sequence[str] = (),
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> list[str]:
    """Candidates for the word after `condatainer mm OP [previous...]`."""
    try:
        return _mm_args(prefix, op, overlay, previous, environ, cwd)
    except Exception:  # completion must never print a traceback into the user's prompt
        return []


def _mm_args(
    prefix: str,
    op: str | None,
    overlay: str | None,
    previous: Sequence[str],
    environ: Mapping[str, str] | None,
    cwd: Path | None,
) -> list[str]:
    from condatainer.run import mm

    spec = mm.TABLE.get(op or "")
    if spec is None:
        return []
    words = [w for w in previous if w != "--"]
    if (
        words
        and mm.VALUE_OPTIONS.get(words[-1])
        and (spec.completes_installed or spec.completes_channel)
    ):
        return []  # a channel or a file: let the shell's default completion have it
    if prefix.startswith("-"):
        return _matching(spec.options, prefix)
    if spec.name == "channels":
        return _matching(mm.CHANNEL_ACTIONS, prefix) if not words else []
    if spec.completes_installed:
        return installed(mm_image(overlay, environ, cwd), prefix)
    if spec.completes_channel:
        return channel(mm_image(overlay, environ, cwd), prefix)
    return []


def autocomplete(parser: argparse.ArgumentParser) -> None:
    """Answer the shell's completion request and exit, if there is one (see the docstring)."""
    from argcomplete.finders import CompletionFinder

    class Finder(CompletionFinder):
        def collect_completions(
            self,
            active_parsers: list[argparse.ArgumentParser],
            parsed_args: argparse.Namespace,
            cword_prefix: str,
        ) -> list[str]:
            op = getattr(parsed_args, "op", None)
            found: list[str]
            if (
                getattr(parsed_args, "command", None) == "mm"
                and op is not None
                and cword_prefix.startswith("-")
                and not getattr(parsed_args, "args", None)
            ):
                found = mm_args(cword_prefix, op, getattr(parsed_args, "overlay", None))
            else:
                found = super().collect_completions(active_parsers, parsed_args, cword_prefix)
            # zsh shows `value:description`; a candidate argcomplete has no description for
            # would be shown with the description "None".
            for candidate in found:
                if not self._display_completions.get(candidate):
                    self._display_completions[candidate] = ""
            return found

    Finder()(parser, always_complete_options=False)


def complete_mm(prefix: str, parsed_args: Any, **_: Any) -> list[str]:
    """argcomplete entry for `mm OP ARGS...` (the words typed so far are in parsed_args.args)."""
    return mm_args(
        prefix,
        getattr(parsed_args, "op", None),
        getattr(parsed_args, "overlay", None),
        list(getattr(parsed_args, "args", None) or ()),
    )
