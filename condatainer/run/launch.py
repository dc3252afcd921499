"""Carry out a Plan with the selected runtime: the seam between decisions and side effects.

`select_runtime` (in doctor, which also reports it) picks apptainer, singularity or builtin from
the configuration, PATH and the effective uid.  `execute` runs a Plan attached to the terminal
(Apptainer replaces this process; the builtin runtime waits and returns the status);
`run_captured` runs one with its output captured, for commands whose output we read.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

from condatainer import config
from condatainer.run.plan import Plan
from condatainer.run.resolve import Request, Settings, resolve


def settings(cfg: config.Config) -> Settings:
    return Settings(binds=cfg.binds, gpu=cfg.gpu, base_image=cfg.base_image)


def plan_for(req: Request, cfg: config.Config, environ: Mapping[str, str] | None = None) -> Plan:
    return resolve(req, settings(cfg), environ=os.environ if environ is None else environ)


def _announce(plan: Plan) -> None:
    for note in plan.notices:
        print(note, file=sys.stderr)


def _binary(plan: Plan, cfg: config.Config) -> str | None:
    """The Apptainer/Singularity binary to run `plan` with, or None for the builtin runtime.

    The runtime is chosen (doctor.select_runtime) and the Plan's notices printed here, once,
    for all three ways of running below.
    """
    from condatainer.doctor import container_binary, select_runtime

    name = select_runtime(cfg, os.environ)
    _announce(plan)
    if name == "builtin":
        return None
    binary = container_binary(cfg, name)
    assert binary is not None  # select_runtime checked it
    return binary


def execute(plan: Plan, cfg: config.Config) -> int:
    """Run the Plan's command attached to the terminal; return its exit status."""
    binary = _binary(plan, cfg)
    if binary is None:
        from condatainer.run.runtime import builtin

        return builtin.execute(plan)
    from condatainer.run.runtime import apptainer

    apptainer.execute(plan, binary)


def run(plan: Plan, cfg: config.Config) -> int:
    """Run the Plan's command attached to the terminal and come back with its status.

    Unlike `execute`, this never replaces the process: the caller has work to do afterwards
    (publishing a new image, refreshing shims after `mm install`).
    """
    binary = _binary(plan, cfg)
    if binary is None:
        from condatainer.run.runtime import builtin

        return builtin.execute(plan)
    from condatainer import runner
    from condatainer.run.runtime import apptainer

    apptainer.preflight(plan)
    argv, env = apptainer.command(plan, binary)
    return runner.stream(argv, env=env)


def run_captured(
    plan: Plan, cfg: config.Config, *, stdin: bytes | None = None
) -> tuple[int, bytes, bytes]:
    """Run the Plan's command with stdout and stderr captured."""
    binary = _binary(plan, cfg)
    if binary is None:
        from condatainer.run.runtime import builtin

        return builtin.run_captured(plan, stdin=stdin)
    from condatainer.run.runtime import apptainer

    return apptainer.run_captured(plan, binary, stdin=stdin)


def run_then_show(plan: Plan, cfg: config.Config) -> int:
    """Run captured (so Apptainer's FATAL lines become our errors), then show the output."""
    status, out, err = run_captured(plan, cfg)
    for stream, data in ((sys.stdout, out), (sys.stderr, err)):
        stream.flush()
        stream.buffer.write(data)
        stream.flush()
    return status


def execute_request(req: Request) -> int:
    """Resolve a request with the user's configuration and run it."""
    cfg = config.load(os.environ)
    return execute(plan_for(req, cfg), cfg)
