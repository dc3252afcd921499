"""Nothing heavy before TAB (argcomplete#455): the CLI and the completers stay import-light.

Every TAB press starts `condatainer` anew, so whatever importing the CLI module costs is paid
on each one.  jinja2 and yaml are the heavy dependencies: they must be imported only inside the
commands that need them.  Checked in fresh interpreters, since this pytest process has long
since imported everything.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("jinja2", "yaml")


def _fresh(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO), **env},
        check=False,
    )


def test_importing_the_cli_and_building_the_parser_imports_nothing_heavy() -> None:
    res = _fresh(
        "import sys\n"
        "import condatainer.cli as cli\n"
        f"after_import = sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})\n"
        "cli.build_parser()\n"
        f"after_parser = sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})\n"
        "print(after_import, after_parser)\n"
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[] []"


def test_the_completers_module_imports_nothing_heavy() -> None:
    res = _fresh(
        "import sys\n"
        "from condatainer import completers\n"
        "completers.images(''); completers.profiles(''); completers.shells('')\n"
        "completers.mm_ops(''); completers.mm_args('', 'remove', '/nonexistent.img')\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}))\n"
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "line",
    [
        "condatainer ov",
        "condatainer overlay resize ",
        "condatainer o -p ",
        "condatainer mm remove ",
        "condatainer mm install nu",
        "cnt completion ",
    ],
)
def test_a_tab_press_imports_nothing_heavy(line: str, tmp_path: Path) -> None:
    """The whole completion run, as the shell starts it (modules listed by -X importtime)."""
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "_ARGCOMPLETE": "1",
        "COMP_LINE": line,
        "COMP_POINT": str(len(line)),
        "_ARGCOMPLETE_SHELL": "bash",
        "CNT_OVERLAY": str(tmp_path / "env.img"),
    }
    # argcomplete writes the candidates to fd 8 (a few bytes here: the pipe cannot fill).
    read_fd, write_fd = os.pipe()
    try:
        res = subprocess.run(
            [
                sys.executable,
                "-X",
                "importtime",
                "-c",
                f"import os; os.dup2({write_fd}, 8); import runpy; "
                "runpy.run_module('condatainer', run_name='__main__')",
            ],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            pass_fds=(write_fd,),
        )
    finally:
        os.close(write_fd)
        os.close(read_fd)
    assert res.returncode == 0, res.stderr
    imported = {
        line.split("|")[-1].strip()
        for line in res.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert "condatainer.completers" in imported, "the completion path was not taken"
    heavy = sorted(m for m in imported if m.split(".")[0] in HEAVY)
    assert heavy == []
