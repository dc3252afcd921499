"""Exec overhead as a user waits for it: whole processes of an installed condatainer.

Rows (each beside its yardstick, alternating, min/median/max in ms, the median ratio):

- `condatainer exec -o IMG -- /bin/true` with the builtin runtime, against the floor
  (bench/floor_exec.sh: unshare + a read-only loop mount + overlayfs + chroot, nothing else).
  Goal: at most 2x.  After the untimed first call, every call replays the recorded decision
  (run/replay.py), as a user's second call does.
- The same exec decided in full every time (its replay cache removed before each call, by a
  `sh -c` that then execs it): what a first call, or one after a change, costs.  No goal.
- A shim call after activation (`tool`, which runs `condatainer exec --if-allowed -o IMG --
  tool`), against the same `condatainer exec -o IMG -- tool` typed directly.  Goal: 1.2x.
- With the Apptainer runtime: condatainer from its start to its execvpe of `apptainer`, against
  `python -c pass` of the same interpreter.  The `apptainer` on PATH is a script that exits at
  once, so the row is condatainer's own time plus one exec of /bin/sh.  Goal: 1.5x.

Needs root (loop mounts) and e2fsprogs.

    python3 bench/bench_exec.py [--runs N] [--installed PREFIX]
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from _common import (
    BENCH,
    Row,
    alternate,
    clean_env,
    install,
    need,
    parser,
    print_rows,
    process,
    run,
    scratch,
)


def make_image(cnt: str, path: Path, env: dict[str, str]) -> None:
    """An env image holding bin/tool, made by the installed condatainer and mke2fs."""
    tree = path.parent / "tree"
    (tree / "upper/ext3/env/bin").mkdir(parents=True)
    (tree / "work").mkdir()
    tool = tree / "upper/ext3/env/bin/tool"
    tool.write_text("#!/bin/sh\nexit 0\n")
    tool.chmod(0o755)
    run(["mke2fs", "-q", "-F", "-t", "ext3", "-d", str(tree), str(path), "64M"], env)
    run([cnt, "allow", str(path)], env)


def main() -> None:
    args = parser(__doc__ or "").parse_args()
    if os.geteuid() != 0:
        sys.exit("bench_exec needs root (the builtin runtime mounts images)")
    need("mke2fs", "unshare", "chroot")
    with scratch("cnt-bench-exec-") as tmp_name:
        tmp = Path(tmp_name)
        inst = install(tmp / "venv", args.installed)
        home = tmp / "home"
        home.mkdir()
        env = clean_env(home, {"CNT_RUNTIME": "builtin"})
        project = tmp / "proj"
        project.mkdir()
        image = project / "env.img"
        make_image(inst.condatainer, image, env)
        cnt = inst.condatainer

        rows = []
        times = alternate(
            args.runs,
            {
                "exec": process([cnt, "exec", "-o", str(image), "--", "/bin/true"], env, project),
                "floor": process([str(BENCH / "floor_exec.sh"), str(image), "/bin/true"], env),
            },
        )
        rows.append(Row("exec -o IMG -- /bin/true (builtin)", times["exec"],
                        "floor_exec.sh", times["floor"], 2.0))  # fmt: skip
        plans = home / ".cache" / "condatainer" / "plans"
        cold = ["sh", "-c", 'rm -rf "$0"; exec "$@"', str(plans),
                cnt, "exec", "-o", str(image), "--", "/bin/true"]  # fmt: skip
        times = alternate(
            args.runs,
            {
                "cold": process(cold, env, project),
                "floor": process([str(BENCH / "floor_exec.sh"), str(image), "/bin/true"], env),
            },
        )
        rows.append(Row("  the same, decided in full each time", times["cold"],
                        "floor_exec.sh", times["floor"]))  # fmt: skip

        # The shim the cd hook puts on PATH: built by the activation the hook runs.
        run(
            [
                inst.python,
                "-c",
                "import sys; from condatainer.hook.activate import main;"
                " sys.exit(main(sys.argv[1:]))",
                "bash",
                str(image),
                str(project),
            ],
            env,
            Path("/"),
        )
        shims = list((home / ".cache/condatainer/shims").glob("*/bin/tool"))
        if len(shims) != 1:
            sys.exit(f"bench: expected one shim for tool, found {shims}")
        times = alternate(
            args.runs,
            {
                "shim": process([str(shims[0])], env, project),
                "exec": process([cnt, "exec", "-o", str(image), "--", "tool"], env, project),
            },
        )
        rows.append(Row("shim call `tool`", times["shim"], "exec -o IMG -- tool",
                        times["exec"], 1.2))  # fmt: skip

        # Apptainer: a binary that exits at once stands in, so what is timed is condatainer.
        fakebin = tmp / "fakebin"
        fakebin.mkdir()
        fake = fakebin / "apptainer"
        fake.write_text("#!/bin/sh\nexit 0\n")
        fake.chmod(0o755)
        base = tmp / "base.sif"
        base.write_bytes(b"")
        app_env = {**env, "PATH": f"{fakebin}:{env['PATH']}", "CNT_RUNTIME": "apptainer",
                   "CNT_BASE_IMAGE": str(base)}  # fmt: skip
        times = alternate(
            args.runs,
            {
                "apptainer": process(
                    [cnt, "exec", "-o", str(image), "--", "/bin/true"], app_env, project
                ),
                "python": process([inst.python, "-c", "pass"], env),
            },
        )
        rows.append(Row("exec with Apptainer (to its execvpe)", times["apptainer"],
                        "python -c pass", times["python"], 1.5))  # fmt: skip
        print_rows(f"exec overhead, {args.runs} runs each, installed at {inst.prefix}", rows)


if __name__ == "__main__":
    main()
