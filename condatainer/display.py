"""Text on its way to a terminal: shown, never interpreted.

Names and values that come from an image (.condarc channels, history specs), a sidecar env
file, a script header or a path reach the user's terminal in reports, banners and errors.  A
control character there could move the cursor, rewrite the line (CR), retitle the window or
worse (ESC starts terminal escape sequences), and a bidirectional override could make a name
read as another.  `printable` shows each of them as `?`.  JSON output needs none of this:
json.dumps escapes control characters itself.

`Reporter` is the one way the core's notices, progress lines and captured output reach the
user: the CLI makes one and hands it down (see its docstring).
"""

from __future__ import annotations

import sys
from collections.abc import Callable

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (the exec path's rule)
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import TextIO

# Unicode's explicit bidirectional embeddings, overrides and isolates (category Cf).
_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def printable(text: str, *, lines: bool = False) -> str:
    """`text` with control characters and bidi overrides replaced by `?`.

    `lines=True` keeps line breaks and tabs, for messages that quote a tool's several lines.
    """
    if text.isprintable():  # the common case, and isprintable() is False for every char we replace
        return text
    import unicodedata  # only for text that needs it: not on every exec

    keep = "\n\t" if lines else ""
    return "".join(
        "?" if (c in _BIDI or unicodedata.category(c) == "Cc") and c not in keep else c
        for c in text
    )


NOTE_PREFIX = "condatainer: note: "
"""The one prefix of a notice: something the user should know that is not an error."""

Notify = Callable[[str], None]
"""Where the core sends a notice (a sentence without prefix); the CLI decides how to show it."""


class Reporter:
    """Where the core's notices, progress lines and captured command output go.

    The core never prints: it is handed one of these (the CLI makes it) and reports through it.
    Notices get `NOTE_PREFIX`; progress lines (`step`) say what a long operation is doing now;
    `output` writes a container command's captured bytes as they were.  Everything goes to
    stderr except `output`'s stdout part.  Control characters are shown, never sent.
    """

    def __init__(self, err: TextIO | None = None, out: TextIO | None = None):
        self._err = err
        self._out = out

    @property
    def err(self) -> TextIO:
        return self._err if self._err is not None else sys.stderr

    @property
    def out(self) -> TextIO:
        return self._out if self._out is not None else sys.stdout

    def note(self, text: str) -> None:
        print(printable(NOTE_PREFIX + text, lines=True), file=self.err, flush=True)

    def notes(self, texts: Iterable[str]) -> None:
        for text in texts:
            self.note(text)

    def step(self, text: str) -> None:
        print(printable(text, lines=True), file=self.err, flush=True)

    def output(self, out: bytes, err: bytes) -> None:
        for stream, data in ((self.out, out), (self.err, err)):
            stream.flush()
            buffer = getattr(stream, "buffer", None)
            if buffer is not None:
                buffer.write(data)
            else:  # a StringIO in tests
                stream.write(data.decode("utf-8", "replace"))
            stream.flush()
