"""Every decision about a container run, made in one place: a `Request` in, a `Plan` out.

The CLI turns flags into a `Request` (plain values); `resolve` looks at the images, the
environment and the configuration and decides: which overlays and how (at most one writable),
binds (defaults: cwd, $SCRATCH, $TMPDIR, scheduler tmp dirs, the script's directory; resolved,
deduplicated, children dropped; plus, read-only, what the command reads on the host: a
file:// channel's directory, an -f file's directory), the container environment (sidecar
`<image>.env`, `--env K=V` taken whole — no comma splitting — then the variables condatainer
owns; over the hygiene defaults, without the host's CA variables: `hygiene`; sidecar values
that reference variables become the expansion wrapper's words: `expansion`), GPU flags and
Apptainer options (`-A` words and the options passed through before the command,
`run.apptainer_flags`; an explicit `--nv` wins over config `gpu`: `apptainer_args`), fakeroot
and isolation, and the base image (`baseimage.choose`: -b, config base_image, else
condatainer's default base when the runtime needs one; `Settings.default_base` says whether
it does).  Unless the request says `check_locks=False` (dry runs), every image has
passed the lock probe and the clean-superblock check before a Plan is returned, so a runtime
does not start on an image it cannot use (the runtimes check again when they take the lock).
Before those checks, what an interrupted resize, chown or create left is dealt with
(`image.recovery`): a writable image is repaired (it is about to be written anyway; the repair
becomes one of the Plan's notices), a read-only one is refused with the repair command (a reader
must not write).

Every Plan also gets condatainer's tools (`Settings.tools`, see `run.tools`): a directory bound
read-only at /opt/condatainer/bin, right after /ext3/env/bin on PATH, with the `mm-*` commands
and micromamba (its binary bound over the directory's placeholder).  How much a run needs
micromamba is decided here too (`micromamba_need`): mm operations and env installs, and a
command that is `micromamba` or an `mm-*` command, need it (fetched, or the run fails with the
reason); an interactive shell wants it (fetched if it can be, else a notice); anything else
uses what is there and never waits for the network.

Autoload follows `image.layout.find_image`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from condatainer import bindspec
from condatainer.errors import CondatainerError, ImageBusyError, UsageError
from condatainer.image import e2fs, envfile, info, locks, recovery
from condatainer.image.layout import UPPER, find_image, logical_cwd
from condatainer.micromamba import CONTAINER_BIN, CONTAINER_MICROMAMBA
from condatainer.run import baseimage
from condatainer.run.containerenv import container_env
from condatainer.run.plan import Bind, Overlay, Plan

# Scheduler/job tmp directories bound by default when set: SLURM, PBS, LSF, HTCondor.
JOB_TMP_VARS = (
    "SLURM_TMPDIR",
    "PBS_JOBFS",
    "LSF_TMPDIR",
    "__LSF_JOB_TMPDIR__",
    "_CONDOR_SCRATCH_DIR",
)

# GPU kinds and the device node that says the host has one.
_GPU_DEVICES = (("nv", "/dev/nvidiactl"), ("rocm", "/dev/kfd"))

# How much a run needs micromamba (micromamba_need): fetch it or fail / try / only if there.
NEED, WANT, USE = "need", "want", "use"


@dataclass(frozen=True)
class Request:
    """What the user asked for, as plain values (no argparse)."""

    command: tuple[str, ...]
    images: tuple[str, ...] = ()  # as typed; an `IMG:ro`/`IMG:rw` suffix sets the mode
    writable: bool = False  # the first image without a suffix is writable
    autoload: bool = False  # find an image from the working directory when none is given
    base_image: str | None = None
    binds: tuple[str, ...] = ()  # user `--bind HOST[:CONTAINER[:ro]]`
    env: tuple[str, ...] = ()  # user `--env KEY=VALUE`
    fakeroot: bool = False
    contain: bool = False
    containall: bool = False
    cleanenv: bool = False
    workdir: str | None = None
    extra_args: tuple[str, ...] = ()
    # Apptainer's own options typed before the command (`--nv`, `--home=/x`), passed through
    # (`run.apptainer_flags`); `apptainer_args` decides what they change.
    apptainer: tuple[str, ...] = ()
    script_dir: str | None = None  # `run`: the script's directory is bound
    reads: tuple[str, ...] = ()  # host files and file:// channels the command reads (`read_binds`)
    reads_condarc: bool = False  # it also reads the channels of the first image's .condarc
    # Directories of condatainer's own generated programs (`run`: the module stubs): bound
    # read-only at the same path and put last on the container's PATH.
    helper_dirs: tuple[str, ...] = ()
    # Host directories bound read-write at their own path, even without default binds (taken
    # as paths, not bind specs: a ':' is part of the name).
    bind_paths: tuple[str, ...] = ()
    cwd: str | None = None  # the command's working directory (default: ours)
    check_locks: bool = True
    wait_lock: float | None = None  # --wait-lock: seconds to wait for a busy image (inf: no limit)
    gpu: str | None = None  # overrides config gpu: auto|on|off
    default_binds: bool = True
    notices: tuple[str, ...] = field(default=())
    micromamba: str | None = None  # NEED/WANT/USE; None: decided from the command


@dataclass(frozen=True)
class Tools:
    """condatainer's tools for a run: the directory bound at CONTAINER_BIN, and micromamba."""

    directory: str  # host directory with the mm-* commands and the micromamba placeholder
    micromamba: str | None = None  # host binary bound over the placeholder, when there is one


