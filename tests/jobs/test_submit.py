"""submit: when `run` submits, what it refuses, the sbatch call and wrapper it builds (no SLURM).

The wrapper is run in real dash with a recording `condatainer`, and passes shellcheck; sbatch is
replaced through runner.run_hook.  The real cluster is exercised in tests/slurm.
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
from condatainer.jobs import directives, script, submit
from condatainer.jobs import header as reexec_header
from condatainer.run import launch
from condatainer.run.plan import Plan

HOSTILE = "'\";&&e-$ èрт🚒中-j"


def header(text: str) -> directives.Directives:
    return directives.parse(text, "job.sh")


SBATCH = header("#!/bin/sh\n#SBATCH -J x\necho\n")
PLAIN = header("#!/bin/sh\necho\n")


@pytest.mark.parametrize(
    ("env", "flags", "sbatch_on_path", "cfg", "expected"),
    [
        ({}, {"submit": True}, False, "never", True),
        ({}, {}, True, "auto", True),
        ({}, {}, False, "auto", False),  # auto needs sbatch
        ({}, {}, True, "never", False),
        ({}, {"local": True}, True, "auto", False),
        ({}, {"reexec": True}, True, "auto", False),  # the header's call never queues
        ({"SLURM_JOB_ID": "7"}, {"submit": True}, True, "auto", False),  # no resubmission loop
        ({"IN_CONDATAINER": "1"}, {}, True, "auto", False),
    ],
)
def test_wanted(
    monkeypatch: pytest.MonkeyPatch,
    env: dict[str, str],
    flags: dict[str, bool],
    sbatch_on_path: bool,
    cfg: str,
    expected: bool,
) -> None:
    monkeypatch.setattr(runner, "which", lambda name: "/usr/bin/sbatch" if sbatch_on_path else None)
    kw = {"submit": False, "local": False, "reexec": False, **flags}
    got = submit.wanted(SBATCH, config.Config(submit=cfg), env, Reporter(), **kw)  # type: ignore[arg-type]
    assert got is expected


def test_wanted_needs_sbatch_lines_for_auto(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner, "which", lambda name: "/usr/bin/sbatch")
    assert not submit.wanted(
        PLAIN, config.Config(), {}, Reporter(), submit=False, local=False, reexec=False
    )


def test_submit_and_local_together_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="contradict"):
        submit.wanted(
            SBATCH, config.Config(), {}, Reporter(), submit=True, local=True, reexec=False
        )


def test_explicit_submit_inside_a_job_says_it_runs_here(capsys: pytest.CaptureFixture[str]) -> None:
    submit.wanted(
        SBATCH,
        config.Config(),
        {"SLURM_JOB_ID": "7"},
        Reporter(),
        submit=True,
        local=False,
        reexec=False,
    )
    assert "inside a SLURM job (SLURM_JOB_ID=7)" in capsys.readouterr().err


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
        ("#SBATCH --ntasks-per-node=2", {}, "#SBATCH --ntasks-per-node=2"),
        ("#SBATCH -N 2-4", {}, "#SBATCH -N 2-4"),
        ("#SBATCH -n 1\n#SBATCH -N 1\n#SBATCH --ntasks-per-node=1", {}, None),
        ("#SBATCH -c 8 --mem=4G", {}, None),
        ("#SBATCH --comment='-a 1'", {}, None),  # quoted: a value, not an option
        ("", {"SBATCH_ARRAY_INX": "0-9"}, "SBATCH_ARRAY_INX=0-9"),
    ],
)
def test_parallelism(lines: str, env: dict[str, str], why: str | None) -> None:
    assert submit.parallelism(header(f"#!/bin/sh\n{lines}\necho\n"), env) == why


def test_sbatch_lines_are_the_honoured_ones_verbatim() -> None:
    text = (
        "#!/bin/bash\r\n#SBATCH -J a   # name\n  #SBATCH -n 9\n#SBATCHX\n#DEP: e.img\n"
        "#SBATCH\t--mem=1G\necho\n#SBATCH -n 8\n"
    )
    assert submit.sbatch_lines(text) == ["#SBATCH -J a   # name", "#SBATCH\t--mem=1G"]


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


def test_wrapper_runs_condatainer_with_every_word_intact(
    tmp_path: Path, recorder: tuple[Path, Path], need: Callable[[str], str]
) -> None:
    fake, log = recorder
    script = str(tmp_path / f"{HOSTILE}.sh")
    args = [HOSTILE, "a b", "", "-w", "--", "$(touch pwned)"]
    text = f"#!/usr/bin/env python3\n#SBATCH -J x # c\n#SBATCH --output='{HOSTILE}'\nprint()\n"
    body = submit.wrapper(text, script, args, writable=True, condatainer=str(fake))
    assert body.startswith("#!/bin/sh\n#SBATCH --job-name=")
    assert f"#SBATCH -J x # c\n#SBATCH --output='{HOSTILE}'\n" in body
    for shell in ("dash", "bash"):
        res = subprocess.run(
            [need(shell), "-s"],
            input=body,
            text=True,
            cwd=tmp_path,
            capture_output=True,
            check=False,
        )
        assert res.returncode == 5, res.stderr
        argv = log.read_text().split("\0")[:-1]
        assert argv == ["run", "--local", "-w", script, *args]
    assert not (tmp_path / "pwned").exists()


def test_wrapper_passes_shellcheck(need: Callable[[str], str]) -> None:
    text = "#!/bin/bash\n#SBATCH -J x\n#SBATCH --array=0-1 # two\necho\n"
    body = submit.wrapper(
        text, "/p/job.sh", ["a b", "c"], writable=False, condatainer="/opt/bin/condatainer"
    )
    lint = subprocess.run(
        [need("shellcheck"), "-s", "sh", "-"],
        input=body,
        text=True,
        capture_output=True,
        check=False,
    )
    assert lint.returncode == 0, lint.stdout
    assert subprocess.run([need("dash"), "-n"], input=body, text=True, check=False).returncode == 0


def test_wrapper_without_condatainer_exits_127_with_one_line(
    tmp_path: Path, need: Callable[[str], str]
) -> None:
    body = submit.wrapper(
        "#!/bin/sh\necho\n", "/p/job.sh", [], writable=False, condatainer=str(tmp_path / "nope")
    )
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


def test_prepare_a_script_with_the_header_submits_the_file(tmp_path: Path) -> None:
    job = load(tmp_path, reexec_header.insert("#!/bin/sh\n#DEP: env.img\necho\n"))
    sub = submit.prepare(job, ["a b"], cli_writable=False)
    assert sub.via == "header"
    assert sub.argv == ("sbatch", "--parsable", str(tmp_path / "job.sh"), "a b")
    assert sub.env == {"CNT_SCRIPT": str(tmp_path / "job.sh")}
    assert sub.stdin is None
    # -w cannot travel through the header: the wrapper carries it.
    sub = submit.prepare(job, [], cli_writable=True)
    assert sub.via == "wrapper" and sub.stdin is not None and " -w " in sub.stdin


def test_prepare_a_script_without_the_header_submits_a_wrapper(tmp_path: Path) -> None:
    job = load(tmp_path, "#!/bin/sh\n#DEP: env.img\n#SBATCH -n 1\necho\n")
    sub = submit.prepare(job, ["x"], cli_writable=False)
    assert sub.via == "wrapper"
    assert sub.argv == ("sbatch", "--parsable")
    assert sub.stdin is not None and "#SBATCH -n 1\n" in sub.stdin
    assert f"run --local {tmp_path / 'job.sh'} x\n" in sub.stdin


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


def test_sbatch_returns_the_job_id_and_passes_cnt_script(fake_sbatch: FakeSbatch) -> None:
    sub = submit.Submission(
        script="/p/job.sh",
        via="header",
        argv=("sbatch", "--parsable", "/p/job.sh"),
        env={"CNT_SCRIPT": "/p/job.sh"},
    )
    assert submit.sbatch(sub, {"PATH": "/bin"}, Reporter()) == "42"
    [call] = fake_sbatch.calls
    assert call["env"] == {"PATH": "/bin", "CNT_SCRIPT": "/p/job.sh"}
    assert call["input"] is None


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
    monkeypatch.setattr(launch, "plan_for", lambda req, cfg, environ=None: Plan(command=()))
    assert cli.main(["run", "--submit", "job.sh", "arg"]) == 0
    assert capsys.readouterr().out == "42\n"
    [call] = fake_sbatch.calls
    assert call["argv"] == ("sbatch", "--parsable")
    assert f'exec "$__cnt" run --local {tmp_path / "job.sh"} arg\n' in call["input"]


def test_cli_submit_with_local_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "job.sh").write_text("#!/bin/sh\necho\n")
    assert cli.main(["run", "--submit", "--local", "job.sh"]) == 2


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
