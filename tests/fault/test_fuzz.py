"""Random input for every parser and command family (tests/fault/fuzz.py): never a traceback,
only condatainer's own exit statuses, nothing touched that the input did not name.

CI runs a few dozen seeded examples per family; `CNT_FUZZ_EXAMPLES=N` raises the count and
`CNT_FUZZ_SEED` picks other inputs.  `bench/bench_crash.py` runs 10,000 and prints the table.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.fault import fuzz

EXAMPLES = int(os.environ.get("CNT_FUZZ_EXAMPLES", "40"))
SEED = int(os.environ.get("CNT_FUZZ_SEED", "20"))

pytestmark = pytest.mark.fault


@pytest.mark.parametrize("family", fuzz.PARSERS, ids=lambda f: f.name)
def test_parsers_never_raise_anything_but_their_error(family: fuzz.Family, tmp_path: Path) -> None:
    counts = fuzz.run_family(family, EXAMPLES * 5, SEED, tmp_path)
    assert counts.ok, counts.examples
    assert counts.inputs > 0


@pytest.mark.root
@pytest.mark.parametrize("family", fuzz.COMMANDS_FAMILIES, ids=lambda f: f.name)
def test_command_lines_fail_cleanly_and_touch_only_what_they_name(
    family: fuzz.Family, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CNT_RUNTIME", "builtin")
    monkeypatch.setenv("CNT_DEFAULT_SIZE", "64M")  # `o` with no -s must not make 10G images
    with fuzz.small_filesystem(tmp_path / "small") as small:
        work = fuzz.workdir_for_commands(small)
        counts = fuzz.run_family(family, max(EXAMPLES // 2, 1), SEED, work)
    assert counts.ok, counts.examples
    assert counts.inputs > 0
