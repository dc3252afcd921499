"""`condatainer run --submit`: hand a job script to SLURM so that it runs inside its container.

Owns three decisions (design §5); `jobs.run.run_command` calls in here and does the rest.

**When to submit** (`wanted`).  `--submit` submits, `--local` runs here, both together are a
usage error.  Without either, config `submit: auto` submits a script that has honoured
`#SBATCH` lines when `sbatch` is on PATH; `submit: never` runs it here.  Inside a SLURM job
(`SLURM_JOB_ID`) or a container (`IN_CONDATAINER`) the script always runs here -- otherwise a job
whose script has `#SBATCH` lines would submit itself again from the node, forever -- and an
explicit `--submit` gets a one-line note saying so.  `--reexec` (the self-reexec header's call)
always runs here too: whoever ran a script that has the header asked to run it, not to queue it.

**What is checked before anything is queued** (`check`), so that a mistake costs seconds, not a
wait in the queue: every `#DEP` image exists (`jobs.load_job`, whose error lists where it looked);
the images pass the same lock probe and clean-superblock check a run does (`resolve`), so an
image held for writing is reported with the holder's PID; and a writable image (`-w`, or `#CNT
-w`) is refused for a job that starts several processes -- an array (`-a/--array`, or
`SBATCH_ARRAY_INX`) or more than one task (`-n/--ntasks`, `--ntasks-per-node`, `-N/--nodes`) --
since only one process can hold an image writable.  At job start `condatainer run` takes the
locks for real (with Apptainer: Apptainer does), which checks again.

**How the job gets into the container** (`prepare`), one of two ways:

1. *The script carries the self-reexec header* (`condatainer header --insert SCRIPT`): the
   original file is submitted, by its absolute path, as plain `sbatch SCRIPT ARGS` would be.
   sbatch reads the `#SBATCH` lines itself and keeps its own snapshot (the spool copy), so the
   script may be edited while the job waits; on the node the header runs `condatainer run
   --reexec "$0"`.  `CNT_SCRIPT=<absolute path>` is set in sbatch's environment and reaches the
   job through sbatch's default `--export=ALL`: it is how the job finds the original script
   behind the spool copy (`scontrol show job`'s `Command=` is the fallback).  It is not passed
   as `--export=ALL,CNT_SCRIPT=...`: that option splits on commas (a path may hold one) and
   would override the script's own `#SBATCH --export`.
2. *Otherwise* -- and also with `run -w`, which a header cannot carry to the job -- a small
   wrapper is submitted on sbatch's stdin (`shell/job-wrapper.sh.j2`): `#!/bin/sh`, a default
   `--job-name` (the script's file name; a stdin script would otherwise be unnamed), the script's
   own honoured `#SBATCH` lines copied verbatim, then `exec condatainer run --local [-w] SCRIPT
   ARGS...` with every word quoted by shellgen.  This works for any interpreter (a Python job
   script too), and sbatch still reads the script's own lines with its own parser and its own
   precedence (command line > `SBATCH_*` variables > script); turning the lines into sbatch
   options ourselves would get both wrong.  `condatainer` is named by the absolute path it has
   on PATH here (so `#SBATCH --export=NONE` does not lose it), else by name.  The trade-off:
   the job runs the script as the file is when the job *starts*, not as it was when submitted;
   insert the header to get sbatch's snapshot.  (Inserting the header into the submitted copy
   instead would work only for sh-family scripts and shift every line number in error messages.)

The job id is printed alone on stdout, as `sbatch --parsable` does, so
`jid=$(condatainer run --submit job.sh)` works; sbatch's warnings go to stderr.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from condatainer import runner
from condatainer.config import Config
from condatainer.display import Reporter
from condatainer.errors import CondatainerError, DirectiveError, LockError, UsageError
from condatainer.jobs import directives, header
from condatainer.jobs.script import Job
from condatainer.run import launch
from condatainer.run.plan import Plan
from condatainer.run.resolve import Request

Via = Literal["header", "wrapper"]

# sbatch options that make a job start more than one process (each would mount the images).
_ARRAY_OPTIONS = ("-a", "--array")
_COUNT_OPTIONS = ("-n", "--ntasks", "--ntasks-per-node", "-N", "--nodes")


@dataclass(frozen=True)
class Submission:
    """One sbatch call, as data: what `sbatch()` runs and `--dry-run` shows."""

    script: str  # the job script's absolute path
    via: Via
    argv: tuple[str, ...]  # sbatch and its arguments
    stdin: str | None = None  # the wrapper script, when one is submitted
    env: Mapping[str, str] = field(default_factory=dict)  # added to sbatch's environment


# --------------------------------------------------------------------------------------------
# When


def inside(environ: Mapping[str, str]) -> str | None:
    """Where we are, if that means "run here": a SLURM job or a container; else None."""
    if environ.get("SLURM_JOB_ID"):
        return f"a SLURM job (SLURM_JOB_ID={environ['SLURM_JOB_ID']})"
    if environ.get("IN_CONDATAINER"):
        return "a condatainer container"
    return None


def wanted(
    parsed: directives.Directives,
    cfg: Config,
    environ: Mapping[str, str],
    report: Reporter,
    *,
    submit: bool,
    local: bool,
    reexec: bool,
) -> bool:
    """Whether `condatainer run` should submit the script rather than run it here."""
    if submit and local:
        raise UsageError("--submit and --local contradict each other", hint="give one of them")
    if local or reexec:
        return False
    where = inside(environ)
    if where is not None:
        if submit:
            report.note(f"inside {where}: running the script here, not submitting")
        return False
    if submit:
        return True
    auto = cfg.submit == "auto" and parsed.scheduler == "slurm"
    return auto and runner.which("sbatch") is not None


# --------------------------------------------------------------------------------------------
# Checks


def _words(directive: str) -> list[str]:
    try:
        return shlex.split(directive)
    except ValueError:  # an unbalanced quote: sbatch's own parser is cruder anyway
        return directive.split()


def _option_values(words: Sequence[str], names: Sequence[str]) -> list[str]:
    """Values of the options `names` in `words`: `-n 4`, `-n4`, `--ntasks=4`, `--ntasks 4`."""
    values: list[str] = []
    for i, word in enumerate(words):
        for name in names:
            nxt = words[i + 1] if i + 1 < len(words) else ""
            if word == name:
                values.append(nxt)
            elif name.startswith("--") and word.startswith(name + "="):
                values.append(word[len(name) + 1 :])
            elif not name.startswith("--") and word.startswith(name) and len(word) > len(name):
                values.append(word[len(name) :])
    return values


def _at_least(value: str) -> int:
    """The smallest count a value such as `4`, `2-4` or `3,5` asks for (0 if unreadable)."""
    match = re.match(r"\s*(\d+)", value)
    return int(match.group(1)) if match else 0


def parallelism(header: directives.Directives, environ: Mapping[str, str]) -> str | None:
    """Why the job would start several processes (the directive as written), or None."""
    for directive in header.directives if header.scheduler == "slurm" else ():
        words = _words(directive)
        if _option_values(words, _ARRAY_OPTIONS) or any(
            _at_least(value) > 1 for value in _option_values(words, _COUNT_OPTIONS)
        ):
            return f"#SBATCH {directive}"
    if environ.get("SBATCH_ARRAY_INX"):
        return f"SBATCH_ARRAY_INX={environ['SBATCH_ARRAY_INX']}"
    return None


def check(job: Job, plan: Plan, environ: Mapping[str, str], *, cli_writable: bool) -> None:
    """Refuse a writable image for a job that starts several processes.

    (Missing `#DEP` images were refused while `jobs` loaded the script; locks and unclean images
    while `resolve` planned the run.)
    """
    rw = plan.writable
    why = parallelism(job.header, environ) if rw is not None else None
    if rw is None or why is None:
        return
    raise DirectiveError(
        f"{job.origin}: not submitted: {rw.path} would be mounted writable"
        f" ({'-w' if cli_writable else '#CNT -w'}) by each process of a job that starts several"
        f" ({why}), and only one process at a time can write an image",
        hint="use the image read-only in this job (drop "
        + ("-w" if cli_writable else "-w from #CNT")
        + "), or do the writing in a single-task job first",
    )


# --------------------------------------------------------------------------------------------
# How


def sbatch_lines(text: str) -> list[str]:
    """The script's `#SBATCH` lines that sbatch honours, verbatim (column 0, header block)."""
    lines = [line[:-1] if line.endswith("\r") else line for line in text.split("\n")]
    end = directives.header_end(lines)
    return [
        line
        for line in lines[:end]
        if line.startswith("#SBATCH") and (len(line) == 7 or line[7] in " \t\r\v\f")
    ]


