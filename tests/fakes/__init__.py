"""Stand-ins for programs the test machines cannot have (see each program's docstring).

`apptainer` is an executable Python script, not a module: put `FAKES_DIR` first on PATH.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

FAKES_DIR = Path(__file__).resolve().parent
FAKE_APPTAINER = FAKES_DIR / "apptainer"


def with_fakes_on_path(env: Mapping[str, str]) -> dict[str, str]:
    """A copy of `env` whose PATH finds the fakes first."""
    return dict(env, PATH=os.pathsep.join([str(FAKES_DIR), env.get("PATH", os.defpath)]))
