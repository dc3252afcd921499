"""The builtin runtime for real: loop devices, ext3 images, overlayfs, locks, signals.

Images are built here with mke2fs from a tree holding `upper/ext3/env/bin/hello` and `work/`,
so these tests depend on e2fsprogs and the kernel only.  Every root test also checks that it
left nothing behind: no new mount on the host, no loop device still attached to one of its
images, no staging directory.  Runs that must outlive a test step (parallel runs, a parent
killed with SIGKILL) go through `python3 -c` subprocesses that call `builtin.execute`.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from condatainer.errors import ContainerError, ImageError, LockError, RuntimeUnavailableError
from condatainer.image import locks
from condatainer.run.plan import Bind, Overlay, Plan
from condatainer.run.runtime import _child, _setup, builtin
from tests.imagelib import mkfs
from tests.waiting import pid_alive, wait_until

REPO = Path(__file__).resolve().parents[2]
HELLO = "#!/bin/sh\necho hello from the image\n"

# A parent process for the tests that need one of their own: runs a Plan given as JSON, prints
# "rc=N" with the command's status, or "error=<class>: <message>" when the runtime refuses.
DRIVER = """
import json, sys
from condatainer.errors import CondatainerError
from condatainer.run.plan import Bind, Overlay, Plan
from condatainer.run.runtime import _child, _setup, builtin
spec = json.loads(sys.argv[1])
plan = Plan(
    command=tuple(spec["command"]),
    overlays=tuple(Overlay(p, w) for p, w in spec["overlays"]),
    cwd=spec["cwd"],
    env=tuple((k, v) for k, v in spec["env"]),
    fakeroot=spec.get("fakeroot", False),
)
try:
    rc = builtin.execute(plan)
except CondatainerError as exc:
    print(f"error={type(exc).__name__}: {exc}", flush=True)
    sys.exit(1)
