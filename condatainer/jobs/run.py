"""`condatainer run`: run a job script in its container, here or through SLURM, or say what
would happen (`--dry-run`).

The script becomes a `script.Job`; `submit.decide` says whether it is submitted; the job flags
(`control`) become sbatch options or, for a run here, resource variables (`tools.resources`).
A run here mounts the `#DEP` images read-only (writable with `-w`) and runs the script with its
own interpreter.  Inside a SLURM job step that has several tasks (`SLURM_NTASKS` > 1, no
`SLURM_STEP_ID` yet), it starts one container per task instead: the batch step decides the Plan
once, refuses a writable image (only one process can write it), and `srun` runs `condatainer
_task PLAN` in each task, which carries that Plan out.  `--reexec` (what the self-reexec header
calls) always runs here.

**Dry runs never fail for what they report.**  `--dry-run` goes through the same steps, but a
step that would stop the run (a missing `#DEP`, a locked image, a broken SLURM, a bad `#CNT`)
is recorded among `problems` and the report goes on.  It returns status 0 when the run would
start, 1 when it would not; the report has the same keys whether it would submit or run here
(`report.py` lists them and their types).  Only what cannot be reported on at all -- a script
that is not there, a bad flag value -- is an error, as for a real run.

Nothing here prints: the outcome comes back as data, and notices go to the caller's `Reporter`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

from condatainer import config, runner
from condatainer.display import Reporter
from condatainer.errors import CondatainerError, DirectiveError, LockError, UsageError
from condatainer.jobs import control, report, sbatchopts, scheduler, script, submit, tools
from condatainer.run import launch
from condatainer.run.plan import Plan


@dataclass(frozen=True)
class Outcome:
    """What `condatainer run` did: the exit status, and what to print (dry runs, a job id)."""

    status: int = 0
    report: dict[str, object] | None = None  # a dry run, as JSON data
    lines: tuple[str, ...] = field(default=())  # a dry run, as text
    job_id: str | None = None


@dataclass(frozen=True)
class RunFlags:
    """`condatainer run`'s flags, as plain values."""

    writable: bool = False
    submit: bool = False
    local: bool = False
    dry_run: bool = False
    reexec: bool = False
    control: control.JobControl = field(default_factory=control.JobControl)
    container: Mapping[str, object] = field(default_factory=dict)  # dest -> value


class _Steps:
    """Runs the steps of a run; in a dry run what would stop it becomes a problem instead."""

    def __init__(self, dry_run: bool) -> None:
        self.dry_run = dry_run
        self.problems: list[str] = []

    @contextmanager
    def step(self, *, usage: bool = False) -> Iterator[None]:
        """A CondatainerError raised inside is a problem of a dry run -- a UsageError (a bad
        command line, a script that is not there: nothing to report on) only with `usage`."""
        try:
            yield
        except UsageError as err:
            if not usage:
                raise
            self.fail(err)
        except CondatainerError as err:
            self.fail(err)

    def fail(self, err: CondatainerError) -> None:
        """Stop the run with `err`; a dry run records it and goes on."""
        if not self.dry_run:
            raise err
        self.problems.append(err.message)


