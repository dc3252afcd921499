"""The base image: which one a run uses, where condatainer keeps its own, what is in it.

Which base (`decide`, used by `resolve` and by `base info`/`doctor`, so they cannot disagree):

1. `-b/--base` on the command line (or `#CNT -b` in a job script);
2. config `base_image`;
3. for the Apptainer runtime, which needs a base: condatainer's default base, a SIF made from
   config `base_source` (`config.DEFAULT_BASE_SOURCE` unless set) and kept at
   `<fetch_dir>/images/<name>-<hash>.sif` (`default_path`).  It is fetched on first need
   (`basefetch.ensure`) or beforehand with `condatainer base pull`;
4. for the builtin runtime: none, the host's root filesystem is the base.

The default file is named after its source (the last path component, `:`/`@` made `_`, plus 8
hex digits of the source's sha256), so changing `base_source` never reuses an image made from
another source, and two sources never share a file.

`info` describes a base without Apptainer and without mounting: its format and root
filesystem (`basefs`), size, and whether bash, zsh and fish are in it (the shells `condatainer
e` starts: the user's when the base has it, else bash; the host root for the builtin runtime).
For a SIF or squashfs file the listing comes from `unsquashfs -lls -o OFFSET` (squashfs-tools);
without it, the shells are reported as unknown.  Links are followed inside the image (`/bin`
-> `usr/bin` on merged-/usr systems), never on the host.

Nothing here downloads or prints; `basefetch` fetches.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from condatainer import config, runner
from condatainer.errors import BaseImageError
from condatainer.run import basefs

NEEDS_BASE = ("apptainer", "singularity")  # runtimes without a base of their own
SHELLS = ("bash", "zsh", "fish")
SHELL_DIRS = ("/usr/local/bin", "/usr/bin", "/bin")
_MAX_LINKS = 40


def images_dir(cfg: config.Config, env: Mapping[str, str] | None = None) -> Path:
    """Where condatainer keeps base images: `<fetch_dir>/images`."""
    return config.fetch_dir(cfg, env) / "images"


def file_name(source: str) -> str:
    """The file name of the image made from `source`: readable, and unique per source."""
    tail = source.rstrip("/").rsplit("/", 1)[-1] or "base"
    readable = re.sub(r"[^A-Za-z0-9._-]", "_", tail)
    digest = hashlib.sha256(source.encode()).hexdigest()[:8]
    return f"{readable}-{digest}.sif"


def default_path(cfg: config.Config, env: Mapping[str, str] | None = None) -> Path:
    """The default base for `cfg.base_source` (which may not exist yet)."""
    return images_dir(cfg, env) / file_name(cfg.base_source)


def absolute(given: str, cwd: Path) -> str:
    """A base named by the user, as a path the runtimes can use from anywhere: `~` expanded,
    relative to `cwd`, symlinks kept (a URI is left as it is)."""
    if "://" in given:
        return given
    return os.path.normpath(os.path.join(cwd, os.path.expanduser(given)))


@dataclass(frozen=True)
class Choice:
    """The base a run uses and why.  `path` None: the host's root filesystem."""

    path: str | None
    origin: str  # where the choice came from, in words
    pull_from: str | None = None  # condatainer's default base: fetch it from here if missing


def choose(
    given: str | None,
    configured: str | None,
    default: str | None,
    source: str | None,
    cwd: Path,
    *,
    configured_origin: str = "base_image (config)",
    default_origin: str = "condatainer's default base, made from base_source",
) -> Choice:
    """The rule of the module docstring, on plain values (`resolve` has no Config)."""
    if given:
        return Choice(absolute(given, cwd), "-b/--base")
    if configured:
        return Choice(absolute(configured, cwd), configured_origin)
    if default is not None:
        return Choice(default, default_origin, pull_from=source)
    return Choice(None, "the host's root filesystem (the builtin runtime's default)")


def default_for(
    cfg: config.Config, runtime: str | None, env: Mapping[str, str] | None = None
) -> str | None:
    """The default base's path when `runtime` needs a base, else None."""
    return str(default_path(cfg, env)) if runtime in NEEDS_BASE else None


def decide(
    given: str | None,
    cfg: config.Config,
    runtime: str | None,
    cwd: Path,
    env: Mapping[str, str] | None = None,
) -> Choice:
    """The base for a run on `runtime` (None: not known), with where the choice came from."""
    return choose(
        given,
        cfg.base_image,
        default_for(cfg, runtime, env),
        cfg.base_source,
        cwd,
        configured_origin=f"base_image ({cfg.source('base_image')})",
        default_origin="condatainer's default base, made from base_source"
        f" ({cfg.source('base_source')})",
    )


def describe(given: str | None, cfg: config.Config, env: Mapping[str, str] | None = None) -> Info:
    """`condatainer base info [-b BASE]`: the base the active runtime uses, and what is in it."""
    from condatainer.errors import RuntimeUnavailableError
    from condatainer.run.runtime import selection

    try:
        runtime = selection.select(cfg).name
    except RuntimeUnavailableError:
        runtime = "apptainer"  # none works here yet: show what Apptainer would use
    return info(decide(given, cfg, runtime, Path.cwd(), env))


# --------------------------------------------------------------------------------------------
# What is in a base image