print(f"rc={rc}", flush=True)
"""


# --------------------------------------------------------------------------------------------
# Fixtures


def make_image(path: Path, tree: Path | None = None) -> Path:
    """An Apptainer-layout ext3 overlay image with /ext3/env/bin/hello."""
    tree = tree or path.with_suffix(".tree")
    bin_dir = tree / "upper" / "ext3" / "env" / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    (tree / "work").mkdir(exist_ok=True)
    (bin_dir / "hello").write_text(HELLO)
    (bin_dir / "hello").chmod(0o755)
    (bin_dir / "not-executable").write_text(HELLO)
    mkfs(tree, path)
    return path


@pytest.fixture
def image(tmp_path: Path) -> Path:
    return make_image(tmp_path / "env.img")


def plan_for(
    command: Sequence[str],
    *images: Path,
    writable: bool = False,
    cwd: str = "/",
    env: dict[str, str] | None = None,
    **fields: Any,
) -> Plan:
    path = "/ext3/env/bin:" + os.environ.get("PATH", "/usr/bin:/bin")
    return Plan(
        command=tuple(command),
        overlays=tuple(Overlay(str(p), writable and i == 0) for i, p in enumerate(images)),
        cwd=cwd,
        env=(("PATH", path), *(env or {}).items()),
        **fields,
    )


def sh(script: str, *images: Path, **kwargs: Any) -> tuple[int, str, str]:
    rc, out, err = builtin.run_captured(plan_for(["sh", "-c", script], *images, **kwargs))
    return rc, out.decode(), err.decode()


def driver(
    command: Sequence[str], image: Path, *, writable: bool, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    spec = {
        "command": list(command),
        "overlays": [[str(image), writable]],
        "cwd": "/",
        "env": [["PATH", "/ext3/env/bin:/usr/bin:/bin"]],
    }
    return subprocess.Popen(
        [sys.executable, "-c", DRIVER, json.dumps(spec)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
    )


def debugfs_cat(image: Path, path: str) -> str | None:
    res = subprocess.run(
        ["/usr/sbin/debugfs", "-R", f"cat {path}", str(image)], capture_output=True, text=True
    )
    return None if "File not found" in res.stderr else res.stdout


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def attached_loops() -> dict[str, str]:
    """Loop devices attached right now: device -> backing file."""
    found = {}
    for name in glob.glob("/sys/block/loop*/loop/backing_file"):
        with contextlib.suppress(OSError):
            found[name.split("/")[3]] = Path(name).read_text().strip()
    return found


def wait_for(predicate: Callable[[], object]) -> None:
    wait_until(predicate, str(predicate))


def staging_owner_gone(directory: str) -> bool:
    """Whether the process that made staging `directory` (condatainer-PID-XXXX) is this one or
    has ended.  Other directories named condatainer-* (create's scratch directory of a run
    elsewhere on this machine) are not staging directories."""
    word = os.path.basename(directory).split("-")[1]
    if not word.isdigit():
        return False
    pid = int(word)
    return pid == os.getpid() or not pid_alive(pid)


@pytest.fixture(autouse=True)
def leaves_nothing_behind(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[None]:
    """No new host mount, no loop device on one of this test's images, no staging directory."""
    if request.node.get_closest_marker("root") is None:
        yield
        return
    mounts_before = set(Path("/proc/self/mountinfo").read_text().splitlines())
    staging_before = set(glob.glob("/run/condatainer-*") + glob.glob("/tmp/condatainer-*"))
    yield
    new_mounts = set(Path("/proc/self/mountinfo").read_text().splitlines()) - mounts_before
    ours = [m for m in new_mounts if "condatainer" in m or " - overlay " in m or "/dev/loop" in m]
    assert not ours, f"left mounted on the host: {ours}"
    leaked = {d: f for d, f in attached_loops().items() if f.startswith(str(tmp_path))}
    assert not leaked, f"loop devices left attached: {leaked}"
    # A staging directory is named after the process that made it: one made in this process
    # (builtin.execute called directly) must be gone now, one whose process has died is a
    # leak; one of a live process belongs to a run still going (another test session).
    left = set(glob.glob("/run/condatainer-*") + glob.glob("/tmp/condatainer-*"))
    leaks = [d for d in left - staging_before if staging_owner_gone(d)]
    assert not leaks, f"staging directories left: {leaks}"


# --------------------------------------------------------------------------------------------
# Without root: availability and pure helpers


def test_not_root_is_unavailable_naming_both_ways_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert "root" in (builtin.available() or "")
    with pytest.raises(RuntimeUnavailableError) as err:
        builtin.execute(Plan(command=("true",)))
    text = f"{err.value} {err.value.hint}"
    assert "Apptainer" in text and "sudo" in text


def test_resolve_in_keeps_symlinks_inside_the_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "data" / "home").mkdir(parents=True)
    (root / "home").symlink_to("/data/home")  # absolute: must mean root/data/home
    (root / "up").symlink_to("../../../..")
    assert _child.resolve_in(str(root), "/home/u") == f"{root}/data/home/u"
    assert _child.resolve_in(str(root), "/up/etc") == f"{root}/etc"
    assert _child.resolve_in(str(root), "/") == str(root)


def test_host_mounts_are_the_top_level_ones() -> None:
    info = (
        "20 1 8:1 / / rw - ext4 /dev/sda1 rw\n"
        "21 20 0:5 / /proc rw - proc proc rw\n"
        "22 21 0:6 / /proc/sys/fs/binfmt_misc rw - autofs x rw\n"
        "23 20 0:7 / /mnt/with\\040space rw - tmpfs t rw\n"
    )
    top, points = _setup.host_mounts(info)
    assert top == ["/proc", "/mnt/with space"]
    assert "/proc/sys/fs/binfmt_misc" in points


# --------------------------------------------------------------------------------------------
# Running commands


@pytest.mark.root
def test_available_here() -> None:
    assert builtin.available() is None


@pytest.mark.root
def test_command_finds_env_bin_on_path(image: Path) -> None:
    rc, out, err = builtin.run_captured(plan_for(["hello"], image))
    assert (rc, out, err) == (0, b"hello from the image\n", b"")


