"""The command line explains itself: parser errors in the one error format (with "did you
mean" and the subcommand's help as the hint), -q/-v before or after the command, examples in
every --help, --json for doctor and config show, and the man page generated from the parser."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from condatainer import cli, examples, manpage

Run = tuple[int, str, str]


def run(capsys: pytest.CaptureFixture[str], *args: str) -> Run:
    code = cli.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def error(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[str, str]:
    """The error and hint lines of a command line that must be refused with exit 2."""
    code, out, err = run(capsys, *args)
    assert code == 2, err
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 2, err
    assert lines[0].startswith("condatainer: error: ") and lines[1].startswith("hint: "), err
    return lines[0].removeprefix("condatainer: error: "), lines[1].removeprefix("hint: ")


@pytest.mark.parametrize(
    ("args", "message", "hint"),
    [
        (["overlya"], "'overlya' is not a condatainer command; did you mean 'overlay'?",
         "condatainer overlay --help"),
        (["xyzzy"], "'xyzzy' is not a condatainer command", "condatainer --help"),
        (["o", "x.img", "-s", "10", "GB"], "o: unexpected 'GB' after -s 10",
         "sizes take no space: -s 10G"),
        (["overlay", "resize", "x.img", "--size", "4", "g"], "overlay resize: unexpected 'g' after"
         " --size 4", "sizes take no space: --size 4G"),
        (["run"], "run: missing script", "condatainer run --help"),
        (["overlay", "craete"], "overlay: 'craete' is not an action of overlay; did you mean"
         " 'create'?", "condatainer overlay create --help"),
        (["overlay", "resize", "x.img", "--sise", "2G"], "overlay resize: unknown option"
         " '--sise'; did you mean '--size'?", "condatainer overlay resize --help"),
        (["overlay", "resize", "x.img", "-s"], "overlay resize: -s/--size needs a value",
         "condatainer overlay resize --help"),
        (["overlay", "resize"], "overlay resize: missing image, -s/--size",
         "condatainer overlay resize --help"),
        (["init", "bsh"], "init: 'bsh' is not a valid shell (one of bash, zsh, fish); did you"
         " mean 'bash'?", "condatainer init --help"),
        (["overlay", "info", "a.img", "b.img"], "overlay info: unexpected argument 'b.img'",
         "condatainer overlay info --help"),
        (["config", "show", "--jsn"], "config show: unknown option '--jsn'; did you mean"
         " '--json'?", "condatainer config show --help"),
    ],
)  # fmt: skip
def test_parser_errors_in_the_one_format(
    capsys: pytest.CaptureFixture[str], args: list[str], message: str, hint: str
) -> None:
    assert error(capsys, *args) == (message, hint)


def test_the_program_name_is_never_doubled(capsys: pytest.CaptureFixture[str]) -> None:
    for args in (["overlya"], ["run"], ["overlay", "resize", "x"]):
        message, _ = error(capsys, *args)
        assert not message.startswith("condatainer") and "condatainer:" not in message


def test_run_takes_its_script_arguments_as_they_are(capsys: pytest.CaptureFixture[str]) -> None:
    """`run` needs only its script: a missing script is the one complaint, and words after it
    (options of the script included) are the script's."""
    message, _ = error(capsys, "run", "--local")
    assert message == "run: missing script"


def test_quiet_and_verbose_before_or_after_the_command(capsys: pytest.CaptureFixture[str]) -> None:
    parser = cli.build_parser()
    for argv in (["-q", "doctor"], ["doctor", "-q"], ["doctor", "--quiet"]):
        ns = parser.parse_args(argv)
        assert ns.quiet and not ns.verbose
    ns = parser.parse_args(["-v", "overlay", "check", "x.img"])
    assert ns.verbose and not ns.quiet
    ns = parser.parse_args(["overlay", "check", "x.img"])
    assert not ns.quiet and not ns.verbose
    # A command's own words are its own: after exec's command, -v belongs to that command.
    ns = parser.parse_args(["exec", "-o", "x.img", "python", "-v"])
    assert ns.cmd == ["python", "-v"] and not ns.verbose


def test_quiet_drops_notices(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image = tmp_path / "x.img"
    assert run(capsys, "o", str(image), "-s", "64M", "-t", "small")[2].startswith(
        "condatainer: note: -t/--type is deprecated"
    )
    image.unlink()
    code, out, err = run(capsys, "-q", "o", str(image), "-s", "64M", "-t", "small")
    assert code == 0 and err == "" and out.startswith("created ")


def test_every_command_has_examples_in_its_help(capsys: pytest.CaptureFixture[str]) -> None:
    parser = cli.build_parser()
    commands = examples.commands(parser)
    assert {"", "o", "overlay resize", "config show", "base pull", "doctor"} <= set(commands)
    missing = sorted(c for c in commands if not examples.EXAMPLES.get(c))
    assert missing == []
    assert set(examples.EXAMPLES) <= set(commands), "examples for commands that do not exist"
    for spelling in commands:
        code, out, _ = run(capsys, *spelling.split(), "--help")
        assert code == 0
        assert "\nexamples:\n" in out, spelling
        for line, _what in examples.EXAMPLES[spelling]:
            assert f"\n  {line}\n" in out, (spelling, line)


def test_doctor_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "doctor", "--json")
    data = json.loads(out)
    assert code == (0 if data["ok"] else 1)
    names = [c["name"] for c in data["checks"]]
    assert "config" in names and "e2fsprogs" in names
    for check in data["checks"]:
        assert set(check) == {"name", "status", "ok", "required", "detail", "fix"}
        assert check["status"] in ("ok", "warn", "FAIL")
        assert (check["fix"] is None) or not check["ok"]


def test_config_show_json(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CNT_GPU", "off")
    for argv in (["config", "show", "--json"], ["config", "--json"]):
        code, out, _ = run(capsys, *argv)
        assert code == 0
        data = json.loads(out)
        assert data["gpu"] == {"value": "off", "source": "env CNT_GPU"}
        assert data["runtime"] == {"value": "auto", "source": "default"}
        assert data["channels"]["value"] == ["conda-forge"]
        assert data["base_image"]["value"] is None


def test_the_man_page_is_made_from_the_parser(tmp_path: Path, need: object) -> None:
    page = manpage.render()
    assert page.startswith('.TH CONDATAINER 1 "" "condatainer ')
    for spelling in examples.commands(cli.build_parser()):
        if spelling:
            assert f"\n.SS {manpage._roff(spelling)}\n" in page, spelling
    path = tmp_path / "condatainer.1"
    path.write_text(page)
    groff = shutil.which("groff")
    assert groff is not None, "groff (man-db's groff-base) is needed"
    check = subprocess.run(
        [groff, "-man", "-Tutf8", "-ww", "-z", str(path)], capture_output=True, text=True
    )
    assert check.returncode == 0 and check.stderr == "", check.stderr
    shown = subprocess.run(
        ["man", "-l", str(path)],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "MANWIDTH": "100", "MAN_KEEP_FORMATTING": ""},
        check=True,
    ).stdout
    for text in ("overlay resize", "condatainer doctor --json", "NO_COLOR", "EXIT STATUS"):
        assert text in shown, text
    assert "-s, --size SIZE" in shown


def test_roff_text_cannot_become_a_request() -> None:
    assert manpage._roff(".so /etc/passwd\n'x") == "\\&.so /etc/passwd\n\\&'x"
    assert manpage._roff("a\\b -c") == "a\\eb \\-c"
