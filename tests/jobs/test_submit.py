"""submit: when `run` submits (failing closed), what it refuses, the sbatch call and wrapper it
builds (no SLURM here; tests/slurm feeds them to a real cluster).

The wrapper is run in real dash and bash with a recording `condatainer`, and passes shellcheck;
sbatch is replaced through runner.run_hook and the SLURM probe through monkeypatch.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from condatainer import cli, config, runner
from condatainer.display import Reporter
from condatainer.errors import CondatainerError, UsageError
from condatainer.jobs import control, directives, scheduler, script, submit
from condatainer.jobs import header as reexec_header
from condatainer.run import launch
from condatainer.run.plan import Plan

HOSTILE = "'\";&&e-$ èрт🚒中-j"


def header(text: str) -> directives.Directives:
    return directives.parse(text, "job.sh")


SBATCH = header("#!/bin/sh\n#SBATCH -J x\necho\n")
PLAIN = header("#!/bin/sh\necho\n")
READY = scheduler.Slurm("ready", "/usr/bin/sbatch", "slurm 22.05.8", "22.05.8")
ABSENT = scheduler.Slurm("absent", "/usr/bin/sbatch", "installed but not configured")
NONE = scheduler.Slurm("absent", None, "no sbatch on PATH")
BROKEN = scheduler.Slurm("broken", "/usr/bin/sbatch", "/usr/bin/sbatch does not work: x")


def decide(
    monkeypatch: pytest.MonkeyPatch,
    found: scheduler.Slurm,
    parsed: directives.Directives = SBATCH,
    ctl: control.JobControl | None = None,
    env: dict[str, str] | None = None,
    cfg: str = "auto",
    **flags: bool,
) -> submit.Decision:
    monkeypatch.setattr(scheduler, "probe", lambda environ: found)
    kw = {"submit": False, "local": False, "reexec": False, **flags}
    return submit.decide(
        parsed,
        ctl or control.JobControl(),
        config.Config(submit=cfg),  # type: ignore[arg-type]
        env or {},
        script="/p/job.sh",
        **kw,
    )


@pytest.mark.parametrize(
    ("found", "flags", "env", "cfg", "expected"),
    [
        (READY, {"submit": True}, {}, "never", True),
        (READY, {}, {}, "auto", True),
        (ABSENT, {}, {}, "auto", False),  # installed, not configured: runs here
        (NONE, {}, {}, "auto", False),  # no sbatch: runs here
        (READY, {}, {}, "never", False),
        (READY, {"local": True}, {}, "auto", False),
        (READY, {"reexec": True}, {}, "auto", False),  # the header's call never queues
        (READY, {"submit": True}, {"SLURM_JOB_ID": "7"}, "auto", False),  # no resubmission loop
        (READY, {}, {"IN_CONDATAINER": "1"}, "auto", False),
    ],
)
def test_decide(
    monkeypatch: pytest.MonkeyPatch,
    found: scheduler.Slurm,
    flags: dict[str, bool],
    env: dict[str, str],
    cfg: str,
    expected: bool,
) -> None:
    got = decide(monkeypatch, found, env=env, cfg=cfg, **flags)
    assert got.submit is expected and got.error is None


def test_auto_falls_back_to_running_here_only_where_slurm_is_absent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    got = decide(monkeypatch, ABSENT)
    assert not got.submit and got.note is not None and "running /p/job.sh here" in got.note
    # Configured but broken: an error with the --local hint, never a quiet run here.
    got = decide(monkeypatch, BROKEN)
    assert got.submit and got.error is not None
    assert "SLURM is configured here but /usr/bin/sbatch does not work" in got.error.message
    assert got.error.hint is not None and "condatainer run --local /p/job.sh" in got.error.hint


def test_explicit_submit_without_slurm_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    got = decide(monkeypatch, NONE, submit=True)
    assert got.error is not None and "--submit: SLURM is not available here" in got.error.message


def test_auto_needs_sbatch_lines_or_job_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    assert not decide(monkeypatch, READY, parsed=PLAIN).submit
    with_flags = control.from_flags(cpu="4")
    assert decide(monkeypatch, READY, parsed=PLAIN, ctl=with_flags).submit


def test_the_probe_is_not_asked_when_nothing_would_submit(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(environ: object) -> scheduler.Slurm:
        raise AssertionError("probed")

    monkeypatch.setattr(scheduler, "probe", boom)
    got = submit.decide(
        PLAIN,
        control.JobControl(),
        config.Config(),
        {},
        script="/p/job.sh",
        submit=False,
        local=False,
        reexec=False,
    )
    assert not got.submit and got.slurm is None


def test_submit_and_local_together_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UsageError, match="contradict"):
        decide(monkeypatch, READY, submit=True, local=True)


def test_explicit_submit_inside_a_job_says_it_runs_here(monkeypatch: pytest.MonkeyPatch) -> None:
    got = decide(monkeypatch, READY, env={"SLURM_JOB_ID": "7"}, submit=True)
    assert got.note is not None and "inside a SLURM job (SLURM_JOB_ID=7)" in got.note


@pytest.mark.parametrize(
    ("lines", "env", "why"),
    [
        ("#SBATCH --array=0-1", {}, "#SBATCH --array=0-1"),
        ("#SBATCH --array 1,3", {}, "#SBATCH --array 1,3"),
        ("#SBATCH -a0-3%1", {}, "#SBATCH -a0-3%1"),
        ("#SBATCH -J x -a 2", {}, "#SBATCH -J x -a 2"),
        ("#SBATCH -n 4", {}, "#SBATCH -n 4"),
        ("#SBATCH -n4", {}, "#SBATCH -n4"),
        ("#SBATCH --ntasks=2", {}, "#SBATCH --ntasks=2"),
        ("#SBATCH--ntasks=2", {}, "#SBATCH --ntasks=2"),  # no blank after the tag
        ("#SBATCH --ntasks-per-node=2", {}, "#SBATCH --ntasks-per-node=2"),
        ("#SBATCH --tasks-per-node=2", {}, "#SBATCH --tasks-per-node=2"),
        ("#SBATCH -N 2-4", {}, "#SBATCH -N 2-4"),
        ("#SBATCH -n 1\n#SBATCH -N 1\n#SBATCH --ntasks-per-node=1", {}, None),
        ("#SBATCH -c 8 --mem=4G", {}, None),
        ("#SBATCH --comment='-a 1'", {}, None),  # quoted: a value, not an option
        ("#SBATCH -J -n\n#SBATCH -n 1", {}, None),  # -n is -J's value
        ("", {"SBATCH_ARRAY_INX": "0-9"}, "SBATCH_ARRAY_INX=0-9"),
    ],
)
def test_parallelism(lines: str, env: dict[str, str], why: str | None) -> None:
    parsed = header(f"#!/bin/sh\n{lines}\necho\n")
    own = control.script_options(parsed)
    assert submit.parallelism(own, parsed, control.JobControl(), env) == why


def test_array_flag_is_parallelism(tmp_path: Path) -> None:
    tasks = tmp_path / "samples.txt"
    tasks.write_text("a\nb\n")
    ctl = control.from_flags(array=str(tasks))
    own = control.script_options(PLAIN)
    assert submit.parallelism(own, PLAIN, ctl, {}) == f"--array {tasks}"


def test_sbatch_lines_are_the_honoured_ones_verbatim() -> None:
    text = (
        "#!/bin/bash\n#SBATCH -J a   # name\n  #SBATCH -n 9\n#SBATCH--mem=1G\n#DEP: e.img\n"
        "#SLURM -t 5\n#SBATCH\t-c 2\necho\n#SBATCH -n 8\n"
    )
    assert submit.sbatch_lines(text, header(text)) == [
        "#SBATCH -J a   # name",
        "#SBATCH--mem=1G",
        "#SLURM -t 5",
        "#SBATCH\t-c 2",
    ]


def test_has_header() -> None:
    text = "#!/bin/sh\necho\n"
    assert not reexec_header.present(text)
    assert reexec_header.present(reexec_header.insert(text))
    assert not reexec_header.present("#!/bin/sh\necho '# >>> condatainer header >>>'\n")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("job.sh", "job.sh"),
        ("my job;$x.sh", "my_job__x.sh"),
        ("", "job"),
    ],
)
def test_job_name(name: str, expected: str) -> None:
    assert submit.job_name(f"/p/{name}" if name else "/") == expected


# --- the wrapper, in real shells --------------------------------------------------------------


@pytest.fixture
def recorder(tmp_path: Path) -> tuple[Path, Path]:
    """A fake `condatainer` that records its argv, NUL-separated, then exits 5."""
    log = tmp_path / "argv"
    fake = tmp_path / "bin" / "condatainer"
    fake.parent.mkdir()
    fake.write_text(f"#!/bin/sh\nprintf '%s\\0' \"$@\" > '{log}'\nexit 5\n")
    fake.chmod(0o755)
    return fake, log


def wrap(text: str, script: str, args: list[str], **kw: Any) -> str:
    kw.setdefault("run_flags", [])
    kw.setdefault("condatainer", "/opt/bin/condatainer")
    return submit.wrapper(text, header(text), script, args, **kw)


def run_shell(shell: str, body: str, cwd: Path, env: dict[str, str] | None = None) -> int:
    res = subprocess.run(
        [shell, "-s"],
        input=body,
        text=True,
        cwd=cwd,
        capture_output=True,
        env={**os.environ, **(env or {})},
        check=False,
    )
    return res.returncode


def test_wrapper_runs_condatainer_with_every_word_intact(
    tmp_path: Path, recorder: tuple[Path, Path], need: Callable[[str], str]
) -> None:
    fake, log = recorder
    script = str(tmp_path / f"{HOSTILE}.sh")
    args = [HOSTILE, "a b", "", "-w", "--", "$(touch pwned)"]
    text = '#!/usr/bin/env python3\n#SBATCH -J x # c\n#SBATCH --comment="a\'b $x"\nprint()\n'
    flags = ["-w", "--env", f"K={HOSTILE}"]
    body = wrap(text, script, args, run_flags=flags, condatainer=str(fake))
    assert body.startswith("#!/bin/sh\n#SBATCH --job-name=")
    assert '#SBATCH -J x # c\n#SBATCH --comment="a\'b $x"\n' in body
    for shell in ("dash", "bash"):
        assert run_shell(need(shell), body, tmp_path) == 5
        argv = log.read_text().split("\0")[:-1]
        assert argv == ["run", "--local", *flags, script, *args]
    assert not (tmp_path / "pwned").exists()


def test_wrapper_of_an_array_job_picks_the_task_words_by_id(
    tmp_path: Path, recorder: tuple[Path, Path], need: Callable[[str], str]
) -> None:
    fake, log = recorder
    tasks = [["s1", "treated"], [HOSTILE, "$(touch pwned)", ""], ["only"]]
    body = wrap("#!/bin/sh\necho\n", "/p/q.sh", ["fixed arg"], condatainer=str(fake), tasks=tasks)
    for shell in ("dash", "bash"):
        for task_id, words in enumerate(tasks):
            code = run_shell(need(shell), body, tmp_path, {"SLURM_ARRAY_TASK_ID": str(task_id)})
            assert code == 5
            argv = log.read_text().split("\0")[:-1]
            assert argv == ["run", "--local", "/p/q.sh", "fixed arg", *words]
        log.unlink()
        assert run_shell(need(shell), body, tmp_path, {"SLURM_ARRAY_TASK_ID": "3"}) == 2
        assert not log.exists()
    assert not (tmp_path / "pwned").exists()


def test_wrapper_passes_shellcheck(need: Callable[[str], str]) -> None:
    text = "#!/bin/bash\n#SBATCH -J x\n#SBATCH --array=0-1 # two\necho\n"
    for tasks in ([], [["a b", "c"], ["$x"]]):
        body = wrap(text, "/p/job.sh", ["a b", "c"], tasks=tasks)
        lint = subprocess.run(
            [need("shellcheck"), "-s", "sh", "-"],
            input=body,
            text=True,
            capture_output=True,
            check=False,
        )
        assert lint.returncode == 0, lint.stdout
        dash = subprocess.run([need("dash"), "-n"], input=body, text=True, check=False)
        assert dash.returncode == 0


def test_wrapper_without_condatainer_exits_127_with_one_line(
    tmp_path: Path, need: Callable[[str], str]
) -> None:
    body = wrap("#!/bin/sh\necho\n", "/p/job.sh", [], condatainer=str(tmp_path / "nope"))
    res = subprocess.run(
        [need("dash"), "-s"], input=body, text=True, capture_output=True, check=False
    )
    assert res.returncode == 127
    assert res.stdout == ""
    assert len(res.stderr.splitlines()) == 1 and "cannot run" in res.stderr


# --- prepare and sbatch ------------------------------------------------------------------------


def load(tmp_path: Path, text: str, *, writable: bool = False) -> script.Job:
    (tmp_path / "env.img").write_bytes(b"")
    path = tmp_path / "job.sh"
    path.write_text(text)
    old = os.getcwd()
    os.chdir(tmp_path)
    try:
        return script.load_job(str(path), {}, writable=writable)
    finally:
        os.chdir(old)


def prepare(job: script.Job, args: list[str], **kw: Any) -> submit.Submission:
    ctl = kw.pop("ctl", control.JobControl())
    return submit.prepare(
        job,
        args,
        ctl,
        control.script_options(job.header),
        cli_writable=kw.pop("cli_writable", False),
        cli_container=kw.pop("cli_container", {}),
        logs_dir=kw.pop("logs_dir", None),
        environ={},
    )


def test_prepare_a_script_with_the_header_submits_the_file(tmp_path: Path) -> None:
    job = load(tmp_path, reexec_header.insert("#!/bin/sh\n#DEP: env.img\necho\n"))
    logs = f"--output={tmp_path}/%x-%j.out"
    sub = prepare(job, ["a b"])
    assert sub.via == "header"
    assert sub.argv == ("sbatch", "--parsable", logs, str(tmp_path / "job.sh"), "a b")
    assert sub.env == {"CNT_SCRIPT": str(tmp_path / "job.sh")}
    assert sub.stdin is None
    assert sub.mkdirs == (str(tmp_path),)
    # Job flags travel as sbatch options, even with the header.
    sub = prepare(job, [], ctl=control.from_flags(cpu="3", name="n"))
    assert sub.via == "header" and sub.argv[2:4] == ("--cpus-per-task=3", "--job-name=n")
    # -w and container options cannot travel through the header: the wrapper carries them.
    sub = prepare(job, [], cli_writable=True)
    assert sub.via == "wrapper" and sub.stdin is not None and " -w " in sub.stdin
    sub = prepare(job, [], cli_container={"bind": ["/data"]})
    assert sub.via == "wrapper" and sub.stdin is not None and " --bind /data " in sub.stdin


def test_prepare_a_script_without_the_header_submits_a_wrapper(tmp_path: Path) -> None:
    job = load(tmp_path, "#!/bin/sh\n#DEP: env.img\n#SBATCH -n 1\n#SBATCH -o out/%j.log\necho\n")
    sub = prepare(job, ["x"], logs_dir=str(tmp_path / "logs"))
    assert sub.via == "wrapper"
    assert sub.argv == ("sbatch", "--parsable")  # the script has its own --output
    assert sub.stdin is not None and "#SBATCH -n 1\n" in sub.stdin
    assert f"run --local {tmp_path / 'job.sh'} x\n" in sub.stdin
    assert sub.mkdirs == (os.path.join(os.getcwd(), "out"),)  # relative: the submit directory


def test_prepare_uses_logs_dir(tmp_path: Path) -> None:
    job = load(tmp_path, "#!/bin/sh\n#DEP: env.img\necho\n")
    sub = prepare(job, [], logs_dir=str(tmp_path / "logs"), ctl=control.from_flags(error="e.txt"))
    assert f"--output={tmp_path}/logs/%x-%j.out" in sub.argv
    assert "--error=e.txt" in sub.argv
    assert sub.mkdirs == (str(tmp_path / "logs"), os.getcwd())


class FakeSbatch:
    """Stands in for sbatch through runner.run_hook: records calls, answers as told."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.rc, self.out, self.err = 0, "42\n", ""

    def __call__(self, argv: Any, **kw: Any) -> runner.Result:
        self.calls.append({"argv": tuple(argv), **kw})
        return runner.Result(tuple(argv), self.rc, self.out, self.err)


