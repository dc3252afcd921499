"""Shell integration on the host: `init`, `hook`, `allow` and `deny`.

- `init [bash|zsh|fish] [--uninstall] [--dry-run]`: the shell is the argument, else
  `CNT_SHELL`, else what shellingham detects, else `$SHELL`, else the passwd login shell;
  anything but bash, zsh or fish is refused.  It renders the hook (shell/hook.<shell>.j2) to
  `$XDG_DATA_HOME/condatainer/hook.<shell>` and puts the marked block that sources it in
  ~/.bashrc, ${ZDOTDIR:-~}/.zshrc or fish's conf.d/condatainer.fish (rcfile.py: atomic,
  symlinks followed, mode kept, byte-exact uninstall).  The hook file carries the TAB
  completion of condatainer, cnt and the mm-* functions too (the static completions/ text),
  so completion comes with `init` and a new shell still starts no Python; in zsh the hook
  registers it at the first prompt, loading the completion system when the user's .zshrc
  did not (hook.zsh.j2).  Both writes are computed first as
  `atomic.Change`s, so `--dry-run` shows them and writes nothing, and a second `init` changes
  nothing.  `--uninstall` removes the block and the hook file.
- `hook bash|zsh|fish`: the same hook text on stdout, for `eval "$(condatainer hook bash)"`
  (fish: `condatainer hook fish | source`) users.
  Nothing else is printed on stdout, and nothing at all when it fails.
- `allow [IMAGE]` / `deny [IMAGE]`: trust.allow / trust.deny; without IMAGE, the image the
  hook would find from the working directory ($PWD, as the shell names it).  A running hook
  notices either at its next prompt (activate.py explains how).

Each returns what to print (lines, or the hook text); the CLI prints it.

The hook file is versioned: it passes the version that rendered it to `condatainer _activate`,
which calls `refresh_hook_file` when the installed version differs, so upgrading condatainer
updates the hook without another `init` (new shells load it; running ones keep theirs).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from condatainer import shellgen
from condatainer.errors import TrustError, UsageError
from condatainer.hook import hookfile, rcfile, shells, trust
from condatainer.image import e2fs, layout


def init(
    shell: str | None, *, uninstall: bool, dry_run: bool,
    environ: Mapping[str, str] | None = None,
) -> list[str]:  # fmt: skip
    """`condatainer init`: write the hook file and the rc block (or remove both); return what
    to tell the user, one line each (with `dry_run`: the diff, nothing written)."""
    name = shells.detect(shell, environ)
    rc = rcfile.rc_path(name, environ)
    hook = rcfile.hook_path(name)
    if uninstall:
        rc_change = rcfile.remove_block(rc)
        hook_change = hookfile.change(name, remove=True)
    else:
        hook_change = hookfile.change(name)
        rc_change = rcfile.install_block(rc, rcfile.block_body(name, hook))
    said: list[str] = []
    if dry_run:
        text = rcfile.diff(rc_change)
        said += text.splitlines() if text else [f"{rc}: no change"]
        if hook_change.changed:
            verb = "remove" if uninstall else ("update" if hook_change.old_exists else "write")
            said.append(f"would {verb} {hook}")
        return said
    # The block sources the hook file: write that first; remove it last.
    for change in (rc_change, hook_change) if uninstall else (hook_change, rc_change):
        hookfile.write(change)
    if uninstall:
        if rc_change.changed:
            said.append(f"removed the condatainer block from {rc}")
        else:
            said.append(f"{rc} has no condatainer block")
        if hook_change.changed:
            said.append(f"removed {hook}")
        return said
    said.append(
        f"{'updated' if hook_change.old_exists else 'wrote'} {hook}"
        if hook_change.changed
        else f"{hook} is up to date"
    )
    if rc_change.changed:
        quote = shellgen.quote_fish if name == "fish" else shellgen.quote
        said.append(f"added the condatainer block to {rc}")
        said.append(f"open a new shell to use it (or run: source {quote(str(rc))})")
    else:
        said.append(f"{rc} already loads the hook")
    return said


def hook(shell: str) -> str:
    """`condatainer hook SHELL`: the hook text, for eval."""
    return hookfile.text(shells.detect(shell))


def _image_here(image: str | None, verb: str) -> Path:
    if image:
        return Path(image)
    found = layout.find_image(layout.logical_cwd(), os.environ)
    if found is None:
        raise UsageError(
            "no env.img or env-$USER.img found here, in overlay/ or src/overlay/, or above",
            hint=f"name the image: condatainer {verb} IMAGE",
        )
    return found


def allow(image: str | None) -> str:
    """`condatainer allow [IMAGE]`: allow the image as it is now."""
    path = _image_here(image, "allow")
    if os.path.isfile(path) and not e2fs.looks_like_ext(path):
        raise TrustError(
            f"{path} is not an ext3 image; refusing to allow it",
            hint="env images are made with: condatainer o",
        )
    trust.allow(path)
    return f"allowed {path}"


def deny(image: str | None) -> str:
    """`condatainer deny [IMAGE]`: forget the image's allow record."""
    path = _image_here(image, "deny")
    if trust.deny(path):
        return f"denied {path}"
    return f"{path} was not allowed"
