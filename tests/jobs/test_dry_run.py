"""`run --dry-run`: one report, whatever it finds -- scripts without #DEP, with missing images,
with and without sbatch on PATH, with a broken SLURM, with a header it cannot read -- always the
same keys with the types README.md documents (the table is read from README.md here), exit 0
when the run would start and 1 when it would not, and a text form without Python reprs.

Runs `python -m condatainer` as a user does, with real images (e2fsprogs, no root) and
stand-in `sbatch` programs on PATH for the SLURM states (tests/slurm has the real one).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support import REPO, cnt, ok

READY = 'echo "slurm 22.05.8"'
UNCONFIGURED = 'echo "sbatch: fatal: Could not establish a configuration source" >&2; exit 1'
BROKEN = 'echo "sbatch: fatal: Unable to process configuration file" >&2; exit 1'


def readme_types() -> dict[str, str]:
    """key -> type, from the table under "`run --dry-run --json`" in README.md."""
    text = (REPO / "README.md").read_text()
    section = text.split("#### `run --dry-run --json`", 1)[1].split("\n#", 1)[0]
    rows = re.findall(r"^\| `(\w+)` \| ([^|]+) \|", section, re.MULTILINE)
    assert len(rows) > 20, "the README table of the dry-run report is missing"
    return {key: kind.strip() for key, kind in rows}


def matches(value: Any, kind: str) -> bool:
    """Does `value` have the README type `kind` (e.g. "list of strings or null")?"""
    if kind.endswith(" or null"):
        return value is None or matches(value, kind[: -len(" or null")])
    simple = {"string": str, "bool": bool, "int": int}
    if kind in simple:
        return isinstance(value, simple[kind]) and (kind == "bool" or not isinstance(value, bool))
    if kind.startswith("list of "):
        inner = kind[len("list of ") :]
        inner = {"strings": "string", "objects": "object", "ints": "int"}.get(inner, inner)
        inner = re.sub(r"^lists of (\w+)$", r"list of \1", inner)
        return isinstance(value, list) and all(matches(v, inner) for v in value)
    if kind == "object of strings":
        return isinstance(value, dict) and all(isinstance(v, str) for v in value.values())
    if kind == "object":
        return isinstance(value, dict)
    raise AssertionError(f"README type {kind!r} is not one this test knows")


def check_schema(data: dict[str, Any]) -> None:
    types = readme_types()
    assert list(data) == list(types), "keys (and their order) as documented"
    for key, kind in types.items():
        assert matches(data[key], kind), f"{key}: {data[key]!r} is not {kind}"
    for d in data["directives"]:
        assert matches(d["line"], "int") and matches(d["args"], "list of strings")
    for dep in data["deps"]:
        assert set(dep) == {"dep", "line", "found", "path", "looked"}
        assert matches(dep["found"], "bool") and matches(dep["path"], "string or null")
    assert set(data["slurm"]) == {"state", "sbatch", "version", "detail"}
    assert data["slurm"]["state"] in ("absent", "ready", "broken")
    plan = data["plan"]
    if plan is not None:
        assert matches(plan["command"], "list of strings")
        assert all(matches(o["writable"], "bool") for o in plan["overlays"])
        assert matches(plan["env"], "object of strings")
        assert all(matches(b["readonly"], "bool") for b in plan["binds"])
        assert matches(plan["workdir"], "string or null")


@pytest.fixture
def proj(tmp_path: Path) -> Path:
    path = tmp_path / "proj"
    path.mkdir()
    return path


@pytest.fixture
def sbatch_on_path(tmp_path: Path) -> Callable[[str | None], dict[str, str]]:
    """An environment whose PATH has a stand-in sbatch with `body` (None: no sbatch at all)."""

    def make(body: str | None) -> dict[str, str]:
        bindir = tmp_path / "bin"
        bindir.mkdir(exist_ok=True)
        fake = bindir / "sbatch"
        if body is None:
            fake.unlink(missing_ok=True)
        else:
            fake.write_text(f"#!/bin/sh\n{body}\n")
            fake.chmod(0o755)
        return {"PATH": str(bindir), "SLURM_CONF": ""}

    return make


def image(path: Path) -> Path:
    ok(cnt("o", str(path), "-s", "64M", "--sparse"))
    return path


def dry(proj: Path, *args: str, env: dict[str, str] | None = None, code: int = 0) -> dict[str, Any]:
    res = ok(cnt("run", "--dry-run", "--json", *args, cwd=proj, env=env), code=code)
    data: dict[str, Any] = json.loads(res.stdout)
    check_schema(data)
    text = ok(cnt("run", "--dry-run", *args, cwd=proj, env=env), code=code).stdout
    assert "['" not in text and "{'" not in text and "None" not in text, text
    assert text.splitlines()[-1] == (
        "result      would start" if code == 0 else "result      would NOT start"
    )
    return data


def test_a_plain_script_without_dep_and_without_an_image(
    proj: Path, sbatch_on_path: Callable[[str | None], dict[str, str]]
) -> None:
    (proj / "job.sh").write_text("#!/bin/bash\necho hi\n")
    data = dry(proj, "job.sh", env=sbatch_on_path(None), code=1)
    assert data["deps"] == [] and data["plan"] is None
    assert data["submit"] is False and data["slurm"]["state"] == "absent"
    assert data["plan_error"] is not None and "no env.img" in data["plan_error"]
    assert data["problems"] == [data["plan_error"]]


def test_a_plain_slurm_script_without_dep_finds_env_img(
    proj: Path, sbatch_on_path: Callable[[str | None], dict[str, str]]
) -> None:
    image(proj / "env.img")
    (proj / "job.sh").write_text("#!/bin/bash\n#SBATCH -c 4\n#SBATCH --mem=2G\necho hi\n")
    here = dry(proj, "job.sh", "a b", env=sbatch_on_path(UNCONFIGURED))
    assert here["submit"] is False and "SLURM is absent here" in here["why"]
    assert here["slurm"]["state"] == "absent" and here["sbatch"] is None
    assert here["plan"]["overlays"] == [{"path": str(proj / "env.img"), "writable": False}]
    assert here["resources"]["NCPUS"] == "4" and here["resources"]["MEM"] == "2048"
    assert here["args"] == ["a b"]
    queued = dry(proj, "job.sh", "a b", env=sbatch_on_path(READY))
    assert list(queued) == list(here)  # the same keys, whichever way it goes
    assert queued["submit"] is True and queued["via"] == "wrapper"
    assert queued["sbatch"] == ["sbatch", "--parsable", f"--output={proj}/%x-%j.out"]
    assert "#SBATCH -c 4\n#SBATCH --mem=2G\n" in queued["wrapper"]
    assert queued["plan"]["overlays"] == here["plan"]["overlays"]


def test_missing_images_are_reported_with_where_they_were_looked_for(
    proj: Path, sbatch_on_path: Callable[[str | None], dict[str, str]]
) -> None:
    (proj / "scripts").mkdir()
    (proj / "scripts" / "job.sh").write_text(
        "#!/bin/bash\n#DEP: env.img\n#DEP: /nowhere/tools.img\n#SBATCH -J x\necho\n"
    )
    image(proj / "env.img")
    for env in (sbatch_on_path(None), sbatch_on_path(READY)):
        data = dry(proj, "scripts/job.sh", env=env, code=1)
        assert [(d["dep"], d["found"], d["line"]) for d in data["deps"]] == [
            ("env.img", True, 2),
            ("/nowhere/tools.img", False, 3),
        ]
        assert data["deps"][1]["looked"] == ["/nowhere/tools.img"]
        assert data["plan"] is None and "missing" in data["plan_error"]
        assert data["problems"] == [
            "#DEP: /nowhere/tools.img: not found (looked for /nowhere/tools.img)"
        ]


def test_a_broken_slurm_is_a_problem_not_a_run_here(
    proj: Path, sbatch_on_path: Callable[[str | None], dict[str, str]]
) -> None:
    image(proj / "env.img")
    (proj / "job.sh").write_text("#!/bin/bash\n#SBATCH -c 64\necho\n")
    data = dry(proj, "job.sh", env=sbatch_on_path(BROKEN), code=1)
    assert data["submit"] is True and data["slurm"]["state"] == "broken"
    assert any("SLURM is configured here but" in p for p in data["problems"])
    # The real run stops the same way, with the --local hint.
    res = cnt("run", "job.sh", cwd=proj, env=sbatch_on_path(BROKEN))
    assert res.returncode == 1 and "hint: fix SLURM" in res.stderr
    assert "condatainer run --local" in res.stderr


def test_a_header_that_cannot_be_read_is_a_problem(
    proj: Path, sbatch_on_path: Callable[[str | None], dict[str, str]]
) -> None:
    (proj / "job.sh").write_text("#!/bin/bash\n#CNT -c 4\necho\n")
    data = dry(proj, "job.sh", env=sbatch_on_path(None), code=1)
    assert data["origin"] is None and data["plan"] is None
    assert len(data["problems"]) == 1 and "job-control flag" in data["problems"][0]
    (proj / "dos.sh").write_text("#!/bin/bash\r\n#SBATCH -c 1\r\necho\r\n")
    data = dry(proj, "dos.sh", env=sbatch_on_path(READY), code=1)
    assert "DOS line breaks" in data["problems"][0]


def test_job_flags_and_an_array_in_the_report(
    proj: Path, sbatch_on_path: Callable[[str | None], dict[str, str]]
) -> None:
    image(proj / "env.img")
    (proj / "job.sh").write_text("#!/bin/bash\n#DEP: env.img\necho\n")
    (proj / "samples.txt").write_text("s1 a\n# skipped\ns2 'b c'\n")
    args = ("-c", "2", "-t", "1h", "--array", "samples.txt", "--array-limit", "1", "job.sh", "x")
    data = dry(proj, *args, env=sbatch_on_path(READY))
    assert data["control"]["cpus"] == 2 and data["control"]["time"] == "0-01:00:00"
    assert data["array"] == {
        "file": str(proj / "samples.txt"),
        "limit": 1,
        "tasks": [["s1", "a"], ["s2", "b c"]],
        "lines": [1, 3],
    }
    assert data["sbatch"][2:5] == ["--array=0-1%1", "--cpus-per-task=2", "--time=0-01:00:00"]
    assert "0) set -- s1 a ;;" in data["wrapper"]
    # Without SLURM the flags cannot be honoured: a problem in the dry run...
    data = dry(proj, *args, env=sbatch_on_path(None), code=1)
    assert any("--array" in p and "scheduler" in p for p in data["problems"])
    # ...and a usage error when run.
    res = cnt("run", *args, cwd=proj, env=sbatch_on_path(None))
    assert res.returncode == 2 and "--array: only a scheduler can do that" in res.stderr


def test_a_multi_task_job_step_would_start_one_container_per_task(proj: Path) -> None:
    image(proj / "env.img")
    (proj / "job.sh").write_text("#!/bin/bash\n#SBATCH -n 2\necho\n")
    env = {"SLURM_JOB_ID": "9", "SLURM_NTASKS": "2", "SLURM_CPUS_PER_TASK": "1"}
    data = dry(proj, "job.sh", env=env)
    assert data["launch"] == ["srun", "--export=ALL"]
    assert data["submit"] is False and "inside a SLURM job" in data["why"]
    assert data["resources"]["NTASKS"] == "2"
    data = dry(proj, "-w", "job.sh", env=env, code=1)
    assert any("mounted writable by each of 2 tasks" in p for p in data["problems"])
