"""The exec fast path (run/replay.py, entry.py): a repeated exec replays the recorded decision,
importing almost nothing, and any change to what the decision read makes it decide again.

Every run here is a real `condatainer exec` process with the builtin runtime (root: loop
mounts, overlayfs) or, for the Apptainer rows, the path up to the exec of `apptainer`.  The
child interpreter starts with `-S` (no site: this venv's editable-install hook imports pathlib
and re before any code of ours would; the child maps `condatainer.shell` itself) and reports,
to a file, every module imported after its start -- after the command has run (builtin) or at
the moment it would have become `apptainer` (its exec functions stand in).  "Replayed" means
`condatainer.cli` was never imported; everything else the tests check is what the user sees.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from condatainer import config, memo
from condatainer.errors import RuntimeUnavailableError
from condatainer.run import launch, replay
from condatainer.run.resolve import Request
from condatainer.run.runtime import selection
from tests.support import REPO, cnt, ok

pytestmark = pytest.mark.root

# What the exec path may import besides condatainer's own modules (C modules, `_*`, aside):
# ctypes (the builtin runtime's system calls) and what it brings, the users database.  Not zlib
# (memo's digests are built from int), signal (its enums: `_signal` serves), contextlib,
# collections, functools or typing: each of those costs every call a millisecond or more.
STDLIB = {
    "ctypes", "ctypes._endian", "errno", "fcntl", "grp", "pwd", "stat", "struct", "types",
}  # fmt: skip
BUILTIN_PATH = {
    "condatainer", "condatainer.entry", "condatainer.errors", "condatainer.record",
    "condatainer.memo", "condatainer.xdg",
    "condatainer.display", "condatainer.image", "condatainer.image.clean",
    "condatainer.image.locks", "condatainer.run", "condatainer.run.options",
    "condatainer.run.plan", "condatainer.run.replay", "condatainer.run.runtime",
    "condatainer.run.runtime.handoff", "condatainer.run.runtime.builtin",
    "condatainer.run.runtime._base", "condatainer.run.runtime._child",
    "condatainer.run.runtime._linux", "condatainer.run.runtime._setup", "condatainer.run.basefs",
}  # fmt: skip
APPTAINER_PATH = {
    "condatainer", "condatainer.entry", "condatainer.errors", "condatainer.record",
    "condatainer.memo", "condatainer.xdg",
    "condatainer.names", "condatainer.image", "condatainer.image.locks", "condatainer.run",
    "condatainer.run.options", "condatainer.run.plan", "condatainer.run.replay",
    "condatainer.run.runtime", "condatainer.run.runtime.handoff",
    "condatainer.run.runtime.apptainer", "condatainer.runner",
}  # fmt: skip

CHILD = textwrap.dedent(
    """
    import os, sys
    sys.path.insert(0, {repo!r})
    sys.path.append({purelib!r})
    before = set(sys.modules)
    import condatainer  # its templates, shell/, are condatainer.shell (the editable install
    condatainer.__path__.append({repo!r})  # maps them so; without site, this does)
    report_to = {report!r}

    def report():
        with open(report_to, "a") as f:
            f.write(" ".join(sorted(set(sys.modules) - before)) + "\\n")

    def became(*args):  # where the process would have become apptainer (or the command)
        report()
        os._exit(0)

    if os.environ.get("REPLAY_TEST_STOP_AT_EXEC"):
        os.execvpe = os.execve = os.execv = became
    from condatainer.entry import main
    status = main(sys.argv[1:])
    report()
    sys.exit(status)
    """
)


@dataclass
class Run:
    status: int
    out: str
    err: str
    modules: set[str]

    @property
    def replayed(self) -> bool:
        assert self.modules, "nothing reported: the process became another program"
        return "condatainer.cli" not in self.modules

    def ours(self) -> set[str]:
        return {m for m in self.modules if m.startswith("condatainer")}

    def stdlib(self) -> set[str]:
        return {m for m in self.modules - self.ours() if not m.startswith("_")}


@pytest.fixture
def run_exec(tmp_path: Path):  # type: ignore[no-untyped-def]
    """exec's arguments run as `condatainer exec ARGS` in a fresh -S interpreter."""
    report = tmp_path / "modules.txt"
    child = tmp_path / "child.py"
    child.write_text(
        CHILD.format(repo=str(REPO), purelib=sysconfig.get_paths()["purelib"], report=str(report))
    )

    def run(*args: str, cwd: Path, env: dict[str, str] | None = None, stop: bool = False) -> Run:
        report.unlink(missing_ok=True)
        full = {**os.environ, **(env or {})}
        if stop:
            full["REPLAY_TEST_STOP_AT_EXEC"] = "1"
        res = subprocess.run(
            [sys.executable, "-S", str(child), "exec", *args],
            cwd=cwd,
            env=full,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        lines = report.read_text().splitlines() if report.exists() else [""]
        return Run(res.returncode, res.stdout, res.stderr, set(lines[0].split()))

    return run


def make_image(path: Path, marker: str = "one") -> Path:
    """An ext3 overlay image holding /ext3/env/marker (made with mke2fs -d)."""
    tree = path.with_name(path.name + ".tree")
    env_dir = tree / "upper" / "ext3" / "env"
    env_dir.mkdir(parents=True)
    (tree / "work").mkdir()
    (env_dir / "marker").write_text(marker + "\n")
    subprocess.run(
        ["mke2fs", "-q", "-F", "-t", "ext3", "-d", str(tree), str(path), "32M"], check=True
    )
    shutil.rmtree(tree)
    return path


@pytest.fixture
def project(tmp_path: Path) -> Path:
    wd = tmp_path / "proj"
    wd.mkdir()
    make_image(wd / "env.img")
    return wd


BUILTIN = {"CNT_RUNTIME": "builtin"}


# --------------------------------------------------------------------------------------------
# The fast path and what it imports


def test_a_repeated_exec_is_replayed_and_imports_almost_nothing(run_exec, project: Path) -> None:
    first = run_exec("-o", "env.img", "--", "cat", "/ext3/env/marker", cwd=project, env=BUILTIN)
    assert (first.status, first.out) == (0, "one\n") and not first.replayed, first.err
    again = run_exec("-o", "env.img", "--", "cat", "/ext3/env/marker", cwd=project, env=BUILTIN)
    assert (again.status, again.out, again.err) == (0, "one\n", "")
    assert again.replayed
    assert again.ours() <= BUILTIN_PATH, again.ours() - BUILTIN_PATH
    assert again.stdlib() <= STDLIB, again.stdlib() - STDLIB
    # another command with the same options is the same decision
    other = run_exec("-o", "env.img", "--", "sh", "-c", "exit 7", cwd=project, env=BUILTIN)
    assert other.status == 7 and other.replayed


def test_the_apptainer_path_imports_less_still(run_exec, project: Path, tmp_path: Path) -> None:
    fake = tmp_path / "bin" / "apptainer"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    base = tmp_path / "base.sif"
    base.write_bytes(b"")
    env = {
        "CNT_RUNTIME": "apptainer",
        "CNT_APPTAINER_BIN": str(fake),
        "CNT_BASE_IMAGE": str(base),
    }
    first = run_exec("-o", "env.img", "--", "true", cwd=project, env=env, stop=True)
    assert first.status == 0 and not first.replayed, first.err
    again = run_exec("-o", "env.img", "--", "true", cwd=project, env=env, stop=True)
    assert again.status == 0 and again.replayed, again.err
    assert again.ours() <= APPTAINER_PATH, again.ours() - APPTAINER_PATH
    lean = STDLIB - {"ctypes", "ctypes._endian", "grp", "pwd"}
    assert again.stdlib() <= lean, again.stdlib() - lean


def test_a_shim_call_is_replayed_and_trust_still_holds(run_exec, project: Path) -> None:
    ok(cnt("allow", "env.img", cwd=project))
    args = ("--if-allowed", "-o", "env.img", "--", "cat", "/ext3/env/marker")
    assert not run_exec(*args, cwd=project, env=BUILTIN).replayed
    assert run_exec(*args, cwd=project, env=BUILTIN).replayed
    ok(cnt("deny", "env.img", cwd=project))
    denied = run_exec(*args, cwd=project, env=BUILTIN)
    assert denied.status != 0 and not denied.replayed
    assert "env.img is not allowed" in denied.err
    ok(cnt("allow", "env.img", cwd=project))
    assert run_exec(*args, cwd=project, env=BUILTIN).out == "one\n"


def test_quiet_or_verbose_exec_is_decided_in_full(run_exec, project: Path) -> None:
    """-q/-v change what exec shows (its notices), which a replay would not honour: such a
    call is decided in full every time, and its output is the command's."""
    for flag in ("-q", "-v"):
        args = (flag, "-o", "env.img", "--", "cat", "/ext3/env/marker")
        first = run_exec(*args, cwd=project, env=BUILTIN)
        assert (first.status, first.out) == (0, "one\n") and not first.replayed, first.err
        again = run_exec(*args, cwd=project, env=BUILTIN)
        assert again.out == "one\n" and not again.replayed


# --------------------------------------------------------------------------------------------
# Checks made on every call, replayed or not


def test_a_busy_image_is_named_with_its_holder_on_a_replay(run_exec, project: Path) -> None:
    args = ("-o", "env.img", "--", "true")
    run_exec(*args, cwd=project, env=BUILTIN)
    holder = subprocess.Popen(
        [sys.executable, "-m", "condatainer", "exec", "-w", "-o", "env.img", "--", "sleep", "60"],
        cwd=project,
        env={**os.environ, **BUILTIN, "PYTHONPATH": str(REPO)},
    )
    try:
        from tests.waiting import wait_for_lock

        wait_for_lock(project / "env.img", "write")
        busy = run_exec(*args, cwd=project, env=BUILTIN)
    finally:
        holder.terminate()
        holder.wait(timeout=60)
    assert busy.replayed and busy.status == 1
    assert f"env.img: in use for writing by condatainer exec sleep (PID {holder.pid}" in busy.err


def test_an_unclean_image_is_refused_on_a_replay(run_exec, project: Path) -> None:
    args = ("-o", "env.img", "--", "true")
    run_exec(*args, cwd=project, env=BUILTIN)
    subprocess.run(
        ["debugfs", "-w", "-R", "ssv state 0", str(project / "env.img")],
        check=True,
        capture_output=True,
    )
    refused = run_exec(*args, cwd=project, env=BUILTIN)
    assert refused.status == 1
    assert "the filesystem is not clean (its state is 'not clean')" in refused.err
    assert "hint: condatainer overlay check" in refused.err


def dead_record(target: Path, op: str, leftover: str) -> Path:
    """The record an operation on `target` killed midway leaves (its process is gone), and
    the temporary or undo file it names."""
    from condatainer.image import records

    (target.parent / leftover).write_bytes(b"x" * 4096)
    facts = records.Facts(
        op=op,
        target=target.name,
        host=records.host_name(),
        boot_id=records.boot_id(),
        pid=999999,
        started=0.0,
        files=() if op == "resize" else (leftover,),
        undo=leftover if op == "resize" else None,
    )
    path = records.path_for(target)
    path.write_text(json.dumps(facts.to_json()))
    return path


def test_a_half_changed_image_is_refused_on_a_replay(run_exec, project: Path) -> None:
    """A read-only exec (a shim) of an image an interrupted resize left: not replayed, refused
    with the repair command, as the full path refuses it."""
    args = ("-o", "env.img", "--", "true")
    run_exec(*args, cwd=project, env=BUILTIN)
    assert run_exec(*args, cwd=project, env=BUILTIN).replayed
    record = dead_record(project / "env.img", "resize", ".env.img.undo-0123abcd")
    refused = run_exec(*args, cwd=project, env=BUILTIN)
    assert refused.status == 1 and not refused.replayed
    assert "env.img: an interrupted resize" in refused.err
    assert f"hint: condatainer overlay check {project / 'env.img'} --repair" in refused.err
    assert record.exists()


def test_a_writable_replay_repairs_what_a_dead_create_left_beside(run_exec, project: Path) -> None:
    args = ("-w", "-o", "env.img", "--", "true")
    run_exec(*args, cwd=project, env=BUILTIN)
    assert run_exec(*args, cwd=project, env=BUILTIN).replayed
    record = dead_record(project / "other.img", "create", ".other.img.tmp-0123abcd")
    repaired = run_exec(*args, cwd=project, env=BUILTIN)
    assert repaired.status == 0 and not repaired.replayed, repaired.err
    assert f"removed what an interrupted create of {project / 'other.img'} left" in repaired.err
    assert not record.exists() and not (project / ".other.img.tmp-0123abcd").exists()
    assert run_exec(*args, cwd=project, env=BUILTIN).replayed


# --------------------------------------------------------------------------------------------
# Any change to what the decision read: decided again, then replayed again


def edit_sidecar(project: Path) -> None:
    (project / "env.img.env").write_text("GREETING=two\n")  # same size, same mtime tick


def edit_config(project: Path) -> None:
    extra = project.parent / "extra"
    extra.mkdir(exist_ok=True)
    (extra / "file").write_text("bound\n")
    config.set_value("binds", str(extra))


def edit_site_config(project: Path) -> None:
    extra = project.parent / "extra"
    extra.mkdir(exist_ok=True)
    (extra / "file").write_text("bound\n")
    site = Path(os.environ["CNT_SITE_CONFIG"])
    site.parent.mkdir(parents=True, exist_ok=True)
    site.write_text(f"binds: [{extra}]\n")


def replace_image(project: Path) -> None:
    fresh = make_image(project.parent / "fresh.img", marker="two")
    os.replace(fresh, project / "env.img")


CHANGES = {
    "sidecar": (edit_sidecar, "printf '%s' \"$GREETING\"", "one", "two"),
    "config": (edit_config, "cat ../extra/file || echo unbound", "unbound\n", "bound\n"),
    "image": (replace_image, "cat /ext3/env/marker", "one\n", "two\n"),
    "site": (edit_site_config, "cat ../extra/file || echo unbound", "unbound\n", "bound\n"),
}


@pytest.mark.parametrize("what", sorted(CHANGES))
def test_a_change_is_seen_at_once(run_exec, project: Path, what: str) -> None:
    change, script, before, after = CHANGES[what]
    (project / "env.img.env").write_text("GREETING=one\n")
    args = ("-o", "env.img", "--", "sh", "-c", script)
    run_exec(*args, cwd=project, env=BUILTIN)
    first = run_exec(*args, cwd=project, env=BUILTIN)
    assert first.replayed and first.out == before, first.err
    change(project)
    changed = run_exec(*args, cwd=project, env=BUILTIN)
    assert not changed.replayed and changed.out == after, changed.err
    again = run_exec(*args, cwd=project, env=BUILTIN)
    assert again.replayed and again.out == after


def test_environment_and_working_directory_are_part_of_the_decision(
    run_exec, project: Path, tmp_path: Path
) -> None:
    scratch = tmp_path / "scratch"
    args = ("-o", "../env.img", "--", "sh", "-c", 'pwd; ls "$SCRATCH" 2>/dev/null || echo none')
    sub = project / "sub"
    sub.mkdir()
    env = {**BUILTIN, "SCRATCH": str(scratch)}
    first = run_exec(*args, cwd=sub, env=env)
    assert first.out == f"{sub}\nnone\n"
    scratch.mkdir()  # a default bind that now exists
    (scratch / "data").write_text("")
    seen = run_exec(*args, cwd=sub, env=env)
    assert not seen.replayed and seen.out == f"{sub}\ndata\n"
    assert run_exec(*args, cwd=sub, env=env).replayed
    moved = {**env, "SCRATCH": str(tmp_path)}
    assert not run_exec(*args, cwd=sub, env=moved).replayed
    # an unrelated variable does not matter; one condatainer reads does
    assert run_exec(*args, cwd=sub, env={**moved, "UNRELATED": "1"}).replayed
    assert not run_exec(*args, cwd=sub, env={**moved, "CNT_GPU": "off"}).replayed


def test_an_apptainer_appearing_on_path_is_noticed(run_exec, project: Path, tmp_path: Path) -> None:
    """runtime auto, as root: builtin until an apptainer shows up in a PATH directory."""
    from condatainer.run import baseimage

    bindir = tmp_path / "bin"
    bindir.mkdir()
    env = {"PATH": f"{bindir}:{os.environ['PATH']}"}
    base = baseimage.default_path(config.load())  # Apptainer's default base, already fetched
    base.parent.mkdir(parents=True)
    base.write_bytes(b"")
    args = ("-o", "env.img", "--", "cat", "/ext3/env/marker")
    run_exec(*args, cwd=project, env=env)
    assert run_exec(*args, cwd=project, env=env).out == "one\n"
    (bindir / "apptainer").write_text("#!/bin/sh\necho apptainer-ran\n")
    (bindir / "apptainer").chmod(0o755)
    switched = run_exec(*args, cwd=project, env=env, stop=True)
    assert not switched.replayed and "condatainer.run.runtime.apptainer" in switched.modules
    assert run_exec(*args, cwd=project, env=env).out == "apptainer-ran\n"


# --------------------------------------------------------------------------------------------
# The cache itself


def test_an_entry_not_ours_alone_is_ignored(run_exec, project: Path) -> None:
    args = ("-o", "env.img", "--", "true")
    run_exec(*args, cwd=project, env=BUILTIN)
    [entry] = (Path(memo.cache_dir(os.environ)) / replay.PLANS).iterdir()
    entry.chmod(0o666)
    assert not run_exec(*args, cwd=project, env=BUILTIN).replayed
    entry.write_bytes(b"\x00garbage")
    entry.chmod(0o600)
    assert not run_exec(*args, cwd=project, env=BUILTIN).replayed
    assert run_exec(*args, cwd=project, env=BUILTIN).replayed


def test_the_cache_keeps_the_newest_entries(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from condatainer.run.plan import Plan

    monkeypatch.setattr(memo, "MAX_ENTRIES", 3)
    cache = memo.cache_dir(os.environ)
    monkeypatch.chdir(project)
    for n in range(5):
        words = ["-o", f"img{n}", "--", "true"]
        replay.record(words, Plan(command=("true",)), None, [], cache, os.environ)
    names = sorted(p.name for p in (Path(cache) / replay.PLANS).iterdir())
    assert len(names) == 3


# --------------------------------------------------------------------------------------------
# What the key is made of


@pytest.mark.parametrize(
    ("words", "split"),
    [
        (["-o", "a.img", "--", "ls", "-l"], (["-o", "a.img"], ["ls", "-l"])),
        (["-o", "a.img", "ls", "-o"], (["-o", "a.img"], ["ls", "-o"])),
        (["-oa.img", "-w", "ls"], (["-oa.img", "-w"], ["ls"])),
        (["--overlay=a.img", "--env", "A=1", "x"], (["--overlay=a.img", "--env", "A=1"], ["x"])),
        (["--if-allowed", "-o", "a", "--", "--", "x"], (["--if-allowed", "-o", "a"], ["--", "x"])),
        (["-o", "a.img"], (["-o", "a.img"], [])),
        (["--over", "a.img", "ls"], None),  # an abbreviation: argparse decides
        (["-wC", "-o", "a.img", "ls"], None),  # grouped flags: argparse decides
        (["-h"], None),
        (["--writable=yes", "ls"], None),
        # CondaTainer's spellings (aliases in options.EXEC)
        (["-f", "-B", "/d:/e", "-o", "a", "x"], (["-f", "-B", "/d:/e", "-o", "a"], ["x"])),
        (
            ["--base-image", "b.sif", "--writable-img", "-o", "a", "x"],
            (["--base-image", "b.sif", "--writable-img", "-o", "a"], ["x"]),
        ),
        # Apptainer's options passed through: option words (the key), not the command
        (
            ["--nv", "-o", "a", "--home=/h", "x", "--nv"],
            (["--nv", "-o", "a", "--home=/h"], ["x", "--nv"]),
        ),
        (["-o", "a", "--no-home", "--", "x"], (["-o", "a", "--no-home"], ["x"])),
        (["--home", "/h", "-o", "a", "x"], None),  # not a form that passes: the CLI says why
        (["--nv=1", "-o", "a", "x"], None),
        (["--no-such-option", "-o", "a", "x"], None),
    ],
)
def test_split_agrees_with_the_parser_or_declines(
    words: list[str], split: tuple[list[str], list[str]] | None
) -> None:
    found = replay.split(words)
    assert found == (None if split is None else (tuple(split[0]), tuple(split[1])))
    if found is not None and found[1]:
        from condatainer import cli

        head, passed = cli._take_apptainer_flags("exec", ["exec", *words])
        assert passed == [w for w in found[0] if w.startswith(("--nv", "--home", "--no-home"))]
        ns = cli.build_parser("exec").parse_args(head)
        cmd = ns.cmd[1:] if ns.cmd[:1] == ["--"] else ns.cmd
        assert tuple(cmd) == found[1]


def test_the_decision_reads_only_the_environment_the_key_holds(
    project: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """resolve, config and runtime selection run with an environment that records every name
    they read; each must be in the replay key."""
    read: set[str] = set()

    class Recording(dict[str, str]):
        def __getitem__(self, key: str) -> str:
            read.add(key)
            return super().__getitem__(key)

        def get(self, key: str, default: object = None) -> object:  # type: ignore[override]
            read.add(key)
            return super().get(key, default)

        def __contains__(self, key: object) -> bool:
            read.add(str(key))
            return super().__contains__(key)

    recording = Recording(os.environ)
    recording.update({"SCRATCH": str(tmp_path), "CNT_BINDS": str(tmp_path)})
    monkeypatch.setattr(os, "environ", recording)
    monkeypatch.chdir(project)
    for runtime in ("builtin", "auto", "apptainer"):
        recording["CNT_RUNTIME"] = runtime
        cfg = config.load(recording)
        req = Request(command=("true",), images=("env.img",), binds=(str(tmp_path),))
        launch.plan_for(req, cfg, recording)
        selection.watched(cfg, recording)
        with contextlib.suppress(RuntimeUnavailableError):  # it read its inputs all the same
            selection.select(cfg)
    names, prefixes = replay.ENVIRON_NAMES, replay.ENVIRON_PREFIXES
    outside = {k for k in read if k not in names and not k.startswith(prefixes)}
    assert outside == set()


def test_a_replayed_exec_still_expands_the_sidecar(run_exec, project: Path) -> None:
    (project / "env.img.env").write_text("WHERE=$HOME/x\nKEPT=$(id)\n")
    args = ("-o", "env.img", "--", "sh", "-c", 'printf "%s|%s" "$WHERE" "$KEPT"')
    first = run_exec(*args, cwd=project, env=BUILTIN)
    again = run_exec(*args, cwd=project, env=BUILTIN)
    assert again.replayed, again.err
    assert first.out == again.out == f"{os.environ['HOME']}/x|$(id)"
