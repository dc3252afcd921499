"""Job control: `condatainer run`'s job flags, checked, and the sbatch options they become.

The flags keep CondaTainer's names: `-c/--cpu N`, `-m/--mem SIZE`, `-t/--time TIME`,
`-g/--gpu N|TYPE:N|TYPE`, `-n/--name`, `-o/--output`, `-e/--error`, `-p/--partition`,
`-A/--account`, `--afterok/--afternotok/--afterany IDS` (colon-separated job ids) and
`--array FILE` with `--array-limit N`.  `from_flags` checks every value (a UsageError naming the
flag), `sbatch_options` turns them into sbatch options.

**The command line wins over the script.**  sbatch itself lets a command-line option override
the same option in the script, but refuses two *different* options for one thing (`--mem` with
`--mem-per-cpu`; `--gres=gpu:2` with `--gpus-per-node=tesla:1`).  So each flag is passed in the
spelling the script already uses for that thing, converted: `-m` is the memory of each node
(`--mem`), or, when the script counts memory per CPU, that memory divided among the CPUs of a
node (`--mem-per-cpu`); `-g` replaces the GPUs of the script's `--gres` (its other resources
kept), `--gpus`, `--gpus-per-node`, `--gpus-per-task` or `--gpus-per-socket` in place, else it
is `--gpus-per-node`.  A script that counts memory per GPU cannot take `-m` (the per-GPU amount
is not known): an error naming its line.  The script file stays as written (its own sbatch
snapshot, the self-reexec header), and so do the `#SBATCH` lines a wrapper copies.

**Arrays.**  `--array FILE`: one task per line that is not blank and not a `#` comment, split
into words the way the shell splits them (quotes group, a `# comment` ends the line, nothing is
expanded); the words are appended after the script's own arguments.  Tasks are numbered from 0
in file order (`--array=0-N%LIMIT`).  The tasks are read when the job is submitted: editing the
file afterwards changes nothing.  An `#SBATCH --array` in the same script is an error naming both.

**Logs.**  Without `-o` and without an `--output` of the script's own (or `SBATCH_OUTPUT`), the
job's output goes to config `logs_dir` (default: the script's directory) as `NAME-JOBID.out`
(`NAME-ARRAYID_TASK.out` for arrays) instead of sbatch's `slurm-JOBID.out` in the submit
directory; stderr goes with it unless `-e` or the script says otherwise.  The directories of
these files are created before submitting (sbatch does not, and a job whose log directory is
missing fails without a word).
"""

from __future__ import annotations

import math
import os
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from condatainer.errors import DirectiveError, UsageError
from condatainer.jobs import directives, sbatchopts

_MEM = re.compile(r"(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?", re.IGNORECASE)
_MEM_FACTOR = {"": 1.0, "K": 1 / 1024, "M": 1.0, "G": 1024.0, "T": 1024.0**2}
_SLURM_TIME = re.compile(
    r"\d+|\d+:\d+|\d+:\d+:\d+|\d+-\d+|\d+-\d+:\d+|\d+-\d+:\d+:\d+|UNLIMITED|INFINITE",
    re.IGNORECASE,
)
_UNIT_TIME = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", re.IGNORECASE)
_GPU_TYPE = r"(?=[\w.-]*[A-Za-z])\w[\w.-]*"  # a word with a letter in it: a100, tesla, h100.80gb
_GPU = re.compile(rf"(?:({_GPU_TYPE}):)?(\d+)|({_GPU_TYPE})", re.ASCII)
_JOB_ID = re.compile(r"\d+(?:_\d+)?")
DEPENDENCY_TYPES = ("afterok", "afternotok", "afterany")
# Flags that only mean something to a scheduler: running here, they are ignored (with a note).
SUBMIT_ONLY = ("time", "name", "output", "error", "partition", "account", "gpu")
_FLAG = {
    "cpus": "-c",
    "mem": "-m",
    "time": "-t",
    "gpu": "-g",
    "name": "-n",
    "output": "-o",
    "error": "-e",
    "partition": "-p",
    "account": "-A",
    "afterok": "--afterok",
    "afternotok": "--afternotok",
    "afterany": "--afterany",
    "array": "--array",
    "array_limit": "--array-limit",
}


@dataclass(frozen=True)
class Gpu:
    count: int
    type: str | None = None

    def spec(self) -> str:
        return f"{self.type}:{self.count}" if self.type else str(self.count)


