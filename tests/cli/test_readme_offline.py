"""README command 1, offline variant, run as written: install.sh (a venv from a copy of this
checkout; pip reaches PyPI for the dependencies), the test world's channel, `o -- cnt-hello`
with condatainer's micromamba fetched from that channel, and the package run in the image.

The command line is read from README.md, so the README cannot drift from what is tested.  The
network variant beside it needs conda-forge, which these machines cannot reach; it differs in
the channel (conda-forge, the default) and the packages only.  The copy gets a link to this
checkout's `.venv` (the README says the variant needs it: its Python runs the stand-in).
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.support import REPO, copy_checkout, without_micromamba

pytestmark = [pytest.mark.slow, pytest.mark.root]


def offline_line() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    after = text[text.index("Offline variant") :]
    match = re.search(r"```sh\n\s*(.+)\n\s*```", after)
    assert match, "no code block after 'Offline variant' in README.md"
    return match.group(1).strip()


def test_the_offline_variant_of_readme_command_1(tmp_path: Path) -> None:
    line = offline_line()
    assert "\n" not in line and line.startswith("./install.sh ")
    src = copy_checkout(tmp_path / "src")
    (src / ".venv").symlink_to(REPO / ".venv")
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("XDG_", "PYTHON", "CNT_", "VIRTUAL_ENV"))
    }
    env.update(HOME=str(home), SHELL="/bin/bash", PATH=without_micromamba(os.environ["PATH"]))
    res = subprocess.run(
        ["sh", "-c", line],
        cwd=src,
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=900,
        check=False,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.endswith("hello from cnt-hello 1.0\nit works offline\n"), res.stdout
    assert res.stderr.count("fetching micromamba") == 1
    cached = home / ".local" / "share" / "condatainer" / "micromamba" / "micromamba"
    assert cached.is_file()
    assert (src / "demo-offline.img").is_file()
