"""The committed golden files of rendered templates (tests/shell/golden/), checked one way.

`CNT_UPDATE_GOLDEN=1 pytest ...` rewrites them.  The variable is read at import: the autouse
fixture in tests/conftest.py clears CNT_* variables while each test runs.
"""

from __future__ import annotations

import os
from pathlib import Path

GOLDEN = Path(__file__).resolve().parent / "golden"
UPDATE_GOLDEN = os.environ.get("CNT_UPDATE_GOLDEN") == "1"


def assert_matches_golden(name: str, text: str, test_file: str) -> None:
    """`text` equals the committed golden/NAME (rewritten first under CNT_UPDATE_GOLDEN=1)."""
    golden = GOLDEN / name
    if UPDATE_GOLDEN:
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(text, encoding="utf-8")
    assert golden.exists(), f"missing {golden}; run: CNT_UPDATE_GOLDEN=1 pytest {test_file}"
    assert text == golden.read_text(encoding="utf-8"), (
        f"{golden} is out of date; review the change, then run: "
        f"CNT_UPDATE_GOLDEN=1 pytest {test_file}"
    )
