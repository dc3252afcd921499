"""SIGKILL during every image-writing operation, a writable exec and `mm install`: nothing is
left half done, behind, unlocked or running (see tests/fault/harness.py for what is checked).

CI runs a few seeded trials per operation; `CNT_FAULT_TRIALS=N` raises the count and
`CNT_FAULT_SEED` picks other kill points.  `bench/bench_crash.py` runs hundreds and prints the
table.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fault.ops import OPS
from tests.support import World

REPO = Path(__file__).resolve().parents[2]
TRIALS = int(os.environ.get("CNT_FAULT_TRIALS", "2"))
SEED = int(os.environ.get("CNT_FAULT_SEED", "10"))

pytestmark = [pytest.mark.root, pytest.mark.fault]


def harness(op: str, trials: int, seed: int) -> dict[str, object]:
    res = subprocess.run(
        [sys.executable, "-m", "tests.fault.harness", "--op", op, "--trials", str(trials),
         "--seed", str(seed), "--json"],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    result: dict[str, object] = json.loads(res.stdout)[op]
    return result


@pytest.mark.parametrize("op", sorted(OPS))
def test_sigkill_leaves_old_or_new_and_nothing_behind(op: str, world: World) -> None:
    result = harness(op, TRIALS, SEED)
    summary = result["summary"]
    assert isinstance(summary, dict)
    trials = result["trials"]
    assert isinstance(trials, list)
    broken = [t for t in trials if not t["clean"]]
    assert not broken, json.dumps(broken, indent=1)
    for counter in ("half_states", "leftovers", "unlocked_writers", "tracebacks", "orphans"):
        assert summary[counter] == 0, summary
    assert summary["trials"] == TRIALS
