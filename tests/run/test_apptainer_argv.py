"""runtime.apptainer as data: Plan -> argv + environment (golden files), errors, FATAL lines.

Golden files live in tests/run/golden/apptainer/<case>.txt: the command line, one JSON string
per line, then the variables added to the environment.  Regenerate them after an intended change
with `UPDATE_GOLDEN=1 python3 -m pytest tests/run/test_apptainer_argv.py` and review the diff.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from condatainer.errors import (
    ConfigError,
    ContainerError,
    ImageError,
    LockError,
    RuntimeUnavailableError,
)
from condatainer.run.plan import Bind, Overlay, Plan
from condatainer.run.runtime import apptainer

GOLDEN = Path(__file__).parent / "golden" / "apptainer"
BIN = "/usr/bin/apptainer"
BASE = "/opt/images/base.sif"
ENV = (
    ("IN_CONDATAINER", "1"),
    ("CONDA_PREFIX", "/ext3/env"),
    ("CNT_OVERLAY", "/home/u/proj/env.img"),
)
RW = Overlay("/home/u/proj/env.img", writable=True)

TRICKY = (
    ("SUBST", "$(touch /tmp/pwned)"),
    ("BACKTICK", "`id -u`"),
    ("QUOTES", 'it\'s "quoted"'),
    ("COMMAS", "a,b=c,d"),
    ("NEWLINES", "line1\nline2\n"),
    ("DOLLAR", "$HOME ${PATH} $1 $"),
    ("BACKSLASH", "C:\\dir\\"),
    ("EMPTY", ""),
    ("UNICODE", "èрт🚒中"),
)

CASES: dict[str, Plan] = {
    "minimal": Plan(command=("python", "-V"), overlays=(RW,), env=ENV, base_image=BASE),
    "gpu": Plan(
        command=("nvidia-smi",),
        overlays=(Overlay("/data/env.img", writable=False),),
        env=ENV,
        base_image=BASE,
        gpu=("nv", "rocm"),
    ),
    "binds": Plan(
        command=("bash",),
        overlays=(RW,),
        env=ENV,
        base_image=BASE,
        cwd="/home/u/proj",
        binds=(
            Bind("/home/u/proj", "/home/u/proj"),
            Bind("/scratch/u", "/scratch"),
            Bind("/shared/ref", "/shared/ref", readonly=True),
        ),
    ),
    "fakeroot_isolation": Plan(
        command=("mm-install", "numpy"),
        overlays=(RW,),
        env=ENV,
        base_image=BASE,
        fakeroot=True,
        containall=True,
        contain=True,
        cleanenv=True,
        workdir="/tmp/slurm-123",
        cwd="/home/u/proj",
    ),
    "rw_and_ro": Plan(
        command=("snakemake", "-j", "4"),
        overlays=(
            Overlay("/home/u/proj/env.img", writable=True),
            Overlay("/shared/tools.img", writable=False),
            Overlay("/shared/r-4.3.img", writable=False),
        ),
        env=ENV,
        base_image=BASE,
    ),
    "tricky_env": Plan(command=("env",), overlays=(RW,), env=TRICKY, base_image=BASE),
    "extra_args": Plan(
        command=("--looks-like-an-option", "x y"),
        overlays=(RW,),
        env=ENV,
        base_image="docker://ubuntu:22.04",
        extra_args=("--no-home", "--hostname", "node 1"),
    ),
}


def render(plan: Plan, binary: str = BIN) -> str:
    lines = ["# argv: one JSON string per element"]
    lines += [json.dumps(arg, ensure_ascii=False) for arg in apptainer.argv(plan, binary)]
    lines.append("# environment added to the exec environment")
    added = apptainer.environ(plan, binary, {})
    lines += [f"{key}={json.dumps(value, ensure_ascii=False)}" for key, value in added.items()]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden(name: str) -> None:
    path = GOLDEN / f"{name}.txt"
    text = render(CASES[name])
    if os.environ.get("UPDATE_GOLDEN"):  # not CNT_*: the test isolation clears those
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8"), f"argv drifted from {path}"


def test_shape_of_the_command_line() -> None:
    plan = CASES["rw_and_ro"]
    args = apptainer.argv(plan, BIN)
    assert args[:2] == [BIN, "exec"]
    assert args[-4:] == [BASE, "snakemake", "-j", "4"]
    overlays = [args[i + 1] for i, a in enumerate(args) if a == "--overlay"]
    assert overlays == [
        "/home/u/proj/env.img",
        "/shared/tools.img:ro",
        "/shared/r-4.3.img:ro",
    ]
    assert "--no-eval" in args
    assert not any(a.startswith("--env") for a in args)


def test_values_travel_in_the_environment_verbatim() -> None:
    added = apptainer.environ(CASES["tricky_env"], BIN, {})
    assert added == {f"APPTAINERENV_{k}": v for k, v in TRICKY}


def test_environ_keeps_the_host_and_drops_competing_prefixes() -> None:
    host = {
        "PATH": "/usr/bin",
        "SINGULARITYENV_IN_CONDATAINER": "9",
        "APPTAINERENV_CONDA_PREFIX": "/old",
        "APPTAINERENV_MINE": "kept",
    }
    env = apptainer.environ(CASES["minimal"], BIN, host)
    assert env["PATH"] == "/usr/bin"
    assert env["APPTAINERENV_MINE"] == "kept"
    assert "SINGULARITYENV_IN_CONDATAINER" not in env
    assert env["APPTAINERENV_IN_CONDATAINER"] == "1"
    assert env["APPTAINERENV_CONDA_PREFIX"] == "/ext3/env"


def test_singularity_gets_its_own_prefix(tmp_path: Path) -> None:
    real = tmp_path / "singularity"
    real.write_text("")
    assert apptainer.env_prefix(str(real)) == "SINGULARITYENV_"
    # Apptainer's `singularity` is a link to apptainer: keep APPTAINERENV_ (no deprecation noise)
    target = tmp_path / "apptainer"
    target.write_text("")
    link = tmp_path / "bin" / "singularity"
    link.parent.mkdir()
    link.symlink_to(target)
    assert apptainer.env_prefix(str(link)) == "APPTAINERENV_"
    env = apptainer.environ(CASES["minimal"], str(real), {})
    assert env["SINGULARITYENV_IN_CONDATAINER"] == "1"


# --- refusals ---------------------------------------------------------------------------------


def test_missing_base_image_names_the_pull_command() -> None:
    plan = Plan(command=("true",), overlays=(RW,))
    with pytest.raises(ConfigError) as err:
        apptainer.argv(plan, BIN)
    assert err.value.hint == "fetch condatainer's default base with: condatainer base pull"


def test_empty_command_is_refused() -> None:
    with pytest.raises(ContainerError, match="nothing to run"):
        apptainer.argv(Plan(command=(), base_image=BASE), BIN)


def test_two_writable_overlays_are_refused() -> None:
    plan = Plan(command=("true",), overlays=(RW, Overlay("/b.img", True)), base_image=BASE)
    with pytest.raises(ContainerError, match="only one overlay can be writable"):
        apptainer.argv(plan, BIN)


@pytest.mark.parametrize("path", ["/a,b/env.img", "/a:b/env.img", '/a"b.img', "/a\nb.img"])
def test_overlay_paths_apptainer_would_split_are_refused(path: str) -> None:
    plan = Plan(command=("true",), overlays=(Overlay(path, False),), base_image=BASE)
    with pytest.raises(ContainerError, match="splits its options"):
        apptainer.argv(plan, BIN)


@pytest.mark.parametrize(
    "bind",
    [Bind("/a,b", "/a,b"), Bind("/x", "/y:z"), Bind("/a^b", "/c"), Bind("/a ", "/a ")],
)
def test_bind_paths_apptainer_would_split_are_refused(bind: Bind) -> None:
    plan = Plan(command=("true",), binds=(bind,), base_image=BASE)
    with pytest.raises(ContainerError, match="cannot"):
        apptainer.argv(plan, BIN)


def test_spaces_and_quotes_inside_bind_paths_are_fine() -> None:
    plan = Plan(command=("true",), binds=(Bind("/my proj/it's", "/my proj/it's"),), base_image=BASE)
    assert "/my proj/it's" in apptainer.argv(plan, BIN)


@pytest.mark.parametrize("key", ["1X", "A-B", "A=B", "", "X Y"])
def test_invalid_variable_names_are_refused(key: str) -> None:
    plan = Plan(command=("true",), env=((key, "v"),), base_image=BASE)
    with pytest.raises(ContainerError, match="not a variable name"):
        apptainer.environ(plan, BIN, {})


def test_home_cannot_be_passed() -> None:
    plan = Plan(command=("true",), env=(("HOME", "/x"),), base_image=BASE)
    with pytest.raises(ContainerError) as err:
        apptainer.environ(plan, BIN, {})
    assert err.value.hint is not None and "--home" in err.value.hint


def test_unknown_gpu_kind_is_refused() -> None:
    with pytest.raises(ContainerError, match="unknown GPU kind"):
        apptainer.argv(Plan(command=("true",), gpu=("cuda",), base_image=BASE), BIN)


# --- FATAL lines -> errors --------------------------------------------------------------------

PLAN = Plan(
    command=("true",),
    overlays=(Overlay("/p/ro.img", False), Overlay("/p/env.img", True)),
    base_image=BASE,
)


def fatal(text: str) -> str:
    return f"INFO:    Using cached SIF image\nFATAL:   {text}\n"


def test_only_status_255_with_fatal_counts() -> None:
    assert apptainer.translate_failure(0, "", PLAN) is None
    assert apptainer.translate_failure(3, fatal("while loading overlay images: x"), PLAN) is None
    assert apptainer.translate_failure(255, "my program said FATAL: no\n", PLAN) is None


def test_unknown_fatal_is_quoted() -> None:
    err = apptainer.translate_failure(255, fatal("something new broke"), PLAN)
    assert isinstance(err, ContainerError)
    assert "something new broke" in err.message


def test_lock_fatal_becomes_lock_error(tmp_path: Path) -> None:
    # The holder is gone by the time we look (the image is free): Apptainer's words are quoted.
    img = tmp_path / "env.img"
    img.write_bytes(b"\0" * 4096)
    text = (
        f"while loading overlay images: failed to open overlay image {img}: while locking ext3"
        f" partition from {img}: can't open {img} for writing, currently in use by another"
        " process"
    )
    err = apptainer.translate_failure(255, fatal(text), PLAN)
    assert isinstance(err, LockError)
    assert str(img) in err.message and "in use" in err.message


def test_lock_fatal_of_a_vanished_image_says_so(tmp_path: Path) -> None:
    gone = tmp_path / "gone.img"
    text = f"can't open {gone} for reading, currently in use for writing by another process"
    err = apptainer.translate_failure(255, fatal(text), PLAN)
    assert isinstance(err, LockError) and "no such image file" in err.message


@pytest.mark.parametrize("fakeroot", [False, True])
def test_upper_ownership_fatal(fakeroot: bool) -> None:
    plan = Plan(command=PLAN.command, overlays=PLAN.overlays, base_image=BASE, fakeroot=fakeroot)
    text = (
        "container creation failed: mount hook function failure: setup of overlay upper dir"
        " failed: /var/lib/apptainer/mnt/session/overlay-images/1/upper is not writable:"
        " permission denied"
    )
    err = apptainer.translate_failure(255, fatal(text), plan)
    assert isinstance(err, ContainerError)
    assert "/p/env.img" in err.message
    assert err.hint is not None and "condatainer overlay chown /p/env.img" in err.hint
    assert ("without --fakeroot" in err.hint) == fakeroot
    assert ("run with --fakeroot" in err.hint) == (not fakeroot)


def test_upper_fatal_of_an_older_apptainer() -> None:
    text = (
        "container creation failed: hook function for tag prelayer returns error: setup of"
        " overlay upper dir failed: /var/apptainer/mnt/session/overlay-images/1/upper is not"
        " writable: permission denied"
    )
    err = apptainer.translate_failure(255, fatal(text), PLAN)
    assert isinstance(err, ContainerError) and "/p/env.img" in err.message


@pytest.mark.parametrize(
    ("text", "kind", "words"),
    [
        (
            "while loading overlay images: failed to open overlay image /p/x.img: failed to"
            " retrieve path for /p/x.img: lstat /p/x.img: no such file or directory",
            LockError,
            "/p/x.img: no such image file",
        ),
        (
            "while loading overlay images: failed to open overlay image /p/x.img: /p/x.img is"
            " not readable by the current user, check permissions",
            LockError,
            "/p/x.img: not readable",
        ),
        (
            "while loading overlay images: failed to open overlay image /p/x.img: image format"
            " not recognized",
            ImageError,
            "/p/x.img: not an ext3",
        ),
        (
            "could not open image /opt/base.sif: failed to retrieve path for /opt/base.sif:"
            " lstat /opt/base.sif: no such file or directory",
            ConfigError,
            "base image /opt/base.sif",
        ),
        ('"micromamba": executable file not found in $PATH', ContainerError, "micromamba"),
        (
            "container creation failed: mount hook function failure: mount /s->/s error: while"
            " mounting /s: mount source /s doesn't exist",
            ContainerError,
            "cannot bind /s",
        ),
    ],
)
def test_known_fatal_lines(text: str, kind: type, words: str) -> None:
    err = apptainer.translate_failure(255, fatal(text), PLAN)
    assert type(err) is kind
    assert err is not None and words in err.message


def test_command_not_found_keeps_shell_status() -> None:
    err = apptainer.translate_failure(
        255, fatal('"nope": executable file not found in $PATH'), PLAN
    )
    assert err is not None and err.exit_code == 127


def test_too_old_for_no_eval() -> None:
    stderr = 'Error for command "exec": unknown flag: --no-eval\n'
    err = apptainer.translate_failure(255, stderr, PLAN)
    assert isinstance(err, RuntimeUnavailableError)
