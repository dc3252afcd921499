"""`condatainer run`: run a job script in the container its header asks for.

The script's header is read the way the schedulers read it (`directives.parse`): `#DEP:` names
the images (relative paths resolve against the working directory, then the script's own
directory — under SLURM the submit directory, since `$0` is the spool copy), `#CNT` adds
condatainer flags (`-w`, `--fakeroot`, `-b IMG`, `--env K=V`, `--bind H:C`), `#SBATCH`/`#PBS`/
`#BSUB` are reported.  The script runs inside the container with its own interpreter (from its
`#!` line, else `sh`), its directory bound, its arguments passed as they are.

`--reexec` is what the self-reexec header calls.  Every run sets `CNT_REEXEC_DEPTH` (one more
than it found) in the container; the header checks it, so a container that loses
`IN_CONDATAINER` cannot loop.

Whether the script is submitted instead (`--submit`, or config `submit: auto` for a script with
`#SBATCH` lines), and how, is `submit.py`'s business; `run_command` asks it first.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from condatainer import config
from condatainer.display import printable
from condatainer.errors import DirectiveError, UsageError
from condatainer.jobs import directives
from condatainer.run.resolve import Request


@dataclass(frozen=True)
class Job:
    """A script and everything its header decided."""

    script: Path  # the file to run (under SLURM: the spool copy)
    origin: Path  # where the script really lives (its directory is bound, #DEP resolves there)
    text: str  # the script as read (undecodable bytes kept as surrogates)
    header: directives.Directives
    images: tuple[str, ...]  # resolved #DEP images, in order
    writable: bool
    cnt_env: tuple[str, ...]
    cnt_binds: tuple[str, ...]
    fakeroot: bool
    base: str | None


def read_script(script: Path) -> bytes:
    """The bytes of a job script; UsageError naming the file for anything that stops reading."""
    try:
        return script.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"{script}: no such script", hint="check the path") from None
    except IsADirectoryError:
        raise UsageError(f"{script}: is a directory, not a script") from None
    except OSError as exc:
        raise UsageError(f"{script}: cannot read: {exc.strerror}") from None


def original_script(script: Path, environ: Mapping[str, str], *, reexec: bool) -> Path:
    """The script's real path: under SLURM `$0` is a spool copy, so ask CNT_SCRIPT or scontrol.

    CNT_SCRIPT is believed only for a re-exec or a spool copy: it stays in the environment of
    everything the job starts, and a nested `condatainer run other.sh` must not inherit it.
    """
    spool_copy = script.name == "slurm_script" and bool(environ.get("SLURM_JOB_ID"))
    if environ.get("CNT_SCRIPT") and (reexec or spool_copy):
        return Path(environ["CNT_SCRIPT"])
    if spool_copy:
        from condatainer import runner

        res = runner.run(["scontrol", "show", "job", "-o", environ["SLURM_JOB_ID"]])
        for field in res.stdout.split():
            if field.startswith("Command=") and field != "Command=(null)":
                submit_dir = environ.get("SLURM_SUBMIT_DIR", os.getcwd())
                return Path(os.path.realpath(Path(submit_dir, field[len("Command=") :])))
    return Path(os.path.realpath(script))


def _cnt_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="#CNT", add_help=False, exit_on_error=False)
    p.add_argument("-w", "--writable", action="store_true")
    p.add_argument("--fakeroot", action="store_true")
    p.add_argument("-b", "--base")
    p.add_argument("--env", action="append", default=[])
    p.add_argument("--bind", action="append", default=[])
    return p


def resolve_dep(dep: str, bases: Sequence[Path]) -> str:
    """The image a `#DEP:` names: absolute as is, relative against each base in turn."""
    path = Path(os.path.expanduser(dep))
    tries = [path] if path.is_absolute() else [b / path for b in bases]
    for candidate in tries:
        for c in (candidate, candidate.with_name(candidate.name + ".img")):
            if c.is_file():
                return os.path.realpath(c)
    raise DirectiveError(
        f"#DEP: {dep}: not found (looked for " + " and ".join(str(t) for t in tries) + ")",
        hint="create it with: condatainer o " + dep if not path.is_absolute() else None,
    )


def load_job(
    script_text: str, environ: Mapping[str, str], *, writable: bool, reexec: bool = False
) -> Job:
    script = Path(script_text)
    text = read_script(script).decode("utf-8", "surrogateescape")
    header = directives.parse(text, str(script))
    origin = original_script(script, environ, reexec=reexec)
    first = (
        Path(environ.get("SLURM_SUBMIT_DIR") or os.getcwd())
        if environ.get("SLURM_JOB_ID")
        else Path(os.getcwd())
    )
    bases = [first] + ([origin.parent] if origin.parent != first else [])
    flags = argparse.Namespace(writable=False, fakeroot=False, base=None, env=[], bind=[])
    parser = _cnt_parser()
    for words in header.cnt_flags:
        try:
            _, extra = parser.parse_known_args(list(words), namespace=flags)
            if extra:
                raise argparse.ArgumentError(None, "unknown flag(s): " + " ".join(extra))
        except argparse.ArgumentError as exc:
            raise DirectiveError(
                f"{script}: #CNT {shlex.join(words)}: {exc}",
                hint="#CNT takes -w, --fakeroot, -b IMG, --env K=V, --bind H:C",
            ) from None
    images = tuple(resolve_dep(d, bases) for d in header.deps)
    return Job(
        script=script,
        origin=origin,
        text=text,
        header=header,
        images=images,
        writable=writable or flags.writable,
        cnt_env=tuple(flags.env),
        cnt_binds=tuple(flags.bind),
        fakeroot=flags.fakeroot,
        base=flags.base,
    )


def interpreter(text: str) -> tuple[str, ...]:
    """The script's `#!` interpreter as argv words (data, never evaluated); `sh` without one."""
    first = text.split("\n", 1)[0]
    if first.startswith("#!"):
        words = first[2:].strip().split()
        if words:
            return tuple(words)
    return ("sh",)


