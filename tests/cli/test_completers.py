"""What TAB offers: the completer functions, the channel-name cache, and argcomplete's answers.

The completers are plain functions tested on temporary directories and fake listing files.  The
last tests run `python -m condatainer` the way the shell does on TAB (argcomplete's protocol:
`_ARGCOMPLETE=1`, `COMP_LINE`, `COMP_POINT`, candidates on fd 8) to check the wiring in cli and
our finder's two decisions (options only after `-`; OP's options after `mm OP`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from condatainer import completers
from condatainer.hook import mmcomplete, pkgcache
from condatainer.image import profiles
from condatainer.run import mm

REPO = Path(__file__).resolve().parents[2]
HOSTILE = "'\";&&e-$ èрт🚒中-j"


# --- scripts (run SCRIPT) and config keys and values ---------------------------------------


@pytest.fixture
def scripts_dir(tmp_path: Path) -> Path:
    d = tmp_path / "jobs"
    d.mkdir()
    for name in ("job.sh", "train.slurm", "fit.py", "env.img", "env.img.env", "data.csv",
                 "packed.img.zst", ".hidden.sh", "notes.txt", f"{HOSTILE}.sh"):  # fmt: skip
        (d / name).write_text("")
    (d / "runme").write_text("echo\n")
    (d / "runme").chmod(0o755)
    (d / "shebang").write_text("#!/bin/sh\necho\n")
    (d / "sub").mkdir()
    return d


def test_scripts_are_job_scripts_and_directories(scripts_dir: Path) -> None:
    assert completers.scripts("", cwd=scripts_dir) == [
        f"{HOSTILE}.sh", "fit.py", "job.sh", "runme", "shebang", "train.slurm", "sub/"
    ]  # fmt: skip
    assert completers.scripts("j", cwd=scripts_dir) == ["job.sh"]
    assert completers.scripts(".", cwd=scripts_dir) == [".hidden.sh"]
    assert completers.scripts("sub/", cwd=scripts_dir) == []
    assert completers.scripts(f"{scripts_dir}/t") == [f"{scripts_dir}/train.slurm"]


def test_config_keys_carry_their_current_values(monkeypatch: pytest.MonkeyPatch) -> None:
    from condatainer import config

    config.set_value("gpu", "off")
    keys = completers.config_keys("")
    assert list(keys) == sorted(config.KEYS)
    assert keys["gpu"] == "off" and keys["default_size"] == "10G" and keys["base_image"] == ""
    assert len(keys["shim_exclude"]) == 40 and keys["shim_exclude"].endswith("...")
    assert list(completers.config_keys("mi")) == [
        "micromamba", "micromamba_channel", "micromamba_version"
    ]  # fmt: skip
    config.paths()["config"].write_text("gpu: [\n")  # broken: the keys are still offered
    assert completers.config_keys("gp") == {"gpu": ""}


def test_config_values(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    work = tmp_path / "work"
    (work / "logs").mkdir(parents=True)
    (work / "base.sif").write_text("")
    monkeypatch.chdir(work)
    assert completers.config_values("", "gpu") == ["auto", "on", "off"]
    assert completers.config_values("o", "hook_messages") == ["on", "off"]
    assert "conda" in completers.config_values("", "default_profile")
    assert completers.config_values("", "default_size") == ["10G"]
    assert completers.config_values("2", "default_size") == []
    assert completers.config_values("", "channels") == ["conda-forge"]
    assert completers.config_values("", "base_image") == ["base.sif", "logs/"]
    assert completers.config_values("", "logs_dir") == ["logs/"]
    assert completers.config_values("", "no_such_key") == []
    assert completers.config_values("", None) == []


def test_protocol_config_and_run(scripts_dir: Path) -> None:
    assert tab("condatainer config get gp", scripts_dir) == ["gpu"]
    assert tab("cnt config set gpu ", scripts_dir) == ["auto", "on", "off"]
    assert tab("cnt config set hook_messages of", scripts_dir) == ["off"]
    assert tab("cnt config get gp", scripts_dir, shell="zsh") == ["gpu:auto"]
    assert tab("cnt run j", scripts_dir) == ["job.sh"]
    assert tab("cnt run -c 4 --local t", scripts_dir) == ["train.slurm"]
    assert tab("cnt header --insert f", scripts_dir) == ["fit.py"]
    assert "data.csv" in tab("cnt run job.sh ", scripts_dir)  # the script's own arguments


def test_protocol_fish_gets_a_line_per_candidate_with_tab_descriptions(tmp_path: Path) -> None:
    got = tab(
        "condatainer mm re",
        tmp_path,
        shell="fish",
        _ARGCOMPLETE_IFS="\n",
        _ARGCOMPLETE_DFS="\t",
        sep="\n",
    )
    assert got == ["remove\tremove packages"]


# --- images --------------------------------------------------------------------------------


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    tmp_path = tmp_path / "tree"
    tmp_path.mkdir()
    for name in (
        "env.img",
        "data.ext3",
        "notes.txt",
        "env.img.env",
        ".hidden.img",
        f"{HOSTILE}.img",
    ):
        (tmp_path / name).write_text("")
    for name in ("sub", ".cache", "overlay"):
        (tmp_path / name).mkdir()
    (tmp_path / "sub" / "inner.img").write_text("")
    (tmp_path / "sub" / "deeper").mkdir()
    (tmp_path / "sub" / "x.IMG.txt").write_text("")
    return tmp_path


def test_images_lists_image_files_then_directories(tree: Path) -> None:
    assert completers.images("", cwd=tree) == [
        f"{HOSTILE}.img",
        "data.ext3",
        "env.img",
        "overlay/",
        "sub/",
    ]


def test_images_filters_by_prefix(tree: Path) -> None:
    assert completers.images("e", cwd=tree) == ["env.img"]
    assert completers.images("s", cwd=tree) == ["sub/"]
    assert completers.images("zzz", cwd=tree) == []
    assert completers.images("'", cwd=tree) == [f"{HOSTILE}.img"]


def test_images_descends_into_the_typed_directory(tree: Path) -> None:
    assert completers.images("sub/", cwd=tree) == ["sub/inner.img", "sub/deeper/"]
    assert completers.images("sub/i", cwd=tree) == ["sub/inner.img"]


def test_images_shows_hidden_entries_only_for_a_dot_prefix(tree: Path) -> None:
    assert completers.images(".", cwd=tree) == [".hidden.img", ".cache/"]


def test_images_absolute_and_home_prefixes(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert completers.images(f"{tree}/sub/") == [f"{tree}/sub/inner.img", f"{tree}/sub/deeper/"]
    monkeypatch.setenv("HOME", str(tree))
    assert completers.images("~/sub/i") == ["~/sub/inner.img"]


def test_images_of_a_missing_or_unreadable_directory_is_empty(tree: Path) -> None:
    assert completers.images("nowhere/", cwd=tree) == []
    assert completers.images("notes.txt/", cwd=tree) == []


# --- fixed words ---------------------------------------------------------------------------


def test_profiles_offers_names_and_aliases() -> None:
    assert completers.profiles("") == profiles.names()
    assert completers.profiles("d") == ["default", "data"]
    assert completers.profiles("x") == []


def test_shells() -> None:
    assert completers.shells("") == ["bash", "zsh", "fish"]
    assert completers.shells("z") == ["zsh"]
    assert completers.shells("f") == ["fish"]


def test_mm_ops_come_with_their_summaries() -> None:
    ops = completers.mm_ops("")
    assert list(ops) == [
        "install",
        "remove",
        "update",
        "list",
        "search",
        "export",
        "clean",
        "pin",
        "channels",
    ]
    assert ops["remove"] == "remove packages"
    assert list(completers.mm_ops("p")) == ["pin"]


# --- mm arguments --------------------------------------------------------------------------


@pytest.fixture
def listed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An image path (not a real image) with fake installed and channel listings."""
    image = tmp_path / "proj" / "env.img"
    image.parent.mkdir()
    image.write_text("")
    installed = pkgcache.installed_file(image)
    installed.parent.mkdir(parents=True)
    installed.write_text("cnt-hello\nnumpy\npython\n")
    pkgcache.channel_file(image).write_text("cnt-app\ncnt-hello\nnumba\nnumpy\npython\n")
    monkeypatch.chdir(tmp_path)
    return image


