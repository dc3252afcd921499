"""The exec fast path: run a command in the container decided last time, when nothing that
decision depended on has changed since.

`condatainer exec -o IMG -- CMD` (and every shim, which is one) normally parses its command line
with argparse, loads the configuration, resolves a Plan and selects a runtime: about 60 ms of
imports and work before the container starts, paid by every call of a program in a loop.  The
decision depends only on its inputs, so the full path (`cli`) writes it down (`record`) and the
next call with the same inputs replays it (`replay`), importing almost nothing (a test holds
the list: tests/run/test_replay.py).

What an entry holds, and what a replay compares before it trusts it:

- the option words before the command, exactly as typed (the command itself is not part of
  the decision, beyond whether it is micromamba or an `mm-*` command: `resolve.micromamba_need`);
- the environment variables the decision reads (`ENVIRON_NAMES`, `ENVIRON_PREFIXES`; a test
  runs the decision with a recording environment and checks that it reads nothing else);
- the working directory, physical and as the shell names it (`layout.logical_cwd`);
- a stamp (device, inode, size, mtime, ctime; or "missing") of every path the decision looked
  at (`launch.watched`): the images as given, their sidecar files, the configuration file,
  the base image, bind sources and the default bind directories, condatainer's tools and
  micromamba, GPU device nodes, the directories of PATH and the runtime binary, and, for
  `--if-allowed` (shims), each image's allow record;
- the condatainer version, and the effective user and group.

Any difference is a miss: `replay` returns None and the caller runs the full path, which
records a new entry.  So is a recovery record beside an image (`_recovery_pending`): what an
interrupted resize, chown or create left is dealt with by the full path only.  What is checked
on every call is checked on a replay too, in the same words: the runtime takes each image's
lock (naming the holder when it is busy) and checks its superblock, and trust -- a function of
the image's identity and its allow record, both stamped -- is as it was when the full check
said yes.  The Plan's notices are told again.

Entries live in `$XDG_CACHE_HOME/condatainer/plans/`, one file per option words and working
directory, stored and checked by `memo` (marshal, atomic, the user's own only, at most
`memo.MAX_ENTRIES`).  Recording is best effort: a cache that cannot be written only costs speed.
"""

from __future__ import annotations

import os

from condatainer import __version__, memo
from condatainer.run import options

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from condatainer.run.plan import Plan

    Key = tuple[object, ...]

FORMAT = 2
PLANS = "plans"

# The environment a container decision reads (resolve, config, runtime selection): these
# names, and every name with one of these prefixes.
ENVIRON_NAMES = frozenset(
    {
        "HOME",
        "PATH",
        "PWD",
        "IN_CONDATAINER",
        "SCRATCH",
        "TMPDIR",
        "SLURM_TMPDIR",
        "PBS_JOBFS",
        "LSF_TMPDIR",
        "__LSF_JOB_TMPDIR__",
        "_CONDOR_SCRATCH_DIR",
    }
)
ENVIRON_PREFIXES = ("CNT_", "XDG_")


# --------------------------------------------------------------------------------------------
# The key


def split(words: Sequence[str]) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    """(option words, command) of `exec`'s arguments, or None for anything this fast reader
    does not know exactly (help, an abbreviation, combined short flags): argparse decides.
    Apptainer options passed through (`run.apptainer_flags.passes`) are option words."""
    by_flag = {flag: o for o in options.EXEC for flag in o.flags}
    i = 0
    while i < len(words):
        word = words[i]
        if word == "--":
            return tuple(words[:i]), tuple(words[i + 1 :])
        if not word.startswith("-") or word == "-":
            return tuple(words[:i]), tuple(words[i:])
        name = word.partition("=")[0] if word.startswith("--") else word
        option = by_flag.get(name)
        if option is None and word.startswith("--"):
            from condatainer.run import apptainer_flags  # only for a word not ours

            if not apptainer_flags.passes(word):
                return None
            i += 1  # an Apptainer option passed through: part of the key, as typed
            continue
        if option is None:
            option = by_flag.get(word[:2])  # -oIMG
            if option is None or option.kind == "flag":
                return None
        elif option.kind == "optional":
            pass  # its value only ever follows `=` (cli._attach_values makes argparse agree)
        elif option.kind == "flag":
            if name != word:
                return None  # --flag=value
        elif name == word:
            i += 1  # the value is the next word
        i += 1
    return tuple(words), ()


