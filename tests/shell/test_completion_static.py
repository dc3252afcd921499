"""The completion scripts as shell code: committed files up to date, valid, quiet, correct.

- Drift: `completions/condatainer.bash`, `completions/_condatainer` and
  `completions/condatainer.fish` are exactly what `python -m condatainer.completion --write`
  produces now, and what `condatainer completion bash|zsh|fish` prints.
- Syntax and lint: `bash -n`, `zsh -n`, `fish -n`, shellcheck (bash) for the condatainer
  completion and the mm-* completion.
- Behaviour without a terminal: sourcing prints nothing and registers both command names;
  the bash and fish functions speak argcomplete's protocol (checked against a stub command)
  without globbing candidates or changing the user's noglob; the mm-* functions find names in
  a listing exactly as a linear filter would (fish: asked through `complete -C`, fish's own
  completion machinery).  TAB in a real terminal is
  test_tab_pty.py.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from condatainer import completion, shellgen
from condatainer.hook import mmcomplete, pkgcache

REPO = Path(__file__).resolve().parents[2]
STATIC = REPO / "completions"
HOSTILE = "'\";&&e-$ èрт🚒中-j"
SHELL_ARGV = {
    "bash": ["bash", "--norc", "--noprofile"],
    "zsh": ["zsh", "-f"],
    "fish": ["fish", "--no-config"],
}


def run(argv: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False, **kw)  # type: ignore[call-overload]


def sh(shell: str, script: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return run([*SHELL_ARGV[shell], "-c", script], **kw)


@pytest.fixture
def scripts(tmp_path: Path) -> dict[str, Path]:
    """Every completion script, rendered into files: cnt.<shell> and mm.<shell>."""
    out = {}
    for shell in ("bash", "zsh", "fish"):
        for kind, text in (("cnt", completion.script(shell)), ("mm", mmcomplete.script(shell))):
            path = tmp_path / f"{kind}.{shell}"
            path.write_text(text)
            out[f"{kind}.{shell}"] = path
    return out


# --- drift ---------------------------------------------------------------------------------


def test_committed_files_match_a_fresh_generation(tmp_path: Path) -> None:
    res = run(
        [sys.executable, "-m", "condatainer.completion", "--write", str(tmp_path / "c")],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert res.returncode == 0, res.stderr
    generated = sorted(p.name for p in (tmp_path / "c").iterdir())
    assert generated == ["_condatainer", "condatainer.bash", "condatainer.fish"]
    for name in generated:
        assert (STATIC / name).read_bytes() == (tmp_path / "c" / name).read_bytes(), (
            f"completions/{name} is stale: run python -m condatainer.completion --write "
            "completions/ and commit the result"
        )


def test_check_reports_stale_files(tmp_path: Path) -> None:
    assert completion.check(STATIC) == []
    completion.write(tmp_path)
    (tmp_path / "_condatainer").write_text("#compdef condatainer\n")
    assert completion.check(tmp_path) == ["_condatainer"]
    res = run(
        [sys.executable, "-m", "condatainer.completion", "--check", str(tmp_path)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert res.returncode == 1
    assert "_condatainer: stale" in res.stderr


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_command_prints_the_static_file(shell: str) -> None:
    res = run(
        [sys.executable, "-m", "condatainer", "completion", shell],
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout == (STATIC / completion.STATIC_FILES[shell]).read_text()
    assert res.stderr == ""


def test_completion_of_an_unknown_shell_prints_no_code() -> None:
    res = run(
        [sys.executable, "-m", "condatainer", "completion", "tcsh"],
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert res.returncode == 2
    assert res.stdout == ""
    assert "invalid choice: 'tcsh'" in res.stderr


def test_both_command_names_are_covered() -> None:
    bash = (STATIC / "condatainer.bash").read_text()
    zsh = (STATIC / "_condatainer").read_text()
    fish = (STATIC / "condatainer.fish").read_text()
    assert bash.splitlines()[-1] == (
        "complete -o nospace -o default -o bashdefault -F _condatainer_complete condatainer cnt"
    )
    assert zsh.splitlines()[0] == "#compdef condatainer cnt"
    assert fish.splitlines()[-2:] == [
        f"complete --command {name} --no-files --arguments '(__condatainer_complete)'"
        for name in ("condatainer", "cnt")
    ]


# --- syntax and lint -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["cnt.bash", "mm.bash", "cnt.zsh", "mm.zsh", "cnt.fish", "mm.fish"]
)
def test_syntax(name: str, scripts: dict[str, Path], need: Callable[[str], str]) -> None:
    shell = name.split(".")[1]
    res = run([need(shell), "-n", str(scripts[name])])
    assert res.returncode == 0, res.stderr


def test_shellcheck_bash_scripts(scripts: dict[str, Path], need: Callable[[str], str]) -> None:
    res = run(
        [
            need("shellcheck"),
            "-s",
            "bash",
            str(STATIC / "condatainer.bash"),
            str(scripts["cnt.bash"]),
            str(scripts["mm.bash"]),
        ]
    )
    assert res.returncode == 0, res.stdout + res.stderr


# --- sourcing ------------------------------------------------------------------------------


def test_bash_sourcing_is_quiet_and_registers_both_names(
    scripts: dict[str, Path], need: Callable[[str], str]
) -> None:
    need("bash")
    for name in ("cnt.bash", "mm.bash"):
        res = sh("bash", f". {shellgen.quote(str(scripts[name]))}")
        assert (res.returncode, res.stdout, res.stderr) == (0, "", "")
    res = sh(
        "bash", f". {shellgen.quote(str(STATIC / 'condatainer.bash'))}; complete -p cnt condatainer"
    )
    assert res.stdout.splitlines() == [
        "complete -o bashdefault -o default -o nospace -F _condatainer_complete cnt",
        "complete -o bashdefault -o default -o nospace -F _condatainer_complete condatainer",
    ]
    res = sh(
        "bash",
        f". {shellgen.quote(str(scripts['mm.bash']))}; complete -p mm-remove "
        "mm-install mm-channels",
    )
    assert res.stdout.splitlines() == [
        f"complete -F _cnt_mm_complete {name}"
        for name in ("mm-remove", "mm-install", "mm-channels")
    ]


def test_fish_sourcing_is_quiet_and_registers_both_names(
    scripts: dict[str, Path], need: Callable[[str], str]
) -> None:
    need("fish")
    for name in ("cnt.fish", "mm.fish"):
        res = sh("fish", f"source {shellgen.quote_fish(str(scripts[name]))}")
        assert (res.returncode, res.stdout, res.stderr) == (0, "", "")
    res = sh(
        "fish",
        f"source {shellgen.quote_fish(str(STATIC / 'condatainer.fish'))}\n"
        "complete --command condatainer; complete --command cnt",
    )
    assert res.stdout.splitlines() == [
        f"complete --no-files {name} -a '(__condatainer_complete)'"
        for name in ("condatainer", "cnt")
    ]


def test_zsh_sourcing_without_compinit_is_quiet(
    scripts: dict[str, Path], need: Callable[[str], str]
) -> None:
    need("zsh")
    for name in ("cnt.zsh", "mm.zsh"):
        res = sh("zsh", f"source {shellgen.quote(str(scripts[name]))}; print -r -- $?")
        assert (res.stdout, res.stderr) == ("0\n", "")


def test_zsh_eval_registers_with_compdef(need: Callable[[str], str]) -> None:
    need("zsh")
    res = sh(
        "zsh",
        "autoload -Uz compinit && compinit -u -D\n"
        f'eval "$(<{shellgen.quote(str(STATIC / "_condatainer"))})"\n'
        "print -r -- $_comps[condatainer] $_comps[cnt]",
    )
    assert (res.stdout, res.stderr) == ("_condatainer _condatainer\n", "")


def test_zsh_fpath_autoload_registers_both_names(
    tmp_path: Path, need: Callable[[str], str]
) -> None:
    need("zsh")
    fp = tmp_path / HOSTILE
    fp.mkdir()
    (fp / "_condatainer").write_text((STATIC / "_condatainer").read_text())
    res = sh(
        "zsh",
        f"fpath=({shellgen.quote(str(fp))} $fpath)\n"
        "autoload -Uz compinit && compinit -u -D\n"
        "print -r -- $_comps[condatainer] $_comps[cnt]",
    )
    assert (res.stdout, res.stderr) == ("_condatainer _condatainer\n", "")


# --- the bash protocol function against a stub command -------------------------------------


@pytest.fixture
def stub(tmp_path: Path) -> Path:
    """A `condatainer` that answers TAB with fixed candidates from $STUB_OUT on fd 8."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    exe = bindir / "condatainer"
    exe.write_text(
        '#!/bin/sh\n[ "$_ARGCOMPLETE" = 1 ] || exit 9\n'
        'printf "%s|%s|%s" "$COMP_LINE" "$COMP_POINT" "$_ARGCOMPLETE_SHELL" '
        '> "$STUB_SEEN"\n'
        'printf "$STUB_OUT" >&8\nexit "${STUB_EXIT:-0}"\n'
    )
    exe.chmod(0o755)
    (tmp_path / "a1").write_text("")
    return exe


