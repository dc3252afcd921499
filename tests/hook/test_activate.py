"""activate: the decision (data), the rendered code (text), and the `_activate` output contract."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from condatainer import __version__, cli, config
from condatainer.hook import activate, launcher, pkgcache, rcfile, shims, trust
from tests.shell.hooklib import HOSTILE, REPO, listed_shims, make_image

EXCLUDE = config.DEFAULT_SHIM_EXCLUDE


@pytest.fixture
def image(tmp_path: Path, need: Callable[[str], str]) -> Path:
    need("mke2fs")
    need("debugfs")
    project = tmp_path / f"{HOSTILE} proj"
    project.mkdir()
    return make_image(project / "env.img", bins=("cnt-tool",), pkgs=("numpy",))


def decide(image: Path, **kw: object) -> activate.Outcome:
    args: dict[str, object] = {"autoload": "on", "exclude": EXCLUDE}
    args.update(kw)
    return activate.decide(str(image), str(image.parent), **args)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# Decisions


def test_allowed_image_is_entered(image: Path) -> None:
    trust.allow(image)
    outcome = decide(image)
    assert outcome.enter == activate.Enter(
        image=str(image),
        project=str(image.parent),
        shims=str(shims.shim_dir(image)),
        marker=f"(cnt:{HOSTILE} proj) ",
        record=activate.record_path(image),
        pkgs=str(pkgcache.installed_file(image)),
        bye="condatainer: env.img deactivated",
    )
    assert Path(outcome.enter.record).exists()
    assert listed_shims(outcome.enter.shims) == ["cnt-tool"]
    assert outcome.wait is None and outcome.told == ()
    assert outcome.messages == ("condatainer: env.img active (1 program)",)


def test_activation_lines_count_programs_and_can_be_turned_off(
    tmp_path: Path, need: Callable[[str], str]
) -> None:
    need("mke2fs")
    image = make_image(tmp_path / "env.img", bins=("a", "b", "bash", "c"))
    trust.allow(image)
    assert decide(image).messages == ("condatainer: env.img active (3 programs)",)
    quiet = decide(image, announce=False)
    assert quiet.messages == () and quiet.enter is not None and quiet.enter.bye == ""
    config.set_value("hook_messages", "off")
    status, _, err = run_command(image)
    assert (status, err) == (0, "")
    config.set_value("hook_messages", "on")
    status, _, err = run_command(image)
    assert (status, err) == (0, "condatainer: env.img active (3 programs)\n")


def test_activation_lines_show_a_hostile_name_as_text(
    tmp_path: Path, need: Callable[[str], str]
) -> None:
    need("mke2fs")
    project = tmp_path / "p"
    project.mkdir()
    image = make_image(project / "env.img")
    named = project / "a\x1b[31mb.img"
    os.link(image, named)
    assert activate.active_line(str(named), 0) == "condatainer: a?[31mb.img active (0 programs)"
    assert activate.bye_line(str(named)) == "condatainer: a?[31mb.img deactivated"


def test_not_allowed_image_gets_a_notice_and_a_record_to_wait_for(image: Path) -> None:
    outcome = decide(image)
    assert outcome.enter is None
    assert outcome.wait == activate.record_path(image) and not Path(outcome.wait).exists()
    assert outcome.told == ("notice",)
    assert "is not allowed" in outcome.messages[0]
    assert outcome.messages[1].startswith("hint: ") and "condatainer allow" in outcome.messages[1]
    again = decide(image, noticed=True)
    assert again.messages == () and again.told == () and again.wait == outcome.wait


def test_replaced_image_is_noticed_but_not_watched(image: Path) -> None:
    trust.allow(image)
    # Replaced the way people replace files (`mv new.img env.img`): another inode takes the
    # path.  (Delete-then-recreate may get the freed inode number back: see trust's docstring.)
    newer = image.with_name("newer.img")
    newer.write_bytes(image.read_bytes())
    newer.replace(image)
    assert trust.status(image) is trust.TrustStatus.REPLACED
    outcome = decide(image)
    assert outcome.enter is None and outcome.wait is None
    assert "replaced" in outcome.messages[0]


def test_autoload_off_and_a_vanished_image_do_nothing(image: Path, tmp_path: Path) -> None:
    trust.allow(image)
    assert decide(image, autoload="off") == activate.Outcome(str(image))
    gone = tmp_path / "gone.img"
    assert activate.decide(str(gone), str(tmp_path), autoload="on", exclude=EXCLUDE) == (
        activate.Outcome(str(gone))
    )


@pytest.mark.parametrize("allowed", [True, False])
def test_autoload_hint_tells_once_and_never_enters(image: Path, allowed: bool) -> None:
    if allowed:
        trust.allow(image)
    outcome = decide(image, autoload="hint")
    assert outcome.enter is None and outcome.told == ("notice",)
    assert "autoload: hint" in outcome.messages[0]
    assert any("condatainer allow" in line for line in outcome.messages) is not allowed
    assert decide(image, autoload="hint", noticed=True).messages == ()


def test_env_notes_are_shown_unless_already_noted(image: Path) -> None:
    trust.allow(image)
    Path(f"{image}.env").write_text("A=1\n#ENVNOTE:A=the answer\nB=$(two)\n")
    outcome = decide(image)
    assert outcome.messages == (
        "condatainer: env.img active (1 program)",
        "Overlay envs:",
        "A: the answer",
        "B: $(two)",
    )
    assert outcome.told == ("notes",)
    assert decide(image, noted=True).messages == ("condatainer: env.img active (1 program)",)


@pytest.mark.parametrize(
    ("project", "expected"),
    [
        ("/p/proj", "(cnt:proj) "),
        ("/p/proj/", "(cnt:proj) "),
        ("/", "(cnt:/) "),
        ("/p/a\nb\x1bc", "(cnt:a?b?c) "),
        (f"/p/{HOSTILE}", f"(cnt:{HOSTILE}) "),
    ],
)
def test_marker(project: str, expected: str) -> None:
    assert activate.marker(project) == expected


# --------------------------------------------------------------------------------------------
# Text


def test_render_is_the_template_and_is_cached(image: Path) -> None:
    trust.allow(image)
    outcome = decide(image)
    text = activate.render(outcome, "bash")
    assert text.startswith("_cnt_enter ") and text.count("\n") == 1
    cached = list((config.paths()["cache"] / "activate").iterdir())
    assert len(cached) == 1 and cached[0].read_text() == text
    assert activate.render(outcome, "bash") == text
    assert activate.render(outcome, "zsh") == text  # zsh's template says the same here
    assert len(list((config.paths()["cache"] / "activate").iterdir())) == 2
    waiting = activate.Outcome("/x y.img", wait="/rec", told=("notice",))
    assert activate.render(waiting, "zsh") == "_cnt_wait /rec\n_cnt_told notice '/x y.img'\n"


def test_render_does_not_import_jinja2_when_warm(image: Path) -> None:
    """A second activation (shims and text cached) never imports jinja2: it is a third of the
    cost of a cd into a project."""
    trust.allow(image)
    code = (
        "import sys\nfrom condatainer.hook import activate\n"
        f"o = activate.decide({str(image)!r}, {str(image.parent)!r}, autoload='on',"
        f" exclude={EXCLUDE!r})\n"
        "activate.render(o, 'bash')\n"
        "print('jinja2' in sys.modules)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    runs = [
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
        ).stdout
        for _ in range(2)
    ]
    assert runs == ["True\n", "False\n"]


def test_a_warm_activation_imports_nothing_heavy(image: Path) -> None:
    """What the hook's call imports, with a config file and warm caches: no jinja2, no yaml
    (the parsed config is cached), no dataclasses (inspect), no runpy.  Together they cost
    more than everything else a cd into a project does."""
    trust.allow(image)
    config.set_value("default_size", "20G")
    code = (
        "import sys\nfrom condatainer.hook.activate import main\n"
        f"main(['bash', '--', {str(image)!r}, {str(image.parent)!r}])\n"
        "heavy = ('jinja2', 'yaml', 'dataclasses', 'inspect', 'runpy')\n"
        "print(*sorted(m for m in heavy if m in sys.modules), file=sys.stderr)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    runs = [
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            cwd="/",
            env=env,
            check=True,
        )
        for _ in range(2)
    ]
    assert "yaml" in runs[0].stderr  # the first reads the config file with the parser
    assert runs[1].stderr.splitlines()[-1] == "" and "_cnt_enter" in runs[1].stdout


# --------------------------------------------------------------------------------------------
# The `_activate` command


def run_command(image: Path, **kw: object) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = activate.command("bash", str(image), str(image.parent), stdout=out, stderr=err, **kw)  # type: ignore[arg-type]
    return status, out.getvalue(), err.getvalue()


def test_command_prints_code_on_stdout_and_messages_on_stderr(image: Path) -> None:
    status, out, err = run_command(image)
    assert status == 0
    assert out.startswith("_cnt_wait ") and "_cnt_told notice" in out
    assert "is not allowed" in err


def test_command_failure_prints_nothing_on_stdout_and_one_error(image: Path) -> None:
    image.write_bytes(b"\0" * 4096)  # no longer an ext3 image
    trust.allow(image)
    status, out, err = run_command(image)
    assert (status, out) == (1, "")
    lines = err.splitlines()
    assert (
        lines[0].startswith("condatainer: ")
        and all(line.startswith("hint: ") for line in lines[1:])
        and len(lines) <= 2
    )


def test_command_with_a_broken_config_fails_in_one_line(image: Path) -> None:
    cfg = config.paths()["config"]
    cfg.parent.mkdir(parents=True)
    cfg.write_text("autoload: [\n")
    status, out, err = run_command(image)
    assert (status, out) == (1, "")
    assert err.startswith("condatainer: ") and err.count("\nhint: ") == 1


def test_unexpected_errors_are_one_line_too(image: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*_: object, **__: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(activate, "decide", boom)
    status, out, err = run_command(image)
    assert (status, out) == (1, "") and err == (
        f"condatainer: error: cannot activate {image}: RuntimeError: boom\n"
    )


def test_a_stale_hook_file_is_rewritten(image: Path) -> None:
    hook = rcfile.hook_path("bash")
    status, _, _ = run_command(image, hook_version="0.0.1-old")
    assert status == 0 and not hook.exists(), "no hook file (eval users): nothing is created"
    hook.parent.mkdir(parents=True, exist_ok=True)
    hook.write_text("# old hook\n")
    run_command(image, hook_version="0.0.1-old")
    assert hook.read_text().startswith("# condatainer shell hook for bash")
    hook.write_text("# old hook\n")
    run_command(image, hook_version=__version__)
    assert hook.read_text() == "# old hook\n", "the same version leaves it alone"


def test_cli_wiring_and_hidden_subcommand(image: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trust.allow(image)
    status = cli.main(
        [
            "_activate",
            "zsh",
            "--hook-version",
            __version__,
            "--noted",
            "--",
            str(image),
            str(image.parent),
        ]
    )
    out, err = capsys.readouterr()
    assert status == 0 and out.startswith("_cnt_enter ")
    assert err == "condatainer: env.img active (1 program)\n"
    cli.main(["--help"])
    assert "_activate" not in capsys.readouterr().out


def test_tab_never_offers_the_hidden_subcommand() -> None:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "_ARGCOMPLETE": "1",
        "_ARGCOMPLETE_IFS": "\n",
        "COMP_LINE": "condatainer ",
        "COMP_POINT": "12",
    }
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os, sys\nos.dup2(1, 8)\nfrom condatainer import cli\ncli.main([])",
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    offered = proc.stdout.split("\n")
    assert "init" in offered and "allow" in offered and "_activate" not in offered


def test_module_entry_parses_the_hooks_argv(monkeypatch: pytest.MonkeyPatch) -> None:
    """`python -m condatainer.hook.activate` takes exactly what the hook passes to `_activate`."""
    seen: list[tuple[object, ...]] = []

    def fake(shell: str, image: str, project: str, **kw: object) -> int:
        seen.append((shell, image, project, kw))
        return 0

    monkeypatch.setattr(activate, "command", fake)
    argv = ["zsh", "--hook-version", "9.9", "--noted", "--", "/p/-x.img", "/p"]
    assert activate.main(argv) == 0
    assert seen == [
        ("zsh", "/p/-x.img", "/p", {"hook_version": "9.9", "noticed": False, "noted": True})
    ]
    assert activate.main(["tcsh", "a", "b"]) == 2


def test_the_hooks_argv_runs_main(tmp_path: Path) -> None:
    # The words the hook file holds, run for real: a usage error proves main() parsed them.
    res = subprocess.run(
        [*launcher.activate_argv(), "tcsh", "a", "b"],
        cwd="/",
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert res.returncode == 2
    assert res.stderr.startswith("usage: python -m condatainer.hook.activate")
    assert launcher.activate_argv()[0] == sys.executable
