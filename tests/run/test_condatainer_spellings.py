"""CondaTainer's command lines work here (issue 13, the command-line rows): its spellings as
aliases, Apptainer's own options before the command passed through, and the refusals that say
why.  Each row runs the real CLI against the recording fake `apptainer` (tests/fakes) and
checks the argv it received; the rows the builtin runtime is involved in run it for real in
tests/run/test_condatainer_builtin.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from condatainer import cli
from condatainer.run import apptainer_flags, options, replay
from condatainer.run.resolve import Request, apptainer_args
from tests.run.test_apptainer_cli import env  # noqa: F401 (the fixture: the fake apptainer's)
from tests.run.test_apptainer_fake import make_image
from tests.support import cnt


def argv_of(fake: dict[str, str]) -> list[str]:
    """The argv of the one apptainer call the command made."""
    lines = Path(fake["CNT_FAKE_APPTAINER_LOG"]).read_text().splitlines()
    assert len(lines) == 1, lines
    argv = json.loads(lines[0])["argv"]
    assert isinstance(argv, list)
    return [str(w) for w in argv]


@pytest.mark.parametrize("command", ["e", "exec"])
def test_fakeroot_base_image_and_bind_spellings(
    tmp_path: Path,
    env: dict[str, str],  # noqa: F811 (the fixture)
    command: str,
) -> None:
    image = make_image(tmp_path)
    other = tmp_path / "other.sif"
    other.write_bytes(b"another base\n")
    data = tmp_path / "data"
    data.mkdir()
    words = ["-f", "--base-image", str(other), "-B", f"{data}:/data"]
    where = [str(image), "--"] if command == "e" else ["-o", str(image)]
    res = cnt(command, *words, *where, "true", cwd=tmp_path, env=env)
    assert res.returncode == 0, res.stderr
    argv = argv_of(env)
    assert "--fakeroot" in argv
    assert argv[-2:] == [str(other), "true"], "--base-image is -b"
    assert f"{data}:/data" in argv, "-B is --bind"


def test_writable_img_spelling(tmp_path: Path, env: dict[str, str]) -> None:  # noqa: F811 (the fixture)
    image = make_image(tmp_path)
    ok_res = cnt("exec", "--writable-img", "-o", str(image), "true", cwd=tmp_path, env=env)
    assert ok_res.returncode == 0, ok_res.stderr
    argv = argv_of(env)
    assert argv[argv.index("--overlay") + 1] == str(image), "mounted writable, not :ro"
    Path(env["CNT_FAKE_APPTAINER_LOG"]).unlink()
    res = cnt("e", "--writable-img", str(image), "--", "true", cwd=tmp_path, env=env)
    assert res.returncode == 0, res.stderr
    assert argv_of(env)[argv_of(env).index("--overlay") + 1] == str(image)
    both = cnt("e", "-w", "-r", str(image), "--", "true", cwd=tmp_path, env=env)
    assert both.returncode == 2 and "contradict" in both.stderr


@pytest.mark.parametrize(
    ("command", "flags"),
    [
        ("e", ["--nv"]),
        ("exec", ["--home=/x"]),
        ("exec", ["--nv", "--no-home", "--writable-tmpfs", "--hostname=box"]),
        ("e", ["--home=/x", "--net"]),
    ],
)
def test_apptainer_options_before_the_command_are_passed_through(
    tmp_path: Path,
    env: dict[str, str],  # noqa: F811 (the fixture)
    command: str,
    flags: list[str],
) -> None:
    image = make_image(tmp_path)
    if command == "e":
        words = [*flags, str(image), "--", "echo", "--home=/in-the-command"]
    else:
        words = ["-o", str(image), *flags, "echo", "--home=/in-the-command"]
    res = cnt(command, *words, cwd=tmp_path, env=env)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "--home=/in-the-command", "the command's own words untouched"
    argv = argv_of(env)
    before_base = argv[: argv.index(env["CNT_BASE_IMAGE"])]
    for flag in flags:
        assert before_base.count(flag) == 1, (flag, argv)


def test_an_explicit_nv_wins_over_gpu_off_and_is_said_once(
    tmp_path: Path,
    env: dict[str, str],  # noqa: F811 (the fixture)
) -> None:
    image = make_image(tmp_path)
    env = {**env, "CNT_GPU": "off"}
    res = cnt("exec", "--nv", "-A=--nv", "-o", str(image), "true", cwd=tmp_path, env=env)
    assert res.returncode == 0, res.stderr
    assert argv_of(env).count("--nv") == 1


def test_explicit_gpu_switches_decide_over_the_configuration() -> None:
    """The decision itself (resolve): config found nv and rocm; the user said otherwise."""
    req = Request(command=("x",), apptainer=("--no-nv", "--rocm"), extra_args=("-A1", "x"))
    gpu, extra = apptainer_args(req, ("nv", "rocm"))
    assert gpu == ()
    assert extra == ("-A1", "x", "--no-nv", "--rocm")
    assert apptainer_args(Request(command=()), ("nv",)) == (("nv",), ())


@pytest.mark.parametrize(
    ("word", "why"),
    [
        ("--home", "--home=VALUE"),  # a separate value word would be read as the image
        ("--nv=yes", "takes no value"),
    ],
)
def test_a_pass_through_option_in_a_form_that_cannot_pass_is_refused(
    tmp_path: Path,
    env: dict[str, str],  # noqa: F811 (the fixture)
    word: str,
    why: str,
) -> None:
    image = make_image(tmp_path)
    res = cnt("exec", word, "-o", str(image), "true", cwd=tmp_path, env=env)
    assert res.returncode == 2
    assert res.stderr.startswith("condatainer: error:") and why in res.stderr
    assert "hint:" in res.stderr and "Traceback" not in res.stderr
    assert not Path(env["CNT_FAKE_APPTAINER_LOG"]).exists(), "nothing ran"


def test_an_unknown_option_is_still_an_unknown_option(tmp_path: Path, env: dict[str, str]) -> None:  # noqa: F811 (the fixture)
    image = make_image(tmp_path)
    res = cnt("exec", "--no-such-thing", "-o", str(image), "true", cwd=tmp_path, env=env)
    assert res.returncode == 2 and "--no-such-thing" in res.stderr
    res = cnt("e", "--no-such-thing", str(image), "--", "true", cwd=tmp_path, env=env)
    assert res.returncode == 2 and "--no-such-thing" in res.stderr


def test_the_list_leaves_our_own_options_to_us() -> None:
    ours = {f[2:] for o in options.EXEC for f in o.flags if f.startswith("--")}
    both = ours & (apptainer_flags.SWITCHES | apptainer_flags.VALUED)
    assert both == set(), "an option of ours would be passed through instead of read"
    assert apptainer_flags.SWITCHES.isdisjoint(apptainer_flags.VALUED)


@pytest.mark.parametrize(
    "words",
    [
        ["-f", "-o", "a.img", "--nv", "--home=/x", "ls", "--nv"],
        ["--nv", "-B", "/d:/e", "--base-image", "b.sif", "--writable-img", "-o", "a", "--", "x"],
        ["--home=/x", "-oa.img", "env"],
    ],
)
def test_the_parser_and_the_fast_path_agree_on_pass_through_words(words: list[str]) -> None:
    """`replay.split` keeps the pass-through words with the options (they are part of the
    key: they change the Plan); the CLI takes them out and argparse finds the same command."""
    found = replay.split(words)
    assert found is not None
    head, passed = cli._take_apptainer_flags("exec", ["exec", *words])
    ns = cli.build_parser("exec").parse_args(head)
    cmd = ns.cmd[1:] if ns.cmd[:1] == ["--"] else ns.cmd
    assert tuple(cmd) == found[1]
    assert set(passed) <= set(found[0])
    assert [w for w in found[0] if apptainer_flags.passes(w)] == passed


def test_o_takes_s_for_sparse(tmp_path: Path) -> None:
    image = tmp_path / "env.img"
    res = cnt("o", str(image), "-s", "256M", "-S", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    st = image.stat()
    assert st.st_size == 256 << 20 and st.st_blocks * 512 < st.st_size // 2, "sparse"
    ns = cli.build_parser("o").parse_args(["o", "x.img", "-S", "--base-image", "b.sif"])
    assert ns.sparse is True and ns.base == "b.sif"


def test_mm_op_help_needs_no_image(tmp_path: Path) -> None:
    for words in (["install", "--help"], ["pin", "-h"], ["export", "--help"]):
        res = cnt("mm", *words, cwd=tmp_path)  # no image anywhere from here
        assert res.returncode == 0, res.stderr
        assert res.stdout.startswith(f"usage: condatainer mm [-o IMAGE] {words[0]} [ARGS...]")
    assert "micromamba install -n base -y" in cnt("mm", "install", "--help").stdout
    assert "--channel-subdir" in cnt("mm", "export", "--help").stdout


def test_mm_install_into_a_named_env_is_refused_before_anything_runs(tmp_path: Path) -> None:
    image = tmp_path / "absent.img"  # refused before the image is even looked at
    for words in (["-n", "myenv"], ["--name=myenv"], ["-nmyenv"], ["--prefix", "/x"]):
        res = cnt("mm", "-o", str(image), "install", *words, "numpy", cwd=tmp_path)
        assert res.returncode == 2, res.stderr
        assert res.stderr.startswith("condatainer: error: mm install works on the image's one")
        assert "never activates" in res.stderr and "hint: drop" in res.stderr
    res = cnt("mm", "-o", str(image), "install", "numpy", cwd=tmp_path)
    assert "works on the image's one" not in res.stderr, "without -n: not this refusal"
