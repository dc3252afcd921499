"""`overlay info`: what an image holds, read with dumpe2fs and debugfs — no mount, no container.

`info(path)` gathers the facts into an `ImageInfo` (data first); `render()` prints them for
people and `to_json()` for programs.  It takes no lock, so it works on an image that is in use
(then the facts are a snapshot and the journal may still hold recent changes).

What is read, and from where:
- sizes, blocks, inodes, state: the superblock (`dumpe2fs -h`); allocated bytes: `st_blocks`;
- owner: the uid/gid of `upper/`;
- channels: `upper/ext3/env/.condarc` (`yaml.safe_load`, only the `channels` key is used);
- requested specs: `upper/ext3/env/conda-meta/history`, replaying its `# update specs:`,
  `# remove specs:` and `# neutered specs:` lines request by request, the way conda computes
  the user's requested set (removes, then updates, then neutered, per request);
- package count: the `conda-meta/*.json` records;
- sidecar envs: `<image>.env` (see envfile.py), with a note for each value that references
  variables (expanded inside the container) or holds other `$` forms (kept as text);
- in use: the lock's holders, named the way the lock probe names them (`locks.in_use`);
- leftovers: what interrupted operations left beside the image, with their size and the
  command that repairs them (`recovery.leftovers`).  `info` only reports them.

Everything read from the image is data: parsed, size-capped, never evaluated.  A bad
`.condarc`, history or sidecar does not stop `info`; it becomes a line under `warnings`.  A bad
image (missing, a directory, not ext3, corrupt) is one ImageError.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from condatainer.display import printable
from condatainer.errors import EnvFileError
from condatainer.image import e2fs, envfile, locks, recovery
from condatainer.image.layout import CONTAINER_PREFIX, ENV_DIR, META_DIR, UPPER
from condatainer.image.sizes import format_size

MAX_CONDARC_BYTES = 1024 * 1024
MAX_HISTORY_BYTES = 64 * 1024 * 1024

_SPECS_LINE = re.compile(r"#\s*(update|remove|neutered)\s+specs:\s*(.*)")
_QUOTED = re.compile(r"'((?:[^'\\]|\\.)*)'|\"((?:[^\"\\]|\\.)*)\"")
_SPEC_NAME = re.compile(r"[^\s=<>!~\[\],;@#*]+")


@dataclass(frozen=True)
class EnvVar:
    """A sidecar variable as `info` shows it."""

    name: str
    value: str
    note: str | None

    @property
    def shown(self) -> str:
        return self.note if self.note is not None else self.value


@dataclass(frozen=True)
class ImageInfo:
    """Everything `overlay info` reports about one image."""

    path: str
    file_bytes: int
    allocated_bytes: int
    fs_bytes: int
    block_size: int
    used_bytes: int
    free_bytes: int
    reserved_bytes: int
    inodes_total: int
    inodes_free: int
    clean: bool
    state: str  # "clean" or "not clean (...)"
    bytes_per_inode: int
    profile: str
    owner_uid: int | None = None
    owner_gid: int | None = None
    owner_user: str | None = None
    owner_group: str | None = None
    has_env: bool = False
    channels: tuple[str, ...] | None = None  # None: no .condarc
    specs: tuple[str, ...] = ()
    packages: int | None = None  # None: no conda-meta
    sidecar: str | None = None
    whatis: str | None = None
    envs: tuple[EnvVar, ...] = ()
    env_notes: tuple[str, ...] = ()  # `$` in sidecar values: expanded, or literal text
    in_use: tuple[str, ...] = ()
    leftovers: tuple[recovery.Leftover, ...] = ()
    warnings: tuple[str, ...] = field(default=())

    @property
    def inodes_used(self) -> int:
        return self.inodes_total - self.inodes_free

    @property
    def available_bytes(self) -> int:
        """Free space an unprivileged writer can use (free minus the root reserve)."""
        return max(self.free_bytes - self.reserved_bytes, 0)

    @property
    def owner(self) -> str | None:
        if self.owner_uid is None:
            return None
        return f"{self.owner_uid}:{self.owner_gid}"

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict; sizes in bytes."""
        return {
            "path": self.path,
            "size": {
                "file": self.file_bytes,
                "filesystem": self.fs_bytes,
                "allocated": self.allocated_bytes,
            },
            "blocks": {
                "block_size": self.block_size,
                "used": self.used_bytes,
                "free": self.free_bytes,
                "reserved": self.reserved_bytes,
                "available": self.available_bytes,
            },
            "inodes": {
                "total": self.inodes_total,
                "used": self.inodes_used,
                "free": self.inodes_free,
            },
            "state": self.state,
            "clean": self.clean,
            "owner": None
            if self.owner_uid is None
            else {
                "uid": self.owner_uid,
                "gid": self.owner_gid,
                "user": self.owner_user,
                "group": self.owner_group,
            },
            "profile": {"guess": self.profile, "bytes_per_inode": self.bytes_per_inode},
            "env": {
                "present": self.has_env,
                "channels": None if self.channels is None else list(self.channels),
                "specs": list(self.specs),
                "packages": self.packages,
            },
            "sidecar": None
            if self.sidecar is None
            else {
                "path": self.sidecar,
                "whatis": self.whatis,
                "vars": [{"name": v.name, "value": v.value, "note": v.note} for v in self.envs],
                "notes": list(self.env_notes),
            },
            "in_use": list(self.in_use),
            "leftovers": [
                {
                    "path": str(left.record),
                    "state": left.state,
                    "description": left.description,
                    "bytes": left.size_bytes,
                    "repair": left.repair,
                }
                for left in self.leftovers
            ],
            "warnings": list(self.warnings),
        }

    def render(self) -> str:
        """The human report, one fact per line."""
        rows: list[tuple[str, str]] = [("image", self.path)]
        if self.whatis:
            rows.append(("what", self.whatis))
        rows.append(
            (
                "size",
                f"{format_size(self.fs_bytes)} filesystem, "
                f"{format_size(self.file_bytes)} file, "
                f"{format_size(self.allocated_bytes)} allocated on disk",
            )
        )
        pct = 100 * self.used_bytes / self.fs_bytes if self.fs_bytes else 0.0
        rows.append(
            (
                "space",
                f"{format_size(self.used_bytes)} used ({pct:.0f}%), "
                f"{format_size(self.free_bytes)} free "
                f"({format_size(self.available_bytes)} available to non-root)",
            )
        )
        ipct = 100 * self.inodes_used / self.inodes_total if self.inodes_total else 0.0
        rows.append(
            (
                "inodes",
                f"{self.inodes_used:,} used ({ipct:.0f}%), "
                f"{self.inodes_free:,} free of {self.inodes_total:,}",
            )
        )
        rows.append(("state", self.state))
        rows.append(("in use", "; ".join(self.in_use) if self.in_use else "no"))
        if self.owner_uid is not None:
            names = (
                f" ({self.owner_user or '?'}:{self.owner_group or '?'})"
                if (self.owner_user or self.owner_group)
                else ""
            )
            rows.append(("owner", f"{self.owner}{names} (of upper/)"))
        else:
            rows.append(("owner", "- (no upper/ directory)"))
        rows.append(("profile", f"{self.profile} ({format_size(self.bytes_per_inode)} per inode)"))
        if not self.has_env:
            rows.append(("env", f"none ({CONTAINER_PREFIX} is not in the image)"))
        else:
            if self.channels is None:
                rows.append(("channels", "- (no .condarc)"))
            else:
                rows.append(("channels", ", ".join(self.channels) or "- (none set)"))
            rows.append(("specs", ", ".join(self.specs) or "-"))
            rows.append(
                (
                    "packages",
                    "0 (no conda-meta yet)" if self.packages is None else str(self.packages),
                )
            )
        width = max(len(k) for k, _ in rows)
        lines = [f"{k + ':':<{width + 1}} {v}" for k, v in rows]
        if self.sidecar is not None:
            lines.append(f"{'envs:':<{width + 1}} from {self.sidecar}")
            lines.extend(f"  {v.name}: {v.shown}" for v in self.envs)
            lines.extend(f"  note: {n}" for n in self.env_notes)
        if self.leftovers:
            lines.append(f"{'leftovers:':<{width + 1}} of interrupted commands, beside the image")
            lines.extend(f"  {left.render()}" for left in self.leftovers)
        lines.extend(f"warning: {w}" for w in self.warnings)
        return "\n".join(printable(line) for line in lines)


