"""terminal.Live, Palette and display.Reporter's choice of them: the progress line is drawn at
once, redrawn in place only when what it says changes, lifted for other lines, erased at the
end; colour only on a terminal without NO_COLOR.

`Live` runs here with a clock and redraws of the test's own (`ticking=False`, `tick()`): what
is checked is what the line says at a given time, never how long anything took.  The real
thing on a real terminal is tests/cli/test_progress_pty.py.
"""

from __future__ import annotations

import io
import re

import pytest

from condatainer import colour, terminal
from condatainer.display import NORMAL, QUIET, VERBOSE, Reporter
from condatainer.image.sizes import format_size
from condatainer.progress import SILENT, Progress
from condatainer.terminal import ERASE, Live, Palette


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Tty(io.StringIO):
    """A StringIO that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def live(stream: io.StringIO, clock: Clock, **kw: object) -> Live:
    kw.setdefault("show_bytes", format_size)
    return Live("packing env.img", stream, clock=clock, ticking=False, **kw)  # type: ignore[arg-type]


def test_the_first_line_is_drawn_at_once_and_erased_at_the_end() -> None:
    out, clock = io.StringIO(), Clock()
    p = live(out, clock)
    assert out.getvalue() == ERASE + "packing env.img"
    p.close()
    assert out.getvalue() == ERASE + "packing env.img" + ERASE
    p.stage("too late")  # a closed line stays closed
    assert out.getvalue().endswith(ERASE)


def test_stage_bytes_percent_and_elapsed_time() -> None:
    out, clock = io.StringIO(), Clock()
    p = live(out, clock)
    done = {"n": 0}
    p.stage("copying the blocks in use", total=400 * 2**20, measure=lambda: done["n"])
    assert p.line() == "packing env.img: copying the blocks in use · 0B of 400M (0%)"
    done["n"] = 100 * 2**20
    clock.now += 3.4
    p.tick()
    assert p.line() == "packing env.img: copying the blocks in use · 100M of 400M (25%) · 3s"
    assert out.getvalue().endswith(ERASE + p.line())
    clock.now += 62
    p.stage("compressing (zstd)", measure=lambda: 5 * 2**20)
    assert p.line() == "packing env.img: compressing (zstd) · 5M · 1m05s"


def test_nothing_is_written_when_nothing_changed() -> None:
    out, clock = io.StringIO(), Clock()
    p = live(out, clock)
    p.stage("checking")
    written = out.getvalue()
    clock.now += 0.5  # still under a second: the line says the same
    p.tick()
    p.tick()
    assert out.getvalue() == written
    clock.now += 1
    p.tick()
    assert out.getvalue() == written + ERASE + "packing env.img: checking · 1s"


def test_a_measure_that_fails_shows_no_amount_or_nothing_yet() -> None:
    out, clock = io.StringIO(), Clock()
    p = live(out, clock)

    def unreadable() -> int:
        raise PermissionError("cannot stat it")

    p.stage("copying", total=10, measure=unreadable)
    assert p.line() == "packing env.img: copying"

    def not_yet() -> int:
        raise FileNotFoundError("not made yet")

    p.stage("downloading", total=10, measure=not_yet)
    assert p.line() == "packing env.img: downloading · 0B of 10B (0%)"


def test_advance_for_callers_that_count() -> None:
    p = live(io.StringIO(), Clock())
    p.stage("downloading micromamba 2.3.0", total=4 * 2**20)
    p.advance(2**20)
    assert p.line().endswith("1M of 4M (25%)")


def test_a_narrow_terminal_cuts_the_title_not_the_progress() -> None:
    p = live(io.StringIO(), Clock())
    p.stage("copying the blocks in use (e2image)", total=100, measure=lambda: 50)
    text = p.line(40)
    assert len(text) <= 40
    assert text.endswith(" · 50B of 100B (50%)")
    assert text.startswith("packing env") and "…" in text


def test_other_lines_lift_the_progress_line_and_put_it_back() -> None:
    out, clock = io.StringIO(), Clock()
    p = live(out, clock)
    p.stage("checking")
    before = out.getvalue()
    with p.aside():
        out.write("condatainer: note: something\n")
    assert out.getvalue() == (
        before + ERASE + "condatainer: note: something\n" + ERASE + "packing env.img: checking"
    )


def test_verbose_keeps_each_finished_stage_with_its_time() -> None:
    out, clock = io.StringIO(), Clock()
    p = live(out, clock, live=False, verbose=True)
    p.stage("checking")
    clock.now += 1.25
    p.stage("resizing")
    clock.now += 2
    p.close()
    assert out.getvalue() == (
        "packing env.img\npacking env.img: checking (1.2 s)\npacking env.img: resizing (2.0 s)\n"
    )


def test_colour_on_a_terminal_only_and_never_with_no_color(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert colour.wants_colour(Tty(), {"TERM": "xterm"})
    assert not colour.wants_colour(io.StringIO(), {"TERM": "xterm"})
    assert not colour.wants_colour(Tty(), {"TERM": "xterm", "NO_COLOR": "1"})
    assert colour.wants_colour(Tty(), {"TERM": "xterm", "NO_COLOR": ""})  # empty: unset
    assert not colour.wants_colour(Tty(), {"TERM": "dumb"})
    assert Palette(False).paint("x", "error") == "x"
    assert Palette(True).paint("x", "error") == "\x1b[1;31mx\x1b[0m"


def test_the_live_line_is_coloured_only_with_a_palette() -> None:
    out = io.StringIO()
    live(out, Clock(), palette=Palette(True)).stage("checking", measure=lambda: 1)
    assert out.getvalue().endswith(
        ERASE + "\x1b[1mpacking env.img: checking\x1b[0m\x1b[2m · 1B\x1b[0m"
    )


def test_durations_read_like_a_person_says_them() -> None:
    assert terminal.duration(0.42) == "0.4 s"
    assert terminal.duration(14.5) == "14.5 s"
    assert terminal.duration(125) == "2 min 05 s"
    assert terminal.duration(3 * 3600 + 60 * 7) == "3 h 07 min"


# --- display.Reporter: who gets a live line -------------------------------------------------


def test_a_pipe_gets_no_progress_and_quiet_gets_nothing_but_output() -> None:
    pipe = io.StringIO()
    assert Reporter(err=pipe).progress("packing") is SILENT
    assert Reporter(err=Tty(), level=QUIET).progress("packing") is SILENT
    quiet = Reporter(err=pipe, out=io.StringIO(), level=QUIET)
    quiet.note("a note")
    quiet.step("a step")
    quiet.detail("a detail")
    quiet.output(b"out\n", b"err\n")
    assert pipe.getvalue() == "err\n"


def test_a_terminal_gets_a_live_line_and_notes_go_around_it() -> None:
    tty = Tty()
    report = Reporter(err=tty, level=NORMAL)
    with report.progress("resizing env.img") as progress:
        assert isinstance(progress, Live)
        progress.stage("checking")
        report.note("e2fsck replayed the journal")
    text = tty.getvalue()
    assert "\x1b[" in text.replace(ERASE, "")  # coloured: a terminal, NO_COLOR unset
    plain = re.sub(r"\x1b\[[0-9;]*m", "", text)
    note = "condatainer: note: e2fsck replayed the journal\n"
    assert ERASE + note + ERASE in plain  # lifted, written, put back
    assert plain.endswith(ERASE)  # and gone at the end


def test_verbose_on_a_pipe_logs_stages_and_details(monkeypatch: pytest.MonkeyPatch) -> None:
    pipe = io.StringIO()
    report = Reporter(err=pipe, level=VERBOSE)
    with report.progress("checking env.img") as progress:
        progress.stage("reading the filesystem (e2fsck -n)")
        report.detail("running: e2fsck -n env.img")
    lines = pipe.getvalue().splitlines()
    assert lines[0] == "checking env.img"
    assert lines[1] == "running: e2fsck -n env.img"
    assert lines[2].startswith("checking env.img: reading the filesystem (e2fsck -n) (")
    assert "\x1b" not in pipe.getvalue()


def test_an_operation_inside_another_uses_its_line() -> None:
    tty = Tty()
    report = Reporter(err=tty, show_bytes=format_size)
    with report.progress("creating env.img") as outer:
        inner = report.progress("condatainer's micromamba")
        assert isinstance(inner, Progress) and inner is not outer
        inner.stage("downloading micromamba 2.3.0", total=100)
        inner.advance(50)
        inner.close()
        assert isinstance(outer, Live)
        assert outer.line().startswith(
            "creating env.img: condatainer's micromamba: downloading micromamba 2.3.0 · 50B of"
        )
        assert not outer.closed


def test_control_characters_in_a_title_are_shown_not_sent() -> None:
    tty = Tty()
    with Reporter(err=tty).progress("packing \x1b]0;owned\x07.img") as progress:
        assert isinstance(progress, Live)
        assert progress.title == "packing ?]0;owned?.img"


def test_a_program_with_the_terminal_pauses_the_line() -> None:
    """runner.stream hands the terminal over (Apptainer's own progress bars): no line is drawn
    meanwhile, and it comes back after."""
    import sys

    from condatainer import runner

    out, clock = io.StringIO(), Clock()
    p = live(out, clock)
    p.stage("pulling the base image")
    before = out.getvalue()
    with terminal.paused():
        assert out.getvalue() == before + ERASE
        clock.now += 5
        p.tick()
        assert out.getvalue() == before + ERASE  # nothing drawn while paused
    assert out.getvalue().endswith(ERASE + "packing env.img: pulling the base image · 5s")
    # ... and runner.stream is what pauses it
    mark = len(out.getvalue())
    assert runner.stream([sys.executable, "-c", "pass"]) == 0
    assert out.getvalue()[mark:] == ERASE + ERASE + "packing env.img: pulling the base image · 5s"
    p.close()