@dataclass(frozen=True)
class Settings:
    """The configuration values resolve needs (from config.load(), passed in by the caller)."""

    binds: tuple[str, ...] = ()
    gpu: str = "auto"
    base_image: str | None = None
    default_base: str | None = None  # condatainer's default base, when the runtime needs one
    base_source: str | None = None  # where the default base is pulled from
    tools: Tools | None = None  # None: no tools (a Plan for inspection only)
    host_ca_env: str = "clear"  # config host_ca_env: clear the host's CA variables, or keep


def micromamba_need(req: Request) -> str:
    """NEED, WANT or USE: how much this run needs micromamba (see the module docstring)."""
    if req.micromamba is not None:
        return req.micromamba
    if not req.command:
        return WANT  # an interactive shell: the mm-* commands are what people type there
    first = os.path.basename(req.command[0])
    return NEED if first == "micromamba" or first.startswith("mm-") else USE


def tool_binds(tools: Tools | None) -> list[Bind]:
    """The tools directory at CONTAINER_BIN, micromamba over its placeholder (read-only)."""
    if tools is None:
        return []
    found = [Bind(os.path.realpath(tools.directory), CONTAINER_BIN, readonly=True)]
    if tools.micromamba:
        found.append(Bind(os.path.realpath(tools.micromamba), CONTAINER_MICROMAMBA, True))
    return found


def _split_mode(text: str) -> tuple[str, bool | None]:
    for suffix, writable in ((":ro", False), (":rw", True)):
        if text.endswith(suffix):
            return text[: -len(suffix)], writable
    return text, None


def overlays(req: Request, cwd: Path, environ: Mapping[str, str]) -> tuple[Overlay, ...]:
    """Decide the overlays and their modes; at most one may be writable."""
    given = list(req.images)
    if not given and req.autoload:
        found = find_image(cwd, environ)
        if found is None:
            raise UsageError(
                f"no env.img or env-{environ.get('USER', '$USER')}.img found in {cwd},"
                " its overlay/ or src/overlay/, or any parent directory",
                hint="create one with: condatainer o   (or name an image: condatainer e IMAGE)",
            )
        given = [str(found)]
    result: list[Overlay] = []
    default_rw = req.writable
    for text in given:
        path_text, mode = _split_mode(text)
        writable = default_rw if mode is None else mode
        if mode is None:
            default_rw = False  # only the first image takes the default writable mode
        # os.path.expanduser leaves `~nosuchuser/...` as it is (Path.expanduser raises).
        absolute = os.path.realpath(cwd / os.path.expanduser(path_text))
        result.append(Overlay(absolute, writable))
    writers = [o.path for o in result if o.writable]
    if len(writers) > 1:
        raise UsageError(
            "more than one writable image: " + ", ".join(writers),
            hint="a container can write to one image; mark the others read-only with IMAGE:ro",
        )
    return tuple(result)


def _parse_bind(text: str) -> Bind:
    try:
        given, container, readonly = bindspec.split(text)
    except ValueError as bad:
        raise UsageError(f"invalid {bad}", hint=f"use --bind {bindspec.FORM}") from None
    host = os.path.realpath(os.path.expanduser(given))
    if not os.path.exists(host):
        raise UsageError(
            f"bind source {given!r} does not exist", hint="create it first, or drop the --bind"
        )
    return Bind(host, container or host, readonly=readonly)


