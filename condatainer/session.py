"""Interactive entry (`condatainer e`) and package operations (`condatainer mm`).

`entry` prepares `e`: for `-- CMD` the Plan as resolved; for a shell, the user's shell (bash,
zsh or fish, `hook.shells.detect`; anything else gets bash) when the base image has it, else
bash with a one-line notice (the base is listed without mounting it: `run.baseimage.info`; the
host root for the builtin runtime), with a generated rc: the user's own rc first, then the
env's `etc/conda/activate.d/*.sh` (fish: `*.fish`), the prompt marker and the `mm-*`
completion (the `mm-*` commands are on the container's PATH: `run.tools`).  The marker is
`hook.prompt.marker`, the cd hook's, with the container's nesting level (`CNT_LEVEL` of the
Plan's environment, else `IN_CONDATAINER`, which holds the same number).  The rc is written
once per content into the cache directory and that directory is bound read-only into the
container, so nothing has to be cleaned up after Apptainer replaces us.  The caller shows the
banner and executes the Plan.

`mm_op` runs one operation of the mm table through a Plan that is writable only when the
operation writes, so `mm list` works while jobs hold the image read-only.

Nothing here prints: notices go to the caller's `Reporter`, the banner comes back as lines.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from condatainer import atomic, config, shellgen
from condatainer.display import Notify, Reporter
from condatainer.errors import ShellError
from condatainer.hook import prompt, shells, shims
from condatainer.image import envfile
from condatainer.image.layout import CONTAINER_PREFIX
from condatainer.run import baseimage, launch, mm, resolve
from condatainer.run.plan import Bind, Plan
from condatainer.run.resolve import NEED, USE, Request


@dataclass(frozen=True)
class Entry:
    """What `condatainer e` runs, and the lines to show before it starts."""

    plan: Plan
    banner: tuple[str, ...] = ()


#: The rc file's name per shell (zsh finds `.zshrc` through ZDOTDIR; the others are named).
_RC_NAMES = {"bash": "bashrc", "zsh": ".zshrc", "fish": "rc.fish"}


def container_rc(shell: str, marker: str) -> str:
    """The rc text for an interactive shell in the container (the mm-* commands are on PATH)."""
    return shellgen.render("container-rc", shell, marker=marker, prefix=CONTAINER_PREFIX)


def marker(plan: Plan) -> str:
    """The prompt marker of `e`: the env's name (hook.prompt.env_name of the top image) and the
    nesting level the container gets."""
    env = dict(plan.env)
    level = prompt.level(env.get("CNT_LEVEL") or env.get("IN_CONDATAINER") or "1")
    name = prompt.env_name(plan.overlays[0].path) if plan.overlays else None
    return prompt.marker(name, level)


def _write_rc(shell: str, text: str) -> Path:
    data = text.encode("utf-8", "surrogateescape")  # an image name need not be UTF-8
    digest = hashlib.sha256(data).hexdigest()[:16]
    directory = config.paths()["cache"] / "rc" / digest
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / _RC_NAMES[shell]
    if not path.exists():
        atomic.replace(path, data, 0o644)
    return path


def banner(plan: Plan) -> tuple[str, ...]:
    """The "Overlay envs:" lines for interactive entry (note if present, else value)."""
    lines: list[str] = []
    for overlay in plan.overlays:
        side = envfile.load(overlay.path)
        if side is not None:
            lines += envfile.banner(side)
    return ("Overlay envs:", *lines) if lines else ()


def _shell(plan: Plan, cfg: config.Config, notify: Notify) -> str:
    """The user's shell, chosen the way `init` chooses, when the base image has it; else bash
    (with a notice saying why, when the user's shell is one we support).  condatainer's
    default base is fetched first if it is not there yet (the run would fetch it anyway)."""
    try:
        wanted = shells.detect(None)
    except ShellError:
        return "bash"
    if wanted == "bash":
        return wanted
    launch.fetch_base(plan, cfg, notify)
    details = baseimage.info(baseimage.Choice(plan.base_image, "the run's base"))
    base = plan.base_image or "the host's root filesystem"
    if details.shells is not None and details.shells.get(wanted):
        return wanted
    if details.shells is not None:
        notify(f"{wanted} is not in the base image ({base}); starting bash")
    else:
        why = details.shells_note or details.problem or "it cannot be read"
        notify(f"cannot tell whether the base image has {wanted} ({base}: {why}); starting bash")
    return "bash"


def entry(req: Request, cfg: config.Config, notify: Notify) -> Entry:
    """`condatainer e`: the Plan to execute (checked images and locks) and its banner.

    `notify` hears about micromamba being fetched for the session (an interactive shell wants
    it for the mm-* commands)."""
    # Checks images and locks before any file is written.
    plan = launch.plan_for(req, cfg, notify=notify)
    if req.command:
        return Entry(plan)
    shell = _shell(plan, cfg, notify)
    rc = _write_rc(shell, container_rc(shell, marker=marker(plan)))
    if shell == "fish":
        extra: tuple[tuple[str, str], ...] = ()
        command: tuple[str, ...] = ("fish", "-i", "-C", f"source {shellgen.quote_fish(str(rc))}")
    elif shell == "zsh":
        user_zdotdir = os.environ.get("ZDOTDIR") or os.environ.get("HOME", "")
        extra = (("ZDOTDIR", str(rc.parent)), ("CNT_USER_ZDOTDIR", user_zdotdir))
        command = ("zsh", "-i")
    else:
        extra = ()
        command = ("bash", "--rcfile", str(rc), "-i")
    # The same Plan with the shell as its command; the rc's directory is bound read-only so
    # the shell finds it even under -c/-C or with the cache outside $HOME.
    rc_dir = os.path.realpath(rc.parent)
    plan = plan.replace(
        command=command,
        env=(*plan.env, *extra),
        binds=(*plan.binds, Bind(rc_dir, rc_dir, readonly=True)),
    )
    return Entry(plan, banner(plan))


def mm_request(
    req: Request, op: mm.Op, args: Sequence[str], channels: Sequence[str] = ()
) -> Request:
    """The Request for `mm OP ARGS`: writable when the operation writes; the channels and files
    it names, the configured `channels` and those of the image's .condarc are what it reads
    on the host (resolve binds those that are local directories)."""
    reads = (*resolve.named_reads(args), *channels)
    return replace(
        req,
        command=mm.command(op, args),
        writable=op.writable(args),
        reads=reads,
        reads_condarc=True,
        micromamba=NEED if op.micromamba else USE,
    )


def mm_op(
    req: Request, name: str, args: Sequence[str], report: Reporter, *, capture: bool = False
) -> int:
    """Run `mm NAME ARGS` on the request's image; refresh host caches after writes.

    `capture` runs it with the output captured and then shown (`overlay export`), so that a
    failure of Apptainer itself is translated into our error instead of a raw FATAL line.
    """
    op = mm.lookup(name)
    cfg = config.load(os.environ)
    plan = launch.plan_for(mm_request(req, op, args, cfg.channels), cfg, notify=report.note)
    if capture:
        status, out, err = launch.run_captured(plan, cfg, report.note)
        report.output(out, err)
    else:
        status = launch.run(plan, cfg, report.note)
    if op.refresh:  # the env's executables and packages may have changed: host-side caches
        for overlay in plan.overlays:
            if overlay.writable:
                note = shims.after_mm(overlay.path, cfg.shim_exclude)
                if note is not None:
                    report.note(note)
    return status
