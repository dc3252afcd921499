"""The one Jinja2 environment that turns data into shell text.

Every piece of shell code condatainer writes (the rc block, the hook, the container rc, the
self-reexec header, ...) is a template in the repository's top-level `shell/` directory
(installed as the package `condatainer.shell`), one file per shell per artifact:
`<artifact>.<shell>.j2`.  `render(artifact, shell, **context)` is the only way to
produce it.

Quoting happens here, once, by default: the environment's `finalize` shell-quotes every value a
template inserts with `{{ ... }}`, so a path like `'";&&e-$ èрт🚒中-j` comes out as one inert word
in POSIX sh, bash and zsh alike (`quote`).  fish reads quotes differently (a backslash escapes
`\\` and `'` inside its single quotes), so `*.fish.j2` templates are rendered by a second
environment whose `finalize` is `quote_fish`; everything else about the two is the same.
Templates therefore write `x={{ path }}` (fish: `set x {{ path }}`), never `x="{{ path }}"`.
Lists are refused (a template must loop and quote each element itself), and so are None,
booleans and NUL bytes, which are bugs in the caller rather than shell words.

The one way around the quoting is `Raw`: a `str` subclass that `finalize` passes through
unchanged.  It exists for text that is already shell code (say, a rendered function body
inserted into another template).  Every `Raw(...)` is a reviewed decision; grep for it.
Operations on a `Raw` (`~` concatenation, filters) return plain `str`, which is quoted again,
so rawness never spreads by accident.

jinja2 is imported lazily, inside `environment()`: importing this module (and therefore the
CLI) must stay cheap so that TAB completion never pays for jinja2.
"""

from __future__ import annotations

import functools
import importlib
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from condatainer.errors import ShellError

if TYPE_CHECKING:  # pragma: no cover - typing only, never imported at run time
    import jinja2

#: The interactive shells condatainer integrates with (`init`, `hook`, `e`, `completion`).
SHELLS = ("bash", "zsh", "fish")

#: Template "shells": the interactive ones plus POSIX sh (the self-reexec header).
_TEMPLATE_SHELLS = (*SHELLS, "sh")

# The templates' package (top-level shell/, installed as condatainer.shell; see its docstring).
TEMPLATE_DIR = Path(next(iter(importlib.import_module("condatainer.shell").__path__))).resolve()

# Characters that never need quoting in sh, bash or zsh (shlex.quote's set).  A word is left
# bare only if it consists of these alone and does not start with "=" (zsh expands a leading
# "=cmd" to the path of cmd, even in assignments).
_UNSAFE = re.compile(r"[^\w@%+=:,./-]", re.ASCII)
_UNSAFE_FISH = re.compile(r"[^\w@+=:,./-]", re.ASCII)


class Raw(str):
    """Shell text inserted verbatim by a template: the reviewed exception to quoting.

    Use it only for text that is already valid shell code produced by condatainer itself,
    never for anything that came from a user, a file name or the environment.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return f"Raw({str.__repr__(self)})"


def quote(value: object) -> str:
    """Quote one value as a single shell word (POSIX sh, bash and zsh).

    `shlex.quote` semantics: bare when only safe characters, else single quotes with each `'`
    written as `'"'"'`.  Additionally a leading `=` is quoted (zsh's EQUALS expansion).
    `Raw` passes through unchanged; ints are written as numbers.
    """
    if isinstance(value, Raw):
        return str(value)
    text = _word(value)
    if text is None:
        return str(value)
    if text and not text.startswith("=") and _UNSAFE.search(text) is None:
        return text
    return "'" + text.replace("'", "'\"'\"'") + "'"


def quote_fish(value: object) -> str:
    r"""Quote one value as a single fish word, on one line.

    Bare when only safe characters (`quote`'s set without `%`: fish still expands `%self`);
    else single quotes, inside which fish reads `\\` as `\` and `\'` as `'`.  A newline is
    written as a `\n` escape between quoted parts, so the word never spans lines.  The same
    refusals as `quote`.
    """
    if isinstance(value, Raw):
        return str(value)
    text = _word(value)
    if text is None:
        return str(value)
    if text and _UNSAFE_FISH.search(text) is None:
        return text
    parts = (p.replace("\\", "\\\\").replace("'", "\\'") for p in text.split("\n"))
    return "\\n".join(f"'{p}'" for p in parts)


def _word(value: object) -> str | None:
    """The text of a value to quote (None: an int, written as a number); TypeError/ValueError
    for what is never a shell word."""
    if isinstance(value, bool) or value is None:
        raise TypeError(f"refusing to insert {value!r} into shell code (a caller bug)")
    if isinstance(value, int):
        return None
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if isinstance(value, bytes):
        raise TypeError("refusing to insert bytes into shell code; decode them first")
    if not isinstance(value, str):
        raise TypeError(
            f"refusing to insert a {type(value).__name__} into shell code: templates loop over "
            "sequences and quote each element"
        )
    if "\0" in value:
        raise ValueError("a shell word cannot contain a NUL byte")
    return value


@functools.cache
def environment(dialect: str = "posix") -> jinja2.Environment:
    """The configured Jinja2 environment of a quoting dialect, `posix` (sh, bash, zsh) or
    `fish` (created on first use, then shared)."""
    import jinja2  # lazy: see the module docstring

    quoting = quote_fish if dialect == "fish" else quote

    def finalize(value: Any) -> str:
        if isinstance(value, jinja2.Undefined):
            return str(value)  # StrictUndefined: raises UndefinedError naming the variable
        return quoting(value)

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        finalize=finalize,
    )


def template_name(artifact: str, shell: str) -> str:
    """The file name of one artifact's template for one shell."""
    return f"{artifact}.{shell}.j2"


def render(artifact: str, shell: str, **context: Any) -> str:
    """Render `shell/<artifact>.<shell>.j2` with `context`; every inserted value is quoted.

    An unknown shell is a ShellError (the user named it); a missing variable in the template is
    jinja2's UndefinedError (a bug in the caller, not something a user can fix).
    """
    if shell not in _TEMPLATE_SHELLS:
        raise ShellError(
            f"unsupported shell '{shell}'",
            hint=f"use one of: {', '.join(SHELLS)}",
        )
    import jinja2

    try:
        dialect = "fish" if shell == "fish" else "posix"
        template = environment(dialect).get_template(template_name(artifact, shell))
    except jinja2.TemplateNotFound:
        raise ShellError(
            f"no {artifact} code for shell '{shell}' (missing {template_name(artifact, shell)})",
            hint=f"use one of: {', '.join(SHELLS)}",
        ) from None
    return template.render(**context)
