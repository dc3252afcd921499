"""Fetching base images: `condatainer base pull`, `condatainer base build`, and the pull on
first need (`ensure`), all through Apptainer (`apptainer pull` / `apptainer build`).

Decisions, so users can rely on them:

- Never half-written: Apptainer writes into a hidden temporary file next to the final one
  (`image.files.Temp`), the result must be a usable image (`basefs.locate`), and only then is it
  published under its name, atomically.  A failed, interrupted (Ctrl-C, SIGTERM) or killed
  pull leaves no file under the final name, so the next run simply tries again.
- One fetch at a time per directory: concurrent first uses (two terminals, a script starting
  several commands) take a lock on `.fetch.lock` in the images directory (flock: our own
  file); the second waits, then finds the image there and uses it.
- Never a hang on a dead network: before Apptainer starts, the registry (or the HTTPS proxy
  the environment names, honouring NO_PROXY) must accept a TCP connection within
  `CONNECT_TIMEOUT` seconds; Apptainer itself has no such limit, and a compute node whose
  packets go nowhere would otherwise wait for minutes.  Once connected, Apptainer's own
  progress streams to the terminal (on stderr: our stdout may be a pipe the user reads).
- Not inside batch jobs: the pull on first need refuses to start in a SLURM/PBS/LSF/Flux job
  (compute nodes often have no network, and an array of jobs would each download the image);
  the error names `condatainer base pull` to run on a login node.  The image lands in
  `fetch_dir` (under $HOME by default), which compute nodes share.  An explicit
  `condatainer base pull` runs wherever it is asked to.
- `base build` renders `shell/base-def.sh.j2` (or takes the user's `--def FILE`) and runs
  `apptainer build`, with `--fakeroot` when not root (building an image needs root inside it).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import socket
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from condatainer import atomic, config, runner, shellgen, signals
from condatainer.display import Notify
from condatainer.errors import BaseImageError, ImageExistsError, RuntimeUnavailableError
from condatainer.image.files import Temp
from condatainer.run import basefs, baseimage
from condatainer.run.runtime import INSTALL_APPTAINER, selection

CONNECT_TIMEOUT = 15.0  # seconds for the registry (or proxy) to accept a connection
LOCK_NAME = ".fetch.lock"  # one fetch at a time per directory
JOB_VARS = ("SLURM_JOB_ID", "PBS_JOBID", "LSB_JOBID", "FLUX_JOB_ID")
DEFAULT_REGISTRY = "registry-1.docker.io"  # where docker://NAME without a registry goes
BOOTSTRAP = {"docker": "docker", "oras": "oras", "library": "library"}  # scheme -> agent
_DEF_HEADER = re.compile(r"^\s*(Bootstrap|From)\s*:\s*(\S+)", re.IGNORECASE | re.MULTILINE)


@dataclass(frozen=True)
class Fetched:
    """What a pull or build did: the image, and whether it was made now (False: it was there)."""

    path: Path
    made: bool
    source: str


# --------------------------------------------------------------------------------------------
# Which Apptainer, and is the network there


def apptainer_for(cfg: config.Config, what: str) -> str:
    """The apptainer (or singularity) binary to run `what` with; RuntimeUnavailableError."""
    for name in ("apptainer", "singularity"):
        found = selection.container_binary(cfg, name)
        if found:
            return found
    raise RuntimeUnavailableError(
        f"condatainer base {what} runs apptainer {what}, and Apptainer is not installed here",
        hint=f"{INSTALL_APPTAINER}; the builtin runtime also takes a squashfs file or a"
        " directory as its base (-b)",
    )


def registry_address(source: str) -> tuple[str, int] | None:
    """(host, port) Apptainer connects to for `source`; None when it cannot be told."""
    scheme, _, rest = source.partition("://")
    if scheme in ("http", "https"):
        parts = urlsplit(source)
        if parts.hostname is None:
            return None
        return parts.hostname, parts.port or (443 if scheme == "https" else 80)
    if scheme not in ("docker", "oras"):
        return None  # library:// and shub:// go where Apptainer's remote config says
    first, slash, _ = rest.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        host = first
    elif scheme == "docker":
        host = DEFAULT_REGISTRY
    else:
        return None
    if host in ("docker.io", "index.docker.io"):
        host = DEFAULT_REGISTRY
    if host.startswith("["):  # [::1]:5000
        name, _, port = host[1:].partition("]")
        port = port.lstrip(":")
    else:
        name, _, port = host.partition(":")
    return name, int(port) if port.isdigit() else 443


def check_reachable(source: str, *, timeout: float = CONNECT_TIMEOUT) -> None:
    """BaseImageError unless the registry of `source` (or the proxy to it) accepts a TCP
    connection within `timeout` seconds."""
    address = registry_address(source)
    if address is None:
        return
    host, port = address
    target, what = (host, port), f"the registry {host}:{port}"
    proxy = urllib.request.getproxies().get("https")
    if proxy and not urllib.request.proxy_bypass(host):
        parts = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        if parts.hostname:
            target = (parts.hostname, parts.port or 80)
            what = f"the proxy {parts.hostname}:{target[1]} (HTTPS_PROXY, for {host})"
    try:
        with socket.create_connection(target, timeout=timeout):
            pass
    except socket.timeout:
        raise _unreachable(source, what, f"no answer within {timeout:g} s") from None
    except OSError as exc:
        raise _unreachable(source, what, exc.strerror or str(exc)) from None


def _unreachable(source: str, what: str, why: str) -> BaseImageError:
    return BaseImageError(
        f"cannot reach {what} to fetch {source}: {why}",
        hint="on a machine with network access (a login node) run: condatainer base pull;"
        " the image is kept where compute nodes find it (condatainer base info shows where)",
    )


def job_of(environ: Mapping[str, str]) -> str | None:
    """`SLURM_JOB_ID=123` when this runs inside a batch job, else None."""
    for var in JOB_VARS:
        if environ.get(var):
            return f"{var}={environ[var]}"
    return None


# --------------------------------------------------------------------------------------------
# Pull, build, and the pull on first need


def ensure(path: str, source: str, binary: str, environ: Mapping[str, str], notify: Notify) -> None:
    """The default base at `path`, pulled from `source` now if it is not there yet."""
    if os.path.exists(path):
        return
    job = job_of(environ)
    if job is not None:
        raise BaseImageError(
            f"no base image at {path}, and this is a batch job ({job}): condatainer does not"
            " download base images inside jobs",
            hint="on a login node, run once: condatainer base pull",
        )
    notify(f"no base image yet: pulling {source} into {path} (once; later runs reuse it)")
    pull(binary, source, Path(path), force=False, notify=notify)


def pull(
    binary: str, source: str, dest: Path, *, force: bool, notify: Notify, announce: bool = False
) -> Fetched:
    """`apptainer pull` `source` into `dest`, published atomically.  `announce`: say so as
    it starts (Apptainer's own progress follows on stderr)."""
    with _one_at_a_time(dest, notify):
        if dest.exists() and not force:
            return Fetched(dest, False, source)
        check_reachable(source)
        if announce:
            notify(f"pulling {source} into {dest} (apptainer pull)")
        return _make(
            dest,
            lambda temp: [binary, "pull", "--force", str(temp), source],
            f"apptainer pull {source}",
            source,
            replace=force,
        )


def definition(source: str) -> str:
    """The .def text `base build` uses for `source` (shell/base-def.sh.j2)."""
    scheme, _, reference = source.partition("://")
    if scheme not in BOOTSTRAP or not reference:
        raise BaseImageError(
            f"cannot build a base image from {source}: a definition file can bootstrap from"
            f" {', '.join(f'{s}://' for s in BOOTSTRAP)} only",
            hint="pull it instead: condatainer base pull; or write your own definition file"
            " and run: condatainer base build --def FILE",
        )
    return shellgen.render(
        "base-def", "sh", bootstrap=BOOTSTRAP[scheme], source=reference, source_uri=source
    )


def build(
    binary: str,
    dest: Path,
    *,
    source: str | None,
    def_file: Path | None,
    force: bool,
    fakeroot: bool,
    notify: Notify,
) -> Fetched:
    """`apptainer build` an image at `dest` from `def_file`, or from the definition rendered
    for `source` (written beside the image as NAME.def, for the record)."""
    with _one_at_a_time(dest, notify):
        if dest.exists() and not force:
            return Fetched(dest, False, str(def_file) if def_file else str(source))
        if def_file is None:
            assert source is not None
            text = definition(source)
            def_file = dest.with_suffix(".def")
            atomic.replace(def_file, text, 0o644)
        else:
            text = _read_def(def_file)
        for origin in _def_sources(text):
            check_reachable(origin)
        fake = ["--fakeroot"] if fakeroot or os.geteuid() != 0 else []
        return _make(
            dest,
            lambda temp: [binary, "build", "--force", *fake, str(temp), str(def_file)],
            f"apptainer build {def_file}",
            str(source or def_file),
            replace=force,
        )


def _read_def(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise BaseImageError(f"{path}: cannot read the definition file: {exc.strerror}") from None


def _def_sources(text: str) -> list[str]:
    """The registry references a definition file bootstraps from (to check the network)."""
    found = dict((k.lower(), v) for k, v in _DEF_HEADER.findall(text))
    agent, origin = found.get("bootstrap", ""), found.get("from")
    if agent in ("docker", "oras") and origin:
        return [origin if "://" in origin else f"{agent}://{origin}"]
    return []


def _make(
    dest: Path, argv: Callable[[Path], list[str]], what: str, source: str, *, replace: bool
) -> Fetched:
    """Run Apptainer (`argv(temporary file)`) into a temporary file beside `dest`, check the
    result, publish it."""
    temp = Temp(dest, tag="fetch")
    try:
        with signals.termination_raises():  # SIGTERM/SIGHUP: clean up as for Ctrl-C
            os.close(temp.create())
            status = runner.stream(argv(Path(temp.path)), stdout_to_stderr=True)
            if status != 0:
                raise BaseImageError(
                    f"{what} failed (exit status {status}); no image was kept",
                    hint="its messages are above; check the source and the network, then run:"
                    " condatainer base pull",
                )
            try:
                basefs.locate(str(temp.path))
            except BaseImageError as exc:
                raise BaseImageError(
                    f"{what} made no usable image ({exc.message}); nothing was kept",
                    hint="check the source, then run: condatainer base pull --force",
                ) from None
            try:
                temp.publish(replace=replace)
            except ImageExistsError:  # made by someone else meanwhile: theirs is as good
                return Fetched(dest, False, source)
    finally:
        temp.discard()
    return Fetched(dest, True, source)


@contextlib.contextmanager
def _one_at_a_time(dest: Path, notify: Notify) -> Iterator[None]:
    """Hold `.fetch.lock` in the directory of `dest` (created) while fetching it."""
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(dest.parent / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise BaseImageError(
            f"cannot create {dest.parent} for base images: {exc.strerror}",
            hint="set a directory you can write: condatainer config set fetch_dir DIR",
        ) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            notify(f"another condatainer is fetching into {dest.parent}; waiting for it")
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


# --------------------------------------------------------------------------------------------
# The `base pull` and `base build` commands


def pull_for(
    cfg: config.Config, source: str | None, output: str | None, *, force: bool, notify: Notify
) -> Fetched:
    """`condatainer base pull [SOURCE] [-o OUTPUT] [--force]`: SOURCE defaults to base_source,
    OUTPUT to where the default base for SOURCE is kept."""
    chosen = _source(cfg, source, "condatainer base pull SOURCE")
    dest = _output(output) or baseimage.images_dir(cfg) / baseimage.file_name(chosen)
    return pull(apptainer_for(cfg, "pull"), chosen, dest, force=force, notify=notify, announce=True)


def build_for(
    cfg: config.Config,
    source: str | None,
    def_file: str | None,
    output: str | None,
    *,
    force: bool,
    fakeroot: bool,
    notify: Notify,
) -> Fetched:
    """`condatainer base build [--from SOURCE | --def FILE] [-o OUTPUT]`: from the rendered
    definition for SOURCE (default base_source), kept where the default base for SOURCE is;
    or from the user's FILE, kept as images/<FILE's name>.sif unless OUTPUT."""
    binary = apptainer_for(cfg, "build")
    if def_file is not None:
        if source is not None:
            raise BaseImageError(
                "give a source (--from) or a definition file (--def), not both",
                hint="condatainer base build --def site.def",
            )
        path = Path(def_file).expanduser().absolute()
        dest = _output(output) or baseimage.images_dir(cfg) / (path.stem + ".sif")
        return build(
            binary, dest, source=None, def_file=path, force=force, fakeroot=fakeroot, notify=notify
        )
    chosen = _source(cfg, source, "condatainer base build --from SOURCE")
    dest = _output(output) or baseimage.images_dir(cfg) / baseimage.file_name(chosen)
    return build(
        binary, dest, source=chosen, def_file=None, force=force, fakeroot=fakeroot, notify=notify
    )


def _source(cfg: config.Config, given: str | None, where: str) -> str:
    if given is None:
        return cfg.base_source
    checked = config.check("base_source", given, where)
    assert isinstance(checked, str)
    return checked


def _output(given: str | None) -> Path | None:
    return Path(given).expanduser().absolute() if given else None
