"""`condatainer o` for an empty env without the CLI (newenv.py): what the CLI would print and
make, word for word and byte for byte, with next to nothing imported before mke2fs starts, and
the CLI again whenever the configuration it wrote down no longer holds.

Real processes throughout.  "The CLI's path" is `cli.main` run directly, which never takes the
import-light path; "the route" is `entry` in a fresh `-S` interpreter (no site: the editable
install's import hook would load pathlib and re before any code of ours) that reports, to a
file, the modules imported at the moment it forks mke2fs and whether the CLI was imported.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import sysconfig
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from condatainer import config, newenv
from condatainer.hook import trust
from tests.support import REPO, debugfs_cat

CLI = "import sys; from condatainer import cli; sys.exit(cli.main(sys.argv[1:]))"

ROUTE = textwrap.dedent(
    """
    import os, sys
    sys.path.insert(0, {repo!r})
    sys.path.append({purelib!r})
    before = set(sys.modules)
    import condatainer  # its templates, shell/, are condatainer.shell (the editable install
    condatainer.__path__.append({repo!r})  # maps them so; without site, this does)
    report_to, args = sys.argv[1], sys.argv[2:]
    real_fork = os.fork

    def report(when):
        with open(report_to, "a") as f:
            f.write(when + " " + " ".join(sorted(set(sys.modules) - before)) + "\\n")

    def fork():
        report("fork")
        return real_fork()

    os.fork = fork
    real_exit = os._exit

    def leave(status):
        report("exit")
        real_exit(status)

    os._exit = leave
    sys.argv = ["condatainer", *args]
    from condatainer.entry import entry
    try:
        entry()
    finally:
        report("exit")  # after a SystemExit (the CLI); the route leaves with os._exit
    """
)

# What the route may import before mke2fs starts besides condatainer's own modules (C modules,
# `_*`, aside: `_ctypes` serves PR_SET_PDEATHSIG): the record's lock, the configuration's stamps.
# Not ctypes, re, pathlib, json, dataclasses, typing, subprocess, contextlib, enum or signal:
# each of those costs every create a millisecond or more; nor struct or zlib, whose shared
# libraries cost about 0.3 ms each to load.
STDLIB = {"__future__", "errno", "fcntl", "marshal", "stat"}
OURS = {
    "condatainer", "condatainer.entry", "condatainer.newenv", "condatainer.memo",
    "condatainer.record", "condatainer.errors", "condatainer.display", "condatainer.colour",
    "condatainer.xdg", "condatainer.jsontext",
    "condatainer.progress", "condatainer.runner", "condatainer.signals", "condatainer.image",
    "condatainer.image.create", "condatainer.image.files",
    "condatainer.image.layout", "condatainer.image.profiles", "condatainer.image.records",
    "condatainer.image.sizes",
}  # fmt: skip


class Ran:
    def __init__(self, res: subprocess.CompletedProcess[str], reports: list[str]):
        self.status, self.out, self.err = res.returncode, res.stdout, res.stderr
        self.at_fork: set[str] | None = None
        self.at_exit: set[str] = set()
        self.cli = False
        for line in reports:
            when, *modules = line.split()
            if when == "fork" and self.at_fork is None:
                self.at_fork = set(modules)
            if when == "exit":
                self.at_exit = set(modules)
            self.cli = self.cli or "condatainer.cli" in modules

    @property
    def routed(self) -> bool:
        return self.at_fork is not None and not self.cli

    def stdlib(self) -> set[str]:
        assert self.at_fork is not None
        return {m for m in self.at_fork if not m.startswith(("condatainer", "_"))}

    def ours(self) -> set[str]:
        assert self.at_fork is not None
        return {m for m in self.at_fork if m.startswith("condatainer")}


@pytest.fixture
def route(tmp_path: Path) -> Callable[..., Ran]:
    """`condatainer ARGS` through `entry`, as a user's shell starts it."""
    child = tmp_path / "route.py"
    report = tmp_path / "modules.txt"
    purelib = sysconfig.get_paths()["purelib"]
    child.write_text(ROUTE.format(repo=str(REPO), purelib=purelib))

    def run(*args: str, cwd: Path) -> Ran:
        report.unlink(missing_ok=True)
        res = subprocess.run(
            [sys.executable, "-S", str(child), str(report), *args], cwd=cwd,
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        lines = report.read_text().splitlines() if report.exists() else []
        return Ran(res, lines)

    return run


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`condatainer ARGS` decided by the CLI in full."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-c", CLI, *args], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip


