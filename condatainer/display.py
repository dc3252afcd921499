"""Text on its way to a terminal: shown, never interpreted.

Names and values that come from an image (.condarc channels, history specs), a sidecar env
file, a script header or a path reach the user's terminal in reports, banners and errors.  A
control character there could move the cursor, rewrite the line (CR), retitle the window or
worse (ESC starts terminal escape sequences), and a bidirectional override could make a name
read as another.  `printable` shows each of them as `?`.  JSON output needs none of this:
json.dumps escapes control characters itself.

`Reporter` is the one way the core's notices, progress lines and captured output reach the
user: the CLI makes one and hands it down (see its docstring).  How much it shows is the
CLI's choice (`QUIET`, `NORMAL`, `VERBOSE`: `-q`, nothing, `-v`); the live progress line and
colour are `terminal`'s and `colour`'s, imported only when they are needed.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (the exec path's rule)
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from contextlib import AbstractContextManager
    from typing import TextIO

    from condatainer.progress import Progress
    from condatainer.terminal import Live

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

if TYPE_CHECKING:
    Notify = Callable[[str], None]
else:  # only ever in annotations, which are not evaluated: collections.abc stays unloaded
    Notify = "Callable[[str], None]"
"""Where the core sends a notice (a sentence without prefix); the CLI decides how to show it."""


QUIET, NORMAL, VERBOSE = -1, 0, 1
"""How much a Reporter shows: errors and results only; notices and progress too; and each
finished stage and external program as well."""


class Reporter:
    """Where the core's notices, progress lines and captured command output go.

    The core never prints: it is handed one of these (the CLI makes it) and reports through it.
    Notices get `NOTE_PREFIX`; progress lines (`step`) say what a long operation is doing now;
    `progress(title)` gives a long operation its live line (`terminal.Live`) when stderr is a
    terminal (or with `VERBOSE`), else `terminal.SILENT`; `detail` is shown only with
    `VERBOSE`; `output` writes a container command's captured bytes as they were.  `QUIET`
    drops notices, steps and progress.  Everything goes to stderr except `output`'s stdout
    part.  Control characters are shown, never sent; colour only where `colour.wants_colour`
    allows it.
    """

    def __init__(
        self,
        err: TextIO | None = None,
        out: TextIO | None = None,
        *,
        level: int = NORMAL,
        show_bytes: Callable[[int], str] | None = None,
    ):
        self._err = err
        self._out = out
        self.level = level
        self._show_bytes = show_bytes
        self._live: Live | None = None

    @property
    def err(self) -> TextIO:
        return self._err if self._err is not None else sys.stderr

    @property
    def out(self) -> TextIO:
        return self._out if self._out is not None else sys.stdout

    def note(self, text: str) -> None:
        if self.level > QUIET:
            prefix = self._paint(NOTE_PREFIX.rstrip(" "), "note")
            self._say(f"{prefix} {printable(text, lines=True)}")

    def notes(self, texts: Iterable[str]) -> None:
        for text in texts:
            self.note(text)

    def step(self, text: str) -> None:
        if self.level > QUIET:
            self._say(printable(text, lines=True))

    def detail(self, text: str) -> None:
        """A line only `-v` shows (which programs run, how long each stage took)."""
        if self.level >= VERBOSE:
            self._say(printable(text, lines=True))

    def progress(self, title: str) -> Progress:
        """The progress of one long operation, its first line shown at once (use it in `with`)."""
        from condatainer.colour import is_terminal, wants_colour

        tty = is_terminal(self.err)
        if self._live is None and (self.level <= QUIET or not (tty or self.level >= VERBOSE)):
            from condatainer.progress import SILENT

            return SILENT  # nothing shown: not even the terminal module (its thread) is loaded
        from condatainer import terminal

        if self._live is not None and not self._live.closed:
            return terminal.Within(self._live, printable(title))
        if self.level <= QUIET or not (tty or self.level >= VERBOSE):
            return terminal.SILENT
        live = terminal.Live(
            printable(title),
            self.err,
            live=tty,
            verbose=self.level >= VERBOSE,
            palette=terminal.Palette(wants_colour(self.err)),
            show_bytes=self._show_bytes,
        )
        self._live = live
        return live

    def output(self, out: bytes, err: bytes) -> None:
        with self._aside():
            for stream, data in ((self.out, out), (self.err, err)):
                stream.flush()
                buffer = getattr(stream, "buffer", None)
                if buffer is not None:
                    buffer.write(data)
                else:  # a StringIO in tests
                    stream.write(data.decode("utf-8", "replace"))
                stream.flush()

    def _say(self, line: str) -> None:
        with self._aside():
            print(line, file=self.err, flush=True)

    def _aside(self) -> AbstractContextManager[None]:
        """Lifts the live progress line (if one is shown) while a line is written."""
        import contextlib

        live = self._live
        if live is None or live.closed:
            self._live = None
            return contextlib.nullcontext()
        return live.aside()

    def _paint(self, text: str, role: str) -> str:
        from condatainer.colour import paint, wants_colour

        return paint(text, role) if wants_colour(self.err) else text