def test_installed_names_for_remove_update_pin(listed: Path) -> None:
    for op in ("remove", "update", "pin"):
        assert completers.mm_args("", op, str(listed)) == ["cnt-hello", "numpy", "python"]
    assert completers.mm_args("nu", "remove", str(listed)) == ["numpy"]


def test_channel_names_for_install_and_search(listed: Path) -> None:
    assert completers.mm_args("nu", "install", str(listed)) == ["numba", "numpy"]
    assert completers.mm_args("cnt-", "search", str(listed)) == ["cnt-app", "cnt-hello"]


def test_the_image_is_o_then_cnt_overlay_then_autoload(listed: Path, tmp_path: Path) -> None:
    env = {"CNT_OVERLAY": str(listed), "HOME": str(tmp_path)}
    assert completers.mm_args("nu", "remove", None, environ=env) == ["numpy"]
    env = {"HOME": str(tmp_path)}
    assert completers.mm_args("nu", "remove", None, environ=env, cwd=listed.parent) == ["numpy"]
    assert completers.mm_args("nu", "remove", None, environ=env, cwd=tmp_path) == []
    other = tmp_path / "other.img"
    assert (
        completers.mm_args("nu", "remove", str(other), environ={"CNT_OVERLAY": str(listed)}) == []
    )


