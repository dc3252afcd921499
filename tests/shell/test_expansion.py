"""The sidecar expansion wrapper (shell/cnt-env.sh.j2) in real sh, dash and bash.

The words are made by `run.resolve.expansion` from sidecar values, exactly as a Plan carries
them; the wrapper runs as the file `run.tools` writes, then execs this interpreter, which dumps
its environment as JSON.  Hostile text -- in the sidecar values and in the container's variables
they reference -- must come out as the same bytes: nothing runs (a marker file would appear),
nothing is globbed or split.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import pytest

from condatainer.image import envfile
from condatainer.run import tools
from condatainer.run.containerenv import EXPANDER, expansion

SHELLS = ("sh", "dash", "bash")
DUMP = "import json, os, sys; sys.stdout.write(json.dumps(dict(os.environ)))"


@pytest.fixture(params=SHELLS)
def expand(
    request: pytest.FixtureRequest, need: Callable[[str], str], tmp_path: Path
) -> Callable[..., dict[str, str]]:
    """expand(sidecar_text, environ) -> the environment the command got."""
    shell = need(request.param)
    tmp_path = tmp_path / "work"  # only what the wrapper could create lands here
    tmp_path.mkdir()
    wrapper = tmp_path / "cnt-env"
    wrapper.write_text(tools.scripts()["cnt-env"])

    def run(sidecar: str, environ: Mapping[str, str]) -> dict[str, str]:
        side = envfile.parse(sidecar, "env.img.env")
        words = expansion(side.vars)
        assert words[0] == EXPANDER and words[-1] == "--"
        res = subprocess.run(
            [shell, str(wrapper), *words[1:], sys.executable, "-c", DUMP],
            env={"PATH": os.environ["PATH"], **environ},
            cwd=tmp_path,
            capture_output=True,
            timeout=60,
        )
        assert res.returncode == 0, res.stderr.decode()
        assert res.stderr == b""
        assert sorted(p.name for p in tmp_path.iterdir()) == ["cnt-env", "x-glob"], "it ran"
        got: dict[str, str] = json.loads(res.stdout)
        return got

    (tmp_path / "x-glob").write_text("")  # what `*` would match
    return run


HOSTILE_VALUES = [
    "$(touch ran-subst)",
    "`touch ran-tick`",
    "${X:-$(touch ran-default)}",
    "'\"; touch ran-quote; \"'",
    "line one\nline two\n\n",
    "  spaced   words  ",
    "x-*",
    "*",
    "-n",
    "back\\slash\\n\\t",
    "$HOME",
    "",
    "èрт🚒中",
]


@pytest.mark.parametrize("hostile", HOSTILE_VALUES)
def test_referenced_values_are_substituted_as_text(
    expand: Callable[..., dict[str, str]], hostile: str
) -> None:
    env = expand("A=[$H]\nB=${H}${H}\nC=$H\n", {"H": hostile})
    assert env["A"] == f"[{hostile}]"
    assert env["B"] == hostile + hostile
    assert env["C"] == hostile


@pytest.mark.parametrize(
    "literal",
    [
        "$(touch ran-subst) $H",
        "`touch ran-tick` $H",
        "${X:-$(touch ran-default)} $H",
        "$1 $@ $* $? $! $- $# ${#H} $H",
        "'\"; touch ran-quote; \"' $H",
        "x-* * $H",
        "$H $",
    ],
)
def test_other_forms_in_the_sidecar_stay_literal(
    expand: Callable[..., dict[str, str]], literal: str
) -> None:
    env = expand(f"V={literal}\n", {"H": "h", "X": "x"})
    assert env["V"] == literal.replace("$H", "h")


def test_dollar_dollar_unset_order_and_path(expand: Callable[..., dict[str, str]]) -> None:
    env = expand(
        "PATH=/ext3/env/go/bin:$PATH\n"
        "GOPATH=$HOME/go\n"
        "PRICE=$$5 and $$HOME and $$(id)\n"
        "GONE=[$NOT_SET][${NOT_SET}]\n"
        "LATER=$GOPATH/bin\n",
        {"HOME": "/home/u s", "PATH": os.environ["PATH"]},
    )
    assert env["PATH"] == "/ext3/env/go/bin:" + os.environ["PATH"]
    assert env["GOPATH"] == "/home/u s/go"
    assert env["PRICE"] == "$5 and $HOME and $(id)"
    assert env["GONE"] == "[][]"
    assert env["LATER"] == "/home/u s/go/bin"  # a later line sees an earlier one
    assert not any(k.startswith("_cnt_") for k in env)  # the wrapper's own variables


def test_command_arguments_pass_through_untouched(
    need: Callable[[str], str], tmp_path: Path
) -> None:
    wrapper = tmp_path / "cnt-env"
    wrapper.write_text(tools.scripts()["cnt-env"])
    words = expansion((("A", "$B"),))
    args: Sequence[str] = ("--", "=X", "+y", "$Z", "*", "a b", "$(id)", "")
    for shell in SHELLS:
        res = subprocess.run(
            [need(shell), str(wrapper), *words[1:], sys.executable, "-c",
             "import sys, os; print(repr((sys.argv[1:], os.environ['A'])))", *args],
            env={"PATH": os.environ["PATH"], "B": "b"},
            cwd=tmp_path, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert res.stdout == repr((list(args), "b")) + "\n", shell


def test_without_printenv_it_says_so(need: Callable[[str], str], tmp_path: Path) -> None:
    wrapper = tmp_path / "cnt-env"
    wrapper.write_text(tools.scripts()["cnt-env"])
    empty = tmp_path / "empty"
    empty.mkdir()
    words = expansion((("GOPATH", "$HOME/go"),))
    res = subprocess.run(
        [need("dash"), str(wrapper), *words[1:], "true"],
        env={"PATH": str(empty), "HOME": "/h"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 127
    expected = "condatainer: error: cannot expand $HOME for GOPATH: the base image has no printenv"
    assert res.stderr == expected + "\n"
