"""The sidecar `<image>.env`: parsing, errors with FILE:LINE, loading, banner, render round-trip."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from condatainer.errors import CondatainerError, EnvFileError
from condatainer.image import envfile
from condatainer.image.envfile import EnvFile

HOSTILE = "'\";&&e-$ èрт🚒中-j"


def test_sidecar_path_appends_suffix() -> None:
    assert envfile.sidecar_path("env.img") == Path("env.img.env")
    assert envfile.sidecar_path(Path("/a b/x.ext3")) == Path("/a b/x.ext3.env")


def test_parse_all_line_kinds() -> None:
    text = (
        "#WHATIS:Go toolchain env\n"
        "GOROOT=/ext3/env/go\n"
        "#ENVNOTE:GOROOT=Go installation path\n"
        "\n"
        "# a comment = with equals\n"
        "   # an indented comment\n"
        "GOPATH=/ext3/home/go\n"
    )
    env = envfile.parse(text, "x.env")
    assert env.vars == (("GOROOT", "/ext3/env/go"), ("GOPATH", "/ext3/home/go"))
    assert env.notes == {"GOROOT": "Go installation path"}
    assert env.whatis == "Go toolchain env"
    assert envfile.banner(env) == ["GOROOT: Go installation path", "GOPATH: /ext3/home/go"]


@pytest.mark.parametrize(
    "value",
    [
        '"quoted value"',
        "'single'",
        "$(rm -rf ~)",
        "`id`",
        "$HOME/x",
        "  leading and trailing  ",
        "a=b=c",
        HOSTILE,
        "",
        "#not a comment",
        "tab\there",
    ],
)
def test_values_are_kept_byte_exact(value: str) -> None:
    env = envfile.parse(f"KEY={value}\n", "x.env")
    assert env.vars == (("KEY", value),)


def test_crlf_line_endings_are_dropped_once() -> None:
    env = envfile.parse("A=1\r\nB=two words\r\n#ENVNOTE:A=note\r\n#WHATIS:w\r\n", "x.env")
    assert env.vars == (("A", "1"), ("B", "two words"))
    assert env.notes == {"A": "note"}
    assert env.whatis == "w"


def test_bom_and_indentation_are_ignored() -> None:
    env = envfile.parse("\ufeffA=1\n\t  B=2\n  #ENVNOTE:B=n\n", "x.env")
    assert env.vars == (("A", "1"), ("B", "2"))
    assert env.notes == {"B": "n"}


def test_later_definition_wins_in_first_position() -> None:
    env = envfile.parse("A=1\nB=2\nA=3\n", "x.env")
    assert env.vars == (("A", "3"), ("B", "2"))


def test_note_without_value_is_kept_but_not_shown() -> None:
    env = envfile.parse("#ENVNOTE:GHOST=nobody\nA=1\n", "x.env")
    assert env.notes == {"GHOST": "nobody"}
    assert envfile.banner(env) == ["A: 1"]


@pytest.mark.parametrize(
    ("text", "lineno", "cause"),
    [
        ("A=1\nno equals here\n", 2, "not a KEY=VALUE line"),
        ("1BAD=x\n", 1, "invalid variable name '1BAD'"),
        ("A B=x\n", 1, "invalid variable name"),
        ("KEY =x\n", 1, "invalid variable name 'KEY '"),
        ("export FOO=bar\n", 1, "invalid variable name 'export FOO'"),
        ("=x\n", 1, "invalid variable name ''"),
        ("\n\nCONDA_PREFIX=/x\n", 3, "CONDA_PREFIX is set by condatainer"),
        ("MAMBA_ROOT_PREFIX=/x\n", 1, "MAMBA_ROOT_PREFIX is set"),
        ("IN_CONDATAINER=0\n", 1, "IN_CONDATAINER is set"),
        ("CNT_OVERLAY=/x\n", 1, "CNT_OVERLAY is set"),
        ("CNT_CONDA_PREFIX=/x\n", 1, "CNT_CONDA_PREFIX is set"),
        ("APPTAINER_BIND=/x\n", 1, "APPTAINER_BIND is set"),
        ("SINGULARITY_CACHEDIR=/x\n", 1, "SINGULARITY_CACHEDIR is set"),
        ("#ENVNOTE:no equals\n", 1, "#ENVNOTE: line without '='"),
        ("#ENVNOTE:9X=text\n", 1, "#ENVNOTE: invalid variable name '9X'"),
        ("A=x\0y\n", 1, "NUL"),
    ],
)
def test_errors_name_file_and_line(text: str, lineno: int, cause: str) -> None:
    with pytest.raises(EnvFileError) as info:
        envfile.parse(text, "/p/env.img.env")
    assert str(info.value).startswith(f"/p/env.img.env:{lineno}: ")
    assert cause in str(info.value)
    assert info.value.hint


def test_hints_are_specific() -> None:
    with pytest.raises(EnvFileError) as info:
        envfile.parse("export FOO=bar\n", "f")
    assert "export" in (info.value.hint or "")
    with pytest.raises(EnvFileError) as info:
        envfile.parse("FOO = bar\n", "f")
    assert "spaces" in (info.value.hint or "")
    with pytest.raises(EnvFileError) as info:
        envfile.parse("CNT_OVERLAY=x\n", "f")
    assert "condatainer sets it" in (info.value.hint or "")


def test_lowercase_and_lookalike_names_are_allowed() -> None:
    env = envfile.parse("conda_prefix=x\nAPPTAINERX=1\nMYPATH=/opt/bin\n", "f")
    assert dict(env.vars) == {"conda_prefix": "x", "APPTAINERX": "1", "MYPATH": "/opt/bin"}


def test_path_is_refused_because_the_runtime_builds_it() -> None:
    with pytest.raises(EnvFileError, match="f:1: PATH is set by condatainer"):
        envfile.parse("PATH=/opt/bin\n", "f")


def test_load_missing_is_none(tmp_path: Path) -> None:
    assert envfile.load(tmp_path / "env.img") is None


def test_load_reads_the_sidecar(tmp_path: Path) -> None:
    image = tmp_path / HOSTILE / "env.img"
    image.parent.mkdir()
    envfile.sidecar_path(image).write_bytes(b'A=$(x) "y"\r\n#ENVNOTE:A=note\n')
    loaded = envfile.load(image)
    assert loaded is not None
    assert loaded.vars == (("A", '$(x) "y"'),)
    assert envfile.banner(loaded) == ["A: note"]


def test_load_errors_name_the_file(tmp_path: Path) -> None:
    image = tmp_path / "env.img"
    side = envfile.sidecar_path(image)
    side.write_bytes(b"A=1\nB=\xff\xfe\n")
    with pytest.raises(EnvFileError) as info:
        envfile.load(image)
    assert str(info.value).startswith(f"{side}:2: not valid UTF-8")
    side.write_text("A=1\nbad line\n")
    with pytest.raises(EnvFileError, match=r":2: not a KEY=VALUE line"):
        envfile.load(image)
    side.unlink()
    side.mkdir()
    with pytest.raises(EnvFileError, match="is a directory") as info:
        envfile.load(image)
    assert info.value.hint


def test_load_symlink_loop_is_unreadable(tmp_path: Path) -> None:
    image = tmp_path / "env.img"
    side = envfile.sidecar_path(image)
    side.symlink_to(side.name)
    with pytest.raises(EnvFileError, match="cannot read: Too many levels") as info:
        envfile.load(image)
    assert str(info.value).startswith(str(side))
    assert info.value.hint


def test_render_layout() -> None:
    text = envfile.render([("A", "1"), ("B", "x y")], {"B": "the b", "C": "orphan"}, "what")
    assert text == "#WHATIS:what\nA=1\nB=x y\n#ENVNOTE:B=the b\n#ENVNOTE:C=orphan\n"
    assert envfile.render({"A": "1"}) == "A=1\n"


@pytest.mark.parametrize(
    ("vars_", "notes", "whatis"),
    [
        ([("A", "a\nb")], {}, None),
        ([("A", "ends\r")], {}, None),
        ([("A", "x\0")], {}, None),
        ([("1A", "x")], {}, None),
        ([("CONDA_PREFIX", "x")], {}, None),
        ([("A", "x")], {"A": "two\nlines"}, None),
        ([], {}, "two\nlines"),
    ],
)
def test_render_refuses_what_a_line_cannot_hold(
    vars_: list[tuple[str, str]], notes: dict[str, str], whatis: str | None
) -> None:
    with pytest.raises(EnvFileError):
        envfile.render(vars_, notes, whatis)


# --------------------------------------------------------------------------- properties

_names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,12}", fullmatch=True).filter(
    lambda n: envfile.check_name(n) is None
)
_line_text = st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters="\n\r\0"), max_size=40
)


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=400))
def test_parse_never_raises_anything_else(text: str) -> None:
    try:
        env = envfile.parse(text, "f.env")
    except EnvFileError as exc:
        assert str(exc).startswith("f.env:")
        return
    for key, value in env.vars:
        assert envfile.check_name(key) is None
        assert "\n" not in value and "\0" not in value
    envfile.banner(env)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                "A=1",
                "#ENVNOTE:A=n",
                "#WHATIS:w",
                "# c",
                "",
                "B",
                "=",
                "\r",
                "\ufeff",
                " \t",
                "export A=1",
                "CNT_OVERLAY=x",
                "A=\0",
                "\ud800",
                "#ENVNOTE:",
                "A B=1",
                'Z="q"',
            ]
        ),
        max_size=12,
    )
)
def test_parse_on_line_soup(parts: list[str]) -> None:
    text = "\n".join(parts)
    try:
        envfile.parse(text, "soup")
    except EnvFileError as exc:
        assert isinstance(exc, CondatainerError)
        assert str(exc).startswith("soup:")


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(_names, _line_text, max_size=8),
    st.data(),
    st.one_of(st.none(), _line_text),
)
def test_render_then_parse_round_trips(
    values: dict[str, str], data: st.DataObject, whatis: str | None
) -> None:
    note_keys = data.draw(st.lists(st.sampled_from(sorted(values)), unique=True)) if values else []
    extra = data.draw(st.dictionaries(_names, _line_text, max_size=2))
    notes = {k: data.draw(_line_text) for k in note_keys}
    notes.update({k: v for k, v in extra.items() if k not in notes})
    text = envfile.render(list(values.items()), notes, whatis)
    assert envfile.parse(text, "r") == EnvFile(tuple(values.items()), notes, whatis)


# --- variable references ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "parts"),
    [
        ("plain", (("text", "plain"),)),
        ("", ()),
        ("$HOME/go", (("name", "HOME"), ("text", "/go"))),
        ("/x:${PATH}", (("text", "/x:"), ("name", "PATH"))),
        ("$A$B_1", (("name", "A"), ("name", "B_1"))),
        ("a$$b", (("text", "a$b"),)),
        ("$$(id)", (("text", "$(id)"),)),
        ("${X:-$(id)}", (("text", "${X:-$(id)}"),)),
        ("`id` $1 $ $(id)", (("text", "`id` $1 $ $(id)"),)),
        ("${A}x${B", (("name", "A"), ("text", "x${B"))),
        ("${1A}", (("text", "${1A}"),)),
    ],
)
def test_segments(value: str, parts: tuple[tuple[str, str], ...]) -> None:
    assert envfile.segments(value) == parts
    assert envfile.expands(value) == (parts != ((("text", value),) if value else ()))


def test_literal_forms_are_the_other_dollar_forms_and_backticks() -> None:
    assert envfile.literal_forms("${X:-$(id)} `id` $1 $(date) $") == (
        "${X:-$(id)}",
        "`id`",
        "$1",
        "$(date)",
        "$",
    )
    assert envfile.literal_forms("$HOME ${HOME} $$ $$(id)") == ()
    assert envfile.references("$A ${B} $A $$C") == ("A", "B")


def test_path_only_extended() -> None:
    env = envfile.parse("PATH=/ext3/env/go/bin:$PATH\nP2=${PATH}\n", "f")
    assert env.vars == (("PATH", "/ext3/env/go/bin:$PATH"), ("P2", "${PATH}"))
    with pytest.raises(EnvFileError) as bad:
        envfile.parse("PATH=/ext3/env/go/bin\n", "f")
    assert bad.value.hint == "extend it instead: PATH=/ext3/env/go/bin:$PATH"
    with pytest.raises(EnvFileError, match="f:1: CNT_LEVEL is set by condatainer"):
        envfile.parse("CNT_LEVEL=$CNT_LEVEL\n", "f")
