"""`condatainer doctor`: what this machine has, what is missing, and what to do about it.

`check(env)` returns a list of `Check` results (data), `render(checks)` turns them into text and
`exit_code(checks)` into the command's status.  The runtime is the one `selection.select`
chooses and the builtin runtime's kernel checks are its own `probes()`, so doctor reports
exactly what `e`/`exec` will use and find.

Decisions:

- Required (a failure makes `doctor` exit 1): a readable config, e2fsprogs (>= 1.43, for
  `mke2fs -d`), and a usable container runtime, including loop devices and overlayfs when that
  runtime is builtin.  Everything else is a warning: zstd (only `overlay pack/unpack` need it),
  sbatch (only `run --submit` needs it), the shell hook (a choice, not a fault), and an
  Apptainer binary while another runtime is in use.
- Tools are found with `runner.which` on this process's PATH (plus the sbin directories), the
  same way condatainer will start them; `env` supplies HOME, ZDOTDIR, XDG_* and CNT_* only.
- Fixes never contain URLs: they name Debian packages or the `module load` of HPC sites.
- Leftovers of interrupted commands (`image.recovery.leftovers`) are looked for in the working
  directory and beside the image `e` would pick from it (autoload) or `$CNT_OVERLAY`: a
  warning listing each with its size and the command that repairs it.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from condatainer import config, runner, shellgen
from condatainer.errors import ConfigError, RuntimeUnavailableError
from condatainer.hook import rcfile
from condatainer.image import layout, recovery
from condatainer.image.sizes import format_size
from condatainer.run.runtime import INSTALL_APPTAINER, selection
from condatainer.run.runtime.selection import binary_flavour, container_binary

E2FSPROGS = ("mke2fs", "debugfs", "e2fsck", "resize2fs", "dumpe2fs")
MIN_E2FSPROGS = (1, 43)  # mke2fs -d (populate the filesystem from a directory)


@dataclass(frozen=True)
class Check:
    """One line of the doctor's report.  A failed check that is not `required` is a warning."""

    name: str
    ok: bool
    detail: str
    fix: str | None = None
    required: bool = True

    @property
    def status(self) -> str:
        """ "ok", "warn" (optional piece missing) or "FAIL" (required piece missing)."""
        if self.ok:
            return "ok"
        return "FAIL" if self.required else "warn"


# --------------------------------------------------------------------------------------------
# Checks


def _version(argv: list[str]) -> str | None:
    """The first version number a tool prints for `argv` (on stdout or stderr), if any.

    Exit codes are ignored: `resize2fs -V` prints its version and then fails on the option.
    """
    try:
        res = runner.run(argv, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"\d+\.\d+(?:\.\d+)?", res.stdout + "\n" + res.stderr)
    return m.group(0) if m else None


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def _check_config(env: Mapping[str, str]) -> tuple[Check, config.Config]:
    path = config.paths(env)["config"]
    try:
        cfg = config.load(env)
    except ConfigError as exc:
        return Check("config", False, exc.message, exc.hint), config.Config()
    overridden = sorted({s for s in cfg.sources.values() if s.startswith("env ")})
    detail = str(path) if path.exists() else f"no file at {path}; defaults"
    if overridden:
        detail += "; overridden by " + ", ".join(s[4:] for s in overridden)
    return Check("config", True, detail), cfg


def _check_e2fsprogs() -> Check:
    found = {name: runner.which(name) for name in E2FSPROGS}
    missing = [name for name, path in found.items() if path is None]
    fix = "apt-get install e2fsprogs (on a cluster: module load e2fsprogs)"
    if missing:
        return Check("e2fsprogs", False, "missing: " + ", ".join(missing), fix)
    mke2fs = found["mke2fs"]
    assert mke2fs is not None
    version = _version([mke2fs, "-V"])
    where = os.path.dirname(mke2fs)
    if version is None:
        return Check("e2fsprogs", False, f"{mke2fs} -V printed no version", fix)
    if _version_tuple(version)[:2] < MIN_E2FSPROGS:
        need = ".".join(map(str, MIN_E2FSPROGS))
        return Check(
            "e2fsprogs",
            False,
            f"version {version} in {where} is too old (mke2fs -d needs {need} or newer)",
            f"install e2fsprogs {need} or newer (module load e2fsprogs, or a newer distribution)",
        )
    return Check("e2fsprogs", True, f"{version} ({', '.join(E2FSPROGS)} in {where})")


def _check_zstd() -> Check:
    path = runner.which("zstd")
    if path is None:
        return Check(
            "zstd",
            False,
            "not found: overlay pack/unpack unavailable",
            "apt-get install zstd (on a cluster: module load zstd)",
            required=False,
        )
    version = _version([path, "--version"]) or "unknown version"
    return Check("zstd", True, f"{version} ({path})")


def _check_apptainer(cfg: config.Config, needed: bool) -> Check:
    name = "apptainer"
    if cfg.apptainer_bin:
        path = container_binary(cfg, "apptainer")
        if path is None:
            return Check(
                name,
                False,
                f"apptainer_bin {cfg.apptainer_bin!r} ({cfg.source('apptainer_bin')}) is not"
                " an executable file or not on PATH",
                "condatainer config set apptainer_bin /path/to/apptainer (or leave it unset)",
                required=needed,
            )
    else:
        path = runner.which("apptainer") or runner.which("singularity")
        if path is None:
            return Check(
                name,
                False,
                "neither apptainer nor singularity is on PATH",
                INSTALL_APPTAINER,
                required=needed,
            )
    version = _version([path, "--version"]) or "unknown version"
    return Check(name, True, f"{binary_flavour(path)} {version} ({path})")


