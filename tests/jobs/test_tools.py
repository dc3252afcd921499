"""tools: the resource variables a job sees, and the `module`/`ml` stubs, run in real shells
(the e2e run is in tests/run/test_job_tools.py; on a real cluster in tests/slurm)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from condatainer.jobs import control, directives, tools


def own(lines: str = "") -> object:
    return control.script_options(directives.parse(f"#!/bin/sh\n{lines}\necho\n", "j.sh"))


def res(env: dict[str, str], lines: str = "", **flags: str) -> dict[str, str]:
    return tools.resources(env, own(lines), control.from_flags(**flags))  # type: ignore[arg-type]


def test_in_a_slurm_job_the_scheduler_wins() -> None:
    # What slurmd gives a batch step (tests/slurm shows the real values): cpus-per-task 2,
    # 11449 MB per CPU, one task.
    env = {
        "SLURM_JOB_ID": "6",
        "SLURM_CPUS_PER_TASK": "2",
        "SLURM_CPUS_ON_NODE": "2",
        "SLURM_MEM_PER_CPU": "11449",
        "SLURM_NTASKS": "1",
        "SLURM_JOB_NUM_NODES": "1",
    }
    assert res(env, "#SBATCH -c 8 --mem=1G", cpu="16") == {
        "NCPUS": "2",
        "NTASKS": "1",
        "NNODES": "1",
        "NTASKS_PER_NODE": "1",
        "MEM": "22898",
        "MEM_GB": "22",
    }
    per_node = {
        "SLURM_JOB_ID": "7",
        "SLURM_CPUS_ON_NODE": "8",
        "SLURM_MEM_PER_NODE": "16384",
        "SLURM_NTASKS": "4",
        "SLURM_NTASKS_PER_NODE": "2",
        "SLURM_JOB_NUM_NODES": "2",
    }
    got = res(per_node)
    assert (got["NCPUS"], got["NTASKS_PER_NODE"], got["MEM"], got["MEM_GB"]) == (
        "4",
        "2",
        "8192",
        "8",
    )


def test_outside_a_job_flags_then_script_then_machine() -> None:
    assert res({}, "#SBATCH -c 8 --mem=4G", cpu="3")["NCPUS"] == "3"
    got = res({}, "#SBATCH -c 8 --mem=4G")
    assert (got["NCPUS"], got["MEM"], got["MEM_GB"]) == ("8", "4096", "4")
    assert res({}, "#SBATCH -c 2 --mem-per-cpu=1G")["MEM"] == "2048"
    assert res({}, mem="6G")["MEM_GB"] == "6"
    machine = res({})
    assert machine["NCPUS"] == str(len(os.sched_getaffinity(0)))
    assert int(machine["MEM"]) > 0 and machine["NTASKS"] == "1"
    # SLURM_* left in the environment outside a job (no SLURM_JOB_ID) count for nothing.
    assert res({"SLURM_CPUS_PER_TASK": "64"}, cpu="2")["NCPUS"] == "2"


def test_pbs_and_lsf_cpus() -> None:
    assert res({"PBS_JOBID": "1.pbs", "NCPUS": "12"})["NCPUS"] == "12"
    assert res({"LSB_JOBID": "9", "LSB_DJOB_NUMPROC": "6"})["NCPUS"] == "6"


def test_stub_dir_is_written_once_and_named_by_content(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    where = Path(tools.stub_dir(env, write=False))
    assert not where.exists()  # a dry run writes nothing
    assert tools.stub_dir(env) == str(where)
    assert sorted(p.name for p in where.iterdir()) == ["ml", "module"]
    assert all(os.access(where / n, os.X_OK) for n in tools.STUBS)
    mtime = (where / "module").stat().st_mtime_ns
    assert tools.stub_dir(env) == str(where)
    assert (where / "module").stat().st_mtime_ns == mtime


@pytest.mark.parametrize("shell", ["dash", "bash", "zsh"])
def test_module_and_ml_are_no_ops_with_one_note(
    tmp_path: Path, need: Callable[[str], str], shell: str
) -> None:
    stubs = tools.stub_dir({"HOME": str(tmp_path), "XDG_CACHE_HOME": str(tmp_path / "c")})
    script = (
        "set -e\nmodule load gcc/12 'x y'\nml purge\nout=$(module list)\n"
        'module avail; ml; echo "done:$out:"\n'
    )
    marker = tmp_path / "noted"
    env = {"PATH": f"/usr/bin:/bin:{stubs}", "CNT_MODULE_NOTICE": str(marker)}
    res = subprocess.run(
        [need(shell), "-c", script], env=env, capture_output=True, text=True, check=False
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout == "done::\n"
    assert res.stderr.count("condatainer: note:") == 1, res.stderr
    assert "'module load gcc/12 x y' does nothing inside the container" in res.stderr
    assert marker.is_dir()
    # Without the variable (not started by `condatainer run`) it says so each time.
    del env["CNT_MODULE_NOTICE"]
    res = subprocess.run(
        [need(shell), "-c", "module load a; ml b"], env=env, capture_output=True, text=True
    )
    assert res.returncode == 0 and res.stderr.count("condatainer: note:") == 2


def test_stub_passes_shellcheck(tmp_path: Path, need: Callable[[str], str]) -> None:
    stubs = Path(tools.stub_dir({"HOME": str(tmp_path), "XDG_CACHE_HOME": str(tmp_path / "c")}))
    for name in tools.STUBS:
        lint = subprocess.run(
            [need("shellcheck"), str(stubs / name)], capture_output=True, text=True, check=False
        )
        assert lint.returncode == 0, lint.stdout
