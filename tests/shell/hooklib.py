"""Helpers for the hook tests: small real images, the rendered hook, a recording launcher.

- `make_image(path, bins, pkgs)`: a real ext3 image (mke2fs -d, no root needed) with the
  overlay layout and the given executables in upper/ext3/env/bin and packages in conda-meta.
- `Hook`: renders the hook for one shell into a temporary directory with a launcher that logs
  every call (argv, NUL-separated, one call per line) and then runs the real condatainer
  (`python -m condatainer`, PYTHONPATH = the checkout).  `run(script)` runs a script in
  `bash --norc --noprofile`, `zsh -f` or `fish --no-config` that sources the hook first; the
  script simulates prompts by calling `_cnt_prompt` (the function the shell would run before
  a prompt; fish emits its `fish_prompt` event, as fish does before drawing one).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from condatainer import runner, shellgen
from condatainer.hook import hookfile, shims

REPO = Path(__file__).resolve().parents[2]
HOSTILE = "'\";&&e-$ èрт🚒中-j"
SHELL_ARGV = {
    "bash": ["bash", "--norc", "--noprofile"],
    "zsh": ["zsh", "-f"],
    "fish": ["fish", "--no-config"],
}

# What "a prompt" is in a non-interactive test shell.
PROMPT_FUNCTION = {
    "bash": "_cnt_prompt() { _cnt_hook; }\n",
    "zsh": "_cnt_prompt() { _cnt_precmd; }\n",
    "fish": "function _cnt_prompt; emit fish_prompt; end\n",
}
SOURCE = {"bash": ".", "zsh": ".", "fish": "source"}


def listed_shims(directory: object) -> list[str]:
    """The shims in a shim directory, sorted; each must be the dispatcher itself (a hard link
    to it, or a symlink to it where hard links cannot be made)."""
    path = Path(str(directory))
    dispatcher = path / shims.DISPATCHER
    found = sorted(p.name for p in path.iterdir() if p.name != shims.DISPATCHER)
    for name in found:
        shim = path / name
        assert shim.samefile(dispatcher), f"{shim} is not the dispatcher"
        assert not shim.is_symlink() or os.readlink(shim) == shims.DISPATCHER
    return found


def make_image(
    path: Path, bins: Iterable[str] = (), pkgs: Iterable[str] = (), size: str = "8M"
) -> Path:
    """A real ext3 image with env/bin executables and conda-meta records."""
    tree = path.parent / f".tree-{path.name}"
    shutil.rmtree(tree, ignore_errors=True)
    env = tree / "upper" / "ext3" / "env"
    (env / "bin").mkdir(parents=True)
    (env / "conda-meta").mkdir()
    (tree / "work").mkdir()
    for name in bins:
        exe = env / "bin" / name
        exe.write_text("#!/bin/sh\necho hi\n")
        exe.chmod(0o755)
    for pkg in pkgs:
        (env / "conda-meta" / f"{pkg}-1.0-0.json").write_text("{}\n")
    mke2fs = runner.which("mke2fs")
    assert mke2fs is not None, "mke2fs (e2fsprogs) is needed"
    subprocess.run(
        [mke2fs, "-q", "-F", "-t", "ext3", "-d", str(tree), str(path), size],
        check=True,
        capture_output=True,
    )
    shutil.rmtree(tree)
    path.chmod(0o644)
    return path


@dataclass
class Hook:
    """The rendered hook of one shell, with a recording launcher."""

    shell: str
    root: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    record_only: bool = False  # the launcher only records (for mm-* tests), runs nothing

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.log = self.root / "calls.log"
        self.launcher = self.root / "condatainer"
        self.launcher.write_text(
            "#!/bin/sh\n"
            f"printf '%s\\0' \"$@\" >> {shellgen.quote(str(self.log))}\n"
            f"printf '\\n' >> {shellgen.quote(str(self.log))}\n"
            + (
                ""
                if self.record_only
                else f'exec {shellgen.quote(sys.executable)} -m condatainer "$@"\n'
            )
        )
        self.launcher.chmod(0o755)
        self.file = self.root / f"hook.{self.shell}"
        self.file.write_text(self.text())

    def text(self, launcher: list[str] | None = None) -> str:
        return shellgen.render(
            "hook", self.shell, **{
                **hookfile.context(self.shell),
                "launcher": launcher or [str(self.launcher)],
                # Activation through the recording launcher too, so every call is seen.
                "activator": [*(launcher or [str(self.launcher)]), "_activate"],
                "shim_root": str(self.shim_root),
                "stamp": str(self.stamp),
            },
        )  # fmt: skip

    @property
    def stamp(self) -> Path:
        from condatainer.hook import stamp

        return stamp.path()

    @property
    def shim_root(self) -> Path:
        from condatainer.hook import shims

        return shims.root()

    def calls(self) -> list[list[str]]:
        """The launcher's calls so far, as argv lists."""
        if not self.log.exists():
            return []
        out = []
        for line in self.log.read_bytes().split(b"\0\n"):
            if line:
                out.append([w.decode() for w in line.split(b"\0")])
        return out

    def activations(self) -> list[list[str]]:
        return [c for c in self.calls() if c[:1] == ["_activate"]]

    def env(self, **more: str) -> dict[str, str]:
        env = {
            k: v for k, v in os.environ.items()
            if not k.startswith(("CNT_", "BASH_FUNC_")) and k not in ("PROMPT_COMMAND", "PS1")
        }  # fmt: skip
        env["PYTHONPATH"] = str(REPO)
        env.update(self.extra_env)
        env.update(more)
        return env

    def run(
        self,
        script: str,
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        before: str = "",
        check: bool = True,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        """Run `before`, source the hook, define _cnt_prompt, then run `script`."""
        quote = shellgen.quote_fish if self.shell == "fish" else shellgen.quote
        full = (
            before
            + f"\n{SOURCE[self.shell]} {quote(str(self.file))}\n"
            + PROMPT_FUNCTION[self.shell]
            + script
        )
        proc = subprocess.run(
            [*SHELL_ARGV[self.shell], "-c", full],
            env=dict(env) if env else self.env(),
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check:
            assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        return proc


def dump_vars(shell: str) -> str:
    """Shell code printing the variables activation must restore exactly (`declare -p`; fish:
    `set --show`, which says each variable's scope, whether it is exported, and its value)."""
    if shell == "fish":
        return (
            "".join(
                f"set --show {n}; or echo '{n} unset'\n"
                for n in ("PATH", "CNT_OVERLAY", "CNT_PROJECT")
            )
            + "functions fish_prompt\n"
        )
    show = "declare -p" if shell == "bash" else "typeset -p"
    names = ["PATH", "PS1", "CNT_OVERLAY", "CNT_PROJECT"]
    if shell == "bash":
        names.append("PROMPT_COMMAND")
    return "".join(f"{show} {n} 2>/dev/null || echo '{n} unset'\n" for n in names)