@pytest.fixture
def fake_sbatch(monkeypatch: pytest.MonkeyPatch) -> FakeSbatch:
    fake = FakeSbatch()
    monkeypatch.setattr(runner, "run_hook", fake)
    monkeypatch.setattr(runner, "require", lambda name: f"/usr/bin/{name}")
    return fake


def test_sbatch_returns_the_job_id_and_passes_cnt_script(
    fake_sbatch: FakeSbatch, tmp_path: Path
) -> None:
    sub = submit.Submission(
        script="/p/job.sh",
        via="header",
        argv=("sbatch", "--parsable", "/p/job.sh"),
        env={"CNT_SCRIPT": "/p/job.sh"},
        mkdirs=(str(tmp_path / "logs" / "deep"),),
    )
    assert submit.sbatch(sub, {"PATH": "/bin"}, Reporter()) == "42"
    [call] = fake_sbatch.calls
    assert call["env"] == {"PATH": "/bin", "CNT_SCRIPT": "/p/job.sh"}
    assert call["input"] is None
    assert (tmp_path / "logs" / "deep").is_dir()


def test_sbatch_refusal_is_an_error_with_its_words(fake_sbatch: FakeSbatch) -> None:
    fake_sbatch.rc, fake_sbatch.out, fake_sbatch.err = 1, "", "sbatch: error: Invalid partition\n"
    sub = submit.Submission(
        script="/p/job.sh", via="wrapper", argv=("sbatch", "--parsable"), stdin="#!/bin/sh\n"
    )
    with pytest.raises(CondatainerError, match=r"refused /p/job\.sh: sbatch: error: Invalid"):
        submit.sbatch(sub, {}, Reporter())
    with pytest.raises(CondatainerError) as err:
        submit.sbatch(sub, {}, Reporter(), auto=True)
    assert err.value.hint is not None and "run --local /p/job.sh" in err.value.hint


