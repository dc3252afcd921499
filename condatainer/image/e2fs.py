"""Reading ext3 images without mounting them: the superblock (dumpe2fs) and files (debugfs).

Everything here is read-only except `debugfs_script(..., write=True)`, which runs one batched
`debugfs -w` pass.  Values read from an image are data: they are parsed, never evaluated, and
never reach a shell.

How we talk to debugfs, and why:

- One process per batch.  `debugfs -f -` reads a script from stdin and echoes each command as
  `debugfs: CMD` before its output, so many commands share one process and their outputs are
  told apart by those echo lines.  A tree is walked breadth-first with one process per level
  (`walk`), never one per directory.
- `ls -p` prints `/inode/mode/uid/gid/name/size/` per entry (size empty for directories), with
  the name's bytes as they are, newlines included.  A name can never contain `/`, so the name
  is exactly the text between the fifth and sixth slash; `_split_listings` reads records from
  the start of each one, so a name holding a newline (or text that looks like an echo line)
  cannot end a record early or fake the next command.
- Directories are addressed by inode number (`<123>`) wherever we know it.  When a path must go
  into a command it is made absolute (so a leading `-` is not an option and `<12>` is not an
  inode) and double-quoted the way debugfs's `ss` parser reads it: `"` inside quotes is written
  `""`.  A script line can hold neither a newline nor a carriage return (debugfs cuts the line
  there, and a line starting with `!` would run a shell), so such paths are resolved one
  component at a time by inode number instead.
- Intermediate symlinks in a quoted path are followed by debugfs itself, relative to the
  image's root; the last component never is.  The inode-by-inode fallback follows none.
- debugfs exits 0 whatever happens; failures are the lines it writes to stderr after its
  version banner.  They are turned into `ImageError`s naming the image and the debugfs line.

Long on purpose: one reader of untrusted images, whose parsing rules (records, echo lines,
quoting, the inode-by-inode fallback) only make sense together and are reviewed together.
"""

from __future__ import annotations

import os
import re
import stat as statmod
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

from condatainer import runner
from condatainer.errors import CondatainerError, ImageError
from condatainer.image import clean
from condatainer.record import Record

ROOT_INODE = 2

# debugfs reads script lines with fgets(BUFSIZ=8192); a longer line would be cut in two.
_MAX_LINE_BYTES = 8000

# One `ls -p` record.  The name is `[^/]*`: it may hold newlines but never a slash.  uid and
# gid are printed with %d, so values above 2**31 come out negative.
_RECORD = re.compile(r"/(\d+)/([0-7]+)/(-?\d+)/(-?\d+)/([^/]*)/(\d*)/\n")
_BANNER = re.compile(r"^debugfs \d+\.\d+")
_NOT_OPEN = re.compile(r"\S+: Filesystem not open")
# A script line debugfs would read as something else: blank, a comment, a `!` shell escape.
_UNSAFE_LINE = re.compile(r"^(?:\s*$|[ \t]*[!#])", re.MULTILINE)

# debugfs messages that mean "no such entry here", as opposed to a broken image.
_MISSING = (
    "File not found by ext2_lookup",
    "Ext2 inode is not a directory",
    "Too many symbolic links encountered",
)


class Superblock(Record):
    """The facts `dumpe2fs -h` reports that condatainer uses."""

    block_size: int
    block_count: int
    free_blocks: int
    reserved_blocks: int
    inode_count: int
    free_inodes: int
    state: str  # "clean", "not clean", "clean with errors", ...
    features: frozenset[str]
    blocks_per_group: int = 0
    inode_blocks_per_group: int = 0
    reserved_gdt_blocks: int = 0

    @property
    def clean(self) -> bool:
        """True when a mount needs no journal recovery and fsck reported no errors."""
        return self.state == "clean" and "needs_recovery" not in self.features

    @property
    def bytes_per_inode(self) -> int:
        return self.block_count * self.block_size // max(self.inode_count, 1)

    @property
    def used_bytes(self) -> int:
        return (self.block_count - self.free_blocks) * self.block_size

    @property
    def size_bytes(self) -> int:
        return self.block_count * self.block_size


