"""The self-reexec header in real dash, bash and zsh, with a recording fake `condatainer`.

The fake stands in for `condatainer run --reexec SCRIPT ARGS...` (built elsewhere): it records
its argv (NUL-separated) and CNT_SCRIPT, then runs SCRIPT "inside the container" -- with
IN_CONDATAINER=1 and CNT_REEXEC_DEPTH raised, as the real runtime does with `--env`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from condatainer import shellgen
from condatainer.jobs import header as reexec_header

HOSTILE = "'\";&&e-$ èрт🚒中-j"
SHELLS = {"dash": "/usr/bin/dash", "bash": "/usr/bin/bash", "zsh": "/usr/bin/zsh"}

FAKE = """#!/bin/sh
# Fake `condatainer`: record argv and CNT_SCRIPT, then run the script "inside".
log={log}
printf '%s\\0' "$@" >> "$log"
printf 'CNT_SCRIPT=%s\\0\\n' "${{CNT_SCRIPT-unset}}" >> "$log"
[ "$1" = run ] && [ "$2" = --reexec ] || exit 99
shift 2
script=$1
shift
case ${{CNT_REEXEC_DEPTH:-0}} in ''|*[!0-9]*) depth=1 ;; *) depth=$((CNT_REEXEC_DEPTH + 1)) ;; esac
{inside}CNT_REEXEC_DEPTH=$depth exec {shell} "$script" "$@"
"""

BODY = """printf 'inside IN_CONDATAINER=%s depth=%s\\n' "$IN_CONDATAINER" "${CNT_REEXEC_DEPTH-}"
for arg in "$@"; do printf 'arg:[%s]\\n' "$arg"; done
exit 3
"""


@dataclass
class World:
    root: Path
    bin: Path
    log: Path
    job: Path

    def calls(self) -> list[list[str]]:
        """The fake's recorded calls: argv lists (CNT_SCRIPT lines dropped)."""
        if not self.log.exists():
            return []
        out = []
        for chunk in self.log.read_bytes().decode().split("\n"):
            if chunk:
                fields = chunk.split("\0")[:-1]
                out.append([f for f in fields if not f.startswith("CNT_SCRIPT=")])
        return out

    def cnt_script(self) -> list[str]:
        text = self.log.read_bytes().decode()
        return [f[len("CNT_SCRIPT=") :] for f in text.split("\0") if "CNT_SCRIPT=" in f]


def env(world: World, **extra: str) -> dict[str, str]:
    base = {"PATH": f"{world.bin}:/usr/bin:/bin", "HOME": os.environ["HOME"]}
    base.update(extra)
    return base


def run(
    argv: Sequence[str], world: World, *, env_: dict[str, str] | None = None, stdin: bytes = b""
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(argv),
        input=stdin.decode(),
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
        cwd=world.job.parent,
        env=env(world) if env_ is None else env_,
    )


def make_world(tmp_path: Path, shell: str, *, inside: bool = True, shebang: str = "") -> World:
    root = tmp_path / f"proj {HOSTILE}"
    bin_dir = tmp_path / "bin"
    root.mkdir()
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    fake = bin_dir / "condatainer"
    fake.write_text(
        FAKE.format(
            log=shellgen.quote(str(log)),
            shell=SHELLS[shell],
            inside="IN_CONDATAINER=1 " if inside else "",
        )
    )
    fake.chmod(0o755)
    job = root / "job.sh"
    script = f"#!{shebang or SHELLS[shell]}\n#SBATCH -n 1\n#DEP: env.img\n\n{BODY}"
    job.write_text(reexec_header.insert(script))
    job.chmod(0o755)
    return World(root, bin_dir, log, job)


@pytest.fixture(params=sorted(SHELLS))
def shell(request: pytest.FixtureRequest, need: Callable[[str], str]) -> str:
    need(request.param)
    return str(request.param)


def assert_ran_inside(proc: subprocess.CompletedProcess[str], args: Sequence[str]) -> None:
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr == ""
    expected = "inside IN_CONDATAINER=1 depth=1\n" + "".join(f"arg:[{a}]\n" for a in args)
    assert proc.stdout == expected