def _check_runtime(cfg: config.Config) -> tuple[Check, str | None]:
    try:
        chosen = selection.select(cfg)
    except RuntimeUnavailableError as exc:
        return Check("runtime", False, exc.message, exc.hint), None
    return Check("runtime", True, f"{chosen.name} ({chosen.how})"), chosen.name


def _check_builtin(required: bool) -> list[Check]:
    """The builtin runtime's own probes (root, loop devices, overlayfs, CAP_SYS_ADMIN)."""
    from condatainer.run.runtime import builtin

    return [Check(f"builtin: {p.name}", p.ok, p.detail, p.fix, required) for p in builtin.probes()]


def _check_sbatch() -> Check:
    path = runner.which("sbatch")
    if path is None:
        return Check(
            "sbatch",
            False,
            "not found: SLURM submission unavailable (scripts run locally)",
            "on a cluster: module load slurm; on Debian/Ubuntu: apt-get install slurm-client",
            required=False,
        )
    try:
        res = runner.run([path, "--version"], timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        res = runner.Result((path, "--version"), 127, "", str(exc))
    if not res.ok:
        # Installed but unusable, e.g. no slurm.conf: `sbatch --version` already fails then.
        lines = res.stderr.strip().splitlines()
        why = lines[-1] if lines else f"exit status {res.returncode}"
        return Check(
            "sbatch",
            False,
            f"{path} does not work ({why}): SLURM submission unavailable",
            "check the SLURM configuration (slurm.conf), or module load slurm",
            required=False,
        )
    m = re.search(r"\d+\.\d+(?:\.\d+)?", res.stdout + "\n" + res.stderr)
    return Check("sbatch", True, f"slurm {m.group(0) if m else 'unknown version'} ({path})")


def _check_hook(env: Mapping[str, str]) -> Check:
    """Is the rc block in ~/.bashrc or ${ZDOTDIR:-~}/.zshrc, and is the hook file it sources there?

    The block sources the hook only when the file exists, so a lost hook file (a cleaned
    ~/.local/share) silently turns the integration off: that is a warning, not "installed".
    """
    installed: list[str] = []
    for shell in shellgen.SHELLS:
        rc = rcfile.rc_path(shell, env)
        try:
            text = rc.read_bytes()
        except OSError:
            continue
        if rcfile.BEGIN not in text:
            continue
        hook = rcfile.hook_path(shell, env)
        if not hook.is_file():
            return Check(
                "shell hook",
                False,
                f"{rc} has the condatainer block but its hook file {hook} is missing",
                f"condatainer init {shell}",
                required=False,
            )
        installed.append(str(rc))
    if installed:
        return Check("shell hook", True, "installed in " + ", ".join(installed))
    names = " or ".join(str(rcfile.rc_path(shell, env)) for shell in shellgen.SHELLS)
    return Check(
        "shell hook",
        False,
        f"not installed (no condatainer block in {names})",
        "condatainer init",
        required=False,
    )


def _check_leftovers(env: Mapping[str, str]) -> Check:
    """What interrupted commands left in the working directory and beside its image."""
    here = layout.logical_cwd(env)
    places = [here]
    for image in (layout.find_image(here, env), env.get("CNT_OVERLAY")):
        if image:
            places.append(Path(os.path.abspath(image)).parent)
    shown: list[str] = []
    found: list[recovery.Leftover] = []
    for place in dict.fromkeys(places):
        shown.append(str(place))
        found += recovery.leftovers(place)
    where = ", ".join(shown)
    if not found:
        return Check("leftovers", True, f"none in {where}")
    total = sum(left.size_bytes for left in found)
    detail = "; ".join(left.render() for left in found)
    fixes = " ; ".join(dict.fromkeys(left.repair for left in found if left.repair))
    return Check(
        "leftovers",
        False,
        f"{len(found)} left by interrupted commands ({format_size(total)}): {detail}",
        fixes or None,
        required=False,
    )


def check(env: Mapping[str, str] | None = None) -> list[Check]:
    """Run every check; never raises for what it finds (a bad config is a failed check)."""
    env = os.environ if env is None else env
    config_check, cfg = _check_config(env)
    runtime_check, chosen = _check_runtime(cfg)
    apptainer_needed = cfg.runtime in ("apptainer", "singularity") or chosen is None
    checks = [
        config_check,
        _check_e2fsprogs(),
        _check_zstd(),
        _check_apptainer(cfg, needed=apptainer_needed),
        runtime_check,
    ]
    if chosen == "builtin" or cfg.runtime == "builtin":
        checks += _check_builtin(required=True)
    elif chosen is None and cfg.runtime == "auto":
        checks += _check_builtin(required=False)  # why the fallback could not be used
    checks += [_check_sbatch(), _check_hook(env), _check_leftovers(env)]
    return checks


def exit_code(checks: list[Check]) -> int:
    """1 if a required piece is missing, else 0 (warnings do not count)."""
    return 1 if any(c.status == "FAIL" for c in checks) else 0


def render(checks: list[Check]) -> str:
    """The report: one line per check, its fix indented under it, a summary line last."""
    name_w = max((len(c.name) for c in checks), default=0)
    lines: list[str] = []
    for c in checks:
        lines.append(f"{c.status:<4}  {c.name:<{name_w}}  {c.detail}")
        if not c.ok and c.fix:
            lines.append(f"{'':<4}  {'':<{name_w}}  fix: {c.fix}")
    failed = [c.name for c in checks if c.status == "FAIL"]
    warned = [c.name for c in checks if c.status == "warn"]
    if failed:
        summary = f"missing required pieces: {', '.join(failed)}"
    else:
        summary = "everything required is present"
    if warned:
        summary += f" (optional, missing: {', '.join(warned)})"
    lines.append(summary)
    return "\n".join(lines)
