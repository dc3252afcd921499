"""A job script as data: what its header asks for, resolved (`load_job`), and the container
Request that runs it (`request`).

The script's header is read the way the schedulers read it (`directives.parse`): `#DEP:` names
the images (relative paths resolve against the working directory, then the script's own
directory -- under SLURM the submit directory, since `$0` is the spool copy), `#CNT` adds
container options (`run.options.CNT_OPTIONS`), `#SBATCH`/`#PBS`/`#BSUB` are reported.  Container
options given to `condatainer run` itself join those of `#CNT`: a single value (`-b`,
`--workdir`) from the command line wins, binds from the command line come first (so they win
for one container path), variables from it come last (so they win for one name).  The script
runs inside the container with its own interpreter (from its `#!` line, else `sh`), its
directory bound, its arguments passed as they are.

A `#DEP` that names nothing is kept in `Job.deps` with where it was looked for: `require_deps`
turns the first such into an error, a dry run reports them all.

Every run sets `CNT_REEXEC_DEPTH` (one more than it found) in the container; the self-reexec
header checks it, so a container that loses `IN_CONDATAINER` cannot loop.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from condatainer.errors import DirectiveError, UsageError
from condatainer.jobs import directives
from condatainer.run import options
from condatainer.run.resolve import Request


@dataclass(frozen=True)
class Dep:
    """One `#DEP:` name: the image it resolved to, or where it was looked for."""

    name: str
    line: int
    path: str | None  # the image, resolved; None: not found
    looked: tuple[str, ...]

    def to_json(self) -> dict[str, object]:
        return {
            "dep": self.name,
            "line": self.line,
            "found": self.path is not None,
            "path": self.path,
            "looked": list(self.looked),
        }


@dataclass(frozen=True)
class Job:
    """A script and everything its header (and the run's container options) decided."""

    script: Path  # the file to run (under SLURM: the spool copy)
    origin: Path  # where the script really lives (its directory is bound, #DEP resolves there)
    text: str  # the script as read (undecodable bytes kept as surrogates)
    header: directives.Directives
    deps: tuple[Dep, ...]
    writable: bool
    container: Mapping[str, object] = field(default_factory=dict)  # dest -> value, merged

    @property
    def images(self) -> tuple[str, ...]:
        """The `#DEP` images that were found, in order."""
        return tuple(d.path for d in self.deps if d.path is not None)

    @property
    def missing(self) -> tuple[Dep, ...]:
        return tuple(d for d in self.deps if d.path is None)


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
        for word in res.stdout.split():
            if word.startswith("Command=") and word != "Command=(null)":
                submit_dir = environ.get("SLURM_SUBMIT_DIR", os.getcwd())
                return Path(os.path.realpath(Path(submit_dir, word[len("Command=") :])))
    return Path(os.path.realpath(script))


def find_dep(name: str, line: int, bases: Sequence[Path]) -> Dep:
    """The image a `#DEP:` names: absolute as is, relative against each base in turn (with
    `.img` added when the name has none)."""
    path = Path(os.path.expanduser(name)) if name.startswith("~") else Path(name)
    tries = [path] if path.is_absolute() else [b / path for b in bases]
    for candidate in tries:
        # `#DEP: /` or `#DEP: ..` names a directory, with no file name to add `.img` to.
        named = [candidate.with_name(candidate.name + ".img")] if candidate.name else []
        for c in (candidate, *named):
            if c.is_file():
                return Dep(name, line, os.path.realpath(c), tuple(str(t) for t in tries))
    return Dep(name, line, None, tuple(str(t) for t in tries))


def require_deps(job: Job) -> None:
    """A DirectiveError for the first `#DEP` that names nothing."""
    for dep in job.missing:
        relative = not Path(dep.name).is_absolute()
        raise DirectiveError(
            f"#DEP: {dep.name}: not found (looked for " + " and ".join(dep.looked) + ")",
            hint="create it with: condatainer o " + shlex.quote(dep.name) if relative else None,
        )


def load_job(
    script_text: str,
    environ: Mapping[str, str],
    *,
    writable: bool,
    reexec: bool = False,
    container: Mapping[str, object] | None = None,
) -> Job:
    """Read the script and its header; `container`: the run's own container options."""
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
    from_cnt: dict[str, object] = {}
    for words in header.cnt_flags:
        try:
            options.parse_cnt(words, from_cnt)
        except ValueError as exc:
            raise DirectiveError(
                f"{script}: #CNT {shlex.join(words)}: {exc}",
                hint=f"#CNT takes {options.cnt_usage()}",
            ) from None
    deps = tuple(find_dep(n, line, bases) for n, line in zip(header.deps, header.dep_lines))
    merged = merge_container(from_cnt, container or {})
    return Job(
        script=script,
        origin=origin,
        text=text,
        header=header,
        deps=deps,
        writable=writable or bool(merged.get("writable")),
        container=merged,
    )


def merge_container(cnt: Mapping[str, object], cli: Mapping[str, object]) -> dict[str, object]:
    """#CNT values with the command line's on top (see the module docstring)."""
    merged: dict[str, object] = dict(cnt)
    for dest, value in cli.items():
        if isinstance(value, list):
            before = _strings(merged.get(dest))
            merged[dest] = [*value, *before] if dest == "bind" else [*before, *value]
        elif value:
            merged[dest] = value
    return merged


def interpreter(text: str) -> tuple[str, ...]:
    """The script's `#!` interpreter as argv words (data, never evaluated); `sh` without one."""
    first = text.split("\n", 1)[0]
    if first.startswith("#!"):
        words = first[2:].strip().split()
        if words:
            return tuple(words)
    return ("sh",)


def request(
    job: Job,
    args: Sequence[str],
    environ: Mapping[str, str],
    *,
    extra_env: Mapping[str, str] | None = None,
    helper_dirs: Sequence[str] = (),
) -> Request:
    """The container Request that runs the script (`extra_env` first: the user's win)."""
    depth = environ.get("CNT_REEXEC_DEPTH", "0")
    next_depth = str(int(depth) + 1) if depth.isdigit() else "1"
    c = job.container
    env = [
        *(f"{k}={v}" for k, v in (extra_env or {}).items()),
        *_strings(c.get("env")),
        f"CNT_REEXEC_DEPTH={next_depth}",
        f"CNT_SCRIPT={job.origin}",
    ]
    command = (*interpreter(job.text), str(job.script), *args)
    return Request(
        command=command,
        images=job.images,
        writable=job.writable,
        autoload=not job.header.deps,
        base_image=_string(c.get("base")),
        binds=tuple(_strings(c.get("bind"))),
        env=tuple(env),
        fakeroot=bool(c.get("fakeroot")),
        contain=bool(c.get("contain")),
        containall=bool(c.get("containall")),
        cleanenv=bool(c.get("cleanenv")),
        workdir=_string(c.get("workdir")),
        extra_args=tuple(_strings(c.get("extra"))),
        wait_lock=options.wait_seconds(c.get("wait_lock")),
        script_dir=str(job.script.parent.resolve()),
        helper_dirs=tuple(helper_dirs),
    )


def _strings(value: object) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else []


def _string(value: object) -> str | None:
    return str(value) if value is not None and value != "" else None
