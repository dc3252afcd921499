"""The test world: what the tests need but cannot download.

``build_channel(dest)`` builds a local conda channel of tiny noarch packages (use it as
``f"file://{path}"``); ``MICROMAMBA`` is an executable micromamba stand-in that installs from such
channels with py-rattler. Put ``MICROMAMBA.parent`` first on PATH to make it ``micromamba``.
"""

from pathlib import Path

from .channel import PACKAGES, build_channel

MICROMAMBA = Path(__file__).resolve().with_name("micromamba")

__all__ = ["MICROMAMBA", "PACKAGES", "build_channel"]
