"""What TAB offers for `condatainer` arguments (argcomplete completers, as plain functions).

`cli` wires these to its arguments through thin wrappers that import this module only when
argcomplete asks, so a TAB press pays for it and an ordinary run does not.  Every function takes
the word typed so far (`prefix`) and returns the candidates that start with it; none of them
raises: a completer that fails offers nothing rather than a traceback in the user's prompt.

- `images`: `*.img` / `*.ext3` files, and directories (with a trailing `/`) to descend into;
  hidden entries only when the prefix's last component starts with a dot; `~` is expanded for
  listing but kept in what is offered.
- `profiles`, `shells`, `mm_ops`: fixed words from `profiles.names()`, `shellgen.SHELLS` and
  the mm table (with each operation's summary as its description).
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

Nothing here imports jinja2 or yaml.
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

    head, slash, tail = prefix.rpartition("/")
    typed_dir = head + slash  # "" | "/" | "sub/" | "~/x/"
    listed = os.path.expanduser(typed_dir) if typed_dir else "."
    if cwd is not None and not os.path.isabs(listed):
        listed = os.path.join(os.fspath(cwd), listed)
    dirs: list[str] = []
    files: list[str] = []
    try:
        with os.scandir(listed) as it:
            for entry in it:
                name = entry.name
                if not name.startswith(tail) or (name.startswith(".") and not tail.startswith(".")):
                    continue
                try:
                    if entry.is_dir():
                        dirs.append(f"{typed_dir}{name}/")
                    elif name.endswith(layout.IMAGE_SUFFIXES) and entry.is_file():
                        files.append(typed_dir + name)
                except OSError:
                    continue
    except OSError:
        return []
    return sorted(files) + sorted(dirs)


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
