"""What condatainer puts on every container's PATH: its micromamba and the `mm-*` commands.

Every Plan binds one host directory read-only at `micromamba.CONTAINER_BIN`
(/opt/condatainer/bin, on PATH right after /ext3/env/bin), holding:

- `mm-install`, `mm-list`, ...: one POSIX sh script per operation of the mm table
  (shell/mm-command.sh.j2), so `condatainer e -- mm-install pkg` and `mm-list` in a job script
  work without an interactive rc;
- `micromamba`: a placeholder (shell/micromamba-missing.sh.j2) that explains, exit 1, why there
  is no micromamba -- the real binary (condatainer's cached one, or config `micromamba`) is bound
  read-only over it whenever there is one.

The directory is generated once per content, in `$XDG_CACHE_HOME/condatainer/tools/<key>`,
where the key hashes condatainer's version, the mm table and the templates' text: condatainer
versions sharing a home never rewrite each other's scripts, and once it exists the exec path
renders nothing (no jinja2).  It is written in a temporary directory and renamed into place.

`provide(level, ...)` decides nothing: `resolve.micromamba_need` says how much a run needs
micromamba ("need": fetch it or fail; "want": try to fetch it, else a notice; "use": bind what
is there, fetch nothing), and this carries it out before `resolve` builds the Plan.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import shutil
from collections.abc import Mapping
from pathlib import Path

from condatainer import __version__, config, shellgen
from condatainer.display import Notify
from condatainer.errors import MicromambaError
from condatainer.micromamba import BINARY, locate
from condatainer.run import mm
from condatainer.run.resolve import NEED, USE, WANT, Tools

_TEMPLATES = (
    "mm-command.sh.j2",
    "micromamba-missing.sh.j2",
    *(shellgen.template_name(op.script, "sh") for op in mm.TABLE.values() if op.script),
)


def _key() -> str:
    digest = hashlib.sha256(__version__.encode())
    for op in mm.TABLE.values():
        digest.update(repr((op.name, op.summary, op.argv, op.bare_args, op.script)).encode())
    for name in _TEMPLATES:
        digest.update((shellgen.TEMPLATE_DIR / name).read_bytes())
    return digest.hexdigest()[:16]


def scripts() -> dict[str, str]:
    """{file name: text} of everything in the directory."""
    files = {BINARY: shellgen.render("micromamba-missing", "sh")}
    for op in mm.TABLE.values():
        body = shellgen.Raw(mm.script_text(op)) if op.script else None
        files[f"mm-{op.name}"] = shellgen.render(
            "mm-command",
            "sh",
            name=op.name,
            argv=list(op.argv),
            bare=list(op.bare_args),
            script=body,
        )
    return files


def directory(env: Mapping[str, str] | None = None) -> Path:
    """The host directory bound at CONTAINER_BIN, generated when missing."""
    final = config.paths(env)["cache"] / "tools" / _key()
    if final.is_dir():
        return final
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(f".{final.name}.{os.getpid()}-{secrets.token_hex(4)}")
        tmp.mkdir()
        try:
            for name, text in scripts().items():
                path = tmp / name
                path.write_text(text, encoding="utf-8")
                path.chmod(0o755)
            tmp.chmod(0o755)
            try:
                tmp.rename(final)
            except OSError:
                if not final.is_dir():  # not a concurrent twin that got there first
                    raise
        finally:
            with contextlib.suppress(OSError):
                shutil.rmtree(tmp)
    except OSError as exc:
        raise MicromambaError(
            f"cannot write condatainer's mm-* commands into {final.parent}: {exc.strerror or exc}",
            hint="make room there, or point XDG_CACHE_HOME at a writable directory",
        ) from None
    return final


def provide(
    level: str, cfg: config.Config, notify: Notify, env: Mapping[str, str] | None = None
) -> Tools:
    """The tools a run gets: the directory, and micromamba as far as `level` asks."""
    env = os.environ if env is None else env
    binary: str | None = None
    try:
        if level == USE:
            found = locate(cfg, env)
        else:
            from condatainer.micromamba import bootstrap  # the network and archives: on need

            found = bootstrap.ensure(cfg, notify, env)
        binary = found.path if found is not None else None
    except MicromambaError as exc:
        if level == NEED:
            raise
        tail = "; mm-* commands will fail in this container" if level == WANT else ""
        notify(exc.message + tail)
    return Tools(str(directory(env)), binary)