ARGS = ["a b", HOSTILE, "", "--", "-n"]


# --------------------------------------------------------------------------------------------
# Run directly


def test_run_with_the_shell_reexecs_once_with_all_arguments(tmp_path: Path, shell: str) -> None:
    world = make_world(tmp_path, shell)
    proc = run([SHELLS[shell], "job.sh", *ARGS], world)
    assert_ran_inside(proc, ARGS)
    assert world.calls() == [["run", "--reexec", "job.sh", *ARGS]]


def test_run_as_an_executable(tmp_path: Path, shell: str) -> None:
    world = make_world(tmp_path, shell)
    proc = run(["./job.sh", *ARGS], world)
    assert_ran_inside(proc, ARGS)
    assert world.calls() == [["run", "--reexec", "./job.sh", *ARGS]]


def test_run_by_absolute_path_from_elsewhere_like_a_slurm_spool_copy(
    tmp_path: Path, shell: str
) -> None:
    world = make_world(tmp_path, shell)
    spool = tmp_path / "spool" / "job42"
    spool.mkdir(parents=True)
    copy = spool / "slurm_script"
    shutil.copy(world.job, copy)
    proc = run(
        [SHELLS[shell], str(copy)],
        world,
        env_=env(world, CNT_SCRIPT=str(world.job), SLURM_SUBMIT_DIR=str(world.root)),
    )
    assert_ran_inside(proc, [])
    assert world.calls() == [["run", "--reexec", str(copy)]]
    assert world.cnt_script() == [str(world.job)]  # passed through to condatainer


def test_cnt_script_unset_stays_unset(tmp_path: Path) -> None:
    world = make_world(tmp_path, "dash")
    run([SHELLS["dash"], "job.sh"], world)
    assert world.cnt_script() == ["unset"]


def test_with_an_empty_environment(tmp_path: Path, shell: str) -> None:
    world = make_world(tmp_path, shell)
    proc = run(
        ["env", "-i", f"PATH={world.bin}:/usr/bin:/bin", SHELLS[shell], "job.sh", "x"],
        world,
        env_={"PATH": "/usr/bin:/bin"},
    )
    assert_ran_inside(proc, ["x"])


def test_strict_shell_options_in_the_shebang(tmp_path: Path, shell: str) -> None:
    world = make_world(tmp_path, shell, shebang=f"{SHELLS[shell]} -eu")
    proc = run(["./job.sh", "x"], world)
    assert_ran_inside(proc, ["x"])


def test_inside_a_container_the_header_does_nothing(tmp_path: Path, shell: str) -> None:
    world = make_world(tmp_path, shell)
    proc = run([SHELLS[shell], "job.sh", "x"], world, env_=env(world, IN_CONDATAINER="1"))
    assert proc.returncode == 3 and proc.stdout == "inside IN_CONDATAINER=1 depth=\narg:[x]\n"
    assert world.calls() == []


# --------------------------------------------------------------------------------------------
# Sourced from another script

OUTER = """. ./job.sh {args}
printf 'outer continues rc=%s\\n' "$?"
for v in __cnt_self __cnt_sourced __cnt_ok __cnt_err __cnt_rc __cnt_line; do
    eval "[ -z \\"\\${{$v+x}}\\" ]" || printf 'leaked %s\\n' "$v"
done
"""


@pytest.mark.parametrize("outer_shell", ["bash", "zsh"])
def test_sourced_from_bash_or_zsh_runs_the_sourced_file_and_returns(
    tmp_path: Path, outer_shell: str, need: Callable[[str], str]
) -> None:
    need(outer_shell)
    world = make_world(tmp_path, outer_shell)
    (world.root / "outer.sh").write_text(OUTER.format(args="'p q' r"))
    proc = run([SHELLS[outer_shell], "outer.sh"], world)
    assert proc.stderr == ""
    assert proc.stdout == (
        "inside IN_CONDATAINER=1 depth=1\narg:[p q]\narg:[r]\nouter continues rc=3\n"
    )
    assert world.calls() == [["run", "--reexec", "./job.sh", "p q", "r"]]