@pytest.mark.root
@pytest.mark.parametrize(
    ("script", "status"),
    [("exit 0", 0), ("exit 3", 3), ("kill -KILL $$", 128 + 9), ("kill -TERM $$", 128 + 15)],
)
def test_exit_status_is_the_commands(image: Path, script: str, status: int) -> None:
    assert sh(script, image)[0] == status


@pytest.mark.root
def test_missing_command_is_127_like_a_shell(image: Path) -> None:
    rc, out, err = builtin.run_captured(plan_for(["no-such-command"], image))
    assert out == b""
    assert rc == 127
    assert err == b"condatainer: error: no-such-command: command not found\n"


@pytest.mark.root
def test_not_executable_is_126(image: Path) -> None:
    rc, _, err = builtin.run_captured(plan_for(["/ext3/env/bin/not-executable"], image))
    assert rc == 126
    assert b"Permission denied" in err


@pytest.mark.root
def test_stdin_reaches_the_command(image: Path) -> None:
    rc, out, _ = builtin.run_captured(plan_for(["cat"], image), stdin=b"x" * 200_000)
    assert rc == 0 and out == b"x" * 200_000


# --------------------------------------------------------------------------------------------
# Writable and read-only


@pytest.mark.root
def test_writable_run_writes_into_the_image_not_the_host(image: Path, tmp_path: Path) -> None:
    marker = f"/etc/condatainer-test-{os.getpid()}-{tmp_path.name}"
    host_tmp = tmp_path / "from-container"
    script = f"echo data > /ext3/env/x && echo etc > {marker} && echo tmp > {host_tmp}"
    assert sh(script, image, writable=True)[0] == 0
    assert debugfs_cat(image, "upper/ext3/env/x") == "data\n"
    assert debugfs_cat(image, f"upper{marker}") == "etc\n"  # copy-on-write view of /
    assert not os.path.exists(marker)
    assert host_tmp.read_text() == "tmp\n"  # /tmp is bound, as Apptainer does


@pytest.mark.root
def test_read_only_run_refuses_writes_to_ext3_env(image: Path, tmp_path: Path) -> None:
    before = sha256(image)
    rc, _, err = sh("echo x > /ext3/env/x", image)
    assert rc != 0 and "Read-only file system" in err
    rc, _, err = sh("mkdir /ext3/env/pkgs2", image)
    assert rc != 0 and "Read-only file system" in err
    # Outside /ext3 the root is a copy-on-write view whose writes are discarded.
    marker = f"/etc/condatainer-test-{os.getpid()}-{tmp_path.name}"
    assert sh(f"echo x > {marker} && cat {marker}", image) == (0, "x\n", "")
    assert not os.path.exists(marker)
    assert sha256(image) == before


@pytest.mark.root
def test_read_only_layers_stack_in_plan_order(tmp_path: Path) -> None:
    first_tree = tmp_path / "first.tree"
    (first_tree / "upper" / "ext3" / "env").mkdir(parents=True)
    (first_tree / "upper" / "ext3" / "env" / "who").write_text("first\n")
    first = make_image(tmp_path / "first.img", first_tree)
    second = make_image(tmp_path / "second.img")
    rc, out, _ = sh("cat /ext3/env/who; hello", first, second)
    assert (rc, out) == (0, "first\nhello from the image\n")


@pytest.mark.root
def test_writable_with_read_only_layer_below(image: Path, tmp_path: Path) -> None:
    base = make_image(tmp_path / "base.img")
    rc, out, _ = sh("hello && echo y > /ext3/env/y && cat /ext3/env/y", image, base, writable=True)
    assert (rc, out) == (0, "hello from the image\ny\n")
    assert debugfs_cat(image, "upper/ext3/env/y") == "y\n"
    assert debugfs_cat(base, "upper/ext3/env/y") is None


# --------------------------------------------------------------------------------------------
# Working directory, binds, environment, identity


