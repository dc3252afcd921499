"""The warm cd: the activation's answer, replayed while nothing it was made from has changed.

The cd hook runs the activation (activate.py) whenever the image it finds changes: every cd
into a project, and out and in again.  Its answer (the shell code for the hook to eval, and
the lines for stderr) is a function of a few files and variables, so the full path writes it
down (`record`, called by `activate.command`) and the next call with the same arguments
replays it (`replay`, called by `call.main`), importing nothing but `memo` -- interpreter
start is then most of what a cd into a project costs.

What an entry holds, and what a replay compares before it trusts it (see `memo`):

- the call: shell, image and project as the hook passed them, `--noticed`/`--noted`, and the
  image's real path (trust records are kept by real path);
- HOME and the CNT_ and XDG_ variables (the configuration and where the caches live), the
  interpreter (the shims run the condatainer installed beside it), the condatainer version,
  the effective user and group;
- stamps of what the answer read: the image, with its size and mtime (the shims are listed
  from its content), its allow record, its sidecar file (the "Overlay envs:" lines), the
  configuration files, the activation template, the console script beside the interpreter,
  and, taken after the answer, the stamp file of the image's shim cache (rewritten whenever
  the shims are rebuilt, e.g. after an `mm` operation).

Any difference is a miss and the full activation runs (and records again).  A hook rendered
by another version is never answered from here: the full path rewrites its hook file.
"""

from __future__ import annotations

import os
import sys

from condatainer import __version__, memo

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    # (shell, image, project, hook version or None, noticed, noted)
    Call = tuple[str, str, str, str | None, bool, bool]

FORMAT = 1
ACTIVATIONS = "activations"
SHELLS = ("bash", "zsh", "fish")  # shells.SHELLS, which this module must not import
ENVIRON_NAMES = frozenset({"HOME"})
ENVIRON_PREFIXES = ("CNT_", "XDG_")


def parse(argv: Sequence[str]) -> Call | None:
    """The hook's call `SHELL [--hook-version V] [--noticed] [--noted] [--] IMAGE PROJECT`
    (a fixed form: the hook writes it), or None when `argv` is not that."""
    words = list(argv)
    flags = {"--noticed": False, "--noted": False}
    version: str | None = None
    positional: list[str] = []
    while words:
        word = words.pop(0)
        if word == "--":
            positional += words
            break
        if word == "--hook-version" and words:
            version = words.pop(0)
        elif word in flags:
            flags[word] = True
        else:
            positional.append(word)
    if len(positional) != 3 or positional[0] not in SHELLS:
        return None
    shell, image, project = positional
    return shell, image, project, version, flags["--noticed"], flags["--noted"]


def _key(call: Call, environ: Mapping[str, str]) -> tuple[object, ...]:
    shell, image, project, _, noticed, noted = call
    return (
        FORMAT,
        __version__,
        shell,
        image,
        project,
        noticed,
        noted,
        os.path.realpath(image),
        memo.environ_key(environ, ENVIRON_NAMES, ENVIRON_PREFIXES),
        sys.executable,
        os.geteuid(),
        os.getegid(),
    )


def _entry_path(call: Call, environ: Mapping[str, str]) -> str:
    name = memo.entry_name((*call[:3], str(call[4]), str(call[5])), ".act")
    return os.path.join(memo.cache_dir(environ), ACTIVATIONS, name)


def beside() -> str:
    """The console script beside the interpreter, which the shims and the hook run."""
    return os.path.join(os.path.dirname(sys.executable), "condatainer")


def replay(call: Call, environ: Mapping[str, str]) -> tuple[bytes, tuple[str, ...]] | None:
    """(stdout, stderr lines) of the activation recorded for `call`, when everything it was
    made from is as it was; None on a miss."""
    entry = memo.load(_entry_path(call, environ))
    if entry is None or entry.get("key") != _key(call, environ):
        return None
    code, lines = entry.get("code"), entry.get("lines")
    if not (isinstance(code, bytes) and isinstance(lines, tuple)):
        return None
    if not all(isinstance(line, str) for line in lines):
        return None
    if not memo.unchanged(entry.get("stamps")):
        return None
    return code, lines


def record(
    call: Call,
    environ: Mapping[str, str],
    answer: tuple[bytes, Sequence[str]],
    read: memo.Stamps,
    ours: Iterable[str],
) -> None:
    """Write down the answer the full activation gave `call` (best effort, never raises).

    `read`: the stamps of what it read, taken before it decided (a change while it decided
    is then a miss next time); `ours`: our own cache files it may have just written, stamped
    now."""
    code, lines = answer
    entry: dict[str, object] = {
        "key": _key(call, environ),
        "stamps": (*read, *memo.stamps(ours)),
        "code": code,
        "lines": tuple(lines),
    }
    memo.store(_entry_path(call, environ), entry)
