"""Carry out a Plan with the selected runtime: the seam between decisions and side effects.

`runtime.selection.select` picks apptainer, singularity or builtin.  `execute` runs a Plan
attached to the terminal (Apptainer replaces this process; the builtin runtime waits and
returns the status); `run` does the same but always comes back; `run_captured` runs one with
its output captured, for commands whose output we read.

Before Apptainer starts, condatainer's default base image is pulled if the Plan uses it and it
is not there yet (`basefetch.ensure`); the builtin runtime uses the host's root unless told
otherwise, so it never needs one.  `plan_for` provides condatainer's tools first
(`run.tools.provide`: the mm-* commands and micromamba, fetched when the run needs it and it is
not there yet), then resolves the Plan.

Nothing here prints.  The Plan's notices (decisions the user should know about, like an
automatic --fakeroot) go to the caller's `notify`, once, just before the runtime starts;
notices while fetching micromamba go to the `notify` given to `plan_for`, as they happen.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from condatainer import config
from condatainer.display import Notify
from condatainer.errors import RuntimeUnavailableError
from condatainer.run import baseimage
from condatainer.run import resolve as resolving
from condatainer.run.plan import Plan
from condatainer.run.resolve import Request, Settings, Tools, micromamba_need, resolve
from condatainer.run.runtime import handoff, selection


def settings(cfg: config.Config, tools: Tools | None = None) -> Settings:
    return Settings(
        binds=cfg.binds,
        gpu=cfg.gpu,
        base_image=cfg.base_image,
        default_base=baseimage.default_for(cfg, _runtime_name(cfg)),
        base_source=cfg.base_source,
        tools=tools,
    )


def _runtime_name(cfg: config.Config) -> str | None:
    """The runtime that will run the Plan, or None when none can (`execute` says why later:
    a dry run or a missing image is reported first)."""
    try:
        return selection.select(cfg).name
    except RuntimeUnavailableError:
        return None


def _quiet(_: str) -> None:
    pass


def plan_for(
    req: Request,
    cfg: config.Config,
    environ: Mapping[str, str] | None = None,
    notify: Notify | None = None,
) -> Plan:
    """The Plan for `req`, with condatainer's tools provided as far as the run needs them."""
    from condatainer.run import tools

    environ = os.environ if environ is None else environ
    provided = tools.provide(micromamba_need(req), cfg, notify or _quiet, environ)
    return resolve(req, settings(cfg, provided), environ=environ)


def remember(
    words: Sequence[str],
    req: Request,
    plan: Plan,
    cfg: config.Config,
    environ: Mapping[str, str],
    also: Sequence[str] = (),
) -> None:
    """Write down the decision `plan` for exec's arguments `words`, so that the next identical
    call replays it (`run.replay`); `also`: more paths the caller's checks read (allow records).

    Not when the runtime cannot be chosen (the run is about to fail), when condatainer's
    default base is still to be pulled (a replay would skip the pull), or when the decision
    read an image's content (the owner of a writable image's upper/, for a user who is not
    root: `resolve._auto_fakeroot`)."""
    from condatainer import micromamba
    from condatainer.run import replay

    try:
        chosen = selection.select(cfg)
    except RuntimeUnavailableError:
        return
    if chosen.binary and plan.base_pull and plan.base_image and not os.path.exists(plan.base_image):
        return
    if plan.writable is not None and os.geteuid() != 0:
        return
    paths = [
        *map(str, config.files(environ)),
        *resolving.watched(req, plan, cfg.binds, environ),
        *selection.watched(cfg, environ),
        str(micromamba.cached_binary(cfg, environ)),
        *([cfg.micromamba] if cfg.micromamba else []),
        *([chosen.binary] if chosen.binary else []),
        *also,
    ]
    replay.record(words, plan, chosen.binary, paths, replay.cache_dir(environ), environ)


def require_micromamba(cfg: config.Config, notify: Notify) -> None:
    """Fetch micromamba now if it is not there (before anything is written that needs it)."""
    from condatainer.micromamba import bootstrap

    bootstrap.ensure(cfg, notify, os.environ)


def _binary(plan: Plan, cfg: config.Config, notify: Notify) -> str | None:
    """The Apptainer/Singularity binary to run `plan` with, or None for the builtin runtime.

    The runtime is chosen and the Plan's notices told here, once, for all three ways of
    running below; condatainer's default base is pulled here on its first need.
    """
    chosen = selection.select(cfg)
    for note in plan.notices:
        notify(note)
    _fetch_base(plan, chosen.binary, notify)
    return chosen.binary


def fetch_base(plan: Plan, cfg: config.Config, notify: Notify) -> None:
    """Pull condatainer's default base now if `plan` will need it and it is not there yet:
    before a job is submitted, on the login node, where the network is."""
    try:
        binary = selection.select(cfg).binary
    except RuntimeUnavailableError:
        return  # the job will say so, in the words of the node it runs on
    _fetch_base(plan, binary, notify)


def _fetch_base(plan: Plan, binary: str | None, notify: Notify) -> None:
    if binary is not None and plan.base_pull is not None and plan.base_image:
        from condatainer.run import basefetch

        basefetch.ensure(plan.base_image, plan.base_pull, binary, os.environ, notify)


def execute(plan: Plan, cfg: config.Config, notify: Notify) -> int:
    """Run the Plan's command attached to the terminal; return its exit status."""
    return handoff.execute(plan, _binary(plan, cfg, notify))


def run(plan: Plan, cfg: config.Config, notify: Notify) -> int:
    """Run the Plan's command attached to the terminal and come back with its status.

    Unlike `execute`, this never replaces the process: the caller has work to do afterwards
    (publishing a new image, refreshing shims after `mm install`).
    """
    binary = _binary(plan, cfg, notify)
    if binary is None:
        from condatainer.run.runtime import builtin

        return builtin.execute(plan)
    from condatainer import runner
    from condatainer.run.runtime import apptainer

    apptainer.preflight(plan)
    argv, env = apptainer.command(plan, binary)
    return runner.stream(argv, env=env)


def run_captured(
    plan: Plan, cfg: config.Config, notify: Notify, *, stdin: bytes | None = None
) -> tuple[int, bytes, bytes]:
    """Run the Plan's command with stdout and stderr captured."""
    binary = _binary(plan, cfg, notify)
    if binary is None:
        from condatainer.run.runtime import builtin

        return builtin.run_captured(plan, stdin=stdin)
    from condatainer.run.runtime import apptainer

    return apptainer.run_captured(plan, binary, stdin=stdin)
