"""The operations the fault harness kills, each with its old and new state.

An operation is a condatainer command run in a trial directory prepared from a template
(images made once per harness run), and knows:

- `kind`: "publish" (create, `o -- PKGS`, pack, unpack: the output appears whole or not at
  all, so the state is checked as soon as the command is dead), "inplace" (resize, chown: the
  image itself is written; the state is checked after the next command repaired it) or
  "mount" (a writable exec, `mm install`: ext3's journal keeps the filesystem consistent, not
  the package set, so the check is `e2fsck -fn`);
- `state(trial)`: "old", "new", or "half: why", against the reference run's new state;
- `guard(trial, proc)`: the file whose lock must be held while `proc` writes (the image, or
  the operation's record for a tool writing a file that is not published yet);
- `nexts`: the commands that may come next (a user repairing, retrying, or simply writing the
  image), each with the exit statuses it may end with.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from condatainer.image import e2fs, records
from condatainer.image.create import create
from condatainer.image.pack import read_pack_record
from tests import support
from tests.fault.procs import Proc
from tests.imagelib import fsck_clean, put, tree_digest

REPO = Path(__file__).resolve().parents[2]
MIB = 1024 * 1024


def cnt(argv: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return support.cnt(*argv, cwd=cwd, env=env, timeout=300)


def copy(src: Path, dest: Path) -> None:
    subprocess.run(["cp", "--sparse=always", str(src), str(dest)], check=True)


@dataclass
class Op:
    name: str
    kind: str
    argv: list[str]
    nexts: list[tuple[list[str], set[int]]]
    target: str = "env.img"
    needs_world: bool = False
    template: Callable[[Path, dict[str, str]], None] = lambda cache, env: None
    setup: Callable[[Path, Path], None] = lambda cache, trial: None
    new: dict[str, object] = field(default_factory=dict)

    def image(self, trial: Path) -> Path:
        return trial / "env.img"

    def guard(self, trial: Path, proc: Proc) -> list[Path]:
        """Locks of which one must be held while `proc` writes."""
        if proc.in_container:
            if self.kind == "publish":  # o -- PKGS: the container mounts the temporary image
                return sorted(trial.glob(".env.img.tmp-*"))
            return [self.image(trial)]
        if self.kind == "publish":
            return [records.path_for(trial / self.target)]
        return [self.image(trial)]

    # -- states ----------------------------------------------------------------------------

    def remember(self, trial: Path) -> None:
        """After the reference run: what the new state looks like."""
        self.new = self.measure(trial)

    def measure(self, trial: Path) -> dict[str, object]:
        img = self.image(trial)
        if self.name in ("create", "unpack"):
            return {"digest": tree_digest(img), "size": os.stat(img).st_size}
        if self.name == "create_pkgs":
            return {}
        if self.name == "pack":
            return {"record": read_pack_record(trial / "env.img.zst")}
        if self.kind == "inplace":
            return {
                # chown changes owners only; its 20,000 files' bytes need not be read
                "digest": tree_digest(img, content=self.name != "chown"),
                "size": os.stat(img).st_size,
                "fs": e2fs.superblock(img).size_bytes,
            }
        return {}

    def state(self, trial: Path, old: dict[str, object]) -> str:
        target = trial / self.target
        if self.kind == "mount":
            return "new" if fsck_clean(self.image(trial)) else "half: e2fsck -fn finds errors"
        if self.kind == "publish" and not target.exists():
            return "old"
        if self.name == "pack":
            if subprocess.run(["zstd", "-tq", str(target)], check=False).returncode != 0:
                return "half: the packed file does not decompress"
            if read_pack_record(target) != self.new["record"]:
                return "half: the size record differs"
            return "new"
        if not fsck_clean(target):
            return "half: e2fsck -fn finds errors"
        if self.name == "create_pkgs":
            meta = e2fs.try_list_dir(target, "upper/ext3/env/conda-meta") or []
            ok = any(e.name.startswith("cnt-hello-") for e in meta)
            return "new" if ok else "half: published without the package"
        now = self.measure(trial)
        if self.kind == "publish":
            return "new" if now == self.new else f"half: {now} != {self.new}"
        if now == old:
            return "old"
        if now == self.new:
            return "new"
        return f"half: {now} (old {old}, new {self.new})"


# --------------------------------------------------------------------------- templates


def _base(cache: Path, env: dict[str, str]) -> None:
    """env.img: 64M, allocated, a few files (the image most operations start from)."""
    (cache / "base").mkdir()
    img = create(cache / "base" / "env.img", 64 * MIB, "balanced").path
    for name, size in (("a.bin", 20 * MIB), ("b.bin", 300 * 1024), ("c.txt", 100)):
        data = cache / name
        data.write_bytes(os.urandom(size))
        put(img, data, name)


def _tail(cache: Path, env: dict[str, str]) -> None:
    """env.img: 256M, sparse, with data in its upper half (a shrink must move it)."""
    (cache / "tail").mkdir()
    img = create(cache / "tail" / "env.img", 256 * MIB, "balanced", sparse=True).path
    filler, data = cache / "filler.bin", cache / "data.bin"
    filler.write_bytes(os.urandom(100 * MIB))
    data.write_bytes(os.urandom(30 * MIB))
    put(img, filler, "filler.bin")
    put(img, data, "data.bin")
    subprocess.run(
        ["debugfs", "-w", "-R", "rm upper/filler.bin", str(img)], check=True, capture_output=True
    )
    filler.unlink()


def _many(cache: Path, env: dict[str, str]) -> None:
    """env.img: 20,000 small files in 100 directories, all owned by root (chown's)."""
    tree = cache / "many-tree"
    env_dir = tree / "upper" / "ext3" / "env"
    for d in range(100):
        (env_dir / f"d{d}").mkdir(parents=True)
        for f in range(200):
            (env_dir / f"d{d}" / f"f{f}").write_text(f"{d}/{f}\n")
    (tree / "work" / "work").mkdir(parents=True)
    (cache / "many").mkdir()
    argv = ["mke2fs", "-q", "-F", "-t", "ext3", "-b", "4096", "-i", "4096", "-d", str(tree)]
    subprocess.run(
        [*argv, str(cache / "many" / "env.img"), "160M"], check=True, capture_output=True
    )
    shutil.rmtree(tree)


def _packed(cache: Path, env: dict[str, str]) -> None:
    _base(cache, env) if not (cache / "base").exists() else None
    (cache / "packed").mkdir()
    copy(cache / "base" / "env.img", cache / "packed" / "env.img")
    res = cnt(["overlay", "pack", "env.img"], cache / "packed", env)
    assert res.returncode == 0, res.stderr
    (cache / "packed" / "env.img").unlink()


def _env_image(cache: Path, env: dict[str, str]) -> None:
    (cache / "envimg").mkdir()
    res = cnt(["o", "env.img", "-s", "96M", "--sparse"], cache / "envimg", env)
    assert res.returncode == 0, res.stderr


def _from(template: str) -> Callable[[Path, Path], None]:
    def setup(cache: Path, trial: Path) -> None:
        for f in (cache / template).iterdir():
            copy(f, trial / f.name)

    return setup


WRITE_LOOP = "i=0; while [ $i -lt 3000 ]; do echo $i > /ext3/env/f$i; i=$((i+1)); done; sync"

OPS: dict[str, Op] = {
    op.name: op
    for op in (
        Op(
            "create",
            "publish",
            ["o", "env.img", "-s", "1G", "-p", "small"],
            [
                (["overlay", "check", "env.img", "--repair"], {0, 1}),
                (["o", "env.img", "-s", "1G", "-p", "small"], {0, 1}),
            ],
        ),
        Op(
            "create_pkgs",
            "publish",
            ["o", "env.img", "-s", "96M", "--sparse", "--", "cnt-hello"],
            [
                (["overlay", "check", "env.img", "--repair"], {0, 1}),
                (["o", "env.img", "-s", "96M", "--sparse", "--", "cnt-hello"], {0, 1}),
            ],
            needs_world=True,
        ),
        Op(
            "resize_grow",
            "inplace",
            ["overlay", "resize", "env.img", "-s", "3G"],
            [
                (["overlay", "check", "env.img", "--repair"], {0}),
                (["exec", "-w", "-o", "env.img", "--", "true"], {0}),
            ],
            template=_base,
            setup=_from("base"),
        ),
        Op(
            "resize_shrink",
            "inplace",
            ["overlay", "resize", "env.img", "-s", "100M"],
            [
                (["exec", "-w", "-o", "env.img", "--", "true"], {0}),
                (["overlay", "check", "env.img", "--repair"], {0}),
            ],
            template=_tail,
            setup=_from("tail"),
        ),
        Op(
            "chown",
            "inplace",
            ["overlay", "chown", "env.img", "-u", "4242", "-g", "4242"],
            [
                (["overlay", "check", "env.img", "--repair"], {0}),
                (["exec", "-w", "-o", "env.img", "--", "true"], {0}),
            ],
            template=_many,
            setup=_from("many"),
        ),
        Op(
            "pack",
            "publish",
            ["overlay", "pack", "env.img"],
            [
                (["overlay", "pack", "env.img"], {0, 1}),
                (["exec", "-w", "-o", "env.img", "--", "true"], {0}),
            ],
            target="env.img.zst",
            template=lambda cache, env: None if (cache / "base").exists() else _base(cache, env),
            setup=_from("base"),
        ),
        Op(
            "unpack",
            "publish",
            ["overlay", "unpack", "env.img.zst"],
            [
                (["overlay", "check", "env.img", "--repair"], {0, 1}),
                (["overlay", "unpack", "env.img.zst"], {0, 1}),
            ],
            template=_packed,
            setup=_from("packed"),
        ),
        Op(
            "exec_w",
            "mount",
            ["exec", "-w", "-o", "env.img", "--", "sh", "-c", WRITE_LOOP],
            [
                (["exec", "-w", "-o", "env.img", "--", "true"], {0}),
                (["exec", "-o", "env.img", "--", "true"], {0}),
            ],
            template=lambda cache, env: None if (cache / "base").exists() else _base(cache, env),
            setup=_from("base"),
        ),
        Op(
            "mm_install",
            "mount",
            ["mm", "-o", "env.img", "install", "cnt-app", "cnt-hello"],
            [
                (["exec", "-w", "-o", "env.img", "--", "true"], {0}),
                (["exec", "-o", "env.img", "--", "true"], {0}),
            ],
            needs_world=True,
            template=_env_image,
            setup=_from("envimg"),
        ),
    )
}