@pytest.mark.root
def test_cwd_is_kept(image: Path, tmp_path: Path) -> None:
    work = tmp_path / "project dir"
    work.mkdir()
    rc, out, _ = sh("pwd && touch made-inside", image, cwd=str(work))
    assert (rc, out) == (0, f"{work}\n")
    assert (work / "made-inside").exists()


@pytest.mark.root
def test_missing_cwd_falls_back_to_root_with_a_notice(image: Path) -> None:
    rc, out, err = sh("pwd", image, cwd="/no/such/dir")
    assert (rc, out) == (0, "/\n")
    assert err.startswith("condatainer: note: cannot enter /no/such/dir")


@pytest.mark.root
def test_binds_read_write_and_read_only(image: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "in").write_text("hi\n")
    binds = (Bind(str(data), "/srv/cnt-data"), Bind(str(data), "/srv/cnt-ro", readonly=True))
    script = "cat /srv/cnt-data/in && echo out > /srv/cnt-data/out && echo no > /srv/cnt-ro/no"
    rc, out, err = sh(script, image, binds=binds)
    assert out == "hi\n" and (data / "out").read_text() == "out\n"
    assert rc != 0 and "Read-only file system" in err
    assert not (data / "no").exists()
    assert not os.path.exists("/srv/cnt-data")  # the bind point was made in the tmpfs upper


@pytest.mark.root
def test_contain_gives_private_tmp_and_home(image: Path, tmp_path: Path) -> None:
    (tmp_path / "visible").write_text("")
    home = os.environ["HOME"]  # under /tmp here: its mount point is made in the private /tmp
    script = f"test ! -e {tmp_path}/visible && ls -A {home} && echo x > /tmp/private && ls /tmp"
    rc, out, _ = sh(script, image, contain=True)
    assert rc == 0 and sorted(out.split()) == sorted(["private", home.split("/")[2]])
    assert not os.path.exists("/tmp/private")


@pytest.mark.root
def test_contain_with_workdir_keeps_tmp_there(image: Path, tmp_path: Path) -> None:
    workdir = tmp_path / "wd"
    rc, _, err = sh(
        "echo a > /tmp/a && echo b > /var/tmp/b", image, contain=True, workdir=str(workdir)
    )
    assert rc == 0, err
    assert (workdir / "tmp" / "a").read_text() == "a\n"
    assert (workdir / "var_tmp" / "b").read_text() == "b\n"


@pytest.mark.root
def test_environment_values_arrive_byte_exact_and_unevaluated(image: Path, tmp_path: Path) -> None:
    pwned = tmp_path / "pwned"
    values = {
        "CNT_T_SUBST": f"$(touch {pwned})",
        "CNT_T_BACKTICK": f"`touch {pwned}`",
        "CNT_T_QUOTES": 'it\'s "quoted" \\ back',
        "CNT_T_NEWLINE": "line1\nline2\n",
        "CNT_T_EMPTY": "",
        "CNT_T_UNICODE": "èрт🚒中",
    }
    dump = tmp_path / "env.json"
    code = f"import json, os; json.dump(dict(os.environ), open({str(dump)!r}, 'w'))"
    # sys.executable, not "python3": a pyenv shim on PATH would rewrite PATH before Python runs.
    rc, _, err = builtin.run_captured(plan_for([sys.executable, "-c", code], image, env=values))
    assert rc == 0, err
    seen = json.loads(dump.read_text())
    assert {k: seen.get(k) for k in values} == values
    assert seen["PATH"].startswith("/ext3/env/bin:")
    assert not pwned.exists()


