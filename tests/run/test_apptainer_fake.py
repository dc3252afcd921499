"""runtime.apptainer against the recording `apptainer` of tests/fakes: real ext3 images, real locks.

`execute` replaces its process, so it runs in a child Python (`python3 -c ...`) with the fake
first on PATH; `run_captured` runs in this process with PATH patched.  What the fake checks and
what it does not is in its docstring: no container is started, the command runs on the host.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from condatainer import config
from condatainer.errors import ConfigError, ContainerError, ImageError, LockError
from condatainer.run.plan import Bind, Overlay, Plan
from condatainer.run.runtime import apptainer, selection
from tests.fakes import FAKE_APPTAINER, FAKES_DIR, with_fakes_on_path

REPO = Path(__file__).resolve().parents[2]
SH = "/bin/sh"
PY = sys.executable

# Builds the Plan from JSON (argv[1]) and hands over to Apptainer the way launch does.
EXECUTE = """
import json, os, sys
from condatainer import config
from condatainer.errors import CondatainerError
from condatainer.run.plan import Bind, Overlay, Plan
from condatainer.run.runtime import selection
from condatainer.run.runtime import apptainer
d = json.loads(sys.argv[1])
plan = Plan(
    command=tuple(d["command"]), cwd=d["cwd"], base_image=d["base_image"],
    overlays=tuple(Overlay(**o) for o in d["overlays"]),
    binds=tuple(Bind(**b) for b in d["binds"]),
    env=tuple((k, v) for k, v in d["env"]),
    gpu=tuple(d["gpu"]), fakeroot=d["fakeroot"], contain=d["contain"],
    containall=d["containall"], cleanenv=d["cleanenv"], workdir=d["workdir"],
    extra_args=tuple(d["extra_args"]),
)
try:
    binary = selection.container_binary(config.load(os.environ), "apptainer")
    apptainer.execute(plan, binary, probe=d["probe"])
except CondatainerError as err:
    print(f"condatainer: error: {err.message}", file=sys.stderr)
    if err.hint:
        print(f"hint: {err.hint}", file=sys.stderr)
    sys.exit(err.exit_code)
"""


# --- the world: images, a base image, an environment with the fake first on PATH --------------


def make_image(directory: Path, name: str = "env.img", *, upper_uid: int | None = None) -> Path:
    """A 64 MiB ext3 overlay with Apptainer's layout (upper/ext3/env, work/)."""
    tree = directory / f"{name}.tree"
    (tree / "upper" / "ext3" / "env").mkdir(parents=True)
    (tree / "work").mkdir()
    image = directory / name
    subprocess.run(
        ["mke2fs", "-q", "-F", "-t", "ext3", "-d", str(tree), str(image), "64M"],
        check=True,
        env=dict(os.environ, PATH=f"/usr/sbin:/sbin:{os.environ['PATH']}"),
    )
    if upper_uid is not None:
        subprocess.run(
            ["debugfs", "-w", "-R", f"set_inode_field /upper uid {upper_uid}", str(image)],
            check=True,
            capture_output=True,
            env=dict(os.environ, PATH=f"/usr/sbin:/sbin:{os.environ['PATH']}"),
        )
    return image


@pytest.fixture(autouse=True)
def _tools(need: Callable[[str], str]) -> None:
    """e2fsprogs build the images; skip without them locally, fail in CI (tests/conftest.py)."""
    need("mke2fs")
    need("debugfs")


@pytest.fixture
def base(tmp_path: Path) -> str:
    sif = tmp_path / "base.sif"
    sif.write_bytes(b"not read by the fake\n")
    return str(sif)


@pytest.fixture
def log(tmp_path: Path) -> Path:
    return tmp_path / "apptainer.jsonl"


