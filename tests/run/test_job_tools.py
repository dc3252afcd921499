"""`condatainer run` here, in a real container (builtin runtime, root): what a job script finds
inside -- the resource variables, `module`/`ml` doing nothing with one note -- the container
options `run` takes, and `_task` (what each task of a multi-task job runs) carrying out a Plan.
The same on a real cluster: tests/slurm/test_job_control.py.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest

from tests.support import World, cnt, ok

pytestmark = pytest.mark.root


@pytest.fixture
def image(world: World, tmp_path: Path) -> Path:
    path = tmp_path / "env.img"
    ok(cnt("o", str(path), "-s", "256M", "--sparse", "--", "cnt-hello", cwd=tmp_path))
    return path


def test_module_load_and_resources_in_a_run_here(image: Path, tmp_path: Path) -> None:
    job = tmp_path / "job.sh"
    job.write_text(
        "#!/bin/bash\n#DEP: env.img\n#SBATCH --cpus-per-task=2\n#SBATCH --mem=3G\nset -e\n"
        "module purge\nmodule load gcc/12 cuda\nml samtools\n"
        'echo "NCPUS=$NCPUS MEM=$MEM MEM_GB=$MEM_GB NTASKS=$NTASKS"\ncnt-hello\n'
    )
    before = set(Path(tempfile.gettempdir()).iterdir())
    res = ok(cnt("run", "--local", str(job), cwd=tmp_path))
    assert res.stdout == "NCPUS=2 MEM=3072 MEM_GB=3 NTASKS=1\nhello from cnt-hello 1.0\n"
    assert res.stderr.count("does nothing inside the container") == 1, res.stderr
    assert "'module purge' does nothing" in res.stderr
    after = set(Path(tempfile.gettempdir()).iterdir())
    assert not [p for p in after - before if "module-noted" in p.name], "the mark is removed"
    # The run's own flags win over the script for a run here; the others are noted as ignored.
    res = ok(cnt("run", "--local", "-c", "3", "-m", "1G", "-t", "1h", str(job), cwd=tmp_path))
    assert res.stdout.startswith("NCPUS=3 MEM=1024 MEM_GB=1 ")
    assert "-t only apply to submitted jobs: ignored here" in res.stderr


def test_container_options_on_run(image: Path, tmp_path: Path) -> None:
    data = tmp_path / "data dir"
    data.mkdir()
    (data / "f.txt").write_text("from the host\n")
    job = tmp_path / "job.sh"
    job.write_text(
        "#!/bin/sh\n#DEP: env.img\n#CNT --env FROM_CNT=cnt --env BOTH=cnt\n"
        'cat /mnt/data/f.txt; echo "$FROM_CNT $BOTH ${HOST_ONLY:-unset}"\n'
    )
    res = ok(
        cnt(
            "run",
            "--local",
            "--bind",
            f"{data}:/mnt/data",
            "--env",
            "BOTH=cli",
            "--cleanenv",
            str(job),
            cwd=tmp_path,
            env={"HOST_ONLY": "x"},
        )
    )
    assert res.stdout == "from the host\ncnt cli unset\n"  # the command line wins; clean env


def test_task_runs_the_plan_its_batch_step_made(image: Path, tmp_path: Path) -> None:
    job = tmp_path / "job.sh"
    job.write_text('#!/bin/sh\n#DEP: env.img\ncnt-hello "$@"\n')
    ok(cnt("run", "--local", str(job)))  # writes the module stubs the Plan binds
    report = json.loads(ok(cnt("run", "--local", "--dry-run", "--json", str(job), "a b")).stdout)
    res = ok(cnt("_task", json.dumps(report["plan"]), cwd=tmp_path))
    assert res.stdout == "hello from cnt-hello 1.0\na b\n"
    bad = cnt("_task", "{}", cwd=tmp_path)
    assert bad.returncode == 2 and "_task: not a Plan" in bad.stderr
