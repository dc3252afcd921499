"""`condatainer o` / `overlay create`: make an env image and, when asked, install into it.

`prepare` checks everything that can be wrong before a byte is written -- size, profile, the
name, the environment file, and (when packages are to be installed) that a container runtime
exists -- and returns a `Creation` (data: what would be made and installed; `--dry-run` shows
it).  `create` carries it out: the image is built by `image.create`, and with packages the env is
installed into it through the container *before* it is published (`create(prepare=...)`), so a
failed or interrupted install leaves nothing behind and never clobbers a file that appeared
meanwhile.  The env's channels follow one rule (`config.env_channels`): the user's `-c` first,
then an environment file's, then config `channels` (conda-forge by default, or a site's mirror;
not with `--override-channels`); they are saved to `/ext3/env/.condarc` at creation, so the
first `mm install` of an empty image uses them too.  micromamba is fetched (if it is not there
yet) before the image is created.  `variables:` of an environment.yml are saved to the sidecar
`<image>.env`.  New images are allowed for shell activation (trust).

Nothing here prints: notices and progress go to the caller's `Reporter`.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from condatainer import config, newenv
from condatainer.display import Reporter
from condatainer.errors import ContainerError, ImageExistsError, UsageError
from condatainer.image import envfile as sidecars
from condatainer.image import files, layout, profiles, sizes
from condatainer.newenv import Created
from condatainer.record import Record

# What only an install needs (the env spec, the container launch) is imported where it is
# used: an empty `condatainer o` does not pay for it.
if TYPE_CHECKING:
    from condatainer.run import envspec


class Creation(Record):
    """What `condatainer o` will do, decided and checked; nothing exists yet."""

    target: Path
    size_bytes: int
    profile: profiles.Profile
    spec: envspec.EnvSpec | None  # None: an empty env, created on first `mm install`
    channels: tuple[str, ...]  # saved to .condarc
    sidecar_text: str | None  # `variables:` of an environment.yml, for <image>.env
    fakeroot: bool
    sparse: bool
    notices: tuple[str, ...] = ()
    base: str | None = None  # -b: the base image the install runs in


def condarc_text(channels: Sequence[str]) -> bytes:
    """A minimal .condarc holding only the channels (a YAML list, each item quoted as data)."""
    lines = ["channels:"] + [f"  - {json.dumps(c)}" for c in channels]
    return ("\n".join(lines) + "\n").encode()


# Stands for the requirements file in a pip step's command until `create` has written it.
REQUIREMENTS = "\0requirements"


class Step(Record):
    """One container command that initialises the env, and what it needs from the host."""

    command: tuple[str, ...]
    bind_paths: tuple[str, ...] = ()  # host directories it reads (bound read-write)
    cwd: str | None = None
    requirements: tuple[str, ...] = ()  # pip: the lines of the requirements file to write


def install_steps(spec: envspec.EnvSpec) -> list[Step]:
    """The container commands that initialise an env from `spec`, in order.

    A pip: section is installed the way conda and micromamba install it: its lines go to a
    requirements file written in the environment file's directory, and `python -m pip install
    -r FILE` runs there, with that directory bound (see run/envspec.py).  `--src` keeps the
    checkouts of `-e git+...` entries inside the image instead of the host directory.
    """
    from condatainer.run.mm import TABLE

    install = TABLE["install"].argv
    here = (spec.directory,) if spec.directory else ()
    if spec.kind in ("explicit", "lock") and spec.source:
        # micromamba reads these files itself: an @EXPLICIT list of package URLs (what they
        # name on the host is bound read-only: install_reads), or a conda-lock file (whose pip
        # packages it installs too).
        steps = [Step((*install, "-f", spec.source), bind_paths=here, cwd=spec.directory)]
    else:
        steps = [Step((*install, *spec.install_specs()))]
    if spec.pip:
        pip = (
            f"{layout.CONTAINER_PREFIX}/bin/python",
            "-m",
            "pip",
            "install",
            "--no-input",
            "--src",
            f"{layout.CONTAINER_PREFIX}/src",
            "-r",
            REQUIREMENTS,
        )
        steps.append(Step(pip, bind_paths=here, cwd=spec.directory, requirements=spec.pip))
    steps.append(Step(TABLE["clean"].argv))
    return steps


def install_reads(spec: envspec.EnvSpec) -> tuple[str, ...]:
    """What the install commands read on the host (resolve binds what exists there): an
    explicit file and the package URLs in it, and the channels."""
    source = (spec.source,) if spec.kind in ("explicit", "lock") and spec.source else ()
    return (*source, *spec.channels, *(c for c in spec.conda if c.startswith("file://")))


def show(command: Sequence[str], spec: envspec.EnvSpec) -> str:
    """A step's command as text, the requirements file named by its pattern."""
    where = os.path.join(spec.directory or ".", "condaenv.*.requirements.txt")
    return " ".join(where if word == REQUIREMENTS else word for word in command)


@contextlib.contextmanager
def requirements_file(step: Step, notices: list[str]) -> Iterator[str | None]:
    """The requirements file of a pip step, for as long as the step runs (then removed).

    It goes where conda and micromamba put theirs, beside the environment file; when that
    directory is not writable, into a private temporary directory instead (bound as well),
    and a `-r`/`--find-links` relative to the file then misses: `notices` says so.
    """
    if not step.requirements:
        yield None
        return
    import tempfile

    text = "".join(line + "\n" for line in step.requirements)
    where = step.cwd or os.getcwd()
    fallback: str | None = None
    try:
        fd, path = tempfile.mkstemp(prefix="condaenv.", suffix=".requirements.txt", dir=where)
    except OSError:
        fallback = tempfile.mkdtemp(prefix="condatainer-pip.")
        fd, path = tempfile.mkstemp(prefix="condaenv.", suffix=".requirements.txt", dir=fallback)
        notices.append(
            f"{where} is not writable: the pip requirements file is written to {fallback};"
            " relative -r/-c/--find-links entries resolve against that directory instead"
        )
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(path, 0o644)
        yield path
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
        if fallback is not None:
            with contextlib.suppress(OSError):
                os.rmdir(fallback)


def check_spec(spec: str) -> str:
    """A package spec given after `--`, refused when it would reach micromamba as an option."""
    if not spec.strip() or spec.startswith("-"):
        raise UsageError(
            f"not a package spec: {spec!r}",
            hint="condatainer o -- numpy 'scipy>=1.11' -c conda-forge",
        )
    return spec


def prepare(
    *,
    image: str | None,
    size: str | None,
    profile: str | None,
    deprecated_type: bool,
    envfile: str | None,
    pkgs: Sequence[str],
    channels: Sequence[str],
    fakeroot: bool,
    override_channels: bool = False,
    sparse: bool,
    dry_run: bool,
    base: str | None = None,
) -> Creation:
    """Decide and check everything `condatainer o` will do; raise before anything is written."""
    cfg = config.load(os.environ)
    files_read = [str(path) for path in config.files(os.environ)]
    newenv.remember(cfg, condarc_text(config.env_channels(cfg)), files_read, os.environ)
    if envfile and pkgs:
        raise UsageError("give an environment file (-f) or packages (-- PKG...), not both")
    if (channels or override_channels) and not (pkgs or envfile):
        what = "-c/--channel" if channels else "--override-channels"
        raise UsageError(f"{what} goes with packages", hint="condatainer o -- PKG... -c CH")
    size_bytes = sizes.parse_size(cfg.default_size if size is None else size)
    prof = profiles.resolve_profile(cfg.default_profile if profile is None else profile)
    notices: list[str] = []
    if deprecated_type:
        notices.append("-t/--type is deprecated; use -p/--profile")
    target = layout.normalise_image_name(image or layout.AUTOLOAD_NAME)
    spec: envspec.EnvSpec | None = None
    if envfile or pkgs:
        from condatainer.run import envspec
    if envfile:
        spec = envspec.load(envfile)
    elif pkgs:
        checked = [check_spec(p) for p in pkgs]
        spec = envspec.EnvSpec(name=None, channels=(), conda=tuple(checked), kind="packages")
    if spec is not None:  # the one rule: -c first, then the file's, then config channels
        requested = [*channels, *spec.channels]
        if (override_channels or config.NO_DEFAULTS in requested) and not (
            set(requested) - {config.NO_DEFAULTS}
        ):
            raise UsageError(
                f"{'--override-channels' if override_channels else config.NO_DEFAULTS}"
                " leaves no channel: name one with -c CHANNEL"
                + (f" or in {envfile}" if envfile else ""),
                hint="condatainer o -- PKG... -c CHANNEL --override-channels",
            )
        chosen = config.env_channels(cfg, requested, override=override_channels)
        import dataclasses

        spec = dataclasses.replace(spec, channels=chosen)
    for path in spec.editable() if spec else ():
        notices.append(
            f"pip installs {path} in editable mode: the env imports it from that host"
            f" directory, so bind it whenever you use the env (--bind {path})"
        )
    # Rendered now so that a variable the sidecar cannot carry fails before anything exists.
    sidecar_text = sidecars.render(spec.variables) if spec and spec.variables else None
    notices += spec.notes if spec else ()
    creation = Creation(
        target=target, size_bytes=size_bytes, profile=prof, spec=spec,
        channels=spec.channels if spec else config.env_channels(cfg), sidecar_text=sidecar_text,
        fakeroot=fakeroot, sparse=sparse, notices=tuple(notices), base=base,
    )  # fmt: skip
    if dry_run:
        return creation
    files.check_target(target)
    warning = files.sparse_warning(target, size_bytes) if sparse else None
    if warning is not None:
        creation = creation.replace(notices=(*creation.notices, warning))
    sidecar = sidecars.sidecar_path(target)
    if sidecar_text is not None and sidecar.exists():
        raise ImageExistsError(
            f"{sidecar}: already exists; it would receive the variables:",
            hint=f"move it away, or remove it: rm {sidecar}",
        )
    if spec is not None:
        from condatainer.run.runtime import selection

        selection.select(cfg)  # no runtime: fail now, before creating anything
    return creation


def dry_run_report(creation: Creation) -> dict[str, Any]:
    """What `o --dry-run --json` prints: the env spec (empty when there is none)."""
    from condatainer.run import envspec

    empty = envspec.EnvSpec(name=None, channels=(), conda=(), kind="empty")
    return (creation.spec or empty).to_json()


def dry_run_lines(creation: Creation) -> list[str]:
    """What `o --dry-run` prints."""
    lines = [
        f"would create {creation.target} ({sizes.format_size(creation.size_bytes)},"
        f" profile {creation.profile.name})"
    ]
    spec = creation.spec
    if spec is not None:
        lines.append("channels: " + ", ".join(spec.channels))
        lines += [f"{'conda':9} {s}" for s in spec.conda]
        lines += [f"{'pip':9} {s}" for s in (*spec.pip, *spec.lock_pip)]
        lines += [
            f"{'selector':9} {s.selector}: {s.spec} ({'used' if s.applied else 'skipped'})"
            for s in spec.selectors
        ]
        for step in install_steps(spec):
            where = f" (in {step.cwd})" if step.cwd else ""
            lines.append(f"would run: {show(step.command, spec)}{where}")
    return lines


def create(creation: Creation, report: Reporter) -> Created:
    """Make the image `creation` describes, install its env, publish it, allow it."""
    cfg = config.load(os.environ)
    spec = creation.spec
    target = creation.target
    notices: list[str] = []

    def install(temp: Path) -> None:
        from condatainer.run import launch, mm
        from condatainer.run.resolve import NEED, Request

        assert spec is not None
        for step in install_steps(spec):
            with requirements_file(step, notices) as reqfile:
                command = tuple(
                    reqfile if w == REQUIREMENTS and reqfile else w for w in step.command
                )
                req = Request(
                    command=command,
                    images=(str(temp),),
                    writable=True,
                    default_binds=False,
                    bind_paths=step.bind_paths + ((os.path.dirname(reqfile),) if reqfile else ()),
                    cwd=step.cwd,
                    reads=install_reads(spec),
                    base_image=creation.base,
                    micromamba=NEED,
                )
                plan = launch.plan_for(req, cfg, notify=report.note)
                progress.stage(f"installing: {mm.describe(command, 4)}")
                report.step(f"running: {mm.describe(command)}")
                # Captured, so that Apptainer's FATAL lines become our errors (runtime.apptainer).
                status, out, err = launch.run_captured(plan, cfg, report.note)
            report.output(out, err)
            if status != 0:
                raise ContainerError(
                    f"{target}: installing the env failed ({mm.describe(command, 4)} exited"
                    f" {status}); no image was created",
                    hint="check the package names and channels, then run the same command again",
                )

    with report.progress(newenv.title(target, creation.size_bytes, creation.sparse)) as progress:
        if spec is not None:  # before any file exists: a failed fetch leaves nothing behind
            from condatainer.run import launch

            launch.require_micromamba(cfg, report.note, progress)
        with newenv.begin(
            target, creation.size_bytes, creation.profile, condarc_text(creation.channels),
            sparse=creation.sparse, fakeroot=creation.fakeroot, progress=progress,
            notify=report.note,
        ) as making:  # fmt: skip
            result = making.finish(install if spec is not None else None)
    return newenv.published(
        creation.target, creation.size_bytes, creation.profile, result,
        sidecar_text=creation.sidecar_text, empty=spec is None, notices=notices,
    )  # fmt: skip
