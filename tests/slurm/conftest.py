"""A real one-node SLURM cluster for the tests in this directory, and helpers to use it.

`slurm_cluster` (session scope) runs `slurm-up.sh` once: it writes slurm.conf from
`hostname -s` and `slurmd -C`, starts munged, slurmctld and slurmd (each recording its pid) and
returns after a probe batch job has run -- about 3.3 s from nothing, 0.1-1 s when the cluster is
already up.  At the end it runs `slurm-down.sh` with exactly the NAME:PID pairs slurm-up.sh said
it started (each checked against /proc/PID/exe before it is signalled), then checks that they
are gone.  A cluster that was already running (a developer's `slurm-up.sh`) is used and left
running.  Everything lives in $SLURM_UP_DIR (default /run/slurm-up), logs in its log/
directory; a failure prints where, with the last log lines.

- Without SLURM installed, or without root, the tests skip locally and FAIL under CI=true, like
  every `need`ed tool; a cluster that is installed but does not start always fails.
- Two pytest sessions on one machine would share the daemons (one port pair), and the first to
  finish would stop them under the other: a session holds an flock on $SLURM_UP_DIR/.session for
  its whole life, and a second session waits for it (10 minutes at most).
- The fixture does not depend on the per-test HOME of tests/conftest.py: the scripts get an
  environment built from the one pytest started with (only PATH, locale and SLURM_UP_*).

`slurm` (per test) puts SLURM_CONF into the test's isolated environment (which clears SLURM_*)
and a `condatainer` launcher on PATH -- jobs inherit the submitter's environment, so the job's
`condatainer` is this checkout run by this interpreter -- and offers `sbatch` and `wait`, which
polls `scontrol show job` every 0.2 s (`sbatch --wait` polls at 2, 10, 42 s).
"""

from __future__ import annotations

import fcntl
import os
import shlex
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest

from tests.conftest import IN_CI
from tests.support import REPO, World, cnt, ok, world, world_channel  # noqa: F401  (fixtures)

HERE = Path(__file__).resolve().parent
UP = HERE / "slurm-up.sh"
DOWN = HERE / "slurm-down.sh"
# The environment pytest started with, read at import (before any test's isolation applies).
_START_ENV = dict(os.environ)
DIR = Path(_START_ENV.get("SLURM_UP_DIR") or "/run/slurm-up")
SESSION_WAIT = 600.0
FINAL_STATES = frozenset(
    {
        "COMPLETED",
        "FAILED",
        "CANCELLED",
        "TIMEOUT",
        "NODE_FAIL",
        "OUT_OF_MEMORY",
        "BOOT_FAIL",
        "DEADLINE",
        "PREEMPTED",
    }
)


# What the session's cluster did, for the summary line at the end of the run.
_SUMMARY: list[str] = []


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slurm: starts a real one-node SLURM")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for line in _SUMMARY:
        terminalreporter.write_line(line)


def _missing(what: str) -> NoReturn:
    """Skip locally, fail under CI (the rule of tests/conftest.py)."""
    if IN_CI:
        pytest.fail(f"{what} (CI=true: this must run in CI; fix .ci/setup-test-deps.sh)")
    pytest.skip(what)


def _script_env() -> dict[str, str]:
    path = os.pathsep.join(
        [
            "/usr/local/sbin",
            "/usr/local/bin",
            "/usr/sbin",
            "/usr/bin",
            "/sbin",
            "/bin",
            _START_ENV.get("PATH", ""),
        ]
    )
    env = {"PATH": path, "LC_ALL": "C"}
    env.update({k: v for k, v in _START_ENV.items() if k.startswith("SLURM_UP_")})
    return env


@dataclass(frozen=True)
class Cluster:
    conf: Path
    logs: Path
    started: tuple[str, ...]  # NAME:PID words this session started (empty: it was already up)
    up_seconds: float

    def log_tails(self, lines: int = 20) -> str:
        parts = []
        for name in ("slurmctld.log", "slurmd.log"):
            path = self.logs / name
            if path.exists():
                tail = path.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"--- {path} (last {lines} lines)\n" + "\n".join(tail))
        return "\n".join(parts)