@dataclass
class _Run:
    """One `condatainer run`: what it was given and what it has found out so far."""

    job: script.Job
    args: Sequence[str]
    flags: RunFlags
    own: sbatchopts.Reading  # the script's own sbatch options
    cfg: config.Config
    steps: _Steps
    data: dict[str, object]  # the dry-run report, filled in as the run goes
    reporter: Reporter

    def plan(self, *, submitting: bool = False, **kw: Any) -> Plan | None:
        """The container Plan for the script (locks and superblocks checked), or None."""
        job, data = self.job, self.data
        plan: Plan | None = None
        if job.missing:
            data["plan_error"] = "not made: a #DEP image is missing"
            return None
        with self.steps.step(usage=True):  # no image to autoload, a bad --bind: the Plan's
            req = script.request(job, self.args, os.environ, **kw)
            try:
                notify = None if self.flags.dry_run else self.reporter.note
                plan = launch.plan_for(req, self.cfg, notify=notify)
            except LockError as err:
                if not submitting:
                    raise
                raise LockError(
                    f"{job.origin}: not submitted: {err.message}", hint=err.hint
                ) from None
        if plan is None:
            data["plan_error"] = self.steps.problems[-1] if self.steps.problems else "not made"
        else:
            data["plan"] = plan.to_json()
        return plan

    def submit(self) -> Outcome:
        job, flags, ctl, steps = self.job, self.flags, self.flags.control, self.steps
        self.data["resources"] = tools.resources({}, self.own, ctl)  # what the job asks for
        plan = self.plan(submitting=True)
        if plan is not None:
            why = submit.parallelism(self.own, job.header, ctl, os.environ)
            with steps.step():
                submit.check(job, plan, why, cli_writable=flags.writable)
        sub: submit.Submission | None = None
        with steps.step():
            sub = submit.prepare(
                job,
                self.args,
                ctl,
                self.own,
                cli_writable=flags.writable,
                cli_container=flags.container,
                logs_dir=self.cfg.logs_dir,
                environ=os.environ,
            )
        if sub is not None:
            report.submission(self.data, sub)
        if flags.dry_run:
            return self.dry_outcome()
        assert sub is not None and plan is not None
        # The job will not fetch the default base (compute nodes often have no network): here.
        launch.fetch_base(plan, self.cfg, self.reporter.note)
        return Outcome(job_id=submit.sbatch(sub, os.environ, self.reporter, auto=not flags.submit))

    def here(self) -> Outcome:
        job, flags, ctl, steps = self.job, self.flags, self.flags.control, self.steps
        environ = os.environ
        needs = ctl.needs_scheduler()
        if needs:
            steps.fail(
                UsageError(
                    f"{' '.join(needs)}: only a scheduler can do that, and {job.origin} runs"
                    f" here ({self.data['why']})",
                    hint="submit it to SLURM: condatainer run --submit ... (or drop those flags)",
                )
            )
        ignored = ctl.ignored_here()
        if ignored and not flags.dry_run:
            self.reporter.note(f"{' '.join(ignored)} only apply to submitted jobs: ignored here")
        resources = tools.resources(environ, self.own, ctl)
        self.data["resources"] = resources
        notice = _module_notice(environ)
        helper: list[str] = []
        with steps.step():
            helper.append(tools.stub_dir(environ, write=not flags.dry_run))
        plan = self.plan(extra_env={**resources, "CNT_MODULE_NOTICE": notice}, helper_dirs=helper)
        launcher = _task_launcher(environ)
        if launcher and plan is not None:
            self.data["launch"] = list(launcher)
            if plan.writable is not None:
                steps.fail(
                    DirectiveError(
                        f"{job.origin}: {plan.writable.path} would be mounted writable by each"
                        f" of {environ.get('SLURM_NTASKS')} tasks, and only one process at a"
                        " time can write an image",
                        hint="use the image read-only in this job (drop -w), or run one task",
                    )
                )
        if flags.dry_run:
            return self.dry_outcome()
        assert plan is not None
        if launcher:
            for line in plan.notices:
                self.reporter.note(line)
            task = plan.replace(notices=())
            runner.exec_([*launcher, *_task_argv(task)], os.environ)
        try:
            return Outcome(status=launch.execute(plan, self.cfg, self.reporter.note))
        finally:
            _forget(notice)

    def dry_outcome(self) -> Outcome:
        return _dry_outcome(self.data, self.steps)