def _call(
    stub: Path, script: str, scripts: dict[str, Path], **env: str
) -> subprocess.CompletedProcess[str]:
    full = (
        f". {shellgen.quote(str(scripts['cnt.bash']))}\n"
        f"cd {shellgen.quote(str(stub.parent.parent))}\n"
        'COMP_LINE="condatainer x y"; COMP_POINT=15\n'
        "COMP_WORDBREAKS=$' \\t\\n\"\\'><=;|&(:'\n" + script
    )
    return sh(
        "bash",
        full,
        env={
            **os.environ,
            "PATH": f"{stub.parent}:{os.environ['PATH']}",
            "STUB_SEEN": str(stub.parent / "seen"),
            **env,
        },
    )


def test_bash_function_splits_on_vt_without_globbing(
    stub: Path, scripts: dict[str, Path], need: Callable[[str], str]
) -> None:
    need("bash")
    res = _call(
        stub,
        '_condatainer_complete condatainer y x; declare -p COMPREPLY; echo "opts=$-"',
        scripts,
        STUB_OUT=r"a*\013b c\013d/",
    )
    assert res.returncode == 0, res.stderr
    assert 'declare -a COMPREPLY=([0]="a*" [1]="b c" [2]="d/")' in res.stdout
    assert "f" not in res.stdout.split("opts=")[1], "noglob must be restored to off"
    seen = (stub.parent / "seen").read_text()
    assert seen == "condatainer x y|15|bash"


