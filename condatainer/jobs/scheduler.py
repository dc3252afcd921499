"""Is SLURM here?  The one probe `condatainer run` (config `submit: auto`) and `doctor` share.

`probe(environ)` answers with one of three states, so that a job meant for the cluster never
quietly runs on a login node:

- **absent** -- no `sbatch` on PATH, or an `sbatch` with no SLURM configuration at all (a
  workstation with the client installed, a CI machine): sbatch itself says "Could not establish
  a configuration source" when neither `SLURM_CONF`, nor its default slurm.conf, nor a
  configless controller (DNS SRV record) gives it one.  Running here is right.
- **ready** -- sbatch is configured (`sbatch --version` reads the configuration and says so).
  Whether the controller answers is known only when submitting; a refusal then is an error.
- **broken** -- SLURM is configured but sbatch does not work: `SLURM_CONF` names a file that is
  not there (sbatch would wait 60 s for it, then fail), the configuration does not parse,
  `sbatch --version` fails for another reason or does not answer in 15 s.  Running here would
  be wrong: the user's cluster is broken, not absent.

`sbatch --version` costs a few milliseconds and never contacts the controller.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from condatainer import runner

State = Literal["absent", "ready", "broken"]
_NO_CONFIGURATION = "Could not establish a configuration source"
_TIMEOUT = 15.0


@dataclass(frozen=True)
class Slurm:
    """What the probe found."""

    state: State
    sbatch: str | None  # the sbatch on PATH, if any
    detail: str  # one line, for notes, errors and doctor
    version: str | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "state": self.state,
            "sbatch": self.sbatch,
            "version": self.version,
            "detail": self.detail,
        }


def probe(environ: Mapping[str, str]) -> Slurm:
    """Look for a usable SLURM (see the module docstring)."""
    sbatch = runner.which("sbatch")
    if sbatch is None:
        return Slurm("absent", None, "no sbatch on PATH")
    conf = environ.get("SLURM_CONF", "")
    if conf and not os.path.isfile(conf):
        return Slurm("broken", sbatch, f"SLURM_CONF={conf} does not exist")
    try:
        res = runner.run([sbatch, "--version"], env={**environ, "LC_ALL": "C"}, timeout=_TIMEOUT)
    except subprocess.TimeoutExpired:
        return Slurm("broken", sbatch, f"{sbatch} --version did not answer in {_TIMEOUT:.0f} s")
    except OSError as exc:
        return Slurm("broken", sbatch, f"{sbatch} cannot be run: {exc.strerror}")
    said = [line.strip() for line in res.stderr.splitlines() if line.strip()]
    if res.ok:
        m = re.search(r"\d+\.\d+(?:\.\d+)?", res.stdout + "\n" + res.stderr)
        version = m.group(0) if m else None
        return Slurm("ready", sbatch, f"slurm {version or '(unknown version)'} ({sbatch})", version)
    if any(_NO_CONFIGURATION in line for line in said):
        return Slurm(
            "absent",
            sbatch,
            f"{sbatch} is installed but not configured (no slurm.conf, SLURM_CONF or"
            " configless controller)",
        )
    why = said[-1] if said else f"exit status {res.returncode}"
    return Slurm("broken", sbatch, f"{sbatch} does not work: {why}")