def run_command(
    script_path: str, args: Sequence[str], flags: RunFlags, reporter: Reporter
) -> Outcome:
    """Run, submit, or describe (dry run) the job script at `script_path`."""
    environ = os.environ
    steps = _Steps(flags.dry_run)
    data = report.empty(script_path, args)
    job: script.Job | None = None
    with steps.step():
        job = script.load_job(
            script_path,
            environ,
            writable=flags.writable,
            reexec=flags.reexec,
            container=flags.container,
        )
    cfg = config.load(environ)
    ctl = flags.control
    data["control"] = ctl.to_json()
    data["array"] = report.array(ctl.array)
    if job is None:  # the header could not be read: nothing more to say
        data["plan_error"] = "not made: the script's header could not be read"
        data["slurm"] = report.slurm(_probe(flags, environ))
        return _dry_outcome(data, steps)
    report.describe_job(data, job)
    with steps.step():
        script.require_deps(job)
    own = control.script_options(job.header)
    data["notes"] = [*job.header.notes, *(f"{job.script}: sbatch: {p}" for p in own.problems)]
    decision = submit.decide(
        job.header,
        ctl,
        cfg,
        environ,
        script=str(job.origin),
        submit=flags.submit,
        local=flags.local,
        reexec=flags.reexec,
    )
    data["submit"], data["why"] = decision.submit, decision.why
    data["slurm"] = report.slurm(decision.slurm if decision.slurm else _probe(flags, environ))
    if decision.error is not None:
        steps.fail(decision.error)
    if decision.note and not flags.dry_run:
        reporter.note(decision.note)
    run = _Run(job, args, flags, own, cfg, steps, data, reporter)
    return run.submit() if decision.submit else run.here()


def _probe(flags: RunFlags, environ: Mapping[str, str]) -> scheduler.Slurm | None:
    """A dry run says what SLURM looks like even when the decision did not need to ask."""
    return scheduler.probe(environ) if flags.dry_run else None


def _module_notice(environ: Mapping[str, str]) -> str:
    """Where the `module` stub marks that it has said its note (a directory, made once)."""
    import tempfile

    job = environ.get("SLURM_JOB_ID", "")
    token = f"{job}.{os.getpid()}.{os.urandom(4).hex()}".lstrip(".")
    return os.path.join(tempfile.gettempdir(), f".condatainer-module-noted.{token}")


def _forget(notice: str) -> None:
    with suppress(OSError):
        os.rmdir(notice)


def _task_launcher(environ: Mapping[str, str]) -> tuple[str, ...]:
    """`srun` words when this is a SLURM batch step of several tasks, else ()."""
    tasks = environ.get("SLURM_NTASKS", "")
    in_step = bool(environ.get("SLURM_STEP_ID"))
    if not environ.get("SLURM_JOB_ID") or in_step or not tasks.isdigit() or int(tasks) < 2:
        return ()
    return ("srun", "--export=ALL")


def _task_argv(plan: Plan) -> list[str]:
    """How each task runs `plan`: `condatainer _task PLAN-JSON`, with the condatainer on PATH,
    else this interpreter's (the job may have been started by absolute path, off PATH)."""
    import json
    import sys

    found = runner.which("condatainer")
    program = [os.path.abspath(found)] if found else [sys.executable, "-m", "condatainer"]
    return [*program, "_task", json.dumps(plan.to_json())]


def run_task(plan_json: str, reporter: Reporter) -> int:
    """`condatainer _task PLAN`: one task of a multi-task job runs the Plan its step made."""
    import json

    try:
        plan = Plan.from_json(json.loads(plan_json))
    except ValueError as exc:
        raise UsageError(
            f"_task: {exc}", hint="this command is started by condatainer run"
        ) from None
    return launch.execute(plan, config.load(os.environ), reporter.note)


def _dry_outcome(data: dict[str, object], steps: _Steps) -> Outcome:
    data["problems"] = list(steps.problems)
    data["would_start"] = not steps.problems
    return Outcome(
        status=0 if not steps.problems else 1,
        report=data,
        lines=tuple(report.lines(data)),
    )