def job_name(script: str) -> str:
    """A default job name: the script's file name, reduced to characters that need no quoting."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", os.path.basename(script)) or "job"


def wrapper(
    text: str, script: str, args: Sequence[str], *, writable: bool, condatainer: str
) -> str:
    """The batch script submitted on stdin for a job script without the header."""
    from condatainer import shellgen

    return shellgen.render(
        "job-wrapper",
        "sh",
        job_name=job_name(script),
        # Reviewed Raw: each is one line (split on LF) starting with "#SBATCH" at column 0, so
        # sh reads it as a comment; sbatch must read it exactly as the user wrote it.
        sbatch_lines=[shellgen.Raw(line) for line in sbatch_lines(text) if "\0" not in line],
        condatainer=condatainer,
        run_args=["--local", *(["-w"] if writable else []), script, *args],
    )


def prepare(job: Job, args: Sequence[str], *, cli_writable: bool) -> Submission:
    """The sbatch call for `job` (the module docstring says which way and why)."""
    script = str(job.origin)
    text = job.script.read_text(encoding="utf-8", errors="surrogateescape")
    if header.present(text) and not cli_writable:
        return Submission(
            script=script,
            via="header",
            argv=("sbatch", "--parsable", script, *args),
            env={"CNT_SCRIPT": script},
        )
    found = runner.which("condatainer")
    program = os.path.abspath(found) if found else "condatainer"
    return Submission(
        script=script,
        via="wrapper",
        argv=("sbatch", "--parsable"),
        stdin=wrapper(text, script, args, writable=cli_writable, condatainer=program),
    )


def sbatch(
    sub: Submission, environ: Mapping[str, str], report: Reporter, *, auto: bool = False
) -> str:
    """Run sbatch; return the job id.  A refusal becomes a CondatainerError with sbatch's words;
    sbatch's warnings go to `report`.

    `auto`: the submission was config `submit: auto`'s idea, not `--submit`; the hint then also
    says how to run the script here instead.
    """
    runner.require("sbatch")
    res = runner.run(sub.argv, input=sub.stdin, env={**environ, **sub.env})
    if not res.ok:
        said = res.stderr.strip() or f"exit status {res.returncode}"
        hint = f"check the #SBATCH lines of {sub.script} and the cluster (sinfo)"
        if auto:
            hint = (
                f"it has #SBATCH lines, so it was submitted (config submit: auto); to run it"
                f" here: condatainer run --local {shlex.quote(sub.script)}, or for good:"
                f" condatainer config set submit never"
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


def plan(
    job: Job,
    req: Request,
    cfg: Config,
    environ: Mapping[str, str],
    *,
    cli_writable: bool,
    dry_run: bool,
) -> Plan:
    """The Plan the job's processes will run, checked for submission (see `check`)."""
    if dry_run:
        req = replace(req, check_locks=False)
    try:
        planned = launch.plan_for(req, cfg, environ)
    except LockError as err:
        raise LockError(f"{job.origin}: not submitted: {err.message}", hint=err.hint) from None
    check(job, planned, environ, cli_writable=cli_writable)
    return planned


def dry_run_report(sub: Submission) -> dict[str, object]:
    """What `run --submit --dry-run --json` prints."""
    return {
        "submit": True,
        "script": sub.script,
        "via": sub.via,
        "sbatch": list(sub.argv),
        "env": dict(sub.env),
        "stdin": sub.stdin,
    }


def dry_run_lines(sub: Submission) -> list[str]:
    """What `run --submit --dry-run` prints."""
    lines = [
        f"{'submit':10} {shlex.join(sub.argv)}" + (" < wrapper below" if sub.stdin else ""),
        f"{'via':10} {sub.via}",
    ]
    lines += [f"{'env':10} {key}={value}" for key, value in sub.env.items()]
    if sub.stdin:
        lines += sub.stdin.rstrip("\n").split("\n")
    return lines
