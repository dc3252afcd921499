"""`condatainer run`: run a job script in its container, here or through SLURM.

The script becomes a Request (`script.load_job`, `script.request`); `submit.wanted` decides
whether it is submitted (`--submit`, or config `submit: auto` for a script with `#SBATCH`
lines) or run here; `--reexec` (what the self-reexec header calls) always runs here.  Dry runs
report what would happen instead.  Nothing here prints: the outcome comes back as data, and
notices go to the caller's `Reporter`.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace

from condatainer import config
from condatainer.display import Reporter
from condatainer.jobs import script, submit
from condatainer.run import launch


@dataclass(frozen=True)
class Outcome:
    """What `condatainer run` did: the exit status, and what to print (dry runs, a job id)."""

    status: int = 0
    report: dict[str, object] | None = None  # a dry run, as JSON data
    lines: tuple[str, ...] = field(default=())  # a dry run, as text
    job_id: str | None = None


def run_command(
    script_path: str,
    args: Sequence[str],
    report: Reporter,
    *,
    writable: bool,
    submit_flag: bool,
    local: bool,
    dry_run: bool,
    reexec: bool,
) -> Outcome:
    """Run, submit, or describe (dry_run) the job script at `script_path`."""
    environ = os.environ
    job = script.load_job(script_path, environ, writable=writable, reexec=reexec)
    cfg = config.load(environ)
    req = script.request(job, args, environ)
    if submit.wanted(
        job.header, cfg, environ, report, submit=submit_flag, local=local, reexec=reexec
    ):
        planned = submit.plan(job, req, cfg, environ, cli_writable=writable, dry_run=dry_run)
        sub = submit.prepare(job, args, cli_writable=writable)
        if dry_run:
            return Outcome(
                report=submit.dry_run_report(sub), lines=tuple(submit.dry_run_lines(sub))
            )
        # The job will not fetch the default base (compute nodes often have no network): here.
        launch.fetch_base(planned, cfg, report.note)
        return Outcome(job_id=submit.sbatch(sub, environ, report, auto=not submit_flag))
    if dry_run:
        plan = launch.plan_for(replace(req, check_locks=False), cfg)
        data: dict[str, object] = {
            "script": str(job.script),
            "origin": str(job.origin),
            "deps": list(job.header.deps),
            "images": list(job.images),
            "scheduler": job.header.scheduler,
            "directives": list(job.header.directives),
            "cnt": [list(w) for w in job.header.cnt_flags],
            "plan": {**asdict(plan), "env": dict(plan.env)},
        }
        lines = [f"{key:10} {value}" for key, value in data.items() if key != "plan"]
        lines.append(f"{'command':10} {shlex.join(plan.command)}")
        lines += [f"{'overlay':10} {o.path} ({o.mode})" for o in plan.overlays]
        return Outcome(report=data, lines=tuple(lines))
    plan = launch.plan_for(req, cfg, notify=report.note)
    return Outcome(status=launch.execute(plan, cfg, report.note))
