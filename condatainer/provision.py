"""`condatainer o` / `overlay create`: make an env image and, when asked, install into it.

`prepare` checks everything that can be wrong before a byte is written -- size, profile, the
name, the environment file, and (when packages are to be installed) that a container runtime
exists -- and returns a `Creation` (data: what would be made and installed; `--dry-run` shows
it).  `create` carries it out: the image is built by `image.create`, and with packages the env is
installed into it through the container *before* it is published (`create(prepare=...)`), so a
failed or interrupted install leaves nothing behind and never clobbers a file that appeared
meanwhile.  The channels are saved to `/ext3/env/.condarc` at creation (config `channels`,
conda-forge by default), so the first `mm install` of an empty image uses them too.
`variables:` of an environment.yml are saved to the sidecar `<image>.env`.  New images are
allowed for shell activation (trust).

Nothing here prints: notices and progress go to the caller's `Reporter`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from condatainer import atomic, config
from condatainer.display import Reporter
from condatainer.errors import ContainerError, ImageExistsError, UsageError
from condatainer.hook import trust
from condatainer.image import envfile as sidecars
from condatainer.image import files, layout, profiles, sizes
from condatainer.image.create import create as create_image
from condatainer.run import envspec, launch
from condatainer.run.mm import TABLE
from condatainer.run.resolve import Request
from condatainer.run.runtime import selection


@dataclass(frozen=True)
class Creation:
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


@dataclass(frozen=True)
class Created:
    """A published image, and what the user should be told about it."""

    path: Path
    size_bytes: int
    sparse: bool
    profile: profiles.Profile
    empty: bool  # no packages installed yet
    notices: list[str] = field(default_factory=list)


def condarc_text(channels: Sequence[str]) -> bytes:
    """A minimal .condarc holding only the channels (a YAML list, each item quoted as data)."""
    lines = ["channels:"] + [f"  - {json.dumps(c)}" for c in channels]
    return ("\n".join(lines) + "\n").encode()


def install_commands(spec: envspec.EnvSpec) -> list[tuple[str, ...]]:
    """The container commands that initialise an env from `spec`, in order."""
    install = TABLE["install"].argv
    if spec.explicit and spec.source:
        # An @EXPLICIT file lists package URLs: micromamba installs it as a file, not as specs
        # (the file's directory is bound into the container, see install_binds).
        commands: list[tuple[str, ...]] = [(*install, "-f", spec.source)]
    else:
        commands = [(*install, *spec.install_specs())]
    if spec.pip:
        commands.append(
            (
                f"{layout.CONTAINER_PREFIX}/bin/python",
                "-m",
                "pip",
                "install",
                "--no-input",
                *spec.pip,
            )
        )
    commands.append(TABLE["clean"].argv)
    return commands


def install_binds(spec: envspec.EnvSpec) -> tuple[str, ...]:
    """Host directories the install commands read from (an explicit file's directory)."""
    if spec.explicit and spec.source:
        return (os.path.dirname(spec.source),)
    return ()


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
    sparse: bool,
    dry_run: bool,
) -> Creation:
    """Decide and check everything `condatainer o` will do; raise before anything is written."""
    cfg = config.load(os.environ)
    if envfile and pkgs:
        raise UsageError("give an environment file (-f) or packages (-- PKG...), not both")
    if channels and not (pkgs or envfile):
        raise UsageError("-c/--channel goes with packages", hint="condatainer o -- PKG... -c CH")
    size_bytes = sizes.parse_size(cfg.default_size if size is None else size)
    prof = profiles.resolve_profile(cfg.default_profile if profile is None else profile)
    notices: list[str] = []
    if deprecated_type:
        notices.append("-t/--type is deprecated; use -p/--profile")
    target = layout.normalise_image_name(image or layout.AUTOLOAD_NAME)
    spec: envspec.EnvSpec | None = None
    if envfile:
        spec = envspec.load(envfile)
        if channels:
            spec = replace(spec, channels=(*channels, *spec.channels))
    elif pkgs:
        checked = [check_spec(p) for p in pkgs]
        spec = envspec.EnvSpec(name=None, channels=tuple(channels), conda=tuple(checked))
    if spec is not None and not spec.channels:
        spec = replace(spec, channels=cfg.channels)
    # Rendered now so that a variable the sidecar cannot carry fails before anything exists.
    sidecar_text = sidecars.render(spec.variables) if spec and spec.variables else None
    notices += spec.notes if spec else ()
    creation = Creation(
        target=target, size_bytes=size_bytes, profile=prof, spec=spec,
        channels=spec.channels if spec else cfg.channels, sidecar_text=sidecar_text,
        fakeroot=fakeroot, sparse=sparse, notices=tuple(notices),
    )  # fmt: skip
    if dry_run:
        return creation
    files.check_target(target)
    sidecar = sidecars.sidecar_path(target)
    if sidecar_text is not None and sidecar.exists():
        raise ImageExistsError(
            f"{sidecar}: already exists; it would receive the variables:",
            hint=f"move it away, or remove it: rm {sidecar}",
        )
    if spec is not None:
        selection.select(cfg)  # no runtime: fail now, before creating anything
    return creation


def dry_run_report(creation: Creation) -> dict[str, Any]:
    """What `o --dry-run --json` prints: the env spec (empty when there is none)."""
    empty = envspec.EnvSpec(name=None, channels=(), conda=())
    return (creation.spec or empty).to_json()


def dry_run_lines(creation: Creation) -> list[str]:
    """What `o --dry-run` prints."""
    lines = [
        f"would create {creation.target} ({sizes.format_size(creation.size_bytes)},"
        f" profile {creation.profile.name})"
    ]
    if creation.spec is not None:
        lines.append("channels: " + ", ".join(creation.spec.channels))
        lines += ["would run: " + " ".join(c) for c in install_commands(creation.spec)]
    return lines


def create(creation: Creation, report: Reporter) -> Created:
    """Make the image `creation` describes, install its env, publish it, allow it."""
    cfg = config.load(os.environ)
    spec = creation.spec
    target = creation.target

    def install(temp: Path) -> None:
        assert spec is not None
        for command in install_commands(spec):
            req = Request(
                command=command,
                images=(str(temp),),
                writable=True,
                default_binds=False,
                binds=install_binds(spec),
            )
            plan = launch.plan_for(req, cfg)
            report.step(f"running: {' '.join(command[:5])} ...")
            # Captured, so that Apptainer's FATAL lines become our errors (runtime.apptainer).
            status, out, err = launch.run_captured(plan, cfg, report.note)
            report.output(out, err)
            if status != 0:
                raise ContainerError(
                    f"{target}: installing the env failed ({' '.join(command[:4])}... exited"
                    f" {status}); no image was created",
                    hint="check the package names and channels, then run the same command again",
                )

    result = create_image(
        target, creation.size_bytes, creation.profile, sparse=creation.sparse,
        fakeroot=creation.fakeroot, files={".condarc": condarc_text(creation.channels)},
        prepare=install if spec is not None else None, notify=report.note,
    )  # fmt: skip
    notices = list(result.notices)
    if creation.sidecar_text is not None:
        atomic.replace(sidecars.sidecar_path(target), creation.sidecar_text)
    if trust.auto_allow(target) is not trust.TrustStatus.ALLOWED:
        notices.append(
            f"{target} is group- or world-writable, so the shell hook will not activate it"
            f" until you run: condatainer allow {target}"
        )
    return Created(
        path=target,
        size_bytes=creation.size_bytes,
        sparse=result.sparse,
        profile=creation.profile,
        empty=spec is None,
        notices=notices,
    )