def binds(
    req: Request,
    settings: Settings,
    cwd: Path,
    environ: Mapping[str, str],
    ovls: Sequence[Overlay] = (),
) -> tuple[Bind, ...]:
    """Requested and default binds: resolved, deduplicated, children of a bound dir dropped.

    User binds come first so that, for one container path, what the user asked for wins; then
    configured binds; then the defaults (which are skipped silently when they do not exist).
    """
    candidates = [_parse_bind(t) for t in (*req.binds, *settings.binds)]
    candidates += tool_binds(settings.tools)
    candidates += [Bind(d, d, readonly=True) for d in req.helper_dirs]
    paths = (os.path.realpath(os.path.expanduser(p)) for p in req.bind_paths)
    candidates += [Bind(p, p) for p in paths if os.path.isdir(p)]
    if req.default_binds:
        defaults = [str(cwd), environ.get("SCRATCH", ""), environ.get("TMPDIR", "")]
        defaults += [environ.get(v, "") for v in JOB_TMP_VARS]
        defaults.append(req.script_dir or "")
        # Paths, not bind specs: a ':' in a directory name is part of the name here.
        real = (os.path.realpath(os.path.expanduser(d)) for d in defaults if d)
        candidates += [Bind(r, r) for r in real if os.path.isdir(r)]
    kept: list[Bind] = []
    for bind in candidates:
        if bind.container == "/":
            continue  # the base already shows the host root; binding / over / means nothing
        if all(k.container != bind.container for k in kept):
            kept.append(bind)
    parents = [b.host for b in kept if b.host == b.container and not b.readonly]

    def covered(b: Bind) -> bool:
        return (
            b.host == b.container
            and not b.readonly
            and any(b.host.startswith(p + "/") for p in parents)
        )

    # Parents before children: a bind mounted later hides what lies below it, so a read-only
    # bind inside the working directory must come after the working directory's bind.
    remaining = [b for b in kept if not covered(b)]
    reads = req.reads
    if req.reads_condarc and ovls:
        # Not an image (yet): the runtime says so in its own words.
        with contextlib.suppress(CondatainerError):
            reads += info.condarc_channels(ovls[0].path)
    remaining += read_binds(reads, remaining, cwd)
    return tuple(sorted(remaining, key=lambda b: b.container.rstrip("/").count("/")))


def named_reads(args: Sequence[str]) -> tuple[str, ...]:
    """The words of a micromamba command line that name what it reads on the host: the values
    of -c/--channel and -f/--file, and any file:// URL."""
    found: list[str] = []
    take = False
    for word in args:
        if take:
            found.append(word)
            take = False
        elif word in ("-c", "--channel", "-f", "--file"):
            take = True
        elif word.startswith(("--channel=", "--file=")):
            found.append(word.split("=", 1)[1])
        elif word.startswith("file://"):
            found.append(word)
    return tuple(found)


def read_binds(reads: Sequence[str], binds: Sequence[Bind], cwd: Path) -> list[Bind]:
    """Read-only binds for what a command reads on the host (`Request.reads`): a `file://`
    channel's directory, an -f file's directory.  Words that name nothing on the host (channel
    names, package specs) are skipped, and so is what a bind already shows."""
    from urllib.parse import unquote, urlsplit

    found: list[Bind] = []
    for word in reads:
        if word.startswith("file://"):
            path = unquote(urlsplit(word).path)
        elif word.startswith("/") or (os.sep in word and "://" not in word):
            path = os.path.join(cwd, os.path.expanduser(word))
        else:
            continue
        if not path or not os.path.exists(path):
            continue
        real = os.path.realpath(path if os.path.isdir(path) else os.path.dirname(path))
        if real == "/" or any(
            b.host == b.container and (real == b.host or real.startswith(b.host.rstrip("/") + "/"))
            for b in (*binds, *found)
        ):
            continue
        found.append(Bind(real, real, readonly=True))
    return found


def gpu_flags(mode: str) -> tuple[str, ...]:
    """`--nv` when /dev/nvidiactl exists, `--rocm` when /dev/kfd exists; `off` disables."""
    if mode == "off":
        return ()
    found = tuple(flag for flag, dev in _GPU_DEVICES if os.path.exists(dev))
    if mode == "on" and not found:
        raise UsageError(
            "gpu is 'on' but neither /dev/nvidiactl nor /dev/kfd exists",
            hint="condatainer config set gpu auto",
        )
    return found


# The Apptainer switches that say yes or no to a GPU kind the configuration would decide.
_GPU_SWITCHES = {"--nv": ("nv", True), "--rocm": ("rocm", True)}
_GPU_SWITCHES |= {"--no-nv": ("nv", False), "--no-rocm": ("rocm", False)}