def test_sourced_from_plain_sh_refuses_with_one_line_and_returns(
    tmp_path: Path, need: Callable[[str], str]
) -> None:
    need("dash")
    world = make_world(tmp_path, "dash")
    (world.root / "outer.sh").write_text(OUTER.format(args=""))
    proc = run([SHELLS["dash"], "outer.sh"], world)
    assert proc.stdout == "outer continues rc=1\n"
    assert proc.stderr.count("\n") == 1
    assert proc.stderr.startswith("condatainer: cannot tell which file this script is")
    assert world.calls() == []


def test_sourced_when_condatainer_is_missing_returns_127(
    tmp_path: Path, need: Callable[[str], str]
) -> None:
    need("bash")
    world = make_world(tmp_path, "bash")
    (world.root / "outer.sh").write_text(OUTER.format(args=""))
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    proc = run([SHELLS["bash"], "outer.sh"], world, env_={"PATH": str(empty)})
    assert proc.stdout == "outer continues rc=127\n"
    assert proc.stderr.count("\n") == 1


# --------------------------------------------------------------------------------------------
# Failures: one line on stderr, nothing on stdout


def test_condatainer_missing_prints_one_line_and_exits_127(tmp_path: Path, shell: str) -> None:
    world = make_world(tmp_path, shell)
    empty = tmp_path / "empty-bin"  # the header needs only shell builtins
    empty.mkdir()
    proc = run([SHELLS[shell], "job.sh"], world, env_={"PATH": str(empty)})
    assert proc.returncode == 127
    assert proc.stdout == ""
    assert proc.stderr == (
        "condatainer: not found on PATH; this script needs it to re-run itself inside its "
        "container\n"
    )


def test_depth_guard(tmp_path: Path, shell: str) -> None:
    world = make_world(tmp_path, shell)
    proc = run([SHELLS[shell], "job.sh"], world, env_=env(world, CNT_REEXEC_DEPTH="2"))
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "re-exec loop" in proc.stderr
    assert world.calls() == []


def test_depth_guard_stops_a_runtime_that_loses_in_condatainer(tmp_path: Path, shell: str) -> None:
    world = make_world(tmp_path, shell, inside=False)  # the "container" forgets IN_CONDATAINER
    proc = run([SHELLS[shell], "job.sh", "x"], world)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr == (
        "condatainer: re-exec loop: started 2 times and still not inside a container; stopping\n"
    )
    assert len(world.calls()) == 2


@pytest.mark.parametrize("value", ["x", "", "1", "a[$(touch pwned)]", "-5"])
def test_odd_depth_values_do_not_stop_or_run_anything(
    tmp_path: Path, shell: str, value: str
) -> None:
    world = make_world(tmp_path, shell)
    proc = run([SHELLS[shell], "job.sh"], world, env_=env(world, CNT_REEXEC_DEPTH=value))
    assert proc.returncode == 3, proc.stderr
    assert not (world.root / "pwned").exists()


def test_script_read_from_stdin_is_refused(tmp_path: Path, shell: str) -> None:
    world = make_world(tmp_path, shell)
    proc = run([SHELLS[shell], "-s"], world, stdin=world.job.read_bytes())
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.startswith("condatainer: cannot tell which file this script is")
    assert proc.stderr.count("\n") == 1
    assert world.calls() == []


# --------------------------------------------------------------------------------------------
# Static checks


def test_header_is_shellcheck_clean_as_posix_sh(tmp_path: Path, need: Callable[[str], str]) -> None:
    shellcheck = need("shellcheck")
    header = tmp_path / "header.sh"
    header.write_text("#!/bin/sh\n" + reexec_header.text())
    for dialect in ("sh", "dash", "bash"):
        proc = subprocess.run(
            [shellcheck, "-s", dialect, str(header)], capture_output=True, text=True, check=False
        )
        assert proc.returncode == 0, proc.stdout


def test_header_parses_in_every_shell(tmp_path: Path, shell: str) -> None:
    header = tmp_path / "header.sh"
    header.write_text(reexec_header.text())
    proc = subprocess.run([SHELLS[shell], "-n", str(header)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
