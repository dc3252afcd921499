"""`condatainer run` and SLURM: whether a script is submitted, what is checked first, and the
sbatch call that gets the job into its container.

Owns three decisions (design §5); `jobs.run.run_command` calls in here and does the rest.

**When to submit** (`decide`).  `--submit` submits, `--local` runs here, both together are a
usage error.  Inside a SLURM job (`SLURM_JOB_ID`) or a container (`IN_CONDATAINER`) the script
always runs here -- otherwise a job whose script has `#SBATCH` lines would submit itself again
from the node, forever -- and `--submit` gets a one-line note saying so.  `--reexec` (the
self-reexec header's call) always runs here too: whoever ran a script that has the header asked
to run it, not to queue it.  Otherwise config `submit: auto` submits a script that has honoured
`#SBATCH` lines or was given job flags (`-c`, `--array`, `--afterok`, ...), and **fails
closed**: it runs the script here (with a one-line note) only where SLURM is absent
(`scheduler.probe`: no sbatch, or no SLURM configuration at all); where SLURM is configured but
sbatch does not work, it is an error with the `--local` hint -- a 64-CPU job must never quietly
run on a login node.  `submit: never` runs everything here.

**What is checked before anything is queued** (`check`), so that a mistake costs seconds, not a
wait in the queue: every `#DEP` image exists (`script.require_deps`, listing where it looked);
the images pass the same lock probe and clean-superblock check a run does (`resolve`), so an
image held for writing is reported with the holder's PID; and a writable image (`-w`, or `#CNT
-w`) is refused for a job that starts several processes -- an array (`--array`, `#SBATCH
-a/--array`, or `SBATCH_ARRAY_INX`) or more than one task (`-n/--ntasks`, `--ntasks-per-node`,
`-N/--nodes`) -- since only one process can hold an image writable.  At job start
`condatainer run` takes the locks for real (with Apptainer: Apptainer does), which checks again.

**How the job gets into the container** (`prepare`), one of two ways.  Either way the job flags
are sbatch options on its command line (`control.sbatch_options`), so they win over the
script's own lines, and the job id is printed alone on stdout, as `sbatch --parsable` does
(`jid=$(condatainer run job.sh)`); sbatch's warnings go to stderr.

1. *The script carries the self-reexec header* (`condatainer header --insert SCRIPT`): the
   original file is submitted, by its absolute path, as plain `sbatch SCRIPT ARGS` would be.
   sbatch reads the `#SBATCH` lines itself and keeps its own snapshot (the spool copy), so the
   script may be edited while the job waits; on the node the header runs `condatainer run
   --reexec "$0"`.  `CNT_SCRIPT=<absolute path>` is set in sbatch's environment and reaches the
   job through sbatch's default `--export=ALL`: it is how the job finds the original script
   behind the spool copy (`scontrol show job`'s `Command=` is the fallback).  It is not passed
   as `--export=ALL,CNT_SCRIPT=...`: that option splits on commas (a path may hold one) and
   would override the script's own `#SBATCH --export`.
2. *Otherwise* -- and also with `-w`, container options or `--array`, which a header cannot
   carry to the job -- a small wrapper is submitted on sbatch's stdin
   (`shell/job-wrapper.sh.j2`): `#!/bin/sh`, a default `--job-name` (the script's file name; a
   stdin script would otherwise be unnamed), the script's own honoured `#SBATCH` lines copied
   verbatim, then `exec condatainer run --local [-w] [container options] SCRIPT ARGS...` with
   every word quoted by shellgen; for an array, each task's words first become the positional
   parameters, picked by `SLURM_ARRAY_TASK_ID`.  This works for any interpreter (a Python job
   script too), and sbatch still reads the script's own lines with its own parser and its own
   precedence (command line > `SBATCH_*` variables > script).  `condatainer` is named by the
   absolute path it has on PATH here (so `#SBATCH --export=NONE` does not lose it), else by
   name.  The trade-off: the job runs the script as the file is when the job *starts*, not as
   it was when submitted; insert the header to get sbatch's snapshot.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from condatainer import runner
from condatainer.config import Config
from condatainer.display import Reporter
from condatainer.errors import CondatainerError, DirectiveError, UsageError
from condatainer.jobs import control, directives, header, sbatchopts, scheduler
from condatainer.jobs.script import Job
from condatainer.run import options
from condatainer.run.plan import Plan

Via = Literal["header", "wrapper"]


@dataclass(frozen=True)
class Submission:
    """One sbatch call, as data: what `sbatch()` runs and `--dry-run` shows."""

    script: str  # the job script's absolute path
    via: Via
    argv: tuple[str, ...]  # sbatch and its arguments
    stdin: str | None = None  # the wrapper script, when one is submitted
    env: Mapping[str, str] = field(default_factory=dict)  # added to sbatch's environment
    mkdirs: tuple[str, ...] = ()  # log directories to create first


@dataclass(frozen=True)
class Decision:
    """Whether to submit, why (one line), and what the SLURM probe found when it was asked."""

    submit: bool
    why: str
    slurm: scheduler.Slurm | None = None
    note: str | None = None  # tell the user (auto fell back to running here)
    error: CondatainerError | None = None  # it would submit, but cannot


# --------------------------------------------------------------------------------------------
# When


def inside(environ: Mapping[str, str]) -> str | None:
    """Where we are, if that means "run here": a SLURM job or a container; else None."""
    if environ.get("SLURM_JOB_ID"):
        return f"a SLURM job (SLURM_JOB_ID={environ['SLURM_JOB_ID']})"
    if environ.get("IN_CONDATAINER"):
        return "a condatainer container"
    return None


def decide(
    parsed: directives.Directives,
    ctl: control.JobControl,
    cfg: Config,
    environ: Mapping[str, str],
    *,
    script: str,
    submit: bool,
    local: bool,
    reexec: bool,
) -> Decision:
    """Whether `condatainer run` submits the script (see the module docstring)."""
    if submit and local:
        raise UsageError("--submit and --local contradict each other", hint="give one of them")
    if local:
        return Decision(False, "--local: runs here")
    if reexec:
        return Decision(False, "the self-reexec header runs the script here")
    where = inside(environ)
    if where is not None:
        note = f"inside {where}: running the script here, not submitting" if submit else None
        return Decision(False, f"inside {where}: runs here, never submitted again", note=note)
    wants = parsed.scheduler == "slurm" or bool(ctl.given)
    if not submit and cfg.submit == "never":
        return Decision(False, "config submit: never: runs here")
    if not submit and not wants:
        return Decision(False, "no #SBATCH lines and no job flags: runs here")
    found = scheduler.probe(environ)
    because = "--submit" if submit else _auto_reason(parsed, ctl)
    if found.state == "ready":
        return Decision(True, f"{because}: submitted to SLURM", found)
    here = f"condatainer run --local {shlex.quote(script)}"
    if found.state == "broken":
        err = CondatainerError(
            f"{script}: not submitted: SLURM is configured here but {found.detail}",
            hint=f"fix SLURM (condatainer doctor), or run it here: {here}",
        )
        return Decision(True, f"{because}: would be submitted", found, error=err)
    if submit:
        err = CondatainerError(
            f"{script}: --submit: SLURM is not available here ({found.detail})",
            hint=f"run it here: {here}",
        )
        return Decision(True, "--submit: would be submitted", found, error=err)
    return Decision(
        False,
        f"{because}, but SLURM is absent here: runs here",
        found,
        note=f"SLURM is absent here ({found.detail}): running {script} here",
    )


def _auto_reason(parsed: directives.Directives, ctl: control.JobControl) -> str:
    if parsed.scheduler == "slurm":
        return "#SBATCH lines (config submit: auto)"
    return f"job flags {' '.join(ctl.given)} (config submit: auto)"


# --------------------------------------------------------------------------------------------
# Checks


def parallelism(
    own: sbatchopts.Reading,
    parsed: directives.Directives,
    ctl: control.JobControl,
    environ: Mapping[str, str],
) -> str | None:
    """Why the job would start several processes (as written), or None."""
    if ctl.array is not None:
        return f"--array {ctl.array.file}"
    for option in own.options:
        several = option.name == "array" or (
            option.name in ("ntasks", "ntasks-per-node", "nodes") and _at_least(option.value) > 1
        )
        if several:
            line = next((d for d in parsed.directives if d.line == option.line), None)
            return f"#SBATCH {line.text}" if line is not None else option.spelled
    if environ.get("SBATCH_ARRAY_INX"):
        return f"SBATCH_ARRAY_INX={environ['SBATCH_ARRAY_INX']}"
    return None


def _at_least(value: str | None) -> int:
    """The smallest count a value such as `4`, `2-4` or `3,5` asks for (0 if unreadable)."""
    match = re.match(r"\s*(\d+)", value or "")
    return int(match.group(1)) if match else 0


def check(job: Job, plan: Plan, why: str | None, *, cli_writable: bool) -> None:
    """Refuse a writable image for a job that starts several processes (`why`)."""
    rw = plan.writable
    if rw is None or why is None:
        return
    flag = "-w" if cli_writable else "#CNT -w"
    raise DirectiveError(
        f"{job.origin}: not submitted: {rw.path} would be mounted writable ({flag}) by each"
        f" process of a job that starts several ({why}), and only one process at a time can"
        " write an image",
        hint="use the image read-only in this job (drop "
        + ("-w" if cli_writable else "-w from #CNT")
        + "), or do the writing in a single-task job first",
    )


# --------------------------------------------------------------------------------------------
# How


def sbatch_lines(text: str, parsed: directives.Directives) -> list[str]:
    """The script's `#SBATCH` lines that sbatch honours, verbatim."""
    lines = directives.lines_of(text)
    return [lines[d.line - 1] for d in parsed.directives] if parsed.scheduler == "slurm" else []


