"""`condatainer doctor`: what this machine has, what is missing, and what to do about it.

`check(env)` returns a list of `Check` results (data), `render(checks)` turns them into text,
`to_json(checks)` into `doctor --json`'s object and `exit_code(checks)` into the command's
status.  The runtime is the one `selection.select`
chooses and the builtin runtime's kernel checks are its own `probes()`, so doctor reports
exactly what `e`/`exec` will use and find.

Decisions:

- Required (a failure makes `doctor` exit 1): a readable config, e2fsprogs (>= 1.43, for `mke2fs
  -d`), a usable container runtime, including loop devices and overlayfs when that runtime is
  builtin, the base image that runtime will use, and micromamba.  The base: a configured one
  (-b aside) must exist and be a SIF, squashfs or directory; condatainer's default base
  (Apptainer) is fine when cached, a warning when missing but its registry answers (it is
  pulled on first use), and a failure when missing where it cannot be fetched (no network, a
  batch job).  micromamba: found (config `micromamba`), cached, or able to be fetched (a
  supported platform, a writable cache, zstd, a `file://` channel that exists, a readable
  `ca_bundle`); whether an https channel answers is not tried (doctor stays fast and offline):
  `condatainer micromamba` fetches it now and says why when it cannot.  Everything else is a
  warning: zstd when micromamba is already there (then only `overlay pack/unpack` need it),
  SLURM (only submitting needs it; `jobs.scheduler.probe`, the very probe `run` decides by),
  the shell hook (a choice, not a fault), and an
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
from condatainer.errors import (
    BaseImageError,
    CondatainerError,
    ConfigError,
    RuntimeUnavailableError,
)
from condatainer.hook import rcfile
from condatainer.image import layout, recovery
from condatainer.image.sizes import format_size
from condatainer.jobs import scheduler
from condatainer.run import basefetch, baseimage
from condatainer.run.runtime import INSTALL_APPTAINER, selection
from condatainer.run.runtime.selection import binary_flavour, container_binary

E2FSPROGS = ("mke2fs", "debugfs", "e2fsck", "resize2fs", "dumpe2fs")
MIN_E2FSPROGS = (1, 43)  # mke2fs -d (populate the filesystem from a directory)
DOCTOR_CONNECT_TIMEOUT = 5.0  # seconds: is the registry of a missing default base reachable


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
    site = config.paths(env)["site"]
    if site.exists():
        detail = f"site {site}; {detail}"
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


def _check_zstd(needed: bool) -> Check:
    path = runner.which("zstd")
    if path is None:
        detail = "not found: overlay pack/unpack unavailable"
        if needed:
            detail += ", and micromamba cannot be fetched (its channel index is zstd)"
        return Check(
            "zstd",
            False,
            detail,
            "apt-get install zstd (on a cluster: module load zstd)",
            required=needed,
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


def _check_base(cfg: config.Config, runtime: str | None, env: Mapping[str, str]) -> Check:
    """The base image the active runtime uses: configured, cached, or missing (and whether it
    can be fetched on first use from here)."""
    details = baseimage.info(baseimage.decide(None, cfg, runtime, Path.cwd(), env))
    choice = details.choice
    if choice.path is None:
        return Check("base image", True, "the host's root filesystem (builtin runtime)")
    if details.problem:
        return Check("base image", False, details.problem, _base_fix(cfg, choice))
    if details.exists:
        what = "cached" if choice.pull_from else choice.origin
        return Check("base image", True, f"{choice.path} ({what})")
    if choice.pull_from is None:  # configured, and not there
        return Check(
            "base image", False, f"{choice.path} ({choice.origin}): no such file",
            _base_fix(cfg, choice),
        )  # fmt: skip
    missing = f"{choice.path} missing"
    job = basefetch.job_of(env)
    if job is not None:
        return Check(
            "base image",
            False,
            f"{missing}; this is a batch job ({job}), where it is not fetched",
            "on a login node, run: condatainer base pull",
        )
    try:
        basefetch.check_reachable(choice.pull_from, timeout=DOCTOR_CONNECT_TIMEOUT)
    except BaseImageError as exc:
        return Check("base image", False, f"{missing}; {exc.message}", exc.hint)
    return Check(
        "base image",
        False,
        f"{missing}; it will be pulled from {choice.pull_from} on first use",
        "fetch it now: condatainer base pull",
        required=False,
    )


def _base_fix(cfg: config.Config, choice: baseimage.Choice) -> str:
    if choice.pull_from:
        return "fetch it again: condatainer base pull --force"
    if choice.origin.startswith("base_image"):
        return "fix it: condatainer config set base_image /path/to/base.sif (or '' for the default)"
    return "check the -b/--base image"


def _check_micromamba(cfg: config.Config, env: Mapping[str, str]) -> tuple[Check, bool]:
    """(the check, whether micromamba still has to be fetched)."""
    from condatainer import micromamba
    from condatainer.micromamba import info

    details = info.info(cfg, env)
    if details.problem is not None:
        return Check("micromamba", False, details.problem, "condatainer micromamba info"), False
    if details.path is not None:
        version = details.version or "unknown version"
        if details.source == "config":
            where = f"config micromamba, {details.path}"
        else:
            origin = details.origin
            frm = f", from {origin.channel}" if origin is not None else ""
            where = f"cached in {details.path}{frm}"
        if details.version is None:
            return (
                Check(
                    "micromamba",
                    False,
                    f"{details.path} does not run (`--version` failed)",
                    "condatainer micromamba --update (or check config micromamba)",
                ),
                False,
            )
        return Check("micromamba", True, f"{version} ({where})"), False
    fix = "condatainer micromamba (fetches it now and says why when it cannot)"
    try:
        platform = micromamba.subdir()
    except CondatainerError as exc:
        return Check("micromamba", False, exc.message, exc.hint), True
    problems = []
    channel = details.channel
    if channel.startswith("file://"):
        from urllib.parse import unquote, urlsplit

        if not os.path.isdir(unquote(urlsplit(channel).path)):
            problems.append(f"its channel {channel} does not exist")
    if cfg.ca_bundle and not os.access(os.path.expanduser(cfg.ca_bundle), os.R_OK):
        problems.append(f"config ca_bundle {cfg.ca_bundle} is not a readable file")
    cache = micromamba.cache_dir(cfg, env)
    existing = next((p for p in (cache, *cache.parents) if p.exists()), None)
    if existing is None or not os.access(existing, os.W_OK | os.X_OK):
        problems.append(f"its cache {cache} cannot be created ({existing} is not writable)")
    if problems:
        return Check("micromamba", False, "cannot be fetched: " + "; ".join(problems), fix), True
    return (
        Check(
            "micromamba",
            True,
            f"not fetched yet: will be fetched from {channel} ({details.series}.*, {platform})"
            f" on first use into {cache}",
        ),
        True,
    )


def _check_sbatch(env: Mapping[str, str]) -> Check:
    """SLURM, by the probe `condatainer run` uses to decide whether `submit: auto` submits."""
    found = scheduler.probe(env)
    if found.state == "ready":
        return Check("sbatch", True, found.detail)
    if found.state == "absent":
        return Check(
            "sbatch",
            False,
            f"{found.detail}: SLURM submission unavailable (condatainer run runs scripts here)",
            "on a cluster: module load slurm; on Debian/Ubuntu: apt-get install slurm-client",
            required=False,
        )
    return Check(
        "sbatch",
        False,
        f"{found.detail}: condatainer run refuses to submit (and refuses to run #SBATCH"
        " scripts here unless told --local)",
        "check the SLURM configuration (SLURM_CONF, slurm.conf), or module load slurm",
        required=False,
    )


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
    micromamba_check, to_fetch = _check_micromamba(cfg, env)
    checks = [
        config_check,
        _check_e2fsprogs(),
        _check_zstd(needed=to_fetch),
        _check_apptainer(cfg, needed=apptainer_needed),
        runtime_check,
    ]
    if chosen == "builtin" or cfg.runtime == "builtin":
        checks += _check_builtin(required=True)
    elif chosen is None and cfg.runtime == "auto":
        checks += _check_builtin(required=False)  # why the fallback could not be used
    if chosen is not None:
        checks.append(_check_base(cfg, chosen, env))
    checks += [micromamba_check, _check_sbatch(env), _check_hook(env), _check_leftovers(env)]
    return checks


def exit_code(checks: list[Check]) -> int:
    """1 if a required piece is missing, else 0 (warnings do not count)."""
    return 1 if any(c.status == "FAIL" for c in checks) else 0


def to_json(checks: list[Check]) -> dict[str, object]:
    """`doctor --json`: `ok` (nothing required is missing) and every check with its status
    ("ok", "warn", "FAIL"), detail and fix (null when there is none)."""
    return {
        "ok": exit_code(checks) == 0,
        "checks": [
            {
                "name": c.name,
                "status": c.status,
                "ok": c.ok,
                "required": c.required,
                "detail": c.detail,
                "fix": c.fix if not c.ok else None,
            }
            for c in checks
        ],
    }


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