class Entry(NamedTuple):
    """One directory entry of an image, as `ls -p` reports it.

    `mode` is the full `st_mode` (type and permission bits); `size` is 0 for directories,
    which `ls -p` does not size.  `path` is the entry's absolute path inside the image
    (`/upper/ext3/env/bin/python`); names may hold any byte but `/` and NUL, and bytes that
    are not UTF-8 appear as surrogate escapes.  A tuple, not a dataclass: a chown of 20k
    files builds one per inode, at a third of the cost.
    """

    name: str
    inode: int
    mode: int
    uid: int
    gid: int
    size: int
    path: str = ""

    @property
    def is_dir(self) -> bool:
        return statmod.S_ISDIR(self.mode)

    @property
    def is_file(self) -> bool:
        return statmod.S_ISREG(self.mode)

    @property
    def is_symlink(self) -> bool:
        return statmod.S_ISLNK(self.mode)


# --------------------------------------------------------------------------- superblock


def looks_like_ext(path: str | os.PathLike[str]) -> bool:
    """Cheap check of the ext2/3/4 magic number, so a wrong file gets a clear message."""
    try:
        with open(path, "rb") as f:
            f.seek(1080)
            return f.read(2) == clean.EXT_MAGIC
    except OSError:
        return False


def path_error(p: Path, error: type[CondatainerError] = ImageError) -> CondatainerError | None:
    """The one precise error for a path that cannot be an image file, or None when it can.

    Unreachable (a directory on the way is not searchable), missing, or a directory: each its
    own message, so nothing is ever reported as "in use" or "not ext3" for those.  `error` is
    the class to use (locks raise LockError, inspection ImageError).
    """
    try:
        exists, is_dir = p.exists(), p.is_dir()
    except PermissionError:
        return error(
            f"{p}: cannot be reached: a directory on its path is not searchable by you",
            hint=f"check the permissions with: namei -l {p}",
        )
    if not exists:
        return error(f"{p}: no such image file", hint=f"create one with: condatainer o {p}")
    if is_dir:
        return error(f"{p}: is a directory, not an image file")
    if not p.is_file():  # a FIFO or device would block open() or is not an image anyway
        return error(f"{p}: not a regular file")
    return None


def _require_image_file(p: Path) -> None:
    """Raise the one precise ImageError for a path that cannot be an image we can read."""
    problem = path_error(p)
    if problem is not None:
        raise problem
    clean.raw_superblock(p)


def _arg(p: Path) -> str:
    """The image as a program argument: absolute, so a name like `-x.img` is not an option."""
    return os.path.abspath(p)


def header(path: str | os.PathLike[str]) -> dict[str, str]:
    """Every field `dumpe2fs -h` prints for `path` ("Block size" -> "4096"); ImageError if it
    is not an ext image."""
    p = Path(path)
    _require_image_file(p)
    res = runner.run(["dumpe2fs", "-h", _arg(p)])
    if not res.ok:
        detail = res.stderr.strip().splitlines()[-1] if res.stderr.strip() else "unknown error"
        raise ImageError(
            f"{p}: cannot read the superblock: {detail}",
            hint=f"condatainer overlay check {p}",
        )
    fields: dict[str, str] = {}
    for line in res.stdout.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            # The last line wins: dumpe2fs prints the volume label and last-mounted path (raw,
            # newlines included: data from the image) before the real fields.
            fields[key.strip()] = value.strip()
    return fields


def superblock(path: str | os.PathLike[str]) -> Superblock:
    """Read the superblock of `path` with `dumpe2fs -h`; ImageError if it is not an ext image."""
    p = Path(path)
    fields = header(p)
    try:
        return Superblock(
            block_size=int(fields["Block size"]),
            block_count=int(fields["Block count"]),
            free_blocks=int(fields["Free blocks"]),
            reserved_blocks=int(fields["Reserved block count"]),
            inode_count=int(fields["Inode count"]),
            free_inodes=int(fields["Free inodes"]),
            state=fields.get("Filesystem state", "unknown"),
            features=frozenset(fields.get("Filesystem features", "").split()),
            blocks_per_group=int(fields.get("Blocks per group", "0") or 0),
            inode_blocks_per_group=int(fields.get("Inode blocks per group", "0") or 0),
            reserved_gdt_blocks=int(fields.get("Reserved GDT blocks", "0") or 0),
        )
    except (KeyError, ValueError) as exc:
        raise ImageError(f"{p}: unexpected dumpe2fs output (missing {exc})") from exc