def info(path: str | os.PathLike[str]) -> ImageInfo:
    """Inspect image `path` without mounting it or taking its lock."""
    p = Path(path)
    sb = e2fs.superblock(p)  # the one place a missing / non-ext / corrupt image is refused
    st = p.stat()
    warnings: list[str] = []
    root = {e.name: e for e in e2fs.list_dir(p, "/")}
    upper = root.get(UPPER)
    if upper is None or not upper.is_dir:
        warnings.append(
            "no upper/ directory: not an overlay image (made by condatainer or"
            " apptainer overlay create)"
        )
        upper = None

    env = e2fs.try_list_dir(p, ENV_DIR) if upper is not None else None
    env_by_name = {e.name: e for e in env or ()}
    channels = _read_channels(p, env_by_name.get(".condarc"), warnings)
    meta = env_by_name.get("conda-meta")
    specs: list[str] = []
    packages: int | None = None
    if meta is not None and meta.is_dir:
        records = e2fs.list_dir(p, META_DIR)
        packages = sum(1 for e in records if e.is_file and e.name.endswith(".json"))
        history = next((e for e in records if e.name == "history"), None)
        text = _read_text(p, history, MAX_HISTORY_BYTES, "conda-meta/history", warnings)
        if text is not None:
            specs = requested_specs(text)

    sidecar, whatis, envs, env_notes = _sidecar(p, warnings)
    uid = upper.uid if upper is not None else None
    gid = upper.gid if upper is not None else None
    return ImageInfo(
        path=str(p),
        file_bytes=st.st_size,
        allocated_bytes=st.st_blocks * 512,
        fs_bytes=sb.size_bytes,
        block_size=sb.block_size,
        used_bytes=sb.used_bytes,
        free_bytes=sb.free_blocks * sb.block_size,
        reserved_bytes=sb.reserved_blocks * sb.block_size,
        inodes_total=sb.inode_count,
        inodes_free=sb.free_inodes,
        clean=sb.clean,
        state=_state(sb),
        bytes_per_inode=sb.bytes_per_inode,
        profile=guess_profile(sb.bytes_per_inode),
        owner_uid=uid,
        owner_gid=gid,
        owner_user=_user_name(uid),
        owner_group=_group_name(gid),
        has_env=env is not None,
        channels=channels,
        specs=tuple(specs),
        packages=packages,
        sidecar=sidecar,
        whatis=whatis,
        envs=envs,
        env_notes=env_notes,
        in_use=tuple(locks.in_use(p)),
        leftovers=tuple(recovery.leftovers(p.parent)),
        warnings=tuple(warnings),
    )


