"""Colour on a terminal: when (`wants_colour`) and how (`paint`, by role).

Colour goes only to a terminal, and never with `NO_COLOR` set and not empty
(https://no-color.org) or with `TERM=dumb`.  The roles are the parts of our output that have
one: the `condatainer: error:`, `hint:` and `condatainer: note:` prefixes, the title of the
progress line and its amount and time.  Import-light on purpose (the exec path reports errors
and notices through `errors` and `display`, which import this when they show one).
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (the exec path's rule)
if TYPE_CHECKING:
    from collections.abc import Mapping

# SGR parameters of each role (https://en.wikipedia.org/wiki/ANSI_escape_code#SGR).
STYLES = {"error": "1;31", "hint": "1", "note": "33", "title": "1", "dim": "2"}


def is_terminal(stream: object) -> bool:
    """True when `stream` is a terminal (a StringIO, a closed or missing stream is not)."""
    try:
        return bool(stream.isatty())  # type: ignore[attr-defined]
    except (AttributeError, ValueError, OSError):
        return False


def wants_colour(stream: object, environ: Mapping[str, str] | None = None) -> bool:
    """Colour for `stream`: a terminal, `NO_COLOR` unset or empty, and `TERM` not `dumb`."""
    env = os.environ if environ is None else environ
    if env.get("NO_COLOR") or env.get("TERM") == "dumb":
        return False
    return is_terminal(stream)


def paint(text: str, role: str) -> str:
    """`text` in the colour of its role (a key of `STYLES`); callers ask `wants_colour` first."""
    return f"\x1b[{STYLES[role]}m{text}\x1b[0m" if text else text
