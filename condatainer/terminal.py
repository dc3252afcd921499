"""What a terminal gets that a pipe does not: a live progress line, and colour.

- `Live` is the `progress.Progress` of an operation someone watches, on a terminal (stderr):
  its first line at once, then the same line redrawn in place (`\\r`, erase to the end) with
  the stage, bytes or percent where known, and the elapsed time.  A thread redraws it a few
  times a second and writes only when the text changed; `close` erases it, so the result or an
  error that follows starts on a clean line.  Anything else written meanwhile goes through
  `aside()`, which lifts the line and puts it back; `paused()` takes every line away while a
  program we start has the terminal (runner.stream).  With `verbose`, each finished stage stays
  as a line of its own with its time; on a pipe (`live=False`) those lines are all there is.
- `Within` is an operation inside one already shown: its stages go on the outer line.
- `Palette` colours the progress line where `colour.wants_colour` allows it: only on a
  terminal, never with `NO_COLOR` (https://no-color.org: set and not empty) or `TERM=dumb`.

The CLI decides -- a terminal or not, `-q`, `-v`, colour -- and makes these through
`display.Reporter.progress`; the core only receives them.  Nothing here reads the clock for
a decision: time is only shown (tests drive `Live` with a clock and `tick()` of their own).
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, TextIO

from condatainer.colour import is_terminal, paint
from condatainer.progress import SILENT, Progress

if TYPE_CHECKING:
    from condatainer.progress import Measure

__all__ = [
    "SILENT",
    "Live",
    "Palette",
    "Progress",
    "Within",
    "duration",
    "is_terminal",
]

ShowBytes = Callable[[int], str]

ERASE = "\r\x1b[K"  # back to column 0, erase to the end of the line


class Palette:
    """Colours the parts of a message that have a role; does nothing when not `enabled`."""

    def __init__(self, enabled: bool):
        self.enabled = enabled

    def paint(self, text: str, role: str) -> str:
        return paint(text, role) if self.enabled else text


def duration(seconds: float) -> str:
    """Elapsed time the way result lines say it: `0.4 s`, `14.5 s`, `2 min 05 s`."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _elapsed(seconds: float) -> str:
    """Elapsed time on the live line: nothing in the first second, then `12s`, `1m05s`."""
    whole = int(seconds)
    if whole < 1:
        return ""
    if whole < 60:
        return f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _columns(stream: TextIO) -> int:
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, ValueError, OSError):
        return 80


