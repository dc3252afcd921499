"""Progress on a real terminal (a pty), and none on a pipe.

Each command runs as a user runs it (`python -m condatainer ...`), its stderr on a pty and its
stdout in a file, so what the terminal shows and what the command prints as its result are
told apart.  Nothing is decided by the clock: "the first line at once" is shown by holding
the slow tool at a gate (a wrapper that waits for a file the test creates) and reading the
line while the work has not started; the elapsed time is awaited as an event (the redrawn
line that says `1s`), with a hang guard.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pexpect
import pytest

from condatainer import runner
from tests.ptylib import ERASE, SGR, finish, spawn
from tests.support import REPO, cnt, ok


@pytest.fixture
def image(wd: Path) -> Path:
    ok(cnt("o", "env.img", "-s", "256M", cwd=wd))
    return wd / "env.img"


@pytest.fixture
def gate(tmp_path: Path, need: object) -> tuple[Path, dict[str, str]]:
    """A `e2image` that waits for the file `gate` before it runs the real one; its PATH."""
    real = runner.require("e2image")
    bindir = tmp_path / "gated"
    bindir.mkdir()
    opened = tmp_path / "gate-open"
    wrapper = bindir / "e2image"
    wrapper.write_text(
        f"#!/bin/sh\nwhile [ ! -e '{opened}' ]; do sleep 0.05; done\nexec '{real}' \"$@\"\n"
    )
    wrapper.chmod(0o755)
    return opened, {"PATH": f"{bindir}:{os.environ['PATH']}"}


def test_pack_shows_its_first_line_at_once_then_the_time_and_ends_with_sizes(
    image: Path, wd: Path, tmp_path: Path, gate: tuple[Path, dict[str, str]]
) -> None:
    opened, path = gate
    out = tmp_path / "stdout"
    child = spawn(["overlay", "pack", "env.img"], out, wd, NO_COLOR="1", **path)
    try:
        # e2image waits at the gate: the line is already there, naming the stage and its size.
        child.expect(r"packing env\.img: copying the blocks in use \(e2image\) · 0B of [\d.]+[KM]")
        child.expect(r" · 1s")  # redrawn in place with the elapsed time while it waits
        opened.touch()
        shown = finish(child)
    finally:
        opened.touch()
        child.close(force=True)
    assert "compressing" in shown or "checking the copy" in shown
    assert shown.endswith(ERASE)  # the line is gone before the result
    result = out.read_text()
    assert re.fullmatch(
        r"env\.img: packed into env\.img\.zst: 256M \([\d.]+[KM] in use\) -> [\d.]+[KM]"
        r" in [\d.]+ s\n",
        result,
    ), result


@pytest.mark.parametrize(
    ("args", "title", "stage", "result"),
    [
        (["o", "new.img", "-s", "128M"], "creating new.img (128M, allocated)",
         "making the filesystem (mke2fs)", r"created new\.img \(128M, allocated"),
        (["overlay", "resize", "env.img", "-s", "320M"], "resizing env.img to 320M",
         "growing the filesystem (resize2fs)", r"env\.img: resized from 256M to 320M"),
        (["overlay", "check", "env.img", "-f"], "checking env.img",
         "reading the filesystem (e2fsck -n)", r"env\.img: no errors found"),
        (["overlay", "chown", "env.img", "-u", "1234", "-g", "1234"],
         "changing the owner of env.img's files", "listing the files (debugfs)",
         r"env\.img: \d+ inodes now owned by 1234:1234"),
    ],
)  # fmt: skip
def test_long_commands_show_progress_on_a_terminal_and_none_on_a_pipe(
    image: Path, wd: Path, tmp_path: Path, args: list[str], title: str, stage: str, result: str
) -> None:
    out = tmp_path / "stdout"
    shown = finish(spawn(args, out, wd, NO_COLOR="1"))
    assert shown.startswith(ERASE + title)  # the first thing on the terminal
    assert f"{title}: {stage}" in shown
    assert shown.endswith(ERASE)
    assert "\x1b[1m" not in shown  # NO_COLOR
    assert re.match(result, out.read_text()), out.read_text()
    # The same on a pipe (a log, a job's output): the result, and not a byte more.
    if args[0] == "o":
        (wd / "new.img").unlink()
    else:
        args = [*args[:-2], "-s", "384M"] if "-s" in args else args
    res = ok(cnt(*args, cwd=wd))
    assert res.stderr == ""
    assert res.stdout.startswith(("created", "env.img: ")), res


def test_unpack_shows_progress_and_ends_with_sizes(image: Path, wd: Path, tmp_path: Path) -> None:
    ok(cnt("overlay", "pack", "env.img", cwd=wd))
    out = tmp_path / "stdout"
    shown = finish(spawn(["overlay", "unpack", "env.img.zst", "-o", "back.img"], out, wd))
    plain = SGR.sub("", shown)
    assert plain.startswith(ERASE + "unpacking env.img.zst")
    assert "unpacking env.img.zst: decompressing (zstd) · " in plain
    assert "\x1b[1m" in shown  # colour: a terminal, NO_COLOR unset
    assert re.fullmatch(
        r"env\.img\.zst: unpacked into back\.img: [\d.]+[KM] -> 256M \(allocated\) in [\d.]+ s\n",
        out.read_text(),
    ), out.read_text()


def test_pack_and_unpack_on_a_pipe_give_only_the_result(image: Path, wd: Path) -> None:
    for args in (
        ["overlay", "pack", "env.img"],
        ["overlay", "unpack", "env.img.zst", "-o", "b.img"],
    ):
        res = ok(cnt(*args, cwd=wd))
        assert res.stderr == ""
        assert res.stdout.count("\n") == 1 and " in " in res.stdout


def test_quiet_shows_no_progress_even_on_a_terminal(image: Path, wd: Path, tmp_path: Path) -> None:
    out = tmp_path / "stdout"
    shown = finish(spawn(["-q", "overlay", "resize", "env.img", "-s", "300M"], out, wd))
    assert shown == ""
    assert out.read_text() == "env.img: resized from 256M to 300M\n"
    shown = finish(spawn(["overlay", "check", "env.img", "--quiet"], out, wd))
    assert shown == ""


def test_verbose_on_a_pipe_logs_each_stage_and_program(image: Path, wd: Path) -> None:
    res = ok(cnt("overlay", "check", "-v", "env.img", cwd=wd))
    lines = res.stderr.splitlines()
    assert lines[0] == "checking env.img"
    assert any(re.fullmatch(r"running: \S*e2fsck -n env\.img", line) for line in lines), lines
    assert any(
        re.fullmatch(r"checking env\.img: reading the filesystem \(e2fsck -n\) \([\d.]+ s\)", line)
        for line in lines
    ), lines
    assert "\x1b" not in res.stderr


def test_errors_are_coloured_on_a_terminal_only(wd: Path, tmp_path: Path) -> None:
    out = tmp_path / "stdout"
    child = spawn(["overlya"], out, wd)
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 2
    assert "\x1b[1;31mcondatainer: error:\x1b[0m 'overlya' is not a condatainer command" in str(
        child.before
    )
    child = spawn(["overlya"], out, wd, NO_COLOR="yes")
    child.expect(pexpect.EOF)
    assert "\x1b[" not in str(child.before)
    res = subprocess.run(
        [sys.executable, "-m", "condatainer", "overlya"],
        env={**os.environ, "PYTHONPATH": str(REPO), "TERM": "xterm"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert res.stderr.startswith("condatainer: error: 'overlya'")
