#!/usr/bin/env python3
"""Benchmark TAB: `condatainer` completion (a Python process per press) and mm-* (pure shell).

- condatainer: the command the completion script starts on every TAB, end to end as a
  process, with argcomplete's protocol (`_ARGCOMPLETE=1`, `COMP_LINE`, `COMP_POINT`, answers
  on fd 8): `python -m condatainer` and the console script the shell actually runs, for a
  subcommand, images in the working directory, profiles, and package names from listings.
  A bare `python -c pass` is shown for scale: it is the floor no completer can go under.
  Goal: median <= 100 ms.
- bash function: `_condatainer_complete` itself (the committed completions/condatainer.bash)
  called in a running bash, timed there with $EPOCHREALTIME: the whole cost of a TAB.
- mm-*: the host completion functions (hook.mmcomplete.script) in a running bash, reading a
  listing of 300 installed names (mm-remove) and of 30,000 channel names (mm-install), timed
  with $EPOCHREALTIME; zsh: the same read-and-filter its function does.  No process is
  started.  Goal: median <= 20 ms.

Median, 90th percentile and maximum of N rounds (default 10) after one warm-up.

    python3 bench/bench_completion.py [--rounds N]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import string
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from condatainer import shellgen  # noqa: E402
from condatainer.hook import mmcomplete, pkgcache  # noqa: E402

GOAL_CONDATAINER_MS = 100.0
GOAL_MM_MS = 20.0


def stats(samples: list[float]) -> tuple[float, float, float]:
    ordered = sorted(samples)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    return statistics.median(ordered), p90, ordered[-1]


def tab_process(argv: list[str], line: str, env: dict[str, str], cwd: Path) -> tuple[float, str]:
    """One TAB answered by a new process: (milliseconds, the candidates)."""
    read_fd, write_fd = os.pipe()
    full = {
        **env,
        "_ARGCOMPLETE": "1",
        "_ARGCOMPLETE_SHELL": "bash",
        "COMP_LINE": line,
        "COMP_POINT": str(len(line)),
        "_ARGCOMPLETE_SUPPRESS_SPACE": "1",
    }
    os.dup2(write_fd, 8)  # the shell hands the child its fd 8 the same way
    os.close(write_fd)
    start = time.perf_counter()
    proc = subprocess.Popen(
        argv,
        env=full,
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        pass_fds=(8,),
    )
    os.close(8)
    with os.fdopen(read_fd, "rb") as reader:
        out = reader.read().decode()
    proc.wait()
    elapsed = (time.perf_counter() - start) * 1000
    return elapsed, out


def rounds_of(fn: Callable[[], float], rounds: int) -> list[float]:
    fn()  # warm up (page cache, .pyc files)
    return [fn() for _ in range(rounds)]


def shell_times(
    shell: str, setup: str, body: str, rounds: int, env: dict[str, str], cwd: Path
) -> list[float]:
    """Run `body` rounds+1 times in one shell, timing each with $EPOCHREALTIME (ms)."""
    loop = (
        f"{setup}\n"
        f"for _i in {{0..{rounds}}}; do\n"
        "  _s=$EPOCHREALTIME\n"
        f"  {body}\n"
        "  _e=$EPOCHREALTIME\n"
        '  printf \'T %s %s\\n\' "$_s" "$_e"\n'
        "done\n"
    )
    argv = (
        ["bash", "--norc", "--noprofile", "-c", loop]
        if shell == "bash"
        else ["zsh", "-f", "-c", "zmodload zsh/datetime\n" + loop]
    )
    res = subprocess.run(
        argv, env=env, cwd=cwd, capture_output=True, text=True, check=True, timeout=600
    )
    samples = []
    for line in res.stdout.splitlines():
        if line.startswith("T "):
            _, s, e = line.split()
            samples.append((float(e) - float(s)) * 1000)
    assert len(samples) == rounds + 1, res.stdout + res.stderr
    return samples[1:]  # the first one warmed up


def fake_names(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    names = {"numpy", "numba", "python", "cnt-hello"}
    while len(names) < n:
        names.add(
            "".join(rng.choices(string.ascii_lowercase + "-", k=rng.randint(3, 18))).strip("-")
            or "x"
        )
    return sorted(names)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    rounds = parser.parse_args().rounds
    python = os.path.realpath(sys.executable)  # not a pyenv shim: the shell runs the real one
    rows: list[tuple[str, list[float], float, str]] = []

    with tempfile.TemporaryDirectory(prefix="cnt-bench-tab-") as tmp:
        root = Path(tmp)
        home = root / "home"
        home.mkdir()
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("CNT_", "XDG_", "_ARGCOMPLETE", "COMP_"))
        }
        env.update(HOME=str(home), PYTHONPATH=str(REPO), LANG="C.UTF-8")
        work = root / "work"
        (work / "sub").mkdir(parents=True)
        for name in ("env.img", "data.ext3", "notes.txt"):
            (work / name).write_text("")
        bindir = root / "bin"
        bindir.mkdir()
        script = bindir / "condatainer"
        script.write_text(
            f"#!{python}\nimport sys\nsys.path.insert(0, {str(REPO)!r})\n"
            "from condatainer.cli import entry\nentry()\n"
        )
        script.chmod(0o755)
        env["PATH"] = f"{bindir}:{env['PATH']}"

        # Listings for the image, where the hook and the completers find them.
        image = work / "env.img"
        os.environ["HOME"] = str(home)  # this process only computes paths under it
        for var in [v for v in os.environ if v.startswith("XDG_")]:
            del os.environ[var]
        installed_file = pkgcache.installed_file(image)
        channel_file = pkgcache.channel_file(image)
        installed_file.parent.mkdir(parents=True, exist_ok=True)
        installed = fake_names(300, 1)
        installed_file.write_text("".join(f"{n}\n" for n in installed))
        channel = fake_names(30000, 2)
        channel_file.write_text("".join(f"{n}\n" for n in channel))
        env_active = {**env, "CNT_OVERLAY": str(image)}

        def floor() -> float:
            start = time.perf_counter()
            subprocess.run([python, "-c", "pass"], env=env, check=True)
            return (time.perf_counter() - start) * 1000

        rows.append(("python -c pass (floor, for scale)", rounds_of(floor, rounds), 0, ""))

        cases = [
            ("condatainer ov", "overlay"),
            ("condatainer overlay resize ", "env.img"),
            ("condatainer o -p ", "balanced"),
            ("condatainer mm remove nu", "numpy"),
            ("condatainer mm install nu", "numba"),
        ]
        for label, argv in (
            ("python -m condatainer", [python, "-m", "condatainer"]),
            ("console script", [str(script)]),
        ):
            for line, expect in cases:

                def one(argv: list[str] = argv, line: str = line, expect: str = expect) -> float:
                    ms, out = tab_process(argv, line, env_active, work)
                    assert expect in out.split("\v"), (line, out)
                    return ms

                rows.append(
                    (
                        f"{label}: '{line}'",
                        rounds_of(one, rounds),
                        GOAL_CONDATAINER_MS,
                        "condatainer",
                    )
                )

        static = shellgen.quote(str(REPO / "completions" / "condatainer.bash"))
        for line in ("condatainer ov", "condatainer overlay resize "):
            words = line.split(" ")
            body = (
                f"COMP_LINE={shellgen.quote(line)}; COMP_POINT={len(line)}; "
                f"_condatainer_complete condatainer {shellgen.quote(words[-1])} "
                f"{shellgen.quote(words[-2])}"
            )
            rows.append(
                (
                    f"bash _condatainer_complete: '{line}'",
                    shell_times("bash", f". {static}", body, rounds, env_active, work),
                    GOAL_CONDATAINER_MS,
                    "condatainer",
                )
            )

        mm_file = root / "mm.bash"
        mm_file.write_text(mmcomplete.script("bash"))
        setup = f". {shellgen.quote(str(mm_file))}\n_cnt_pkgs={shellgen.quote(str(installed_file))}"
        for op, cur in (
            ("remove", ""),
            ("remove", "nu"),
            ("install", "nu"),
            ("install", "p"),
            ("install", ""),
        ):
            body = (
                f"COMP_WORDS=(mm-{op} {shellgen.quote(cur)}); COMP_CWORD=1; "
                f"_cnt_mm_complete mm-{op} {shellgen.quote(cur)} mm-{op}"
            )
            size = "300" if op == "remove" else "30k"
            # All 30k names on an empty word: bash asks "Display all 30000 possibilities?"
            # anyway; shown for scale, no goal.
            goal = 0.0 if (op, cur) == ("install", "") else GOAL_MM_MS
            rows.append(
                (
                    f"bash mm-{op} '{cur}<TAB>' ({size} names)",
                    shell_times("bash", setup, body, rounds, env, work),
                    goal,
                    "mm",
                )
            )
        if shutil.which("zsh"):
            for file, cur, size in ((installed_file, "", "300"), (channel_file, "nu", "30k")):
                body = (
                    f'names=( ${{(M)${{(f)"$(<{shellgen.quote(str(file))})"}}:#${{(b)PREFIX}}*}} )'
                )
                rows.append(
                    (
                        f"zsh read+filter '{cur}' ({size} names)",
                        shell_times(
                            "zsh", f"PREFIX={shellgen.quote(cur)}", body, rounds, env, work
                        ),
                        GOAL_MM_MS,
                        "mm",
                    )
                )

    width = max(len(r[0]) for r in rows)
    print(f"TAB latency, {rounds} rounds (ms)")
    print(f"{'case':<{width}}  {'median':>7}  {'p90':>7}  {'max':>7}  {'goal':>5}  ok")
    missed = 0
    for name, samples, goal, _ in rows:
        med, p90, mx = stats(samples)
        verdict = "" if not goal else ("yes" if med <= goal else "NO")
        missed += verdict == "NO"
        goal_text = f"{goal:.0f}" if goal else "-"
        print(f"{name:<{width}}  {med:7.1f}  {p90:7.1f}  {mx:7.1f}  {goal_text:>5}  {verdict}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