def test_run_submit_prints_only_the_job_id(
    tmp_path: Path,
    fake_sbatch: FakeSbatch,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "job.sh").write_text("#!/bin/sh\n#SBATCH -J x\necho\n")
    monkeypatch.setattr(runner, "which", lambda name: None)
    monkeypatch.setattr(scheduler, "probe", lambda environ: READY)
    monkeypatch.setattr(launch, "plan_for", lambda req, cfg, **_: Plan(command=()))
    assert cli.main(["run", "--submit", "-c", "2", "--afterok", "7:8", "job.sh", "-c", "x"]) == 0
    assert capsys.readouterr().out == "42\n"
    [call] = fake_sbatch.calls
    assert call["argv"] == (
        "sbatch",
        "--parsable",
        "--cpus-per-task=2",
        "--dependency=afterok:7:8",
        f"--output={tmp_path}/%x-%j.out",
    )
    assert f'exec "$__cnt" run --local {tmp_path / "job.sh"} -c x\n' in call["input"]


def test_cli_submit_with_local_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "job.sh").write_text("#!/bin/sh\necho\n")
    assert cli.main(["run", "--submit", "--local", "job.sh"]) == 2


def test_scheduler_only_flags_refused_for_a_run_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "job.sh").write_text("#!/bin/sh\necho\n")
    assert cli.main(["run", "--local", "--afterok", "5", "job.sh"]) == 2
    err = capsys.readouterr().err
    assert "--afterok: only a scheduler can do that" in err and "hint:" in err


