"""The Apptainer runtime: a Plan becomes one `apptainer exec` command line, then that program.

This module owns the translation from a `Plan` to what Apptainer (or Singularity) understands,
and back from Apptainer's `FATAL:` lines to our errors.  It decides nothing: the Plan says which
images, binds, variables and flags; `argv` and `environ` only spell them the way Apptainer reads
them, refusing what Apptainer would silently misread.

How variables reach the container, and why not `--env`
-------------------------------------------------------
Every `(KEY, VALUE)` of `plan.env` is put in the exec environment as `APPTAINERENV_KEY=VALUE`
(`SINGULARITYENV_` for a real Singularity) and `--no-eval` is on the command line.  `--env` cannot
carry arbitrary values:

* `--env` is a pflag string-to-string flag: a value holding one `=` has its surrounding `"` trimmed,
  and one holding two or more is read as a CSV record, so a `,` splits it into more variables, a
  bare `"` is a parse error and a newline ends the record.
* `--env-file` is parsed as shell by Apptainer's embedded interpreter: `(`, `$(...)`, quotes and
  backslashes are syntax there, not data.
* Without `--no-eval`, Apptainer writes every injected variable into a generated script as
  `export KEY="VALUE"` with only `"` escaped, so `$VAR`, `$(...)`, backticks and backslashes are
  evaluated inside the container.  With `--no-eval` it single-quotes the value instead
  (`'` becomes `'"'"'`), and the value arrives byte for byte.

`APPTAINERENV_` values are taken from the environment as they are (no flag parsing), and
Apptainer reads them even under `-e/--cleanenv` and `-C/--containall`, which is what the
re-exec guard (`IN_CONDATAINER`) relies on.  `--no-eval` needs Apptainer >= 1.1 or
SingularityCE >= 3.10; older binaries stop with "unknown flag: --no-eval", which
`run_captured` reports as such.  Apptainer refuses `APPTAINERENV_HOME`, so HOME cannot be passed
this way; `PATH` is passed literally (Apptainer's `PREPEND_PATH`/`APPEND_PATH` keys also work).
The variables of `plan.unset` are removed from the environment Apptainer starts with (and their
`APPTAINERENV_`/`SINGULARITYENV_` forms), since Apptainer passes its own environment on.

Paths Apptainer cannot take
---------------------------
`--overlay` is a CSV list split on `,` and then on the first `:`; `--bind` specs are split on
`,` and `:` (and `^`, and trimmed of outer blanks).  A path holding one of those characters would
be silently mounted somewhere else, so `argv` refuses it with the path and the character.
"""

from __future__ import annotations

import os
import sys

