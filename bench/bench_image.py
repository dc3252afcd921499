#!/usr/bin/env python3
"""Time the image operations users wait for: create, resize, check.

Rows without "(small)" use the default profile (balanced).  Resizes run with resize2fs's undo
record (see image.py), whose cost grows with the inode tables of the added space.

    python bench/bench_image.py [DIR]

DIR (default: $TMPDIR or /tmp) must have about 11G free: one allocated 10G image is made at a
time.  Each step runs 3 times on fresh images; the table shows the median and the spread.
Goals (design): create 10G sparse <= 1 s, create 10G allocated <= 3 s.
Standard library and condatainer only.
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from condatainer import runner
from condatainer.image.create import create
from condatainer.image.resize import resize
from condatainer.image.sizes import GIB, format_size

RUNS = 3
PROFILE = "balanced"  # the default of `condatainer o`


def timed(fn: Callable[..., object], *args: Any, **kwargs: Any) -> float:
    start = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - start


def bench(work: Path) -> list[tuple[str, list[float], str]]:
    rows: list[tuple[str, list[float], str]] = []
    img = work / "bench.img"

    for label, profile, sparse, goal in (
        ("create 10G sparse (small)", "small", True, ""),
        ("create 10G allocated (small)", "small", False, ""),
        ("create 10G sparse", PROFILE, True, "<= 1 s"),
        ("create 10G allocated", PROFILE, False, "<= 3 s"),  # leaves bench.img for e2fsck
    ):
        times = []
        for _ in range(RUNS):
            img.unlink(missing_ok=True)
            times.append(timed(create, img, 10 * GIB, profile, sparse=sparse))
        rows.append((label, times, goal))

    fsck = [timed(runner.run, ["e2fsck", "-f", "-n", str(img)]) for _ in range(RUNS)]
    rows.append(("e2fsck -fn 10G allocated", fsck, ""))
    img.unlink()

    for kind, sparse in (("allocated", False), ("sparse", True)):
        grow: list[float] = []
        shrink: list[float] = []
        for _ in range(RUNS):
            create(img, 1 * GIB, PROFILE, sparse=sparse)
            grow.append(timed(resize, img, 4 * GIB))
            shrink.append(timed(resize, img, 1 * GIB))
            img.unlink()
        rows.append((f"resize 1G -> 4G ({kind})", grow, ""))
        rows.append((f"resize 4G -> 1G ({kind})", shrink, ""))
    return rows


def main(argv: list[str]) -> int:
    base = Path(argv[1]) if len(argv) > 1 else Path(tempfile.gettempdir())
    free = shutil.disk_usage(base).free
    if free < 11 * GIB:
        print(f"bench_image: {base} has {format_size(free)} free; 11G are needed", file=sys.stderr)
        return 1
    work = Path(tempfile.mkdtemp(prefix="cnt-bench-", dir=base))
    try:
        rows = bench(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(
        f"condatainer image bench: {base} ({os.uname().sysname} {os.uname().release},"
        f" {os.cpu_count()} CPUs), profile {PROFILE}, median of {RUNS}"
    )
    print(f"{'step':<30} {'median':>9} {'min':>9} {'max':>9}  goal")
    for label, times, goal in rows:
        print(
            f"{label:<30} {statistics.median(times):>8.3f}s {min(times):>8.3f}s"
            f" {max(times):>8.3f}s  {goal}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
