"""Stand-ins for programs the test machines cannot have (see each program's docstring).

`apptainer` is an executable Python script, not a module.  Tests never run the source (its `#!`
line would pick whatever `python3` is first on PATH): `FAKE_APPTAINER` is a copy bound to the
test interpreter (tests/programs.py), in `FAKES_DIR`; put that directory first on PATH.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from tests.programs import bound_copy, program_dir

SOURCE_DIR = Path(__file__).resolve().parent
FAKES_DIR = program_dir("fakes")
FAKE_APPTAINER = bound_copy(SOURCE_DIR / "apptainer", FAKES_DIR)


def with_fakes_on_path(env: Mapping[str, str]) -> dict[str, str]:
    """A copy of `env` whose PATH finds the fakes first."""
    return dict(env, PATH=os.pathsep.join([str(FAKES_DIR), env.get("PATH", os.defpath)]))