def _state(sb: e2fs.Superblock) -> str:
    if sb.clean:
        return "clean"
    reasons = []
    if "needs_recovery" in sb.features:
        reasons.append("journal needs recovery: in use, or not unmounted cleanly")
    if sb.state != "clean":
        reasons.append(f"superblock state '{sb.state}'")
    return f"not clean ({'; '.join(reasons)})"


def _read_text(
    p: Path, entry: e2fs.Entry | None, limit: int, what: str, warnings: list[str]
) -> str | None:
    """The text of an optional file of the env, or None (with a warning when it is unusable)."""
    if entry is None:
        return None
    if not entry.is_file:
        warnings.append(f"{CONTAINER_PREFIX}/{what} is not a regular file; ignored")
        return None
    if entry.size > limit:
        warnings.append(
            f"{CONTAINER_PREFIX}/{what} is {format_size(entry.size)},"
            f" over the {format_size(limit)} read limit; ignored"
        )
        return None
    return e2fs.read_inode(p, entry.inode).decode("utf-8", "replace")


def _read_channels(
    p: Path, entry: e2fs.Entry | None, warnings: list[str]
) -> tuple[str, ...] | None:
    text = _read_text(p, entry, MAX_CONDARC_BYTES, ".condarc", warnings)
    if text is None:
        return None
    found, problem = parse_channels(text)
    if problem:
        warnings.append(f"{CONTAINER_PREFIX}/.condarc: {problem}")
    return found