def require_clean(path: str | os.PathLike[str]) -> None:
    """`clean.require_clean` after the precise error for a path that is no image file."""
    _require_image_file(Path(path))
    clean.require_clean(path)


# --------------------------------------------------------------------------- debugfs


def quote(inner_path: str) -> str:
    """`inner_path` as one debugfs argument: absolute, in double quotes, `"` doubled.

    Raises ValueError for a path no script line can carry (newline, carriage return, NUL);
    callers resolve those by inode number instead (see `_quotable`).
    """
    if not _quotable(inner_path):
        raise ValueError(f"path cannot be written into a debugfs script: {inner_path!r}")
    absolute = "/" + inner_path.lstrip("/")
    return '"' + absolute.replace('"', '""') + '"'


def _quotable(inner_path: str) -> bool:
    return (
        not any(c in inner_path for c in "\n\r\0")
        and len(inner_path.encode("utf-8", "surrogateescape")) < _MAX_LINE_BYTES - 64
    )


def _check_line(line: str) -> bytes:
    """Encode one script line, refusing what would change how debugfs reads the script."""
    data = line.encode("utf-8", "surrogateescape")
    if any(c in line for c in "\n\r\0"):
        raise ValueError(f"debugfs script line holds a line break or NUL: {line!r}")
    if line.lstrip(" \t").startswith(("!", "#")) or not line.strip():
        raise ValueError(f"debugfs script line is empty, a comment or a shell escape: {line!r}")
    if len(data) >= _MAX_LINE_BYTES:
        raise ValueError(f"debugfs script line is too long ({len(data)} bytes)")
    return data


def _script(lines: Sequence[str]) -> bytes:
    """`lines` as the script debugfs reads, each checked as `_check_line` does.

    Checked over the whole text first (a chown writes 44,000 lines; one line at a time took
    ~50 ms of it); only a script that fails the quick check is read line by line, for the
    precise message.
    """
    if not lines:
        return b""
    body = "\n".join(lines)
    suspect = (
        body.count("\n") != len(lines) - 1
        or "\r" in body
        or "\0" in body
        or _UNSAFE_LINE.search(body) is not None
        or max(map(len, lines)) * 4 >= _MAX_LINE_BYTES  # UTF-8: at most 4 bytes a character
    )
    if suspect:
        return b"".join(_check_line(line) + b"\n" for line in lines)
    return body.encode("utf-8", "surrogateescape") + b"\n"


def _run_debugfs(
    path: str | os.PathLike[str],
    lines: Sequence[str],
    *,
    write: bool,
    undo: str | os.PathLike[str] | None = None,
    holding: Sequence[int] = (),
) -> tuple[str, list[str]]:
    """Run one `debugfs [-w [-z UNDO]] -f - IMAGE` with `lines`; return stdout and debugfs's
    error lines.

    An image debugfs cannot open is an ImageError here; per-command errors are returned.
    """
    p = Path(path)
    script = _script(lines)
    mode = (["-w"] + (["-z", str(undo)] if undo is not None else [])) if write else []
    argv = ["debugfs", *mode, "-f", "-", _arg(p)]
    # A write pass gets a session of its own: a terminal's Ctrl-C must not cut it in two.
    res = runner.run(argv, input=script, new_session=write, holding=holding)
    errors = res.stderr.splitlines()
    if errors and _BANNER.match(errors[0]):
        errors = errors[1:]
    errors = [line for line in errors if line.strip()]
    if not res.ok:
        raise ImageError(
            f"{p}: debugfs failed (exit {res.returncode}): "
            + (errors[-1] if errors else "no message"),
            hint=f"condatainer overlay check {p}",
        )
    not_open = [i for i, line in enumerate(errors) if _NOT_OPEN.fullmatch(line.strip())]
    if not_open:
        first = not_open[0]
        detail = errors[first - 1] if first > 0 else errors[first]
        raise ImageError(
            f"{p}: debugfs cannot open the image: {detail}",
            hint=f"condatainer overlay check {p}",
        )
    return res.stdout, errors


