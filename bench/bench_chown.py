"""`overlay chown` beside the other ways to give an image's files to another user.

An image holds FILES files in DIRS directories under upper/ext3/env (made with `mke2fs -d`,
owned by uid 1234).  Each way gets a fresh sparse copy per run and changes every owner under
upper/ to 4321:4321; the results are checked to be the same inodes and owners.

- `condatainer overlay chown IMG -u 4321 -g 4321` (installed, a whole process): one debugfs
  process per tree level to list it, one batched `debugfs -w` pass to write it.
- one debugfs per directory, the reference tool's way (CondaTainer's ChownRecursively): one
  `debugfs -R "ls -p <ino>"` process per directory, then one batched write pass.  Goal: ours is
  at least 10x faster at 20k files.
- a loop mount and `chown -R` (needs root), the way a user with root would do it.  Goal: ours
  is faster.

Median (and min, max) of RUNS runs each, alternating.  Needs e2fsprogs; root for the loop row.

    python3 bench/bench_chown.py [--files 20000] [--dirs 2000] [--runs 3] [--installed PREFIX]
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from _common import Row, alternate, clean_env, install, need, parser, print_rows, run, scratch

UID = 4321


def build(tmp: Path, files: int, dirs: int, env: dict[str, str]) -> Path:
    src = tmp / "tree"
    prefix = src / "upper" / "ext3" / "env"
    tops = max(1, min(dirs, round(dirs**0.5)))
    paths = [prefix / f"top{t}" for t in range(tops)]
    paths += [prefix / f"top{i % tops}" / f"sub{i}" for i in range(dirs - tops)]
    for d in paths:
        d.mkdir(parents=True)
    for j in range(files):
        (paths[j % dirs] / f"file{j}").touch()
    (src / "work" / "work").mkdir(parents=True)
    if os.geteuid() == 0:
        for dirpath, dirnames, filenames in os.walk(src):
            for name in dirnames + filenames:
                os.lchown(os.path.join(dirpath, name), 1234, 1234)
    image = tmp / "base.img"
    run(["mke2fs", "-q", "-F", "-t", "ext3", "-E", "nodiscard", "-d", str(src), str(image),
         "512M"], env)  # fmt: skip
    shutil.rmtree(src)
    return image


def debugfs(image: Path, request: str, *, write: bool = False, script: str | None = None) -> str:
    argv = ["debugfs", *(["-w"] if write else []), *(["-f", "-"] if script else ["-R", request])]
    res = subprocess.run([*argv, str(image)], input=script, capture_output=True, text=True,
                         check=True)  # fmt: skip
    return res.stdout


def chown_per_directory(image: Path) -> None:
    """The reference tool's way: one debugfs process per directory to list it."""
    start = int(debugfs(image, "stat /upper").split("Inode:")[1].split()[0])
    inodes, queue, seen = [start], [start], set()
    while queue:
        current = queue.pop(0)
        if current in seen:
            continue
        seen.add(current)
        for line in debugfs(image, f"ls -p <{current}>").splitlines():
            parts = line.split("/")
            if len(parts) < 7 or parts[5] in (".", ".."):
                continue
            inodes.append(int(parts[1]))
            if parts[2].startswith("04"):
                queue.append(int(parts[1]))
    cmds = [f"sif {p} {f} {UID}" for p in ("/upper", "/work", "/work/work") for f in ("uid", "gid")]
    cmds += [f"sif <{i}> {f} {UID}" for i in inodes for f in ("uid", "gid")]
    debugfs(image, "", write=True, script="\n".join(cmds) + "\n")


def chown_loop_mount(image: Path, mnt: Path) -> None:
    subprocess.run(["mount", "-o", "loop", str(image), str(mnt)], check=True)
    try:
        subprocess.run(["chown", "-R", f"{UID}:{UID}", str(mnt / "upper"), str(mnt / "work")],
                       check=True)  # fmt: skip
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def owners(image: Path, mnt: Path) -> list[str]:
    """Every inode's owner under upper/ and work/ (a read-only loop mount as root, else the
    top directory's debugfs listing)."""
    if os.geteuid() != 0:
        out = debugfs(image, "", script="ls -p /upper/ext3/env\n")
        return sorted(line for line in out.splitlines() if line.startswith("/"))
    subprocess.run(["mount", "-o", "loop,ro", str(image), str(mnt)], check=True)
    try:
        res = subprocess.run(["find", "upper", "work", "-printf", "%i %U:%G\\n"], cwd=mnt,
                             capture_output=True, text=True, check=True)  # fmt: skip
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
    return sorted(res.stdout.splitlines())


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--files", type=int, default=20_000)
    p.add_argument("--dirs", type=int, default=2_000)
    p.set_defaults(runs=3)
    args = p.parse_args()
    need("mke2fs", "debugfs")
    with scratch("cnt-bench-chown-") as tmp_name:
        tmp = Path(tmp_name)
        inst = install(tmp / "venv", args.installed)
        home = tmp / "home"
        home.mkdir()
        env = clean_env(home, {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
        base = build(tmp, args.files, args.dirs, env)
        copies = {"ours": tmp / "ours.img", "perdir": tmp / "perdir.img", "loop": tmp / "loop.img"}
        mnt = tmp / "mnt"
        mnt.mkdir()

        def fresh(name: str) -> Path:
            subprocess.run(["cp", "--sparse=always", str(base), str(copies[name])], check=True)
            return copies[name]

        ways = {
            "ours": lambda: run(
                [
                    inst.condatainer,
                    "overlay",
                    "chown",
                    str(fresh("ours")),
                    "-u",
                    str(UID),
                    "-g",
                    str(UID),
                ],
                env,
            ),
            "perdir": lambda: chown_per_directory(fresh("perdir")),
        }
        if os.geteuid() == 0:
            ways["loop"] = lambda: chown_loop_mount(fresh("loop"), mnt)
        times = alternate(args.runs, ways)
        reference = owners(copies["ours"], mnt)
        if any(not line.endswith(f" {UID}:{UID}") for line in reference):
            sys.exit("bench: condatainer left inodes with other owners")
        for name in ways:
            if owners(copies[name], mnt) != reference:
                sys.exit(f"bench: {name} left other owners than condatainer")
        rows = [Row("overlay chown (condatainer)", times["ours"],
                    "one debugfs per directory", times["perdir"], 0.1)]  # fmt: skip
        if "loop" in times:
            rows.append(Row("overlay chown (condatainer)", times["ours"],
                            "loop mount + chown -R", times["loop"], 1.0))  # fmt: skip
        print_rows(f"chown of {args.files} files in {args.dirs} directories,"
                   f" {args.runs} runs each", rows)  # fmt: skip


if __name__ == "__main__":
    main()