def facts(image: Path) -> dict[str, object]:
    """What a user could tell apart in two images made the same way (no UUIDs, no times)."""
    st = image.stat()
    head = subprocess.run(
        ["dumpe2fs", "-h", str(image)], capture_output=True, text=True, check=True
    ).stdout
    wanted = ("Block count", "Inode count", "Reserved block count", "Block size",
              "Filesystem features", "Filesystem state", "Inode size", "Journal size")  # fmt: skip
    fields = dict(
        line.split(":", 1) for line in head.splitlines() if line.split(":", 1)[0] in wanted
    )
    owners = {}
    for inner in ("/", "/upper", "/work", "/upper/ext3/env", "/upper/ext3/env/.condarc"):
        out = subprocess.run(
            ["debugfs", "-R", f"stat {inner}", str(image)], capture_output=True, text=True
        ).stdout
        found = re.search(r"User:\s+(\d+)\s+Group:\s+(\d+)\s+.*?Size: (\d+)", out, re.S)
        owners[inner] = found.groups() if found else None
    return {
        "size": st.st_size,
        "mode": oct(st.st_mode),
        "allocated": st.st_blocks * 512 >= st.st_size,
        "fs": {k: v.strip() for k, v in fields.items()},
        "owners": owners,
        "condarc": debugfs_cat(image, "/upper/ext3/env/.condarc"),
        "trust": trust.status(image),
    }


def hidden(directory: Path) -> list[str]:
    return sorted(n for n in os.listdir(directory) if n.startswith("."))


def test_only_the_plain_forms_are_taken() -> None:
    assert newenv.parse([]) == {}
    assert newenv.parse(["env2", "-s", "1G", "-p", "conda", "-S", "--fakeroot"]) == {
        "image": "env2", "size": "1G", "profile": "conda", "sparse": True, "fakeroot": True,
    }  # fmt: skip
    assert newenv.parse(["--size=2G", "--profile=large", "--sparse", "x.img"]) == {
        "size": "2G", "profile": "large", "sparse": True, "image": "x.img",
    }  # fmt: skip
    for words in (
        ["--", "numpy"], ["env.img", "numpy"], ["-f", "env.yml"], ["-c", "conda-forge"],
        ["--dry-run"], ["-h"], ["--help"], ["-q"], ["-v"], ["-s1G"], ["--spar"], ["-t", "small"],
        ["-s", "1G", "-s", "2G"], ["--sparse", "-S"], ["-s"], ["-s", "-1G"], ["-b", "x.sif"],
        ["--override-channels"], ["--json"], ["a.img", "b.img"],
    ):  # fmt: skip
        assert newenv.parse(words) is None, words


CASES = [
    ["o"],
    ["o", "env2"],
    ["o", "x.img", "-s", "100M"],
    ["o", "-S", "y.ext3", "--size=70M"],
    ["o", "z", "-p", "conda", "--sparse", "-s", "64M"],
    ["overlay", "create", "w.img", "-s", "80M", "--sparse"],
    ["o", "sub//./v", "-s", "64M", "--sparse"],
]