def condarc_channels(path: str | os.PathLike[str]) -> tuple[str, ...]:
    """The channels of the env's .condarc in image `path` (none when it has no usable one)."""
    p = Path(path)
    env = e2fs.try_list_dir(p, ENV_DIR)
    entry = next((e for e in env or () if e.name == ".condarc"), None)
    text = _read_text(p, entry, MAX_CONDARC_BYTES, ".condarc", [])
    return parse_channels(text)[0] if text is not None else ()


def parse_channels(text: str) -> tuple[tuple[str, ...], str | None]:
    """The `channels` of a .condarc text, and a problem description (or None)."""
    import yaml  # heavy; only `info` and `export` need it

    try:
        data = yaml.safe_load(text)
    except (yaml.YAMLError, ValueError, TypeError, OverflowError, RecursionError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return (), f"cannot be parsed as YAML: {first}"
    if data is None:
        return (), None
    if not isinstance(data, dict):
        return (), "not a YAML mapping; no channels read"
    channels = data.get("channels")
    if channels is None:
        return (), None
    if isinstance(channels, str):
        return (channels,), None
    if not isinstance(channels, list):
        return (), "channels: is not a list; ignored"
    kept = tuple(c for c in channels if isinstance(c, str))
    if len(kept) != len(channels):
        return kept, "channels: holds entries that are not names; they were skipped"
    return kept, None


def requested_specs(history: str) -> list[str]:
    """The specs the user asked for, as conda-meta/history records them, in first-asked order.

    Requests are separated by `==> DATE <==` lines.  Within one request, `remove specs` drop
    names, then `update specs` (install/update/create) add or replace them, then `neutered
    specs` replace them — conda's own order.  A spec's name is the part before any version
    operator, without a `channel::` prefix; names compare case-insensitively.
    """
    current: dict[str, str] = {}
    request: dict[str, list[str]] = {"update": [], "remove": [], "neutered": []}

    def apply() -> None:
        for spec in request["remove"]:
            current.pop(_spec_name(spec), None)
        for kind in ("update", "neutered"):
            for spec in request[kind]:
                name = _spec_name(spec)
                if name:
                    current[name] = spec
        for specs in request.values():
            specs.clear()

    for raw in history.splitlines():
        line = raw.strip()
        if line.startswith("==>") and line.endswith("<=="):
            apply()
            continue
        m = _SPECS_LINE.fullmatch(line)
        if m:
            request[m.group(1)].extend(_spec_list(m.group(2)))
    apply()
    return list(current.values())


def _spec_list(text: str) -> list[str]:
    """`["numpy", "scipy>=1"]` (micromamba, JSON) or `['numpy']` (conda, Python repr)."""
    text = text.strip()
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        data = None
    if isinstance(data, list):
        return [s.strip() for s in data if isinstance(s, str) and s.strip()]
    found = [(a or b).strip() for a, b in _QUOTED.findall(text)]
    return [s for s in found if s]


def _spec_name(spec: str) -> str:
    body = spec.strip().rsplit("::", 1)[-1]
    m = _SPEC_NAME.match(body)
    return m.group(0).lower() if m else ""


def _sidecar(
    p: Path, warnings: list[str]
) -> tuple[str | None, str | None, tuple[EnvVar, ...], tuple[str, ...]]:
    try:
        side = envfile.load(p)
    except EnvFileError as exc:
        warnings.append(f"sidecar env file: {exc.message}")
        return str(envfile.sidecar_path(p)), None, (), ()
    if side is None:
        return None, None, (), ()
    envs = tuple(EnvVar(k, v, side.notes.get(k)) for k, v in side.vars)
    expanding, literal = envfile.expansion_notes(side)
    return str(envfile.sidecar_path(p)), side.whatis, envs, (*expanding, *literal)


def guess_profile(bytes_per_inode: int) -> str:
    """The inode profile nearest to the image's ratio (profiles.py's rule)."""
    from condatainer.image import profiles

    return profiles.guess_profile(bytes_per_inode)


def _user_name(uid: int | None) -> str | None:
    if uid is None:
        return None
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except (KeyError, OverflowError):
        return None


def _group_name(gid: int | None) -> str | None:
    if gid is None:
        return None
    import grp

    try:
        return grp.getgrgid(gid).gr_name
    except (KeyError, OverflowError):
        return None
