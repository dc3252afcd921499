"""control and sbatchopts: job flags checked, turned into sbatch options that win over the
script's own, and sbatch's option rules (getopt_long over sbatch 22.05's table).

tests/slurm/test_job_control.py submits the same combinations to the real sbatch and reads
back what it honoured (`scontrol show job`).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from condatainer.errors import DirectiveError, UsageError
from condatainer.jobs import control, directives, sbatchopts


def own(lines: str) -> sbatchopts.Reading:
    return control.script_options(directives.parse(f"#!/bin/sh\n{lines}\necho\n", "job.sh"))


def options(ctl: control.JobControl, lines: str = "", **kw: object) -> list[str]:
    opts = control.sbatch_options(
        ctl, own(lines), script="job.sh", logs_dir="/logs", environ=kw.get("environ", {})
    )
    return [o for o in opts if not o.startswith("--output=/logs/")]


# --- values -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "mb"),
    [("4G", 4096), ("8192M", 8192), ("8192", 8192), ("1.5G", 1536), ("4GB", 4096),
     ("4GiB", 4096), ("512k", 1), ("1T", 1024 * 1024), (" 2g ", 2048)],
)  # fmt: skip
def test_mem(text: str, mb: int) -> None:
    assert control.parse_mem(text) == mb


@pytest.mark.parametrize("text", ["", "0", "4X", "-1G", "G", "four"])
def test_bad_mem(text: str) -> None:
    with pytest.raises(UsageError, match="-m/--mem"):
        control.parse_mem(text)


@pytest.mark.parametrize(
    ("text", "slurm"),
    [
        ("90", "90"),  # sbatch's own forms pass as they are
        ("1:30:00", "1:30:00"),
        ("2-12", "2-12"),
        ("1-00:00:00", "1-00:00:00"),
        ("UNLIMITED", "UNLIMITED"),
        ("4d12h", "4-12:00:00"),  # CondaTainer's
        ("2h30m", "0-02:30:00"),
        ("45m", "0-00:45:00"),
        ("90s", "0-00:01:30"),
        ("36h", "1-12:00:00"),
    ],
)
def test_time(text: str, slurm: str) -> None:
    assert control.parse_time(text) == slurm


@pytest.mark.parametrize("text", ["", "0h", "2x", "h", "1:2:3:4", "-5"])
def test_bad_time(text: str) -> None:
    with pytest.raises(UsageError, match="-t/--time"):
        control.parse_time(text)


@pytest.mark.parametrize(
    ("text", "spec"),
    [("1", "1"), ("2", "2"), ("a100:2", "a100:2"), ("a100", "a100:1"), ("tesla", "tesla:1")],
)
def test_gpu(text: str, spec: str) -> None:
    assert control.parse_gpu(text).spec() == spec


@pytest.mark.parametrize("text", ["0", "a100:0", "", "a:b:c", "-1"])
def test_bad_gpu(text: str) -> None:
    with pytest.raises(UsageError, match="-g/--gpu"):
        control.parse_gpu(text)


def test_dependency_ids() -> None:
    ctl = control.from_flags(afterok=["12:34", "56"], afterany=["7_3"], afternotok=["9"])
    assert ctl.dependency == "afterok:12:34:56,afternotok:9,afterany:7_3"
    for bad in ("", "abc", "12:x", "1 2"):
        with pytest.raises(UsageError, match="--afterok"):
            control.from_flags(afterok=[bad])


def test_flags_as_given() -> None:
    ctl = control.from_flags(cpu="2", mem="1G", name="x", afterok=["1"])
    assert ctl.given == ("-c", "-m", "-n", "--afterok")
    assert ctl.needs_scheduler() == ["--afterok"]
    assert ctl.ignored_here() == ["-n"]
    with pytest.raises(UsageError, match="-c/--cpu"):
        control.from_flags(cpu="0")
    with pytest.raises(UsageError, match="--array-limit goes with --array"):
        control.from_flags(array_limit="2")


# --- --array FILE -----------------------------------------------------------------------------


def test_array_file_lines_are_split_like_a_shell_splits_words(tmp_path: Path) -> None:
    # The shape of a samples sheet as bioinformatics pipelines keep them (one sample per line,
    # a header comment, a blank line at the end; quoted names with spaces).
    sheet = tmp_path / "samples.txt"
    sheet.write_text(
        "# sample  condition\n"
        "s1 treated\n"
        "\n"
        "  's 2' \"ctrl group\"   # the second one\n"
        "s3 a#b $HOME `x` *\n"
        "\t\n"
    )
    tasks = control.read_array(str(sheet), None)
    assert tasks.tasks == (
        ("s1", "treated"),
        ("s 2", "ctrl group"),
        ("s3", "a#b", "$HOME", "`x`", "*"),  # nothing expanded, '#' inside a word kept
    )
    assert tasks.lines == (2, 4, 5)
    assert tasks.spec() == "0-2"
    assert control.read_array(str(sheet), 2).spec() == "0-2%2"
    one = tmp_path / "one.txt"
    one.write_text("x\n")
    assert control.read_array(str(one), None).spec() == "0"


@pytest.mark.parametrize(
    ("text", "message"),
    [("\n# only comments\n\n", "has no task lines"), ("a 'b\n", "no closing quotation")],
)
def test_bad_array_files(tmp_path: Path, text: str, message: str) -> None:
    sheet = tmp_path / "s.txt"
    sheet.write_text(text)
    with pytest.raises(UsageError, match=message):
        control.read_array(str(sheet), None)
    with pytest.raises(UsageError, match="no such file"):
        control.read_array(str(tmp_path / "nope.txt"), None)


def test_array_with_an_sbatch_array_in_the_script_is_an_error_naming_both(tmp_path: Path) -> None:
    sheet = tmp_path / "s.txt"
    sheet.write_text("a\nb\n")
    ctl = control.from_flags(array=str(sheet), array_limit="1")
    assert options(ctl) == ["--array=0-1%1"]
    with pytest.raises(DirectiveError) as err:
        options(ctl, "#SBATCH -J x\n#SBATCH --array=1-5")
    assert f"--array {sheet}" in err.value.message and "job.sh:3 (--array=1-5)" in err.value.message


# --- the command line wins over the script -----------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "lines", "expected"),
    [
        ({"cpu": "4"}, "#SBATCH -c 2", ["--cpus-per-task=4"]),
        ({"mem": "2G"}, "", ["--mem=2048M"]),
        ({"mem": "2G"}, "#SBATCH --mem=1G", ["--mem=2048M"]),
        # sbatch refuses --mem with --mem-per-cpu: the script's spelling, per CPU of a node.
        ({"mem": "2G"}, "#SBATCH --mem-per-cpu=100M", ["--mem-per-cpu=2048M"]),
        ({"mem": "2G"}, "#SBATCH --mem-per-cpu=1G\n#SBATCH -c 4", ["--mem-per-cpu=512M"]),
        ({"mem": "3G", "cpu": "2"}, "#SBATCH --mem-per-cpu=1G\n#SBATCH --ntasks-per-node=3",
         ["--cpus-per-task=2", "--mem-per-cpu=512M"]),
        ({"time": "2h"}, "#SBATCH -t 10", ["--time=0-02:00:00"]),
        ({"gpu": "tesla:1"}, "", ["--gpus-per-node=tesla:1"]),
        ({"gpu": "2"}, "#SBATCH --gpus-per-node=1", ["--gpus-per-node=2"]),
        ({"gpu": "2"}, "#SBATCH -G 1", ["--gpus=2"]),
        ({"gpu": "a100"}, "#SBATCH --gpus-per-task=1", ["--gpus-per-task=a100:1"]),
        # --gres: its GPUs replaced, its other resources kept
        ({"gpu": "tesla:1"}, "#SBATCH --gres=gpu:2,lscratch:10",
         ["--gres=gpu:tesla:1,lscratch:10"]),
        ({"gpu": "1"}, "#SBATCH --gres=lscratch:10", ["--gpus-per-node=1"]),
        ({"name": "n", "partition": "p", "account": "a"}, "#SBATCH -J old -p q",
         ["--job-name=n", "--partition=p", "--account=a"]),
        ({"output": "o.txt", "error": "e.txt"}, "#SBATCH -o x.out",
         ["--output=o.txt", "--error=e.txt"]),
    ],
)  # fmt: skip
def test_flags_in_the_scripts_own_spelling(
    flags: dict[str, str], lines: str, expected: list[str]
) -> None:
    assert options(control.from_flags(**flags), lines) == expected


def test_mem_with_a_per_gpu_script_is_an_error_naming_the_line() -> None:
    with pytest.raises(DirectiveError, match=r"job\.sh:2 \(--mem-per-gpu=4G\)"):
        options(control.from_flags(mem="8G"), "#SBATCH --mem-per-gpu=4G")


def test_logs_go_to_logs_dir_unless_an_output_is_set() -> None:
    ctl = control.JobControl()
    opts = control.sbatch_options(ctl, own(""), script="j", logs_dir="/logs", environ={})
    assert opts == ["--output=/logs/%x-%j.out"]
    assert (
        control.sbatch_options(ctl, own("#SBATCH -o a"), script="j", logs_dir="/l", environ={})
        == []
    )
    assert (
        control.sbatch_options(
            ctl, own(""), script="j", logs_dir="/l", environ={"SBATCH_OUTPUT": "x"}
        )
        == []
    )
    arr = control.sbatch_options(ctl, own("#SBATCH -a 1-2"), script="j", logs_dir="/l", environ={})
    assert arr == ["--output=/l/%x-%A_%a.out"]


# --- sbatch's option rules --------------------------------------------------------------------


def names(reading: sbatchopts.Reading) -> list[tuple[str, str | None]]:
    return [(o.name, o.value) for o in reading.options]


def test_sbatchopts_forms() -> None:
    r = sbatchopts.read(["-c4", "-c", "5", "--mem=1G", "--time", "10", "-HJname", "--exclusive"])
    assert names(r) == [
        ("cpus-per-task", "4"),
        ("cpus-per-task", "5"),
        ("mem", "1G"),
        ("time", "10"),
        ("hold", None),
        ("job-name", "name"),
        ("exclusive", None),
    ]
    assert r.problems == () and r.last("cpus-per-task") == r.options[1]


def test_sbatchopts_prefixes_aliases_and_errors() -> None:
    r = sbatchopts.read(["--job=x", "--tasks-per-node=2", "--cpus=3"])
    assert names(r) == [("job-name", "x"), ("ntasks-per-node", "2")]
    assert r.problems == ("option '--cpus' is ambiguous (--cpus-per-gpu, --cpus-per-task)",)
    assert sbatchopts.read(["--nosuch"]).problems == ("unrecognized option '--nosuch'",)
    assert sbatchopts.read(["-y"]).problems == ("invalid option -- 'y'",)
    assert sbatchopts.read(["--hold=1"]).problems == ("option '--hold' doesn't allow an argument",)
    assert sbatchopts.read(["-n", "2", "X"]).problems == (
        "Invalid directive found in batch script: X",
    )
    assert sbatchopts.read(["-J"]).problems == ("option requires an argument -- 'J'",)


def test_an_option_at_the_end_of_a_line_takes_its_value_from_the_next() -> None:
    reading = own("#SBATCH -J\n#SBATCH -n")
    assert names(reading) == [("job-name", "-n")]  # as sbatch reads it: one argument list
    assert reading.options[0].line == 2


def test_read_reports_lines() -> None:
    reading = own("#SBATCH -c 2\n#SBATCH --nope")
    assert reading.problems == ("line 3: unrecognized option '--nope'",)


def test_logs_dir_config_is_used_by_prepare(monkeypatch: pytest.MonkeyPatch) -> None:
    from condatainer import config

    monkeypatch.setenv("CNT_LOGS_DIR", "~/logs")
    assert config.load(os.environ).logs_dir == "~/logs"