def apptainer_args(req: Request, gpu: Sequence[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(GPU kinds, Apptainer options) of the Plan: `-A` arguments, then the options passed
    through (each self-contained word once).  An explicit `--nv`/`--rocm` (or `--no-nv`,
    `--no-rocm`) there wins over the configuration's `gpu`: that kind leaves the GPU list, so
    the Apptainer command line says it once, as the user did (`--nv` with `gpu: off` runs
    with --nv)."""
    passed = [w for w in dict.fromkeys(req.apptainer) if w not in req.extra_args]
    extra = (*req.extra_args, *passed)  # -A words as given (an option and its value may pair)
    said = {_GPU_SWITCHES[w][0] for w in extra if w in _GPU_SWITCHES}
    return tuple(kind for kind in gpu if kind not in said), extra


def _auto_fakeroot(ovls: Sequence[Overlay]) -> tuple[bool, str | None]:
    """Fakeroot when the writable image's upper/ belongs to root (made with --fakeroot).

    Only root: fakeroot makes us root inside, which cannot write another user's files, so an
    upper/ owned by some other uid is left for the runtime's ownership error and its
    `overlay chown` hint.
    """
    writable = next((o for o in ovls if o.writable), None)
    if writable is None or os.geteuid() == 0:
        return False, None
    entry = e2fs.stat(writable.path, UPPER)
    if entry is None or entry.uid != 0:
        return False, None
    return True, f"upper/ of {writable.path} is owned by root; using --fakeroot"


def watched(
    req: Request, plan: Plan, config_binds: Sequence[str], environ: Mapping[str, str]
) -> list[str]:
    """The host paths whose state `resolve` read to make `plan` (for `run.replay`): each image
    as given and as resolved, their sidecar files, the sources of the binds asked for and the
    default bind directories (bound only when they exist), the base image, condatainer's tools
    and micromamba, and the GPU device nodes."""
    here = plan.cwd
    found: list[str] = []
    for text in req.images:
        found.append(os.path.join(here, os.path.expanduser(_split_mode(text)[0])))
    for overlay in plan.overlays:
        found += [overlay.path, str(envfile.sidecar_path(overlay.path))]
    found += [str(envfile.sidecar_path(p)) for p in found[: len(req.images)]]
    for text in (*req.binds, *config_binds):
        with contextlib.suppress(ValueError):
            found.append(os.path.join(here, os.path.expanduser(bindspec.split(text)[0])))
    if req.default_binds:
        defaults = [environ.get(v, "") for v in ("SCRATCH", "TMPDIR", *JOB_TMP_VARS)]
        found += [
            os.path.join(here, os.path.expanduser(d)) for d in (*defaults, req.script_dir) if d
        ]
        found.append(here)
    for base in (req.base_image, plan.base_image):
        if base and "://" not in base:
            found.append(os.path.join(here, os.path.expanduser(base)))
    found += [b.host for b in plan.binds if b.container.startswith(CONTAINER_BIN)]
    found += [dev for _, dev in _GPU_DEVICES]
    return found


def resolve(
    req: Request,
    settings: Settings,
    *,
    environ: Mapping[str, str],
    cwd: str | None = None,
) -> Plan:
    """Decide everything about one container run and check its images can be used now."""
    chosen = req.cwd or cwd
    here = Path(chosen) if chosen else logical_cwd(environ)
    ovls = overlays(req, here, environ)
    notices = list(req.notices)
    if req.check_locks:
        for overlay in ovls:
            if overlay.writable:
                recovery.repair_before_writing(Path(overlay.path), notices.append)
            else:
                recovery.refuse_if_interrupted(Path(overlay.path))
            try:
                locks.probe(overlay.path, write=overlay.writable)
            except ImageBusyError:
                if req.wait_lock is None:
                    raise
                continue  # the runtime waits for it, then checks its superblock
            e2fs.require_clean(overlay.path)
    fakeroot = req.fakeroot
    if not fakeroot:
        fakeroot, note = _auto_fakeroot(ovls)
        if note:
            notices.append(note)
    workdir = req.workdir
    if workdir is None and (req.contain or req.containall):
        workdir = environ.get("SLURM_TMPDIR") or None
    base = baseimage.choose(
        req.base_image, settings.base_image, settings.default_base, settings.base_source, here
    )
    gpu, extra_args = apptainer_args(req, gpu_flags(req.gpu or settings.gpu))
    env, unset, wrapper = container_env(
        ovls,
        req.env,
        environ,
        req.helper_dirs,
        tools=settings.tools is not None,
        host_ca_env=settings.host_ca_env,
    )
    return Plan(
        command=req.command,
        overlays=ovls,
        cwd=str(here),
        env=env,
        unset=unset,
        wrapper=wrapper,
        binds=binds(req, settings, here, environ, ovls),
        base_image=base.path,
        base_pull=base.pull_from,
        gpu=gpu,
        fakeroot=fakeroot,
        contain=req.contain,
        containall=req.containall,
        cleanenv=req.cleanenv,
        workdir=workdir,
        extra_args=extra_args,
        wait_lock=req.wait_lock,
        notices=tuple(notices),
    )
