"""The test world: what the tests need but cannot download.

``build_channel(dest)`` builds a local conda channel of tiny noarch packages and a micromamba
package for linux-64 (use it as ``f"file://{path}"``; condatainer bootstraps its micromamba from
it).  ``MICROMAMBA`` is the micromamba stand-in that installs from such channels with py-rattler,
for tests of the stand-in itself: a copy of ``tests/world/micromamba`` bound to the test
interpreter (see tests/programs.py), never the source, whose ``#!`` line would pick whatever
``python3`` is first on PATH.

Both are loaded on first use (module ``__getattr__``), so ``python -m tests.world.channel DIR``
runs the channel module once, as ``__main__``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

SOURCE = Path(__file__).resolve().with_name("micromamba")

__all__ = ["MICROMAMBA", "PACKAGES", "SOURCE", "build_channel"]


def __getattr__(name: str) -> Any:
    if name == "MICROMAMBA":
        from tests.programs import bound_copy, program_dir

        value: Any = bound_copy(SOURCE, program_dir("world"))
    elif name in ("PACKAGES", "build_channel"):
        from . import channel

        value = getattr(channel, name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value