def test_bash_function_keeps_noglob_on(
    stub: Path, scripts: dict[str, Path], need: Callable[[str], str]
) -> None:
    need("bash")
    res = _call(
        stub, 'set -f; _condatainer_complete condatainer y x; echo "opts=$-"', scripts, STUB_OUT="a"
    )
    assert "f" in res.stdout.split("opts=")[1]


def test_bash_function_gives_up_quietly_when_the_command_fails(
    stub: Path, scripts: dict[str, Path], need: Callable[[str], str]
) -> None:
    need("bash")
    res = _call(
        stub,
        "COMPREPLY=(old); _condatainer_complete condatainer y x; "
        'echo "status=$? set=${COMPREPLY+yes}"',
        scripts,
        STUB_OUT="a",
        STUB_EXIT="1",
    )
    assert (res.stdout, res.stderr) == ("status=0 set=\n", "")


def test_fish_function_speaks_the_protocol_with_descriptions(
    stub: Path, tmp_path: Path, need: Callable[[str], str]
) -> None:
    """fish asks the command on TAB (`complete -C` runs fish's own completion machinery): the
    line up to the cursor, its length, one candidate per line with a tab-separated
    description, nothing globbed or split on spaces."""
    need("fish")
    res = sh(
        "fish",
        f"source {shellgen.quote_fish(str(STATIC / 'condatainer.fish'))}\n"
        "complete -C 'condatainer x y'",
        env={
            **os.environ,
            "PATH": f"{stub.parent}:{os.environ['PATH']}",
            "STUB_SEEN": str(stub.parent / "seen"),
            "STUB_OUT": r"ya*\tglob chars\nyb c\nyd/",
        },
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr
    assert sorted(res.stdout.splitlines()) == ["ya*\tglob chars", "yb c", "yd/"]
    assert (stub.parent / "seen").read_text() == "condatainer x y|15|fish"


# --- the mm-* functions --------------------------------------------------------------------


def _mm(shell_script: str, scripts: dict[str, Path], pkgs: Path) -> list[str]:
    full = (
        f". {shellgen.quote(str(scripts['mm.bash']))}\n"
        f"_cnt_pkgs={shellgen.quote(str(pkgs))}\n"
        + shell_script
        + '\nprintf "%s\\n" "${COMPREPLY[@]}"'
    )
    res = sh("bash", full)
    assert res.returncode == 0, res.stderr
    assert res.stderr == ""
    return [line for line in res.stdout.splitlines() if line]


def _tab(op: str, *words: str) -> str:
    """Shell code simulating TAB after `mm-OP WORDS...` (the last word is the one completed)."""
    all_words = " ".join(shellgen.quote(w) for w in (f"mm-{op}", *words))
    return (
        f"COMP_WORDS=({all_words}); COMP_CWORD={len(words)}; "
        f"_cnt_mm_complete mm-{op} {shellgen.quote(words[-1])} "
        f"{shellgen.quote(words[-2] if len(words) > 1 else f'mm-{op}')}"
    )


@pytest.fixture
def listings(tmp_path: Path) -> Path:
    directory = tmp_path / HOSTILE / "pkgs"
    directory.mkdir(parents=True)
    pkgs = directory / "0123456789abcdef.txt"
    pkgs.write_text("cnt-hello\nnumpy\npython\n")
    (directory / "0123456789abcdef.channel.txt").write_text(
        "cnt-app\ncnt-hello\nnumba\nnumpy\npython\n"
    )
    return pkgs


def test_mm_installed_and_channel_names(
    scripts: dict[str, Path], listings: Path, need: Callable[[str], str]
) -> None:
    need("bash")
    assert _mm(_tab("remove", ""), scripts, listings) == ["cnt-hello", "numpy", "python"]
    assert _mm(_tab("update", "nu"), scripts, listings) == ["numpy"]
    assert _mm(_tab("pin", "-r", "p"), scripts, listings) == ["python"]
    assert _mm(_tab("install", "nu"), scripts, listings) == ["numba", "numpy"]
    assert _mm(_tab("search", "cnt-"), scripts, listings) == ["cnt-app", "cnt-hello"]
    assert _mm(_tab("install", "numpy", "nu"), scripts, listings) == ["numba", "numpy"]


def test_mm_options_actions_and_value_options(
    scripts: dict[str, Path], listings: Path, need: Callable[[str], str]
) -> None:
    need("bash")
    assert _mm(_tab("pin", "-"), scripts, listings) == ["-l", "--list", "-r", "-d", "--remove"]
    assert _mm(_tab("install", "--ch"), scripts, listings) == ["--channel"]
    assert _mm(_tab("install", "-c", ""), scripts, listings) == []
    assert _mm(_tab("channels", ""), scripts, listings) == ["get", "append", "prepend", "remove"]
    assert _mm(_tab("channels", "append", ""), scripts, listings) == []
    assert _mm(_tab("list", ""), scripts, listings) == []


def test_mm_without_an_active_image_offers_no_names(
    scripts: dict[str, Path], need: Callable[[str], str], tmp_path: Path
) -> None:
    need("bash")
    assert _mm("_cnt_pkgs=''; " + _tab("remove", ""), scripts, tmp_path / "x.txt") == []
    assert _mm(_tab("install", ""), scripts, tmp_path / "missing.txt") == []


def _random_names(seed: int, count: int) -> list[str]:
    rng = random.Random(seed)
    alphabet = "abcnpuy-_.0+"
    names = sorted(
        {"".join(rng.choice(alphabet) for _ in range(rng.randint(1, 8))) for _ in range(count)}
    )
    return [n for n in names if n[0] not in "-."]


def _prefixes(names: list[str], seed: int) -> list[str]:
    rng = random.Random(seed)
    return [
        "", "a", "zz", "~", "+", "n", "nu", "c_", "c", "0", names[0], names[-1],
        names[-1] + "z", "*", "[a]", "a*", "n/u", "../x", "$x", "'a'",
        *(n[: rng.randint(1, len(n))] for n in rng.sample(names, 40)),
    ]  # fmt: skip


def _listing(tmp_path: Path, names: list[str], buckets: bool) -> Path:
    pkgs = tmp_path / "k.txt"
    pkgs.write_text("")
    (tmp_path / "k.channel.txt").write_text("".join(f"{n}\n" for n in names))
    if buckets:
        pkgcache.write_buckets(tmp_path / f"k{pkgcache.BUCKETS_SUFFIX}", names)
    return pkgs


def _answers(stdout: str) -> dict[int, list[str]]:
    got: dict[int, list[str]] = {}
    current = -1
    for line in stdout.splitlines():
        if line.startswith("#"):
            current = int(line[1:])
            got[current] = []
        elif line:
            got[current].append(line)
    return got


@pytest.mark.parametrize("buckets", [False, True], ids=["one-listing", "prefix-buckets"])
def test_mm_binary_search_matches_a_linear_filter(
    scripts: dict[str, Path], tmp_path: Path, need: Callable[[str], str], buckets: bool
) -> None:
    """The sorted listing is searched, not scanned, and with prefix buckets only the buckets
    that can match are read: compare with Python on many prefixes, hostile ones included."""
    need("bash")
    names = _random_names(7, 3000)
    pkgs = _listing(tmp_path, names, buckets)
    prefixes = _prefixes(names, 7)
    script = "LANG=en_US.UTF-8\n" + "".join(
        f'{_tab("install", p)}; printf \'%s\\n\' "#{i}" "${{COMPREPLY[@]}}"\n'
        for i, p in enumerate(prefixes)
    )
    full = (
        f". {shellgen.quote(str(scripts['mm.bash']))}\n"
        f"_cnt_pkgs={shellgen.quote(str(pkgs))}\n" + script
    )
    res = sh("bash", full)
    assert res.returncode == 0, res.stderr
    got = _answers(res.stdout)
    for i, prefix in enumerate(prefixes):
        assert got[i] == [n for n in names if n.startswith(prefix)], prefix


@pytest.mark.parametrize("buckets", [False, True], ids=["one-listing", "prefix-buckets"])
def test_mm_zsh_names_match_a_linear_filter(
    scripts: dict[str, Path], tmp_path: Path, need: Callable[[str], str], buckets: bool
) -> None:
    """zsh's function, called as compsys would (words, CURRENT, PREFIX; compadd recorded)."""
    need("zsh")
    names = _random_names(11, 3000)
    pkgs = _listing(tmp_path, names, buckets)
    prefixes = _prefixes(names, 11)
    calls = "".join(
        f"words=(mm-install {shellgen.quote(p)}); CURRENT=2; PREFIX={shellgen.quote(p)};"
        f" print -r -- '#{i}'; _cnt_mm_complete\n"
        for i, p in enumerate(prefixes)
    )
    full = (
        "compdef() { :; }\n"
        'compadd() { [[ $1 == -- ]] && shift; print -rl -- "$@"; }\n'
        f". {shellgen.quote(str(scripts['mm.zsh']))}\n"
        f"_cnt_pkgs={shellgen.quote(str(pkgs))}\n" + calls
    )
    res = sh("zsh", full)
    assert res.returncode == 0, res.stderr
    got = _answers(res.stdout)
    for i, prefix in enumerate(prefixes):
        assert got[i] == [n for n in names if n.startswith(prefix)], prefix


@pytest.mark.parametrize("buckets", [False, True], ids=["one-listing", "prefix-buckets"])
def test_mm_fish_names_match_a_linear_filter(
    scripts: dict[str, Path], tmp_path: Path, need: Callable[[str], str], buckets: bool
) -> None:
    """fish's function, asked through fish's own completion (`complete -C 'mm-install P'`)."""
    need("fish")
    names = _random_names(13, 3000)
    pkgs = _listing(tmp_path, names, buckets)
    # Prefixes fish would pass on as they are (a quote or `$` would be fish syntax in the line).
    prefixes = [p for p in _prefixes(names, 13) if not set(p) & set("'$~*[")]
    calls = "".join(
        f"printf '%s\\n' '#{i}'; complete -C {shellgen.quote_fish(f'mm-install {p}')}\n"
        for i, p in enumerate(prefixes)
    )
    full = (
        "function mm-install; end\n"
        f"source {shellgen.quote_fish(str(scripts['mm.fish']))}\n"
        f"set -g _cnt_pkgs {shellgen.quote_fish(str(pkgs))}\n" + calls
    )
    res = sh("fish", full)
    assert res.returncode == 0, res.stderr
    got = _answers(res.stdout)
    for i, prefix in enumerate(prefixes):
        want = sorted(n for n in names if n.startswith(prefix))
        assert sorted(got[i]) == want, prefix
