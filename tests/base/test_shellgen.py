"""shellgen: every inserted value is one inert shell word in bash, zsh, dash and fish, byte for
byte (fish through its own quoting, `quote_fish`, used for every `*.fish.j2`).

Also: StrictUndefined, the `Raw` exception, lazy jinja2, and the rendered templates of this
module's family (rcblock, header) checked by `bash -n`/`zsh -n`/`dash -n`, shellcheck and golden
files in tests/shell/golden/ (`CNT_UPDATE_GOLDEN=1 pytest ...` rewrites them).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jinja2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from condatainer import shellgen
from condatainer.errors import ShellError
from condatainer.shellgen import Raw, quote
from tests.shell.golden_files import GOLDEN, assert_matches_golden

ROOT = Path(__file__).resolve().parents[2]
HOSTILE = "'\";&&e-$ èрт🚒中-j"

# Templates of the rcblock/header family, rendered with a fixed (hostile) context.
RENDERED: dict[str, tuple[str, str, dict[str, Any]]] = {
    "rcblock.bash": ("rcblock", "bash", {"hook": f"/home/{HOSTILE}/.local/share/cnt/hook.bash"}),
    "rcblock.zsh": ("rcblock", "zsh", {"hook": f"/home/{HOSTILE}/.local/share/cnt/hook.zsh"}),
    "rcblock.fish": ("rcblock", "fish", {"hook": f"/home/{HOSTILE}/.local/share/cnt/hook.fish"}),
    "header.sh": ("header", "sh", {}),
}
CHECKER = {
    "bash": ["bash", "-n"],
    "zsh": ["zsh", "-n"],
    "sh": ["dash", "-n"],
    "fish": ["fish", "-n"],
}
SHELLCHECK_DIALECT = {"bash": "bash", "sh": "sh"}  # shellcheck has no zsh

VALUES = [
    HOSTILE,
    "",
    " ",
    "plain",
    "two words",
    "line one\nline two",
    "trailing newlines\n\n",
    "`id`",
    "$(id)",
    "${HOME}",
    "'",
    "''",
    '"',
    "\\",
    "\\'",
    "a'b'c",
    "=ls",  # zsh EQUALS expansion if left bare
    "~",
    "~root",
    "*",
    "[a]",
    "!!",
    "!$",
    "%1",
    "-n",
    "--",
    "a\tb",
    "\r",
    "#not a comment",
    "a;b|c&d",
    "x=y",
    "{a,b}",
    "^foo",
    "\x01\x7f",
    "üñíçødé",
]


def run_shell(argv: Sequence[str], script: str) -> bytes:
    proc = subprocess.run(
        [*argv, "-c", script],
        capture_output=True,
        check=False,
        timeout=60,
        env={"PATH": os.environ["PATH"], "HOME": os.environ["HOME"]},
    )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    return proc.stdout


SHELLS = {
    "bash": ["bash", "--norc", "--noprofile"],
    "zsh": ["zsh", "-f"],
    "dash": ["dash"],
}


def echo_back_script(values: Sequence[str]) -> str:
    """A script that assigns each value, then prints them NUL-separated."""
    template = shellgen.environment().from_string(
        "{% for v in values %}\nv{{ loop.index }}={{ v }}\n{% endfor %}\n"
        "printf '%s\\0'{% for v in values %} \"$v{{ loop.index }}\"{% endfor %}\n\n"
    )
    return template.render(values=values)


@pytest.fixture(params=sorted(SHELLS))
def shell(request: pytest.FixtureRequest, need: Callable[[str], str]) -> list[str]:
    argv = SHELLS[request.param]
    need(argv[0])
    return argv


# --------------------------------------------------------------------------------------------
# Quoting


def test_hostile_values_round_trip_byte_exact(shell: list[str]) -> None:
    out = run_shell(shell, echo_back_script(VALUES))
    assert out == b"".join(v.encode() + b"\0" for v in VALUES)


def test_values_as_command_arguments_stay_single_words(shell: list[str]) -> None:
    script = (
        shellgen.environment()
        .from_string("printf '[%s]\\n'{% for v in values %} {{ v }}{% endfor %}\n")
        .render(values=VALUES)
    )
    out = run_shell(shell, script)
    assert out == b"".join(b"[" + v.encode() + b"]\n" for v in VALUES)


_TEXT = st.text(
    alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\0"), max_size=40
)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(values=st.lists(_TEXT, min_size=1, max_size=20))
def test_any_text_round_trips(shell: list[str], values: list[str]) -> None:
    out = run_shell(shell, echo_back_script(values))
    assert out == b"".join(v.encode() + b"\0" for v in values)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("plain", "plain"),
        ("/a/b-c_d.e:f,g@h%i+j", "/a/b-c_d.e:f,g@h%i+j"),
        ("", "''"),
        ("two words", "'two words'"),
        ("it's", "'it'\"'\"'s'"),
        ("=ls", "'=ls'"),
        ("a=b", "a=b"),
        ("é", "'é'"),
        (Path("/x y"), "'/x y'"),
        (42, "42"),
        (Raw("$HOME/x"), "$HOME/x"),
    ],
)
def test_quote(value: Any, expected: str) -> None:
    assert quote(value) == expected


@pytest.mark.parametrize("value", [["a"], ("a",), {"a": 1}, None, True, b"bytes", 1.5])
def test_values_that_are_not_words_are_refused(value: Any) -> None:
    with pytest.raises(TypeError):
        shellgen.environment().from_string("x={{ v }}").render(v=value)


def test_nul_is_refused() -> None:
    with pytest.raises(ValueError, match="NUL"):
        quote("a\0b")


def test_raw_passes_through_but_does_not_spread() -> None:
    env = shellgen.environment()
    assert env.from_string("{{ r }}").render(r=Raw("a b; c")) == "a b; c"
    # Anything computed from a Raw is a plain str again, and quoted.
    assert env.from_string("{{ r ~ '!' }}").render(r=Raw("a b")) == "'a b!'"
    assert env.from_string("{{ r | upper }}").render(r=Raw("a b")) == "'A B'"


def test_literals_in_templates_are_quoted_too() -> None:
    assert shellgen.environment().from_string("{{ 'a b' }}").render() == "'a b'"


def test_undefined_variable_raises() -> None:
    with pytest.raises(jinja2.UndefinedError):
        shellgen.environment().from_string("x={{ nope }}").render()
    with pytest.raises(jinja2.UndefinedError):
        shellgen.render("rcblock", "bash")  # needs `hook`


def test_environment_settings() -> None:
    env = shellgen.environment()
    assert env is shellgen.environment()  # the one environment
    assert env.undefined is jinja2.StrictUndefined
    assert env.keep_trailing_newline and env.trim_blocks and env.lstrip_blocks
    assert env.autoescape is False


def test_unknown_shell_and_artifact_are_shell_errors() -> None:
    with pytest.raises(ShellError, match="tcsh"):
        shellgen.render("rcblock", "tcsh", hook="/x")
    with pytest.raises(ShellError, match="no-such-artifact"):
        shellgen.render("no-such-artifact", "bash")
    assert shellgen.SHELLS == ("bash", "zsh", "fish")


# --------------------------------------------------------------------------------------------
# fish


def fish_echo_back_script(values: Sequence[str]) -> str:
    """The fish counterpart of `echo_back_script`, through the fish environment."""
    template = shellgen.environment("fish").from_string(
        "{% for v in values %}\nset v{{ loop.index }} {{ v }}\n{% endfor %}\n"
        "printf '%s\\0'{% for v in values %} \"$v{{ loop.index }}\"{% endfor %}\n\n"
    )
    return template.render(values=values)


def run_fish(script: str) -> bytes:
    return run_shell(["fish", "--no-config"], script)


def test_fish_values_round_trip_byte_exact(need: Callable[[str], str]) -> None:
    need("fish")
    values = [*VALUES, "%self", "a\\", "\\'", "{a,b}", "~", "(echo x)", "$fish_pid"]
    assert run_fish(fish_echo_back_script(values)) == b"".join(v.encode() + b"\0" for v in values)


def test_fish_values_as_arguments_stay_single_words_on_one_line(
    need: Callable[[str], str],
) -> None:
    need("fish")
    values = [*VALUES, "%self", "(echo x)"]
    line = (
        shellgen.environment("fish")
        .from_string("printf '[%s]\\n'{% for v in values %} {{ v }}{% endfor %}")
        .render(values=values)
    )
    assert "\n" not in line  # one command, one line: the hook runs activation code line by line
    assert run_fish(line + "\n") == b"".join(b"[" + v.encode() + b"]\n" for v in values)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(values=st.lists(_TEXT, min_size=1, max_size=20))
def test_fish_any_text_round_trips(need: Callable[[str], str], values: list[str]) -> None:
    need("fish")
    assert run_fish(fish_echo_back_script(values)) == b"".join(v.encode() + b"\0" for v in values)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("plain", "plain"),
        ("/a/b-c_d.e:f,g@h+j", "/a/b-c_d.e:f,g@h+j"),
        ("%self", "'%self'"),
        ("", "''"),
        ("it's", "'it\\'s'"),
        ("a\\b", "'a\\\\b'"),
        ("one\ntwo", "'one'\\n'two'"),
        (42, "42"),
        (Raw("$HOME/x"), "$HOME/x"),
    ],
)
def test_quote_fish(value: Any, expected: str) -> None:
    assert shellgen.quote_fish(value) == expected


def test_fish_templates_use_fish_quoting() -> None:
    assert shellgen.environment("fish") is not shellgen.environment()
    text = shellgen.render("rcblock", "fish", hook="/it's/hook.fish")
    assert "source '/it\\'s/hook.fish'" in text


def test_importing_does_not_import_jinja2() -> None:
    code = (
        "import sys\n"
        "import condatainer.shellgen, condatainer.hook.rcfile, condatainer.hook.trust, "
        "condatainer.jobs.directives\n"
        "assert 'jinja2' not in sys.modules, 'jinja2 imported'\n"
        "assert 'markupsafe' not in sys.modules, 'markupsafe imported'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr


# --------------------------------------------------------------------------------------------
# Rendered templates: syntax, shellcheck, golden files


def rendered(name: str) -> str:
    artifact, shell, context = RENDERED[name]
    return shellgen.render(artifact, shell, **context)


@pytest.mark.parametrize("name", sorted(RENDERED))
def test_rendered_template_parses(name: str, need: Callable[[str], str], tmp_path: Path) -> None:
    shell = RENDERED[name][1]
    argv = CHECKER[shell]
    need(argv[0])
    script = tmp_path / name
    script.write_text(rendered(name))
    proc = subprocess.run([*argv, str(script)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize(
    "name", sorted(n for n in RENDERED if RENDERED[n][1] in SHELLCHECK_DIALECT)
)
def test_rendered_template_passes_shellcheck(
    name: str, need: Callable[[str], str], tmp_path: Path
) -> None:
    shellcheck = need("shellcheck")
    script = tmp_path / name
    script.write_text(rendered(name))
    dialect = SHELLCHECK_DIALECT[RENDERED[name][1]]
    proc = subprocess.run(
        [shellcheck, "-s", dialect, str(script)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("name", sorted(RENDERED))
def test_golden(name: str) -> None:
    """Rendered output is committed; a template change shows up as a reviewed diff."""
    assert_matches_golden(name, rendered(name), __file__)


def test_every_golden_file_has_a_template() -> None:
    from tests.shell.test_hook_golden import RENDERED as HOOK_RENDERED

    assert sorted(p.name for p in GOLDEN.iterdir()) == sorted([*RENDERED, *HOOK_RENDERED])