class Live(Progress):
    """One operation's progress line on a terminal (see the module docstring).

    `live=False` draws nothing and keeps only the verbose stage lines (for `-v` on a pipe).
    `clock` and `ticking=False` let tests drive the redraws with `tick()`.
    """

    def __init__(
        self,
        title: str,
        stream: TextIO,
        *,
        live: bool = True,
        verbose: bool = False,
        palette: Palette | None = None,
        show_bytes: ShowBytes | None = None,
        clock: Callable[[], float] = time.monotonic,
        interval: float = 0.2,
        ticking: bool = True,
    ):
        self.title = title
        self._stream = stream
        self._live = live
        self._verbose = verbose
        self._palette = palette or Palette(False)
        self._show_bytes = show_bytes or (lambda n: f"{n} bytes")
        self._clock = clock
        self._lock = threading.RLock()
        self._started = clock()
        self._stage = ""
        self._stage_started = self._started
        self._total: int | None = None
        self._measure: Measure | None = None
        self._done: int | None = None
        self._shown = ""  # the text the line shows now; "" when nothing is drawn
        self.closed = False
        self._paused = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if verbose and not live:
            self._write(f"{title}\n")
        if live:
            _shown.add(self)
            self._draw()
            if ticking:
                self._thread = threading.Thread(
                    target=self._tick_until_stopped, args=(interval,), daemon=True
                )
                self._thread.start()

    # --- what the core calls -------------------------------------------------------------

    def stage(self, text: str, *, total: int | None = None, measure: Measure | None = None) -> None:
        with self._lock:
            if self.closed:
                return
            self._finish_stage()
            self._stage, self._stage_started = text, self._clock()
            self._total, self._measure, self._done = total, measure, None
            self._draw()

    def advance(self, done: int) -> None:
        with self._lock:
            self._done = done

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        with self._lock:
            if self.closed:
                return
            self._erase()
            self._finish_stage()
            self.closed = True
            _shown.discard(self)

    # --- what the reporter and the ticker call -------------------------------------------

    def tick(self) -> None:
        """Redraw the line if what it says has changed (the ticker thread calls this)."""
        with self._lock:
            if not self.closed:
                self._draw()

    @contextmanager
    def aside(self) -> Iterator[None]:
        """Lift the line while something else is written to the terminal; put it back after."""
        with self._lock:
            self._erase()
            try:
                yield
            finally:
                if not self.closed:
                    self._draw()

    def pause(self, paused: bool) -> None:
        """Take the line away and draw nothing until unpaused (a program has the terminal)."""
        with self._lock:
            if paused:
                self._erase()
            self._paused = paused
            if not paused and not self.closed:
                self._draw()

    def line(self, width: int | None = None) -> str:
        """The text of the live line now (without colour), at most `width` characters: what
        is cut is the end of the title and stage, never how far it is and for how long."""
        head, tail = self._parts()
        text = " · ".join([head, *tail])
        if width is None or len(text) <= width:
            return text
        room = width - len(" · ".join(["", *tail])) - 1
        if room < 10:  # too narrow for both: the start of the line is the more telling
            return text[: max(width - 1, 0)] + "…"
        return " · ".join([head[:room] + "…", *tail])

    def _parts(self) -> tuple[str, list[str]]:
        head = f"{self.title}: {self._stage}" if self._stage else self.title
        tail = [self._amount(), _elapsed(self._clock() - self._started)]
        return head, [part for part in tail if part]

    # --- inside --------------------------------------------------------------------------

    def _tick_until_stopped(self, interval: float) -> None:
        while not self._stop.wait(interval):
            self.tick()

    def _amount(self) -> str:
        done = self._done
        if self._measure is not None:
            try:
                done = self._measure()
            except FileNotFoundError:  # the file it measures is not there yet
                done = 0
            except OSError:
                done = None
        if done is None:
            return ""
        if self._total:
            shown = f"{self._show_bytes(done)} of {self._show_bytes(self._total)}"
            percent = min(100, done * 100 // self._total)
            return f"{shown} ({percent}%)"
        return self._show_bytes(done)

    def _draw(self) -> None:
        if not self._live or self._paused:
            return
        text = self.line(_columns(self._stream) - 1)
        if text == self._shown:
            return
        head, sep, tail = text.partition(" · ")
        painted = self._palette.paint(head, "title") + (
            self._palette.paint(sep + tail, "dim") if sep else ""
        )
        self._write(ERASE + painted)
        self._shown = text

    def _erase(self) -> None:
        if self._shown:
            self._write(ERASE)
            self._shown = ""

    def _finish_stage(self) -> None:
        """With `verbose`, the stage that ends stays on the screen as a line with its time."""
        if not (self._verbose and self._stage):
            return
        self._erase()
        took = duration(self._clock() - self._stage_started)
        self._write(f"{self.title}: {self._stage} ({took})\n")

    def _write(self, text: str) -> None:
        try:
            self._stream.write(text)
            self._stream.flush()
        except (OSError, ValueError):  # the terminal went away: the operation goes on
            pass


class Within(Progress):
    """An operation inside one already shown (a micromamba fetch while an image is made):
    its stages go on the outer line, after its title; closing it leaves the line to the
    outer operation."""

    def __init__(self, outer: Progress, title: str):
        self._outer = outer
        self._title = title
        outer.stage(title)

    def stage(self, text: str, *, total: int | None = None, measure: Measure | None = None) -> None:
        self._outer.stage(f"{self._title}: {text}", total=total, measure=measure)

    def advance(self, done: int) -> None:
        self._outer.advance(done)


_shown: weakref.WeakSet[Live] = weakref.WeakSet()  # the live lines on a terminal now


@contextmanager
def paused() -> Iterator[None]:
    """No live line while a program we start talks to the terminal itself (`runner.stream`:
    Apptainer's own progress bars); the lines come back when it is done."""
    lines = list(_shown)
    for line in lines:
        line.pause(True)
    try:
        yield
    finally:
        for line in lines:
            line.pause(False)
