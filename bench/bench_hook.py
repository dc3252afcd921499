"""What the cd hook costs, in real bash, zsh and fish, with an installed condatainer.

Rows (min/median/max in ms, the median ratio to the yardstick):

- **Prompt with $PWD unchanged**, in an active project: the prompt hook run N times in a loop
  inside the shell (timed there with $EPOCHREALTIME; fish: its `time` keyword), beside an
  empty function call in the same loop.  Each such prompt also reads the hook's stamp (a
  builtin `read`).  The forks of 1,000 such prompts are counted with strace.  Goal: 0 forks.
- **Warm cd into a project**: `cd proj` plus the prompt hook (fish: the `fish_prompt` event),
  with condatainer's hook (the one `condatainer init` writes), beside the same cd with
  direnv's hook and a 3-line .envrc (bench/yardstick_direnv.sh).  Goal: faster than direnv
  (ratio < 1).
- **First cd into an env with 5,000 executables**: the same cd with the shim cache emptied
  before each run (the activation lists the image and writes the shims), beside the warm cd.
  Goal: at most 500 ms.
- **Shell start with the rc block** (`bash -i -c exit`; fish reads its conf.d snippet), beside
  the same with an empty rc; and whether any Python starts (strace): the block and the hook
  only read files, completion included.

Needs e2fsprogs, bash, zsh, fish, direnv (apt-get install direnv), strace.

    python3 bench/bench_hook.py [--runs N] [--installed PREFIX]
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from _common import (
    BENCH,
    Row,
    alternate,
    clean_env,
    clock_samples,
    fish_samples,
    install,
    need,
    parser,
    print_rows,
    process,
    run,
    scratch,
)

SHELLS = ("bash", "zsh", "fish")
PROMPT_FN = {"bash": "_cnt_hook", "zsh": "_cnt_precmd", "fish": "emit fish_prompt"}
DIRENV_FN = {"bash": "_direnv_hook", "zsh": "_direnv_hook", "fish": "emit fish_prompt"}
ARGV = {
    "bash": ["bash", "--norc", "--noprofile"],
    "zsh": ["zsh", "-f"],
    "fish": ["fish", "--no-config"],
}
SOURCE = {"bash": ".", "zsh": ".", "fish": "source"}
DIRENV_HOOK = {
    "bash": 'eval "$(direnv hook bash)"',
    "zsh": 'eval "$(direnv hook zsh)"',
    "fish": "direnv hook fish | source",
}
NOOP = {"bash": "_noop() { :; }", "zsh": "_noop() { :; }", "fish": "function _noop; end"}
CDS = 5  # cds timed per shell started


def make_image(cnt: str, path: Path, executables: int, env: dict[str, str]) -> None:
    tree = path.parent / f"tree-{path.name}"
    bindir = tree / "upper/ext3/env/bin"
    bindir.mkdir(parents=True)
    (tree / "upper/ext3/env/conda-meta").mkdir()
    (tree / "work").mkdir()
    for i in range(executables):
        exe = bindir / f"tool{i:04d}"
        exe.write_text("#!/bin/sh\n")
        exe.chmod(0o755)
    run(["mke2fs", "-q", "-F", "-t", "ext3", "-N", str(executables + 100), "-d", str(tree),
         str(path), "128M"], env)  # fmt: skip
    shutil.rmtree(tree)
    run([cnt, "allow", str(path)], env)


def shell_loop(
    shell: str, setup: str, body: str, env: dict[str, str], cwd: Path, between: str = "true"
) -> list[float]:
    """Run `body` CDS times in one shell, timing each with $EPOCHREALTIME; ms per run.

    `between` runs before each timed run, untimed (emptying a cache).
    """
    if shell == "fish":
        # fish has no clock variable; its `time` keyword times a block in-process, on stderr.
        script = f"{setup}\nfor _i in 1 2 3 4 5\n  {between}\n  time begin\n {body}\n  end\nend\n"
    else:
        clock = "zmodload zsh/datetime\n" if shell == "zsh" else ""
        script = (
            f"{clock}{setup}\n"
            f"for _i in 1 2 3 4 5; do\n  {between}\n  _s=$EPOCHREALTIME\n  {body}\n"
            '  _e=$EPOCHREALTIME\n  printf "T %s %s\\n" "$_s" "$_e"\ndone\n'
        )
    res = subprocess.run([*ARGV[shell], "-c", script], env=env, cwd=cwd, capture_output=True,
                         text=True, check=False)  # fmt: skip
    samples = fish_samples(res.stderr) if shell == "fish" else clock_samples(res.stdout)
    if res.returncode != 0 or len(samples) != CDS:
        sys.exit(f"bench: {shell} loop failed ({res.returncode}):\n{res.stdout}{res.stderr}")
    return samples


def forks(shell: str, setup: str, body: str, env: dict[str, str], tmp: Path) -> int:
    start, end, log = tmp / "m-start", tmp / "m-end", tmp / "strace.log"
    if shell == "fish":
        script = (f"{setup}\nset -l n (seq 1000)\ntrue > '{start}'\nfor i in $n\n  {body}\nend\n"
                  f"true > '{end}'\n")  # fmt: skip
    else:
        script = (f"{setup}\n: > '{start}'\ni=0\nwhile [ $i -lt 1000 ]; do {body}; i=$((i+1));"
                  f" done\n: > '{end}'\n")  # fmt: skip
    subprocess.run(["strace", "-f", "-o", str(log), "-e", "trace=clone,clone3,fork,vfork,execve,"
                    "openat", *ARGV[shell], "-c", script], env=env, cwd=tmp, check=True,
                   capture_output=True)  # fmt: skip
    lines = log.read_text().splitlines()
    first = next(i for i, line in enumerate(lines) if str(start) in line)
    last = next(i for i, line in enumerate(lines) if str(end) in line)
    calls = ("clone(", "clone3(", "fork(", "vfork(", "execve(")
    return sum(1 for line in lines[first:last] if any(c in line for c in calls))


def pythons(argv: list[str], env: dict[str, str], tmp: Path) -> int:
    """How many Python interpreters `argv` starts (execve of a python*), by strace."""
    log = tmp / "strace-start.log"
    subprocess.run(["strace", "-f", "-o", str(log), "-e", "trace=execve", *argv], env=env,
                   cwd=tmp, check=True, capture_output=True, stdin=subprocess.DEVNULL)  # fmt: skip
    return sum(1 for line in log.read_text().splitlines()
               if "execve(" in line and "/python" in line.split(",")[0])  # fmt: skip


Case = tuple[str, str, str]  # (setup, body, between): see shell_loop


def paired(
    shell: str, ours: Case, theirs: Case, env: dict[str, str], cwd: Path, rounds: int
) -> tuple[list[float], list[float]]:
    """Start shells for `ours` and `theirs` in turn, `rounds` each; all their timed samples."""
    a: list[float] = []
    b: list[float] = []
    alternate(max(2, rounds), {
        "ours": lambda: a.extend(shell_loop(shell, ours[0], ours[1], env, cwd, ours[2])),
        "theirs": lambda: b.extend(shell_loop(shell, theirs[0], theirs[1], env, cwd, theirs[2])),
    })  # fmt: skip
    return a, b


def main() -> None:
    args = parser(__doc__ or "").parse_args()
    need("mke2fs", "bash", "zsh", "fish", "direnv", "strace")
    with scratch("cnt-bench-hook-") as tmp_name:
        tmp = Path(tmp_name)
        inst = install(tmp / "venv", args.installed)
        home = tmp / "home"
        home.mkdir()
        path = f"{Path(inst.condatainer).parent}:/usr/sbin:/usr/bin:/sbin:/bin"
        env = clean_env(home, {"PATH": path})
        cnt = inst.condatainer
        project, big = tmp / "proj", tmp / "big"
        project.mkdir()
        big.mkdir()
        make_image(cnt, project / "env.img", 200, env)
        make_image(cnt, big / "env.img", 5000, env)
        direnv_project = tmp / "dproj"
        run([str(BENCH / "yardstick_direnv.sh"), str(direnv_project)], env)
        caches = f"'{home}/.cache/condatainer/shims' '{home}/.cache/condatainer/pkgs'"
        rounds = max(2, args.runs // CDS)

        rows: list[Row] = []
        fork_counts: dict[str, int] = {}
        python_starts: dict[str, int] = {}
        for shell in SHELLS:
            run([cnt, "init", shell], env)
            fn = PROMPT_FN[shell]
            ours = f"{SOURCE[shell]} '{home}/.local/share/condatainer/hook.{shell}'"
            theirs = DIRENV_HOOK[shell]
            into = f"cd '{project}'; {fn}; cd ..; {fn}"
            dfn = DIRENV_FN[shell]
            into_direnv = f"cd '{direnv_project}'; {dfn}; cd ..; {dfn}"
            a, b = paired(
                shell,
                (f"{ours}\n{into}", into, "true"),
                (f"{theirs}\n{into_direnv}", into_direnv, "true"),
                env,
                tmp,
                rounds,
            )
            rows.append(Row(f"{shell}: cd into a project and out (warm)", a,
                            "direnv, 3-line .envrc", b, 1.0))  # fmt: skip

            into_big = f"cd '{big}'; {fn}; cd ..; {fn}"
            a, b = paired(
                shell,
                (ours, into_big, f"rm -rf {caches}"),
                (f"{ours}\n{into_big}", into_big, "true"),
                env,
                tmp,
                rounds,
            )
            rows.append(Row(f"{shell}: first cd, 5,000 executables", a, "the same cd, warm", b,
                            goal_ms=500.0))  # fmt: skip

            a, b = paired(
                shell,
                (f"{ours}\ncd '{project}'; {fn}", f"{fn}; {fn}; {fn}; {fn}; {fn}", "true"),
                (
                    f"{NOOP[shell]}\n{ours}\ncd '{project}'; {fn}",
                    "_noop; _noop; _noop; _noop; _noop",
                    "true",
                ),
                env,
                project,
                rounds,
            )
            rows.append(Row(f"{shell}: 5 prompts, $PWD unchanged", a, "5 empty function calls",
                            b))  # fmt: skip
            fork_counts[shell] = forks(shell, f"{ours}\ncd '{project}'; {fn}", fn, env, tmp)

            empty_home = tmp / f"empty-{shell}"
            empty_home.mkdir()
            empty_env = {**env, "HOME": str(empty_home), "ZDOTDIR": str(empty_home),
                         "XDG_CONFIG_HOME": str(empty_home / ".config")}  # fmt: skip
            python_starts[shell] = pythons([shell, "-i", "-c", "exit"], env, tmp)
            times = alternate(args.runs, {
                "block": process([shell, "-i", "-c", "exit"], env, home),
                "empty": process([shell, "-i", "-c", "exit"], empty_env, empty_home),
            })  # fmt: skip
            rows.append(Row(f"{shell}: shell start with the rc block", times["block"],
                            "with an empty rc", times["empty"]))  # fmt: skip

        print_rows(f"the cd hook, installed at {inst.prefix}", rows)
        print()
        for shell, count in fork_counts.items():
            print(f"{shell}: forks in 1,000 prompts with $PWD unchanged: {count}  (goal 0)")
        for shell, count in python_starts.items():
            print(f"{shell}: Python processes started by `{shell} -i -c exit`: {count}  (goal 0)")


if __name__ == "__main__":
    main()
