"""Interactive entry (`condatainer e`) and package operations (`condatainer mm`).

`enter` runs `-- CMD` in the container, or starts the user's shell (bash or zsh, detected with
shellingham; anything else gets bash) with a generated rc: the user's own rc first, then the
env's `etc/conda/activate.d/*.sh`, the prompt marker and the `mm-*` functions rendered from the
mm table.  The rc is written once per content into the cache directory and that directory is bound
read-only into the container, so nothing has to be cleaned up after Apptainer replaces us.

`mm` runs one operation of the mm table through a Plan that is writable only when the
operation writes, so `mm list` works while jobs hold the image read-only.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from condatainer import atomic, config
from condatainer.run import envfile, launch, mm
from condatainer.run.plan import CONTAINER_PREFIX, Bind, Plan
from condatainer.run.resolve import Request


def detect_shell() -> str:
    """bash or zsh, chosen the way `init` chooses (CNT_SHELL, the shell we were started from,
    $SHELL); anything else gets bash."""
    from condatainer.errors import ShellError
    from condatainer.hook import init as hostshell

    try:
        return hostshell.detect_shell(None)
    except ShellError:
        return "bash"


def container_rc(shell: str, marker: str) -> str:
    """The rc text for an interactive shell in the container."""
    from condatainer import shellgen

    ops = [
        {
            "name": op.name,
            "argv": list(op.argv),
            "bare": list(op.bare_args),
            "script": mm.script_text(op) if op.script else None,
        }
        for op in mm.TABLE.values()
    ]
    return shellgen.render("container-rc", shell, ops=ops, marker=marker, prefix=CONTAINER_PREFIX)


def _write_rc(shell: str, text: str) -> Path:
    data = text.encode("utf-8", "surrogateescape")  # an image name need not be UTF-8
    digest = hashlib.sha256(data).hexdigest()[:16]
    directory = config.paths()["cache"] / "rc" / digest
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / (".zshrc" if shell == "zsh" else "bashrc")
    if not path.exists():
        atomic.replace(path, data, 0o644)
    return path


def banner(plan: Plan) -> list[str]:
    """The "Overlay envs:" lines for interactive entry (note if present, else value)."""
    lines: list[str] = []
    for overlay in plan.overlays:
        side = envfile.load(overlay.path)
        if side is not None:
            lines += envfile.banner(side)
    return ["Overlay envs:", *lines] if lines else []


def enter(req: Request) -> int:
    cfg = config.load(os.environ)
    if req.command:
        return launch.execute(launch.plan_for(req, cfg), cfg)
    shell = detect_shell()
    plan = launch.plan_for(req, cfg)  # checks images and locks before any file is written
    name = Path(plan.overlays[0].path).name if plan.overlays else "cnt"
    rc = _write_rc(shell, container_rc(shell, marker=f"({name})"))
    if shell == "zsh":
        user_zdotdir = os.environ.get("ZDOTDIR") or os.environ.get("HOME", "")
        extra: tuple[tuple[str, str], ...] = (("ZDOTDIR", str(rc.parent)),
                                              ("CNT_USER_ZDOTDIR", user_zdotdir))
        command: tuple[str, ...] = ("zsh", "-i")
    else:
        extra = ()
        command = ("bash", "--rcfile", str(rc), "-i")
    # The same Plan with the shell as its command; the rc's directory is bound read-only so
    # the shell finds it even under -c/-C or with the cache outside $HOME.
    rc_dir = os.path.realpath(rc.parent)
    plan = replace(plan, command=command, env=(*plan.env, *extra),
                   binds=(*plan.binds, Bind(rc_dir, rc_dir, readonly=True)))
    for line in banner(plan):
        print(line, file=sys.stderr)
    return launch.execute(plan, cfg)


def mm_request(req: Request, op: mm.Op, args: Sequence[str]) -> Request:
    return replace(req, command=mm.command(op, args), writable=op.writable(args))


def mm_op(req: Request, name: str, args: Sequence[str], *, capture: bool = False) -> int:
    """Run `mm NAME ARGS` on the request's image; refresh host caches after writes.

    `capture` runs it with the output captured and then printed (`overlay export`), so that a
    failure of Apptainer itself is translated into our error instead of a raw FATAL line.
    """
    op = mm.lookup(name)
    cfg = config.load(os.environ)
    plan = launch.plan_for(mm_request(req, op, args), cfg)
    status = launch.run_then_show(plan, cfg) if capture else launch.run(plan, cfg)
    if op.refresh:  # the env's executables and packages may have changed: host-side caches
        from condatainer.hook import shims

        for overlay in plan.overlays:
            if overlay.writable:
                note = shims.after_mm(overlay.path, cfg.shim_exclude)
                if note is not None:
                    print(note, file=sys.stderr)
    return status