# --- condatainer header [--insert] -------------------------------------------------------------


def test_header_prints_the_header(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["header"]) == 0
    assert capsys.readouterr().out == reexec_header.text()


def test_header_insert_in_place_idempotent_keeps_mode_bytes_and_symlink(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    real = tmp_path / "real.sh"
    original = b"#!/bin/bash\n#SBATCH -J x\n#DEP: env.img\necho \xff\xfe\n"
    real.write_bytes(original)
    real.chmod(0o751)
    link = tmp_path / "link.sh"
    link.symlink_to(real)
    assert cli.main(["header", "--insert", str(link)]) == 0
    assert "header inserted" in capsys.readouterr().out
    once = real.read_bytes()
    assert link.is_symlink() and oct(real.stat().st_mode & 0o777) == oct(0o751)
    assert once.startswith(b"#!/bin/bash\n#SBATCH -J x\n#DEP: env.img\n# >>> condatainer header")
    assert once.endswith(b"# <<< condatainer header <<<\necho \xff\xfe\n")
    assert cli.main(["header", "--insert", str(link)]) == 0
    assert "already up to date" in capsys.readouterr().out
    assert real.read_bytes() == once


def test_header_insert_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["header", "--insert", str(tmp_path / "nope.sh")]) == 2
    assert "no such script" in capsys.readouterr().err