def environ_key(environ: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """The variables of `environ` a container decision reads, sorted."""
    return memo.environ_key(environ, ENVIRON_NAMES, ENVIRON_PREFIXES)


def _needs_micromamba(command: Sequence[str]) -> bool:
    """Whether the command itself needs micromamba (`resolve.micromamba_need`'s NEED)."""
    first = os.path.basename(command[0]) if command else ""
    return first == "micromamba" or first.startswith("mm-")


def _pwd_is_cwd(environ: Mapping[str, str]) -> bool:
    """Whether $PWD names the working directory (then it is the one `layout.logical_cwd`
    gives the decision)."""
    pwd = environ.get("PWD", "")
    try:
        return pwd.startswith("/") and os.path.samefile(pwd, ".")
    except OSError:
        return False


def _key(opts: Sequence[str], command: Sequence[str], here: str, environ: Mapping[str, str]) -> Key:
    return (
        FORMAT,
        __version__,
        tuple(opts),
        _needs_micromamba(command),
        environ_key(environ),
        here,
        _pwd_is_cwd(environ),
        os.geteuid(),
        os.getegid(),
    )


def _entry_path(cache: str, opts: Sequence[str], here: str) -> str:
    return os.path.join(cache, PLANS, memo.entry_name((here, *opts), ".plan"))


# --------------------------------------------------------------------------------------------
# Replay


def replay(words: Sequence[str], cache: str, environ: Mapping[str, str]) -> tuple[Plan, str] | None:
    """(the recorded Plan with this call's command, the runtime binary or "" for builtin) when
    every input is as it was when the entry for `words` (exec's arguments) was recorded; None
    on a miss (then run the full path)."""
    parts = split(words)
    if parts is None or not parts[1]:
        return None
    opts, command = parts
    here = os.getcwd()
    entry = memo.load(_entry_path(cache, opts, here))
    if entry is None or entry.get("key") != _key(opts, command, here, environ):
        return None
    runtime, data = entry.get("runtime"), entry.get("plan")
    if not (isinstance(runtime, str) and isinstance(data, dict)):
        return None
    if not memo.unchanged(entry.get("stamps")):
        return None
    from condatainer.run.plan import Plan

    try:
        plan = Plan.from_json(data)
    except (ValueError, KeyError, TypeError):
        return None
    if _recovery_pending(plan):
        return None
    return plan.replace(command=command), runtime


def _recovery_pending(plan: Plan) -> bool:
    """Whether an image-writing operation left a record the full path must look at
    (`image.recovery`, through `resolve`): beside a read-only image its own record (one
    lstat: a half-changed image is refused), beside a writable one any record in its directory
    (a listing: the writable run repairs them).  Named as `image.records.path_for` names them;
    that module is not imported here (it imports json and re)."""
    for overlay in plan.overlays:
        directory, name = os.path.split(overlay.path)
        if os.path.lexists(os.path.join(directory, f".{name}.record")):
            return True
        if overlay.writable:
            try:
                names = os.listdir(directory)
            except OSError:
                continue
            if any(n.startswith(".") and n.endswith(".record") for n in names):
                return True
    return False


def tell(notices: Sequence[str]) -> None:
    """The Plan's notices, told on a replay as the full path tells them."""
    if notices:
        from condatainer.display import Reporter

        Reporter().notes(notices)


# --------------------------------------------------------------------------------------------
# Record


def record(
    words: Sequence[str],
    plan: Plan,
    runtime: str | None,
    watched: Iterable[str],
    cache: str,
    environ: Mapping[str, str],
) -> None:
    """Write down the decision the full path made for `words` (best effort, never raises).

    `runtime` is the Apptainer/Singularity binary, or None for the builtin runtime; `watched`
    the paths whose state the decision read (`launch.watched`, plus allow records).  Nothing
    is recorded unless this module splits `words` into the command argparse found."""
    parts = split(words)
    if parts is None or not parts[1] or tuple(plan.command) != parts[1]:
        return
    opts, command = parts
    here = os.getcwd()
    entry: dict[str, object] = {
        "key": _key(opts, command, here, environ),
        "stamps": memo.stamps(watched),
        "runtime": runtime or "",
        "plan": plan.replace(command=()).to_json(),
    }
    memo.store(_entry_path(cache, opts, here), entry)
