"""The marked block in ~/.bashrc, ${ZDOTDIR:-~}/.zshrc and fish's conf.d snippet: add it, replace
it, remove it exactly.

`condatainer init` adds one block that sources the hook file; `init --uninstall` removes it.
fish has no one rc file to edit: it runs every file in `${XDG_CONFIG_HOME:-~/.config}/fish/conf.d/`
at startup, so for fish the "rc file" is `conf.d/condatainer.fish`, which `init` creates with
the block in it (and `--uninstall` deletes, by the created-file rule below).

    # >>> condatainer >>>
    <body rendered from shell/rcblock.<shell>.j2>
    # <<< condatainer <<<

Computing a change and carrying it out are separate, so `--dry-run` can show `diff(change)` and
write nothing: `install_block`/`remove_block` only read and return a `Change(old, new)`;
`write(change)` is the one side effect.

Byte-exact round trip (init, then init --uninstall, gives back the original bytes):

- Nothing outside the block is touched.  The block itself is always written with LF line ends
  (bash and zsh read a CR as part of the word, so a CRLF block would not even parse); a CRLF
  file keeps its CRLF lines.
- A file that ends with a newline (or is empty) gets `BLOCK\\n` appended.
- A file without a final newline gets `\\nBLOCK` appended -- no newline after the end marker.
  That is how removal knows the newline before the block is ours: an end marker at the very end
  of the file, with no newline after it, means "also remove the newline before the block".
- A file that did not exist is created with mode 0644, and the block then carries one extra
  comment line saying so (`CREATED_NOTE`).  Removing such a block deletes the file if nothing
  else is left in it, and leaves it (empty of our block) if the user has added anything.  An
  empty file that existed stays an empty file.
- Installing over an existing block replaces only the text between (and including) the markers,
  keeping the created-note, so `init` twice gives identical bytes.

A start marker without an end marker (or the reverse, or two blocks) is a ShellError telling the
user to fix the file by hand: guessing where a damaged block ends could delete their lines.

Writes are atomic (temporary file in the same directory, fsync, rename, fsync of the directory),
follow symlinks (the link's target is rewritten, the link stays), keep the file's mode (and its
owner when we are root), and refuse to overwrite a file that changed since it was read.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from pathlib import Path

from condatainer import atomic, config, shellgen
from condatainer.atomic import Change
from condatainer.errors import ShellError
from condatainer.image.layout import PathLike

BEGIN = b"# >>> condatainer >>>"
END = b"# <<< condatainer <<<"
CREATED_NOTE = (
    b"# (condatainer created this file; `condatainer init --uninstall` deletes it"
    b" if nothing else is left in it)"
)

_FIX_HINT = "edit {path} by hand: remove the lines from '# >>> condatainer >>>' to "
_FIX_HINT += "'# <<< condatainer <<<' (inclusive), then run: condatainer init"


# --------------------------------------------------------------------------------------------
# Where things live


def rc_path(shell: str, env: Mapping[str, str] | None = None) -> Path:
    """The rc file `init` edits: ~/.bashrc, ${ZDOTDIR:-~}/.zshrc, or fish's
    ${XDG_CONFIG_HOME:-~/.config}/fish/conf.d/condatainer.fish (where fish looks: a relative
    XDG_CONFIG_HOME is ignored, as the XDG spec says)."""
    env = os.environ if env is None else env
    home = Path(env.get("HOME") or Path.home())
    if shell == "bash":
        return home / ".bashrc"
    if shell == "zsh":
        zdotdir = env.get("ZDOTDIR", "")
        return (Path(zdotdir) if zdotdir else home) / ".zshrc"
    if shell == "fish":
        xdg = env.get("XDG_CONFIG_HOME", "")
        base = Path(xdg) if os.path.isabs(xdg) else home / ".config"
        return base / "fish" / "conf.d" / "condatainer.fish"
    raise ShellError(
        f"unsupported shell '{shell}'", hint=f"use one of: {', '.join(shellgen.SHELLS)}"
    )


def hook_path(shell: str, env: Mapping[str, str] | None = None) -> Path:
    """The rendered hook file the block sources: $XDG_DATA_HOME/condatainer/hook.<shell>."""
    return config.paths(env)["data"] / f"hook.{shell}"


def block_body(shell: str, hook: PathLike | None = None) -> str:
    """The block's body for `shell`, sourcing `hook` (default: `hook_path(shell)`)."""
    hook = hook_path(shell) if hook is None else hook
    return shellgen.render("rcblock", shell, hook=os.fspath(hook))


# --------------------------------------------------------------------------------------------
# Reading and locating the block


def _read(path: Path) -> tuple[Path, bytes, bool]:
    """Resolve symlinks and read the file: (target, content, exists)."""
    try:
        return atomic.read(path)
    except IsADirectoryError:
        raise ShellError(f"{path} is a directory, not a shell rc file") from None
    except OSError as exc:
        raise ShellError(
            f"cannot read {path}: {exc.strerror}", hint=f"check the permissions of {path}"
        ) from None


