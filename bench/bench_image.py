"""Image operations users wait for, as whole processes of an installed condatainer.

Rows (alternating with the yardstick, min/median/max in ms, the median ratio):

- `condatainer o FILE -s SIZE --sparse` at 1G, 10G and 100G, against bench/yardstick_create.sh
  (truncate + mke2fs with the same options and nothing else).  Goal: at most 1.3x.
- the same at 1G with nothing written down yet (an empty cache: the first `o`, or the first
  after the configuration changed, takes the full path; newenv.py), for the record.
- `condatainer o FILE -s 10G` (allocated), against `fallocate -l 10G` + the same mke2fs; the
  file must end up truly allocated (st_blocks), which the bench checks.
- `overlay resize` 1G -> 4G and back, and `overlay check`, for the record (no yardstick).

DIR (default /tmp) needs about 11G free for the allocated row.  Needs e2fsprogs.

    python3 bench/bench_image.py [--runs N] [--installed PREFIX] [--dir DIR]
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from _common import BENCH, Row, alternate, clean_env, install, need, parser, print_rows, scratch

SIZES = ("1G", "10G", "100G")


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--dir", default="/tmp", help="where the images are made (default /tmp)")
    args = p.parse_args()
    need("mke2fs", "truncate", "fallocate")
    with scratch("cnt-bench-image-") as tmp_name:
        tmp = Path(tmp_name)
        inst = install(tmp / "venv", args.installed)
        home = tmp / "home"
        home.mkdir()
        env = clean_env(home)
        work = Path(args.dir) / f"cnt-bench-image-{os.getpid()}"
        work.mkdir()
        try:
            rows = []
            for size in SIZES:
                ours, theirs = work / "ours.img", work / "theirs.img"

                def create(size: str = size, ours: Path = ours) -> None:
                    ours.unlink(missing_ok=True)
                    _run([inst.condatainer, "o", str(ours), "-s", size, "--sparse"], env)

                def yardstick(size: str = size, theirs: Path = theirs) -> None:
                    theirs.unlink(missing_ok=True)
                    _run([str(BENCH / "yardstick_create.sh"), size, str(theirs)], env)

                times = alternate(args.runs, {"ours": create, "theirs": yardstick})
                rows.append(Row(f"o -s {size} --sparse", times["ours"], "truncate + mke2fs",
                                times["theirs"], 1.3))  # fmt: skip
                ours.unlink()
                theirs.unlink()

            # The first `o` (and the first after the configuration changed) takes the full
            # path and writes down what the others replay: each run here gets an empty cache.
            caches = Path(tmp_name) / "caches"
            fresh_runs = iter(range(1_000_000))
            first, plain_first = work / "first.img", work / "plain-first.img"

            def create_first() -> None:
                first.unlink(missing_ok=True)
                cold = {**env, "XDG_CACHE_HOME": str(caches / str(next(fresh_runs)))}
                _run([inst.condatainer, "o", str(first), "-s", "1G", "--sparse"], cold)

            def yardstick_first() -> None:
                plain_first.unlink(missing_ok=True)
                _run([str(BENCH / "yardstick_create.sh"), "1G", str(plain_first)], env)

            times = alternate(args.runs, {"ours": create_first, "theirs": yardstick_first})
            rows.append(Row("o -s 1G --sparse, first (full path)", times["ours"],
                            "truncate + mke2fs", times["theirs"]))  # fmt: skip
            first.unlink()
            plain_first.unlink()

            allocated = work / "alloc.img"
            plain = work / "plain.img"

            def create_allocated() -> None:
                allocated.unlink(missing_ok=True)
                _run([inst.condatainer, "o", str(allocated), "-s", "10G"], env)
                st = allocated.stat()
                if st.st_blocks * 512 < st.st_size:
                    sys.exit(f"bench: {allocated} is not fully allocated")

            def fallocate_mke2fs() -> None:
                plain.unlink(missing_ok=True)
                _run(["fallocate", "-l", "10G", str(plain)], env)
                _run(["mke2fs", "-q", "-F", "-t", "ext3", "-E", "nodiscard", str(plain)], env)

            runs = max(3, args.runs // 3)
            times = alternate(runs, {"ours": create_allocated, "theirs": fallocate_mke2fs})
            rows.append(Row("o -s 10G (allocated)", times["ours"], "fallocate + mke2fs",
                            times["theirs"]))  # fmt: skip
            allocated.unlink()
            plain.unlink()

            image = work / "resize.img"
            _run([inst.condatainer, "o", str(image), "-s", "1G", "--sparse"], env)

            def grow_shrink() -> None:
                _run([inst.condatainer, "overlay", "resize", str(image), "-s", "4G"], env)
                _run([inst.condatainer, "overlay", "resize", str(image), "-s", "1G"], env)

            def check() -> None:
                _run([inst.condatainer, "overlay", "check", str(image), "-f"], env)

            times = alternate(runs, {"resize": grow_shrink, "check": check})
            rows.append(Row("resize 1G -> 4G -> 1G", times["resize"], "overlay check -f",
                            times["check"]))  # fmt: skip
            print_rows(f"image operations in {work}, installed at {inst.prefix}", rows)
        finally:
            for leftover in work.iterdir():
                leftover.unlink()
            work.rmdir()


def _run(argv: list[str], env: dict[str, str]) -> None:
    res = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        sys.exit(f"bench: {' '.join(argv)} failed:\n{res.stdout}{res.stderr}")


if __name__ == "__main__":
    main()