from condatainer.errors import (
    CondatainerError,
    ConfigError,
    ContainerError,
    ImageError,
    LockError,
    RuntimeUnavailableError,
)
from condatainer.image import locks
from condatainer.names import is_variable_name

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (the exec path's rule)
if TYPE_CHECKING:
    from collections.abc import Mapping
    from re import Match, Pattern
    from typing import NoReturn

    from condatainer.run.plan import Bind, Plan

ENV_PREFIXES = ("APPTAINERENV_", "SINGULARITYENV_")

_GPU_FLAGS = {"nv": "--nv", "rocm": "--rocm"}

# Characters that Apptainer's option parsers treat as separators (see the module docstring).
_OVERLAY_SPECIALS = (",", ":", '"', "\n", "\r")
_BIND_SPECIALS = (",", ":", "^")

_BASE_IMAGE_HINT = (
    "fix -b or base_image (condatainer config set base_image /path/to/base.sif), or unset"
    " base_image to use condatainer's default base: condatainer config set base_image ''"
)


def env_prefix(binary: str) -> str:
    """`APPTAINERENV_`, or `SINGULARITYENV_` when `binary` is a Singularity that is not Apptainer.

    Apptainer installs `singularity` as a link to itself; following the link keeps Apptainer from
    warning that `SINGULARITYENV_` is deprecated.
    """
    real = os.path.basename(os.path.realpath(binary))
    return "SINGULARITYENV_" if real.startswith("singularity") else "APPTAINERENV_"


# --- Plan -> command line and environment (pure) ----------------------------------------------


def argv(plan: Plan, binary: str) -> list[str]:
    """The `BINARY exec ... IMAGE COMMAND...` command line for `plan`.

    Variables are not on it: they travel in `environ(plan, ...)`, which `--no-eval` keeps literal.
    """
    if plan.base_image is None:  # resolve gives Apptainer condatainer's default base
        raise ConfigError(
            "no base image: the Apptainer runtime needs one (a .sif file)",
            hint="fetch condatainer's default base with: condatainer base pull",
        )
    if not plan.command:
        raise ContainerError("nothing to run: the container command is empty")
    writable = [o.path for o in plan.overlays if o.writable]
    if len(writable) > 1:
        raise ContainerError(
            f"only one overlay can be writable, got {len(writable)}: {', '.join(writable)}"
        )

    args = [binary, "exec"]
    for overlay in plan.overlays:
        _refuse_specials(overlay.path, _OVERLAY_SPECIALS, "overlay image")
        args += ["--overlay", overlay.path if overlay.writable else f"{overlay.path}:ro"]
    for bind in plan.binds:
        args += ["--bind", _bind_spec(bind)]
    args.append("--no-eval")  # the variables in environ() arrive unevaluated
    for kind in dict.fromkeys(plan.gpu):
        if kind not in _GPU_FLAGS:
            raise ContainerError(f"unknown GPU kind '{kind}' (known: {', '.join(_GPU_FLAGS)})")
        args.append(_GPU_FLAGS[kind])
    if plan.fakeroot:
        args.append("--fakeroot")
    if plan.containall:
        args.append("-C")
    if plan.contain:
        args.append("-c")
    if plan.cleanenv:
        args.append("-e")
    if plan.workdir:
        args += ["-W", plan.workdir]
    args += ["--pwd", plan.cwd]
    args += plan.extra_args
    args.append(plan.base_image)
    args += plan.argv
    return args


def environ(plan: Plan, binary: str, base: Mapping[str, str]) -> dict[str, str]:
    """The environment to start `binary` with: `base` plus one `<PREFIX>KEY=VALUE` per variable.

    A variable of the same name the host already passes with either prefix is dropped, so the
    Plan's value is the only one Apptainer sees.
    """
    prefix = env_prefix(binary)
    env = dict(base)
    for key in plan.unset:  # Apptainer passes its own environment on: not these
        for other in ("", *ENV_PREFIXES):
            env.pop(other + key, None)
    for key, value in plan.env:
        if not is_variable_name(key):
            raise ContainerError(f"cannot pass '{key}' into the container: not a variable name")
        if key == "HOME":
            raise ContainerError(
                "cannot set HOME inside an Apptainer container through the environment",
                hint="pass Apptainer's own option instead: --home DIR",
            )
        for other in ENV_PREFIXES:
            env.pop(other + key, None)
        env[prefix + key] = value
    return env


def command(
    plan: Plan, binary: str, base: Mapping[str, str] | None = None
) -> tuple[list[str], dict[str, str]]:
    """The command line and the environment to start it with (`base` defaults to ours)."""
    return argv(plan, binary), environ(plan, binary, os.environ if base is None else base)


def _bind_spec(bind: Bind) -> str:
    for path in (bind.host, bind.container):
        _refuse_specials(path, _BIND_SPECIALS, "bind path")
        if path != path.strip():
            raise ContainerError(
                f"cannot bind '{path}': Apptainer trims blanks at the ends of bind paths"
            )
    return bind.spec()


def _refuse_specials(path: str, specials: tuple[str, ...], what: str) -> None:
    bad = [c for c in specials if c in path]
    if bad:
        shown = " ".join(repr(c) for c in bad)
        raise ContainerError(
            f"cannot use {what} '{path}' with Apptainer: it splits its options at {shown}",
            hint="move or rename it to a path without those characters",
        )


# --- running ----------------------------------------------------------------------------------


def preflight(plan: Plan) -> None:
    """Raise the precise error now for what would make Apptainer fail or misbehave.

    Each overlay must be lockable the way Apptainer will lock it: missing, unreadable and
    in-use images are reported with their holder (`locks.probe`).  This also catches a writable
    overlay the user cannot write, which Apptainer would silently mount read-only.
    """
    for overlay in plan.overlays:
        locks.probe(overlay.path, write=overlay.writable, wait=plan.wait_lock, notify=_note)
    base = plan.base_image
    if base is not None and "://" not in base and not os.path.exists(base):
        raise ConfigError(f"base image {base}: no such file", hint=_BASE_IMAGE_HINT)


def _note(text: str) -> None:
    """A notice while waiting for a lock (display is imported only then: the exec path)."""
    from condatainer.display import Reporter

    Reporter().note(text)


def execute(plan: Plan, binary: str, *, probe: bool = True) -> NoReturn:
    """Become `apptainer exec ...`: no Python process stays behind, its status is ours.

    Apptainer's own failures reach the terminal as its `FATAL:` lines; `run_captured` is the
    variant that turns them into our errors.
    """
    if probe:
        preflight(plan)
    args, env = command(plan, binary)
    # Anything still buffered (notices printed by the caller) would vanish with this process.
    sys.stdout.flush()
    sys.stderr.flush()
    from condatainer import runner

    runner.exec_(args, env)


def run_captured(
    plan: Plan, binary: str, *, stdin: bytes | None = None, probe: bool = True
) -> tuple[int, bytes, bytes]:
    """Run the plan to completion; return (status, stdout, stderr) with the bytes as written.

    The status is the command's own (128+N when signal N killed it).  When Apptainer itself
    failed (status 255 and a `FATAL:` line), the matching CondatainerError is raised instead.
    `runner.run` decodes output with surrogateescape, so encoding it back gives the exact bytes.
    """
    if probe:
        preflight(plan)
    from condatainer import runner

    args, env = command(plan, binary)
    result = runner.run(args, input=stdin, env=env)
    out = result.stdout.encode("utf-8", "surrogateescape")
    err = result.stderr.encode("utf-8", "surrogateescape")
    status = 128 - result.returncode if result.returncode < 0 else result.returncode
    failure = translate_failure(status, result.stderr, plan)
    if failure is not None:
        raise failure
    return status, out, err


# --- Apptainer's failures -> our errors -------------------------------------------------------

# Apptainer's FATAL messages that become precise errors.  Compiled on first use: `re` is
# not imported on the exec path, which never reads Apptainer's output.
_FATALS = {
    "locked": (
        r"can't open (?P<path>.+?) for (?P<mode>writing|reading), currently in use"
        r"(?: for writing)? by another process"
    ),
    "self_locked": r"can't open (?P<path>.+?) for \w+, already used for \w+ by this process",
    "upper": (
        r"setup of overlay (?:upper|work) dir failed: \S*?/overlay-images/(?P<index>\d+)/\S+"
        r" is not writable"
    ),
    "upper_any": r"setup of overlay (?:upper|work) dir failed",
    "unreadable": r"(?P<path>/.+?) is not readable by the current user",
    "overlay_missing": (
        r"failed to open overlay image (?P<path>.+?): failed to retrieve path for .*"
        r"no such file or directory"
    ),
    "not_ext3": (
        r"failed to open overlay image (?P<path>.+?): "
        r"(?P<why>image format not recognized|file is not a valid ext3 image)"
    ),
    "image_missing": (
        r"could not open image (?P<path>.+?): failed to retrieve path for .*"
        r"no such file or directory"
    ),
    "not_found": r'"(?P<cmd>[^"]+)": executable file not found in \$PATH',
    "bind_missing": r"mount source (?P<path>.+?) doesn't exist",
}
_compiled: dict[str, Pattern[str]] = {}


def _search(name: str, text: str) -> Match[str] | None:
    pattern = _compiled.get(name)
    if pattern is None:
        import re

        pattern = _compiled[name] = re.compile(_FATALS[name])
    return pattern.search(text)


def translate_failure(status: int, stderr: str, plan: Plan) -> CondatainerError | None:
    """The error for Apptainer's own failure in `stderr`, or None when the command ran.

    Only status 255 with a `FATAL:` line counts (a user command could print anything), plus a
    binary too old for `--no-eval`.  Known messages become precise errors; any other FATAL
    becomes a ContainerError quoting it.
    """
    if "unknown flag: --no-eval" in stderr:
        return RuntimeUnavailableError(
            "this Apptainer/Singularity is too old: it has no --no-eval option, which passing"
            " variables unevaluated needs",
            hint="use Apptainer 1.1 or newer (module load apptainer), or run as root to use the"
            " builtin runtime",
        )
    if status != 255:
        return None
    fatal = next((ln for ln in stderr.splitlines() if ln.startswith("FATAL:")), None)
    if fatal is None:
        return None
    text = fatal[len("FATAL:") :].strip()

    if m := _search("locked", text):
        return _lock_error(m["path"], write=m["mode"] == "writing", fatal=text)
    if m := _search("self_locked", text):
        return ContainerError(f"{m['path']}: given more than once as an overlay")
    if m := _search("upper", text):
        return _ownership_error(plan, int(m["index"]))
    if _search("upper_any", text):
        return _ownership_error(plan, None)
    if m := _search("unreadable", text):
        return LockError(
            f"{m['path']}: not readable by you", hint="ask the image's owner for access"
        )
    if m := _search("overlay_missing", text):
        path = m["path"]
        return LockError(
            f"{path}: no such image file", hint=f"create it with: condatainer o {path}"
        )
    if m := _search("not_ext3", text):
        path = m["path"]
        return ImageError(
            f"{path}: not an ext3 overlay image ({m['why']})",
            hint=f"check it with: condatainer overlay check {path}",
        )
    if m := _search("image_missing", text):
        return ConfigError(f"base image {m['path']}: no such file", hint=_BASE_IMAGE_HINT)
    if m := _search("not_found", text):
        return ContainerError(
            f"{m['cmd']}: command not found in the container",
            hint="install it into the environment (condatainer mm install ...)",
            exit_code=127,
        )
    if m := _search("bind_missing", text):
        return ContainerError(f"cannot bind {m['path']}: no such file or directory")
    return ContainerError(f"Apptainer failed before running the command: {text}")


def _lock_error(path: str, *, write: bool, fatal: str) -> LockError:
    """Apptainer met a lock: ask locks for the holder; if it is gone already, quote Apptainer."""
    try:
        locks.probe(path, write=write)
    except LockError as err:
        return err
    return LockError(
        f"{path}: was in use by another process when Apptainer started ({fatal})",
        hint="try again; a writable image can be used by one process at a time",
    )


def _ownership_error(plan: Plan, index: int | None) -> ContainerError:
    """Apptainer could not write the overlay's upper/: it belongs to someone else."""
    if index is not None and index < len(plan.overlays):
        image = plan.overlays[index].path
    elif plan.writable is not None:
        image = plan.writable.path
    else:
        image = "the writable overlay"
    if plan.fakeroot:
        return ContainerError(
            f"{image}: its upper/ directory is not owned by root, so --fakeroot cannot write it",
            hint=f"run without --fakeroot, or hand it to root: condatainer overlay chown {image}"
            " --root",
        )
    return ContainerError(
        f"{image}: its upper/ directory belongs to another user (0:0 means it was made for"
        " --fakeroot)",
        hint=f"run with --fakeroot, or take it over: condatainer overlay chown {image}",
    )
