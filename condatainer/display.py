"""Text on its way to a terminal: shown, never interpreted.

Names and values that come from an image (.condarc channels, history specs), a sidecar env
file, a script header or a path reach the user's terminal in reports, banners and errors.  A
control character there could move the cursor, rewrite the line (CR), retitle the window or
worse (ESC starts terminal escape sequences), and a bidirectional override could make a name
read as another.  `printable` shows each of them as `?`.  JSON output needs none of this:
json.dumps escapes control characters itself.
"""

from __future__ import annotations

import unicodedata

# Unicode's explicit bidirectional embeddings, overrides and isolates (category Cf).
_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def printable(text: str, *, lines: bool = False) -> str:
    """`text` with control characters and bidi overrides replaced by `?`.

    `lines=True` keeps line breaks and tabs, for messages that quote a tool's several lines.
    """
    if text.isprintable():  # the common case, and isprintable() is False for every char we replace
        return text
    keep = "\n\t" if lines else ""
    return "".join(
        "?" if (c in _BIDI or unicodedata.category(c) == "Cc") and c not in keep else c
        for c in text
    )