def test_a_tilde_in_o_is_expanded(listed: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(listed.parent))  # the cache stays under XDG_CACHE_HOME
    assert completers.mm_args("nu", "remove", "~/env.img") == ["numpy"]


def test_options_after_a_dash(listed: Path) -> None:
    assert completers.mm_args("-", "pin", str(listed)) == list(mm.TABLE["pin"].options)
    assert completers.mm_args("--ch", "install", str(listed)) == ["--channel"]
    assert completers.mm_args("-", "clean", str(listed)) == []


def test_no_names_after_an_option_that_takes_a_value(listed: Path) -> None:
    assert completers.mm_args("", "install", str(listed), previous=["-c"]) == []
    assert completers.mm_args("", "install", str(listed), previous=["numpy", "--file"]) == []
    assert completers.mm_args("nu", "install", str(listed), previous=["-c", "x"]) == [
        "numba",
        "numpy",
    ]


def test_channels_offers_its_actions_first(listed: Path) -> None:
    assert completers.mm_args("", "channels", str(listed)) == ["get", "append", "prepend", "remove"]
    assert completers.mm_args("", "channels", str(listed), previous=["append"]) == []


def test_unknown_op_or_no_image_offers_nothing(tmp_path: Path) -> None:
    assert completers.mm_args("", "frobnicate", None) == []
    assert completers.mm_args("", None, None) == []
    assert (
        completers.mm_args("", "remove", None, environ={"HOME": str(tmp_path)}, cwd=tmp_path) == []
    )


def test_without_a_listing_installed_names_are_read_from_the_image(
    tmp_path: Path, need: Callable[[str], str]
) -> None:
    need("mke2fs")
    from tests.shell.hooklib import make_image

    image = make_image(tmp_path / "env.img", pkgs=["numpy", "cnt-lib"])
    assert not pkgcache.installed_file(image).exists()
    assert completers.mm_args("", "remove", str(image)) == ["cnt-lib", "numpy"]
    assert not pkgcache.installed_file(image).exists(), "TAB must never write the cache"


def test_a_broken_image_offers_nothing(tmp_path: Path) -> None:
    image = tmp_path / "env.img"
    image.write_bytes(b"not an image")
    assert completers.mm_args("", "remove", str(image)) == []
    assert completers.mm_args("", "install", str(image)) == []


# --- the channel-name cache ----------------------------------------------------------------