def job_name(script: str) -> str:
    """A default job name: the script's file name, reduced to characters that need no quoting."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", os.path.basename(script)) or "job"


def condatainer_program() -> str:
    """How a job starts condatainer: the absolute path it has on PATH here, else its name."""
    found = runner.which("condatainer")
    return os.path.abspath(found) if found else "condatainer"


def wrapper(
    text: str,
    parsed: directives.Directives,
    script: str,
    args: Sequence[str],
    *,
    run_flags: Sequence[str],
    condatainer: str,
    tasks: Sequence[Sequence[str]] = (),
) -> str:
    """The batch script submitted on stdin for a job script without the header."""
    from condatainer import shellgen

    return shellgen.render(
        "job-wrapper",
        "sh",
        job_name=job_name(script),
        # Reviewed Raw: each is one line (split on LF) starting with "#SBATCH" or "#SLURM" at
        # column 0, so sh reads it as a comment; sbatch must read it exactly as the user wrote.
        sbatch_lines=[
            shellgen.Raw(line) for line in sbatch_lines(text, parsed) if "\0" not in line
        ],
        condatainer=condatainer,
        run_args=["--local", *run_flags, script, *args],
        tasks=[list(task) for task in tasks],
    )


def prepare(
    job: Job,
    args: Sequence[str],
    ctl: control.JobControl,
    own: sbatchopts.Reading,
    *,
    cli_writable: bool,
    cli_container: Mapping[str, object],
    logs_dir: str | None,
    environ: Mapping[str, str],
) -> Submission:
    """The sbatch call for `job` (the module docstring says which way and why)."""
    script = str(job.origin)
    logs = os.path.abspath(os.path.expanduser(logs_dir)) if logs_dir else str(job.origin.parent)
    opts = control.sbatch_options(ctl, own, script=script, logs_dir=logs, environ=environ)
    mkdirs = _log_dirs(opts, own)
    container_words = options.to_words(dict(cli_container))
    if header.present(job.text) and not cli_writable and not container_words and not ctl.array:
        return Submission(
            script=script,
            via="header",
            argv=("sbatch", "--parsable", *opts, script, *args),
            env={"CNT_SCRIPT": script},
            mkdirs=mkdirs,
        )
    run_flags = [*(["-w"] if cli_writable else []), *container_words]
    return Submission(
        script=script,
        via="wrapper",
        argv=("sbatch", "--parsable", *opts),
        stdin=wrapper(
            job.text,
            job.header,
            script,
            args,
            run_flags=run_flags,
            condatainer=condatainer_program(),
            tasks=ctl.array.tasks if ctl.array else (),
        ),
        mkdirs=mkdirs,
    )


def _log_dirs(opts: Sequence[str], own: sbatchopts.Reading) -> tuple[str, ...]:
    """Directories of the job's log files (ours, else the script's) that a `%` does not name."""
    ours = sbatchopts.read(opts)
    chdir = own.last("chdir")
    base = chdir.value if chdir is not None and chdir.value else os.getcwd()
    found: list[str] = []
    for name in ("output", "error"):
        option = ours.last(name) or own.last(name)
        if option is None or not option.value:
            continue
        directory = os.path.dirname(os.path.join(base, os.path.expanduser(option.value)))
        if "%" not in directory and directory not in found:
            found.append(directory)
    return tuple(found)


def sbatch(
    sub: Submission, environ: Mapping[str, str], report: Reporter, *, auto: bool = False
) -> str:
    """Run sbatch; return the job id.  A refusal becomes a CondatainerError with sbatch's words;
    sbatch's warnings go to `report`.

    `auto`: the submission was config `submit: auto`'s idea, not `--submit`; the hint then also
    says how to run the script here instead.
    """
    runner.require("sbatch")
    for directory in sub.mkdirs:
        try:
            os.makedirs(directory, exist_ok=True)
        except OSError as exc:
            raise CondatainerError(
                f"{sub.script}: not submitted: cannot create the log directory {directory}:"
                f" {exc.strerror}",
                hint="give a writable -o/-e, or set logs_dir: condatainer config set logs_dir DIR",
            ) from None
    res = runner.run(sub.argv, input=sub.stdin, env={**environ, **sub.env})
    if not res.ok:
        said = res.stderr.strip() or f"exit status {res.returncode}"
        hint = f"check the #SBATCH lines of {sub.script} and the cluster (sinfo)"
        if auto:
            hint = (
                f"it has #SBATCH lines or job flags, so it was submitted (config submit: auto);"
                f" to run it here: condatainer run --local {shlex.quote(sub.script)}"
            )
        raise CondatainerError(f"sbatch refused {sub.script}: {said}", hint=hint)
    if res.stderr.strip():
        report.step(res.stderr.rstrip("\n"))  # sbatch's warnings, as it wrote them
    job_id = res.stdout.strip().split(";", 1)[0]
    if not job_id.isdigit():
        raise CondatainerError(
            f"sbatch took {sub.script} but printed no job id (stdout: {res.stdout.strip()!r})",
            hint="look for it with: squeue --me",
        )
    return job_id
