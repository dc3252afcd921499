"""The sidecar `<image>.env`: variables an image wants set in the container, as data.

Format (one item per line; the same files CondaTainer writes and reads):

    #WHATIS:What this environment is for
    GOROOT=/ext3/env/go
    #ENVNOTE:GOROOT=Go installation path

- `KEY=VALUE`: KEY matches `[A-Za-z_][A-Za-z0-9_]*`, with no space before `=`.  VALUE is
  everything after the first `=`, byte for byte: quotes, `$(...)`, backticks, `$VAR` and
  spaces are kept as written and never evaluated (the value reaches the container byte-exact:
  `APPTAINERENV_KEY` with `--no-eval` under Apptainer, the environment itself in the builtin
  runtime).  So `KEY="a b"` sets a value that starts and ends with `"`; write
  `KEY=a b` for the two words.  This is also what CondaTainer does, so files move between the
  two tools unchanged.  A later line for the same KEY replaces the earlier value.
- `#ENVNOTE:KEY=text`: text shown instead of the value on interactive entry.
- `#WHATIS:text`: one line describing the image (the last one wins).
- Blank lines and other `#` comments are ignored; leading spaces and tabs before an item are
  ignored too.
- Line endings: lines end at `\\n`; a `\\r` before it (a file saved with CRLF) is dropped, so a
  value can never end in `\\r`.  A UTF-8 byte order mark at the start is dropped.

Refused, as `FILE:LINE: cause` with a hint: a line without `=`, an invalid name, `export KEY=`
(shell syntax), a NUL byte or invalid UTF-8, and the names the container runtime owns
(`CONDA_PREFIX`, `MAMBA_ROOT_PREFIX`, `IN_CONDATAINER`, `CNT_OVERLAY`, `CNT_CONDA_PREFIX`,
`PATH` — the container's PATH is built by resolve, /ext3/env/bin first — and every
`APPTAINER_*` / `SINGULARITY_*`).  A CondaTainer sidecar that sets PATH must drop that line.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import NamedTuple

from condatainer.display import printable
from condatainer.errors import EnvFileError
from condatainer.names import is_variable_name

SUFFIX = ".env"
NOTE_PREFIX = "#ENVNOTE:"
WHATIS_PREFIX = "#WHATIS:"

OWNED_NAMES = frozenset(
    # PATH too: the container's PATH is built by resolve (/ext3/env/bin first), and a value
    # here would be silently replaced.
    {
        "CONDA_PREFIX",
        "MAMBA_ROOT_PREFIX",
        "IN_CONDATAINER",
        "CNT_OVERLAY",
        "CNT_CONDA_PREFIX",
        "PATH",
    }
)
OWNED_PREFIXES = ("APPTAINER_", "SINGULARITY_")

_FORMAT_HINT = (
    "write one KEY=VALUE per line (no spaces around '='), #ENVNOTE:KEY=text, or #WHATIS:text"
)


class EnvFile(NamedTuple):
    """A parsed sidecar: variables in file order, notes by name, and the WHATIS line."""

    vars: tuple[tuple[str, str], ...] = ()
    notes: Mapping[str, str] = MappingProxyType({})
    whatis: str | None = None

    def note(self, key: str) -> str | None:
        return self.notes.get(key)


def sidecar_path(image: str | os.PathLike[str]) -> Path:
    """`env.img` -> `env.img.env` (the suffix is appended, not substituted)."""
    return Path(os.fspath(image) + SUFFIX)


def check_name(name: str) -> str | None:
    """Why `name` cannot be set from a sidecar, or None when it can."""
    if not is_variable_name(name):
        return f"invalid variable name {name!r}"
    if name in OWNED_NAMES or name.startswith(OWNED_PREFIXES):
        return f"{name} is set by condatainer or the container runtime and cannot be overridden"
    return None


def _name_hint(name: str) -> str:
    if name.startswith("export ") or name.startswith("export\t"):
        return "drop 'export': each line is KEY=VALUE, not shell code"
    if name != name.rstrip() or name != name.lstrip():
        return "remove the spaces around '=': KEY=VALUE"
    if name in OWNED_NAMES or name.startswith(OWNED_PREFIXES):
        return f"remove the {name} line; condatainer sets it when the container starts"
    return "names are letters, digits and '_', not starting with a digit"


def _bad_text(text: str) -> str | None:
    if "\0" in text:
        return "it holds a NUL byte"
    if any("\ud800" <= c <= "\udfff" for c in text):
        return "it is not valid UTF-8"
    return None


def parse(text: str, source: str) -> EnvFile:
    """Parse sidecar `text`; `source` names the file in errors (`FILE:LINE: cause`)."""
    if text.startswith("\ufeff"):
        text = text[1:]
    values: dict[str, str] = {}
    notes: dict[str, str] = {}
    whatis: str | None = None

    def fail(lineno: int, cause: str, hint: str = _FORMAT_HINT) -> EnvFileError:
        return EnvFileError(f"{source}:{lineno}: {cause}", hint=hint)

    for lineno, raw in enumerate(text.split("\n"), start=1):
        line = raw[:-1] if raw.endswith("\r") else raw
        bad = _bad_text(line)
        if bad is not None:
            raise fail(lineno, f"line {bad}", "save the file as UTF-8 text")
        item = line.lstrip(" \t")
        if not item.strip():
            continue
        if item.startswith(WHATIS_PREFIX):
            whatis = item[len(WHATIS_PREFIX) :]
            continue
        if item.startswith(NOTE_PREFIX):
            key, sep, note = item[len(NOTE_PREFIX) :].partition("=")
            if not sep:
                raise fail(lineno, "#ENVNOTE: line without '='", "write #ENVNOTE:KEY=text")
            problem = check_name(key)
            if problem is not None:
                raise fail(lineno, f"#ENVNOTE: {problem}", _name_hint(key))
            notes[key] = note
            continue
        if item.startswith("#"):
            continue
        key, sep, value = item.partition("=")
        if not sep:
            raise fail(lineno, f"not a KEY=VALUE line: {_shorten(item)!r}")
        problem = check_name(key)
        if problem is not None:
            raise fail(lineno, problem, _name_hint(key))
        values[key] = value
    return EnvFile(tuple(values.items()), notes, whatis)


def _shorten(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def load(image: str | os.PathLike[str]) -> EnvFile | None:
    """The sidecar of `image`, parsed; None when there is none.

    A sidecar that exists but cannot be read (a directory, no permission, not UTF-8) is an
    EnvFileError naming the file and the cause.
    """
    path = sidecar_path(image)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except IsADirectoryError as exc:
        raise EnvFileError(
            f"{path}: is a directory, not an env file",
            hint=f"move it away: mv {path} {path}.d",
        ) from exc
    except OSError as exc:
        raise EnvFileError(
            f"{path}: cannot read: {exc.strerror}",
            hint=f"check its permissions (ls -l {path}) or move it away",
        ) from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        lineno = data.count(b"\n", 0, exc.start) + 1
        raise EnvFileError(
            f"{path}:{lineno}: not valid UTF-8 (byte {exc.start})",
            hint="save the file as UTF-8 text",
        ) from exc
    return parse(text, str(path))


def banner(envfile: EnvFile) -> list[str]:
    """The "Overlay envs:" lines: `KEY: note` when a note exists, else `KEY: value`."""
    return [printable(f"{key}: {envfile.notes.get(key, value)}") for key, value in envfile.vars]


def render(
    vars: Sequence[tuple[str, str]] | Mapping[str, str],
    notes: Mapping[str, str] | None = None,
    whatis: str | None = None,
) -> str:
    """Write a sidecar that `parse` reads back as the same variables, notes and WHATIS.

    Each variable is followed by its note; notes for names without a variable come last.
    EnvFileError for what a line cannot carry: an invalid or runtime-owned name, a line break
    or NUL in a value, note or WHATIS.
    """
    pairs = list(vars.items()) if isinstance(vars, Mapping) else list(vars)
    notes = dict(notes or {})

    def check_text(what: str, text: str) -> str:
        problem = _bad_text(text)
        if problem is None and ("\n" in text or "\r" in text):
            problem = "it holds a line break"
        if problem is not None:
            raise EnvFileError(
                f"cannot write {what} to an env file: {problem}",
                hint="env file values are single lines of text",
            )
        return text

    def check_key(key: str) -> str:
        problem = check_name(key)
        if problem is not None:
            raise EnvFileError(
                f"cannot write {key!r} to an env file: {problem}", hint=_name_hint(key)
            )
        return key

    out: list[str] = []
    if whatis is not None:
        out.append(WHATIS_PREFIX + check_text("#WHATIS", whatis))
    written: set[str] = set()
    for key, value in pairs:
        check_key(key)
        out.append(f"{key}={check_text(key, value)}")
        if key in notes and key not in written:
            out.append(f"{NOTE_PREFIX}{key}={check_text(f'the note of {key}', notes[key])}")
        written.add(key)
    for key, note in notes.items():
        if key not in written:
            check_key(key)
            out.append(f"{NOTE_PREFIX}{key}={check_text(f'the note of {key}', note)}")
    return "".join(line + "\n" for line in out)
