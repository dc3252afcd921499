"""Shell integration on the host: `init`, `hook`, `allow` and `deny`.

- `init [bash|zsh] [--uninstall] [--dry-run]`: the shell is the argument, else `CNT_SHELL`,
  else what shellingham detects, else `$SHELL`, else the passwd login shell; anything but
  bash or zsh is refused.  It
  renders the hook (shell/hook.<shell>.j2) to `$XDG_DATA_HOME/condatainer/hook.<shell>` and puts
  the marked block that sources it in ~/.bashrc or ${ZDOTDIR:-~}/.zshrc (rcfile.py: atomic,
  symlinks followed, mode kept, byte-exact uninstall).  Both writes are computed first as
  `rcfile.Change`s, so `--dry-run` shows them and writes nothing, and a second `init` changes
  nothing.  `--uninstall` removes the block and the hook file.
- `hook bash|zsh`: the same hook text on stdout, for `eval "$(condatainer hook bash)"` users.
  Nothing else is printed on stdout, and nothing at all when it fails.
- `allow [IMAGE]` / `deny [IMAGE]`: trust.allow / trust.deny; without IMAGE, the image the
  hook would find from the working directory ($PWD, as the shell names it).  A running hook
  notices either at its next prompt (activate.py explains how).

The hook file is versioned: it passes the version that rendered it to `condatainer _activate`,
which calls `refresh_hook_file` when the installed version differs, so upgrading condatainer
updates the hook without another `init` (new shells load it; running ones keep theirs).
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Mapping
from pathlib import Path
from typing import TextIO

from condatainer import __version__, shellgen
from condatainer.errors import ShellError, TrustError, UsageError
from condatainer.hook import activate, rcfile, shims, trust
from condatainer.run import mm, resolve


def detect_shell(name: str | None, environ: Mapping[str, str] | None = None) -> str:
    """The shell `init` sets up: argument, CNT_SHELL, shellingham, $SHELL -- bash or zsh only."""
    env = os.environ if environ is None else environ
    source = "the argument"
    if not name and env.get("CNT_SHELL"):
        name, source = env["CNT_SHELL"], "CNT_SHELL"
    if not name:
        name, source = _detected(env), "your shell"
    name = os.path.basename(name or "")
    if name not in shellgen.SHELLS:
        what = f"'{name}'" if name else "an unknown shell"
        raise ShellError(
            f"cannot set up {what} ({source}); condatainer integrates with bash and zsh",
            hint="name the shell: condatainer init bash   (or: condatainer init zsh)",
        )
    return name


def _detected(env: Mapping[str, str]) -> str:
    """The shell we were started from when it is bash or zsh, else the login shell.

    `sh install.sh` or a Makefile starts us from sh: that is not the shell the user types in,
    so it must not decide (nor make init fail); the login shell does: `$SHELL`, or, where
    nothing set it (cron, `env -i`, a CI runner, a container), the user's passwd entry, which
    is where login would have taken it from.
    """
    try:
        import shellingham

        name: str = shellingham.detect_shell()[0]
    except Exception:  # shellingham's ShellDetectionFailure, or an OS error reading /proc
        name = ""
    if name in shellgen.SHELLS:
        return name
    return env.get("SHELL") or _login_shell()


def _login_shell() -> str:
    """The login shell in the passwd database, or "" when the uid has no entry."""
    try:
        return pwd.getpwuid(os.getuid()).pw_shell
    except KeyError:
        return ""


def hook_ops() -> list[dict[str, object]]:
    """The mm table as the hook templates use it: one mm-OP function per operation.

    `rehash`: the operation can change the env's executables (the table's `refresh`), so the
    function forgets hashed command paths afterwards.
    """
    return [{"name": op.name, "rehash": op.refresh} for op in mm.TABLE.values()]


def mm_completion(shell: str) -> shellgen.Raw:
    """The mm-* TAB completion the hook includes (completion.py renders it from its template).

    Raw, reviewed: it is shell code condatainer rendered itself, with its own values quoted.
    """
    from condatainer import completion

    return shellgen.Raw(completion.mm_script(shell))


def hook_text(shell: str) -> str:
    """The hook for `shell`, rendered from shell/hook.<shell>.j2."""
    return shellgen.render(
        "hook", shell,
        version=__version__,
        launcher=list(shims.launcher()),
        activator=activate.hook_argv(),
        shim_root=os.fspath(shims.root()),
        ops=hook_ops(),
        mm_completion=mm_completion(shell),
    )  # fmt: skip


def _file_change(path: Path, new: bytes | None) -> rcfile.Change:
    """A whole-file change (the hook file), carried out by rcfile.write like the rc edit."""
    target = Path(os.path.realpath(path))
    try:
        old, exists = target.read_bytes(), True
    except FileNotFoundError:
        old, exists = b"", False
    except OSError as exc:
        raise ShellError(f"cannot read {path}: {exc.strerror}") from None
    return rcfile.Change(path, target, old, new or b"", exists, new is not None)


def hook_file_change(shell: str, *, remove: bool = False) -> rcfile.Change:
    """The change that writes (or removes) the hook file of `shell`."""
    new = None if remove else hook_text(shell).encode("utf-8", "surrogateescape")
    return _file_change(rcfile.hook_path(shell), new)


def _write(change: rcfile.Change) -> None:
    if change.changed and change.new_exists:
        change.target.parent.mkdir(parents=True, exist_ok=True)
    rcfile.write(change)


def refresh_hook_file(shell: str) -> bool:
    """Rewrite an existing hook file whose text is out of date; True if it was rewritten.

    Only a file that exists is rewritten: `eval` users have none, and a user who ran
    `init --uninstall` must not get it back.
    """
    change = hook_file_change(shell)
    if not change.old_exists or not change.changed:
        return False
    _write(change)
    return True


def init(
    shell: str | None, *, uninstall: bool, dry_run: bool, out: TextIO,
    environ: Mapping[str, str] | None = None,
) -> int:  # fmt: skip
    """`condatainer init`: write the hook file and the rc block (or remove both)."""
    name = detect_shell(shell, environ)
    rc = rcfile.rc_path(name, environ)
    hook = rcfile.hook_path(name)
    if uninstall:
        rc_change = rcfile.remove_block(rc)
        hook_change = hook_file_change(name, remove=True)
    else:
        hook_change = hook_file_change(name)
        rc_change = rcfile.install_block(rc, rcfile.block_body(name, hook))
    if dry_run:
        text = rcfile.diff(rc_change)
        out.write(text if text else f"{rc}: no change\n")
        if hook_change.changed:
            verb = "remove" if uninstall else ("update" if hook_change.old_exists else "write")
            out.write(f"would {verb} {hook}\n")
        return 0
    # The block sources the hook file: write that first; remove it last.
    for change in (rc_change, hook_change) if uninstall else (hook_change, rc_change):
        _write(change)
    if uninstall:
        if rc_change.changed:
            out.write(f"removed the condatainer block from {rc}\n")
        else:
            out.write(f"{rc} has no condatainer block\n")
        if hook_change.changed:
            out.write(f"removed {hook}\n")
        return 0
    out.write(f"{'updated' if hook_change.old_exists else 'wrote'} {hook}\n"
              if hook_change.changed else f"{hook} is up to date\n")
    if rc_change.changed:
        out.write(f"added the condatainer block to {rc}\n")
        out.write(f"open a new shell to use it (or run: source {shellgen.quote(str(rc))})\n")
    else:
        out.write(f"{rc} already loads the hook\n")
    return 0


def hook(shell: str, out: TextIO) -> int:
    """`condatainer hook SHELL`: the hook text, for eval."""
    text = hook_text(detect_shell(shell))  # rendered in full before anything is printed
    out.write(text)
    return 0


def logical_cwd(environ: Mapping[str, str] | None = None) -> Path:
    """The working directory as the shell names it ($PWD, symlinks kept) when that is valid.

    The hook searches from $PWD, so `allow`/`deny` without an image do too: a project reached
    through a symlink has other parent directories than its real path.
    """
    env = os.environ if environ is None else environ
    pwd = env.get("PWD", "")
    here = os.getcwd()
    if pwd and os.path.isabs(pwd):
        try:
            if os.path.samefile(pwd, here):
                return Path(pwd)
        except OSError:
            pass
    return Path(here)


def _image_here(image: str | None, verb: str) -> Path:
    if image:
        return Path(image)
    found = resolve.find_image(logical_cwd(), os.environ)
    if found is None:
        raise UsageError(
            "no env.img or env-$USER.img found here, in overlay/ or src/overlay/, or above",
            hint=f"name the image: condatainer {verb} IMAGE",
        )
    return found


def allow(image: str | None, out: TextIO) -> int:
    """`condatainer allow [IMAGE]`: allow the image as it is now."""
    from condatainer.image import e2fs

    path = _image_here(image, "allow")
    if os.path.isfile(path) and not e2fs.looks_like_ext(path):
        raise TrustError(
            f"{path} is not an ext3 image; refusing to allow it",
            hint="env images are made with: condatainer o",
        )
    trust.allow(path)
    out.write(f"allowed {path}\n")
    return 0


def deny(image: str | None, out: TextIO) -> int:
    """`condatainer deny [IMAGE]`: forget the image's allow record."""
    path = _image_here(image, "deny")
    if trust.deny(path):
        out.write(f"denied {path}\n")
    else:
        out.write(f"{path} was not allowed\n")
    return 0
