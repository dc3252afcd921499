"""CondaTainer's command lines on real images and the builtin runtime (issue 13, the rows
that run something): `exec` without a command, Apptainer options the builtin runtime cannot
honour, top-level `info`/`export`, export's flags and channel order, and `mm` as CondaTainer
users type it.  Real images, real packages from the test world's channel, real containers.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from tests.support import World, cnt, debugfs_cat, ok

pytestmark = pytest.mark.root


@pytest.fixture
def image(world: World, tmp_path: Path) -> Path:
    """An env with cnt-hello, made with CondaTainer's -S for --sparse."""
    img = tmp_path / "env.img"
    ok(cnt("o", str(img), "-s", "256M", "-S", "--", "cnt-hello", cwd=tmp_path))
    return img


def test_exec_without_a_command_opens_a_read_only_shell(image: Path, tmp_path: Path) -> None:
    script = 'touch /ext3/env/new; echo "rc=$?"; echo "prefix=$CONDA_PREFIX"; cnt-hello\n'
    res = cnt("exec", "-o", str(image), cwd=tmp_path, input=script)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert "rc=1" in lines, "read-only, as CondaTainer's exec"
    assert "prefix=/ext3/env" in lines and "hello from cnt-hello 1.0" in lines
    assert "Read-only file system" in res.stderr
    assert debugfs_cat(image, "upper/ext3/env/new") is None
    writable = cnt("exec", "-w", "-o", str(image), cwd=tmp_path, input="touch /ext3/env/new\n")
    assert writable.returncode == 0, writable.stderr
    assert debugfs_cat(image, "upper/ext3/env/new") == ""


def test_the_builtin_runtime_names_the_apptainer_options_it_cannot_honour(
    image: Path, tmp_path: Path
) -> None:
    for _ in range(2):  # the second call is replayed from the cache: it says so too
        res = cnt("exec", "--nv", "--home=/elsewhere", "-o", str(image), "cnt-hello", cwd=tmp_path)
        assert res.returncode == 0, res.stderr
        assert res.stdout.strip() == "hello from cnt-hello 1.0"
        assert "ignores Apptainer options: --nv --home=/elsewhere" in res.stderr
    plain = ok(cnt("exec", "-o", str(image), "cnt-hello", cwd=tmp_path))
    assert "ignores" not in plain.stderr, "a different key: not the entry with the options"


def test_info_and_export_at_the_top_level(image: Path, tmp_path: Path) -> None:
    info = ok(cnt("info", str(image), "--json", cwd=tmp_path))
    assert info.stdout == ok(cnt("overlay", "info", str(image), "--json")).stdout
    assert '"cnt-hello"' in info.stdout
    exported = ok(cnt("export", str(image), cwd=tmp_path))
    assert exported.stdout == ok(cnt("overlay", "export", str(image))).stdout
    assert "cnt-hello=1.0=" in exported.stdout


def test_export_takes_condatainers_flags(world: World, image: Path, tmp_path: Path) -> None:
    explicit = ok(cnt("export", "-e", str(image), cwd=tmp_path)).stdout
    assert "@EXPLICIT" in explicit and "/cnt-hello-1.0-" in explicit and "#" in explicit
    plain = ok(cnt("overlay", "export", "--explicit", "--no-md5", str(image))).stdout
    urls = [line for line in plain.splitlines() if line.startswith("file://")]
    assert urls and all("#" not in u for u in urls)
    history = yaml.safe_load(ok(cnt("export", "--from-history", str(image))).stdout)
    assert history["dependencies"] == ["cnt-hello"]
    no_builds = yaml.safe_load(ok(cnt("export", "--no-builds", str(image))).stdout)
    assert "cnt-hello=1.0" in no_builds["dependencies"]
    subdir = yaml.safe_load(ok(cnt("export", "--channel-subdir", str(image))).stdout)
    assert any(
        d.startswith(f"{world.url}/") and "::cnt-hello=" in d for d in subdir["dependencies"]
    )
    # One implementation: `mm export` takes the same flags and prints the same.
    same = ok(cnt("mm", "-o", str(image), "export", "--no-builds")).stdout
    assert yaml.safe_load(same) == no_builds
    # -e is --explicit here, as in CondaTainer; --cleanenv keeps its long spelling.
    ok(cnt("export", "--cleanenv", str(image)))