@dataclass(frozen=True)
class ArrayTasks:
    """The tasks of `--array FILE`: each task's words and the line it came from."""

    file: str  # absolute
    tasks: tuple[tuple[str, ...], ...]
    lines: tuple[int, ...]
    limit: int | None = None  # at most this many at once (None or 0: no limit)

    def spec(self) -> str:
        """sbatch's `--array` value."""
        last = len(self.tasks) - 1
        indices = f"0-{last}" if last > 0 else "0"
        return indices + (f"%{self.limit}" if self.limit else "")


@dataclass(frozen=True)
class JobControl:
    """The job flags, checked; None or () when not given."""

    cpus: int | None = None
    mem_mb: int | None = None
    time: str | None = None  # in sbatch's form
    gpu: Gpu | None = None
    name: str | None = None
    output: str | None = None
    error: str | None = None
    partition: str | None = None
    account: str | None = None
    afterok: tuple[str, ...] = ()
    afternotok: tuple[str, ...] = ()
    afterany: tuple[str, ...] = ()
    array: ArrayTasks | None = None
    given: tuple[str, ...] = field(default=())  # the flags given, as spelled on the command line

    @property
    def dependency(self) -> str | None:
        """sbatch's `--dependency` value: every condition must hold."""
        parts = [
            f"{kind}:{':'.join(ids)}"
            for kind, ids in (
                ("afterok", self.afterok),
                ("afternotok", self.afternotok),
                ("afterany", self.afterany),
            )
            if ids
        ]
        return ",".join(parts) or None

    def needs_scheduler(self) -> list[str]:
        """Flags that cannot be honoured without submitting (as spelled)."""
        kinds = [k for k in ("afterok", "afternotok", "afterany") if getattr(self, k)]
        return [_FLAG[k] for k in kinds] + (["--array"] if self.array else [])

    def ignored_here(self) -> list[str]:
        """Flags that mean nothing to a run here (as spelled)."""
        return [_FLAG[k] for k in SUBMIT_ONLY if getattr(self, k) is not None]

    def to_json(self) -> dict[str, object]:
        return {
            "cpus": self.cpus,
            "mem_mb": self.mem_mb,
            "time": self.time,
            "gpu": self.gpu.spec() if self.gpu else None,
            "name": self.name,
            "output": self.output,
            "error": self.error,
            "partition": self.partition,
            "account": self.account,
            "dependency": self.dependency,
        }


# --------------------------------------------------------------------------------------------
# Checking the flags


def parse_mem(text: str) -> int:
    """`-m` as MiB: `4G`, `8192M`, `1.5G`, `512` (MiB, sbatch's default unit), `4GB`, `4GiB`."""
    m = _MEM.fullmatch(text.strip())
    if m is None:
        raise UsageError(
            f"-m/--mem: {text!r} is not a memory size", hint="use e.g. -m 4G or -m 8192M"
        )
    mb = math.ceil(float(m.group(1)) * _MEM_FACTOR[m.group(2).upper()])
    if mb <= 0:
        raise UsageError(f"-m/--mem: {text!r} is not more than zero", hint="use e.g. -m 4G")
    return mb


def parse_time(text: str) -> str:
    """`-t` in sbatch's form: its own forms pass (`90`, `1:30:00`, `2-12`), and CondaTainer's
    `4d12h`, `2h30m`, `45m`, `30s` become `D-HH:MM:SS`."""
    value = text.strip()
    if _SLURM_TIME.fullmatch(value):
        return value
    m = _UNIT_TIME.fullmatch(value)
    if m is None or not any(m.groups()):
        raise UsageError(
            f"-t/--time: {text!r} is not a time limit",
            hint="use e.g. -t 2h30m, -t 4d12h, -t 01:30:00 or -t 1-00:00:00",
        )
    days, hours, minutes, seconds = (int(g or 0) for g in m.groups())
    total = ((days * 24 + hours) * 60 + minutes) * 60 + seconds
    if total <= 0:
        raise UsageError(f"-t/--time: {text!r} is zero", hint="use e.g. -t 2h")
    days, rest = divmod(total, 86400)
    return f"{days}-{rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d}"


def parse_gpu(text: str) -> Gpu:
    """`-g`: `N` (any type), `TYPE:N`, or `TYPE` (one of that type)."""
    m = _GPU.fullmatch(text.strip())
    if m is None or (m.group(2) is not None and int(m.group(2)) <= 0):
        raise UsageError(
            f"-g/--gpu: {text!r} is not a GPU request", hint="use e.g. -g 1, -g a100:2 or -g a100"
        )
    if m.group(3) is not None:
        return Gpu(1, m.group(3))
    return Gpu(int(m.group(2)), m.group(1))


