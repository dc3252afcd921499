"""What condatainer's own micromamba costs: fetching it cold vs. finding it cached, and the main
job (`o -- cnt-hello`) end to end with a warm cache.

Whole processes of an installed condatainer (`pip install .` into a fresh venv, not editable,
the way users get it) against the local test channel (file://), beside yardsticks timed in the
same run: the venv's bare interpreter start and `condatainer --version`, and `o` without
packages (the image alone, so the difference is the env install).

- bootstrap cold: `condatainer micromamba` with an empty cache (sharded index, one shard, the
  package, sha256, extraction, atomic publish), from a sharded and from a plain channel;
- bootstrap warm: the same command with the binary cached (what every later use pays to find it);
  both print what `condatainer micromamba` shows, which runs `micromamba --version` -- here the
  test world's stand-in, a Python script (a real micromamba answers in a few ms), so its own
  time is a yardstick row to subtract;
- `o IMG -- cnt-hello` with a warm cache, and `o IMG` alone.

Needs root (builtin runtime), zstd, network to PyPI for the venv's dependencies, and py-rattler
in the interpreter running this script (the channel's micromamba stand-in runs with it):

    sudo .venv/bin/python bench/bench_micromamba.py [--rounds N]
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

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support import copy_checkout, without_micromamba  # noqa: E402
from tests.world.channel import build_channel  # noqa: E402


def install(venv: Path) -> Path:
    """A fresh venv with condatainer installed from this checkout (not editable)."""
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    build = copy_checkout(venv.parent / "src")
    subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", str(build)],
        check=True,
    )
    return venv / "bin" / "condatainer"


def samples(action: Callable[[], object], rounds: int, before: Callable[[], object]) -> list[float]:
    times = []
    for _ in range(rounds):
        before()
        start = time.perf_counter()
        action()
        times.append((time.perf_counter() - start) * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    rounds = parser.parse_args().rounds
    with tempfile.TemporaryDirectory(prefix="cnt-bench-mm-") as tmp:
        work = Path(tmp)
        condatainer = install(work / "venv")
        python = work / "venv" / "bin" / "python"
        sharded = build_channel(work / "sharded")
        plain = build_channel(work / "plain", shards=False)
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("CNT_", "PYTHON"))},
            "HOME": str(work / "home"),
            "XDG_DATA_HOME": str(work / "data"),
            "XDG_CACHE_HOME": str(work / "cache"),
            "XDG_CONFIG_HOME": str(work / "config"),
            "XDG_STATE_HOME": str(work / "state"),
            "CNT_RUNTIME": "builtin",
            "CNT_CHANNELS": f"file://{sharded}",
            "CNT_MICROMAMBA_CHANNEL": f"file://{sharded}",
            "PATH": without_micromamba(os.environ["PATH"]),
        }
        cache = work / "data" / "condatainer" / "micromamba"

        def run(*argv: str | Path, **extra: str) -> None:
            subprocess.run(
                [str(a) for a in argv], env={**env, **extra}, cwd=work, check=True,
                capture_output=True,
            )  # fmt: skip

        def clear() -> None:
            shutil.rmtree(cache, ignore_errors=True)

        def nothing() -> None:
            pass

        image = work / "x.img"

        def no_image() -> None:
            image.unlink(missing_ok=True)

        rows = [
            ("yardstick: python -c pass", samples(lambda: run(python, "-c", "pass"), rounds,
                                                  nothing)),
            ("yardstick: condatainer --version",
             samples(lambda: run(condatainer, "--version"), rounds, nothing)),
            ("bootstrap cold (sharded index)",
             samples(lambda: run(condatainer, "micromamba"), rounds, clear)),
            ("bootstrap cold (repodata.json)",
             samples(lambda: run(condatainer, "micromamba", CNT_MICROMAMBA_CHANNEL=f"file://{plain}"),
                     rounds, clear)),
            ("bootstrap warm (cached)", samples(lambda: run(condatainer, "micromamba"), rounds,
                                                nothing)),
            ("yardstick: micromamba --version (stand-in)",
             samples(lambda: run(cache / "micromamba", "--version"), rounds, nothing)),
            ("yardstick: o IMG (no packages)",
             samples(lambda: run(condatainer, "o", image, "-s", "256M", "--sparse"), rounds,
                     no_image)),
            ("o IMG -- cnt-hello (warm cache)",
             samples(lambda: run(condatainer, "o", image, "-s", "256M", "--sparse", "--",
                                 "cnt-hello"), rounds, no_image)),
        ]  # fmt: skip
    print(f"{'measure (ms, ' + str(rounds) + ' rounds)':44} {'min':>8} {'median':>8} {'max':>8}")
    for name, times in rows:
        print(f"{name:44} {min(times):8.1f} {statistics.median(times):8.1f} {max(times):8.1f}")


if __name__ == "__main__":
    main()