@pytest.fixture
def fake_env(log: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """Our environment, and a copy for child processes, with the fake apptainer found first."""
    env = with_fakes_on_path(os.environ)
    env["CNT_FAKE_APPTAINER_LOG"] = str(log)
    env["PYTHONPATH"] = str(REPO)
    monkeypatch.setenv("PATH", env["PATH"])
    monkeypatch.setenv("CNT_FAKE_APPTAINER_LOG", str(log))
    yield env


def plan_json(plan: Plan, probe: bool) -> str:
    data = plan.as_dict()
    data.pop("notices")
    data["probe"] = probe
    return json.dumps(data)


def execute(
    plan: Plan, env: dict[str, str], *, probe: bool = True
) -> subprocess.CompletedProcess[bytes]:
    """Run `apptainer.execute` in a child Python, the way launch does; its status is the run's."""
    return subprocess.run(
        [PY, "-c", EXECUTE, plan_json(plan, probe)],
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )


def start(plan: Plan, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Start a run that holds its locks until we write a line to it; return once it holds them."""
    proc = subprocess.Popen(
        [PY, "-c", EXECUTE, plan_json(plan, probe=True)],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line == b"ready\n", (line, proc.stderr.read() if proc.stderr else b"")
    return proc


def finish(proc: subprocess.Popen[bytes]) -> int:
    _out, err = proc.communicate(b"done\n", timeout=30)
    assert proc.returncode == 0, err
    return proc.returncode


HOLD = [PY, "-c", "import sys; print('ready', flush=True); sys.stdin.readline()"]


def plan_with(image: Path, base: str, command: list[str], **kw: object) -> Plan:
    writable = bool(kw.pop("writable", True))
    return Plan(
        command=tuple(command),
        overlays=(Overlay(str(image), writable=writable),),
        env=(("IN_CONDATAINER", "1"),),
        base_image=base,
        **kw,  # type: ignore[arg-type]
    )


def records(log: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in log.read_text().splitlines()]


# --- exit status and the recorded command line ------------------------------------------------


@pytest.mark.parametrize(
    ("script", "status"),
    [
        ("exit 0", 0),
        ("exit 3", 3),
        ("exit 127", 127),
        ("kill -TERM $$", 143),
        ("kill -KILL $$", 137),
    ],
)
def test_exit_status_passes_through(
    tmp_path: Path, base: str, fake_env: dict[str, str], script: str, status: int
) -> None:
    plan = plan_with(make_image(tmp_path), base, [SH, "-c", script])
    res = execute(plan, fake_env)
    assert res.returncode == status, res.stderr


def test_recorded_command_line_is_argv(
    tmp_path: Path, base: str, fake_env: dict[str, str], log: Path
) -> None:
    image = make_image(tmp_path)
    ro = make_image(tmp_path, "tools.img")
    bound = tmp_path / "data"
    bound.mkdir()
    plan = Plan(
        command=(SH, "-c", "exit 0"),
        overlays=(Overlay(str(image), True), Overlay(str(ro), False)),
        binds=(Bind(str(bound), "/data", readonly=True),),
        env=(("IN_CONDATAINER", "1"), ("CNT_OVERLAY", str(image))),
        base_image=base,
        cwd=str(tmp_path),
        gpu=("nv",),
        cleanenv=True,
        extra_args=("--no-home",),
    )
    res = execute(plan, fake_env)
    assert res.returncode == 0, res.stderr
    (entry,) = records(log)
    binary = str(FAKES_DIR / "apptainer")
    assert entry["argv"] == apptainer.argv(plan, binary)
    assert entry["env"] == {
        "APPTAINERENV_IN_CONDATAINER": "1",
        "APPTAINERENV_CNT_OVERLAY": str(image),
    }


def test_notices_printed_before_exec_are_not_lost(
    tmp_path: Path, base: str, fake_env: dict[str, str]
) -> None:
    plan = plan_with(make_image(tmp_path), base, [SH, "-c", "echo from-the-container"])
    script = EXECUTE.replace("try:\n", "print('notice before exec')\ntry:\n", 1)
    res = subprocess.run(
        [PY, "-c", script, plan_json(plan, True)], env=fake_env, capture_output=True, check=False
    )
    assert res.stdout == b"notice before exec\nfrom-the-container\n", res.stderr


# --- values arrive byte-exact and are never evaluated -------------------------------------------

SHOW_ENV = (
    "import json, os, sys;"
    " sys.stdout.write(json.dumps({k: os.environ.get(k) for k in sys.argv[1:]}))"
)


def tricky_values(marker: Path) -> dict[str, str]:
    return {
        "SUBST": f"$(touch {marker})",
        "BACKTICK": f"`touch {marker}`",
        "QUOTES": "it's \"quoted\" 'twice'",
        "COMMAS": "a,b=c,d,e",
        "NEWLINES": "line1\nline2\n\n",
        "DOLLARS": "$HOME ${PATH} $1 $$ $",
        "BACKSLASHES": "C:\\dir\\ \\n \\",
        "EQUALS": "==x=",
        "EMPTY": "",
        "UNICODE": "èрт🚒中",
        "LEADING_QUOTE": '"x"',
    }


def test_values_arrive_byte_exact_and_nothing_runs_on_the_host(
    tmp_path: Path, base: str, fake_env: dict[str, str]
) -> None:
    marker = tmp_path / "pwned"
    values = tricky_values(marker)
    plan = Plan(
        command=(PY, "-c", SHOW_ENV, *values),
        overlays=(Overlay(str(make_image(tmp_path)), True),),
        env=tuple(values.items()),
        base_image=base,
        cleanenv=True,
    )
    res = execute(plan, fake_env)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == values
    assert not marker.exists()


def test_the_fake_would_catch_evaluated_values(tmp_path: Path, base: str) -> None:
    """Without --no-eval Apptainer evaluates values; so does the fake (it never runs `$(...)`)."""
    marker = tmp_path / "pwned"
    env = dict(os.environ, HOME="/home/someone")
    env["APPTAINERENV_X"] = f"$(touch {marker})<$HOME>"
    env["APPTAINERENV_Y"] = "a\\$b"
    res = subprocess.run(
        [str(FAKE_APPTAINER), "exec", base, PY, "-c", SHOW_ENV, "X", "Y"],
        env=env,
        capture_output=True,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == {"X": "</home/someone>", "Y": "a$b"}
    assert not marker.exists()


def test_run_captured_returns_the_exact_bytes(
    tmp_path: Path, base: str, fake_env: dict[str, str]
) -> None:
    script = (
        "import sys; data = sys.stdin.buffer.read(); sys.stdout.buffer.write(data[::-1]);"
        " sys.stderr.buffer.write(b'\\xff\\xfe')"
    )
    plan = plan_with(make_image(tmp_path), base, [PY, "-c", script])
    status, out, err = apptainer.run_captured(plan, str(FAKE_APPTAINER), stdin=b"\x00ab\xc3\n")
    assert (status, out, err) == (0, b"\n\xc3ba\x00", b"\xff\xfe")


def test_run_captured_reports_signals_as_128_plus_n(
    tmp_path: Path, base: str, fake_env: dict[str, str]
) -> None:
    plan = plan_with(make_image(tmp_path), base, [SH, "-c", "kill -INT $$"])
    status, _, _ = apptainer.run_captured(plan, str(FAKE_APPTAINER))
    assert status == 128 + signal.SIGINT


# --- locks: the fake takes Apptainer's; FATAL lines become our errors --------------------------


def test_second_writer_gets_apptainers_fatal_then_a_lock_error(
    tmp_path: Path, base: str, fake_env: dict[str, str]
) -> None:
    image = make_image(tmp_path)
    first = start(plan_with(image, base, HOLD), fake_env)
    try:
        second = plan_with(image, base, [SH, "-c", "exit 0"])
        # What Apptainer itself prints, word for word.
        raw = subprocess.run(
            apptainer.argv(second, str(FAKE_APPTAINER)),
            env=fake_env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert raw.returncode == 255
        assert raw.stderr == (
            f"FATAL:   while loading overlay images: failed to open overlay image {image}: while"
            f" locking ext3 partition from {image}: can't open {image} for writing, currently in"
            " use by another process\n"
        )
        # Without our probe (the race: the lock was taken after it), the FATAL is translated;
        # the holder still holds it, so the error names it.
        with pytest.raises(LockError) as err:
            apptainer.run_captured(second, str(FAKE_APPTAINER), probe=False)
        assert f"{image}: in use for writing by " in err.value.message
        assert f"(PID {first.pid}" in err.value.message
        # With the probe (the default), the same precise error comes before Apptainer starts.
        with pytest.raises(LockError, match=f"PID {first.pid}"):
            apptainer.run_captured(second, str(FAKE_APPTAINER))
        # A reader is refused too, with Apptainer's reading message.
        reader = plan_with(image, base, [SH, "-c", "exit 0"], writable=False)
        raw = subprocess.run(
            apptainer.argv(reader, str(FAKE_APPTAINER)),
            env=fake_env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert "for reading, currently in use for writing by another process" in raw.stderr
        with pytest.raises(LockError, match="in use for writing"):
            apptainer.run_captured(reader, str(FAKE_APPTAINER), probe=False)
    finally:
        finish(first)
    # Released with the command: the next writer runs.
    assert apptainer.run_captured(second, str(FAKE_APPTAINER))[0] == 0


def test_readers_share_and_keep_writers_out(
    tmp_path: Path, base: str, fake_env: dict[str, str]
) -> None:
    image = make_image(tmp_path)
    reader = start(plan_with(image, base, HOLD, writable=False), fake_env)
    try:
        again = plan_with(image, base, [SH, "-c", "exit 5"], writable=False)
        assert apptainer.run_captured(again, str(FAKE_APPTAINER))[0] == 5
        writer = plan_with(image, base, [SH, "-c", "exit 0"])
        with pytest.raises(LockError, match="in use"):
            apptainer.run_captured(writer, str(FAKE_APPTAINER), probe=False)
    finally:
        finish(reader)


def test_held_lock_through_execute_prints_apptainers_fatal(
    tmp_path: Path, base: str, fake_env: dict[str, str]
) -> None:
    image = make_image(tmp_path)
    first = start(plan_with(image, base, HOLD), fake_env)
    try:
        res = execute(plan_with(image, base, [SH, "-c", "exit 0"]), fake_env, probe=False)
        assert res.returncode == 255
        assert b"FATAL:   while loading overlay images" in res.stderr
        res = execute(plan_with(image, base, [SH, "-c", "exit 0"]), fake_env)
        assert res.returncode == 1
        assert (
            b"in use for writing by " in res.stderr and f"(PID {first.pid}".encode() in res.stderr
        )
    finally:
        finish(first)


# --- other failures ---------------------------------------------------------------------------


def test_upper_owned_by_someone_else_is_an_ownership_error(
    tmp_path: Path, base: str, fake_env: dict[str, str]
) -> None:
    image = make_image(tmp_path, upper_uid=4242)
    plan = plan_with(image, base, [SH, "-c", "exit 0"], fakeroot=True)
    raw = subprocess.run(
        apptainer.argv(plan, str(FAKE_APPTAINER)),
        env=fake_env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert raw.returncode == 255
    assert "setup of overlay upper dir failed: " in raw.stderr
    assert "/overlay-images/0/upper is not writable: permission denied" in raw.stderr
    with pytest.raises(ContainerError) as err:
        apptainer.run_captured(plan, str(FAKE_APPTAINER))
    assert str(image) in err.value.message and "upper/" in err.value.message
    assert err.value.hint is not None
    assert f"condatainer overlay chown {image}" in err.value.hint


def test_root_owned_upper_with_fakeroot_is_fine(
    tmp_path: Path, base: str, fake_env: dict[str, str]
) -> None:
    image = make_image(tmp_path, upper_uid=0)
    plan = plan_with(image, base, [SH, "-c", "exit 0"], fakeroot=True)
    assert apptainer.run_captured(plan, str(FAKE_APPTAINER))[0] == 0


def test_missing_base_image_config(tmp_path: Path, fake_env: dict[str, str], log: Path) -> None:
    plan = plan_with(make_image(tmp_path), None, [SH, "-c", "exit 0"])  # type: ignore[arg-type]
    res = execute(plan, fake_env)
    assert res.returncode == 1
    assert b"no base image: the Apptainer runtime needs one" in res.stderr
    assert b"hint: fetch condatainer's default base with: condatainer base pull" in res.stderr
    assert not log.exists()  # Apptainer was never started


def test_base_image_that_does_not_exist(tmp_path: Path, fake_env: dict[str, str]) -> None:
    missing = str(tmp_path / "gone.sif")
    plan = plan_with(make_image(tmp_path), missing, [SH, "-c", "exit 0"])
    with pytest.raises(ConfigError, match=r"gone\.sif: no such file"):
        apptainer.run_captured(plan, str(FAKE_APPTAINER))
    with pytest.raises(ConfigError) as err:  # Apptainer's own FATAL, translated
        apptainer.run_captured(plan, str(FAKE_APPTAINER), probe=False)
    assert err.value.hint is not None
    assert "condatainer config set base_image /path/to/base.sif" in err.value.hint


def test_not_an_ext3_image(tmp_path: Path, base: str, fake_env: dict[str, str]) -> None:
    junk = tmp_path / "junk.img"
    junk.write_bytes(b"\0" * 8192)
    plan = plan_with(junk, base, [SH, "-c", "exit 0"], writable=False)
    with pytest.raises(ImageError, match="not an ext3 overlay image"):
        apptainer.run_captured(plan, str(FAKE_APPTAINER), probe=False)


def test_command_missing_in_the_container(
    tmp_path: Path, base: str, fake_env: dict[str, str]
) -> None:
    plan = plan_with(make_image(tmp_path), base, ["no-such-program-here"])
    with pytest.raises(ContainerError) as err:
        apptainer.run_captured(plan, str(FAKE_APPTAINER))
    assert err.value.exit_code == 127


def test_missing_bind_source(tmp_path: Path, base: str, fake_env: dict[str, str]) -> None:
    gone = str(tmp_path / "gone")
    plan = Plan(command=(SH, "-c", "exit 0"), binds=(Bind(gone, gone),), base_image=base)
    with pytest.raises(ContainerError, match=f"cannot bind {gone}"):
        apptainer.run_captured(plan, str(FAKE_APPTAINER))


def test_cwd_and_path_reach_the_command(
    tmp_path: Path, base: str, fake_env: dict[str, str]
) -> None:
    here = tmp_path / "work dir"
    here.mkdir()
    plan = Plan(
        command=("pwd-and-path",),
        overlays=(Overlay(str(make_image(tmp_path)), True),),
        env=(("PATH", f"{tmp_path / 'bin'}:/usr/bin:/bin"),),
        base_image=base,
        cwd=str(here),
    )
    tool = tmp_path / "bin" / "pwd-and-path"
    tool.parent.mkdir()
    tool.write_text('#!/bin/sh\npwd\necho "$PATH"\n')
    tool.chmod(0o755)
    status, out, _ = apptainer.run_captured(plan, str(FAKE_APPTAINER))
    assert (status, out.decode()) == (0, f"{here}\n{tmp_path / 'bin'}:/usr/bin:/bin\n")


def test_the_fake_is_the_apptainer_condatainer_finds(fake_env: dict[str, str]) -> None:
    cfg = config.load(fake_env)
    assert selection.select(cfg).name == "apptainer"
    assert selection.container_binary(cfg, "apptainer") == str(FAKE_APPTAINER)
    res = subprocess.run(["apptainer", "--version"], env=fake_env, capture_output=True, text=True)
    assert res.stdout == "apptainer version 1.3.4\n"


# --- the fake itself behaves like Apptainer where we rely on it -------------------------------


def fake(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(FAKE_APPTAINER), *args],
        env=env if env is not None else dict(os.environ),
        capture_output=True,
        text=True,
        check=False,
    )


def test_fake_env_flag_splits_values_like_apptainer(base: str) -> None:
    """Why values do not travel as --env: one `=` is kept whole, more make a CSV record."""
    show = [PY, "-c", SHOW_ENV, "A", "B"]
    res = fake("exec", "--no-eval", "--env", "A=x,y", base, *show)
    assert json.loads(res.stdout) == {"A": "x,y", "B": None}
    res = fake("exec", "--no-eval", "--env", "A=x,B=y", base, *show)
    assert json.loads(res.stdout) == {"A": "x", "B": "y"}
    res = fake("exec", "--no-eval", "--env", 'A="q"', base, *show)  # pflag trims the last "
    assert json.loads(res.stdout) == {"A": '"q', "B": None}


def test_fake_refuses_two_writable_overlays(tmp_path: Path, base: str) -> None:
    one, two = make_image(tmp_path, "one.img"), make_image(tmp_path, "two.img")
    res = fake("exec", "--overlay", str(one), "-o", str(two), base, SH, "-c", "exit 0")
    assert res.returncode == 255
    assert "you can't specify more than one writable overlay" in res.stderr
    res = fake("exec", "--overlay", f"{one},{two}:ro", base, SH, "-c", "exit 0")
    assert res.returncode == 0, res.stderr


def test_fake_options_stop_at_the_image(tmp_path: Path, base: str) -> None:
    res = fake("exec", "-ec", "--pwd", str(tmp_path), base, SH, "-c", 'pwd; echo "$0"', "--nv")
    assert res.returncode == 0, res.stderr
    assert res.stdout == f"{tmp_path}\n--nv\n"
    res = fake("exec", "--no-such-option", base, SH)
    assert res.returncode == 255
    assert "unknown flag: --no-such-option" in res.stderr
    res = fake("exec", "--env-file", "f", base, SH)
    assert res.stderr.startswith("fake apptainer:")


def test_fake_cleanenv_keeps_apptainerenv_only(base: str) -> None:
    env = dict(os.environ, HOST_ONLY="1", APPTAINERENV_GUARD="2")
    res = fake("exec", "-e", "--no-eval", base, PY, "-c", SHOW_ENV, "HOST_ONLY", "GUARD", env=env)
    assert json.loads(res.stdout) == {"HOST_ONLY": None, "GUARD": "2"}
    res = fake("exec", "--no-eval", base, PY, "-c", SHOW_ENV, "HOST_ONLY", "GUARD", env=env)
    assert json.loads(res.stdout) == {"HOST_ONLY": "1", "GUARD": "2"}