def _detail(line: str) -> str:
    """A debugfs error line without the option debugfs sometimes names first (`-p: ...`)."""
    return re.sub(r"^-\w+: ", "", line.strip())


def debugfs_script(
    path: str | os.PathLike[str],
    lines: Sequence[str],
    *,
    write: bool,
    undo: str | os.PathLike[str] | None = None,
    holding: Sequence[int] = (),
) -> str:
    """Run `lines` as one debugfs script (one process) and return its stdout.

    `write=True` opens the image read-write (`debugfs -w`); the caller must hold the image's
    write lock, and passes its locked descriptors as `holding` (debugfs keeps them, and dies
    with us) and an `undo` file for e2undo.  Any error debugfs reports is an ImageError
    carrying its last error line.  Lines must be single commands we built: ValueError for a
    line break, NUL, an empty line, a comment or a `!` shell escape.
    """
    out, errors = _run_debugfs(path, lines, write=write, undo=undo, holding=holding)
    if errors:
        raise ImageError(
            f"{path}: debugfs: {_detail(errors[-1])}",
            hint=f"condatainer overlay check {path}",
        )
    return out


def _split_listings(
    path: str | os.PathLike[str], out: str, commands: Sequence[str], parents: Sequence[str]
) -> list[list[Entry]]:
    """Cut the stdout of a script of `ls -p` commands into one list of entries per command.

    Each command's output starts with its echo line `debugfs: CMD`; records are read from the
    start of each record, so names cannot be mistaken for echo lines.  `.` and `..` are kept
    (callers that want only children drop them).
    """
    results: list[list[Entry]] = []
    pos, end = 0, len(out)
    for cmd, parent in zip(commands, parents):
        echo = f"debugfs: {cmd}\n"
        if not out.startswith(echo, pos):
            raise _unexpected(path, out, pos)
        pos += len(echo)
        entries: list[Entry] = []
        prefix = parent.rstrip("/") + "/"
        match = _RECORD.match
        while pos < end:
            m = match(out, pos)
            if m is not None:  # (this loop reads every inode of a chown: kept tight)
                ino, mode, uid, gid, name, size = m.groups()
                entries.append(
                    Entry(
                        name,
                        int(ino),
                        int(mode, 8),
                        int(uid) & 0xFFFFFFFF,
                        int(gid) & 0xFFFFFFFF,
                        int(size or 0),
                        parent if name in (".", "..") else prefix + name,
                    )
                )
                pos = m.end()
            elif out.startswith("\n", pos):
                pos += 1
            else:
                break
        results.append(entries)
    if pos != len(out):
        raise _unexpected(path, out, pos)
    return results


def _unexpected(path: str | os.PathLike[str], out: str, pos: int) -> ImageError:
    snippet = out[pos : pos + 60]
    return ImageError(
        f"{path}: unexpected debugfs output at byte {pos}: {snippet!r}",
        hint="report this with the output of: debugfs -V",
    )


def _children(entries: Iterable[Entry]) -> list[Entry]:
    return [e for e in entries if e.name not in (".", "..")]


def _ls_inodes(path: str | os.PathLike[str], dirs: Sequence[tuple[int, str]]) -> list[list[Entry]]:
    """List many directories, given as (inode, inner path), in ONE debugfs process."""
    if not dirs:
        return []
    commands = [f"ls -p <{ino}>" for ino, _ in dirs]
    out = debugfs_script(path, commands, write=False)
    return _split_listings(path, out, commands, [parent for _, parent in dirs])


def _components(inner_path: str) -> list[str]:
    """Split a path inside the image into names; `/`, `` and `.` parts vanish, `..` is refused."""
    if "\0" in inner_path:
        raise ImageError(f"invalid path inside the image (NUL byte): {inner_path!r}")
    parts = [c for c in inner_path.split("/") if c not in ("", ".")]
    if ".." in parts:
        raise ImageError(f"invalid path inside the image ('..' is not allowed): {inner_path!r}")
    return parts


