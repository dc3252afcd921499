"""A busy image, as a user meets it (issue 13 item 6): the holder named as what it is, where
it runs and since when, the hint that fits, and `--wait-lock[=SECONDS]` on `e`, `exec`, `run`
and `mm` -- each against a real second condatainer holding the lock in the builtin runtime.

No timing: the tests wait for the events themselves (a lock taken, a notice written, a process
ended); `--wait-lock=0.2` is the product's own limit, and the test only waits for its outcome.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from condatainer.image import holders, locks
from condatainer.run import options, replay
from tests.imagelib import mkfs
from tests.support import REPO, World
from tests.waiting import wait_for_lock, wait_until

pytestmark = pytest.mark.root

CNT = (sys.executable, "-m", "condatainer")


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "CNT_RUNTIME": "builtin"}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    wd = tmp_path / "proj"
    tree = tmp_path / "tree"
    (tree / "upper" / "ext3" / "env" / "conda-meta").mkdir(parents=True)
    (tree / "upper" / "ext3" / "env" / ".condarc").write_text("channels: []\n")
    (tree / "work").mkdir()
    wd.mkdir()
    mkfs(tree, wd / "env.img", "32M")
    return wd


class Holder:
    """`condatainer exec -w` (or `e -r`'s reader) holding the image from a terminal of its own:
    its standard input is a pty (`tty`), and it ends when a line arrives there."""

    def __init__(self, project: Path, *args: str):
        self.master, slave = os.openpty()
        self.tty = os.ttyname(slave)[len("/dev/") :]
        self.proc = subprocess.Popen(
            [*CNT, "exec", *args, "-o", "env.img", "--", "sh", "-c", "read line"],
            cwd=project,
            env=env(),
            stdin=slave,
            stdout=subprocess.DEVNULL,
            start_new_session=True,  # no controlling terminal: the tty comes from its stdin
        )
        os.close(slave)
        wait_for_lock(project / "env.img", "write" if "-w" in args else "read")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def since(self) -> str:
        """Its start as `ps` shows it, HH:MM."""
        res = subprocess.run(
            ["ps", "-o", "lstart=", "-p", str(self.pid)], capture_output=True, text=True
        )
        return time.strftime("%H:%M", time.strptime(res.stdout.strip()))

    def release(self) -> None:
        os.write(self.master, b"\n")
        assert self.proc.wait(timeout=120) == 0

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)


@pytest.fixture
def writer(project: Path) -> Iterator[Holder]:
    holder = Holder(project, "-w")
    yield holder
    holder.close()


def cnt(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CNT, *args], cwd=project, env=env(), capture_output=True, text=True, timeout=300
    )


# --------------------------------------------------------------------------------------------
# Who holds it


def test_the_holder_is_named_as_what_it_is_where_and_since_when(
    project: Path, writer: Holder
) -> None:
    res = cnt(project, "exec", "-o", "env.img", "--", "true")
    assert res.returncode == 1
    named = re.search(
        rf"env\.img: in use for writing by condatainer exec sh \(PID {writer.pid},"
        rf" {writer.tty}, since (\w\w\w \d\d )?{writer.since()}\)\n",
        res.stderr,
    )
    assert named, res.stderr
    assert "python" not in res.stderr  # not the interpreter's argv, cut
    assert "--wait-lock[=SECONDS]" in res.stderr  # the hint says how to wait


def test_a_writer_meeting_readers_is_offered_a_read_only_shell(project: Path) -> None:
    reader = Holder(project)
    try:
        res = cnt(project, "exec", "-w", "-o", "env.img", "--", "true")
        assert res.returncode == 1
        assert f"in use for reading by condatainer exec sh (PID {reader.pid}, " in res.stderr
        assert f"hint: a read-only shell works alongside them: condatainer e -r {project}" in (
            res.stderr
        )
        assert cnt(project, "e", "-r", "env.img", "--", "true").returncode == 0  # as offered
    finally:
        reader.close()


def test_the_runtimes_relay_and_init_are_the_command_that_started_them(
    project: Path, writer: Holder
) -> None:
    """The builtin runtime's relay and init hold the image's locked file too (forks of the
    parent): one holder is named, the parent."""
    found = locks.find_holders(project / "env.img")
    assert len(found) >= 2 and {h.ppid for h in found} & {h.pid for h in found}
    assert [h.pid for h in holders.topmost(found)] == [writer.pid]


@pytest.mark.parametrize(
    ("argv", "shown"),
    [
        (["/venv/bin/python", "/home/u/.local/bin/condatainer", "e"], "condatainer e"),
        (
            [
                "/usr/bin/python3",
                "-S",
                "-m",
                "condatainer",
                "exec",
                "-w",
                "-o",
                "x.img",
                "--",
                "/ext3/env/bin/python",
                "-c",
                "1",
            ],
            "condatainer exec python",
        ),
        (
            ["/opt/cnt/bin/cnt", "overlay", "resize", "env.img", "-s", "20G"],
            "condatainer overlay resize",
        ),
        (
            ["python3.11", "-m", "condatainer.entry", "mm", "install", "numpy"],
            "condatainer mm install",
        ),
        (["/usr/bin/condatainer", "run", "-c", "4", "job/train.sh"], "condatainer run"),
        (["python3", "-c", "import condatainer"], ""),
        (["python3", "-m", "pip", "install", "condatainer"], ""),
        (["apptainer", "exec", "--overlay", "env.img", "sh"], ""),
    ],
)
def test_condatainers_own_processes_are_recognised_by_their_argv(
    argv: list[str], shown: str
) -> None:
    assert holders._program(argv) == shown


def test_terminal_numbers_name_terminals() -> None:
    assert holders._tty_name((136 << 8) | 3) == "pts/3"
    assert holders._tty_name((137 << 8) | 4) == "pts/260"
    assert holders._tty_name((4 << 8) | 2) == "tty2"
    assert holders._tty_name((4 << 8) | 65) == "ttyS1"
    assert holders._tty_name(0) == ""


# --------------------------------------------------------------------------------------------
# --wait-lock


@pytest.mark.parametrize(
    "command",
    [
        ("exec", "--wait-lock", "-o", "env.img", "--", "echo", "ran"),
        ("e", "--wait-lock=600", "env.img", "--", "echo", "ran"),
        ("e", "--wait-lock", "env.img", "--", "echo", "ran"),  # not taken as its value
        ("run", "--local", "--wait-lock", "job.sh"),
        ("mm", "--wait-lock", "-o", "env.img", "list"),
    ],
    ids=["exec", "e-seconds", "e-bare", "run", "mm"],
)
def test_wait_lock_waits_for_the_holder_then_runs(
    world: World, project: Path, writer: Holder, tmp_path: Path, command: tuple[str, ...]
) -> None:
    (project / "job.sh").write_text("#!/bin/bash\n#DEP: env.img\necho ran\n")
    err = tmp_path / "waiter.err"
    with open(err, "w") as stderr:
        waiter = subprocess.Popen(
            [*CNT, *command],
            cwd=project,
            env=env(),
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    try:
        wait_until(lambda: "waiting for it" in err.read_text(), "the waiting notice")
        assert waiter.poll() is None  # still waiting: the holder has not let go
        writer.release()
        out, _ = waiter.communicate(timeout=300)
    finally:
        if waiter.poll() is None:
            waiter.kill()
            waiter.wait()
    notice = err.read_text()
    assert waiter.returncode == 0, notice
    assert f"condatainer: note: {project / 'env.img'}: in use for writing by condatainer exec" in (
        notice
    )
    assert f"(PID {writer.pid}, {writer.tty}, since" in notice
    assert "Ctrl-C to stop" in notice
    if command[0] != "mm":
        assert out == "ran\n"


def test_wait_lock_with_seconds_gives_up_naming_the_holder(project: Path, writer: Holder) -> None:
    res = cnt(project, "exec", "--wait-lock=0.2", "-w", "-o", "env.img", "--", "true")
    assert res.returncode == 1
    assert "waiting for it (up to 0s; Ctrl-C to stop)" in res.stderr
    assert re.search(
        r"in use for writing by .*; gave up after waiting \d+s \(--wait-lock=0.2\)", res.stderr
    )
    assert writer.proc.poll() is None


def test_run_and_cnt_lines_wait_too(project: Path, writer: Holder) -> None:
    """`run --wait-lock=S` and a `#CNT --wait-lock=S` line wait (here: give up) like exec."""
    script = project / "job.sh"
    script.write_text("#!/bin/bash\n#DEP: env.img\necho ran\n")
    by_flag = cnt(project, "run", "--local", "--wait-lock=0.2", "job.sh")
    script.write_text("#!/bin/bash\n#DEP: env.img\n#CNT --wait-lock=0.2\necho ran\n")
    by_line = cnt(project, "run", "--local", "job.sh")
    for res in (by_flag, by_line):
        assert res.returncode == 1, res.stderr
        assert "waiting for it (up to 0s; Ctrl-C to stop)" in res.stderr
        assert "gave up after waiting" in res.stderr and "ran" not in res.stdout


def test_wait_lock_does_not_wait_for_what_waiting_cannot_fix(project: Path) -> None:
    res = cnt(project, "exec", "--wait-lock", "-o", "missing.img", "--", "true")
    assert res.returncode == 1 and "no such image file" in res.stderr
    assert "waiting" not in res.stderr


@pytest.mark.parametrize("value", ["abc", "-1", "inf", "nan", "1e999"])
def test_wait_lock_takes_only_a_number_of_seconds(project: Path, value: str) -> None:
    res = cnt(project, "exec", f"--wait-lock={value}", "-o", "env.img", "--", "true")
    assert res.returncode == 2, res.stderr
    assert "not a number of seconds" in res.stderr and "Traceback" not in res.stderr


def test_wait_lock_is_an_exec_option_the_fast_path_knows() -> None:
    assert options.WAIT_LOCK in options.EXEC
    split = replay.split
    assert split(["--wait-lock", "-o", "e.img", "--", "x"]) == (
        ("--wait-lock", "-o", "e.img"),
        ("x",),
    )
    assert split(["--wait-lock=30", "-o", "e.img", "x"]) == (
        ("--wait-lock=30", "-o", "e.img"),
        ("x",),
    )
    # GNU's optional argument: a value only after `=`; the word after a bare one is the command
    assert split(["--wait-lock", "30", "-o", "e.img"]) == (("--wait-lock",), ("30", "-o", "e.img"))


@pytest.mark.parametrize(
    ("words", "parsed"),
    [
        (["e", "--wait-lock", "env.img"], ["e", "--wait-lock=", "env.img"]),
        (["run", "--wait-lock", "-c", "2", "job.sh"], ["run", "--wait-lock=", "-c", "2", "job.sh"]),
        (
            ["exec", "--wait-lock", "-o", "i", "prog", "--wait-lock"],
            ["exec", "--wait-lock=", "-o", "i", "prog", "--wait-lock"],
        ),
        (
            ["mm", "-o", "i", "--wait-lock", "install", "--wait-lock"],
            ["mm", "-o", "i", "--wait-lock=", "install", "--wait-lock"],
        ),
        (
            ["exec", "--wait-lock=5", "-o", "i", "prog"],
            ["exec", "--wait-lock=5", "-o", "i", "prog"],
        ),
    ],
)
def test_a_bare_wait_lock_never_takes_the_next_word(words: list[str], parsed: list[str]) -> None:
    """The command's own arguments are left alone (the last two words of exec and mm)."""
    from condatainer import cli

    assert cli._attach_values(words[0], words, script=words[0] == "run") == parsed


def test_wait_lock_on_a_cnt_line_reaches_the_job() -> None:
    values = options.parse_cnt(["-w", "--wait-lock=600"])
    assert values == {"writable": True, "wait_lock": "600"}
    assert "--wait-lock=600" in options.to_words(values)
    assert options.to_words(options.parse_cnt(["--wait-lock"])) == ["--wait-lock"]
    with pytest.raises(ValueError, match="not a number of seconds"):
        options.parse_cnt(["--wait-lock=soon"])
