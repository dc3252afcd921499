"""Recovery records for real: a condatainer killed (SIGKILL) while its tool writes, and the
next command putting things right.

Each scenario stops at a chosen point with a stand-in for one e2fsprogs/zstd tool, first on
PATH: it runs the real tool (whole, or cut short: a file size limit kills resize2fs midway, a
truncated script stops debugfs halfway), writes its PID to a file and waits to be killed.  The
test then SIGKILLs condatainer and checks what a crash must leave: the tool dies with it and
held the locks until then, the image is reported, not touched, by read-only commands, and the
next writer rolls back or finishes it and says so in one line, leaving nothing behind.
Random kill points, many trials and process-group kills are the fault tier's (tests/fault).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from condatainer import runner
from condatainer.errors import ImageError, LockError
from condatainer.image import locks, records, recovery
from condatainer.image.create import create
from tests.imagelib import fsck_clean, put, tree_digest
from tests.programs import unprivileged_python
from tests.support import cnt as run_cnt
from tests.waiting import pid_alive, wait_until

REPO = Path(__file__).resolve().parents[2]
MIB = 1024 * 1024


class Stopped:
    """A condatainer command stopped inside one of its tools, ready to be killed."""

    def __init__(self, proc: subprocess.Popen[str], ready: Path):
        self.proc = proc
        self.ready = ready
        wait_until(lambda: ready.exists() or proc.poll() is not None, f"{ready} to appear")
        if not ready.exists():
            out, err = proc.communicate()
            raise AssertionError(f"the command ended first ({proc.returncode}):\n{out}\n{err}")
        self.tool = int(ready.read_text())

    def kill(self) -> None:
        """SIGKILL condatainer alone; its tool must follow it (PR_SET_PDEATHSIG)."""
        self.proc.kill()
        self.proc.communicate(timeout=60)
        wait_until(lambda: not pid_alive(self.tool), "the tool to die with condatainer")


@pytest.fixture
def fakes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    bin_dir = tmp_path / "fakes"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    yield bin_dir


NOT_PROBE = 'case " $* " in *" -P "*) false ;; *) true ;; esac'
"""Not resize2fs's size estimate (`-P`), which writes nothing."""


def stand_in(bin_dir: Path, tool: str, *, when: str = "true", run: str = '"$REAL" "$@"') -> Path:
    """Put a `tool` first on PATH: in a command `start`ed by the test, when the shell test `when`
    holds, it runs `run` (the real tool by default), then writes its PID to $CNT_STOP and waits
    to be killed; otherwise it is the real tool."""
    real = runner.which(tool)
    assert real is not None and not real.startswith(str(bin_dir))
    script = bin_dir / tool
    script.write_text(
        "#!/bin/sh\n"
        f"REAL={real}\n"
        f'if [ -n "$CNT_STOP" ] && {when}; then\n  {run}\n'
        '  echo $$ > "$CNT_STOP.tmp" && mv "$CNT_STOP.tmp" "$CNT_STOP"\n'
        "  exec sleep 600\nfi\n"
        'exec "$REAL" "$@"\n'
    )
    script.chmod(0o755)
    return script