def parse_ids(flag: str, text: str) -> tuple[str, ...]:
    """`--afterok 12:34` (also `12,34` and `12_3` for one array task)."""
    ids = tuple(i.strip() for i in re.split(r"[:,]", text) if i.strip())
    bad = [i for i in ids if not _JOB_ID.fullmatch(i)]
    if not ids or bad:
        raise UsageError(
            f"{flag}: {text!r} is not a list of job ids",
            hint=f"give job ids joined by colons, e.g. {flag} 123:456",
        )
    return ids


def read_array(path_text: str, limit: int | None) -> ArrayTasks:
    """The tasks of `--array FILE` (see the module docstring)."""
    path = Path(path_text)
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise UsageError(f"--array: {path}: no such file", hint="check the path") from None
    except UnicodeDecodeError:
        raise UsageError(f"--array: {path}: not a text file (not UTF-8)") from None
    except OSError as exc:
        raise UsageError(f"--array: {path}: cannot read: {exc.strerror}") from None
    tasks: list[tuple[str, ...]] = []
    lines: list[int] = []
    for number, line in enumerate(directives.lines_of(text), 1):
        if not line.strip(directives.BLANK) or line.lstrip(directives.BLANK).startswith("#"):
            continue
        try:
            words = tuple(shlex.split(directives.strip_comment(line), comments=False))
        except ValueError as exc:
            raise UsageError(
                f"--array: {path}:{number}: {str(exc).lower()}",
                hint=f"fix the quoting on line {number} of {path}",
            ) from None
        tasks.append(words)
        lines.append(number)
    if not tasks:
        raise UsageError(
            f"--array: {path}: has no task lines (blank and # lines are skipped)",
            hint="write one line of arguments per task",
        )
    return ArrayTasks(os.path.abspath(path), tuple(tasks), tuple(lines), limit)


def from_flags(
    *,
    cpu: str | None = None,
    mem: str | None = None,
    time: str | None = None,
    gpu: str | None = None,
    name: str | None = None,
    output: str | None = None,
    error: str | None = None,
    partition: str | None = None,
    account: str | None = None,
    afterok: Sequence[str] = (),
    afternotok: Sequence[str] = (),
    afterany: Sequence[str] = (),
    array: str | None = None,
    array_limit: str | None = None,
) -> JobControl:
    """Check the job flags as given on the command line (strings); UsageError naming the flag."""
    cpus = None
    if cpu is not None:
        if not cpu.strip().isdigit() or int(cpu) <= 0:
            raise UsageError(f"-c/--cpu: {cpu!r} is not a number of CPUs", hint="use e.g. -c 4")
        cpus = int(cpu)
    limit = None
    if array_limit is not None:
        if array is None:
            raise UsageError("--array-limit goes with --array FILE", hint="add --array FILE")
        if not array_limit.strip().isdigit():
            raise UsageError(
                f"--array-limit: {array_limit!r} is not a number",
                hint="use e.g. --array-limit 4 (0: no limit)",
            )
        limit = int(array_limit) or None
    for flag, text in (
        ("-n/--name", name),
        ("-p/--partition", partition),
        ("-A/--account", account),
    ):
        if text is not None and (not text.strip() or "\n" in text):
            raise UsageError(f"{flag}: {text!r} is empty or holds a line break")
    for flag, text in (("-o/--output", output), ("-e/--error", error)):
        if text is not None and (not text or "\n" in text or "\0" in text):
            raise UsageError(f"{flag}: {text!r} is not a file name")
    given = {
        "cpus": cpu,
        "mem": mem,
        "time": time,
        "gpu": gpu,
        "name": name,
        "output": output,
        "error": error,
        "partition": partition,
        "account": account,
        "afterok": list(afterok) or None,
        "afternotok": list(afternotok) or None,
        "afterany": list(afterany) or None,
        "array": array,
        "array_limit": array_limit,
    }
    return JobControl(
        cpus=cpus,
        mem_mb=parse_mem(mem) if mem is not None else None,
        time=parse_time(time) if time is not None else None,
        gpu=parse_gpu(gpu) if gpu is not None else None,
        name=name,
        output=output,
        error=error,
        partition=partition,
        account=account,
        afterok=tuple(i for t in afterok for i in parse_ids("--afterok", t)),
        afternotok=tuple(i for t in afternotok for i in parse_ids("--afternotok", t)),
        afterany=tuple(i for t in afterany for i in parse_ids("--afterany", t)),
        array=read_array(array, limit) if array is not None else None,
        given=tuple(_FLAG[k] for k, v in given.items() if v is not None),
    )


