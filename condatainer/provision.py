"""`condatainer o` / `overlay create`: make an env image and, when asked, install into it.

Everything that can be wrong is checked before a byte is written: size, profile, the name, the
environment file, and (when packages are to be installed) that a container runtime exists.
With packages, the image is built and initialised under a hidden temporary name next to the
target and published with `link` only when the install succeeded, so a failed or interrupted
install leaves nothing behind and never clobbers a file that appeared meanwhile.  The channels
are saved to `/ext3/env/.condarc` at creation (config `channels`, conda-forge by default), so
the first `mm install` of an empty image uses them too.  `variables:` of an environment.yml are
saved to the sidecar `<image>.env`.  New images are allowed for shell activation (trust).
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from condatainer import atomic, config
from condatainer.errors import ContainerError, ImageError, ImageExistsError, UsageError
from condatainer.image import ops as image_ops
from condatainer.image import profiles, sizes
from condatainer.run import envfile as sidecars
from condatainer.run import envspec
from condatainer.run.mm import TABLE
from condatainer.run.plan import CONTAINER_PREFIX
from condatainer.run.resolve import Request


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
            (f"{CONTAINER_PREFIX}/bin/python", "-m", "pip", "install", "--no-input", *spec.pip)
        )
    commands.append(TABLE["clean"].argv)
    return commands


def install_binds(spec: envspec.EnvSpec) -> tuple[str, ...]:
    """Host directories the install commands read from (an explicit file's directory)."""
    if spec.explicit and spec.source:
        return (os.path.dirname(spec.source),)
    return ()


def _print_dry_run(
    path: Path, size: int, profile: profiles.Profile, spec: envspec.EnvSpec | None, as_json: bool
) -> None:
    if as_json:
        empty = envspec.EnvSpec(name=None, channels=(), conda=())
        print(json.dumps((spec or empty).to_json(), indent=2))
        return
    print(f"would create {path} ({sizes.format_size(size)}, profile {profile.name})")
    if spec is not None:
        print("channels: " + ", ".join(spec.channels))
        for command in install_commands(spec):
            print("would run: " + " ".join(command))


def create_command(
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
    as_json: bool,
) -> int:
    """Validate, create, optionally initialise, publish.  Returns the exit status."""
    cfg = config.load(os.environ)
    if envfile and pkgs:
        raise UsageError("give an environment file (-f) or packages (-- PKG...), not both")
    if channels and not (pkgs or envfile):
        raise UsageError("-c/--channel goes with packages", hint="condatainer o -- PKG... -c CH")
    size_bytes = sizes.parse_size(cfg.default_size if size is None else size)
    prof = profiles.resolve_profile(cfg.default_profile if profile is None else profile)
    if deprecated_type:
        print("condatainer: warning: -t/--type is deprecated; use -p/--profile", file=sys.stderr)
    target = image_ops.normalise_image_name(image or "env.img")
    spec: envspec.EnvSpec | None = None
    if envfile:
        spec = envspec.load(envfile)
        if channels:
            spec = replace(spec, channels=(*channels, *spec.channels))
    elif pkgs:
        checked = [envspec_check(p) for p in pkgs]
        spec = envspec.EnvSpec(name=None, channels=tuple(channels), conda=tuple(checked))
    if spec is not None and not spec.channels:
        spec = replace(spec, channels=cfg.channels)
    # Rendered now so that a variable the sidecar cannot carry fails before anything exists.
    sidecar_text = sidecars.render(spec.variables) if spec and spec.variables else None
    for note in spec.notes if spec else ():
        print(f"condatainer: note: {note}", file=sys.stderr)
    if dry_run:
        _print_dry_run(target, size_bytes, prof, spec, as_json)
        return 0
    _refuse_existing(target)
    sidecar = envfile_path(target)
    if sidecar_text is not None and sidecar.exists():
        raise ImageExistsError(
            f"{sidecar}: already exists; it would receive the variables:",
            hint=f"move it away, or remove it: rm {sidecar}",
        )
    chosen = spec.channels if spec else cfg.channels
    files = {".condarc": condarc_text(chosen)}
    if spec is None:
        result = image_ops.create(
            target, size_bytes, prof, sparse=sparse, fakeroot=fakeroot, files=files
        )
    else:
        from condatainer.doctor import select_runtime

        select_runtime(cfg, os.environ)  # no runtime: fail now, before creating anything
        result = _create_initialised(
            target, size_bytes, prof, spec, sparse=sparse, fakeroot=fakeroot, files=files, cfg=cfg
        )
    for note in result.notices:
        print(f"condatainer: note: {note}", file=sys.stderr)
    if sidecar_text is not None:
        atomic.replace(sidecar, sidecar_text)
    _allow(target)
    alloc = "sparse" if result.sparse else "allocated"
    print(f"created {target} ({sizes.format_size(size_bytes)}, {alloc}, profile {prof.name})")
    if spec is None:
        print("the env is empty; install packages with: condatainer mm install PKG...")
    return 0


def envspec_check(spec: str) -> str:
    if not spec.strip() or spec.startswith("-"):
        raise UsageError(
            f"not a package spec: {spec!r}",
            hint="condatainer o -- numpy 'scipy>=1.11' -c conda-forge",
        )
    return spec


def envfile_path(target: Path) -> Path:
    return sidecars.sidecar_path(target)


def _refuse_existing(target: Path) -> None:
    if os.path.lexists(target):
        what = "a directory" if target.is_dir() else "a file"
        raise ImageExistsError(
            f"{target}: already exists ({what})",
            hint=f"choose another name, or resize/inspect it: condatainer overlay info {target}",
        )


def _create_initialised(
    target: Path,
    size: int,
    prof: profiles.Profile,
    spec: envspec.EnvSpec,
    *,
    sparse: bool,
    fakeroot: bool,
    files: dict[str, bytes],
    cfg: config.Config,
) -> image_ops.CreateResult:
    """Create under a hidden name, install through the runtime, then publish without clobbering."""

    temp = target.with_name(f".{target.name}.init-{secrets.token_hex(4)}.img")
    try:
        with image_ops.termination_raises():  # SIGTERM/SIGHUP (scancel, ssh drop): clean up
            return _install_and_publish(temp, target, size, prof, spec, sparse=sparse,
                                        fakeroot=fakeroot, files=files, cfg=cfg)
    except image_ops.Terminated as exc:
        raise ImageError(f"{target}: interrupted by signal {exc.signum}; no image was created",
                         exit_code=128 + exc.signum) from None
    finally:
        if os.path.lexists(temp):
            os.unlink(temp)


def _install_and_publish(
    temp: Path, target: Path, size: int, prof: profiles.Profile, spec: envspec.EnvSpec, *,
    sparse: bool, fakeroot: bool, files: dict[str, bytes], cfg: config.Config,
) -> image_ops.CreateResult:
    """Create `temp`, install into it, and publish it as `target` (see _create_initialised)."""
    from condatainer.run import launch

    result = image_ops.create(temp, size, prof, sparse=sparse, fakeroot=fakeroot, files=files)
    for command in install_commands(spec):
        req = Request(command=command, images=(str(temp),), writable=True,
                      default_binds=False, binds=install_binds(spec))
        plan = launch.plan_for(req, cfg)
        # Captured, so that Apptainer's FATAL lines become our errors (runtime.apptainer).
        print(f"running: {' '.join(command[:5])} ...", file=sys.stderr, flush=True)
        status = launch.run_then_show(plan, cfg)
        if status != 0:
            raise ContainerError(
                f"{target}: installing the env failed ({' '.join(command[:4])}... exited"
                f" {status}); no image was created",
                hint="check the package names and channels, then run the same command again",
            )
    try:
        os.link(temp, target)
    except FileExistsError:
        raise ImageExistsError(
            f"{target}: appeared while the env was being installed", hint="choose another name"
        ) from None
    except OSError as exc:
        raise ImageError(f"{target}: cannot publish the new image: {exc.strerror}") from exc
    return replace(result, path=target)


def _allow(target: Path) -> None:
    """Images made by `condatainer o` are trusted for shell activation."""
    from condatainer.hook import trust

    if trust.auto_allow(target) is not trust.TrustStatus.ALLOWED:
        print(
            f"condatainer: note: {target} is group- or world-writable, so the shell hook will"
            f" not activate it until you run: condatainer allow {target}",
            file=sys.stderr,
        )
