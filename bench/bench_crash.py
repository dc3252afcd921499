#!/usr/bin/env python3
"""Crash consistency, counted: SIGKILL trials per operation and fuzzed inputs per family.

Runs the fault tier's harness (tests/fault/harness.py) on every operation -- create, o -- PKGS,
resize (grow and shrink), chown, pack, unpack, a writable exec and mm install -- with raised
counts, and its fuzz families (tests/fault/fuzz.py) with thousands of inputs, then prints per
operation: kill trials, how many landed while a tool or container process was writing (and
which), and the five counts that must be zero -- half states, leftovers after the next command,
unlocked writers, tracebacks, orphaned child tools or container processes -- and per fuzz
family the inputs and the same zeros.  Goal: >= 200 kill trials and >= 10,000 fuzzed inputs,
every count zero.  Needs root (loop devices, chown).

    python3 bench/bench_crash.py [--trials 30] [--fuzz 10000] [--seed 1]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

ZEROS = ("half_states", "leftovers", "unlocked_writers", "tracebacks", "orphans")


def kill_trials(trials: int, seed: int, env: dict[str, str]) -> dict[str, dict[str, object]]:
    """The harness in a process of its own (it becomes a child subreaper)."""
    res = subprocess.run(
        [sys.executable, "-m", "tests.fault.harness", "--trials", str(trials), "--seed",
         str(seed), "--json"],
        cwd=REPO, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if res.returncode != 0:
        raise SystemExit(f"the harness failed:\n{res.stdout[-2000:]}\n{res.stderr[-4000:]}")
    out: dict[str, dict[str, object]] = json.loads(res.stdout)
    return out


def fuzz(total: int, seed: int, scratch: Path) -> list[object]:
    from tests.fault import fuzz as families

    parsers, commands = families.PARSERS, families.COMMANDS_FAMILIES
    # Three quarters of the inputs to the parsers (fast), a quarter to whole command lines.
    per_parser = -(-total * 3 // 4 // len(parsers))
    per_command = -(-(total - per_parser * len(parsers)) // len(commands))
    counts = []
    for family in parsers:
        d = scratch / f"p-{len(counts)}"
        d.mkdir()
        counts.append(families.run_family(family, per_parser, seed, d))
    with families.small_filesystem(scratch / "commands") as small:
        work = families.workdir_for_commands(small)
        for family in commands:
            counts.append(families.run_family(family, per_command, seed, work))
    return counts


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=30, help="kill trials per operation")
    ap.add_argument("--fuzz", type=int, default=10_000, help="fuzzed inputs in all")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench_crash needs root (loop devices, chown)", file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory(prefix="bench-crash-") as tmp:
        scratch = Path(tmp)
        home = scratch / "home"
        # Fuzzed command lines run `config set`, `init`, `allow`...: never in the real HOME.
        os.environ.update(
            HOME=str(home),
            XDG_CONFIG_HOME=str(home / ".config"),
            XDG_DATA_HOME=str(home / ".local/share"),
            XDG_CACHE_HOME=str(home / ".cache"),
            XDG_STATE_HOME=str(home / ".local/state"),
            TMPDIR=str(scratch),
            CNT_RUNTIME="builtin",
            CNT_DEFAULT_SIZE="64M",
            PYTHONPATH=str(REPO),
        )
        tempfile.tempdir = str(scratch)
        started = time.monotonic()
        kills = kill_trials(args.trials, args.seed, dict(os.environ))
        kill_seconds = time.monotonic() - started
        started = time.monotonic()
        fuzzed = fuzz(args.fuzz, args.seed, scratch)
        fuzz_seconds = time.monotonic() - started

    print(f"SIGKILL trials ({args.trials} per operation, seed {args.seed}, {kill_seconds:.0f} s)")
    head = ["operation", "kills", "mid-write", *ZEROS, "other"]
    print("(mid-write: a writing tool or container process ran at the kill; other: a next")
    print(" command that exited wrongly or repaired without saying so)")
    print(f"{head[0]:<14}" + "".join(f"{h:>17}" for h in head[1:]))
    totals = dict.fromkeys([*head[1:]], 0)
    tools: dict[str, int] = {}
    for name, result in kills.items():
        s = result["summary"]
        assert isinstance(s, dict)
        row = [s["kills"], s["mid_write"], *(s[z] for z in ZEROS), s["problems"]]
        for key, value in zip(head[1:], row):
            totals[key] += value
        for tool, n in s["running"].items():
            tools[tool] = tools.get(tool, 0) + n
        print(f"{name:<14}" + "".join(f"{v:>17}" for v in row))
    print(f"{'all':<14}" + "".join(f"{totals[k]:>17}" for k in head[1:]))
    print(
        "running at the kill (trials): " + ", ".join(f"{t} {n}" for t, n in sorted(tools.items()))
    )

    print(f"\nfuzzed inputs ({args.fuzz} asked, seed {args.seed}, {fuzz_seconds:.0f} s)")
    fhead = ["family", "inputs", "tracebacks", "bad exits", "changes", "leftovers"]
    print(f"{fhead[0]:<34}" + "".join(f"{h:>12}" for h in fhead[1:]))
    ftotals = dict.fromkeys(fhead[1:], 0)
    broken: list[str] = []
    for c in fuzzed:
        row = [c.inputs, c.tracebacks, c.bad_exits, c.changes, c.leftovers]  # type: ignore[attr-defined]
        for key, value in zip(fhead[1:], row):
            ftotals[key] += value
        broken += c.examples  # type: ignore[attr-defined]
        print(f"{c.family:<34}" + "".join(f"{v:>12}" for v in row))  # type: ignore[attr-defined]
    print(f"{'all':<34}" + "".join(f"{ftotals[k]:>12}" for k in fhead[1:]))
    for example in broken[:10]:
        print(f"  broken: {example}")

    zero = all(totals[z] == 0 for z in ZEROS) and totals["other"] == 0
    zero = zero and all(ftotals[k] == 0 for k in fhead[2:])
    enough = totals["kills"] >= 200 and ftotals["inputs"] >= 10_000
    print(
        f"\ngoal: >= 200 kill trials ({totals['kills']}), >= 10,000 fuzzed inputs"
        f" ({ftotals['inputs']}), every count zero: {'met' if zero and enough else 'NOT met'}"
    )
    return 0 if zero and enough else 1


if __name__ == "__main__":
    raise SystemExit(main())
