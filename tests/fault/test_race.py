"""Many writers and readers of one image at once: at most one writer at a time, and every one
that loses says who holds the image (a PID, or the loop device of a mount being torn down) or
that its holder had just left.

Writers are writable runs (`exec -w`), `overlay chown`, `overlay resize` to the same size and
`overlay check --repair`; readers are read-only runs.  Each writable run marks the image busy
with a file created with the shell's noclobber (`set -C`), so two writable runs at once would
fail to create it; each read-only run checks no such mark exists.  `CNT_RACE_ROUNDS` and
`CNT_RACE_WIDTH` raise the counts.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from condatainer.image.create import create
from tests.imagelib import fsck_clean

REPO = Path(__file__).resolve().parents[2]
ROUNDS = int(os.environ.get("CNT_RACE_ROUNDS", "2"))
WIDTH = int(os.environ.get("CNT_RACE_WIDTH", "16"))

pytestmark = [pytest.mark.root, pytest.mark.fault]

WRITE = (
    "set -C; : > busy || exit 99;"
    " i=0; while [ $i -lt 20 ]; do echo $i > /ext3/env/w$i; i=$((i+1)); done; rm busy"
)
READ = "test ! -e busy || exit 98; cat /ext3/env/w1 >/dev/null 2>&1; true"
NAMED = re.compile(
    r"in use for (writing|reading) by (.*\(PID \d+|loop device /dev/loop\d+)|in use: PID \d+"
    r"|had just left"
)


def commands(width: int) -> list[list[str]]:
    kinds = [
        ["exec", "-w", "-o", "env.img", "--", "sh", "-c", WRITE],
        ["exec", "-o", "env.img", "--", "sh", "-c", READ],
        ["exec", "-w", "-o", "env.img", "--", "sh", "-c", WRITE],
        ["overlay", "chown", "env.img", "-u", "0", "-g", "0"],
        ["exec", "-o", "env.img", "--", "sh", "-c", READ],
        ["overlay", "resize", "env.img", "-s", "64M"],
        ["overlay", "check", "env.img", "--repair"],
        ["exec", "-o", "env.img", "--", "sh", "-c", READ],
    ]
    return [kinds[i % len(kinds)] for i in range(width)]


def test_one_writer_at_a_time_and_every_loser_names_the_holder(tmp_path: Path) -> None:
    work = tmp_path / "race"
    work.mkdir()
    create(work / "env.img", 64 * 1024 * 1024, "balanced", sparse=True)
    env = {**os.environ, "PYTHONPATH": str(REPO), "CNT_RUNTIME": "builtin"}
    outcomes: dict[str, int] = {"ran": 0, "refused": 0}
    for _ in range(ROUNDS):
        procs = [
            (argv, subprocess.Popen(
                [sys.executable, "-m", "condatainer", *argv], cwd=work, env=env,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            ))
            for argv in commands(WIDTH)
        ]  # fmt: skip
        for argv, proc in procs:
            _, err = proc.communicate(timeout=300)
            assert "Traceback" not in err, err
            assert proc.returncode not in (98, 99), f"{argv}: two writers, or a writer and a reader"
            if proc.returncode == 0:
                outcomes["ran"] += 1
                continue
            assert proc.returncode == 1, f"{argv} exited {proc.returncode}: {err}"
            assert NAMED.search(err), f"{argv}: the loser's message names no holder: {err}"
            outcomes["refused"] += 1
        assert not (work / "busy").exists()
    assert outcomes["ran"] >= ROUNDS  # somebody always wins
    assert fsck_clean(work / "env.img")
    assert sorted(os.listdir(work)) == ["env.img"]