@dataclass(frozen=True)
class Info:
    """What `condatainer base info` shows."""

    choice: Choice
    exists: bool
    rootfs: basefs.RootFs | None = None
    size: int | None = None  # bytes, for a file
    shells: dict[str, str | None] | None = None  # shell -> path inside, or None; None: unknown
    shells_note: str | None = None  # why the shells are unknown
    problem: str | None = None  # why the file cannot be used as a base

    @property
    def usable(self) -> bool:
        return self.exists and self.problem is None

    def to_json(self) -> dict[str, object]:
        return {
            "path": self.choice.path,
            "origin": self.choice.origin,
            "source": self.choice.pull_from,
            "exists": self.exists,
            "usable": self.usable,
            "kind": self.rootfs.kind if self.rootfs else None,
            "offset": self.rootfs.offset if self.rootfs else None,
            "arch": self.rootfs.arch if self.rootfs else None,
            "size": self.size,
            "shells": self.shells,
            "shells_note": self.shells_note,
            "problem": self.problem,
        }


def info(choice: Choice) -> Info:
    """Look at the chosen base (never raises for what it finds: see `problem`)."""
    if choice.path is None:
        return Info(choice, exists=True, shells=_shells(_dir_lookup("/")))
    if "://" in choice.path:
        return Info(choice, True, shells_note="unknown: a URI, which Apptainer fetches each run")
    if not os.path.lexists(choice.path):
        return Info(choice, exists=False)
    try:
        rootfs = basefs.locate(choice.path)
    except BaseImageError as exc:
        return Info(choice, exists=True, problem=exc.message)
    if rootfs.kind == "directory":
        return Info(choice, True, rootfs, None, _shells(_dir_lookup(rootfs.path)))
    size = os.stat(rootfs.path).st_size
    try:
        listing = squashfs_listing(rootfs)
    except BaseImageError as exc:
        return Info(choice, True, rootfs, size, shells_note=exc.message)
    return Info(choice, True, rootfs, size, _shells(listing.get))


Entry = tuple[str, str]  # ("dir" | "file" | "link" | "other", link target)
Lookup = Callable[[str], "Entry | None"]


def squashfs_listing(rootfs: basefs.RootFs) -> dict[str, Entry]:
    """Every path of a squashfs root filesystem (`/usr/bin/bash` -> ("file", "")), read with
    `unsquashfs -lls` at the root filesystem's offset (no mount, no Apptainer)."""
    tool = runner.which("unsquashfs")
    if tool is None:
        raise BaseImageError(
            "unknown: unsquashfs is not installed (apt-get install squashfs-tools)"
        )
    res = runner.run([tool, "-lls", "-o", str(rootfs.offset), "-d", "", rootfs.path], timeout=120)
    if not res.ok:
        last = (res.stderr.strip().splitlines() or [f"exit status {res.returncode}"])[-1]
        raise BaseImageError(f"unknown: unsquashfs cannot read it ({last})")
    found: dict[str, Entry] = {}
    for line in res.stdout.splitlines():
        # drwxr-xr-x root/root 38 2024-01-01 00:00 /usr/bin  |  lrwxrwxrwx ... /bin -> usr/bin
        fields = line.split(None, 5)
        if len(fields) < 6 or fields[0][:1] not in "-dlcbps":
            continue
        kind = {"d": "dir", "-": "file", "l": "link"}.get(fields[0][0], "other")
        name, target = fields[5], ""
        if kind == "link":
            name, _, target = name.partition(" -> ")
        found["/" + name.lstrip("/")] = (kind, target)
    return found


def _dir_lookup(root: str) -> Lookup:
    def lookup(path: str) -> Entry | None:
        host = os.path.join(root, path.lstrip("/"))
        try:
            if os.path.islink(host):
                return ("link", os.readlink(host))
            if os.path.isdir(host):
                return ("dir", "")
            return ("file", "") if os.path.isfile(host) else ("other", "")
        except OSError:
            return None

    return lookup


def _resolve(lookup: Lookup, path: str) -> tuple[str, Entry | None]:
    """Follow links inside the image (absolute targets start again at its root)."""
    pending = [p for p in path.split("/") if p]
    done: list[str] = []
    links = 0
    while pending:
        name = pending.pop(0)
        if name in (".", ""):
            continue
        if name == "..":
            if done:
                done.pop()
            continue
        here = "/" + "/".join([*done, name])
        entry = lookup(here)
        if entry is None:
            return here, None
        if entry[0] == "link":
            links += 1
            if links > _MAX_LINKS:
                return here, None
            if entry[1].startswith("/"):
                done = []
            pending[:0] = [p for p in entry[1].split("/") if p]
            continue
        done.append(name)
    final = "/" + "/".join(done)
    return final, lookup(final)


def _shells(lookup: Lookup) -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for shell in SHELLS:
        found[shell] = None
        for directory in SHELL_DIRS:
            _, entry = _resolve(lookup, f"{directory}/{shell}")
            if entry is not None and entry[0] == "file":
                found[shell] = f"{directory}/{shell}"
                break
    return found


def render(details: Info) -> str:
    """`base info` as text."""
    choice = details.choice
    rows = [("base", choice.path or "the host's root filesystem"), ("origin", choice.origin)]
    if choice.pull_from:
        rows.append(("source", choice.pull_from))
    if choice.path is not None and not details.exists:
        rows.append(("state", "missing; fetch it with: condatainer base pull"))
    rootfs = details.rootfs
    if rootfs is not None:
        kind = {
            "sif": f"SIF, squashfs root filesystem at offset {rootfs.offset} ({rootfs.arch})",
            "squashfs": "squashfs file",
            "directory": "directory (sandbox)",
        }[rootfs.kind]
        rows.append(("format", kind))
    if details.size is not None:
        from condatainer.image.sizes import format_size

        rows.append(("size", format_size(details.size)))
    if details.shells is not None:
        rows.append(
            ("shells", ", ".join(f"{s}: {p or 'not found'}" for s, p in details.shells.items()))
        )
    if details.shells_note:
        rows.append(("shells", details.shells_note))
    if details.problem:
        rows.append(("problem", details.problem))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
