"""The hook's pure-shell image search follows resolve.find_image exactly, in bash and zsh.

Random directory trees (seeded, so failures reproduce) with candidate images in the directory
itself, overlay/ and src/overlay/, decoys (directories named env.img, broken symlinks), symlinked
directories (the shell searches the logical $PWD), hostile names, $HOME anywhere in the chain
(or with a trailing slash, which never matches in either), CNT_CEILING_DIRS, and USER set,
unset, or only LOGNAME.  For every directory of every tree, the shell's answer must be the
Python answer, byte for byte.
"""

from __future__ import annotations

import os
import random
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from condatainer.run.resolve import find_image
from tests.shell.hooklib import HOSTILE, SHELL_ARGV, Hook

NAMES = ["a", "b c", "overlay", "src", HOSTILE, "$(touch pwned)", "d*", "-x", "é"]
SUBS = ["", "overlay", "src/overlay"]

# The same loop in both shells: cd to each directory (logical $PWD), search, print the result.
LOOP = (
    'while IFS= read -r -d "" d; do\n'
    '    cd -- "$d" || exit 3\n'
    "    _cnt_search\n"
    '    printf "%s\\0%s\\0" "$_cnt_hit" "$_cnt_hit_dir"\n'
    'done <"$CNT_TEST_DIRS"\n'
)


def build_tree(rng: random.Random, base: Path, user: str) -> list[Path]:
    """A random tree under `base`; returns its directories as logical paths (links included)."""
    dirs = [base]
    for _ in range(rng.randint(3, 9)):
        parent = rng.choice(dirs)
        if len(parent.relative_to(base).parts) >= 5:
            continue
        child = parent / rng.choice(NAMES)
        child.mkdir(exist_ok=True)
        if child not in dirs:
            dirs.append(child)
    names = [f"env-{user}.img", "env.img"] if user else ["env.img", "env-nobody.img"]
    # At least one real candidate, so every tree has a directory where something is found.
    sure = rng.choice(dirs) / rng.choice(SUBS)
    sure.mkdir(parents=True, exist_ok=True)
    (sure / rng.choice(names)).write_bytes(b"")
    for directory in list(dirs):
        for _ in range(rng.choice([0, 0, 1, 2])):
            where = directory / rng.choice(SUBS)
            where.mkdir(parents=True, exist_ok=True)
            target = where / rng.choice(names)
            if target.exists() or target.is_symlink():
                continue
            kind = rng.choice(["file", "file", "file", "dir", "broken", "link"])
            if kind == "file":
                target.write_bytes(b"")
            elif kind == "dir":
                target.mkdir()
            elif kind == "broken":
                target.symlink_to(where / "nowhere")
            else:
                real = where / "real.img"
                real.write_bytes(b"")
                target.symlink_to(real.name)
    # A symlinked directory: the shell's $PWD keeps the link, and so does the Python start.
    if len(dirs) > 2:
        link = base / "link"
        if not link.exists():
            link.symlink_to(rng.choice(dirs[1:]))
            dirs.append(link)
            dirs += [link / p.name for p in (link).iterdir() if p.is_dir() and not p.is_symlink()]
    return dirs


@pytest.mark.parametrize("shell", ["bash", "zsh"])
@pytest.mark.parametrize("seed", range(12))
def test_shell_search_matches_find_image(
    shell: str, seed: int, tmp_path: Path, need: Callable[[str], str]
) -> None:
    need(shell)
    rng = random.Random(seed * 7919 + (shell == "zsh"))
    user = rng.choice(["alice", "", "bo b", HOSTILE])
    base = tmp_path / rng.choice(["tree", "t r e e", HOSTILE])
    base.mkdir()
    dirs = build_tree(rng, base, user)
    home_choice = rng.choice(["none", "base", "inner", "trailing", "empty"])
    env_home = {
        "none": str(tmp_path / "elsewhere"),
        "base": str(base),
        "inner": str(rng.choice(dirs)),
        "trailing": str(base) + "/",
        "empty": "",
    }[home_choice]
    ceilings = [str(rng.choice(dirs)) for _ in range(rng.randint(0, 2))]
    if ceilings and rng.random() < 0.3:
        ceilings.append("")  # empty entries are ignored
    environ = {"HOME": env_home, "CNT_CEILING_DIRS": ":".join(ceilings)}
    if user:
        environ["USER" if rng.random() < 0.7 else "LOGNAME"] = user

    listing = tmp_path / "dirs"
    listing.write_bytes(b"".join(os.fsencode(d) + b"\0" for d in dirs))
    hook = Hook(shell, tmp_path / "hook")
    env = {k: v for k, v in hook.env().items() if k not in ("USER", "LOGNAME", "HOME")}
    env.update(environ)
    env["CNT_TEST_DIRS"] = str(listing)
    full = f". '{hook.file}'\n" + LOOP
    proc = subprocess.run(
        [*SHELL_ARGV[shell], "-c", full], env=env, capture_output=True, check=False, timeout=60
    )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    fields = proc.stdout.split(b"\0")[:-1]
    assert len(fields) == 2 * len(dirs)
    for i, start in enumerate(dirs):
        expected = find_image(Path(start), environ)
        hit = os.fsdecode(fields[2 * i])
        hit_dir = os.fsdecode(fields[2 * i + 1])
        assert hit == (str(expected) if expected else ""), (
            f"start={start!r} env={environ!r}: shell found {hit!r}, Python {expected!r}"
        )
        if hit:
            assert hit.startswith(hit_dir.rstrip("/") + "/")
            assert str(start).startswith(hit_dir)
    assert any(fields[0::2]), "the tree has an image; some directory must find it"
    assert not list(tmp_path.rglob("pwned")), "a directory name was executed"


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_search_stops_at_home_root_and_ceiling(
    shell: str, tmp_path: Path, need: Callable[[str], str]
) -> None:
    need(shell)
    (tmp_path / "env.img").write_bytes(b"")
    home = tmp_path / "home"
    deep = home / "p" / "q"
    deep.mkdir(parents=True)
    hook = Hook(shell, tmp_path / "hook")
    script = '_cnt_search; printf "[%s]" "$_cnt_hit"\n'
    for env_home, ceilings, expected in [
        (str(home), "", ""),  # $HOME stops the search before tmp_path/env.img
        (str(tmp_path / "other"), "", f"{tmp_path}/env.img"),
        (str(tmp_path / "other"), str(home / "p"), ""),  # a ceiling stops it too
        (str(tmp_path / "other"), str(home / "p") + "/", f"{tmp_path}/env.img"),  # exact match
    ]:
        env = hook.env(HOME=env_home, CNT_CEILING_DIRS=ceilings)
        out = hook.run(script, env=env, cwd=deep).stdout
        assert out == f"[{expected}]", (env_home, ceilings)
        found = find_image(deep, {"HOME": env_home, "CNT_CEILING_DIRS": ceilings})
        assert (str(found) if found else "") == expected
