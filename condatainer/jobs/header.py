"""The self-reexec header (`condatainer header`): POSIX sh that makes a job script re-execute
itself inside its container, and placing it in a script.

`insert(text)` puts it just before the first command line, i.e. after the shebang and the whole
directive block (`directives.header_end`, the rule sbatch reads by), and replaces a header that
is already there (identified by its `BEGIN`/`END` marker lines), so inserting twice gives the
same text.  `insert_file(path)` does that to a file in place, atomically, keeping its mode,
owner and symlinks; bytes that are not UTF-8 survive unchanged.
"""

from __future__ import annotations

import os
from pathlib import Path

from condatainer import atomic, shellgen
from condatainer.errors import DirectiveError, UsageError
from condatainer.jobs.directives import BLANK, header_end, lines_of
from condatainer.jobs.script import read_script

#: Marker lines of the self-reexec header (literal in shell/header.sh.j2; a test checks).
BEGIN = "# >>> condatainer header >>>"
END = "# <<< condatainer header <<<"


def text() -> str:
    """The POSIX sh self-reexec header (`condatainer header` prints it)."""
    return shellgen.render("header", "sh")


def present(script: str) -> bool:
    """Whether `script` carries the header (its begin marker on a line of its own)."""
    return any(line.strip(BLANK) == BEGIN for line in script.split("\n"))


def insert(script: str, source: str = "<script>") -> str:
    """`script` with the self-reexec header just before its first command line.

    An existing header (between the marker lines) is replaced in place, so inserting twice
    gives the same text and an old header is brought up to date.
    """
    header = text()
    parts = script.split("\n")
    stripped = [part.rstrip("\r").strip(BLANK) for part in parts]
    if BEGIN in stripped:
        begin = stripped.index(BEGIN)
        if END not in stripped[begin:]:
            raise DirectiveError(
                f"{source}:{begin + 1}: a condatainer header starts here but never ends",
                hint=f"delete the broken header from {source}, then insert it again",
            )
        end = stripped.index(END, begin)
        head, tail = parts[:begin], parts[end + 1 :]
    else:
        at = header_end(lines_of(script))
        head, tail = parts[:at], parts[at:]
    return "".join(line + "\n" for line in head) + header + "\n".join(tail)


def insert_file(path: str) -> bool:
    """Insert (or bring up to date) the header in the script at `path`, in place.

    Returns False when the file already holds the current header (nothing is written).
    """
    target = Path(path)
    old = read_script(target)
    new = insert(old.decode("utf-8", "surrogateescape"), path).encode("utf-8", "surrogateescape")
    if new == old:
        return False
    change = atomic.Change(
        path=target,
        target=Path(os.path.realpath(target)),
        old=old,
        new=new,
        old_exists=True,
        new_exists=True,
    )
    try:
        atomic.apply(change)
    except atomic.Conflict:
        raise UsageError(
            f"{path} changed while condatainer was editing it; nothing written",
            hint="run the command again",
        ) from None
    except OSError as exc:
        raise UsageError(
            f"cannot write {path}: {exc.strerror}", hint=f"check the permissions of {target.parent}"
        ) from None
    return True
