"""The one Jinja2 environment that turns data into shell text.

Every piece of shell code condatainer writes (the rc block, the hook, the container rc, the
self-reexec header, ...) is a template in the repository's top-level `shell/` directory
(installed as the package `condatainer.shell`), one file per shell per artifact:
`<artifact>.<shell>.j2`.  `render(artifact, shell, **context)` is the only way to
produce it.

Quoting happens here, once, by default: the environment's `finalize` shell-quotes every value a
template inserts with `{{ ... }}`, so a path like `'";&&e-$ èрт🚒中-j` comes out as one inert word
in POSIX sh, bash and zsh alike.  Templates therefore write `x={{ path }}`, never
`x="{{ path }}"`.  Lists are refused (a template must loop and quote each element itself), and so
are None, booleans and NUL bytes, which are bugs in the caller rather than shell words.

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

#: The interactive shells condatainer integrates with (`init`, `hook`, `e`).
SHELLS = ("bash", "zsh")

#: Template "shells": the interactive ones plus POSIX sh (the self-reexec header).
_TEMPLATE_SHELLS = (*SHELLS, "sh")

# The templates' package (top-level shell/, installed as condatainer.shell; see its docstring).
TEMPLATE_DIR = Path(next(iter(importlib.import_module("condatainer.shell").__path__))).resolve()

# Characters that never need quoting in sh, bash or zsh (shlex.quote's set).  A word is left
# bare only if it consists of these alone and does not start with "=" (zsh expands a leading
# "=cmd" to the path of cmd, even in assignments).
_UNSAFE = re.compile(r"[^\w@%+=:,./-]", re.ASCII)


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
    if isinstance(value, bool) or value is None:
        raise TypeError(f"refusing to insert {value!r} into shell code (a caller bug)")
    if isinstance(value, int):
        return str(value)
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
    if value and not value.startswith("=") and _UNSAFE.search(value) is None:
        return value
    return "'" + value.replace("'", "'\"'\"'") + "'"


@functools.cache
def environment() -> jinja2.Environment:
    """The one configured Jinja2 environment (created on first use, then shared)."""
    import jinja2  # lazy: see the module docstring

    def finalize(value: Any) -> str:
        if isinstance(value, jinja2.Undefined):
            return str(value)  # StrictUndefined: raises UndefinedError naming the variable
        return quote(value)

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
        template = environment().get_template(template_name(artifact, shell))
    except jinja2.TemplateNotFound:
        raise ShellError(
            f"no {artifact} code for shell '{shell}' (missing {template_name(artifact, shell)})",
            hint=f"use one of: {', '.join(SHELLS)}",
        ) from None
    return template.render(**context)