@pytest.mark.root
def test_cleanenv_passes_only_the_plans_environment(
    image: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CNT_T_HOST_ONLY", "leak")
    rc, out, _ = sh("env", image, env={"CNT_T_MINE": "1"}, cleanenv=True)
    names = {line.split("=", 1)[0] for line in out.splitlines()}
    assert rc == 0 and "CNT_T_MINE" in names and "CNT_T_HOST_ONLY" not in names
    assert names <= {"CNT_T_MINE", "PATH", "HOME", "USER", "TERM", "PWD", "SHLVL", "_", "OLDPWD"}


@pytest.mark.root
def test_sudo_uid_drops_privileges(image: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUDO_UID", "65534")
    monkeypatch.setenv("SUDO_GID", "65534")
    old_umask = os.umask(0o077)  # must not make the container's / unreadable for the user
    try:
        rc, out, err = sh("id -u; id -g; id -G; hello", image)
    finally:
        os.umask(old_umask)
    assert err == ""
    assert (rc, out.split()) == (0, ["65534", "65534", "65534", "hello", "from", "the", "image"])
    # setuid programs do not raise privileges inside (no_new_privs, as under Apptainer)
    assert sh("grep NoNewPrivs /proc/self/status", image)[1].split() == ["NoNewPrivs:", "1"]
    # --fakeroot: stay root
    assert sh("id -u", image, fakeroot=True)[1] == "0\n"


@pytest.mark.root
def test_host_mounts_are_visible_inside(image: Path) -> None:
    script = "test -c /dev/null && echo ok > /dev/null && test -r /proc/self/status && ls /sys/fs"
    assert sh(script, image, writable=True)[0] == 0


@pytest.mark.root
def test_a_host_mount_gone_since_it_was_listed_is_skipped(
    image: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A host mount listed by the parent but unmounted and removed before the container binds
    it (a concurrent job's scratch): the container starts without it.  A bind the Plan asked
    for is not excused that way."""
    gone = f"/cnt-unmounted-meanwhile-{os.getpid()}"  # on the root fs: made in the overlay only
    listed = _setup.mounts

    def with_gone(*args: object, **kwargs: object) -> tuple[_setup.Mount, ...]:
        return (*listed(*args, **kwargs), _setup.Mount(gone, gone, host=True))  # type: ignore[arg-type]

    monkeypatch.setattr(_setup, "mounts", with_gone)
    assert sh("true", image) == (0, "", "")

    def asked(*args: object, **kwargs: object) -> tuple[_setup.Mount, ...]:
        return (*listed(*args, **kwargs), _setup.Mount(gone, gone))  # type: ignore[arg-type]

    monkeypatch.setattr(_setup, "mounts", asked)
    with pytest.raises(ContainerError, match="cannot bind"):
        sh("true", image)
    assert not os.path.lexists(gone)


@pytest.mark.root
def test_nothing_is_staged_on_the_host(image: Path, tmp_path: Path) -> None:
    """The staging tmpfs is mounted in the container's namespace only, on one fixed directory:
    the host sees it empty while the command runs, and a killed run leaves nothing there."""
    ready = tmp_path / "ready"
    proc = driver(["sh", "-c", f"touch {ready}; exec sleep 30"], image, writable=True)
    try:
        wait_for(ready.exists)
        assert len(attached_loops_for(image)) == 1
        assert os.listdir(_setup.staging_dir()) == []
    finally:
        proc.kill()
        proc.communicate(timeout=10)
    wait_for(lambda: not attached_loops_for(image))
    assert os.listdir(_setup.staging_dir()) == []


# --------------------------------------------------------------------------------------------
# Errors before exec


@pytest.mark.root
def test_image_without_upper_is_a_clear_error(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "something").mkdir(parents=True)
    img = tmp_path / "plain.img"
    subprocess.run(
        ["/usr/sbin/mke2fs", "-q", "-F", "-t", "ext3", "-d", str(tree), str(img), "64M"],
        check=True,
    )
    with pytest.raises(ContainerError, match=r"plain\.img: not an overlay image: it has no upper/"):
        builtin.run_captured(plan_for(["true"], img))
    locks.acquire(img, write=True).release()  # and the lock is free again


@pytest.mark.root
def test_missing_bind_source_is_refused_before_mounting(image: Path, tmp_path: Path) -> None:
    binds = (Bind(str(tmp_path / "nope"), "/srv/cnt-nope"),)
    with pytest.raises(ContainerError, match="nope into the container: it does not exist"):
        builtin.run_captured(plan_for(["true"], image, writable=True, binds=binds))
    assert debugfs_cat(image, "upper/srv/cnt-nope") is None


@pytest.mark.root
def test_unclean_image_is_refused_before_mounting(image: Path) -> None:
    subprocess.run(
        ["/usr/sbin/debugfs", "-w", "-R", "ssv state 0", str(image)],
        check=True,
        capture_output=True,
    )
    with pytest.raises(ImageError, match="not clean"):
        builtin.run_captured(plan_for(["true"], image))


# --------------------------------------------------------------------------------------------
# Locks


@pytest.mark.root
def test_two_writers_exactly_one_runs(image: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    release = tmp_path / "release"
    # The winner holds the image until the loser has given up (the test says when).
    command = ["sh", "-c", f"echo ran >> {runs}; while [ ! -e {release} ]; do sleep 0.05; done"]
    procs = [driver(command, image, writable=True) for _ in range(2)]
    try:
        wait_for(lambda: any(p.poll() is not None for p in procs))
    finally:
        release.touch()
    outputs = sorted(p.communicate(timeout=60)[0].strip() for p in procs)
    assert outputs[0].startswith("error=ImageBusyError: ")  # a LockError: the in-use kind
    assert "in use for writing by " in outputs[0] and "(PID " in outputs[0]
    assert outputs[1] == "rc=0"
    assert runs.read_text() == "ran\n"


@pytest.mark.root
def test_sixteen_readers_at_once(image: Path, tmp_path: Path) -> None:
    started = tmp_path / "started"
    started.mkdir()
    release = tmp_path / "release"
    command = [
        "sh",
        "-c",
        # Not $$: every container has a PID namespace of its own, where the shell is PID 2.
        f"hello && mktemp -p {started} >/dev/null && while [ ! -e {release} ]; do sleep 0.05; done",
    ]
    procs = [driver(command, image, writable=False) for _ in range(16)]
    try:
        wait_for(lambda: len(os.listdir(started)) == 16)  # all running together
    finally:
        release.touch()
    results = [p.communicate(timeout=60) for p in procs]
    assert [out for out, _ in results] == ["hello from the image\nrc=0\n"] * 16, results


@pytest.mark.root
def test_writer_refused_while_a_reader_runs(image: Path, tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    reader = driver(["sh", "-c", f"touch {ready}; exec sleep 30"], image, writable=False)
    try:
        wait_for(ready.exists)
        with pytest.raises(LockError, match="in use for reading"):
            builtin.run_captured(plan_for(["true"], image, writable=True))
        assert builtin.run_captured(plan_for(["true"], image))[0] == 0  # readers share
    finally:
        reader.send_signal(signal.SIGTERM)
        out, _ = reader.communicate(timeout=10)
    assert out == f"rc={128 + signal.SIGTERM}\n"  # SIGTERM to the parent reached the command


def host_pids(marker: str) -> list[int]:
    """Host PIDs of the `sleep` processes whose command line holds `marker` (a container's own
    PIDs, as `$$` shows them, are those of its PID namespace)."""
    found = []
    for entry in glob.glob("/proc/[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            proc = Path(entry).parent
            mine = marker.encode() in Path(entry).read_bytes()
            if mine and (proc / "comm").read_text().strip() == "sleep":
                found.append(int(proc.name))
    return found


def sleeper(seconds: int = 60) -> str:
    """`sleep` for about `seconds`, with an argument no other process has (GNU sleep takes
    fractions), to find it by."""
    return f"{seconds}.{os.getpid()}{int.from_bytes(os.urandom(3), 'big')}"


@pytest.mark.root
@pytest.mark.parametrize("as_user", [False, True], ids=["root", "sudo-user"])
def test_killed_parent_takes_the_command_along(image: Path, tmp_path: Path, as_user: bool) -> None:
    env = {"SUDO_UID": "65534", "SUDO_GID": "65534"} if as_user else {}
    marker = sleeper()
    parent = driver(["sleep", marker], image, writable=not as_user, env=env)
    wait_for(lambda: host_pids(marker))
    (child,) = host_pids(marker)
    assert pid_alive(child)
    parent.kill()
    parent.communicate(timeout=10)
    wait_for(lambda: not pid_alive(child))
    wait_for(lambda: not attached_loops_for(image))
    locks.acquire(image, write=True).release()


@pytest.mark.root
def test_signals_are_forwarded(image: Path, tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    script = f"trap 'echo got USR1; exit 7' USR1; touch {ready}; while :; do sleep 0.05; done"
    proc = driver(["sh", "-c", script], image, writable=False)
    wait_for(ready.exists)
    proc.send_signal(signal.SIGUSR1)
    out, _ = proc.communicate(timeout=10)
    assert out == "got USR1\nrc=7\n"


@pytest.mark.root
def test_ctrl_c_reaches_the_command_once(image: Path) -> None:
    """The tty sends SIGINT to the whole foreground group; the parent must not send another."""
    pexpect = pytest.importorskip("pexpect")
    # SIGUSR1 ends it: the test sends it to the parent after the Ctrl-C, and the parent
    # forwards it.  A second SIGINT the parent sent would be sent before that forward, and a
    # pending SIGINT is delivered before a pending SIGUSR1 (lower numbers first).
    script = (
        "n=0; trap 'n=$((n+1)); echo GOT' INT; trap 'exit $n' USR1; echo READY;"
        " while :; do sleep 0.05; done"
    )
    spec = {
        "command": ["sh", "-c", script],
        "overlays": [[str(image), False]],
        "cwd": "/",
        "env": [["PATH", "/usr/bin:/bin"]],
    }
    child = pexpect.spawn(
        sys.executable,
        ["-c", DRIVER, json.dumps(spec)],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        encoding="utf-8",
        timeout=20,
    )
    child.expect("READY")
    child.sendintr()
    child.expect("GOT")
    os.kill(child.pid, signal.SIGUSR1)  # to the parent, which forwards it
    child.expect(pexpect.EOF)
    assert "rc=1" in child.before


@pytest.mark.root
def test_background_process_dies_with_the_container(image: Path, tmp_path: Path) -> None:
    """A process the command leaves behind is killed when the command ends (the container has
    a PID namespace of its own), so it can keep neither the mount nor the lock."""
    marker = sleeper()
    assert sh(f"sleep {marker} >/dev/null 2>&1 &", image, writable=True)[0] == 0
    assert not [pid for pid in host_pids(marker) if pid_alive(pid)]
    wait_for(lambda: not attached_loops_for(image))
    locks.acquire(image, write=True).release()


@pytest.mark.root
def test_killed_parent_takes_background_processes_along(image: Path) -> None:
    """SIGKILL of condatainer while the command and a process it left in the background run:
    both die, the image is unmounted, and only then is its lock free."""
    marker = sleeper()
    script = f"sleep {marker} & sleep {marker}"
    parent = driver(["sh", "-c", script], image, writable=True)
    wait_for(lambda: len(host_pids(marker)) == 2)
    with pytest.raises(LockError, match=r"in use for writing by .*\(PID \d+"):
        locks.acquire(image, write=True)
    parent.kill()
    parent.communicate(timeout=10)
    wait_for(lambda: not [pid for pid in host_pids(marker) if pid_alive(pid)])
    wait_for(lambda: not attached_loops_for(image))
    locks.acquire(image, write=True).release()


@pytest.mark.root
def test_the_container_has_its_own_pids_and_proc(image: Path) -> None:
    """The command is PID 2 under the container's init; its /proc shows the container only."""
    rc, out, err = sh("echo $$; ls /proc | grep -c '^[0-9]'; cat /proc/1/comm", image)
    assert rc == 0, err
    pid, count, init = out.split()
    assert pid == "2"
    assert int(count) <= 4  # init, sh, ls, grep
    assert init != Path("/proc/1/comm").read_text().strip() or init.startswith("python")


def attached_loops_for(image: Path) -> list[str]:
    return [d for d, f in attached_loops().items() if f == str(image)]
