"""config: defaults, file, CNT_* variables, sources, validation with locations, atomic writes."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from condatainer import config
from condatainer.errors import ConfigError


@pytest.fixture
def cfg_file() -> Path:
    path = config.paths()["config"]
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def test_defaults_without_file_or_env() -> None:
    cfg = config.load()
    assert cfg == config.Config()
    assert cfg.runtime == "auto"
    assert cfg.apptainer_bin is None
    assert cfg.binds == ()
    assert cfg.default_size == "10G"
    assert cfg.default_profile == "balanced"
    assert cfg.autoload == "on"
    assert cfg.channels == ("conda-forge",)
    assert "bash" in cfg.shim_exclude and "[" in cfg.shim_exclude
    assert all(cfg.source(k) == "default" for k in config.KEYS)


def test_keys_are_the_documented_ones() -> None:
    assert config.KEYS == (
        "apptainer_bin", "runtime", "base_image", "base_source", "fetch_dir", "binds", "gpu",
        "default_size", "default_profile", "autoload", "hook_messages", "shim_exclude", "submit",
        "logs_dir", "channels", "micromamba", "micromamba_channel", "micromamba_version",
        "ca_bundle", "host_ca_env",
    )  # fmt: skip


def test_paths_follow_xdg(tmp_path: Path) -> None:
    env = {
        "HOME": str(tmp_path / "h"),
        "XDG_CONFIG_HOME": str(tmp_path / "c"),
        "XDG_DATA_HOME": str(tmp_path / "d"),
        "XDG_CACHE_HOME": str(tmp_path / "k"),
        "XDG_STATE_HOME": str(tmp_path / "s"),
    }
    assert config.paths(env) == {
        "config": tmp_path / "c" / "condatainer" / "config.yaml",
        "site": Path(config.SITE_CONFIG),
        "data": tmp_path / "d" / "condatainer",
        "cache": tmp_path / "k" / "condatainer",
        "state": tmp_path / "s" / "condatainer",
    }


def test_paths_fall_back_to_home_and_ignore_relative_xdg(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "XDG_CONFIG_HOME": "relative/dir", "XDG_DATA_HOME": ""}
    p = config.paths(env)
    assert p["config"] == tmp_path / ".config" / "condatainer" / "config.yaml"
    assert p["data"] == tmp_path / ".local" / "share" / "condatainer"
    assert p["cache"] == tmp_path / ".cache" / "condatainer"
    assert p["state"] == tmp_path / ".local" / "state" / "condatainer"


@pytest.mark.parametrize(
    "env",
    [
        {"HOME": "/h", "XDG_DATA_HOME": "/d/", "XDG_CACHE_HOME": "//k//x", "XDG_STATE_HOME": "s"},
        {"HOME": "/h/", "XDG_CONFIG_HOME": "", "XDG_CACHE_HOME": "rel"},
        {"HOME": ""},
        {},
    ],
)
def test_the_plain_xdg_directories_are_the_paths(env: dict[str, str]) -> None:
    """`xdg` (strings, for the import-light paths) names the same directories as `paths`."""
    from condatainer import memo, xdg

    paths = config.paths(env)
    for kind in ("data", "cache", "state"):
        assert Path(xdg.directory(kind, env)) == paths[kind]
    assert Path(xdg.directory("config", env)) / "config.yaml" == paths["config"]
    assert memo.cache_dir(env) == xdg.directory("cache", env)


def test_file_values_and_sources(cfg_file: Path) -> None:
    cfg_file.write_text(
        "# my settings\n"
        "runtime: builtin\n"
        "binds:\n"
        "  - /scratch\n"
        "  - /data:/mnt/data:ro\n"
        "gpu: off\n"  # YAML 1.1 boolean false
        "autoload: hint\n"
        "default_size: 20GiB\n"
        "default_profile: genome\n"
        "channels: [conda-forge, bioconda]\n"
        "base_image:\n"  # null: unset
    )
    cfg = config.load()
    assert cfg.runtime == "builtin"
    assert cfg.binds == ("/scratch", "/data:/mnt/data:ro")
    assert cfg.gpu == "off"
    assert cfg.autoload == "hint"
    assert cfg.default_size == "20GiB"
    assert cfg.default_profile == "genome"
    assert cfg.channels == ("conda-forge", "bioconda")
    assert cfg.base_image is None
    assert cfg.source("runtime") == f"file {cfg_file}"
    assert cfg.source("base_image") == "default"
    assert cfg.source("submit") == "default"


def test_yaml_booleans_and_numbers(cfg_file: Path) -> None:
    cfg_file.write_text("gpu: on\nautoload: no\ndefault_size: 4096\n")
    cfg = config.load()
    assert (cfg.gpu, cfg.autoload, cfg.default_size) == ("on", "off", "4096")


def test_env_overrides_file(cfg_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg_file.write_text("runtime: builtin\nsubmit: never\n")
    monkeypatch.setenv("CNT_RUNTIME", "apptainer")
    monkeypatch.setenv("CNT_SUBMIT", "")  # empty counts as unset
    monkeypatch.setenv("CNT_OVERLAY", "/x/env.img")  # not a config key: ignored
    cfg = config.load()
    assert cfg.runtime == "apptainer"
    assert cfg.source("runtime") == "env CNT_RUNTIME"
    assert cfg.submit == "never"
    assert cfg.source("submit") == f"file {cfg_file}"


def test_load_takes_an_explicit_env(tmp_path: Path) -> None:
    cfg = config.load({"HOME": str(tmp_path), "CNT_GPU": "off"})
    assert cfg.gpu == "off"
    assert cfg.source("gpu") == "env CNT_GPU"


@pytest.mark.parametrize(
    ("var", "text", "expected"),
    [
        ("CNT_BINDS", "/a, /b:/c ,,/d:/e:rw", ("/a", "/b:/c", "/d:/e:rw")),
        ("CNT_CHANNELS", "conda-forge,bioconda", ("conda-forge", "bioconda")),
        ("CNT_CHANNELS", "file:///srv/chan", ("file:///srv/chan",)),
        ("CNT_SHIM_EXCLUDE", "git, make  ssh\tperl", ("git", "make", "ssh", "perl")),
        ("CNT_SHIM_EXCLUDE", "git,make", ("git", "make")),
    ],
)
def test_list_parsing_from_env(
    monkeypatch: pytest.MonkeyPatch, var: str, text: str, expected: tuple[str, ...]
) -> None:
    monkeypatch.setenv(var, text)
    key = var.removeprefix("CNT_").lower()
    assert config.load().get(key) == expected


def test_list_key_given_as_a_string_in_the_file(cfg_file: Path) -> None:
    cfg_file.write_text("binds: /a,/b\nshim_exclude: git make\nchannels: []\n")
    cfg = config.load()
    assert cfg.binds == ("/a", "/b")
    assert cfg.shim_exclude == ("git", "make")
    assert cfg.channels == ()


def test_malformed_yaml_names_file_and_line(cfg_file: Path) -> None:
    cfg_file.write_text("runtime: auto\nbinds: [/a, /b\ngpu: on\n")
    with pytest.raises(ConfigError) as err:
        config.load()
    assert str(cfg_file) in err.value.message
    assert " line " in err.value.message
    assert "not valid YAML" in err.value.message
    assert err.value.hint is not None and "condatainer config paths" in err.value.hint


def test_malformed_yaml_line_number_is_right(cfg_file: Path) -> None:
    cfg_file.write_text("runtime: auto\nsubmit: auto\n\tgpu: on\n")  # a tab on line 3
    with pytest.raises(ConfigError, match=r"line 3: not valid YAML"):
        config.load()


def test_top_level_must_be_a_mapping(cfg_file: Path) -> None:
    cfg_file.write_text("- runtime\n- auto\n")
    with pytest.raises(ConfigError, match=r"line 1: the config must be a mapping"):
        config.load()


def test_empty_or_comment_only_file_is_defaults(cfg_file: Path) -> None:
    cfg_file.write_text("# nothing yet\n")
    assert config.load() == config.Config()
    cfg_file.write_text("")
    assert config.load() == config.Config()


def test_config_path_that_is_a_directory(cfg_file: Path) -> None:
    cfg_file.mkdir()
    with pytest.raises(ConfigError, match="is a directory"):
        config.load()


def test_unknown_key_in_file_names_line_and_suggests(cfg_file: Path) -> None:
    cfg_file.write_text("runtime: auto\n\nbind: [/a]\n")
    with pytest.raises(ConfigError) as err:
        config.load()
    assert f"{cfg_file} line 3: unknown key 'bind'" in err.value.message
    assert "did you mean 'binds'" in err.value.message
    assert err.value.hint is not None and "apptainer_bin" in err.value.hint


def test_bad_value_in_file_names_key_value_allowed_and_line(cfg_file: Path) -> None:
    cfg_file.write_text("gpu: auto\nruntime:\n  docker\n")
    with pytest.raises(ConfigError) as err:
        config.load()
    msg = err.value.message
    assert f"{cfg_file} line 3" in msg
    assert "'docker'" in msg and "runtime" in msg
    assert "auto, apptainer, singularity, builtin" in msg


def test_bad_value_in_env_names_the_variable(
    cfg_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg_file.write_text("gpu: on\n")
    monkeypatch.setenv("CNT_GPU", "maybe")
    with pytest.raises(ConfigError) as err:
        config.load()
    assert err.value.message.startswith("CNT_GPU: invalid value 'maybe' for gpu")
    assert "auto, on, off" in err.value.message
    assert err.value.hint is not None and "unset CNT_GPU" in err.value.hint


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        ("default_size", "10X", "size"),
        ("default_size", "1M", "minimum"),
        ("default_profile", "tiny", "small, balanced, large, conda"),
        ("autoload", "sometimes", "on, hint, off"),
        ("submit", "always", "auto, never"),
        ("binds", "/a:relative", "must be absolute"),
        ("binds", "/a:/b:rx", "not ro or rw"),
        ("binds", ":/b", "HOST[:CONTAINER"),
        ("shim_exclude", "/usr/bin/git", "not a command name"),
        ("base_source", "debian:12-slim", "docker://, oras://"),
        ("base_source", "docker://debian:12 ; rm", "not an image reference"),
        ("fetch_dir", "relative/dir", "not an absolute path"),
        ("micromamba_version", "2.x", "a major series like 2"),
        ("micromamba_version", "2.3.1.4", "not a version series"),
        ("micromamba_channel", "conda forge", "contains no whitespace"),
    ],
)
def test_bad_values_from_env(
    monkeypatch: pytest.MonkeyPatch, key: str, value: str, fragment: str
) -> None:
    monkeypatch.setenv(config.env_var(key), value)
    with pytest.raises(ConfigError, match=key) as err:
        config.load()
    assert fragment in err.value.message
    assert config.env_var(key) in err.value.message


def test_micromamba_keys(cfg_file: Path) -> None:
    cfg_file.write_text(
        "micromamba: ~/sw/micromamba\nmicromamba_channel: https://mirror.example/cf\n"
        "micromamba_version: '2.3'\nca_bundle: /etc/site-ca.pem\n"
    )
    cfg = config.load()
    assert (cfg.micromamba, cfg.micromamba_channel) == (
        "~/sw/micromamba",
        "https://mirror.example/cf",
    )
    assert (cfg.micromamba_version, cfg.ca_bundle) == ("2.3", "/etc/site-ca.pem")
    assert config.Config().micromamba_version == "2"  # the series the mm table is written for
    config.set_value("micromamba", "")
    assert config.load().micromamba is None  # unset: condatainer's own again
    cfg_file.write_text("micromamba_version: 2\n")
    assert config.load().micromamba_version == "2"
    cfg_file.write_text("micromamba_version: 2.10\n")
    with pytest.raises(ConfigError, match="quote it"):
        config.load()


def test_env_channels_put_the_users_first_then_config_each_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CNT_CHANNELS", "site-mirror,conda-forge")
    cfg = config.load()
    assert config.env_channels(cfg) == ("site-mirror", "conda-forge")
    assert config.env_channels(cfg, ["bioconda", "conda-forge", "bioconda"]) == (
        "bioconda",
        "conda-forge",
        "site-mirror",
    )


def test_wrong_yaml_types(cfg_file: Path) -> None:
    cfg_file.write_text("channels:\n  - conda-forge\n  - 42\n")
    with pytest.raises(ConfigError, match=r"line 2: .*list item 42 is a number"):
        config.load()
    cfg_file.write_text("runtime: [auto]\n")
    with pytest.raises(ConfigError, match="expected a string, got a list"):
        config.load()


def test_get_and_source_reject_unknown_keys() -> None:
    cfg = config.load()
    with pytest.raises(ConfigError, match=r"unknown config key 'runtim'.*did you mean 'runtime'"):
        cfg.get("runtim")
    with pytest.raises(ConfigError) as err:
        cfg.source("nope")
    assert err.value.hint is not None and "default_profile" in err.value.hint


def test_get_renders_for_scripts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CNT_BINDS", "/a,/b c")
    cfg = config.load()
    assert config.get(cfg, "binds") == "/a\n/b c"
    assert config.get(cfg, "runtime") == "auto"
    assert config.get(cfg, "apptainer_bin") == ""
    with pytest.raises(ConfigError):
        config.get(cfg, "bogus")


def test_show_lists_every_key_with_value_and_source(monkeypatch: pytest.MonkeyPatch) -> None:
    config.set_value("runtime", "builtin")
    monkeypatch.setenv("CNT_GPU", "off")
    text = config.show(config.load())
    lines = text.splitlines()
    assert lines[0].split() == ["KEY", "VALUE", "SOURCE"]
    rows = {line.split()[0]: line for line in lines[1:] if not line.startswith(" ")}
    assert set(rows) == set(config.KEYS)
    assert rows["runtime"].split()[1:] == ["builtin", "file", str(config.paths()["config"])]
    assert rows["gpu"].split()[1:] == ["off", "env", "CNT_GPU"]
    assert rows["apptainer_bin"].split()[1:] == ["(auto)", "default"]
    # A long list wraps inside the value column and keeps every item.
    continuation = [line for line in lines if line.startswith(" ")]
    assert continuation
    items = " ".join([rows["shim_exclude"].split(None, 1)[1], *continuation]).split()
    assert "python-config" in items and "[," in items


def test_set_value_creates_file_and_round_trips() -> None:
    path = config.set_value("binds", "/scratch, /data:/data:ro")
    assert path == config.paths()["config"]
    assert config.load().binds == ("/scratch", "/data:/data:ro")
    config.set_value("channels", ["bioconda", "conda-forge"])
    config.set_value("autoload", "off")
    config.set_value("gpu", "on")
    cfg = config.load()
    assert cfg.channels == ("bioconda", "conda-forge")
    assert cfg.autoload == "off"  # written quoted: a bare `off` would read back as false
    assert cfg.gpu == "on"
    assert cfg.binds == ("/scratch", "/data:/data:ro")
    assert cfg.source("gpu") == f"file {path}"


def test_set_value_keeps_comments_and_other_entries(cfg_file: Path) -> None:
    original = (
        "# condatainer settings\n"
        "runtime: auto   # keep auto on the cluster\n"
        "binds:\n"
        "  - /scratch   # fast disk\n"
        "  - /data\n"
        "# below: job submission\n"
        "submit: never\n"
    )
    cfg_file.write_text(original)
    config.set_value("binds", ["/work"])
    text = cfg_file.read_text()
    assert text == (
        "# condatainer settings\n"
        "runtime: auto   # keep auto on the cluster\n"
        "binds: [/work]\n"
        "# below: job submission\n"
        "submit: never\n"
    )
    config.set_value("runtime", "builtin")
    assert "runtime: builtin   # keep auto on the cluster\n" in cfg_file.read_text()
    config.set_value("gpu", "off")
    assert cfg_file.read_text().endswith("submit: never\ngpu: 'off'\n")
    assert config.load().gpu == "off"


def test_set_value_none_removes_the_entry(cfg_file: Path) -> None:
    cfg_file.write_text("runtime: builtin  # temporary\nsubmit: never\n")
    config.set_value("runtime", None)
    assert cfg_file.read_text() == "submit: never\n"
    config.set_value("apptainer_bin", "/opt/apptainer/bin/apptainer")
    config.set_value("apptainer_bin", "")
    assert cfg_file.read_text() == "submit: never\n"
    assert config.load().source("runtime") == "default"


def test_set_value_rewrites_a_flow_mapping(cfg_file: Path) -> None:
    cfg_file.write_text("{runtime: builtin, submit: never}\n")
    config.set_value("gpu", "off")
    cfg = config.load()
    assert (cfg.runtime, cfg.submit, cfg.gpu) == ("builtin", "never", "off")


def test_set_value_validates_before_writing(cfg_file: Path) -> None:
    cfg_file.write_text("runtime: auto\n")
    with pytest.raises(ConfigError) as err:
        config.set_value("runtime", "docker")
    assert "'docker'" in err.value.message and "auto, apptainer" in err.value.message
    with pytest.raises(ConfigError) as err:
        config.set_value("runtme", "auto")
    assert "valid keys" in (err.value.hint or "") and "did you mean 'runtime'" in err.value.message
    with pytest.raises(ConfigError, match="minimum"):
        config.set_value("default_size", "1M")
    assert cfg_file.read_text() == "runtime: auto\n"


def test_set_value_refuses_malformed_file(cfg_file: Path) -> None:
    cfg_file.write_text("runtime: [auto\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        config.set_value("gpu", "on")
    assert cfg_file.read_text() == "runtime: [auto\n"


def test_set_value_can_fix_a_bad_value(cfg_file: Path) -> None:
    cfg_file.write_text("runtime: docker\n")
    config.set_value("runtime", "auto")
    assert config.load().runtime == "auto"


def test_set_value_is_atomic_and_keeps_mode(
    cfg_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg_file.write_text("runtime: auto\n")
    cfg_file.chmod(0o600)
    config.set_value("submit", "never")
    assert stat.S_IMODE(cfg_file.stat().st_mode) == 0o600
    assert sorted(p.name for p in cfg_file.parent.iterdir()) == ["config.yaml"]

    # A failure while writing leaves the old file and no temporary file behind.
    def broken_replace(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(ConfigError, match="cannot write the config file: No space left"):
        config.set_value("gpu", "off")
    assert cfg_file.read_text() == "runtime: auto\nsubmit: never\n"
    assert sorted(p.name for p in cfg_file.parent.iterdir()) == ["config.yaml"]


def test_set_value_writes_through_a_symlink(cfg_file: Path, tmp_path: Path) -> None:
    real = tmp_path / "dotfiles" / "condatainer.yaml"
    real.parent.mkdir()
    real.write_text("runtime: auto\n")
    cfg_file.symlink_to(real)
    config.set_value("runtime", "builtin")
    assert cfg_file.is_symlink()
    assert real.read_text() == "runtime: builtin\n"


def test_importing_config_does_not_import_yaml() -> None:
    code = "import sys, condatainer.config; assert 'yaml' not in sys.modules, 'yaml imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


# --------------------------------------------------------------------------------------------
# The parse cache: the hook loads the config on every cd, and yaml costs more than the rest


def _load_in_a_new_process() -> tuple[str, bool]:
    """(the runtime a fresh interpreter loads, whether it imported yaml for it)."""
    code = "import sys, condatainer.config as c\nprint(c.load().runtime, 'yaml' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout.split()
    return out[0], out[1] == "True"


def test_a_parsed_file_is_read_back_without_yaml(cfg_file: Path) -> None:
    cfg_file.write_text("# mine\nruntime: builtin\nbinds: [/scratch]\n")
    assert _load_in_a_new_process() == ("builtin", True)  # parsed, and cached
    assert _load_in_a_new_process() == ("builtin", False)  # from the cache
    assert config.load().binds == ("/scratch",)
    cfg_file.write_text("runtime: apptainer\n")  # same size class, new content: parsed again
    assert _load_in_a_new_process() == ("apptainer", True)
    assert _load_in_a_new_process() == ("apptainer", False)


def test_errors_are_the_same_from_the_cache(cfg_file: Path) -> None:
    cfg_file.write_text("runtime: builtin\nruntme: auto\n")
    for _ in range(2):  # the second load uses the cached data
        with pytest.raises(ConfigError, match=r"line 2: unknown key 'runtme'.*runtime"):
            config.load()


def test_what_json_cannot_carry_is_never_cached(cfg_file: Path) -> None:
    cache = config.paths()["cache"] / "config.json"
    cfg_file.write_text("default_size: 2024-01-01\n")  # YAML reads a date
    for _ in range(2):
        with pytest.raises(ConfigError, match="default_size"):
            config.load()
    assert not cache.exists()
    cfg_file.write_text("runtime: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        config.load()
    assert not cache.exists()


def test_a_damaged_or_foreign_cache_is_ignored(cfg_file: Path) -> None:
    cache = config.paths()["cache"] / "config.json"
    cache.parent.mkdir(parents=True, exist_ok=True)
    cfg_file.write_text("runtime: builtin\n")
    for junk in (
        "{not json",
        '{"sha256": "0", "data": {"runtime": "apptainer"}}',
        "[]",
        '{"sha256": null}',
    ):
        cache.write_text(junk)
        assert config.load().runtime == "builtin"


def test_fetch_dir_defaults_to_the_data_dir_and_expands_home(
    monkeypatch: pytest.MonkeyPatch, isolated_env: Path
) -> None:
    cfg = config.load()
    assert cfg.base_source == config.DEFAULT_BASE_SOURCE
    assert config.fetch_dir(cfg) == config.paths()["data"]
    monkeypatch.setenv("CNT_FETCH_DIR", "~/project/cnt")
    assert config.fetch_dir(config.load()) == isolated_env / "project" / "cnt"
    assert config.show(cfg).splitlines()[5].split()[:2] == ["fetch_dir", "(the"]


# --- the site layer ---------------------------------------------------------------------------


def test_site_layer_lies_below_the_users_file(cfg_file: Path, tmp_path: Path) -> None:
    site = Path(os.environ["CNT_SITE_CONFIG"])
    assert site.parent.parent == tmp_path  # conftest: the test's own, never /etc's
    site.parent.mkdir(parents=True)
    site.write_text(
        "channels: [https://mirror.example/conda-forge]\nbase_image: /shared/site.sif\n"
        "binds: [/shared]\n"
    )
    cfg_file.write_text("binds: [/mine]\n")
    cfg = config.load()
    assert cfg.channels == ("https://mirror.example/conda-forge",)
    assert cfg.source("channels") == f"site {site}"
    assert cfg.base_image == "/shared/site.sif"
    assert cfg.binds == ("/mine",) and cfg.source("binds") == f"file {cfg_file}"
    assert cfg.source("gpu") == "default"
    shown = config.show(cfg)
    assert f"site {site}" in shown and f"file {cfg_file}" in shown
    assert site in config.files() and cfg_file in config.files()


def test_site_layer_from_etc_unless_cnt_site_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CNT_SITE_CONFIG")
    assert config.paths()["site"] == Path("/etc/condatainer/config.yaml")
    monkeypatch.setenv("CNT_SITE_CONFIG", "")
    assert config.site_path() == Path("/etc/condatainer/config.yaml")


def test_bad_site_file_names_the_site_file(tmp_path: Path) -> None:
    site = Path(os.environ["CNT_SITE_CONFIG"])
    site.parent.mkdir(parents=True)
    site.write_text("gpu: on\nchanels: [x]\n")
    with pytest.raises(ConfigError) as bad:
        config.load()
    assert f"{site} line 2: unknown key 'chanels'" in bad.value.message
    assert "did you mean 'channels'" in bad.value.message


def test_validate_reports_every_layer(cfg_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site = Path(os.environ["CNT_SITE_CONFIG"])
    site.parent.mkdir(parents=True)
    site.write_text("gpu: maybe\n")
    cfg_file.write_text("runtime: builtin\n")
    monkeypatch.setenv("CNT_SUBMIT", "sometimes")
    results = config.validate()
    assert [name.split()[0] for name, _ in results] == ["site", "file", "environment"]
    site_error, user_error, env_error = (problem for _, problem in results)
    assert site_error is not None and "gpu" in site_error.message
    assert user_error is None
    assert env_error is not None and "CNT_SUBMIT" in env_error.message


def test_env_channels_the_one_rule() -> None:
    cfg = config.Config(channels=("https://mirror/conda-forge", "bioconda"))
    assert config.env_channels(cfg) == ("https://mirror/conda-forge", "bioconda")
    assert config.env_channels(cfg, ["pytorch", "bioconda"]) == (
        "pytorch",
        "bioconda",
        "https://mirror/conda-forge",
    )
    assert config.env_channels(cfg, ["pytorch"], override=True) == ("pytorch",)
    assert config.env_channels(cfg, ["pytorch", "nodefaults"]) == ("pytorch",)