@pytest.mark.parametrize("words", CASES, ids=" ".join)
def test_the_route_makes_what_the_cli_makes(
    words: list[str], wd: Path, route: Callable[..., Ran], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CNT_DEFAULT_SIZE", "72M")  # the configuration the CLI writes down
    by_cli, by_route = wd / "cli", wd / "route"
    for where in (by_cli, by_route):
        (where / "sub").mkdir(parents=True)
    cli = run_cli(*words, cwd=by_cli)  # also what the route replays
    assert cli.returncode == 0, cli.stderr
    ran = route(*words, cwd=by_route)
    assert ran.routed, ran.err
    assert (ran.status, ran.out, ran.err) == (cli.returncode, cli.stdout, cli.stderr)
    name = cli.stdout.split()[1]  # created NAME (...)
    assert facts(by_route / name) == facts(by_cli / name)
    assert hidden(by_route) == hidden(by_cli) == []


def test_before_mke2fs_the_route_imports_next_to_nothing(
    wd: Path, route: Callable[..., Ran]
) -> None:
    first = route("o", "a.img", "-s", "64M", "--sparse", cwd=wd)
    assert first.status == 0 and first.cli, first.err  # nothing written down yet: the CLI
    again = route("o", "b.img", "-s", "64M", "--sparse", cwd=wd)
    assert again.status == 0 and again.routed, again.err
    assert again.ours() <= OURS, again.ours() - OURS
    assert again.stdlib() <= STDLIB, again.stdlib() - STDLIB


def test_a_changed_configuration_is_read_again(
    wd: Path, route: Callable[..., Ran], monkeypatch: pytest.MonkeyPatch
) -> None:
    user_config = config.paths()["config"]
    user_config.parent.mkdir(parents=True, exist_ok=True)
    sizes = {}
    for step, (text, env) in enumerate(
        [
            ("default_size: 70M\n", {}),
            ("default_size: 70M\n", {}),  # unchanged: replayed
            ("default_size: 90M\nchannels: [bioconda]\n", {}),  # edited: read again
            ("default_size: 90M\nchannels: [bioconda]\n", {"CNT_DEFAULT_SIZE": "100M"}),
        ]
    ):
        if not user_config.exists() or user_config.read_text() != text:
            user_config.write_text(text)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        ran = route("o", f"i{step}.img", "--sparse", cwd=wd)
        assert ran.status == 0, ran.err
        sizes[step] = ((wd / f"i{step}.img").stat().st_size >> 20, ran.routed)
        condarc = debugfs_cat(wd / f"i{step}.img", "/upper/ext3/env/.condarc")
        assert condarc is not None and ("bioconda" in condarc) == (step >= 2)
    assert sizes == {0: (70, False), 1: (70, True), 2: (90, False), 3: (100, False)}


@pytest.mark.parametrize(
    "words, status",
    [
        (["o", "taken.img", "-s", "64M"], 1),  # exists
        (["o", "n.img", "-s", "1X"], 2),
        (["o", "n.img", "-s", "64M", "-p", "tiny"], 2),
        (["o", "n.img", "-s", "16K"], 2),
        (["o", "missing/n.img", "-s", "64M"], 1),
        (["o", "..", "-s", "64M"], 1),
    ],
)
def test_what_the_cli_refuses_it_refuses_in_its_words(
    words: list[str], status: int, wd: Path, route: Callable[..., Ran]
) -> None:
    assert run_cli("o", "warm.img", "-s", "64M", "--sparse", cwd=wd).returncode == 0
    (wd / "taken.img").write_text("mine\n")
    cli = run_cli(*words, cwd=wd)
    ran = route(*words, cwd=wd)
    assert (ran.status, ran.out, ran.err) == (cli.returncode, cli.stdout, cli.stderr) != (0, "", "")
    assert cli.returncode == status, cli.stderr
    assert ran.cli  # stepped aside: the CLI said it
    assert (wd / "taken.img").read_text() == "mine\n" and hidden(wd) == []


@pytest.mark.root
def test_the_sparse_warning_is_the_same(
    tmpfs: Callable[[str], Path], route: Callable[..., Ran]
) -> None:
    one, two = tmpfs("96M"), tmpfs("96M")
    cli = run_cli("o", "big.img", "-s", "1G", "--sparse", cwd=one)
    assert cli.returncode == 0, cli.stderr
    ran = route("o", "big.img", "-s", "1G", "--sparse", cwd=two)
    assert ran.routed
    assert "is sparse and may grow to 1G, but only 96M are free" in cli.stderr
    assert (ran.status, ran.out) == (cli.returncode, cli.stdout)
    assert ran.err.replace(str(two), str(one)) == cli.stderr


def test_an_interrupted_route_leaves_nothing(
    wd: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGTERM while mke2fs runs: 143, one line, the hidden files and the record gone, and
    mke2fs killed with it (a stand-in that would otherwise run for ten minutes)."""
    assert run_cli("o", "warm.img", "-s", "64M", "--sparse", cwd=wd).returncode == 0
    fakes = tmp_path / "fakes"
    fakes.mkdir()
    started = tmp_path / "started"
    (fakes / "mke2fs").write_text(f"#!/bin/sh\necho $$ > {started}\nexec sleep 600\n")
    (fakes / "mke2fs").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fakes}{os.pathsep}{os.environ['PATH']}")
    proc = subprocess.Popen(
        [sys.executable, "-m", "condatainer", "o", "env.img", "-s", "64M", "--sparse"],
        cwd=wd, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    from tests.waiting import pid_alive, wait_until

    wait_until(lambda: started.exists() and started.read_text().strip(), "mke2fs to start")
    tool = int(started.read_text())
    proc.terminate()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert (
        err
        == "condatainer: error: creating env.img was interrupted by SIGTERM; nothing was created\n"
    )
    wait_until(lambda: not pid_alive(tool), "mke2fs to be killed")
    assert not (wd / "env.img").exists() and hidden(wd) == []


def test_the_written_down_defaults_are_the_users_own(wd: Path) -> None:
    """An entry another user could have written is never replayed (memo's rule)."""
    assert run_cli("o", "warm.img", "-s", "64M", "--sparse", cwd=wd).returncode == 0
    assert newenv.recall(os.environ) is not None
    (entry,) = (Path(p) for p in _entries())
    entry.chmod(0o666)
    assert newenv.recall(os.environ) is None
    entry.chmod(0o600)
    assert newenv.recall(os.environ) == ("10G", "balanced", _condarc(["conda-forge"]))


def _entries() -> list[str]:
    from condatainer import memo

    where = os.path.join(memo.cache_dir(os.environ), newenv.DEFAULTS)
    return [os.path.join(where, n) for n in os.listdir(where)]


def _condarc(channels: list[str]) -> bytes:
    return ("channels:\n" + "".join(f"  - {json.dumps(c)}\n" for c in channels)).encode()


def test_an_mke2fs_that_cannot_run_is_named_and_nothing_is_left(
    wd: Path, tmp_path: Path, route: Callable[..., Ran], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run_cli("o", "warm.img", "-s", "64M", "--sparse", cwd=wd).returncode == 0
    fakes = tmp_path / "fakes"
    fakes.mkdir()
    (fakes / "mke2fs").write_text("#!/nonexistent/interpreter\n")
    (fakes / "mke2fs").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fakes}{os.pathsep}{os.environ['PATH']}")
    cli = run_cli("o", "env.img", "-s", "64M", "--sparse", cwd=wd)
    ran = route("o", "env.img", "-s", "64M", "--sparse", cwd=wd)
    assert ran.routed
    assert (ran.status, ran.out, ran.err) == (cli.returncode, cli.stdout, cli.stderr)
    assert cli.returncode == 1
    assert cli.stderr == (
        "condatainer: error: 'mke2fs' cannot be run: No such file or directory\n"
        "hint: reinstall it (Debian/Ubuntu: apt-get install --reinstall e2fsprogs),"
        " then run: condatainer doctor\n"
    )
    assert not (wd / "env.img").exists() and hidden(wd) == []


# What the route imports after mke2fs starts, to its end: a burst of imports on the other core
# slows mke2fs itself (pathlib, trust.py's enum, typing, json and configuration cost it 10 ms and
# more at 1G), so the check of the result and the allow record only; SHA-256 without OpenSSL.
AFTER_FORK = {
    "condatainer.atomic", "condatainer.hook", "condatainer.hook.allowed",
    "condatainer.hook.stamp", "condatainer.image.clean", "_sha2", "_sha256",
}  # fmt: skip


def test_while_mke2fs_works_the_route_imports_little(wd: Path, route: Callable[..., Ran]) -> None:
    assert route("o", "a.img", "-s", "64M", "--sparse", cwd=wd).cli
    again = route("o", "b.img", "-s", "64M", "--sparse", cwd=wd)
    assert again.status == 0 and again.routed, again.err
    assert again.at_fork is not None and again.at_exit
    after = again.at_exit - again.at_fork
    assert after <= AFTER_FORK, after - AFTER_FORK
    assert trust.status(wd / "b.img") is trust.TrustStatus.ALLOWED