def start(tmp_path: Path, *args: str, cwd: Path) -> Stopped:
    ready = tmp_path / "stopped"
    ready.unlink(missing_ok=True)
    env = {**os.environ, "PYTHONPATH": str(REPO), "CNT_STOP": str(ready)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "condatainer", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    return Stopped(proc, ready)


def cnt(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_cnt(*args, cwd=cwd)


def hidden(directory: Path) -> list[str]:
    return sorted(n for n in os.listdir(directory) if n.startswith("."))


@pytest.fixture
def image(wd: Path, tmp_path: Path) -> Path:
    """A 256M image holding a few files (one of them in the upper half, so a shrink moves it)."""
    img = create(wd / "env.img", 256 * MIB, "balanced").path
    for name, size in (("a.bin", 3 * MIB), ("b.txt", 1000)):
        (tmp_path / name).write_bytes(os.urandom(size))
        put(img, tmp_path / name, name)
    return img


def with_tail_data(img: Path, tmp_path: Path) -> Path:
    """Put 30M of data in the image's upper half (a shrink must move it)."""
    filler, data = tmp_path / "filler.bin", tmp_path / "data.bin"
    filler.write_bytes(os.urandom(100 * MIB))
    data.write_bytes(os.urandom(30 * MIB))
    put(img, filler, "filler.bin")
    put(img, data, "data.bin")
    assert runner.run(["debugfs", "-w", "-R", "rm upper/filler.bin", str(img)]).ok
    return img


# --------------------------------------------------------------------------- resize


def test_grow_killed_before_resize2fs_wrote_is_rolled_back(
    image: Path, wd: Path, tmp_path: Path, fakes: Path
) -> None:
    """Issue 10 #4: the file was already extended when condatainer died.  resize2fs held the
    lock until it died too; read-only commands report, the next writer rolls back."""
    before = tree_digest(image)
    stand_in(fakes, "resize2fs", when=NOT_PROBE, run=":")
    stopped = start(tmp_path, "overlay", "resize", "env.img", "-s", "1G", cwd=wd)
    assert os.stat(image).st_size == 1024 * MIB
    with pytest.raises(LockError, match=r"in use for writing by .*\(PID \d+"):
        locks.probe(image, write=False)
    assert any(h.pid == stopped.tool for h in locks.find_holders(image))  # the tool holds it
    found = records.inspect(records.path_for(image))
    assert found is not None and found.state == records.LIVE and found.op == "resize"

    stopped.kill()
    locks.acquire(image, write=True).release()  # free once the tool is gone
    found = records.inspect(records.path_for(image))
    assert found is not None and found.state == records.DEAD

    info = cnt("overlay", "info", "env.img", cwd=wd)
    assert info.returncode == 0, info.stderr
    assert "leftovers:" in info.stdout and "resize of env.img by PID" in info.stdout
    assert "repair: condatainer overlay check env.img --repair" in info.stdout
    reader = cnt("exec", "-o", "env.img", "--", "true", cwd=wd)
    assert reader.returncode == 1
    assert "an interrupted resize by PID" in reader.stderr
    assert "hint: condatainer overlay check" in reader.stderr and "--repair" in reader.stderr
    assert os.stat(image).st_size == 1024 * MIB  # neither of them touched it

    res = cnt("overlay", "check", "env.img", "--repair", cwd=wd)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "rolled back an interrupted resize from 256M to 1G" in res.stdout
    assert os.stat(image).st_size == 256 * MIB
    assert tree_digest(image) == before and fsck_clean(image)
    assert hidden(wd) == []


@pytest.mark.parametrize(
    ("size", "limit"), [("1G", 300 * MIB), ("100M", 20 * MIB)], ids=["grow", "shrink"]
)
def test_resize2fs_cut_midway_then_killed_is_undone_by_the_next_writer(
    image: Path, wd: Path, tmp_path: Path, fakes: Path, size: str, limit: int
) -> None:
    """resize2fs stops midway (a file size limit, as on a full disk) and condatainer is killed
    before it could undo: the undo file is replayed by the next writable run."""
    with_tail_data(image, tmp_path)
    before = tree_digest(image)
    stand_in(
        fakes,
        "resize2fs",
        when=NOT_PROBE,
        run=f'prlimit --fsize={limit} -- "$REAL" "$@"',
    )
    stopped = start(tmp_path, "overlay", "resize", "env.img", "-s", size, cwd=wd)
    stopped.kill()
    (undo,) = (n for n in hidden(wd) if n.startswith(".env.img.undo-"))
    assert (wd / undo).stat().st_size > 64 * 1024  # resize2fs saved (and overwrote) blocks

    res = cnt("exec", "-w", "-o", "env.img", "--", "true", cwd=wd)
    assert res.returncode == 0, res.stderr
    assert "rolled back an interrupted resize from 256M to" in res.stderr
    assert os.stat(image).st_size == 256 * MIB
    assert tree_digest(image) == before and fsck_clean(image)
    assert hidden(wd) == []
    # And the same resize works afterwards.
    assert cnt("overlay", "resize", "env.img", "-s", size, cwd=wd).returncode == 0
    assert tree_digest(image) == before


def test_a_repair_cut_halfway_is_resumed_by_the_next(
    image: Path, wd: Path, tmp_path: Path, fakes: Path
) -> None:
    """e2undo itself is cut off (here: a file size limit) after it put the old superblock
    back: e2undo would now refuse the image (its superblock is no longer the one the undo file
    expects).  The record is kept, and the next repair resumes the replay."""
    before = tree_digest(image)
    stand_in(fakes, "resize2fs", when=NOT_PROBE, run=f'prlimit --fsize={300 * MIB} -- "$REAL" "$@"')
    start(tmp_path, "overlay", "resize", "env.img", "-s", "1G", cwd=wd).kill()
    real = runner.which("e2undo")
    cut = fakes / "e2undo"
    cut.write_text(f'#!/bin/sh\nexec prlimit --fsize=65536 -- {real} "$@"\n')
    cut.chmod(0o755)

    res = cnt("overlay", "check", "env.img", "--repair", cwd=wd)
    assert res.returncode == 1
    assert "replaying the undo record stopped halfway" in res.stderr, res.stderr
    assert any(n.startswith(".env.img.undo-") for n in hidden(wd))  # kept for the next one

    cut.unlink()
    res = cnt("overlay", "check", "env.img", "--repair", cwd=wd)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "rolled back an interrupted resize" in res.stdout
    assert os.stat(image).st_size == 256 * MIB
    assert tree_digest(image) == before and fsck_clean(image)
    assert hidden(wd) == []


def test_shrink_killed_after_resize2fs_cut_the_file_is_finished(
    image: Path, wd: Path, tmp_path: Path, fakes: Path
) -> None:
    """resize2fs finished and cut the file, condatainer died before removing the record: the
    moved blocks' old places are gone, so the shrink is completed, not undone."""
    before = tree_digest(image)
    stand_in(fakes, "resize2fs", when=NOT_PROBE)
    stopped = start(tmp_path, "overlay", "resize", "env.img", "-s", "100M", cwd=wd)
    stopped.kill()
    res = cnt("overlay", "resize", "env.img", "-s", "100M", cwd=wd)
    assert res.returncode == 0, res.stderr
    assert "had done its work; completed it" in res.stderr
    assert "already 100M; nothing to do" in res.stdout
    assert os.stat(image).st_size == 100 * MIB
    assert tree_digest(image) == before and fsck_clean(image)
    assert hidden(wd) == []


# --------------------------------------------------------------------------- chown


@pytest.mark.root
def test_chown_killed_halfway_is_all_or_nothing(
    image: Path, wd: Path, tmp_path: Path, fakes: Path
) -> None:
    """Issue 10 #3: debugfs applied part of the ownership script when condatainer died; the
    next writer replays the undo file, so no inode keeps its new owner."""
    for i in range(40):
        (tmp_path / f"f{i}").write_text(str(i))
        put(image, tmp_path / f"f{i}", f"f{i}")
    before = tree_digest(image)
    stand_in(
        fakes,
        "debugfs",
        when='[ "$1" = -w ]',
        run='head -n 30 | "$REAL" "$@" >/dev/null 2>&1',
    )
    stopped = start(tmp_path, "overlay", "chown", "env.img", "-u", "4321", "-g", "4321", cwd=wd)
    stopped.kill()
    assert tree_digest(image) != before  # half changed, for now

    res = cnt("overlay", "chown", "env.img", "-u", "0", "-g", "0", cwd=wd)
    assert res.returncode == 0, res.stderr
    assert "rolled back an interrupted chown with its undo record" in res.stderr
    assert tree_digest(image) == before and fsck_clean(image)
    assert hidden(wd) == []


# --------------------------------------------------------------------------- create, pack, unpack


@pytest.mark.parametrize("route", ["cli", "newenv"])
def test_create_killed_in_mke2fs_leaves_nothing_the_next_create_keeps(
    wd: Path, tmp_path: Path, fakes: Path, route: str
) -> None:
    """Issue 10 #1: the hidden 64M temporary file of a killed create is removed by the next
    create of the same name, which says so; a second create while the first still runs is
    refused with the first one's PID.  Made by the CLI, or (once a create has written down
    the configuration) by the import-light path (newenv), whose mke2fs dies with it too."""
    if route == "newenv":
        assert cnt("o", "warm.img", "-s", "64M", cwd=wd).returncode == 0
    stand_in(fakes, "mke2fs")
    stopped = start(tmp_path, "o", "env.img", "-s", "64M", cwd=wd)
    (temp,) = (n for n in hidden(wd) if ".tmp-" in n)
    (tree,) = (n for n in hidden(wd) if ".tree-" in n)  # what mke2fs -d populates from
    busy = cnt("o", "env.img", "-s", "64M", cwd=wd)
    assert busy.returncode == 1
    assert re.search(r"in use: .*\(PID \d+", busy.stderr), busy.stderr  # it, or its tool
    assert "(create)" in busy.stderr
    stopped.kill()
    assert temp in hidden(wd)

    res = cnt("o", "env.img", "-s", "64M", cwd=wd)
    assert res.returncode == 0, res.stderr
    assert f"removed what an interrupted create of env.img left: {temp}, {tree} (64" in res.stderr
    assert (wd / "env.img").exists() and hidden(wd) == []


@pytest.mark.parametrize("command", ["pack", "unpack"])
def test_pack_and_unpack_killed_in_zstd(
    image: Path, wd: Path, tmp_path: Path, fakes: Path, command: str
) -> None:
    if command == "unpack":
        assert cnt("overlay", "pack", "env.img", cwd=wd).returncode == 0
        image.rename(wd / "orig.img")
        args = ["overlay", "unpack", "env.img.zst"]
    else:
        args = ["overlay", "pack", "env.img"]
    stand_in(fakes, "zstd")
    start(tmp_path, *args, cwd=wd).kill()
    assert hidden(wd)
    res = cnt(*args, cwd=wd)
    assert res.returncode == 0, res.stderr
    assert f"removed what an interrupted {command} of" in res.stderr
    assert hidden(wd) == []


# --------------------------------------------------------------------------- records by hand


def write_record(target: Path, **fields: object) -> Path:
    facts = records.Facts(
        op="create",
        target=target.name,
        host=records.host_name(),
        boot_id=records.boot_id(),
        pid=999999,
        started=0.0,
        files=(records.temp_name(target, "tmp", "0123abcd"),),
    ).to_json()
    facts.update(fields)
    path = records.path_for(target)
    path.write_text(json.dumps(facts))
    return path


def test_record_of_another_host_is_never_repaired_automatically(wd: Path) -> None:
    target = wd / "env.img"
    record = write_record(target, host="node17")
    temp = wd / ".env.img.tmp-0123abcd"
    temp.write_bytes(b"x" * 4096)
    res = cnt("o", "env.img", "-s", "64M", cwd=wd)
    assert res.returncode == 1
    assert "create by PID 999999 on node17" in res.stderr and "left alone" in res.stderr
    assert "hint: once that process is gone: condatainer overlay check" in res.stderr
    assert "--repair --from-host node17" in res.stderr
    assert record.exists() and temp.exists()
    info = recovery.leftovers(wd)
    assert [left.state for left in info] == ["foreign"]
    assert info[0].repair is not None and "--from-host node17" in info[0].repair

    res = cnt("overlay", "check", "env.img", "--repair", "--from-host", "node17", cwd=wd)
    assert res.returncode == 0, res.stderr
    assert "removed what an interrupted create of env.img left: .env.img.tmp-0123abcd" in res.stdout
    assert hidden(wd) == []


def test_record_naming_other_files_is_never_obeyed(wd: Path) -> None:
    """A record is data: one that names files that are not its target's is not used."""
    precious = wd / "precious.txt"
    precious.write_text("keep me")
    write_record(wd / "env.img", files=["precious.txt", "../etc"])
    with pytest.raises(ImageError, match="named like a condatainer record, but not one"):
        recovery.repair_target(wd / "env.img")
    assert precious.read_text() == "keep me"


def test_empty_record_of_a_dead_process_is_removed(wd: Path) -> None:
    """Its process died between creating it and writing it: nothing else can exist yet."""
    records.path_for(wd / "env.img").touch()
    notes: list[str] = []
    recovery.repair_target(wd / "env.img", notes.append)
    assert notes == [f"removed the record of an interrupted unknown operation of {wd / 'env.img'}"]
    assert hidden(wd) == []


def test_unrecorded_temporary_files_are_reported_not_removed(wd: Path) -> None:
    old = wd / ".env.img.tmp-89abcdef"
    old.write_bytes(b"\0" * 8192)
    (wd / ".env.img.notes").write_text("not ours")
    (found,) = recovery.leftovers(wd)
    assert found.state == "unrecorded" and found.repair == f"rm {old}"
    recovery.repair_directory(wd)
    assert old.exists()


def test_live_record_of_this_process_is_live_and_named(wd: Path) -> None:
    record = records.begin(wd / "env.img", "create", files=[".env.img.tmp-00000000"])
    try:
        found = records.inspect(records.path_for(wd / "env.img"))
        assert found is not None and found.state == records.LIVE
        with pytest.raises(LockError, match=rf"in use: PID {os.getpid()} on .* \(create\)"):
            recovery.begin(wd / "env.img", "create")
    finally:
        record.end()
    assert hidden(wd) == []


def test_without_locks_the_pid_decides(wd: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a filesystem without OFD locks a record is live while its process runs."""
    monkeypatch.setattr(records, "_lock", lambda fd: None)
    monkeypatch.setattr(records, "_locked_by_someone", lambda fd: None)
    record = records.begin(wd / "env.img", "create")
    assert json.loads(record.path.read_text())["locked"] is False
    found = records.inspect(record.path)
    assert found is not None and found.state == records.LIVE
    record.end()
    sleeper = subprocess.Popen(["sleep", "60"])
    write_record(wd / "env.img", pid=sleeper.pid, pid_start=records.process_start(sleeper.pid))
    try:
        assert records.inspect(records.path_for(wd / "env.img")).state == records.LIVE  # type: ignore[union-attr]
    finally:
        sleeper.send_signal(signal.SIGKILL)
        sleeper.wait()
    assert records.inspect(records.path_for(wd / "env.img")).state == records.DEAD  # type: ignore[union-attr]


def test_doctor_lists_leftovers_with_size_and_repair(
    wd: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from condatainer import doctor

    write_record(wd / "env.img")
    (wd / ".env.img.tmp-0123abcd").write_bytes(b"\1" * 65536)
    monkeypatch.chdir(wd)
    monkeypatch.setenv("PWD", str(wd))
    (check,) = (c for c in doctor.check() if c.name == "leftovers")
    assert check.status == "warn"
    assert f"create of {wd / 'env.img'} by PID 999999" in check.detail
    assert "(64K)" in check.detail
    assert check.fix == f"condatainer overlay check {wd / 'env.img'} --repair"


@pytest.mark.root
def test_a_directory_that_cannot_take_the_record_is_a_clear_error(wd: Path) -> None:
    """chown (as root) of an image in a read-only directory: refused before writing, named."""
    subprocess.run(["mount", "--bind", str(wd), str(wd)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(wd)], check=True)
        with pytest.raises(ImageError, match="the record that lets a later command undo"):
            recovery.begin(wd / "env.img", "chown", undo=".env.img.undo-00000000")
    finally:
        subprocess.run(["umount", str(wd)], check=True)


@pytest.mark.root
def test_a_dead_record_of_another_user_is_named_not_called_foreign() -> None:
    """A dead record the caller cannot lock (root's, 0644) in a directory the caller owns: the
    error says whose it is and who can repair it, and nothing is changed."""
    import shutil
    import tempfile

    shared = Path(tempfile.mkdtemp(prefix="cnt-recovery-", dir="/tmp"))
    try:
        shared.chmod(0o755)
        os.chown(shared, 65534, 65534)
        target = shared / "env.img"
        record = write_record(target)
        record.chmod(0o644)
        temp = shared / ".env.img.tmp-0123abcd"
        temp.write_bytes(b"x" * 4096)
        python, path = unprivileged_python()
        code = (
            "import sys\n"
            "from pathlib import Path\n"
            "from condatainer.errors import CondatainerError\n"
            "from condatainer.image import recovery\n"
            "try:\n"
            "    recovery.repair_target(Path(sys.argv[1]))\n"
            "except CondatainerError as e:\n"
            "    print(e.message)\n"
            "    print(e.hint)\n"
        )
        nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        res = subprocess.run(
            [*nobody, python, "-c", code, str(target)],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": path},
            check=False,
        )
        assert res.returncode == 0, res.stderr
        message, hint = res.stdout.splitlines()
        assert "an interrupted create by PID 999999" in message
        assert f"its record {record.name} is not writable by you" in message
        assert "may still be running" not in message
        assert (
            hint == f"ask its owner (or root) to run: condatainer overlay check {target} --repair"
        )
        assert record.exists() and temp.exists()
    finally:
        shutil.rmtree(shared)