def _listing_of(path: str | os.PathLike[str], parts: Sequence[str]) -> list[Entry] | None:
    """Entries (with `.` and `..`) of the directory `parts`, or None if it is not one."""
    dir_path = "/" + "/".join(parts)
    if not parts:
        return _ls_inodes(path, [(ROOT_INODE, "/")])[0]
    if _quotable(dir_path):
        cmd = f"ls -p {quote(dir_path)}"
        out, errors = _run_debugfs(path, [cmd], write=False)
        if errors:
            # The path comes first in these messages, so only the line's end is trusted.
            if any(e.rstrip().endswith(_MISSING) for e in errors):
                return None
            raise ImageError(
                f"{path}: debugfs: {_detail(errors[-1])}", hint=f"condatainer overlay check {path}"
            )
        return _split_listings(path, out, [cmd], [dir_path])[0]
    # A name debugfs cannot read from a script line: walk down by inode numbers.
    ino, here = ROOT_INODE, "/"
    for part in parts:
        found = next((e for e in _ls_inodes(path, [(ino, here)])[0] if e.name == part), None)
        if found is None or not found.is_dir:
            return None
        ino, here = found.inode, found.path
    return _ls_inodes(path, [(ino, here)])[0]


def try_list_dir(path: str | os.PathLike[str], inner_path: str) -> list[Entry] | None:
    """Like `list_dir`, but None when `inner_path` is missing or not a directory."""
    entries = _listing_of(path, _components(inner_path))
    return None if entries is None else _children(entries)


def list_dir(path: str | os.PathLike[str], inner_path: str) -> list[Entry]:
    """The entries of directory `inner_path` of the image (without `.` and `..`), one debugfs run.

    `inner_path` is relative to the image's root (`upper/ext3/env` or `/upper/ext3/env`).
    ImageError if it does not exist or is not a directory.
    """
    parts = _components(inner_path)
    entries = _listing_of(path, parts)
    if entries is None:
        shown = "/" + "/".join(parts)
        raise ImageError(f"{path}: no directory {shown} in the image")
    return _children(entries)


def stat(path: str | os.PathLike[str], inner_path: str) -> Entry | None:
    """The entry for `inner_path` in the image, or None if there is none (one debugfs run)."""
    parts = _components(inner_path)
    if not parts:
        root = _listing_of(path, [])
        dot = next((e for e in root or () if e.name == "."), None)
        if dot is None:
            raise ImageError(
                f"{path}: the image's root directory cannot be read",
                hint=f"condatainer overlay check {path}",
            )
        return dot._replace(name="/", path="/")
    entries = _listing_of(path, parts[:-1])
    if entries is None:
        return None
    return next((e for e in _children(entries) if e.name == parts[-1]), None)


def read_inode(path: str | os.PathLike[str], inode: int) -> bytes:
    """The contents of inode `inode` (`cat <N>`), byte for byte."""
    cmd = f"cat <{int(inode)}>"
    out = debugfs_script(path, [cmd], write=False)
    echo = f"debugfs: {cmd}\n"
    if not out.startswith(echo):
        raise _unexpected(path, out, 0)
    # stdout was decoded with surrogateescape; encoding back gives the exact bytes.
    return out[len(echo) :].encode("utf-8", "surrogateescape")


def walk_entries(path: str | os.PathLike[str], roots: Sequence[Entry]) -> list[Entry]:
    """Every inode below the directories `roots`, one debugfs process per level for all of them.

    Roots that are not directories contribute nothing; an inode under two roots (or reached
    twice through hard links) is reported once.
    """
    seen = {r.inode for r in roots}
    found: list[Entry] = []
    level = [r for r in roots if r.is_dir]
    while level:
        listings = _ls_inodes(path, [(d.inode, d.path) for d in level])
        following: list[Entry] = []
        for entries in listings:
            for entry in _children(entries):
                if entry.inode in seen:
                    continue
                seen.add(entry.inode)
                found.append(entry)
                if entry.is_dir:
                    following.append(entry)
        level = following
    return found