def request(job: Job, args: Sequence[str], environ: Mapping[str, str]) -> Request:
    depth = environ.get("CNT_REEXEC_DEPTH", "0")
    next_depth = str(int(depth) + 1) if depth.isdigit() else "1"
    env = [*job.cnt_env, f"CNT_REEXEC_DEPTH={next_depth}", f"CNT_SCRIPT={job.origin}"]
    command = (*interpreter(job.text), str(job.script), *args)
    return Request(
        command=command,
        images=job.images,
        writable=job.writable,
        autoload=not job.images,
        base_image=job.base,
        binds=job.cnt_binds,
        env=tuple(env),
        fakeroot=job.fakeroot,
        script_dir=str(job.script.parent.resolve()),
    )


def run_command(
    script: str,
    args: list[str],
    *,
    writable: bool,
    submit: bool,
    local: bool,
    dry_run: bool,
    as_json: bool,
    reexec: bool,
) -> int:
    from condatainer.run import launch

    environ = os.environ
    job = load_job(script, environ, writable=writable, reexec=reexec)
    cfg = config.load(environ)
    req = request(job, args, environ)
    from condatainer.jobs import submit as submitting

    if submitting.wanted(job.header, cfg, environ, submit=submit, local=local, reexec=reexec):
        return submitting.run(job, args, req, cfg, environ, cli_writable=writable,
                              auto=not submit, dry_run=dry_run, as_json=as_json)
    if dry_run:
        from dataclasses import replace

        plan = launch.plan_for(replace(req, check_locks=False), cfg)
        report = {
            "script": str(job.script),
            "origin": str(job.origin),
            "deps": list(job.header.deps),
            "images": list(job.images),
            "scheduler": job.header.scheduler,
            "directives": list(job.header.directives),
            "cnt": [list(w) for w in job.header.cnt_flags],
            "plan": {**asdict(plan), "env": dict(plan.env)},
        }
        if as_json:
            print(json.dumps(report, indent=2))
        else:
            for key, value in report.items():
                if key != "plan":
                    print(printable(f"{key:10} {value}"))
            print(printable(f"{'command':10} {shlex.join(plan.command)}"))
            for o in plan.overlays:
                print(printable(f"{'overlay':10} {o.path} ({o.mode})"))
        return 0
    return launch.execute(launch.plan_for(req, cfg), cfg)
