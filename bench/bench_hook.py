"""What the cd hook costs: per prompt, per cd into a project, and at shell start.

- **Prompt, $PWD unchanged** (goal: 0 forks, <= 0.1 ms): the prompt hook (`_cnt_hook` in bash,
  `_cnt_precmd` in zsh) runs N times in a loop inside the shell, timed with $EPOCHREALTIME, in
  an active project (the worst case: one `[ -e ]` on the trust record per prompt) and outside
  any project.  The cost of an empty function call in the same loop is shown next to it.
  Forks are counted with `strace -f` between two marker files (like the test).
- **cd into a project, warm shim cache** (goal: <= 50 ms): `cd proj && _cnt_hook` then
  `cd .. && _cnt_hook`, M times; the cd in is the one Python call (`condatainer _activate`),
  the cd out is pure shell.  The image has 200 executables.  For scale: `python -c pass` and
  `python -m condatainer --version` on this machine, and each cd's excess over `python -c
  pass` (the part condatainer controls; an editable `pip install -e` adds its import finder to
  every interpreter start, a real install does not).  Measured again with a config file (users
  who ran `condatainer config set`), which the activation reads on every cd.  Cold: the first
  activation, which lists the image with debugfs and writes the 200 shims.
- **Shell start with the rc block** (goal: <= 5 ms, no Python): `bash -i -c exit` /
  `zsh -i -c exit` with the block in the rc, minus the same with an empty rc (median of R);
  strace confirms no python is started.

Python runs with bytecode caching on (a temporary PYTHONPYCACHEPREFIX), as an installed
package would; PYTHONDONTWRITEBYTECODE in the caller's environment would otherwise make every
call compile condatainer from source.  Needs e2fsprogs, bash, zsh; strace for the fork counts.

    python3 bench/bench_hook.py [--prompts N] [--cds M] [--starts R]
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
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

GOAL_PROMPT_MS = 0.1
GOAL_CD_MS = 50.0
GOAL_START_MS = 5.0
SHELLS = ("bash", "zsh")
PROMPT_FN = {"bash": "_cnt_hook", "zsh": "_cnt_precmd"}
SHELL_ARGV = {"bash": ["bash", "--norc", "--noprofile"], "zsh": ["zsh", "-f"]}


def make_image(path: Path, executables: int) -> None:
    tree = path.parent / "tree"
    bindir = tree / "upper" / "ext3" / "env" / "bin"
    bindir.mkdir(parents=True)
    (tree / "upper" / "ext3" / "env" / "conda-meta").mkdir()
    (tree / "work").mkdir()
    for i in range(executables):
        exe = bindir / f"tool{i:03d}"
        exe.write_text("#!/bin/sh\n")
        exe.chmod(0o755)
    mke2fs = shutil.which("mke2fs") or "/sbin/mke2fs"
    subprocess.run(
        [mke2fs, "-q", "-F", "-t", "ext3", "-d", str(tree), str(path), "64M"],
        check=True,
        capture_output=True,
    )
    shutil.rmtree(tree)


def shell_out(shell: str, script: str, env: dict[str, str], cwd: Path) -> str:
    proc = subprocess.run(
        [*SHELL_ARGV[shell], "-c", script],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    )
    return proc.stdout


def clock(shell: str) -> str:
    return "" if shell == "bash" else "zmodload zsh/datetime\n"


def prompt_cost(
    shell: str, hook: Path, project: Path, env: dict[str, str], n: int, where: Path
) -> tuple[float, float]:
    """(ms per prompt hook, ms per empty function call), both in the same kind of loop."""
    fn = PROMPT_FN[shell]
    script = (
        f"{clock(shell)}. '{hook}'\n_cnt_noop() {{ :; }}\n"
        f"cd '{project}'\n{fn}\ncd '{where}'\n{fn}\n"
        f"t0=$EPOCHREALTIME\nfor ((i = 0; i < {n}; i++)); do {fn}; done\nt1=$EPOCHREALTIME\n"
        f"for ((i = 0; i < {n}; i++)); do _cnt_noop; done\nt2=$EPOCHREALTIME\n"
        'echo "$t0 $t1 $t2"\n'
    )
    t0, t1, t2 = (
        float(x.replace(",", ".")) for x in shell_out(shell, script, env, project).split()
    )
    return (t1 - t0) * 1000 / n, (t2 - t1) * 1000 / n


def forks(shell: str, hook: Path, project: Path, env: dict[str, str], tmp: Path) -> str:
    strace = shutil.which("strace")
    if strace is None:
        return "n/a (no strace)"
    fn = PROMPT_FN[shell]
    start, end, log = tmp / "m-start", tmp / "m-end", tmp / "strace.log"
    script = (
        f". '{hook}'\ncd '{project}'\n{fn}\n: > '{start}'\n"
        f"for ((i = 0; i < 1000; i++)); do {fn}; done\n: > '{end}'\n"
    )
    subprocess.run(
        [
            strace,
            "-f",
            "-o",
            str(log),
            "-e",
            "trace=clone,clone3,fork,vfork,execve,openat",
            *SHELL_ARGV[shell],
            "-c",
            script,
        ],
        env=env,
        cwd=tmp,
        check=True,
        capture_output=True,
    )
    lines = log.read_text().splitlines()
    first = next(i for i, line in enumerate(lines) if str(start) in line)
    last = next(i for i, line in enumerate(lines) if str(end) in line)
    spawned = [
        line
        for line in lines[first:last]
        if any(f"{call}(" in line for call in ("clone", "fork", "vfork", "execve"))
    ]
    return f"{len(spawned)} in 1000 prompts"


def cd_cost(shell: str, hook: Path, project: Path, env: dict[str, str], m: int) -> float:
    fn = PROMPT_FN[shell]
    script = (
        f"{clock(shell)}. '{hook}'\ncd '{project}'\n{fn}\ncd ..\n{fn}\n"  # warm
        "total=0\n"
        f"for ((i = 0; i < {m}; i++)); do\n"
        f"    t0=$EPOCHREALTIME; cd '{project}'; {fn}; t1=$EPOCHREALTIME\n"
        '    [ -n "$CNT_OVERLAY" ] || exit 9\n'
        f"    cd ..; {fn}\n"
        '    echo "$t0 $t1"\n'
        "done\n"
    )
    out = shell_out(shell, script, env, project.parent)
    samples = [
        (float(b.replace(",", ".")) - float(a.replace(",", "."))) * 1000
        for a, b in (line.split() for line in out.splitlines())
    ]
    return statistics.median(samples)


def timed(argv: list[str], env: dict[str, str], rounds: int, cwd: Path) -> float:
    subprocess.run(argv, env=env, cwd=cwd, check=True, capture_output=True)
    samples = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        subprocess.run(
            argv, env=env, cwd=cwd, check=True, capture_output=True, stdin=subprocess.DEVNULL
        )
        samples.append((time.perf_counter() - t0) * 1000)
    return statistics.median(samples)


def start_cost(shell: str, env: dict[str, str], home: Path, rounds: int) -> tuple[float, str]:
    rc = home / (".bashrc" if shell == "bash" else ".zshrc")
    argv = [shell, "-i", "-c", "exit"]
    saved = rc.read_bytes()
    rc.write_bytes(b"")
    empty = timed(argv, env, rounds, home)
    rc.write_bytes(saved)
    with_block = timed(argv, env, rounds, home)
    python = "n/a (no strace)"
    strace = shutil.which("strace")
    if strace is not None:
        log = home / "start.log"
        subprocess.run(
            [strace, "-f", "-o", str(log), "-e", "trace=execve", *argv],
            env=env,
            cwd=home,
            check=True,
            capture_output=True,
            stdin=subprocess.DEVNULL,
        )
        execs = [line for line in log.read_text().splitlines() if "execve(" in line]
        python = str(sum("python" in line for line in execs))
    return with_block - empty, python


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=20000)
    parser.add_argument("--cds", type=int, default=15)
    parser.add_argument("--starts", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cnt-bench-hook-") as tmp_name:
        tmp = Path(tmp_name)
        home = tmp / "home"
        home.mkdir()
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("CNT_") and k not in ("PROMPT_COMMAND", "PYTHONDONTWRITEBYTECODE")
        }
        env.update(
            HOME=str(home),
            ZDOTDIR=str(home),
            PYTHONPATH=str(REPO),
            XDG_DATA_HOME=str(home / ".local/share"),
            XDG_CACHE_HOME=str(home / ".cache"),
            XDG_CONFIG_HOME=str(home / ".config"),
            XDG_STATE_HOME=str(home / ".local/state"),
            PYTHONPYCACHEPREFIX=str(tmp / "pyc"),
        )
        cli = [sys.executable, "-m", "condatainer"]
        project = tmp / "proj"
        project.mkdir()
        image = project / "env.img"
        make_image(image, 200)
        subprocess.run([*cli, "allow", str(image)], env=env, check=True, capture_output=True)
        elsewhere = tmp / "elsewhere"
        elsewhere.mkdir()

        rows: list[tuple[str, str, str]] = []
        baseline_py = timed([sys.executable, "-c", "pass"], env, 15, tmp)
        baseline_cli = timed([*cli, "--version"], env, 15, tmp)
        for shell in SHELLS:
            if shutil.which(shell) is None:
                rows.append((shell, "not installed", ""))
                continue
            subprocess.run([*cli, "init", shell], env=env, check=True, capture_output=True)
            hook = home / ".local/share/condatainer" / f"hook.{shell}"
            t0 = time.perf_counter()
            shutil.rmtree(home / ".cache/condatainer", ignore_errors=True)
            shell_out(shell, f". '{hook}'\ncd '{project}'\n{PROMPT_FN[shell]}\n", env, tmp)
            cold = (time.perf_counter() - t0) * 1000
            active, noop = prompt_cost(shell, hook, project, env, args.prompts, project)
            idle, _ = prompt_cost(shell, hook, project, env, args.prompts, elsewhere)
            warm = cd_cost(shell, hook, project, env, args.cds)
            # Users who ran `condatainer config set` have a config file to read on every cd.
            subprocess.run(
                [*cli, "config", "set", "default_size", "20G"],
                env=env,
                check=True,
                capture_output=True,
            )
            warm_config = cd_cost(shell, hook, project, env, args.cds)
            (home / ".config/condatainer/config.yaml").unlink()
            start, pythons = start_cost(shell, env, home, args.starts)
            mark = lambda ok: "ok" if ok else "OVER"  # noqa: E731
            rows += [
                (
                    f"{shell}: prompt, $PWD unchanged, in a project",
                    f"{active:.4f} ms",
                    f"{mark(active <= GOAL_PROMPT_MS)} (<= {GOAL_PROMPT_MS})",
                ),
                (
                    f"{shell}: prompt, $PWD unchanged, no project",
                    f"{idle:.4f} ms",
                    f"{mark(idle <= GOAL_PROMPT_MS)} (<= {GOAL_PROMPT_MS})",
                ),
                (f"{shell}:   (an empty function call, same loop)", f"{noop:.4f} ms", ""),
                (
                    f"{shell}: forks on unchanged prompts",
                    forks(shell, hook, project, env, tmp),
                    "goal 0",
                ),
                (
                    f"{shell}: cd into project, warm cache",
                    f"{warm:.1f} ms",
                    f"{mark(warm <= GOAL_CD_MS)} (<= {GOAL_CD_MS:.0f}); python -c pass"
                    f" + {warm - baseline_py:.1f}",
                ),
                (
                    f"{shell}: cd into project, warm, config file",
                    f"{warm_config:.1f} ms",
                    f"{mark(warm_config <= GOAL_CD_MS)} (<= {GOAL_CD_MS:.0f}); python -c pass"
                    f" + {warm_config - baseline_py:.1f}",
                ),
                (f"{shell}: cd into project, cold (200 shims)", f"{cold:.1f} ms", "once per image"),
                (
                    f"{shell}: shell start, rc block",
                    f"{start:+.1f} ms",
                    f"{mark(start <= GOAL_START_MS)} (<= {GOAL_START_MS:.0f}); python started: "
                    f"{pythons}",
                ),
            ]
        rows += [
            ("for scale: python -c pass", f"{baseline_py:.1f} ms", ""),
            ("for scale: condatainer --version", f"{baseline_cli:.1f} ms", ""),
        ]
        width = max(len(r[0]) for r in rows)
        print(f"{'metric'.ljust(width)}  {'value':>14}  goal")
        for name, val, goal in rows:
            print(f"{name.ljust(width)}  {val:>14}  {goal}")


if __name__ == "__main__":
    main()
