"""directives: #DEP/#CNT/#SBATCH/#PBS/#BSUB read the way each scheduler reads them; the header."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from condatainer.errors import DirectiveError
from condatainer.jobs import directives, header
from condatainer.jobs.directives import parse
from condatainer.jobs.header import BEGIN as HEADER_BEGIN
from condatainer.jobs.header import END as HEADER_END
from condatainer.jobs.header import insert as insert_header


def p(text: str) -> directives.Directives:
    return parse(text, "job.sh")


def texts(d: directives.Directives) -> tuple[str, ...]:
    return tuple(x.text for x in d.directives)


def args(d: directives.Directives) -> tuple[tuple[str, ...], ...]:
    return tuple(x.args for x in d.directives)


# --------------------------------------------------------------------------------------------
# #SBATCH: sbatch 22.05's rules (tests/slurm/test_directive_forms.py feeds the same scripts to
# the real sbatch and compares).


def test_sbatch_lines_in_the_header_block() -> None:
    d = p("#!/bin/bash\n#SBATCH -n 4\n#SBATCH --time=1:00\necho hi\n")
    assert d.scheduler == "slurm"
    assert args(d) == (("-n", "4"), ("--time=1:00",))
    assert [x.line for x in d.directives] == [2, 3]
    assert d.header_end_line == 3


def test_sbatch_skips_blank_and_comment_lines_including_indented_comments() -> None:
    text = "#!/bin/sh\n\n# a comment\n   # indented comment\n\t\n#SBATCH -J x\necho\n"
    assert texts(p(text)) == ("-J x",)


def test_sbatch_after_a_command_is_ignored_and_noted() -> None:
    d = p("#!/bin/bash\n#SBATCH -n 1\nmodule load x\n#SBATCH -n 8\n")
    assert texts(d) == ("-n 1",)
    assert any("job.sh:4: #SBATCH after the first command (line 3)" in n for n in d.notes)


def test_indented_sbatch_is_ignored_and_noted() -> None:
    d = p("#!/bin/bash\n  #SBATCH -n 8\n\t#SBATCH -n 9\n")
    assert d.scheduler is None and d.directives == ()
    assert sum("indented #SBATCH is ignored" in n for n in d.notes) == 2


def test_sbatch_without_shebang_and_in_an_empty_file() -> None:
    assert texts(p("#SBATCH -n 2\n")) == ("-n 2",)
    empty = p("")
    assert empty == directives.Directives((), (), None, (), 0)


def test_shebang_only_counts_on_the_first_line() -> None:
    d = p("#SBATCH -a\n#!/bin/bash\n#SBATCH -b\n")
    assert texts(d) == ("-a", "-b")  # a later "#!" line is just a comment


@pytest.mark.parametrize(
    "line",
    [
        "echo hi",
        "x",  # a stray word
        "\u200b",  # zero-width space: not whitespace for sbatch
        "\u00a0",  # no-break space: not C-locale whitespace either
        "\ufeff#SBATCH -n 9",  # a BOM makes the line a command
        ": '",
    ],
)
def test_command_lines_end_the_header_block(line: str) -> None:
    d = p(f"#!/bin/bash\n#SBATCH -n 1\n{line}\n#SBATCH -n 2\n")
    assert texts(d) == ("-n 1",)
    assert d.header_end_line == 2


@pytest.mark.parametrize("blank", ["", " ", "\t", "\v", "\f", " \t\f"])
def test_c_locale_whitespace_lines_are_blank(blank: str) -> None:
    assert texts(p(f"#!/bin/bash\n{blank}\n#SBATCH -n 1\n")) == ("-n 1",)


def test_the_tag_needs_no_blank_after_it() -> None:
    # sbatch matches the 7 characters "#SBATCH" and reads what follows as arguments.
    d = p("#!/bin/bash\n#SBATCH--job-name=x\n#SBATCH\t-n 2\n#SBATCH\n#SBATCHX\n")
    assert args(d) == (("--job-name=x",), ("-n", "2"), ("X",))  # sbatch refuses "X"
    assert d.scheduler == "slurm"


def test_the_old_slurm_tag_is_read_with_a_note() -> None:
    d = p("#!/bin/bash\n#SLURM -J old\necho\n")
    assert args(d) == (("-J", "old"),)
    assert any("#SLURM is the old tag" in n for n in d.notes)


def test_dos_line_breaks_are_refused_as_sbatch_refuses_them() -> None:
    with pytest.raises(DirectiveError, match=r"^job\.sh:1: the script has DOS line breaks") as err:
        p("#!/bin/bash\r\n#SBATCH -n 4\r\necho hi\r\n")
    assert err.value.hint is not None and "sed -i" in err.value.hint
    assert p("#!/bin/bash\n#SBATCH -J a\rb\n").directives[0].args == ("-J", "a", "b")  # isspace


def test_text_without_final_newline() -> None:
    assert texts(p("#SBATCH -n 4")) == ("-n 4",)
    assert p("#SBATCH -n 4").header_end_line == 1


def test_only_lf_ends_a_line() -> None:
    # Python's splitlines() would split on these; sbatch and sh do not.
    d = p("#SBATCH -n 4\x1c#SBATCH -n 5\n#SBATCH -J a\u2028b\n")
    assert texts(d) == ("-n 4\x1c#SBATCH -n 5", "-J a\u2028b")
    assert args(d) == (("-n", "4\x1c"), ("-J", "a\u2028b"))  # sbatch: '#' ends the line


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("#SBATCH -n 4 # four tasks", ("-n", "4")),
        ("#SBATCH -n 4\t#tab comment", ("-n", "4")),
        ("#SBATCH # only a comment", None),
        ("#SBATCH --comment=a#b", ("--comment=a",)),  # sbatch: '#' even inside a word
        ('#SBATCH --comment="a # b" # c', ("--comment=a # b",)),
        ("#SBATCH --comment='a # b' -n 1", ("--comment=a # b", "-n", "1")),
        ("#SBATCH -J a\\#b", ("-J", "a#b")),  # an escaped '#' is kept
        ("#SBATCH -J a\\ b", ("-J", "a", "b")),  # an escaped blank still ends the word
        ("#SBATCH -J \"x\"y'z'", ("-J", "xyz")),
        ('#SBATCH --comment "" -n 2', ("--comment",)),  # sbatch stops at an empty argument
        ("#SBATCH   -n 4   ", ("-n", "4")),
        ("#SBATCH -n 1 hetjob -n 2", ("-n", "1")),  # the next component starts
    ],
)
def test_sbatch_arguments(line: str, expected: tuple[str, ...] | None) -> None:
    d = p(line + "\n")
    assert args(d) == ((expected,) if expected is not None else ())


@pytest.mark.parametrize("line", ['#SBATCH -J "unbalanced # x', "#SBATCH -J 'x", "#SBATCH : x"])
def test_what_sbatch_refuses_is_a_directive_error(line: str) -> None:
    with pytest.raises(DirectiveError, match=r"^job\.sh:1: #SBATCH: .*sbatch refuses"):
        p(line + "\n")


def test_hetjob_components_after_the_first_are_not_read() -> None:
    d = p("#!/bin/bash\n#SBATCH -n 1\n#SBATCH hetjob\n#SBATCH -n 8\necho\n")
    assert args(d) == (("-n", "1"),)
    assert any("heterogeneous job" in n for n in d.notes)


# --------------------------------------------------------------------------------------------
# #PBS: OpenPBS qsub's rules (PBS cannot be installed here: they come from its source).


def test_indented_pbs_is_honoured() -> None:
    d = p("#!/bin/bash\n#PBS -l nodes=1\n    #PBS -N job\n\t#PBS -q q\necho\n#PBS -l late\n")
    assert d.scheduler == "pbs"
    assert args(d) == (("-l", "nodes=1"), ("-N", "job"), ("-q", "q"))
    assert any("job.sh:6: #PBS after the first command (line 5)" in n for n in d.notes)


def test_pbs_reading_stops_at_the_first_executable_line_only() -> None:
    # A column-0 ':' line and a later '#!' line are not executable for qsub (pbs_isexecutable);
    # sbatch's rule would stop at ':'.
    d = p("#!/bin/bash\n: ${X:=1}\n#PBS -N a\n#!/bin/sh\n#PBS -q b\n  : x\n#PBS -l c\n")
    assert args(d) == (("-N", "a"), ("-q", "b"))


def test_pbs_continuation_lines() -> None:
    d = p("#PBS -l select=1:ncpus=4 \\  \n   -l walltime=1:00:00\n#PBS -N x\necho\n")
    assert args(d) == (("-l", "select=1:ncpus=4", "-l", "walltime=1:00:00"), ("-N", "x"))
    assert [x.line for x in d.directives] == [1, 3]


def test_pbs_has_no_trailing_comments() -> None:
    d = p("#PBS -N job # the name\n#PBS -M 'a b'\\ c\n")
    assert args(d) == (("-N", "job", "#", "the", "name"), ("-M", "a b c"))
    assert any("qsub has no comments on #PBS lines" in n for n in d.notes)
    with pytest.raises(DirectiveError, match="#PBS: unmatched"):
        p("#PBS -N 'x\n")


def test_pbs_dos_line_breaks_are_refused() -> None:
    with pytest.raises(DirectiveError, match="DOS line breaks"):
        p("#PBS -N x\r\necho\r\n")


# --------------------------------------------------------------------------------------------
# #BSUB: LSF's documentation (LSF cannot be installed here): column 0, the whole file.


def test_bsub_after_a_command_is_honoured_but_not_indented() -> None:
    d = p("#!/bin/bash\n#BSUB -n 4\necho hi\n#BSUB -W 10 # ten minutes\n  #BSUB -q short\n")
    assert d.scheduler == "lsf"
    assert args(d) == (("-n", "4"), ("-W", "10"))
    assert any("job.sh:5: indented #BSUB is ignored" in n for n in d.notes)


def test_several_schedulers_prefer_slurm_then_pbs_then_lsf() -> None:
    d = p("#!/bin/bash\n#BSUB -n 1\n#PBS -l x\n#SBATCH -n 2\necho\n")
    assert d.scheduler == "slurm" and texts(d) == ("-n 2",)
    assert any("#SBATCH, #PBS, #BSUB" in n and "using the #SBATCH ones" in n for n in d.notes)
    d = p("#!/bin/bash\n#BSUB -n 1\n#PBS -l x\necho\n")
    assert d.scheduler == "pbs" and texts(d) == ("-l x",)


def test_no_scheduler() -> None:
    d = p("#!/bin/bash\n# just a comment\necho hi\n")
    assert d.scheduler is None and d.directives == () and d.notes == ()


# --------------------------------------------------------------------------------------------
# #DEP: and #CNT


def test_dep_lines() -> None:
    d = p(
        "#!/bin/bash\n#DEP: env.img\n#DEP:tools.img # comment\n"
        "#DEP: 'my env.img' \"b c.img\"\n#DEP : spaced.img\necho\n"
    )
    assert d.deps == ("env.img", "tools.img", "my env.img", "b c.img", "spaced.img")
    assert d.dep_lines == (2, 3, 4, 4, 5)


def test_dep_follows_the_sbatch_rule() -> None:
    d = p("#!/bin/bash\n  #DEP: indented.img\necho\n#DEP: late.img\n")
    assert d.deps == ()
    assert any("indented #DEP" in n for n in d.notes)
    assert any("job.sh:4: #DEP after the first command" in n for n in d.notes)


def test_dep_without_colon_is_an_error() -> None:
    with pytest.raises(DirectiveError, match=r"^job\.sh:2: #DEP needs a colon") as info:
        p("#!/bin/bash\n#DEP env.img\n")
    assert info.value.hint == "write it as: #DEP: env.img"
    assert p("#DEPRECATED stuff\n").deps == ()  # just a comment


def test_empty_dep_is_an_error() -> None:
    with pytest.raises(DirectiveError, match=r"job\.sh:1: #DEP: names no image"):
        p("#DEP:   # nothing\n")


def test_cnt_flags_are_split_as_data() -> None:
    d = p(
        "#!/bin/bash\n#CNT -w --fakeroot\n#CNT --env 'MSG=a # b' --bind \"/a b:/c\"  # why\n"
        "#CNT: -b base.sif\n#CNT --env X=$(rm -rf ~)\n#CNT\necho\n"
    )
    assert d.cnt_flags == (
        ("-w", "--fakeroot"),
        ("--env", "MSG=a # b", "--bind", "/a b:/c"),
        ("-b", "base.sif"),
        ("--env", "X=$(rm", "-rf", "~)"),  # never evaluated
    )


def test_cnt_follows_the_sbatch_rule() -> None:
    d = p("#!/bin/bash\n\t#CNT -w\necho\n#CNT --fakeroot\n")
    assert d.cnt_flags == ()
    assert len(d.notes) == 2


@pytest.mark.parametrize(
    ("text", "lineno"),
    [
        ("#!/bin/bash\n#CNT --env 'A=1\n", 2),
        ('#CNT -w\n\n#CNT --env "unclosed\n', 3),
        ("#DEP: 'unclosed.img\n", 1),
        ("#CNT trailing\\", 1),
    ],
)
def test_malformed_quoting_is_a_directive_error_with_file_and_line(text: str, lineno: int) -> None:
    with pytest.raises(DirectiveError, match=rf"^job\.sh:{lineno}: #(CNT|DEP): ") as info:
        p(text)
    assert info.value.hint and f"line {lineno}" in info.value.hint


_LINES = st.sampled_from(
    [
        "#!/bin/bash",
        "#SBATCH -n 1",
        "#SBATCH",
        "  #SBATCH -n 2",
        "#SBATCH--time=1",
        "#SBATCH -J 'x",
        "#SBATCH hetjob",
        "#SLURM -n 1",
        "#PBS -l x",
        "#PBS -N a \\",
        "\t#PBS -q y",
        "#BSUB -n 3",
        "#DEP: a.img",
        "#DEP: 'b c.img'",
        "#DEP: 'x",
        "#DEP x",
        "#DEP:",
        "#CNT -w",
        "#CNT --env 'A=\"",
        "#CNT \\",
        "# comment",
        "",
        " ",
        "\r",
        "\u200b",
        "echo hi",
        '#SBATCH --comment="a # b" # c',
        "#",
    ]
)


@settings(max_examples=500, deadline=None)
@given(st.lists(_LINES | st.text(max_size=30), max_size=15), st.sampled_from(["\n", "\r\n"]))
def test_parse_raises_nothing_but_directive_error(lines: list[str], newline: str) -> None:
    text = newline.join(lines)
    try:
        d = parse(text, "job.sh")
    except DirectiveError as exc:
        assert str(exc).startswith("job.sh:")
        return
    assert 0 <= d.header_end_line <= len(text.split("\n"))
    assert len(d.deps) == len(d.dep_lines)
    assert (d.scheduler is None) == (d.directives == ())
    assert all(x.args for x in d.directives)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_parse_arbitrary_text(text: str) -> None:
    with contextlib.suppress(DirectiveError):
        parse(text, "x")


# --------------------------------------------------------------------------------------------
# The self-reexec header


def header_lines() -> list[str]:
    return header.text().splitlines()


def test_header_text_has_the_markers_python_looks_for() -> None:
    lines = header_lines()
    assert lines[0] == HEADER_BEGIN
    assert lines[-1] == HEADER_END
    assert header.text().endswith("\n")


def test_insert_after_shebang_and_directive_block() -> None:
    text = "#!/bin/bash\n#SBATCH -n 4\n#DEP: env.img\n\n# setup\nmodule load x\necho done\n"
    out = insert_header(text)
    assert out == (
        "#!/bin/bash\n#SBATCH -n 4\n#DEP: env.img\n\n# setup\n"
        + header.text()
        + "module load x\necho done\n"
    )
    # The directives are unchanged, and still all before the first command.
    before, after = p(text), p(out)
    assert (after.directives, after.deps) == (before.directives, before.deps)


def test_insert_is_idempotent() -> None:
    text = "#!/bin/sh\n#SBATCH -n 1\necho hi\n"
    once = insert_header(text)
    assert insert_header(once) == once
    assert once.splitlines().count(HEADER_BEGIN) == 1


def test_insert_replaces_an_old_header_in_place() -> None:
    old = f"#!/bin/sh\n#SBATCH -n 1\n{HEADER_BEGIN}\necho old header\n{HEADER_END}\necho hi\n"
    assert insert_header(old) == ("#!/bin/sh\n#SBATCH -n 1\n" + header.text() + "echo hi\n")


def test_insert_into_edge_cases() -> None:
    text = header.text()
    assert insert_header("") == text
    assert insert_header("#!/bin/sh") == "#!/bin/sh\n" + text
    assert insert_header("#!/bin/sh\n") == "#!/bin/sh\n" + text
    assert insert_header("echo a") == text + "echo a"
    assert insert_header("#!/bin/sh\r\n#SBATCH -n 1\r\necho\r\n") == (
        "#!/bin/sh\r\n#SBATCH -n 1\r\n" + text + "echo\r\n"
    )


def test_insert_refuses_a_broken_header() -> None:
    with pytest.raises(DirectiveError, match=r"^job\.sh:2: a condatainer header starts here"):
        insert_header(f"#!/bin/sh\n{HEADER_BEGIN}\necho\n", "job.sh")
