"""TAB latency: `condatainer` completion (a process per press) and the mm-* functions (pure shell).

Rows (min/median/max in ms):

- `condatainer` TAB: the installed console script answering argcomplete's protocol
  (`_ARGCOMPLETE=1`, `COMP_LINE`, `COMP_POINT`, candidates on fd 8) for a subcommand, image
  files, profiles and package names, beside `python -c pass` of the same interpreter (the floor
  no Python completer goes under).  Goal: at most 100 ms.
- `mm-install <prefix><TAB>` at 300,000 channel names and `mm-remove <TAB>` at 300 installed
  names: the completion function the hook includes, called in a running bash and zsh the way
  the shell calls it (zsh's compadd recorded by a stub), timed there with $EPOCHREALTIME, and
  in fish as `complete -C` (fish's own completion of the typed line), timed with its `time`
  keyword; with the listings and prefix buckets condatainer writes (pkgcache).  Beside an
  empty function call.  Goal: at most 20 ms.

Needs bash, zsh and fish.

    python3 bench/bench_completion.py [--runs N] [--installed PREFIX]
"""

from __future__ import annotations

import os
import random
import string
import subprocess
import sys
from pathlib import Path

from _common import (
    Row,
    alternate,
    clean_env,
    clock_samples,
    fish_samples,
    install,
    need,
    parser,
    print_rows,
    scratch,
)

CHANNEL_NAMES = 300_000
INSTALLED_NAMES = 300


