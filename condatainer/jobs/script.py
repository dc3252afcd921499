"""A job script as data: what its header asks for, resolved (`load_job`), and the container
Request that runs it (`request`).

The script's header is read the way the schedulers read it (`directives.parse`): `#DEP:` names
the images (relative paths resolve against the working directory, then the script's own
directory — under SLURM the submit directory, since `$0` is the spool copy), `#CNT` adds
container options (`run.options.CNT_OPTIONS`), `#SBATCH`/`#PBS`/`#BSUB` are reported.  The
script runs inside the container with its own interpreter (from its `#!` line, else `sh`), its
directory bound, its arguments passed as they are.

Every run sets `CNT_REEXEC_DEPTH` (one more than it found) in the container; the self-reexec
header checks it, so a container that loses `IN_CONDATAINER` cannot loop.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from condatainer.errors import DirectiveError, UsageError
from condatainer.jobs import directives
from condatainer.run import options
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


def resolve_dep(dep: str, bases: Sequence[Path]) -> str:
    """The image a `#DEP:` names: absolute as is, relative against each base in turn."""
    path = Path(os.path.expanduser(dep))
    tries = [path] if path.is_absolute() else [b / path for b in bases]
    for candidate in tries:
        # `#DEP: /` or `#DEP: ..` names a directory, with no file name to add `.img` to.
        named = [candidate.with_name(candidate.name + ".img")] if candidate.name else []
        for c in (candidate, *named):
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
    flags: dict[str, object] = {}
    for words in header.cnt_flags:
        try:
            options.parse_cnt(words, flags)
        except ValueError as exc:
            raise DirectiveError(
                f"{script}: #CNT {shlex.join(words)}: {exc}",
                hint=f"#CNT takes {options.cnt_usage()}",
            ) from None
    images = tuple(resolve_dep(d, bases) for d in header.deps)
    return Job(
        script=script,
        origin=origin,
        text=text,
        header=header,
        images=images,
        writable=writable or bool(flags.get("writable")),
        cnt_env=tuple(_strings(flags.get("env"))),
        cnt_binds=tuple(_strings(flags.get("bind"))),
        fakeroot=bool(flags.get("fakeroot")),
        base=str(flags["base"]) if "base" in flags else None,
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


def _strings(value: object) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else []