def _wait_for_session_lock() -> int:
    """Hold $DIR/.session for this pytest session (released when the fd closes)."""
    DIR.mkdir(parents=True, exist_ok=True)
    fd = os.open(DIR / ".session", os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
    deadline = time.monotonic() + SESSION_WAIT
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() > deadline:
                os.close(fd)
                pytest.fail(
                    f"another pytest session has used the SLURM test cluster for"
                    f" {SESSION_WAIT:.0f} s ({DIR / '.session'} is locked)"
                )
            time.sleep(0.5)


def _gone(word: str) -> bool:
    """True when the NAME:PID process has exited (a zombie counts as exited)."""
    pid = word.partition(":")[2]
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] == "Z"


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[Cluster]:
    """The running cluster (see the module docstring)."""
    missing = [t for t in ("slurmctld", "slurmd", "sbatch", "munged") if not _which(t)]
    if missing:
        _missing(
            f"SLURM is not installed (no {', '.join(missing)}):"
            " apt-get install --no-install-recommends slurm-wlm munge"
        )
    if os.geteuid() != 0:
        _missing("the SLURM test cluster needs root")
    lock = _wait_for_session_lock()
    try:
        t0 = time.monotonic()
        res = subprocess.run(
            [str(UP)],
            env=_script_env(),
            cwd="/",
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        if res.returncode != 0:
            pytest.fail(
                f"slurm-up.sh failed (exit {res.returncode}); logs in {DIR / 'log'}\n{res.stderr}"
            )
        values = dict(
            shlex.split(line)[0].split("=", 1) for line in res.stdout.splitlines() if line.strip()
        )
        cluster = Cluster(
            conf=Path(values["SLURM_CONF"]),
            logs=Path(values["SLURM_UP_LOGS"]),
            started=tuple(values["SLURM_UP_STARTED"].split()),
            up_seconds=time.monotonic() - t0,
        )
        how = f"started {' '.join(cluster.started)}" if cluster.started else "already running"
        _SUMMARY.append(
            f"slurm test cluster: up in {cluster.up_seconds:.2f} s ({how}); logs in {cluster.logs}"
        )
        yield cluster
        if cluster.started:
            down = subprocess.run(
                [str(DOWN), *cluster.started],
                env=_script_env(),
                cwd="/",
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            left = [w for w in cluster.started if not _gone(w)]
            assert down.returncode == 0 and not left, (
                f"slurm-down.sh exit {down.returncode}, still running: {left}\n{down.stderr}"
            )
    finally:
        os.close(lock)


def _which(tool: str) -> str | None:
    from condatainer import runner

    return runner.which(tool)


# --------------------------------------------------------------------------------------------
# Per test


def parse_job(line: str) -> dict[str, str]:
    """One line of `scontrol show job -o` as a dict (a word without `=` belongs to the last
    value: Command= holds the script's arguments joined with spaces)."""
    fields: dict[str, str] = {}
    key = ""
    for word in line.rstrip().split(" "):
        name, eq, value = word.partition("=")
        if eq and name.replace("/", "").replace(":", "").isalnum():
            key = name
            fields[key] = value
        elif key:
            fields[key] += " " + word
    return fields


class Slurm:
    """A test's handle on the cluster: submit, then wait for jobs by polling."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster

    def run(
        self, *argv: str, cwd: Path | None = None, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(argv),
            cwd=cwd,
            input=input,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def sbatch(self, *args: str, cwd: Path) -> str:
        """Plain `sbatch --parsable ARGS...` from `cwd`; the job id."""
        res = self.run("sbatch", "--parsable", *args, cwd=cwd)
        assert res.returncode == 0, f"sbatch failed: {res.stderr}"
        return res.stdout.strip().split(";")[0]

    def jobs(self, job_id: str) -> list[dict[str, str]]:
        """`scontrol show job -o ID` (one dict per array task); [] once slurmctld forgot it."""
        res = self.run("scontrol", "show", "job", "-o", job_id)
        return [parse_job(line) for line in res.stdout.splitlines() if line.strip()]

    def wait(self, job_id: str, *, timeout: float = 60, tasks: int = 1) -> list[dict[str, str]]:
        """Poll every 0.2 s until `tasks` jobs (array tasks) under `job_id` have all ended."""
        deadline = time.monotonic() + timeout
        found: list[dict[str, str]] = []
        while time.monotonic() < deadline:
            found = self.jobs(job_id)
            if len(found) >= tasks and all(j.get("JobState") in FINAL_STATES for j in found):
                return found
            time.sleep(0.2)
        self.fail(f"job {job_id} not finished after {timeout} s", found)

    def fail(self, what: str, found: Sequence[dict[str, str]]) -> NoReturn:
        outputs = []
        for job in found:
            out = Path(job.get("StdOut", ""))
            if out.is_file():
                outputs.append(f"--- {out}\n{out.read_text(errors='replace')}")
        pytest.fail(
            "\n".join([what, *(repr(j) for j in found), *outputs, self.cluster.log_tails()])
        )

    def queued(self, name: str) -> list[str]:
        """Ids of jobs named `name` that slurmctld still knows."""
        res = self.run("squeue", "-h", "-t", "all", "-n", name, "-o", "%i")
        return res.stdout.split()


@pytest.fixture
def slurm(slurm_cluster: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Slurm:
    monkeypatch.setenv("SLURM_CONF", str(slurm_cluster.conf))
    bin_dir = tmp_path / "launcher"
    bin_dir.mkdir()
    launcher = bin_dir / "condatainer"
    launcher.write_text(
        "#!/bin/sh\n# condatainer from this checkout, for jobs the tests submit\n"
        f"PYTHONPATH={shlex.quote(str(REPO))} exec {shlex.quote(sys.executable)}"
        ' -m condatainer "$@"\n'
    )
    launcher.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return Slurm(slurm_cluster)


# --------------------------------------------------------------------------------------------
# Projects and job scripts

# What job scripts print from inside (or outside) the container.
REPORT = """\
echo "dollar0=$0"
echo "IN_CONDATAINER=${IN_CONDATAINER:-}"
echo "CONDA_PREFIX=${CONDA_PREFIX:-}"
echo "CNT_OVERLAY=${CNT_OVERLAY:-}"
echo "CNT_SCRIPT=${CNT_SCRIPT:-}"
echo "SUBMIT_DIR=${SLURM_SUBMIT_DIR:-}"
"""


@pytest.fixture
def project(world: World, slurm: Slurm, tmp_path: Path) -> Path:  # noqa: F811
    """A project directory holding env.img (with cnt-hello) and a scripts/ directory."""
    proj = tmp_path / "proj"
    (proj / "scripts").mkdir(parents=True)
    ok(cnt("o", str(proj / "env.img"), "-s", "256M", "--sparse", "--", "cnt-hello"))
    return proj


@pytest.fixture
def bare_project(world: World, slurm: Slurm, tmp_path: Path) -> Path:  # noqa: F811
    """A project directory holding an empty env.img (enough for the refusals, and faster)."""
    proj = tmp_path / "proj"
    proj.mkdir()
    ok(cnt("o", str(proj / "env.img"), "-s", "64M", "--sparse"))
    return proj


def script(path: Path, header: str, body: str = REPORT) -> Path:
    path.write_text(textwrap.dedent(header) + body)
    return path


def values(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