def _repodata(*names: str, conda: tuple[str, ...] = ()) -> bytes:
    return json.dumps(
        {
            "info": {"subdir": "noarch"},
            "packages": {f"{n}-1.0-0.tar.bz2": {"name": n, "version": "1.0"} for n in names},
            "packages.conda": {f"{n}-1.0-0.conda": {"name": n, "version": "1.0"} for n in conda},
        }
    ).encode()


def test_repodata_names() -> None:
    data = _repodata("numpy", "numba", "numpy", conda=("python",))
    assert pkgcache.repodata_names(data) == ["numba", "numpy", "python"]
    assert pkgcache.repodata_names(b"[1, 2]") == []
    assert pkgcache.repodata_names(b"{not json") == []
    assert pkgcache.repodata_names(b'{"packages": {"a": {"name": 3}}, "packages.conda": []}') == []


def test_only_plain_package_names_are_kept() -> None:
    hostile = [HOSTILE, "$(reboot)", "a b", "\x1b[31mred", "", "-rf", "ok_name-1.0+x", "Numpy"]
    assert pkgcache.safe_names(hostile) == ["Numpy", "ok_name-1.0+x"]


def test_repodata_files_exclude_state_and_info() -> None:
    assert pkgcache.is_repodata("0123abcd.json")
    assert not pkgcache.is_repodata("0123abcd.state.json")
    assert not pkgcache.is_repodata("0123abcd.info.json")
    assert not pkgcache.is_repodata("0123abcd.solv")


def test_the_channel_listing_is_the_installed_listings_sibling(tmp_path: Path) -> None:
    image = tmp_path / HOSTILE / "env.img"
    installed = str(pkgcache.installed_file(image))
    # What the shell computes from _cnt_pkgs: ${_cnt_pkgs%.txt}.channel.txt
    assert str(pkgcache.channel_file(image)) == installed[: -len(".txt")] + ".channel.txt"
    assert pkgcache.installed_file(image) == pkgcache.installed_file(image)


def _image_with_repodata(tmp_path: Path, files: dict[str, bytes]) -> Path:
    import shutil
    import subprocess

    from condatainer import runner

    tree = tmp_path / "tree"
    cache = tree / "upper" / "ext3" / "env" / "pkgs" / "cache"
    cache.mkdir(parents=True)
    (tree / "work").mkdir()
    for name, data in files.items():
        (cache / name).write_bytes(data)
    image = tmp_path / "env.img"
    mke2fs = runner.which("mke2fs")
    assert mke2fs is not None
    subprocess.run(
        [mke2fs, "-q", "-F", "-t", "ext3", "-d", str(tree), str(image), "8M"],
        check=True,
        capture_output=True,
    )
    shutil.rmtree(tree)
    return image


