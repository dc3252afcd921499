"""What a job script finds inside its container besides the env: the resource variables and
the `module`/`ml` stubs.

**Resource variables** (CondaTainer's names), set in the container of every `condatainer run`:
`NCPUS` (CPUs per task), `NTASKS`, `NNODES`, `NTASKS_PER_NODE`, `MEM` (MiB per task) and
`MEM_GB` (whole GiB, rounded down).  Each comes from the first of: what the scheduler gave the
job (`SLURM_CPUS_PER_TASK`, `SLURM_NTASKS`, `SLURM_MEM_PER_CPU`, `SLURM_MEM_PER_NODE`, ...; PBS's
`NCPUS`, LSF's `LSB_DJOB_NUMPROC`), the run's own flags (`-c`, `-m`), the script's `#SBATCH`
lines, and this machine (the CPUs this process may use, all of its memory).  A `--env` or
`#CNT --env` of the same name wins: they are the user's.

**`module` and `ml`** are no-ops inside the container: a job script written for the cluster
loads modules from the site's tree, which the container does not have (and the env's programs
are on PATH already).  Two tiny programs, rendered from `shell/module-stub.sh.j2`, live in a
directory of condatainer's cache named after their content; `resolve` binds it read-only and
puts it last on the container's PATH, so a real `module` in the base image still wins.  The
first call in a run says once, on stderr, that it did nothing (`CNT_MODULE_NOTICE`, see the
template).
"""

from __future__ import annotations

import hashlib
import math
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

from condatainer import atomic, config, shellgen
from condatainer.errors import CondatainerError, UsageError
from condatainer.jobs import sbatchopts
from condatainer.jobs.control import JobControl, parse_mem

STUBS = ("module", "ml")


def _int(value: str | None) -> int | None:
    """The leading count of a scheduler value (`4`, `2(x3)`), or None."""
    digits = ""
    for char in (value or "").strip():
        if not char.isdigit():
            break
        digits += char
    return int(digits) if digits else None


def _machine_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def _machine_mem_mb() -> int:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2**20
    except (ValueError, OSError):
        return 0


def resources(
    environ: Mapping[str, str], own: sbatchopts.Reading, ctl: JobControl
) -> dict[str, str]:
    """The resource variables for a run here (see the module docstring)."""
    in_slurm = bool(environ.get("SLURM_JOB_ID"))

    def slurm(name: str) -> int | None:
        return _int(environ.get(name)) if in_slurm else None

    def script(*names: str) -> int | None:
        found = own.last(*names)
        return _int(found.value) if found is not None else None

    ntasks = slurm("SLURM_NTASKS") or script("ntasks") or 1
    nnodes = slurm("SLURM_JOB_NUM_NODES") or script("nodes") or 1
    per_node = (
        slurm("SLURM_NTASKS_PER_NODE")
        or script("ntasks-per-node")
        or max(1, math.ceil(ntasks / nnodes))
    )
    on_node = slurm("SLURM_CPUS_ON_NODE")
    ncpus = (
        slurm("SLURM_CPUS_PER_TASK")
        or (_int(environ.get("NCPUS")) if environ.get("PBS_JOBID") else None)
        or (_int(environ.get("LSB_DJOB_NUMPROC")) if environ.get("LSB_JOBID") else None)
        or ctl.cpus
        or script("cpus-per-task")
        or (max(1, on_node // per_node) if on_node else None)
        or _machine_cpus()
    )
    mem_per_cpu = slurm("SLURM_MEM_PER_CPU")
    mem_per_node = slurm("SLURM_MEM_PER_NODE")
    if mem_per_cpu:
        mem = mem_per_cpu * ncpus
    elif mem_per_node:
        mem = mem_per_node // per_node
    elif ctl.mem_mb:
        mem = ctl.mem_mb // per_node
    else:
        mem = _script_mem(own, ncpus, per_node) or _machine_mem_mb() // per_node
    return {
        "NCPUS": str(ncpus),
        "NTASKS": str(ntasks),
        "NNODES": str(nnodes),
        "NTASKS_PER_NODE": str(per_node),
        "MEM": str(mem),
        "MEM_GB": str(mem // 1024),
    }


def _script_mem(own: sbatchopts.Reading, ncpus: int, per_node: int) -> int | None:
    found = own.last("mem", "mem-per-cpu")
    if found is None or not found.value:
        return None
    try:
        mb = parse_mem(found.value)
    except UsageError:  # a value sbatch itself will refuse: nothing to go by
        return None
    return mb * ncpus if found.name == "mem-per-cpu" else mb // per_node


def stub_dir(environ: Mapping[str, str], *, write: bool = True) -> str:
    """The directory holding the `module` and `ml` stubs, written if missing; its path.

    `write=False` (dry runs) only says where it is, or would be.
    """
    texts = {name: shellgen.render("module-stub", "sh", name=name) for name in STUBS}
    digest = hashlib.sha256("\0".join(texts[n] for n in STUBS).encode()).hexdigest()[:16]
    bases = (config.paths(environ)["cache"], Path(tempfile.gettempdir()) / "condatainer")
    if not write:
        return str(bases[0] / "job-bin" / digest)
    for base in bases:
        where = base / "job-bin" / digest
        try:
            where.mkdir(parents=True, exist_ok=True)
            for name, text in texts.items():
                path = where / name
                if not (path.is_file() and path.read_text() == text):
                    atomic.replace(path, text, 0o755)
            return str(where)
        except OSError:
            continue  # a read-only cache (a site's image, a full quota): the temp dir
    raise CondatainerError(
        f"cannot write the module and ml stubs under {bases[0]} or {bases[1]}",
        hint=f"check that {bases[0]} is writable",
    )