def _is_marker(line: bytes, marker: bytes) -> bool:
    return line.strip() == marker


def _find_block(content: bytes, path: Path) -> tuple[int, int] | None:
    """(start, end) byte offsets of the block: from the start of the BEGIN line to the end of
    the END marker text, line terminator excluded.  None when there is no block."""
    begin_at: int | None = None
    block: tuple[int, int] | None = None
    offset = 0
    # Lines end at LF only, as the shell sees them; a CR before the LF stays part of the line.
    for line in content.split(b"\n"):
        if _is_marker(line, BEGIN):
            if begin_at is not None or block is not None:
                raise _damaged(path, "has two condatainer start markers")
            begin_at = offset
        elif _is_marker(line, END):
            if begin_at is None:
                raise _damaged(path, "has a condatainer end marker without a start marker")
            block = (begin_at, offset + len(line.rstrip(b"\r")))
            begin_at = None
        offset += len(line) + 1
    if begin_at is not None:
        raise _damaged(path, "has a condatainer start marker without an end marker")
    return block


def _damaged(path: Path, what: str) -> ShellError:
    return ShellError(f"{path} {what}; not touching it", hint=_FIX_HINT.format(path=path))


def _was_created(block: bytes) -> bool:
    return any(_is_marker(line, CREATED_NOTE) for line in block.split(b"\n"))


def _make_block(body: str, created: bool) -> bytes:
    text = body.encode("utf-8", "surrogateescape").replace(b"\r\n", b"\n").strip(b"\n")
    for line in text.split(b"\n"):
        if _is_marker(line, BEGIN) or _is_marker(line, END):
            raise ValueError("the block body must not contain the block markers")
    lines = [BEGIN, *([CREATED_NOTE] if created else []), *([text] if text else []), END]
    return b"\n".join(lines)


# --------------------------------------------------------------------------------------------
# Computing changes


def install_block(rc: PathLike, body: str) -> Change:
    """The change that puts `body` in the marked block of `rc` (added, or replaced in place)."""
    path = Path(rc)
    target, old, exists = _read(path)
    found = _find_block(old, path)
    if found is not None:
        start, end = found
        created = _was_created(old[start:end])
        new = old[:start] + _make_block(body, created) + old[end:]
    elif not exists:
        new = _make_block(body, created=True) + b"\n"
    elif old == b"" or old.endswith(b"\n"):
        new = old + _make_block(body, created=False) + b"\n"
    else:
        # No final newline: ours goes before the block and none after it (see module doc).
        new = old + b"\n" + _make_block(body, created=False)
    return Change(path, target, old, new, exists, True)


def remove_block(rc: PathLike) -> Change:
    """The change that takes the marked block out of `rc`, restoring the bytes around it."""
    path = Path(rc)
    target, old, exists = _read(path)
    found = _find_block(old, path)
    if found is None:
        return Change(path, target, old, old, exists, exists)
    start, end = found
    before, after = old[:start], old[end:]
    if after.startswith(b"\r\n"):
        after = after[2:]
    elif after.startswith(b"\n"):
        after = after[1:]
    elif after == b"" and before.endswith(b"\n"):
        before = before[:-1]  # the newline we added to a file that had none at its end
    new = before + after
    created = _was_created(old[start:end])
    return Change(path, target, old, new, exists, not (created and new == b""))


def diff(change: Change) -> str:
    """A unified diff of the change, for `--dry-run` (empty when nothing would change)."""
    if not change.changed:
        return ""
    name = str(change.path)
    return "".join(
        difflib.unified_diff(
            _diff_lines(change.old),
            _diff_lines(change.new),
            fromfile=name if change.old_exists else "/dev/null",
            tofile=name if change.new_exists else "/dev/null",
        )
    )


def _diff_lines(data: bytes) -> list[str]:
    """Lines as the shell sees them (LF only), with git's marker for a missing final newline."""
    parts = data.decode("utf-8", "replace").split("\n")
    lines = [part + "\n" for part in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1] + "\n\\ No newline at end of file\n")
    return lines


# --------------------------------------------------------------------------------------------
# Carrying a change out


def write(change: Change) -> None:
    """Carry out `change` atomically (atomic.apply); refuse if the file changed since it was
    read."""
    try:
        atomic.apply(change)
    except atomic.Conflict:
        raise ShellError(
            f"{change.path} changed while condatainer was editing it; nothing written",
            hint="run the command again",
        ) from None
    except IsADirectoryError:
        raise ShellError(f"{change.path} is a directory, not a shell rc file") from None
    except FileNotFoundError:
        directory = change.target.parent
        raise ShellError(
            f"cannot create {change.path}: directory {directory} does not exist",
            hint=f"create it first: mkdir -p {directory}",
        ) from None
    except OSError as exc:
        verb = "remove" if not change.new_exists else "write"
        raise ShellError(
            f"cannot {verb} {change.path}: {exc.strerror} (in {change.target.parent})",
            hint=f"check the permissions of {change.target.parent}",
        ) from None
