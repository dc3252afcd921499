"""`condatainer run`'s job control on a real SLURM cluster, in real images (builtin runtime):
flags reach sbatch and win over the script's own lines (read back with `scontrol show job`),
`--array FILE`, `--afterok`, one container per task, `module load` in a job, the dry run's
sbatch call accepted by the real sbatch, and `submit: auto` failing closed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.slurm.conftest import Slurm, script, values
from tests.support import cnt, ok

pytestmark = [pytest.mark.root, pytest.mark.slurm]


def submit(project: Path, *args: str, env: dict[str, str] | None = None) -> str:
    res = ok(cnt("run", *args, cwd=project, env=env))
    job_id = res.stdout.strip()
    assert job_id.isdigit(), (res.stdout, res.stderr)
    return job_id


def test_flags_reach_sbatch_and_win_over_the_scripts_lines(project: Path, slurm: Slurm) -> None:
    script(
        project / "scripts" / "job.sh",
        """\
        #!/bin/bash
        #DEP: env.img
        #SBATCH -J old-name
        #SBATCH -c 1
        #SBATCH --mem-per-cpu=100M
        #SBATCH -t 1
        #SBATCH --gres=gpu:1
        """,
        'echo "NCPUS=$NCPUS"\necho "MEM=$MEM"\necho "GPUS=${CUDA_VISIBLE_DEVICES:-}"\ncnt-hello\n',
    )
    flags = ("-c", "2", "-m", "600M", "-t", "5m", "-g", "tesla:2", "-n", "cnt-flags")
    logs = ("-o", "logs/%x-%j.out", "-e", "logs/%x-%j.err", "-p", "debug")
    job_id = submit(project, *flags, *logs, "scripts/job.sh")
    [info] = slurm.wait(job_id)
    assert info["JobState"] == "COMPLETED", info
    assert info["JobName"] == "cnt-flags"
    assert info["NumCPUs"] == "2" and info["CPUs/Task"] == "2"
    # The script counts memory per CPU: -m 600M became 300M for each of the 2 CPUs.
    assert info["MinMemoryCPU"] == "300M"
    assert info["TimeLimit"] == "00:05:00"
    assert info["TresPerNode"] == "gres:gpu:tesla:2"
    assert info["Partition"] == "debug"
    out = project / "logs" / f"cnt-flags-{job_id}.out"  # logs/ was created before submitting
    assert info["StdOut"] == str(out) and info["StdErr"] == str(out.with_suffix(".err"))
    seen = values(out.read_text())
    assert (seen["NCPUS"], seen["MEM"], seen["GPUS"]) == ("2", "600", "0,1")
    assert "hello from cnt-hello 1.0" in out.read_text()


def test_array_file_tasks_share_the_image_read_only(project: Path, slurm: Slurm) -> None:
    # A samples sheet as pipelines keep them: a header comment, quoted names, a blank line.
    (project / "samples.txt").write_text("# sample condition\ns1 'treated group'\n\ns2 ctrl\n")
    script(
        project / "scripts" / "q.sh",
        "#!/bin/bash\n#DEP: env.img\n#SBATCH -c 1\n",
        'date +start=%s.%N\necho "argc=$#"\nprintf "arg=%s\\n" "$@"\n'
        "touch /ext3/env/x 2>/dev/null && echo WROTE\nsleep 1.5\ndate +end=%s.%N\n",
    )
    array_id = submit(
        project, "--array", "samples.txt", "--array-limit", "2", "scripts/q.sh", "ref"
    )
    tasks = slurm.wait(array_id, tasks=2)
    assert all(t["JobState"] == "COMPLETED" for t in tasks), tasks
    assert {t["ArrayTaskThrottle"] for t in tasks} == {"2"}
    spans = []
    for t in tasks:
        out = (project / "scripts" / f"q.sh-{array_id}_{t['ArrayTaskId']}.out").read_text()
        assert "WROTE" not in out, "read-only"
        words = [line[4:] for line in out.splitlines() if line.startswith("arg=")]
        expected = {"0": ["ref", "s1", "treated group"], "1": ["ref", "s2", "ctrl"]}
        assert words == expected[t["ArrayTaskId"]]
        seen = values(out)
        spans.append((float(seen["start"]), float(seen["end"])))
    (s0, e0), (s1, e1) = spans
    assert s0 < e1 and s1 < e0, f"the two tasks did not hold the image at the same time: {spans}"


def test_afterok_chains_two_jobs(project: Path, slurm: Slurm) -> None:
    script(
        project / "scripts" / "first.sh",
        "#!/bin/bash\n#DEP: env.img\n#SBATCH -J cnt-first\n",
        "sleep 1\necho made > made.txt\n",
    )
    script(
        project / "scripts" / "second.sh",
        "#!/bin/bash\n#DEP: env.img\n#SBATCH -J cnt-second\n",
        "cat made.txt\n",
    )
    first = submit(project, "scripts/first.sh")
    second = submit(project, "--afterok", first, "scripts/second.sh")
    never = submit(project, "--afternotok", first, "scripts/second.sh")
    [after] = slurm.jobs(second)
    assert after["Dependency"].startswith(f"afterok:{first}")
    [one] = slurm.wait(first)
    [two] = slurm.wait(second)
    assert (one["JobState"], two["JobState"]) == ("COMPLETED", "COMPLETED")
    assert two["StartTime"] >= one["EndTime"]
    assert (project / "scripts" / f"cnt-second-{second}.out").read_text() == "made\n"
    [no] = slurm.jobs(never)
    assert no["JobState"] == "PENDING" and no["Reason"] == "DependencyNeverSatisfied"
    slurm.run("scancel", never)


def test_two_tasks_run_two_containers(project: Path, slurm: Slurm) -> None:
    script(
        project / "scripts" / "mpi.sh",
        "#!/bin/bash\n#DEP: env.img\n#SBATCH --ntasks=2\n#SBATCH -J cnt-tasks\n",
        "touch /ext3/env/x 2>/dev/null && mode=rw || mode=ro\n"
        # Both containers alive at once (a namespace's number is reused once it is gone):
        # each waits for the other's mark, 60 s at most.
        "touch up.$SLURM_PROCID\n"
        "for _ in $(seq 1200); do [ -e up.0 ] && [ -e up.1 ] && break; sleep 0.05; done\n"
        'echo "task$SLURM_PROCID=$(readlink /proc/self/ns/mnt) $IN_CONDATAINER $NTASKS $mode"\n'
        "touch done.$SLURM_PROCID\n"
        "for _ in $(seq 1200); do [ -e done.0 ] && [ -e done.1 ] && break; sleep 0.05; done\n",
    )
    job_id = submit(project, "scripts/mpi.sh")
    [info] = slurm.wait(job_id)
    out = (project / "scripts" / f"cnt-tasks-{job_id}.out").read_text()
    assert info["JobState"] == "COMPLETED", (info, out)
    seen = values(out)
    assert sorted(seen) == ["task0", "task1"], out
    namespaces = {seen[t].split()[0] for t in seen}
    assert len(namespaces) == 2, "each task has its own container"
    assert os.readlink("/proc/self/ns/mnt") not in namespaces
    assert all(seen[t].split()[1:] == ["1", "2", "ro"] for t in seen), out


def test_a_script_with_module_load_runs(project: Path, slurm: Slurm) -> None:
    script(
        project / "scripts" / "mod.sh",
        "#!/bin/bash\n#DEP: env.img\n#SBATCH -J cnt-module\nset -e\n",
        "module purge\nmodule load gcc/12.2.0 openmpi\nml samtools\ncnt-hello\n",
    )
    job_id = submit(project, "scripts/mod.sh")
    [info] = slurm.wait(job_id)
    out = (project / "scripts" / f"cnt-module-{job_id}.out").read_text()
    assert info["JobState"] == "COMPLETED", (info, out)
    assert out.count("does nothing inside the container") == 1, out
    assert out.endswith("hello from cnt-hello 1.0\n")


def test_the_dry_runs_sbatch_call_is_accepted_by_sbatch(project: Path, slurm: Slurm) -> None:
    (project / "samples.txt").write_text("a\nb 'c d'\n")
    job = script(project / "scripts" / "j.sh", "#!/bin/bash\n#DEP: env.img\n#SBATCH -c 1\n")
    args = ("-m", "1G", "-g", "tesla", "-t", "1h", "--array", "samples.txt", str(job))
    data = json.loads(ok(cnt("run", "--dry-run", "--json", *args, cwd=project)).stdout)
    assert data["slurm"]["state"] == "ready" and data["submit"] is True
    argv = [*data["sbatch"], "--test-only"]
    res = slurm.run(*argv, cwd=project, input=data["wrapper"])
    assert res.returncode == 0, res.stderr
    assert "to start at" in res.stderr


def test_submit_auto_fails_closed_where_slurm_is_broken(bare_project: Path, slurm: Slurm) -> None:
    bad = bare_project / "slurm.conf"
    bad.write_text("ClusterName=\nNot a slurm.conf\n")
    script(bare_project / "cnt-broken.sh", "#!/bin/bash\n#DEP: env.img\n#SBATCH -J cnt-broken\n")
    res = cnt("run", "cnt-broken.sh", cwd=bare_project, env={"SLURM_CONF": str(bad)})
    assert res.returncode == 1 and res.stdout == ""
    assert "SLURM is configured here but" in res.stderr
    assert "condatainer run --local" in res.stderr.split("hint:")[1]
    assert slurm.queued("cnt-broken") == []
