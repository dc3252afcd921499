"""The wheel ships every template, and an installed wheel renders every artifact as the editable
checkout does.

The templates live in the top-level shell/ and are mapped into the package as
`condatainer.shell` (pyproject.toml); a mistake there shows only in an installed package, never
in the editable one the suite runs.  So the wheel is built for real (pip, no build isolation:
setuptools comes with the test extra), unpacked, and the same script renders every artifact
once from the wheel and once from the checkout; the texts must be the same.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Renders every artifact condatainer writes, through the functions that write them, and prints
# {artifact: text} as JSON plus where the templates were found.
RENDER_ALL = r"""
import json, sys
from condatainer import completion, shellgen
from condatainer.hook import activate, hookfile, mmcomplete, rcfile, shims
from condatainer.jobs import directives, header, submit
from condatainer.run import mm
from condatainer import session

out = {"template_dir": str(shellgen.TEMPLATE_DIR)}
for sh in shellgen.SHELLS:
    out[f"hook.{sh}"] = hookfile.text(sh)
    out[f"rcblock.{sh}"] = rcfile.block_body(sh, "/h/hook")
    out[f"container-rc.{sh}"] = session.container_rc(sh, "(x)")
    out[f"completion.{sh}"] = completion.script(sh)
    out[f"complete-mm.{sh}"] = mmcomplete.script(sh)
    out[f"activate.{sh}"] = activate.render(activate.Outcome("/i.img", wait="/rec"), sh)
out["header.sh"] = header.text()
out["shim.sh"] = shims.shim_text("/i.img", "/s")
out["job-wrapper.sh"] = submit.wrapper("#!/bin/sh\n", directives.parse("#!/bin/sh\n", "j"),
                                       "/j.sh", [], run_flags=[], condatainer="condatainer",
                                       tasks=[["a"]])
out["module-stub.sh"] = shellgen.render("module-stub", "sh", name="module")
for op in mm.TABLE.values():
    if op.script:
        out[f"{op.script}.sh"] = mm.script_text(op)
from condatainer.run import basefetch
out["base-def.sh"] = basefetch.definition("docker://registry.example/site/base:1")
from condatainer.run import tools
scripts = tools.scripts()
out["mm-command.sh"] = "".join(scripts[f"mm-{op}"] for op in mm.TABLE)
out["micromamba-missing.sh"] = scripts["micromamba"]
print(json.dumps(out))
"""


def render_all(pythonpath: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    res = subprocess.run(
        [sys.executable, "-c", RENDER_ALL],
        cwd="/",
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    data: dict[str, str] = json.loads(res.stdout)
    return data


@pytest.mark.slow
def test_the_wheel_ships_and_renders_every_template(tmp_path: Path) -> None:
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--disable-pip-version-check",
            "-w",
            str(tmp_path / "dist"),
            str(REPO),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    [wheel] = (tmp_path / "dist").glob("condatainer-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        zf.extractall(tmp_path / "site")
    shipped = sorted(n.rpartition("/")[2] for n in names if n.startswith("condatainer/shell/"))
    expected = sorted(p.name for p in (REPO / "shell").glob("*.j2"))
    assert [n for n in shipped if n.endswith(".j2")] == expected
    assert "condatainer/shell/__init__.py" in names

    from_wheel = render_all(str(tmp_path / "site"))
    from_checkout = render_all(None)
    assert from_wheel.pop("template_dir") == str(tmp_path / "site" / "condatainer" / "shell")
    assert from_checkout.pop("template_dir") == str(REPO / "shell")
    rendered = {name.rsplit(".", 1)[0] for name in from_wheel}
    assert rendered == {name.split(".")[0] for name in expected}, "an artifact is not rendered"
    # The hook and shims name the launcher (this interpreter's console script): the same in
    # both, since both run under the same interpreter.
    assert from_wheel == from_checkout