def test_export_lists_channels_in_condarc_priority_order(
    world: World, image: Path, tmp_path: Path
) -> None:
    """micromamba lists channels sorted by name; a solve from the file takes them in the
    file's order, so export puts them in the order the image's .condarc gives them."""
    mirror = tmp_path / "zz-mirror"
    shutil.copytree(world.channel, mirror)
    mirror_url = f"file://{mirror}"
    ok(cnt("mm", "-o", str(image), "install", "-c", mirror_url, "cnt-lib", cwd=tmp_path))
    ok(cnt("mm", "-o", str(image), "channels", "prepend", mirror_url, cwd=tmp_path))
    condarc = debugfs_cat(image, "upper/ext3/env/.condarc")
    assert condarc is not None
    priority = yaml.safe_load(condarc)["channels"]
    assert priority.index(mirror_url) < priority.index(world.url)
    exported = yaml.safe_load(ok(cnt("export", str(image), cwd=tmp_path)).stdout)
    assert exported["channels"] == [mirror_url, world.url], "not micromamba's sorted order"
    ok(cnt("mm", "-o", str(image), "channels", "remove", mirror_url, cwd=tmp_path))
    ok(cnt("mm", "-o", str(image), "channels", "append", mirror_url, cwd=tmp_path))
    exported = yaml.safe_load(ok(cnt("export", str(image), cwd=tmp_path)).stdout)
    assert exported["channels"] == [world.url, mirror_url]


def test_mm_pin_and_channels_say_what_changed(image: Path, tmp_path: Path) -> None:
    pinned = ok(cnt("mm", "-o", str(image), "pin", "cnt-hello", cwd=tmp_path)).stdout
    assert pinned.splitlines() == ["pinned: cnt-hello ==1.0"]
    gone = ok(cnt("mm", "-o", str(image), "pin", "-r", "cnt-hello", "numpy")).stdout
    assert gone.splitlines() == ["unpinned: cnt-hello", "not pinned: numpy"]
    added = ok(cnt("mm", "-o", str(image), "channels", "append", "extra-channel")).stdout
    assert added.splitlines()[0] == "appended: extra-channel"
    assert added.splitlines()[-1] == "  - extra-channel", "then the list, in priority order"
    removed = ok(cnt("mm", "-o", str(image), "channels", "remove", "extra-channel", "nope"))
    assert removed.stdout.splitlines()[:2] == ["removed: extra-channel", "not a channel: nope"]
    assert "extra-channel" not in removed.stdout.split("in priority order:")[1]


def test_mm_takes_the_image_after_the_operation(image: Path, tmp_path: Path) -> None:
    ok(cnt("mm", "install", "-o", str(image), "cnt-app", cwd=tmp_path))
    res = ok(cnt("exec", "-o", str(image), "cnt-app", cwd=tmp_path))
    assert res.stdout.strip() == "cnt-app using cnt-lib 2.0"
    listed = ok(cnt("mm", "list", f"--overlay={image}", cwd=tmp_path)).stdout
    assert "cnt-app" in listed
    both = cnt("mm", "-o", str(image), "list", "-o", str(tmp_path / "other.img"))
    assert both.returncode == 2 and "two images" in both.stderr


def test_mm_refuses_a_nested_env_with_the_reason(image: Path, tmp_path: Path) -> None:
    for words in (["-n", "myenv"], ["--name=myenv"], ["-p", "/ext3/env/envs/x"]):
        res = cnt("mm", "-o", str(image), "install", *words, "cnt-lib", cwd=tmp_path)
        assert res.returncode == 2, res.stderr
        assert res.stderr.startswith("condatainer: error: mm install works on the image's one env")
        assert "hint: drop " in res.stderr
    assert debugfs_cat(image, "upper/ext3/env/envs/myenv/conda-meta/history") is None
