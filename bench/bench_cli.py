"""What the command line costs on top of the runtime: exec overhead, import time, mm install.

- `condatainer exec -o IMG -- /bin/true` as a user runs it (a new Python process, the CLI,
  resolve, the builtin runtime) against the same Plan handed to the runtime in a process that
  has already imported it (`python -c` with the Plan prebuilt), both timed end to end as
  processes, so the difference is what the CLI adds: interpreter start, imports, resolve.
  Goal: at most 40 ms (jinja2 and yaml stay off the exec path).
- Import time of `condatainer.cli` (`python -X importtime`), and whether jinja2/yaml got in.
- `condatainer mm install` of one package from the local test channel, end to end.

Needs root (builtin runtime) and py-rattler (the micromamba stand-in, which condatainer fetches
from the local channel into the throwaway data directory before the rounds).  Median of N rounds.

    python3 bench/bench_cli.py [--rounds N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.world.channel import build_channel  # noqa: E402

GOAL_MS = 40.0


def timed(argv: list[str], env: dict[str, str], rounds: int, cwd: Path) -> float:
    subprocess.run(argv, env=env, cwd=cwd, check=True, capture_output=True)  # warm up
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        subprocess.run(argv, env=env, cwd=cwd, check=True, capture_output=True)
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    rounds = parser.parse_args().rounds
    with tempfile.TemporaryDirectory(prefix="cnt-bench-") as tmp:
        work = Path(tmp)
        channel = build_channel(work / "channel")
        env = {
            **os.environ,
            # Trust records and caches of the throwaway images stay in the throwaway directory.
            "XDG_DATA_HOME": str(work / "data"),
            "XDG_CACHE_HOME": str(work / "cache"),
            "XDG_STATE_HOME": str(work / "state"),
            "PYTHONPATH": str(REPO),
            "CNT_RUNTIME": "builtin",
            "CNT_CHANNELS": f"file://{channel}",
            # condatainer fetches its micromamba (the channel's stand-in) on the first mm install
            "CNT_MICROMAMBA_CHANNEL": f"file://{channel}",
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]),
        }
        image = work / "env.img"
        cli = [sys.executable, "-m", "condatainer"]
        subprocess.run(
            [*cli, "o", str(image), "-s", "256M", "--sparse"],
            env=env,
            check=True,
            capture_output=True,
        )
        direct_code = (
            "import os, sys\n"
            "from condatainer.run.plan import Overlay, Plan\n"
            "from condatainer.run.runtime import builtin\n"
            f"plan = Plan(command=('/bin/true',), overlays=(Overlay({str(image)!r}, False),),"
            f" cwd={str(work)!r}, env=(('PATH', os.environ['PATH']),))\n"
            "sys.exit(builtin.execute(plan))\n"
        )
        rows = [
            ("/bin/true directly", timed(["/bin/true"], env, rounds, work)),
            ("python -c pass", timed([sys.executable, "-c", "pass"], env, rounds, work)),
            (
                "runtime with a prebuilt Plan",
                timed([sys.executable, "-c", direct_code], env, rounds, work),
            ),
            (
                "condatainer exec -o IMG /bin/true",
                timed([*cli, "exec", "-o", str(image), "--", "/bin/true"], env, rounds, work),
            ),
        ]
        overhead = rows[3][1] - rows[2][1]
        imports = subprocess.run(
            [
                sys.executable,
                "-X",
                "importtime",
                "-c",
                "import condatainer.cli, sys;"
                "print(','.join(m for m in ('jinja2', 'yaml') if m in sys.modules))",
            ],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        cumulative = [
            int(line.split("|")[1])
            for line in imports.stderr.splitlines()
            if line.rstrip().endswith("condatainer.cli")
        ]
        heavy = imports.stdout.strip() or "none"
        subprocess.run([*cli, "micromamba"], env=env, check=True, capture_output=True)
        installs = []
        for round_ in range(min(rounds, 5)):
            img = work / f"mm{round_}.img"
            subprocess.run(
                [*cli, "o", str(img), "-s", "256M", "--sparse"],
                env=env,
                check=True,
                capture_output=True,
            )
            start = time.perf_counter()
            subprocess.run(
                [*cli, "mm", "-o", str(img), "install", "cnt-hello"],
                env=env,
                check=True,
                capture_output=True,
            )
            installs.append((time.perf_counter() - start) * 1000)
    print(f"{'measure':44} {'median ms':>10}")
    for name, value in rows:
        print(f"{name:44} {value:10.1f}")
    verdict = "ok" if overhead <= GOAL_MS else "OVER GOAL"
    print(f"{'CLI overhead over the runtime (goal <= 40)':44} {overhead:10.1f}  {verdict}")
    print(f"{'import condatainer.cli (cumulative)':44} {cumulative[0] / 1000:10.1f}")
    print(f"{'heavy modules imported by the CLI':44} {heavy:>10}")
    print(f"{'mm install cnt-hello (end to end)':44} {statistics.median(installs):10.1f}")


if __name__ == "__main__":
    main()
