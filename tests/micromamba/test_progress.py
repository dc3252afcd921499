"""Fetching condatainer's micromamba on a terminal shows the download (first line at once,
then the bytes against the size the channel's index gives)."""

from __future__ import annotations

import re
from pathlib import Path

from tests.ptylib import ERASE, finish, spawn
from tests.support import World


def test_fetching_micromamba_shows_the_download(world: World, wd: Path, tmp_path: Path) -> None:
    out = tmp_path / "stdout"
    shown = finish(spawn(["micromamba"], out, wd, NO_COLOR="1"))
    assert shown.startswith(ERASE + "condatainer's micromamba")
    assert re.search(r"condatainer's micromamba: downloading micromamba \S+ · ", shown), shown
    assert "micromamba" in out.read_text()
