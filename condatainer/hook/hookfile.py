"""The hook file: `$XDG_DATA_HOME/condatainer/hook.<shell>`, rendered from shell/hook.<shell>.j2.

`text(shell)` renders it from data (condatainer's version, how to run condatainer and the
activation, where shims live, the stamp commands rewrite (stamp.py), what the image search
looks for, the mm table and its TAB completion, and the TAB completion of condatainer and cnt
themselves, the text of the static completion files); `change(shell)` computes writing or
removing it as an `atomic.Change`; `refresh` rewrites an existing file that an older version
rendered (the activation calls it when the hook that called it reports another version).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from condatainer import __version__, atomic, shellgen
from condatainer.errors import ShellError
from condatainer.hook import cntcomplete, launcher, mmcomplete, rcfile, shims, stamp
from condatainer.image import layout
from condatainer.run import mm


def hook_ops() -> list[dict[str, object]]:
    """The mm table as the hook templates use it: one mm-OP function per operation.

    `rehash`: the operation can change the env's executables (the table's `refresh`), so the
    function forgets hashed command paths afterwards.
    """
    return [{"name": op.name, "rehash": op.refresh} for op in mm.TABLE.values()]


def mm_completion(shell: str) -> shellgen.Raw:
    """The mm-* TAB completion the hook includes (hook.mmcomplete renders it).

    Raw, reviewed: it is shell code condatainer rendered itself, with its own values quoted.
    """
    return shellgen.Raw(mmcomplete.script(shell))


def cnt_completion(shell: str) -> shellgen.Raw:
    """The TAB completion of condatainer and cnt the hook includes (hook.cntcomplete).

    Raw, reviewed: the text of the committed completions/ files, rendered by condatainer.
    """
    return shellgen.Raw(cntcomplete.script(shell))


def text(shell: str) -> str:
    """The hook for `shell`, rendered from shell/hook.<shell>.j2."""
    return shellgen.render("hook", shell, **context(shell))


def context(shell: str) -> dict[str, Any]:
    """The data the hook template prints (the golden-file test varies what differs per host)."""
    return dict(
        version=__version__,
        launcher=list(launcher.argv()),
        activator=launcher.activate_argv(),
        shim_root=os.fspath(shims.root()),
        stamp=os.fspath(stamp.path()),
        autoload_name=layout.AUTOLOAD_NAME,
        autoload_user=list(layout.AUTOLOAD_USER_NAME),
        autoload_subdirs=[f"/{sub}" if sub else "" for sub in layout.AUTOLOAD_SUBDIRS],
        ops=hook_ops(),
        mm_completion=mm_completion(shell),
        completion=cnt_completion(shell),
    )


def _file_change(path: Path, new: bytes | None) -> atomic.Change:
    """A whole-file change (the hook file), carried out by rcfile.write like the rc edit."""
    target = Path(os.path.realpath(path))
    try:
        old, exists = target.read_bytes(), True
    except FileNotFoundError:
        old, exists = b"", False
    except OSError as exc:
        raise ShellError(f"cannot read {path}: {exc.strerror}") from None
    return atomic.Change(path, target, old, new or b"", exists, new is not None)


def change(shell: str, *, remove: bool = False) -> atomic.Change:
    """The change that writes (or removes) the hook file of `shell`."""
    new = None if remove else text(shell).encode("utf-8", "surrogateescape")
    return _file_change(rcfile.hook_path(shell), new)


def write(edit: atomic.Change) -> None:
    """Carry out a change of the hook file or the rc file (its directory made first)."""
    if edit.changed and edit.new_exists:
        edit.target.parent.mkdir(parents=True, exist_ok=True)
    rcfile.write(edit)


def refresh(shell: str) -> bool:
    """Rewrite an existing hook file whose text is out of date; True if it was rewritten.

    Only a file that exists is rewritten: `eval` users have none, and a user who ran
    `init --uninstall` must not get it back.
    """
    edit = change(shell)
    if not edit.old_exists or not edit.changed:
        return False
    write(edit)
    return True
