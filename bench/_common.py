"""What every bench shares: an installed condatainer, alternating timed runs, and a table.

Benches time what a user waits for: whole processes of an *installed* condatainer (a venv made
with `pip install REPO`, not an editable install, whose import finder costs every start), next
to a yardstick measured in the same run.  The two commands of a row alternate (A B A B ...), so
a machine that gets busier in the middle slows both alike; each row prints min, median and max
of its runs and the ratio of the medians.

Nothing here imports from tests/ or from the checkout's condatainer: a bench runs the same from
the project's .venv and from any Python with condatainer installed.  `--installed PREFIX`
(every bench takes it) reuses an existing installation instead of building one.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Install:
    """A non-editable installation of condatainer: its interpreter and console script."""

    prefix: Path

    @property
    def python(self) -> str:
        return str(self.prefix / "bin" / "python")

    @property
    def condatainer(self) -> str:
        return str(self.prefix / "bin" / "condatainer")


def install(where: Path, reuse: str | None = None) -> Install:
    """Install the checkout into a fresh venv at `where` (pip install ., no editable)."""
    if reuse:
        found = Install(Path(reuse))
        if not Path(found.condatainer).exists():
            sys.exit(f"--installed {reuse}: no bin/condatainer there")
        return found
    print(f"installing {REPO} into {where} (pip install ., not editable) ...", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", str(where)], check=True)
    subprocess.run(
        [str(where / "bin" / "python"), "-m", "pip", "install", "-q",
         "--disable-pip-version-check", str(REPO)],
        check=True,
    )  # fmt: skip
    return Install(where)


def parser(doc: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=doc.strip().splitlines()[0])
    p.add_argument("--runs", type=int, default=15, help="runs of each command (default 15)")
    p.add_argument("--installed", metavar="PREFIX", help="use this installed venv")
    return p


def clean_env(home: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The caller's environment without condatainer's and Python's influences, in `home`."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CNT_", "PYTHON", "XDG_", "APPTAINER", "SINGULARITY"))
        and k not in ("PROMPT_COMMAND", "IN_CONDATAINER", "VIRTUAL_ENV")
    }
    env.update(
        HOME=str(home),
        ZDOTDIR=str(home),
        XDG_DATA_HOME=str(home / ".local/share"),
        XDG_CACHE_HOME=str(home / ".cache"),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_STATE_HOME=str(home / ".local/state"),
    )
    env.update(extra or {})
    return env


def run(argv: Sequence[str], env: Mapping[str, str], cwd: Path | None = None) -> None:
    """Run a command to completion, quietly; a failure stops the bench with its output."""
    res = subprocess.run(
        list(argv), env=dict(env), cwd=cwd, capture_output=True, text=True,
        stdin=subprocess.DEVNULL, check=False,
    )  # fmt: skip
    if res.returncode != 0:
        sys.exit(f"bench: {' '.join(argv)} failed ({res.returncode}):\n{res.stdout}{res.stderr}")


def alternate(runs: int, commands: Mapping[str, Callable[[], object]]) -> dict[str, list[float]]:
    """Time each command `runs` times, in turn (A B A B ...), after one untimed warm-up each.

    Returns milliseconds per command name.
    """
    for action in commands.values():
        action()
    samples: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, action in commands.items():
            start = time.perf_counter()
            action()
            samples[name].append((time.perf_counter() - start) * 1000)
    return samples


def process(
    argv: Sequence[str], env: Mapping[str, str], cwd: Path | None = None
) -> Callable[[], None]:
    """A timed action: start `argv` as a process and wait for it."""
    return lambda: run(argv, env, cwd)


@dataclass(frozen=True)
class Row:
    """One table row: a measured series, its yardstick series, and the goal for the ratio."""

    what: str
    ours: list[float]
    yardstick_name: str
    yardstick: list[float]
    goal: float | None = None  # the ratio ours/yardstick must stay at or below, if any
    goal_ms: float | None = None  # or an absolute goal for ours' median


_FISH_UNITS = {"micros": 0.001, "millis": 1.0, "secs": 1000.0, "mins": 60_000.0}


def clock_samples(stdout: str) -> list[float]:
    """ms per timed run of a bash/zsh loop that printed `T <start> <end>` ($EPOCHREALTIME)."""
    return [
        (float(e.replace(",", ".")) - float(s.replace(",", "."))) * 1000
        for _, s, e in (ln.split() for ln in stdout.splitlines() if ln.startswith("T "))
    ]


def fish_samples(stderr: str) -> list[float]:
    """ms per block timed with fish's `time` keyword (fish has no clock variable; `time`
    reports each block on stderr: `Executed in 1.23 millis ...`)."""
    return [
        float(words[2]) * _FISH_UNITS[words[3]]
        for words in (line.split() for line in stderr.splitlines())
        if words[:2] == ["Executed", "in"]
    ]


def _mmm(samples: list[float]) -> str:
    return f"{min(samples):8.1f} {statistics.median(samples):8.1f} {max(samples):8.1f}"


def print_rows(title: str, rows: Sequence[Row]) -> None:
    """The table: min/median/max (ms) of ours and of the yardstick, the median ratio, the goal."""
    print(f"\n{title}")
    head = f"{'':44} {'min':>8} {'median':>8} {'max':>8}   ratio  goal"
    print(head)
    print("-" * len(head))
    for row in rows:
        median = statistics.median(row.ours)
        ratio = median / statistics.median(row.yardstick)
        goal = f"<= {row.goal:g}x {'ok' if ratio <= row.goal else 'MISSED'}" if row.goal else ""
        if row.goal_ms is not None:
            goal = f"<= {row.goal_ms:g} ms {'ok' if median <= row.goal_ms else 'MISSED'}"
        print(f"{row.what:44} {_mmm(row.ours)}   {ratio:5.2f}  {goal}")
        print(f"  {'vs ' + row.yardstick_name:42} {_mmm(row.yardstick)}")


def scratch(prefix: str) -> tempfile.TemporaryDirectory[str]:
    """A temporary directory on /tmp (short paths: unix sockets, shebang lines)."""
    return tempfile.TemporaryDirectory(prefix=prefix, dir="/tmp")


def need(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None and not Path(f"/sbin/{t}").exists()]
    if missing:
        sys.exit(f"bench: needs {', '.join(missing)} (Debian: apt-get install ...)")