def test_refresh_reads_the_repodata_cache_of_the_image(
    tmp_path: Path, need: Callable[[str], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    need("mke2fs")
    image = _image_with_repodata(
        tmp_path,
        {
            "1a2b3c4d.json": _repodata("numpy", "numba"),
            "1a2b3c4d.state.json": json.dumps({"url": "file:///c/noarch/repodata.json"}).encode(),
            "5e6f7a8b.json": _repodata("cnt-hello", conda=("python", HOSTILE)),
            "5e6f7a8b.info.json": _repodata("not-a-channel-name"),
        },
    )
    path = pkgcache.refresh(image)
    assert path == pkgcache.channel_file(image)
    assert path.read_text() == "cnt-hello\nnumba\nnumpy\npython\n"

    from condatainer.image import e2fs

    def fail(*_: object) -> bytes:
        raise AssertionError("an unchanged repodata cache must not be read again")

    monkeypatch.setattr(e2fs, "read_inode", fail)
    assert pkgcache.refresh(image).read_text() == "cnt-hello\nnumba\nnumpy\npython\n"


def test_refresh_of_an_image_without_repodata_writes_an_empty_listing(
    tmp_path: Path, need: Callable[[str], str]
) -> None:
    need("mke2fs")
    from tests.shell.hooklib import make_image

    image = make_image(tmp_path / "env.img", pkgs=["numpy"])
    assert pkgcache.refresh(image).read_text() == ""


# --- the data the mm-* completion templates print ------------------------------------------


def test_mm_completion_data_follows_the_mm_table() -> None:
    ctx = mmcomplete.context()
    kinds = {op["name"]: op["kind"] for op in ctx["ops"]}
    assert kinds == {
        "install": "channel",
        "remove": "installed",
        "update": "installed",
        "list": "none",
        "search": "channel",
        "export": "none",
        "clean": "none",
        "pin": "installed",
        "channels": "actions",
    }
    options = {op["name"]: op["options"] for op in ctx["ops"]}
    assert options["pin"] == ["-l", "--list", "-r", "-d", "--remove"]
    assert ctx["file_options"] == ["-f", "--file"]
    assert ctx["channel_options"] == ["-c", "--channel"]
    assert ctx["channel_suffix"] == ".channel.txt"


# --- argcomplete's protocol, end to end ----------------------------------------------------


def tab(line: str, cwd: Path, shell: str = "bash", sep: str = "\v", **env: str) -> list[str]:
    """What `python -m condatainer` answers on fd 8 for a TAB at the end of `line`."""
    read_fd, write_fd = os.pipe()
    full_env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "_ARGCOMPLETE": "1",
        "_ARGCOMPLETE_SHELL": shell,
        "COMP_LINE": line,
        "COMP_POINT": str(len(line)),
        "_ARGCOMPLETE_SUPPRESS_SPACE": "1",
        **env,
    }
    os.set_inheritable(write_fd, True)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import os; os.dup2({write_fd}, 8); import runpy; "
            "runpy.run_module('condatainer', run_name='__main__')",
        ],
        cwd=cwd,
        env=full_env,
        pass_fds=(write_fd,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as reader:
        out = reader.read().decode()
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err.decode()
    return [c for c in out.split(sep) if c]


def test_protocol_subcommands(tmp_path: Path) -> None:
    assert tab("condatainer ov", tmp_path) == ["overlay"]
    assert tab("cnt compl", tmp_path) == ["completion"]


def test_protocol_positional_images_without_options(tree: Path) -> None:
    got = tab("condatainer overlay resize ", tree)
    # Escaped for an unquoted bash word; the hostile name holds no backslash of its own.
    assert [c.replace("\\", "") for c in got] == [
        f"{HOSTILE}.img",
        "data.ext3",
        "env.img",
        "overlay/",
        "sub/",
    ]
    assert got[0].startswith("\\'\\\"\\;\\&\\&e-\\$\\ ")
    assert "--size" in tab("condatainer overlay resize -", tree)


def test_protocol_profiles_and_shells(tmp_path: Path) -> None:
    assert tab("condatainer o -p ba", tmp_path) == ["balanced"]
    assert tab("condatainer completion ", tmp_path) == ["bash", "zsh", "fish"]
    assert tab("condatainer init f", tmp_path) == ["fish"]


def test_protocol_mm_op_options_replace_mm_options(listed: Path) -> None:
    assert tab("condatainer mm pin -", listed.parent) == list(mm.TABLE["pin"].options)
    assert tab("condatainer mm -", listed.parent) == [
        *("-h", "--help", "-o", "--overlay", "--wait-lock"),
        *("-q", "--quiet", "-v", "--verbose"),  # the output options, after the command too
    ]
    assert tab("condatainer mm install numpy --ch", listed.parent) == ["--channel"]


def test_protocol_mm_package_names(listed: Path) -> None:
    cwd = listed.parent
    assert tab("condatainer mm remove ", cwd) == ["cnt-hello", "numpy", "python"]
    assert tab(f"condatainer mm -o {listed} install nu", cwd.parent) == ["numba", "numpy"]
    assert tab("condatainer mm update nu", cwd.parent, CNT_OVERLAY=str(listed)) == ["numpy"]


def test_protocol_zsh_gets_descriptions_and_never_none(listed: Path) -> None:
    got = tab("condatainer mm re", listed.parent, shell="zsh")
    assert got == ["remove:remove packages"]
    assert tab("condatainer mm pin --l", listed.parent, shell="zsh") == ["--list:"]
