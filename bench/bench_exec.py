"""Exec overhead: how long `/bin/true` takes through a container runtime vs. run directly.

Builtin runtime (needs root): `runtime.builtin.execute()` of `/bin/true` with one read-only
image (and, for comparison, one writable image, and one read-only image on a SIF base built
from host files: tests/world/rootfs.py) against `subprocess.run(["/bin/true"])`.
Goal: at most 40 ms of overhead for the read-only case.  Prints the median of N runs (default
20) of each, in milliseconds.

    sudo python3 bench/bench_exec.py [--rounds N]
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
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from condatainer.run.plan import Overlay, Plan
from condatainer.run.runtime import builtin
from tests.imagelib import mkfs
from tests.world.rootfs import build_base

GOAL_MS = 40.0


def median_ms(action: Callable[[], object], rounds: int) -> float:
    action()  # warm up: page cache, imports, loop devices created
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        action()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def make_image(directory: Path) -> Path:
    tree = directory / "tree"
    (tree / "upper" / "ext3" / "env" / "bin").mkdir(parents=True)
    (tree / "work").mkdir()
    return mkfs(tree, directory / "env.img")


def bench_builtin(rounds: int) -> list[tuple[str, float]]:
    reason = builtin.available()
    if reason is not None:
        print(f"builtin runtime skipped: {reason}", file=sys.stderr)
        return []
    with tempfile.TemporaryDirectory() as tmp:
        image = make_image(Path(tmp))

        def run(writable: bool, base: str | None = None) -> None:
            plan = Plan(
                command=("/bin/true",),
                overlays=(Overlay(str(image), writable),),
                base_image=base,
            )
            assert builtin.execute(plan) == 0

        direct = median_ms(lambda: subprocess.run(["/bin/true"], check=True), rounds)
        ro = median_ms(lambda: run(False), rounds)
        rw = median_ms(lambda: run(True), rounds)
        rows = [
            ("/bin/true directly", direct),
            ("builtin, 1 read-only image", ro),
            ("builtin, 1 writable image", rw),
            ("overhead, read-only", ro - direct),
            ("overhead, writable", rw - direct),
        ]
        if shutil.which("mksquashfs") and shutil.which("siftool"):
            sif = str(build_base(Path(tmp) / "base", python=None))
            on_base = median_ms(lambda: run(False, sif), rounds)
            rows += [
                ("builtin, 1 read-only image, SIF base", on_base),
                ("overhead, read-only, SIF base", on_base - direct),
            ]
        else:
            print("SIF base skipped: needs mksquashfs and siftool", file=sys.stderr)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    rows = bench_builtin(args.rounds)
    if not rows:
        return 1
    width = max(len(name) for name, _ in rows)
    print(f"{'case':<{width}}  median ms (n={args.rounds})")
    for name, ms in rows:
        print(f"{name:<{width}}  {ms:8.1f}")
    overhead = dict(rows)["overhead, read-only"]
    verdict = "ok" if overhead <= GOAL_MS else "OVER"
    print(f"goal: read-only overhead <= {GOAL_MS:.0f} ms: {verdict}")
    return 0 if overhead <= GOAL_MS else 1


if __name__ == "__main__":
    os.environ.setdefault("PATH", "/usr/bin:/bin")
    sys.exit(main())