def fake_names(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    names = {"numpy", "numba", "python", "cnt-hello"}
    alphabet = string.ascii_lowercase + string.digits + "-_"
    while len(names) < n:
        names.add(rng.choice(string.ascii_lowercase) + "".join(
            rng.choices(alphabet, k=rng.randint(2, 17))))  # fmt: skip
    return sorted(names)


def tab_process(argv: list[str], line: str, env: dict[str, str], cwd: Path) -> str:
    """One TAB answered by a new process, as bash's completion script runs it: candidates."""
    read_fd, write_fd = os.pipe()
    full = {**env, "_ARGCOMPLETE": "1", "_ARGCOMPLETE_SHELL": "bash", "COMP_LINE": line,
            "COMP_POINT": str(len(line)), "_ARGCOMPLETE_SUPPRESS_SPACE": "1"}  # fmt: skip
    os.dup2(write_fd, 8)  # the shell hands the child its fd 8 the same way
    os.close(write_fd)
    proc = subprocess.Popen(argv, env=full, cwd=cwd, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            pass_fds=(8,))  # fmt: skip
    os.close(8)
    with os.fdopen(read_fd, "rb") as reader:
        out = reader.read().decode()
    proc.wait()
    return out


def shell_times(shell: str, setup: str, body: str, runs: int, env: dict[str, str],
                cwd: Path) -> list[float]:  # fmt: skip
    """`body` timed `runs` times inside one shell (after one untimed run), in ms."""
    clock = "zmodload zsh/datetime\n" if shell == "zsh" else ""
    loop = (f"{clock}{setup}\n{body}\ni=0\nwhile [ $i -lt {runs} ]; do\n  _s=$EPOCHREALTIME\n"
            f"  {body}\n  _e=$EPOCHREALTIME\n  printf 'T %s %s\\n' \"$_s\" \"$_e\"\n"
            "  i=$((i+1))\ndone\n")  # fmt: skip
    argv = ["bash", "--norc", "--noprofile", "-c", loop] if shell == "bash" else [
        "zsh", "-f", "-c", loop]  # fmt: skip
    res = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    samples = clock_samples(res.stdout)
    if res.returncode != 0 or len(samples) != runs:
        sys.exit(f"bench: {shell} failed:\n{res.stdout[-2000:]}{res.stderr[-2000:]}")
    return samples


def fish_times(setup: str, body: str, runs: int, env: dict[str, str], cwd: Path) -> list[float]:
    """`body` timed `runs` times inside one fish (after one untimed run), in ms: fish has no
    clock variable, its `time` keyword reports each block on stderr."""
    loop = f"{setup}\n{body}\nfor i in (seq {runs})\n  time begin\n    {body}\n  end\nend\n"
    res = subprocess.run(["fish", "--no-config", "-c", loop], env=env, cwd=cwd,
                         capture_output=True, text=True, check=False)  # fmt: skip
    samples = fish_samples(res.stderr)
    if res.returncode != 0 or len(samples) != runs:
        sys.exit(f"bench: fish failed:\n{res.stdout[-2000:]}{res.stderr[-2000:]}")
    return samples


def main() -> None:
    args = parser(__doc__ or "").parse_args()
    need("bash", "zsh", "fish")
    with scratch("cnt-bench-tab-") as tmp_name:
        tmp = Path(tmp_name)
        inst = install(tmp / "venv", args.installed)
        home = tmp / "home"
        home.mkdir()
        env = clean_env(home, {"LANG": "C.UTF-8"})
        work = tmp / "work"
        (work / "sub").mkdir(parents=True)
        for name in ("env.img", "data.ext3", "notes.txt"):
            (work / name).write_text("")
        image = work / "env.img"

        # The listings and buckets as condatainer writes them, and the mm-* completion it
        # renders, both by the installed package.
        names = tmp / "names.txt"
        names.write_text("".join(f"{n}\n" for n in fake_names(CHANNEL_NAMES, 2)))
        listing = subprocess.run([inst.python, "-c", (
            "import sys; from condatainer.hook import pkgcache\n"
            "img = sys.argv[1]\n"
            "names = open(sys.argv[2]).read().split()\n"
            "installed = pkgcache.installed_file(img)\n"
            "installed.parent.mkdir(parents=True, exist_ok=True)\n"
            "installed.write_text(''.join(n + '\\n' for n in names[::1000]))\n"
            "pkgcache.channel_file(img).write_text(''.join(n + '\\n' for n in names))\n"
            "pkgcache.write_buckets(pkgcache.installed_file(img).with_name(\n"
            "    installed.name[:-4] + pkgcache.BUCKETS_SUFFIX), names)\n"
            "print(installed)\n"), str(image), str(names)],
            env=env, cwd=tmp, capture_output=True, text=True,
            check=True).stdout.strip()  # fmt: skip
        scripts = {}
        for shell in ("bash", "zsh", "fish"):
            scripts[shell] = tmp / f"mm.{shell}"
            scripts[shell].write_text(subprocess.run(
                [inst.python, "-c", "import sys; from condatainer.hook import mmcomplete;"
                 " sys.stdout.write(mmcomplete.script(sys.argv[1]))", shell],
                env=env, cwd=tmp, capture_output=True, text=True, check=True).stdout)  # fmt: skip

        rows: list[Row] = []
        active = {**env, "CNT_OVERLAY": str(image)}
        floor = [inst.python, "-c", "pass"]
        for line, expect in (("condatainer ov", "overlay"),
                             ("condatainer overlay resize ", "env.img"),
                             ("condatainer o -p ", "balanced"),
                             ("condatainer mm install nump", "numpy")):  # fmt: skip

            def one(line: str = line, expect: str = expect) -> None:
                got = tab_process([inst.condatainer], line, active, work)
                if expect not in got.split("\v"):
                    sys.exit(f"bench: TAB on {line!r} gave {got!r}")

            def pass_() -> None:
                subprocess.run(floor, env=env, check=True)

            times = alternate(args.runs, {"tab": one, "floor": pass_})
            rows.append(Row(f"TAB '{line}'", times["tab"], "python -c pass", times["floor"],
                            goal_ms=100.0))  # fmt: skip

        bash_setup = f". '{scripts['bash']}'\n_cnt_pkgs='{listing}'\n_noop() {{ :; }}"
        zsh_setup = (f"compdef() {{ :; }}\ncompadd() {{ :; }}\n. '{scripts['zsh']}'\n"
                     f"_cnt_pkgs='{listing}'\n_noop() {{ :; }}")  # fmt: skip
        for op, cur, size in (("install", "nu", "300k"), ("install", "n", "300k"),
                              ("install", "cnt-h", "300k"), ("remove", "", "300")):  # fmt: skip
            bash_body = (f"COMP_WORDS=(mm-{op} '{cur}'); COMP_CWORD=1;"
                         f" _cnt_mm_complete mm-{op} '{cur}' mm-{op}")  # fmt: skip
            zsh_body = f"words=(mm-{op} '{cur}'); CURRENT=2; PREFIX='{cur}'; _cnt_mm_complete"
            for shell, setup, body in (("bash", bash_setup, bash_body),
                                       ("zsh", zsh_setup, zsh_body)):  # fmt: skip
                ours = shell_times(shell, setup, body, args.runs, env, work)
                empty = shell_times(shell, setup, "_noop", args.runs, env, work)
                rows.append(Row(f"{shell}: mm-{op} '{cur}<TAB>' ({size} names)", ours,
                                "an empty function call", empty, goal_ms=20.0))  # fmt: skip
            fish_setup = (f"source '{scripts['fish']}'\nset -g _cnt_pkgs '{listing}'\n"
                          "function _noop; end")  # fmt: skip
            fish_body = f"complete -C 'mm-{op} {cur}' >/dev/null"
            ours = fish_times(fish_setup, fish_body, args.runs, env, work)
            empty = fish_times(fish_setup, "_noop", args.runs, env, work)
            rows.append(Row(f"fish: mm-{op} '{cur}<TAB>' ({size} names)", ours,
                            "an empty function call", empty, goal_ms=20.0))  # fmt: skip
        print_rows(f"TAB, {args.runs} runs each, installed at {inst.prefix}", rows)


if __name__ == "__main__":
    main()