# --------------------------------------------------------------------------------------------
# The sbatch options


def script_options(header: directives.Directives) -> sbatchopts.Reading:
    """The script's own sbatch options (its honoured `#SBATCH` lines), as sbatch reads them."""
    if header.scheduler != "slurm":
        return sbatchopts.Reading((), ())
    args = [a for d in header.directives for a in d.args]
    lines: list[int | None] = [d.line for d in header.directives for _ in d.args]
    return sbatchopts.read(args, lines)


def _count(value: str | None) -> int:
    """The smallest count an option value asks for: `4`, `2-4`, `3,5` (1 when unreadable)."""
    m = re.match(r"\s*(\d+)", value or "")
    return max(int(m.group(1)), 1) if m else 1


def _line(option: sbatchopts.Option, script: str) -> str:
    where = f"{script}:{option.line}" if option.line is not None else script
    return f"{where} ({option.spelled})"


def sbatch_options(
    ctl: JobControl,
    own: sbatchopts.Reading,
    *,
    script: str,
    logs_dir: str,
    environ: Mapping[str, str],
) -> list[str]:
    """The sbatch options for `ctl`, spelled to override the script's own (`own`)."""
    opts: list[str] = []
    if ctl.array is not None:
        theirs = own.last("array")
        if theirs is not None:
            raise DirectiveError(
                f"--array {ctl.array.file} and {_line(theirs, script)} both make an array job",
                hint=f"drop one of them: the #SBATCH line of {script}, or --array",
            )
        opts.append(f"--array={ctl.array.spec()}")
    if ctl.cpus is not None:
        opts.append(f"--cpus-per-task={ctl.cpus}")
    if ctl.mem_mb is not None:
        opts.append(_mem_option(ctl, own, script))
    if ctl.time is not None:
        opts.append(f"--time={ctl.time}")
    if ctl.gpu is not None:
        opts.append(_gpu_option(ctl.gpu, own))
    for name, value in (
        ("job-name", ctl.name),
        ("partition", ctl.partition),
        ("account", ctl.account),
        ("dependency", ctl.dependency),
        ("output", ctl.output),
        ("error", ctl.error),
    ):
        if value is not None:
            opts.append(f"--{name}={value}")
    if ctl.output is None and own.last("output") is None and not environ.get("SBATCH_OUTPUT"):
        pattern = "%x-%A_%a.out" if ctl.array or own.last("array") else "%x-%j.out"
        opts.append(f"--output={os.path.join(logs_dir, pattern)}")
    return opts


def _mem_option(ctl: JobControl, own: sbatchopts.Reading, script: str) -> str:
    assert ctl.mem_mb is not None
    theirs = own.last("mem", "mem-per-cpu", "mem-per-gpu")
    if theirs is None or theirs.name == "mem":
        return f"--mem={ctl.mem_mb}M"
    if theirs.name == "mem-per-gpu":
        raise DirectiveError(
            f"-m sets the memory of each node, but {_line(theirs, script)} counts memory per GPU,"
            " and sbatch refuses both",
            hint=f"leave out -m, or change that line of {script} to --mem",
        )
    cpus = ctl.cpus or _count(getattr(own.last("cpus-per-task"), "value", None))
    per_node = own.last("ntasks-per-node")
    tasks = (
        _count(per_node.value) if per_node else _count(getattr(own.last("ntasks"), "value", None))
    )
    return f"--mem-per-cpu={math.ceil(ctl.mem_mb / (cpus * tasks))}M"


def _gpu_option(gpu: Gpu, own: sbatchopts.Reading) -> str:
    family = ("gpus", "gpus-per-node", "gpus-per-task", "gpus-per-socket")
    for option in reversed(own.options):
        if option.name in family:
            return f"--{option.name}={gpu.spec()}"
        if option.name == "gres" and option.value:
            items = option.value.split(",")
            kept = [i for i in items if i != "gpu" and not i.startswith("gpu:")]
            if len(kept) < len(items):
                return "--gres=" + ",".join([f"gpu:{gpu.spec()}", *kept])
    return f"--gpus-per-node={gpu.spec()}"
