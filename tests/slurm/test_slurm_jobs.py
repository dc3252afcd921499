"""Job scripts on a real SLURM cluster, running inside real images (builtin runtime, as root).

Each test makes a real image with `condatainer o ... -- cnt-hello` in a project directory, then
submits: with plain `sbatch` (the self-reexec header gets the job into the container), or with
`condatainer run --submit` / `submit: auto` (a wrapper does, for a script without the header).
The refusals are checked to happen before anything reaches the queue.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.slurm.conftest import REPORT, Slurm, script, values
from tests.support import REPO, cnt, ok

pytestmark = [pytest.mark.root, pytest.mark.slurm]


def test_plain_sbatch_of_a_script_with_the_header(project: Path, slurm: Slurm) -> None:
    job = script(
        project / "scripts" / "job.sh",
        """\
        #!/bin/bash
        #DEP: env.img
        #SBATCH --job-name=cnt-header
        #SBATCH --output=%x-%j.out
        """,
        REPORT + 'cnt-hello "$@"\nexit 3\n',
    )
    ok(cnt("header", "--insert", str(job)))
    assert "# >>> condatainer header >>>" in job.read_text()

    # Relative script path and relative #DEP: only the submit directory holds env.img.
    job_id = slurm.sbatch("scripts/job.sh", "a b", cwd=project)
    [info] = slurm.wait(job_id)
    out = (project / f"cnt-header-{job_id}.out").read_text()
    seen = values(out)
    assert seen["IN_CONDATAINER"] == "1", out
    assert seen["CONDA_PREFIX"] == "/ext3/env"
    assert seen["CNT_OVERLAY"] == str(project / "env.img")
    assert seen["dollar0"].endswith("/slurm_script"), out  # the spool copy ran
    assert seen["CNT_SCRIPT"] == str(job)  # ...and the original was found behind it
    assert "hello from cnt-hello 1.0\na b\n" in out
    assert info["ExitCode"] == "3:0", (info, out)
    assert info["JobState"] == "FAILED"


def test_run_submit_of_a_script_without_the_header(project: Path, slurm: Slurm) -> None:
    job = script(
        project / "scripts" / "job.sh",
        """\
        #!/bin/bash
        #DEP: env.img
        #SBATCH --output=%x-%j.out   # the default job name is the script's file name
        """,
        REPORT + 'cnt-hello "$@"\n',
    )
    res = ok(cnt("run", "--submit", "scripts/job.sh", "x y", "it's", cwd=project))
    job_id = res.stdout.strip()
    assert job_id.isdigit(), res.stdout
    [info] = slurm.wait(job_id)
    out = (project / f"job.sh-{job_id}.out").read_text()
    seen = values(out)
    assert info["JobState"] == "COMPLETED", (info, out)
    assert seen["IN_CONDATAINER"] == "1", out
    assert seen["CONDA_PREFIX"] == "/ext3/env"
    assert seen["dollar0"] == str(job)  # the wrapper runs the original file
    assert seen["SUBMIT_DIR"] == str(project)
    assert "hello from cnt-hello 1.0\nx y\nit's\n" in out


def test_submit_auto_submits_a_python_script_with_sbatch_lines(project: Path, slurm: Slurm) -> None:
    job = project / "scripts" / "job.py"
    job.write_text(
        textwrap.dedent(f"""\
        #!{sys.executable}
        #DEP: env.img
        #SBATCH --job-name=cnt-py
        #SBATCH --output=%x-%j.out
        import os, subprocess
        print("IN_CONDATAINER=" + os.environ.get("IN_CONDATAINER", ""))
        print(subprocess.run(["cnt-hello"], capture_output=True, text=True).stdout, end="")
        """)
    )
    res = ok(cnt("run", "scripts/job.py", cwd=project))  # no --submit: config submit: auto
    job_id = res.stdout.strip()
    [info] = slurm.wait(job_id)
    out = (project / f"cnt-py-{job_id}.out").read_text()
    assert info["JobState"] == "COMPLETED", (info, out)
    assert out == "IN_CONDATAINER=1\nhello from cnt-hello 1.0\n"
    # --local runs it here, and so does submit: never.
    assert ok(cnt("run", "--local", "scripts/job.py", cwd=project)).stdout == out
    local = ok(cnt("run", "scripts/job.py", cwd=project, env={"CNT_SUBMIT": "never"}))
    assert local.stdout == out


def refused(
    project: Path, slurm: Slurm, name: str, header: str, *flags: str
) -> subprocess.CompletedProcess[str]:
    """Submit a script that must be refused; check that nothing reached the queue."""
    script(project / f"{name}.sh", header.replace("NAME", name))
    res = cnt("run", "--submit", *flags, f"{name}.sh", cwd=project)
    assert res.returncode != 0, res.stdout
    assert res.stderr.startswith("condatainer: error: "), res.stderr
    assert "hint: " in res.stderr
    assert "Traceback" not in res.stderr
    assert slurm.queued(name) == []
    return res


def test_missing_dep_is_refused(bare_project: Path, slurm: Slurm) -> None:
    project = bare_project
    res = refused(
        project,
        slurm,
        "cnt-missing",
        """\
        #!/bin/bash
        #DEP: nothere.img
        #SBATCH --job-name=NAME
        """,
    )
    assert "#DEP: nothere.img: not found" in res.stderr
    assert str(project / "nothere.img") in res.stderr


@pytest.mark.parametrize(
    ("header", "flags", "why"),
    [
        ("#CNT -w\n#SBATCH --array=0-1\n", (), "#SBATCH --array=0-1"),
        ("#SBATCH -a 0-3%1\n", ("-w",), "#SBATCH -a 0-3%1"),
        ("#SBATCH --ntasks=2\n", ("-w",), "#SBATCH --ntasks=2"),
    ],
)
def test_writable_image_with_several_processes_is_refused(
    bare_project: Path, slurm: Slurm, header: str, flags: tuple[str, ...], why: str
) -> None:
    project = bare_project
    res = refused(
        project,
        slurm,
        "cnt-rw",
        "#!/bin/bash\n#DEP: env.img\n#SBATCH --job-name=NAME\n" + header,
        *flags,
    )
    assert f"{project / 'env.img'} would be mounted writable" in res.stderr
    assert why in res.stderr
    assert "-w" in res.stderr.split("hint: ")[1]


def test_image_locked_for_writing_is_refused(bare_project: Path, slurm: Slurm) -> None:
    project = bare_project
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\nfrom condatainer.image import locks\n"
            "lock = locks.acquire(sys.argv[1], write=True)\nprint('held', flush=True)\n"
            "time.sleep(60)\n",
            str(project / "env.img"),
        ],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        res = refused(
            project,
            slurm,
            "cnt-locked",
            """\
            #!/bin/bash
            #DEP: env.img
            #SBATCH --job-name=NAME
            """,
        )
    finally:
        holder.kill()
        holder.wait()
    assert "in use for writing by " in res.stderr and f"(PID {holder.pid}" in res.stderr
    assert "not submitted" in res.stderr


def test_array_tasks_share_one_image_read_only(project: Path, slurm: Slurm) -> None:
    job = script(
        project / "array.sh",
        """\
        #!/bin/bash
        #SBATCH --job-name=cnt-array
        #SBATCH --array=0-1
        #SBATCH --output=%x-%A_%a.out
        #DEP: env.img
        """,
        'date +start=%s.%N\ncnt-hello "task $SLURM_ARRAY_TASK_ID"\n'
        "touch /ext3/env/x 2>/dev/null && echo WROTE\nsleep 1.5\ndate +end=%s.%N\n",
    )
    ok(cnt("header", "--insert", str(job)))
    res = ok(cnt("run", "--submit", "array.sh", cwd=project))  # header: the file is submitted
    array_id = res.stdout.strip()
    tasks = slurm.wait(array_id, tasks=2)
    outs = {
        t["ArrayTaskId"]: (project / f"cnt-array-{array_id}_{t['ArrayTaskId']}.out").read_text()
        for t in tasks
    }
    assert sorted(outs) == ["0", "1"]
    assert all(t["JobState"] == "COMPLETED" for t in tasks), (tasks, outs)
    spans = []
    for task_id, out in outs.items():
        assert f"hello from cnt-hello 1.0\ntask {task_id}\n" in out
        assert "WROTE" not in out  # read-only
        seen = values(out)
        spans.append((float(seen["start"]), float(seen["end"])))
    (s0, e0), (s1, e1) = spans
    assert s0 < e1 and s1 < e0, f"the two tasks did not run at the same time: {spans}"
