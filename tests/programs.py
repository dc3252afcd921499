"""Scripts the tests run as programs, bound to the test interpreter.

The micromamba stand-in (tests/world/micromamba) and the recording `apptainer`
(tests/fakes/apptainer) are Python scripts.  Started through their `#!/usr/bin/env python3` line
they would run on whatever `python3` comes first on PATH -- on a fresh machine a Python without
py-rattler or PyYAML -- so the suite never runs them from their source.  `bound_copy` writes a
copy whose `#!` line names this interpreter (`sys.executable`, the one that has the test
dependencies), which keeps working wherever the copy is later run from: a cache of
condatainer's, a container of the builtin runtime (its base is the host root), a job.

The copies live in `program_dir(kind)`: one directory per kind of program (the world's
micromamba must be on PATH without the fake apptainer, or `runtime: auto` would pick it), per
user and per interpreter, under the system's temporary directory.  The directory is computed at
import time (test modules keep the paths in constants), before the per-test TMPDIR exists.
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

_BASE = Path(tempfile.gettempdir())
_REPO = Path(__file__).resolve().parents[1]


def program_dir(kind: str) -> Path:
    """A directory for bound copies of `kind` (e.g. "world", "fakes"), created if missing."""
    tag = hashlib.sha256(os.fsencode(sys.executable)).hexdigest()[:12]
    path = _BASE / f"cnt-programs-{os.getuid()}" / f"{kind}-{tag}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def bound_copy(source: Path, dest_dir: Path, *, python: str = sys.executable) -> Path:
    """Copy the script `source` into `dest_dir` with `python` in its `#!` line; return the copy.

    An identical copy is left alone; a different one is replaced atomically, so concurrent test
    sessions never run a half-written script.
    """
    text = source.read_text(encoding="utf-8")
    first, _, rest = text.partition("\n")
    if not first.startswith("#!"):
        raise ValueError(f"{source}: not a script (no #! line)")
    target = dest_dir / source.name
    data = f"#!{python}\n{rest}"
    try:
        current = target.read_text(encoding="utf-8")
    except OSError:
        current = None
    if current != data:
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        tmp.write_text(data, encoding="utf-8")
        tmp.chmod(0o755)
        tmp.replace(target)
    return target


@functools.cache
def unprivileged_python() -> tuple[str, str]:
    """(interpreter, PYTHONPATH) with which an unprivileged uid can import condatainer.

    A checkout (or fresh-ci's clone) may sit in a directory other users cannot enter, and the
    test interpreter may live under /root (pyenv): so condatainer's sources are copied, laid out
    as in a wheel, into a world-readable directory, and the interpreter is the test one when any
    user can run it, else Debian's /usr/bin/python3.  What runs there must need only the
    standard library (the image and lock modules do).  Removed when the test session ends.
    """
    base = Path(tempfile.mkdtemp(prefix="cnt-unprivileged-", dir="/tmp"))
    atexit.register(shutil.rmtree, base, ignore_errors=True)
    base.chmod(0o755)
    shutil.copytree(
        _REPO / "condatainer", base / "condatainer", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copytree(
        _REPO / "shell",
        base / "condatainer" / "shell",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    for path in base.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    for candidate in (sys.executable, "/usr/bin/python3"):
        probe = subprocess.run(
            [
                "setpriv",
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "--",
                candidate,
                "-c",
                "import condatainer.image.locks",
            ],
            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(base)},
            cwd="/",
            capture_output=True,
            check=False,
        )
        if probe.returncode == 0:
            return candidate, str(base)
    raise AssertionError(
        "no Python that uid 65534 can run (tried the test interpreter and"
        " /usr/bin/python3; apt-get install python3)"
    )
