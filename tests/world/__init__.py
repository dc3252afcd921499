"""The test world: what the tests need but cannot download.

``build_channel(dest)`` builds a local conda channel of tiny noarch packages (use it as
``f"file://{path}"``).  ``MICROMAMBA`` is a micromamba stand-in that installs from such channels
with py-rattler: a copy of ``tests/world/micromamba`` bound to the test interpreter (see
tests/programs.py), never the source, whose ``#!`` line would pick whatever ``python3`` is first
on PATH.  Put ``MICROMAMBA.parent`` first on PATH to make it ``micromamba``.
"""

from pathlib import Path

from tests.programs import bound_copy, program_dir

from .channel import PACKAGES, build_channel

SOURCE = Path(__file__).resolve().with_name("micromamba")
MICROMAMBA = bound_copy(SOURCE, program_dir("world"))

__all__ = ["MICROMAMBA", "PACKAGES", "SOURCE", "build_channel"]
